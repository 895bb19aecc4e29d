//! The process driver: runs an instance's actions on the cell's host with Diego's instance
//! environment, decides CLAIMED → RUNNING with the monitor (or a port check when there are ports
//! and no monitor) within `start_timeout`, reports crashes, and stops by signalling the process
//! groups (TERM, then KILL after a grace period).
//!
//! Memory limits are recorded, not enforced: enforcing them needs cgroup v2 delegation, which
//! this driver does not set up (the cell says so at start).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_proto::pb;
use tokio::sync::{mpsc, oneshot};

use super::actions::Exec;
use super::instance::{self, Prepared};
use super::Report;

/// How often an unhealthy instance is checked (Diego: 0.5 s).
const CHECK_UNHEALTHY: Duration = Duration::from_millis(500);
/// How often a healthy instance is checked (Diego: 30 s).
const CHECK_HEALTHY: Duration = Duration::from_secs(30);
/// `start_timeout` when the DesiredLRP gives none.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a single monitor run may take.
const MONITOR_RUN_MAX: Duration = Duration::from_secs(10);

/// Host ports handed to instances, from a fixed range.
pub struct PortPool {
    range: std::ops::RangeInclusive<u16>,
    used: Mutex<BTreeSet<u16>>,
    bind_ip: String,
}

impl PortPool {
    pub fn new(range: std::ops::RangeInclusive<u16>, bind_ip: &str) -> Self {
        Self {
            range,
            used: Mutex::new(BTreeSet::new()),
            bind_ip: bind_ip.to_owned(),
        }
    }

    /// A port no instance holds and nothing on the host listens on.
    pub fn take(&self) -> Option<u16> {
        let mut used = self.used.lock().ok()?;
        let port = self
            .range
            .clone()
            .find(|p| !used.contains(p) && TcpListener::bind((self.bind_ip.as_str(), *p)).is_ok())?;
        used.insert(port);
        Some(port)
    }

    pub fn give_back(&self, ports: &[u16]) {
        if let Ok(mut used) = self.used.lock() {
            for p in ports {
                used.remove(p);
            }
        }
    }
}

/// What the process driver needs from its cell.
#[derive(Clone)]
pub struct ProcessCtx {
    pub cell_id: String,
    pub address: String,
    pub work_dir: PathBuf,
    pub ports: Arc<PortPool>,
    pub stop_grace: Duration,
}

/// Runs one instance until it crashes or is cancelled (the cell no longer has it).
pub async fn run(
    assignment: pb::Assignment,
    ctx: ProcessCtx,
    reports: mpsc::Sender<Report>,
    mut cancel: oneshot::Receiver<()>,
) {
    let Some(actual) = assignment.actual else {
        return;
    };
    let desired = assignment.desired.unwrap_or_default();
    let Prepared {
        key: k,
        mappings,
        host_ports,
        log,
    } = match instance::prepare_or_crash(&actual, &desired, &ctx, &reports).await {
        Some(p) => p,
        None => return,
    };
    let crash = |reason: String| instance::crash(&k, reason);
    let dir = ctx.work_dir.join("instances").join(format!(
        "{}-{}-{}",
        actual.process_guid, actual.index, actual.instance_guid
    ));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        let _ = reports
            .send(crash(format!("could not create the instance directory: {e}")))
            .await;
        ctx.ports.give_back(&host_ports);
        return;
    }
    // No NAT on a process cell: the instance listens on its host port.
    let env = instance::environment(&actual, &desired, &ctx, &mappings, |m| m.host_port);
    let exec = Exec {
        env,
        log: log.clone(),
        groups: Arc::new(Mutex::new(Vec::new())),
        default_dir: dir.clone(),
    };
    log.line(&format!(
        "[cell {}] starting {} index {} instance {}",
        ctx.cell_id, actual.process_guid, actual.index, actual.instance_guid
    ));

    let outcome = supervise(&desired, &exec, &ctx, &mappings, &k, &reports, &mut cancel).await;
    exec.stop_all(ctx.stop_grace).await;
    ctx.ports.give_back(&host_ports);
    if let Some(reason) = outcome {
        log.line(&format!("[cell {}] crashed: {reason}", ctx.cell_id));
        let _ = reports.send(crash(reason)).await;
    } else {
        log.line(&format!("[cell {}] stopped", ctx.cell_id));
    }
}

/// Runs setup, the action and the health checks; `Some(reason)` is a crash, `None` a stop.
async fn supervise(
    desired: &pb::DesiredLrp,
    exec: &Exec,
    ctx: &ProcessCtx,
    mappings: &[pb::PortMapping],
    k: &pb::ActualLrpKey,
    reports: &mpsc::Sender<Report>,
    cancel: &mut oneshot::Receiver<()>,
) -> Option<String> {
    if let Some(setup) = &desired.setup {
        tokio::select! {
            r = exec.run(setup) => if let Err(e) = r { return Some(format!("setup failed: {e}")) },
            _ = &mut *cancel => return None,
        }
    }
    let Some(action) = &desired.action else {
        return Some("the DesiredLRP has no action".into());
    };
    let main = exec.run(action);
    tokio::pin!(main);
    let start_timeout = if desired.start_timeout == 0 {
        DEFAULT_START_TIMEOUT
    } else {
        Duration::from_secs(u64::from(desired.start_timeout))
    };
    let started_at = tokio::time::Instant::now();
    let mut healthy = false;
    let mut main_done = false;
    let first_port = mappings.first().map(|m| m.host_port);
    loop {
        let wait = if healthy { CHECK_HEALTHY } else { CHECK_UNHEALTHY };
        tokio::select! {
            r = &mut main, if !main_done => {
                match r {
                    Err(e) => return Some(e),
                    // Exited successfully: treated as a daemon, monitoring continues (Diego).
                    Ok(()) => main_done = true,
                }
            }
            _ = &mut *cancel => return None,
            _ = tokio::time::sleep(wait) => {
                let ok = check(desired, exec, &ctx.address, first_port).await;
                match (healthy, ok) {
                    (false, true) => {
                        healthy = true;
                        let _ = reports
                            .send(Report::Started(pb::StartedActualLrp {
                                key: Some(k.clone()),
                                address: ctx.address.clone(),
                                ports: mappings.to_vec(),
                            }))
                            .await;
                    }
                    (true, false) => return Some("the health check failed".into()),
                    (false, false) if started_at.elapsed() > start_timeout => {
                        return Some(format!("Instance never healthy after {}s", start_timeout.as_secs()));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One health check: the monitor action, else a TCP connect to the first port, else "started".
async fn check(desired: &pb::DesiredLrp, exec: &Exec, address: &str, port: Option<u32>) -> bool {
    if let Some(monitor) = &desired.monitor {
        let probe = Exec {
            groups: Arc::new(Mutex::new(Vec::new())),
            ..exec.clone()
        };
        let ok = matches!(
            tokio::time::timeout(MONITOR_RUN_MAX, probe.run(monitor)).await,
            Ok(Ok(()))
        );
        probe.stop_all(Duration::from_millis(100)).await;
        return ok;
    }
    match port {
        Some(p) => matches!(
            tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect((address, u16::try_from(p).unwrap_or(0)))
            )
            .await,
            Ok(Ok(_))
        ),
        None => true,
    }
}
