//! DesiredLRP requests and responses, and ActualLRP responses.

use std::collections::BTreeMap;

use capstan_proto::pb;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::*;
use crate::common::body::null_default;

/// DesiredLRPCreateRequest.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
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
    #[schema(value_type = Object)]
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

impl DesiredLrpCreate {
    /// Refuses action trees deeper than [`capstan_proto::ACTION_DEPTH_MAX`] before they are
    /// encoded: a much deeper one could not even be decoded by the node.
    pub fn check_action_depth(&self) -> Result<(), String> {
        let max = capstan_proto::ACTION_DEPTH_MAX;
        let fields = [
            ("setup", &self.setup),
            ("action", &self.action),
            ("monitor", &self.monitor),
        ];
        let too_deep: Vec<String> = fields
            .iter()
            .filter(|(_, a)| a.as_ref().is_some_and(|a| a.depth() > max))
            .map(|(name, _)| format!("Invalid field: {name} (actions nest at most {max} deep)"))
            .collect();
        if too_deep.is_empty() {
            Ok(())
        } else {
            Err(too_deep.join(", "))
        }
    }
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
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct DesiredLrpUpdate {
    #[serde(default)]
    pub instances: Option<i32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
    #[schema(value_type = Object)]
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PortMapping {
    pub container_port: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub host_port: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// ActualLRPResponse, in Go's field order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
