//! CF V3 JSON as the presenters write it (spec §2, §3, §4.1): organizations, spaces, apps,
//! processes, stats, process instances, jobs, and paginated lists with links that resolve.

use capstan_proto::pb;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// `YYYY-MM-DDThh:mm:ssZ` (whole seconds, UTC).
pub fn timestamp(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// `now` as `usage.time` (RFC 3339 with `+00:00`).
pub(super) fn usage_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())
        .unwrap_or_default()
}

/// A link: `{"href"}`, or `{"href", "method": "POST"}` for an action.
#[derive(Debug, Serialize, ToSchema)]
pub struct Link {
    pub href: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
}

impl Link {
    fn get(base: &str, path: &str) -> Self {
        Link {
            href: format!("{base}{path}"),
            method: None,
        }
    }

    fn post(base: &str, path: &str) -> Self {
        Link {
            method: Some("POST"),
            ..Link::get(base, path)
        }
    }
}

/// `{"guid"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Guid {
    pub guid: String,
}

/// A to-one relationship: `{"data": {"guid"}}`, or `{"data": null}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToOne {
    pub data: Option<Guid>,
}

impl ToOne {
    fn of(guid: &str) -> Self {
        ToOne {
            data: Some(Guid { guid: guid.to_owned() }),
        }
    }
}

/// Labels and annotations, keys as written (`prefix/name`, or `name`).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Metadata {
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

fn typed_metadata(m: &Option<pb::CfMetadata>) -> Metadata {
    let m = m.clone().unwrap_or_default();
    Metadata {
        labels: m.labels.into_iter().collect(),
        annotations: m.annotations.into_iter().collect(),
    }
}

