//! The process driver: runs an instance's actions on the cell's host with Diego's instance
//! environment, decides CLAIMED → RUNNING with the monitor (or a port check when there are ports
//! and no monitor) within `start_timeout`, reports crashes, and stops by signalling the process
//! groups (TERM, then KILL after a grace period).
//!
//! Memory limits are recorded, not enforced: enforcing them needs cgroup v2 delegation, which
//! this driver does not set up (the cell says so at start).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_proto::pb;
use tokio::sync::{mpsc, oneshot};

use super::instance::{self, Prepared};
use super::supervise::{MainEnded, Supervised, CHECK_HEALTHY};
use super::DriverCtx;
use crate::actions::Exec;
use crate::reporter::Report;

/// Longest a single monitor run may take.
const MONITOR_RUN_MAX: Duration = Duration::from_secs(10);

/// Runs one instance until it crashes or is cancelled (the cell no longer has it).
pub async fn run(
    assignment: pb::Assignment,
    ctx: DriverCtx,
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
    let _measured = ctx
        .usage
        .register(&actual.instance_guid, exec.groups.clone(), Some(dir.clone()));
    log.line(&format!(
        "[cell {}] starting {} index {} instance {}",
        ctx.cell_id, actual.process_guid, actual.index, actual.instance_guid
    ));

    let sup = Supervised {
        desired: &desired,
        ctx: &ctx,
        mappings: &mappings,
        key: &k,
        reports: &reports,
        healthy_recheck: Some(CHECK_HEALTHY),
    };
    let outcome = supervise(&sup, &exec, &mut cancel).await;
    exec.stop_all(ctx.stop_grace).await;
    ctx.ports.give_back(&host_ports);
    if let Some(reason) = outcome {
        log.line(&format!("[cell {}] crashed: {reason}", ctx.cell_id));
        let _ = reports.send(crash(reason)).await;
    } else {
        log.line(&format!("[cell {}] stopped", ctx.cell_id));
    }
}

/// Runs setup, then the action under supervision; `Some(reason)` is a crash, `None` a stop.
async fn supervise(sup: &Supervised<'_>, exec: &Exec, cancel: &mut oneshot::Receiver<()>) -> Option<String> {
    if let Some(setup) = &sup.desired.setup {
        tokio::select! {
            r = exec.run(setup) => if let Err(e) = r { return Some(format!("setup failed: {e}")) },
            _ = &mut *cancel => return None,
        }
    }
    let Some(action) = &sup.desired.action else {
        return Some("the DesiredLRP has no action".into());
    };
    let main = async {
        match exec.run(action).await {
            Err(e) => MainEnded::Crashed(e),
            Ok(()) => MainEnded::Continue,
        }
    };
    sup.run(main, || check(sup, exec), cancel).await
}

/// One health check: the monitor action, else the port check.
async fn check(sup: &Supervised<'_>, exec: &Exec) -> bool {
    let Some(monitor) = &sup.desired.monitor else {
        return sup.port_check().await;
    };
    let probe = Exec {
        groups: Arc::new(Mutex::new(Vec::new())),
        ..exec.clone()
    };
    let ok = matches!(
        tokio::time::timeout(MONITOR_RUN_MAX, probe.run(monitor)).await,
        Ok(Ok(()))
    );
    probe.stop_all(Duration::from_millis(100)).await;
    ok
}
