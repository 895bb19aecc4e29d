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

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
pub struct EnvVar {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// A create or update body (`definition_id` in a body is ignored, as Flotilla does).
#[derive(Debug, Default, Deserialize)]
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
#[derive(Debug, Serialize)]
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
            env: d
                .env
                .into_iter()
                .map(|e| EnvVar {
                    name: e.name,
                    value: e.value,
                })
                .collect(),
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
