//! Receptor JSON shapes (spec/receptor.md §3) and their mapping to and from capstan.v1 records.
//! Requests decode like Go's encoding/json; responses keep Go's field order and omitempty rules.

use std::collections::BTreeMap;

use capstan_proto::pb;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::body::null_default;

fn is_empty_str(s: &str) -> bool {
    s.is_empty()
}

// ---------- nested types ----------

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct EnvVar {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub value: String,
}

impl From<EnvVar> for pb::EnvironmentVariable {
    fn from(e: EnvVar) -> Self {
        pb::EnvironmentVariable {
            name: e.name,
            value: e.value,
        }
    }
}

impl From<&pb::EnvironmentVariable> for EnvVar {
    fn from(e: &pb::EnvironmentVariable) -> Self {
        EnvVar {
            name: e.name.clone(),
            value: e.value.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct PortRange {
    #[serde(default, deserialize_with = "null_default")]
    pub start: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub end: u32,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct IcmpInfo {
    #[serde(default, deserialize_with = "null_default", rename = "type")]
    pub kind: i32,
    #[serde(default, deserialize_with = "null_default")]
    pub code: i32,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct SecurityGroupRule {
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub protocol: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_info: Option<IcmpInfo>,
    #[serde(default, deserialize_with = "null_default")]
    pub log: bool,
}

impl From<SecurityGroupRule> for pb::SecurityGroupRule {
    fn from(r: SecurityGroupRule) -> Self {
        pb::SecurityGroupRule {
            protocol: r.protocol,
            destinations: r.destinations,
            ports: r.ports,
            port_range: r.port_range.map(|p| pb::PortRange {
                start: p.start,
                end: p.end,
            }),
            icmp_info: r.icmp_info.map(|i| pb::IcmpInfo {
                r#type: i.kind,
                code: i.code,
            }),
            log: r.log,
        }
    }
}

impl From<&pb::SecurityGroupRule> for SecurityGroupRule {
    fn from(r: &pb::SecurityGroupRule) -> Self {
        SecurityGroupRule {
            protocol: r.protocol.clone(),
            destinations: r.destinations.clone(),
            ports: r.ports.clone(),
            port_range: r.port_range.map(|p| PortRange {
                start: p.start,
                end: p.end,
            }),
            icmp_info: r.icmp_info.map(|i| IcmpInfo {
                kind: i.r#type,
                code: i.code,
            }),
            log: r.log,
        }
    }
}

// ---------- actions ----------

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ResourceLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct DownloadAction {
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub artifact: String,
    #[serde(default, deserialize_with = "null_default")]
    pub from: String,
    #[serde(default, deserialize_with = "null_default")]
    pub to: String,
    #[serde(default, deserialize_with = "null_default")]
    pub cache_key: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
    #[serde(default, deserialize_with = "null_default")]
    pub user: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct UploadAction {
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub artifact: String,
    #[serde(default, deserialize_with = "null_default")]
    pub from: String,
    #[serde(default, deserialize_with = "null_default")]
    pub to: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
    #[serde(default, deserialize_with = "null_default")]
    pub user: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RunAction {
    #[serde(default, deserialize_with = "null_default")]
    pub path: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub dir: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<ResourceLimits>,
    #[serde(default, deserialize_with = "null_default")]
    pub user: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct TimeoutAction {
    pub action: Option<Box<Action>>,
    /// nanoseconds
    #[serde(default, deserialize_with = "null_default")]
    pub timeout: i64,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct EmitProgressAction {
    pub action: Option<Box<Action>>,
    #[serde(default, deserialize_with = "null_default")]
    pub start_message: String,
    #[serde(default, deserialize_with = "null_default")]
    pub success_message: String,
    #[serde(default, deserialize_with = "null_default")]
    pub failure_message_prefix: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct TryAction {
    pub action: Option<Box<Action>>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ActionList {
    /// `null` elements are kept so that validation can name their index.
    #[serde(default, deserialize_with = "null_default")]
    pub actions: Vec<Option<Action>>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
}

/// An action: an object with exactly one of these keys (the first present one wins).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Action {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emit_progress: Option<EmitProgressAction>,
    #[serde(default, rename = "try", skip_serializing_if = "Option::is_none")]
    pub try_: Option<TryAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<ActionList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<ActionList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codependent: Option<ActionList>,
}

fn list_to_pb(l: ActionList) -> pb::ActionList {
    pb::ActionList {
        actions: l
            .actions
            .into_iter()
            .map(|a| a.map(pb::Action::from).unwrap_or_default())
            .collect(),
        log_source: l.log_source,
    }
}

fn boxed_to_pb(a: Option<Box<Action>>) -> Option<Box<pb::Action>> {
    a.map(|a| Box::new(pb::Action::from(*a)))
}

impl From<Action> for pb::Action {
    fn from(a: Action) -> Self {
        use pb::action::Kind;
        let kind = if let Some(d) = a.download {
            Some(Kind::Download(pb::DownloadAction {
                artifact: d.artifact,
                from: d.from,
                to: d.to,
                cache_key: d.cache_key,
                log_source: d.log_source,
                user: d.user,
            }))
        } else if let Some(u) = a.upload {
            Some(Kind::Upload(pb::UploadAction {
                artifact: u.artifact,
                from: u.from,
                to: u.to,
                log_source: u.log_source,
                user: u.user,
            }))
        } else if let Some(r) = a.run {
            Some(Kind::Run(pb::RunAction {
                path: r.path,
                args: r.args,
                dir: r.dir,
                env: r.env.into_iter().map(Into::into).collect(),
                resource_limits: r.resource_limits.map(|l| pb::ResourceLimits { nofile: l.nofile }),
                user: r.user,
                log_source: r.log_source,
            }))
        } else if let Some(t) = a.timeout {
            Some(Kind::Timeout(Box::new(pb::TimeoutAction {
                action: boxed_to_pb(t.action),
                timeout: t.timeout,
                log_source: t.log_source,
            })))
        } else if let Some(e) = a.emit_progress {
            Some(Kind::EmitProgress(Box::new(pb::EmitProgressAction {
                action: boxed_to_pb(e.action),
                start_message: e.start_message,
                success_message: e.success_message,
                failure_message_prefix: e.failure_message_prefix,
                log_source: e.log_source,
            })))
        } else if let Some(t) = a.try_ {
            Some(Kind::Try(Box::new(pb::TryAction {
                action: boxed_to_pb(t.action),
                log_source: t.log_source,
            })))
        } else if let Some(l) = a.parallel {
            Some(Kind::Parallel(list_to_pb(l)))
        } else if let Some(l) = a.serial {
            Some(Kind::Serial(list_to_pb(l)))
        } else {
            a.codependent.map(|l| Kind::Codependent(list_to_pb(l)))
        };
        pb::Action { kind }
    }
}

fn list_from_pb(l: &pb::ActionList) -> ActionList {
    ActionList {
        actions: l
            .actions
            .iter()
            .map(|a| a.kind.as_ref().map(|_| Action::from(a)))
            .collect(),
        log_source: l.log_source.clone(),
    }
}

fn boxed_from_pb(a: &Option<Box<pb::Action>>) -> Option<Box<Action>> {
    a.as_ref().map(|a| Box::new(Action::from(a.as_ref())))
}

impl From<&pb::Action> for Action {
    fn from(a: &pb::Action) -> Self {
        use pb::action::Kind;
        let mut out = Action::default();
        match &a.kind {
            None => {}
            Some(Kind::Download(d)) => {
                out.download = Some(DownloadAction {
                    artifact: d.artifact.clone(),
                    from: d.from.clone(),
                    to: d.to.clone(),
                    cache_key: d.cache_key.clone(),
                    log_source: d.log_source.clone(),
                    user: d.user.clone(),
                })
            }
            Some(Kind::Upload(u)) => {
                out.upload = Some(UploadAction {
                    artifact: u.artifact.clone(),
                    from: u.from.clone(),
                    to: u.to.clone(),
                    log_source: u.log_source.clone(),
                    user: u.user.clone(),
                })
            }
            Some(Kind::Run(r)) => {
                out.run = Some(RunAction {
                    path: r.path.clone(),
                    args: r.args.clone(),
                    dir: r.dir.clone(),
                    env: r.env.iter().map(Into::into).collect(),
                    resource_limits: r.resource_limits.map(|l| ResourceLimits { nofile: l.nofile }),
                    user: r.user.clone(),
                    log_source: r.log_source.clone(),
                })
            }
            Some(Kind::Timeout(t)) => {
                out.timeout = Some(TimeoutAction {
                    action: boxed_from_pb(&t.action),
                    timeout: t.timeout,
                    log_source: t.log_source.clone(),
                })
            }
            Some(Kind::EmitProgress(e)) => {
                out.emit_progress = Some(EmitProgressAction {
                    action: boxed_from_pb(&e.action),
                    start_message: e.start_message.clone(),
                    success_message: e.success_message.clone(),
                    failure_message_prefix: e.failure_message_prefix.clone(),
                    log_source: e.log_source.clone(),
                })
            }
            Some(Kind::Try(t)) => {
                out.try_ = Some(TryAction {
                    action: boxed_from_pb(&t.action),
                    log_source: t.log_source.clone(),
                })
            }
            Some(Kind::Parallel(l)) => out.parallel = Some(list_from_pb(l)),
            Some(Kind::Serial(l)) => out.serial = Some(list_from_pb(l)),
            Some(Kind::Codependent(l)) => out.codependent = Some(list_from_pb(l)),
        }
        out
    }
}

// ---------- DesiredLRP ----------

/// DesiredLRPCreateRequest.
#[derive(Debug, Default, Deserialize)]
pub struct DesiredLrpCreate {
    #[serde(default, deserialize_with = "null_default")]
    pub process_guid: String,
    #[serde(default, deserialize_with = "null_default")]
    pub domain: String,
    #[serde(default, deserialize_with = "null_default")]
    pub rootfs: String,
    #[serde(default, deserialize_with = "null_default")]
    pub instances: i32,
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub setup: Option<Action>,
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub monitor: Option<Action>,
    #[serde(default, deserialize_with = "null_default")]
    pub start_timeout: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub disk_mb: i32,
    #[serde(default, deserialize_with = "null_default")]
    pub memory_mb: i32,
    #[serde(default, deserialize_with = "null_default")]
    pub cpu_weight: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub privileged: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<u16>,
    #[serde(default, deserialize_with = "null_default")]
    pub routes: BTreeMap<String, Box<RawValue>>,
    #[serde(default, deserialize_with = "null_default")]
    pub log_guid: String,
    #[serde(default, deserialize_with = "null_default")]
    pub log_source: String,
    #[serde(default, deserialize_with = "null_default")]
    pub metrics_guid: String,
    #[serde(default, deserialize_with = "null_default")]
    pub annotation: String,
    #[serde(default, deserialize_with = "null_default")]
    pub egress_rules: Vec<SecurityGroupRule>,
}

fn routes_to_pb(routes: BTreeMap<String, Box<RawValue>>) -> BTreeMap<String, String> {
    routes.into_iter().map(|(k, v)| (k, v.get().to_owned())).collect()
}

impl From<DesiredLrpCreate> for pb::DesiredLrp {
    fn from(d: DesiredLrpCreate) -> Self {
        pb::DesiredLrp {
            process_guid: d.process_guid,
            domain: d.domain,
            rootfs: d.rootfs,
            instances: d.instances,
            env: d.env.into_iter().map(Into::into).collect(),
            setup: d.setup.map(Into::into),
            action: d.action.map(Into::into),
            monitor: d.monitor.map(Into::into),
            start_timeout: d.start_timeout,
            disk_mb: d.disk_mb,
            memory_mb: d.memory_mb,
            cpu_weight: d.cpu_weight,
            privileged: d.privileged,
            ports: d.ports.into_iter().map(u32::from).collect(),
            routes: routes_to_pb(d.routes),
            log_guid: d.log_guid,
            log_source: d.log_source,
            metrics_guid: d.metrics_guid,
            annotation: d.annotation,
            egress_rules: d.egress_rules.into_iter().map(Into::into).collect(),
            modification_tag: None,
        }
    }
}

/// DesiredLRPUpdateRequest: each key applies only when present and non-null.
#[derive(Debug, Default, Deserialize)]
pub struct DesiredLrpUpdate {
    #[serde(default)]
    pub instances: Option<i32>,
    #[serde(default)]
    pub routes: Option<BTreeMap<String, Box<RawValue>>>,
    #[serde(default)]
    pub annotation: Option<String>,
}

impl From<DesiredLrpUpdate> for pb::DesiredLrpUpdate {
    fn from(u: DesiredLrpUpdate) -> Self {
        pb::DesiredLrpUpdate {
            instances: u.instances,
            has_routes: u.routes.is_some(),
            routes: u.routes.map(routes_to_pb).unwrap_or_default(),
            annotation: u.annotation,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ModificationTag {
    pub epoch: String,
    pub index: u32,
}

impl From<Option<&pb::ModificationTag>> for ModificationTag {
    fn from(t: Option<&pb::ModificationTag>) -> Self {
        let t = t.cloned().unwrap_or_default();
        ModificationTag {
            epoch: t.epoch,
            index: t.index,
        }
    }
}

/// DesiredLRPResponse, in Go's field order.
#[derive(Debug, Serialize)]
pub struct DesiredLrpResponse {
    pub process_guid: String,
    pub domain: String,
    pub rootfs: String,
    pub instances: i32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    pub setup: Option<Action>,
    pub action: Option<Action>,
    pub monitor: Option<Action>,
    pub start_timeout: u32,
    pub disk_mb: i32,
    pub memory_mb: i32,
    pub cpu_weight: u32,
    pub privileged: bool,
    pub ports: Vec<u32>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, Box<RawValue>>,
    pub log_guid: String,
    pub log_source: String,
    pub metrics_guid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub annotation: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress_rules: Vec<SecurityGroupRule>,
    pub modification_tag: ModificationTag,
}

impl From<pb::DesiredLrp> for DesiredLrpResponse {
    fn from(d: pb::DesiredLrp) -> Self {
        let routes = d
            .routes
            .into_iter()
            .filter_map(|(k, v)| RawValue::from_string(v).ok().map(|v| (k, v)))
            .collect();
        DesiredLrpResponse {
            modification_tag: d.modification_tag.as_ref().into(),
            process_guid: d.process_guid,
            domain: d.domain,
            rootfs: d.rootfs,
            instances: d.instances,
            env: d.env.iter().map(Into::into).collect(),
            setup: d.setup.as_ref().map(Into::into),
            action: d.action.as_ref().map(Into::into),
            monitor: d.monitor.as_ref().map(Into::into),
            start_timeout: d.start_timeout,
            disk_mb: d.disk_mb,
            memory_mb: d.memory_mb,
            cpu_weight: d.cpu_weight,
            privileged: d.privileged,
            ports: d.ports,
            routes,
            log_guid: d.log_guid,
            log_source: d.log_source,
            metrics_guid: d.metrics_guid,
            annotation: d.annotation,
            egress_rules: d.egress_rules.iter().map(Into::into).collect(),
        }
    }
}

// ---------- ActualLRP ----------

#[derive(Debug, Serialize)]
pub struct PortMapping {
    pub container_port: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub host_port: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// ActualLRPResponse, in Go's field order.
#[derive(Debug, Serialize)]
pub struct ActualLrpResponse {
    pub process_guid: String,
    pub instance_guid: String,
    pub cell_id: String,
    pub domain: String,
    pub index: u32,
    pub address: String,
    pub ports: Vec<PortMapping>,
    pub state: &'static str,
    pub crash_count: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub crash_reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub placement_error: String,
    pub since: i64,
    pub evacuating: bool,
    pub modification_tag: ModificationTag,
}

pub fn state_name(state: i32) -> &'static str {
    match pb::ActualLrpState::try_from(state) {
        Ok(pb::ActualLrpState::Unclaimed) => "UNCLAIMED",
        Ok(pb::ActualLrpState::Claimed) => "CLAIMED",
        Ok(pb::ActualLrpState::Running) => "RUNNING",
        Ok(pb::ActualLrpState::Crashed) => "CRASHED",
        _ => "INVALID",
    }
}

impl From<pb::ActualLrp> for ActualLrpResponse {
    fn from(a: pb::ActualLrp) -> Self {
        ActualLrpResponse {
            modification_tag: a.modification_tag.as_ref().into(),
            state: state_name(a.state),
            process_guid: a.process_guid,
            instance_guid: a.instance_guid,
            cell_id: a.cell_id,
            domain: a.domain,
            index: a.index,
            address: a.address,
            ports: a
                .ports
                .iter()
                .map(|p| PortMapping {
                    container_port: p.container_port,
                    host_port: p.host_port,
                })
                .collect(),
            crash_count: a.crash_count,
            crash_reason: a.crash_reason,
            placement_error: a.placement_error,
            since: a.since,
            evacuating: a.evacuating,
        }
    }
}

// ---------- cells ----------

#[derive(Debug, Serialize)]
pub struct CellCapacity {
    pub memory_mb: i32,
    pub disk_mb: i32,
    pub containers: i32,
}

/// CellResponse (spec/receptor.md §3.8).
#[derive(Debug, Serialize)]
pub struct CellResponse {
    pub cell_id: String,
    pub zone: String,
    pub capacity: CellCapacity,
    pub rootfs_providers: BTreeMap<String, Vec<String>>,
}

impl From<pb::Cell> for CellResponse {
    fn from(c: pb::Cell) -> Self {
        let cap = c.capacity.unwrap_or_default();
        let mut providers = BTreeMap::new();
        providers.insert("preloaded".to_owned(), c.preloaded_stacks);
        if c.docker {
            providers.insert("docker".to_owned(), Vec::new());
        }
        CellResponse {
            cell_id: c.cell_id,
            zone: c.zone,
            capacity: CellCapacity {
                memory_mb: cap.memory_mb,
                disk_mb: cap.disk_mb,
                containers: cap.containers,
            },
            rootfs_providers: providers,
        }
    }
}

// ---------- freshness ----------

/// FreshDomainBumpRequest / FreshDomainResponse. `ttl_in_seconds` is signed here so a
/// negative value is refused with InvalidDomain rather than as undecodable JSON.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct FreshDomain {
    #[serde(default, deserialize_with = "null_default")]
    pub domain: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ttl_in_seconds: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_decodes_like_go_and_round_trips() {
        let json = r#"{"process_guid":"pg","domain":"d","rootfs":"preloaded:cflinuxfs4","instances":2,
            "env":null,"unknown_field":1,"annotation":null,
            "action":{"serial":{"actions":[{"run":{"path":"sh","args":["-c","x"],"user":"vcap"}},null]}},
            "routes":{"cf-router":[{"hostnames":["a.example"],"port":8080}]},"ports":[8080]}"#;
        let req: DesiredLrpCreate = serde_json::from_str(json).expect("decodes");
        let pbd: pb::DesiredLrp = req.into();
        assert_eq!(pbd.instances, 2);
        let list = match pbd.action.as_ref().and_then(|a| a.kind.clone()) {
            Some(pb::action::Kind::Serial(l)) => l,
            other => panic!("expected serial, got {other:?}"),
        };
        assert_eq!(list.actions.len(), 2);
        assert!(list.actions[1].kind.is_none());
        let out = serde_json::to_string(&DesiredLrpResponse::from(pbd)).expect("encodes");
        assert!(out.starts_with(r#"{"process_guid":"pg","domain":"d","rootfs":"preloaded:cflinuxfs4","instances":2,"setup":null,"action":{"serial":{"actions":[{"run":{"path":"sh","args":["-c","x"],"user":"vcap"}},null]}},"monitor":null,"#), "{out}");
        assert!(
            out.contains(
                r#""ports":[8080],"routes":{"cf-router":[{"hostnames":["a.example"],"port":8080}]},"log_guid":"""#
            ),
            "{out}"
        );
        assert!(
            !out.contains("annotation") && !out.contains("egress_rules") && !out.contains("\"env\""),
            "{out}"
        );
    }

    #[test]
    fn type_mismatch_is_an_error() {
        assert!(serde_json::from_str::<DesiredLrpCreate>(r#"{"instances":"two"}"#).is_err());
        assert!(serde_json::from_str::<DesiredLrpCreate>(r#"{"ports":[70000]}"#).is_err());
        assert!(serde_json::from_str::<DesiredLrpCreate>("").is_err());
    }

    #[test]
    fn actual_lrp_json_shape() {
        let a = pb::ActualLrp {
            process_guid: "pg".into(),
            index: 1,
            domain: "d".into(),
            state: pb::ActualLrpState::Unclaimed as i32,
            since: 5,
            modification_tag: Some(pb::ModificationTag {
                epoch: "e".into(),
                index: 0,
            }),
            ..Default::default()
        };
        let out = serde_json::to_string(&ActualLrpResponse::from(a)).expect("encodes");
        assert_eq!(
            out,
            r#"{"process_guid":"pg","instance_guid":"","cell_id":"","domain":"d","index":1,"address":"","ports":[],"state":"UNCLAIMED","crash_count":0,"since":5,"evacuating":false,"modification_tag":{"epoch":"e","index":0}}"#
        );
    }
}
