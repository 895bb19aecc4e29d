//! CF's process stats (spec §3.1): one object per instance index, with the usage its cell
//! measured (`{}` when the cell could not be asked), written from typed structs the API document
//! describes.

use capstan_proto::pb;
use serde::Serialize;
use utoipa::ToSchema;

use super::present::usage_time;

/// `usage` of an instance: all of it, or `{}` when its cell could not be asked.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Usage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Always null when present (no CPU entitlement).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_entitlement: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_rate: Option<u64>,
}

/// `{"external", "internal", ...}`: the host port and the port inside.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstancePort {
    pub external: u32,
    pub internal: u32,
    pub external_tls_proxy_port: Option<u32>,
    pub internal_tls_proxy_port: Option<u32>,
}

/// One instance's stats (§3.1). An index with no instance behind it has the first fields only.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceStats {
    #[serde(rename = "type")]
    pub kind: String,
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_guid: Option<String>,
    pub state: String,
    pub routable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_internal_ip: Option<String>,
    pub uptime: i64,
    /// Null when the cell could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_quota: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_quota: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_rate_limit: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fds_quota: Option<u32>,
    pub isolation_segment: Option<String>,
    pub details: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_ports: Option<Vec<InstancePort>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// `{"resources": [one per instance index]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub resources: Vec<InstanceStats>,
}

/// Open file descriptors an instance may have (CF's default).
const FDS_QUOTA: u32 = 16384;

/// One stats object per instance index (§3.1); `usage` is `{}` when a cell could not be asked.
pub fn stats(s: &pb::CfProcessStats, now_ns: i64) -> Stats {
    let p = s.process.clone().unwrap_or_default();
    const MIB: i64 = 1024 * 1024;
    let resources = s
        .instances
        .iter()
        .map(|i| {
            let mut out = InstanceStats {
                kind: p.r#type.clone(),
                index: i.index,
                instance_guid: None,
                state: i.state.clone(),
                routable: None,
                host: None,
                instance_internal_ip: None,
                uptime: 0,
                mem_quota: None,
                disk_quota: None,
                log_rate_limit: None,
                fds_quota: None,
                isolation_segment: None,
                details: None,
                instance_ports: None,
                usage: None,
            };
            if !i.found {
                return out;
            }
            let measured = |time_ns: i64, cpu: f64, mem: u64, disk: u64| Usage {
                time: Some(usage_time(time_ns)),
                cpu: Some(cpu),
                cpu_entitlement: Some(None),
                mem: Some(mem),
                disk: Some(disk),
                log_rate: Some(0),
            };
            let usage = match (&i.usage, s.usage_unavailable) {
                (Some(u), _) => measured(u.time_unix_ns, u.cpu, u.mem_bytes, u.disk_bytes),
                (None, true) => Usage::default(),
                (None, false) => measured(now_ns, 0.0, 0, 0),
            };
            let known = !(s.usage_unavailable && i.usage.is_none());
            let quota = |v: i64| Some(known.then_some(v));
            out.instance_guid = Some(i.instance_guid.clone());
            out.host = Some(i.host.clone());
            out.instance_internal_ip = Some(i.host.clone());
            out.uptime = i.uptime;
            out.mem_quota = quota(i64::from(p.memory_in_mb) * MIB);
            out.disk_quota = quota(i64::from(p.disk_in_mb) * MIB);
            out.log_rate_limit = quota(p.log_rate_limit_in_bytes_per_second);
            out.fds_quota = Some(FDS_QUOTA);
            out.details = (!i.details.is_empty()).then(|| i.details.clone());
            out.instance_ports = Some(
                i.ports
                    .iter()
                    .map(|m| InstancePort {
                        external: m.host_port,
                        internal: m.container_port,
                        external_tls_proxy_port: None,
                        internal_tls_proxy_port: None,
                    })
                    .collect(),
            );
            out.usage = Some(usage);
            out
        })
        .collect();
    Stats { resources }
}
