//! What every driver does for an instance before running it: host ports, the log file, the
//! instance environment, and the crash report when something fails.

use std::sync::Arc;

use capstan_proto::pb;

use super::DriverCtx;
use crate::logs::LogFile;
use crate::reporter::Report;

/// An instance with its ports allocated and its log file open.
pub struct Prepared {
    pub key: pb::ActualLrpKey,
    pub mappings: Vec<pb::PortMapping>,
    pub host_ports: Vec<u16>,
    pub log: Arc<LogFile>,
}

pub fn key(a: &pb::ActualLrp) -> pb::ActualLrpKey {
    pb::ActualLrpKey {
        process_guid: a.process_guid.clone(),
        index: a.index,
        instance_guid: a.instance_guid.clone(),
        cell_id: a.cell_id.clone(),
    }
}

pub fn crash(key: &pb::ActualLrpKey, reason: String) -> Report {
    Report::Crashed(pb::CrashedActualLrp {
        key: Some(key.clone()),
        reason,
    })
}

/// Allocates one host port per container port and opens the log file; on failure, the crash
/// reason (ports already taken are given back).
pub fn prepare(actual: &pb::ActualLrp, desired: &pb::DesiredLrp, ctx: &DriverCtx) -> Result<Prepared, String> {
    let key = key(actual);
    let mut mappings = Vec::new();
    for cp in &desired.ports {
        match ctx.ports.take() {
            Some(hp) => mappings.push(pb::PortMapping {
                container_port: *cp,
                host_port: u32::from(hp),
            }),
            None => {
                let taken: Vec<u16> = mappings
                    .iter()
                    .filter_map(|m| u16::try_from(m.host_port).ok())
                    .collect();
                ctx.ports.give_back(&taken);
                return Err("no free host port on the cell".into());
            }
        }
    }
    let host_ports: Vec<u16> = mappings
        .iter()
        .filter_map(|m| u16::try_from(m.host_port).ok())
        .collect();
    let name = format!("{}-{}-{}.log", actual.process_guid, actual.index, actual.instance_guid);
    match LogFile::create(&ctx.work_dir.join("logs").join(name)) {
        Ok(log) => Ok(Prepared {
            key,
            mappings,
            host_ports,
            log,
        }),
        Err(e) => {
            ctx.ports.give_back(&host_ports);
            Err(format!("could not open the log file: {e}"))
        }
    }
}

/// As [`prepare`], reporting the crash itself on failure; `None` means the instance is over.
pub async fn prepare_or_crash(
    actual: &pb::ActualLrp,
    desired: &pb::DesiredLrp,
    ctx: &DriverCtx,
    reports: &tokio::sync::mpsc::Sender<Report>,
) -> Option<Prepared> {
    match prepare(actual, desired, ctx) {
        Ok(p) => Some(p),
        Err(reason) => {
            let _ = reports.send(crash(&key(actual), reason)).await;
            None
        }
    }
}

/// Diego's instance environment. `port_inside` tells which port the process itself listens on:
/// the host port on a process cell (no NAT), the container port in a container.
pub fn environment(
    actual: &pb::ActualLrp,
    desired: &pb::DesiredLrp,
    ctx: &DriverCtx,
    mappings: &[pb::PortMapping],
    port_inside: fn(&pb::PortMapping) -> u32,
) -> Vec<(String, String)> {
    let ports_json = serde_json::to_string(
        &mappings
            .iter()
            .map(|m| serde_json::json!({"external": m.host_port, "internal": port_inside(m)}))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| "[]".into());
    let mut env: Vec<(String, String)> = desired.env.iter().map(|e| (e.name.clone(), e.value.clone())).collect();
    env.push(("INSTANCE_INDEX".into(), actual.index.to_string()));
    env.push(("INSTANCE_GUID".into(), actual.instance_guid.clone()));
    env.push(("CF_INSTANCE_INDEX".into(), actual.index.to_string()));
    env.push(("CF_INSTANCE_GUID".into(), actual.instance_guid.clone()));
    env.push(("CF_INSTANCE_IP".into(), ctx.address.clone()));
    env.push(("CF_INSTANCE_PORTS".into(), ports_json));
    if let Some(first) = mappings.first() {
        env.push(("PORT".into(), port_inside(first).to_string()));
        env.push(("CF_INSTANCE_PORT".into(), first.host_port.to_string()));
        env.push((
            "CF_INSTANCE_ADDR".into(),
            format!("{}:{}", ctx.address, first.host_port),
        ));
    }
    env
}
