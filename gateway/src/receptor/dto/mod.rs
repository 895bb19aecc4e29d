//! Receptor JSON shapes (spec/receptor.md §3) and their mapping to and from capstan.v1 records.
//! Requests decode like Go's encoding/json; responses keep Go's field order and omitempty rules.

use capstan_proto::pb;
use serde::{Deserialize, Serialize};

use crate::common::body::null_default;

mod actions;
mod cells;
mod lrp;
mod tasks;

pub use actions::*;
pub use cells::*;
pub use lrp::*;
pub use tasks::*;

pub(super) fn is_empty_str(s: &str) -> bool {
    s.is_empty()
}

// ---------- nested types ----------

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct PortRange {
    #[serde(default, deserialize_with = "null_default")]
    pub start: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub end: u32,
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct IcmpInfo {
    #[serde(default, deserialize_with = "null_default", rename = "type")]
    pub kind: i32,
    #[serde(default, deserialize_with = "null_default")]
    pub code: i32,
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
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