/// An organization (no quotas: `relationships.quota.data` is null; never suspended).
#[derive(Debug, Serialize, ToSchema)]
pub struct Organization {
    pub guid: String,
    pub created_at: String,
    pub updated_at: String,
    pub name: String,
    pub suspended: bool,
    pub relationships: OrganizationRelationships,
    pub metadata: Metadata,
    pub links: OrganizationLinks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationRelationships {
    pub quota: ToOne,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationLinks {
    #[serde(rename = "self")]
    pub this: Link,
    pub spaces: Link,
}

pub fn organization(base: &str, o: &pb::CfOrganization) -> Organization {
    Organization {
        guid: o.guid.clone(),
        created_at: timestamp(o.created_at),
        updated_at: timestamp(o.updated_at),
        name: o.name.clone(),
        suspended: false,
        relationships: OrganizationRelationships {
            quota: ToOne { data: None },
        },
        metadata: typed_metadata(&o.metadata),
        links: OrganizationLinks {
            this: Link::get(base, &format!("/v3/organizations/{}", o.guid)),
            spaces: Link::get(base, &format!("/v3/spaces?organization_guids={}", o.guid)),
        },
    }
}

/// A space of an organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct Space {
    pub guid: String,
    pub created_at: String,
    pub updated_at: String,
    pub name: String,
    pub relationships: SpaceRelationships,
    pub metadata: Metadata,
    pub links: SpaceLinks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpaceRelationships {
    pub organization: ToOne,
    pub quota: ToOne,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpaceLinks {
    #[serde(rename = "self")]
    pub this: Link,
    pub organization: Link,
    pub apps: Link,
    pub apply_manifest: Link,
}

pub fn space(base: &str, s: &pb::CfSpace) -> Space {
    Space {
        guid: s.guid.clone(),
        created_at: timestamp(s.created_at),
        updated_at: timestamp(s.updated_at),
        name: s.name.clone(),
        relationships: SpaceRelationships {
            organization: ToOne::of(&s.organization_guid),
            quota: ToOne { data: None },
        },
        metadata: typed_metadata(&s.metadata),
        links: SpaceLinks {
            this: Link::get(base, &format!("/v3/spaces/{}", s.guid)),
            organization: Link::get(base, &format!("/v3/organizations/{}", s.organization_guid)),
            apps: Link::get(base, &format!("/v3/apps?space_guids={}", s.guid)),
            apply_manifest: Link::post(base, &format!("/v3/spaces/{}/actions/apply_manifest", s.guid)),
        },
    }
}

/// An app: `STARTED` or `STOPPED`; buildpack lifecycle (`cflinuxfs4`) unless it runs a docker image.
#[derive(Debug, Serialize, ToSchema)]
pub struct App {
    pub guid: String,
    pub name: String,
    pub state: &'static str,
    pub created_at: String,
    pub updated_at: String,
    #[schema(value_type = Object)]
    pub lifecycle: Value,
    pub relationships: AppRelationships,
    pub metadata: Metadata,
    pub links: AppLinks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppRelationships {
    pub space: ToOne,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppLinks {
    #[serde(rename = "self")]
    pub this: Link,
    pub space: Link,
    pub processes: Link,
    pub environment_variables: Link,
    pub start: Link,
    pub stop: Link,
    pub restart: Link,
}

pub fn app(base: &str, a: &pb::CfApp) -> App {
    let state = if a.state == pb::CfAppState::Started as i32 {
        "STARTED"
    } else {
        "STOPPED"
    };
    let lifecycle = if a.docker_image.is_empty() {
        json!({ "type": "buildpack", "data": { "buildpacks": [], "stack": "cflinuxfs4" } })
    } else {
        json!({ "type": "docker", "data": {} })
    };
    let path = format!("/v3/apps/{}", a.guid);
    App {
        guid: a.guid.clone(),
        name: a.name.clone(),
        state,
        created_at: timestamp(a.created_at),
        updated_at: timestamp(a.updated_at),
        lifecycle,
        relationships: AppRelationships {
            space: ToOne::of(&a.space_guid),
        },
        metadata: typed_metadata(&a.metadata),
        links: AppLinks {
            this: Link::get(base, &path),
            space: Link::get(base, &format!("/v3/spaces/{}", a.space_guid)),
            processes: Link::get(base, &format!("{path}/processes")),
            environment_variables: Link::get(base, &format!("{path}/environment_variables")),
            start: Link::post(base, &format!("{path}/actions/start")),
            stop: Link::post(base, &format!("{path}/actions/stop")),
            restart: Link::post(base, &format!("{path}/actions/restart")),
        },
    }
}

/// A health check's `data`: `timeout` on the liveness check only, `endpoint` for `http` only.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthCheckData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Option<i32>>,
    pub invocation_timeout: Option<i32>,
    pub interval: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// `{"type": "port" | "process" | "http", "data"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthCheck {
    #[serde(rename = "type")]
    pub kind: String,
    pub data: HealthCheckData,
}

fn health_check(hc: &Option<pb::CfHealthCheck>, readiness: bool) -> HealthCheck {
    let hc = hc.clone().unwrap_or_default();
    HealthCheck {
        data: HealthCheckData {
            timeout: (!readiness).then_some(hc.timeout),
            invocation_timeout: hc.invocation_timeout,
            interval: hc.interval,
            endpoint: (hc.r#type == "http").then_some(hc.endpoint),
        },
        kind: hc.r#type,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessRelationships {
    pub app: ToOne,
    /// Always `{"data": null}`: Capstan has no revisions.
    pub revision: Option<ToOne>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessLinks {
    #[serde(rename = "self")]
    pub this: Link,
    pub scale: Link,
    pub app: Link,
    pub space: Link,
    pub stats: Link,
    pub process_instances: Link,
}

/// CF's process object (spec §2).
#[derive(Debug, Serialize, ToSchema)]
pub struct Process {
    pub guid: String,
    pub created_at: String,
    pub updated_at: String,
    pub version: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub command: String,
    pub user: String,
    pub instances: i32,
    pub memory_in_mb: i32,
    pub disk_in_mb: i32,
    pub log_rate_limit_in_bytes_per_second: i64,
    pub health_check: HealthCheck,
    pub readiness_health_check: HealthCheck,
    /// With `embed=process_instances`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_instances: Option<Vec<InstanceState>>,
    pub relationships: ProcessRelationships,
    pub metadata: Metadata,
    pub links: ProcessLinks,
}

/// The process object; `embedded` is its `process_instances` when asked for.
pub fn process(base: &str, p: &pb::CfProcess, embedded: Option<&[pb::CfInstanceStats]>, now_ns: i64) -> Process {
    let path = format!("/v3/processes/{}", p.guid);
    Process {
        guid: p.guid.clone(),
        created_at: timestamp(p.created_at),
        updated_at: timestamp(p.updated_at),
        version: p.version.clone(),
        kind: p.r#type.clone(),
        command: p.command.clone(),
        user: if p.user.is_empty() {
            "vcap".into()
        } else {
            p.user.clone()
        },
        instances: p.instances,
        memory_in_mb: p.memory_in_mb,
        disk_in_mb: p.disk_in_mb,
        log_rate_limit_in_bytes_per_second: p.log_rate_limit_in_bytes_per_second,
        health_check: health_check(&p.health_check, false),
        readiness_health_check: health_check(&p.readiness_health_check, true),
        process_instances: embedded.map(|i| process_instances(i, now_ns)),
        relationships: ProcessRelationships {
            app: ToOne::of(&p.app_guid),
            revision: None,
        },
        metadata: typed_metadata(&p.metadata),
        links: ProcessLinks {
            this: Link::get(base, &path),
            scale: Link::post(base, &format!("{path}/actions/scale")),
            app: Link::get(base, &format!("/v3/apps/{}", p.app_guid)),
            space: Link::get(base, &format!("/v3/spaces/{}", p.space_guid)),
            stats: Link::get(base, &format!("{path}/stats")),
            process_instances: Link::get(base, &format!("{path}/process_instances")),
        },
    }
}

/// One entry of `process_instances` (§3.3): `since` null for an index with nothing behind it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceState {
    pub index: u32,
    pub state: String,
    pub since: Option<i64>,
}

pub fn process_instances(instances: &[pb::CfInstanceStats], _now_ns: i64) -> Vec<InstanceState> {
    instances
        .iter()
        .map(|i| InstanceState {
            index: i.index,
            state: i.state.clone(),
            since: i.found.then_some(i.uptime),
        })
        .collect()
}

/// A page of a list (`GET /v3/processes`, `/v3/apps`, ...): the keys every CF list writes
/// (`cf::list`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// `{total_results, total_pages, first, last, next, previous}`, links by CF's recipe.
    #[schema(value_type = Object)]
    pub pagination: Value,
    pub resources: Vec<T>,
}

/// `process_instances`: the instances' states, with links.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessInstances {
    pub resources: Vec<InstanceState>,
    #[schema(value_type = Object)]
    pub links: Value,
}

/// A job (Capstan's are finished when they are answered: COMPLETE, or FAILED with `errors`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    pub guid: String,
    pub created_at: String,
    pub updated_at: String,
    pub operation: String,
    pub state: String,
    pub errors: Vec<super::error::ErrorItem>,
    pub warnings: Vec<String>,
    pub links: JobLinks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobLinks {
    #[serde(rename = "self")]
    pub this: Link,
    /// For `space.apply_manifest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub space: Option<Link>,
}

pub fn job(base: &str, j: &pb::CfJob) -> Job {
    Job {
        guid: j.guid.clone(),
        created_at: timestamp(j.created_at),
        updated_at: timestamp(j.updated_at),
        operation: j.operation.clone(),
        state: j.state.clone(),
        errors: j.errors.iter().map(super::error::ErrorItem::from).collect(),
        warnings: Vec::new(),
        links: JobLinks {
            this: Link::get(base, &format!("/v3/jobs/{}", j.guid)),
            space: j
                .operation
                .ends_with("apply_manifest")
                .then(|| Link::get(base, &format!("/v3/spaces/{}", j.resource_guid))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_whole_utc_seconds() {
        assert_eq!(timestamp(1_577_836_800_999_999_999), "2020-01-01T00:00:00Z");
        assert_eq!(usage_time(1_577_836_800_000_000_000), "2020-01-01T00:00:00+00:00");
    }

    #[test]
    fn a_process_has_cf_keys_and_an_http_endpoint_only_for_http() {
        let p = pb::CfProcess {
            guid: "g".into(),
            r#type: "web".into(),
            health_check: Some(pb::CfHealthCheck {
                r#type: "port".into(),
                endpoint: "/x".into(),
                ..Default::default()
            }),
            readiness_health_check: Some(pb::CfHealthCheck {
                r#type: "http".into(),
                endpoint: "/ready".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(process("http://h", &p, None, 0)).expect("json");
        assert_eq!(
            v["health_check"]["data"],
            json!({"timeout": null, "invocation_timeout": null, "interval": null})
        );
        assert_eq!(v["readiness_health_check"]["data"]["endpoint"], "/ready");
        assert!(v["readiness_health_check"]["data"].get("timeout").is_none());
        assert_eq!(v["relationships"]["revision"], Value::Null);
        assert_eq!(v["links"]["scale"]["method"], "POST");
        assert_eq!(v["user"], "vcap");
    }
}
