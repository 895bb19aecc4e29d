//! Flotilla JSON (spec/flotilla.md §2.1, CLASSIC): requests decode as Go's encoding/json does —
//! keys matched case-insensitively, unknown keys ignored — and definitions are written with `env`
//! first and always an array.

use capstan_proto::pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Lower-cases every object key, so that serde's exact names match Flotilla's case-insensitive ones.
pub fn fold_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k.to_lowercase(), fold_keys(v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(fold_keys).collect()),
        other => other,
    }
}

#[derive(Debug, Default, Deserialize, Serialize, Clone, utoipa::ToSchema)]
pub struct EnvVar {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// A create or update body (`definition_id` in a body is ignored, as Flotilla does).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct DefinitionRequest {
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub group_name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub memory: Option<i32>,
    #[serde(default)]
    pub env: Option<Vec<EnvVar>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub ports: Option<Vec<i32>>,
    #[serde(default)]
    pub user: Option<String>,
}

fn env_to_pb(env: Vec<EnvVar>) -> Vec<pb::EnvironmentVariable> {
    env.into_iter()
        .map(|e| pb::EnvironmentVariable {
            name: e.name,
            value: e.value,
        })
        .collect()
}

fn env_from_pb(env: Vec<pb::EnvironmentVariable>) -> Vec<EnvVar> {
    env.into_iter()
        .map(|e| EnvVar {
            name: e.name,
            value: e.value,
        })
        .collect()
}

impl DefinitionRequest {
    pub fn into_create(self) -> pb::CreateTaskDefinitionRequest {
        pb::CreateTaskDefinitionRequest {
            alias: self.alias.unwrap_or_default(),
            group_name: self.group_name.unwrap_or_default(),
            image: self.image.unwrap_or_default(),
            command: self.command.unwrap_or_default(),
            memory: self.memory,
            env: env_to_pb(self.env.unwrap_or_default()),
            tags: self.tags.unwrap_or_default(),
            ports: self.ports.unwrap_or_default(),
            user: self.user.unwrap_or_default(),
        }
    }

    pub fn into_update(self, definition_id: String) -> pb::UpdateTaskDefinitionRequest {
        pb::UpdateTaskDefinitionRequest {
            definition_id,
            alias: self.alias.unwrap_or_default(),
            image: self.image.unwrap_or_default(),
            command: self.command.unwrap_or_default(),
            memory: self.memory.unwrap_or_default(),
            has_env: self.env.is_some(),
            env: env_to_pb(self.env.unwrap_or_default()),
            has_tags: self.tags.is_some(),
            tags: self.tags.unwrap_or_default(),
            has_ports: self.ports.is_some(),
            ports: self.ports.unwrap_or_default(),
            user: self.user.unwrap_or_default(),
            group_name: self.group_name.unwrap_or_default(),
        }
    }
}

/// A definition as Flotilla writes it (CLASSIC field order, `env` first and always present).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Definition {
    pub env: Vec<EnvVar>,
    pub definition_id: String,
    pub image: String,
    pub group_name: String,
    pub container_name: String,
    pub alias: String,
    pub memory: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub command: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<i32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
}

impl From<pb::TaskDefinition> for Definition {
    fn from(d: pb::TaskDefinition) -> Self {
        Self {
            env: env_from_pb(d.env),
            container_name: d.definition_id.clone(),
            definition_id: d.definition_id,
            image: d.image,
            group_name: d.group_name,
            alias: d.alias,
            memory: d.memory,
            command: d.command,
            tags: d.tags,
            ports: d.ports,
            user: d.user,
        }
    }
}

/// Flotilla's times: RFC 3339 in UTC with milliseconds (Go's encoder writes fractions).
pub fn time(unix_ns: i64) -> Option<String> {
    (unix_ns != 0)
        .then(|| chrono::DateTime::from_timestamp_nanos(unix_ns).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// An execute body: `cluster` and `env` overrides (v6/v4 `run_tags` are accepted and ignored).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ExecuteRequest {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<EnvVar>>,
}

impl ExecuteRequest {
    pub fn into_request(self, definition_id: String, alias: String) -> pb::ExecuteTaskRequest {
        pb::ExecuteTaskRequest {
            definition_id,
            alias,
            cluster: self.cluster.unwrap_or_default(),
            env: env_to_pb(self.env.unwrap_or_default()),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Instance {
    pub instance_id: String,
    pub dns_name: String,
}

/// A run as Flotilla writes it (CLASSIC field order; times and the exit code omitted until known;
/// `command`, `memory` and `tags` as the seed shows them).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Run {
    pub instance: Instance,
    pub run_id: String,
    pub definition_id: String,
    pub alias: String,
    pub image: String,
    pub cluster: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub group_name: String,
    pub env: Vec<EnvVar>,
    pub command: String,
    pub memory: i32,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub exit_reason: String,
}

impl From<pb::TaskRun> for Run {
    fn from(r: pb::TaskRun) -> Self {
        Self {
            instance: Instance {
                instance_id: r.cell_id,
                dns_name: r.cell_address,
            },
            status: capstan_proto::task_run_status_name(r.status),
            run_id: r.run_id,
            definition_id: r.definition_id,
            alias: r.alias,
            image: r.image,
            cluster: r.cluster_name,
            exit_code: r.exit_code,
            queued_at: time(r.queued_at),
            started_at: time(r.started_at),
            finished_at: time(r.finished_at),
            group_name: r.group_name,
            env: env_from_pb(r.env),
            command: r.command,
            memory: r.memory,
            tags: r.tags,
            exit_reason: r.exit_reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_and_absent_until_set() {
        assert_eq!(time(0), None);
        assert_eq!(
            time(1_470_835_272_067_000_000).as_deref(),
            Some("2016-08-10T13:21:12.067Z")
        );
    }

    #[test]
    fn keys_fold_case_insensitively() {
        let v = fold_keys(serde_json::json!({"Cluster": "c", "ENV": [{"Name": "A", "VALUE": "1"}]}));
        let r: ExecuteRequest = serde_json::from_value(v).expect("decodes");
        let env = r.env.unwrap_or_default();
        assert_eq!(
            (r.cluster.as_deref(), env[0].name.as_str(), env[0].value.as_str()),
            (Some("c"), "A", "1")
        );
    }
}
