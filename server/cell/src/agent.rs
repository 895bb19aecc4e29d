//! The agent of one cell: registers, follows its assignment set, starts what is assigned through
//! a driver (instances and task runs), stops what is no longer assigned or was asked to stop, and
//! reconnects by itself across leader changes.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use capstan_proto::pb::{self, ActualLrpState};
use tokio::sync::{mpsc, oneshot, watch};

use super::drivers::{self, instance, DriverCtx, PortPool};
use super::reporter::{connect, Report, RECONNECT_BACKOFF};
use super::{docker_engine, CellConfig, Mode};

type InstanceKey = (String, u32, String);
/// (run_id, attempt): one placement of a run.
type RunKey = (String, u32);

struct Running {
    cancel: Option<oneshot::Sender<()>>,
}

impl Running {
    fn cancel(&mut self) {
        if let Some(c) = self.cancel.take() {
            let _ = c.send(());
        }
    }
}

/// The agent of one cell.
struct Agent {
    cfg: CellConfig,
    reports: mpsc::Sender<Report>,
    running: HashMap<InstanceKey, Running>,
    runs: HashMap<RunKey, Running>,
    process: Option<DriverCtx>,
    docker: Option<Arc<bollard::Docker>>,
}

impl Agent {
    /// Starts the runs placed here, kills those asked to stop or no longer placed here.
    async fn reconcile_runs(&mut self, runs: Vec<pb::TaskRun>) {
        use pb::{TaskRunReportKind as K, TaskRunStatus as S};
        let mut wanted: HashMap<RunKey, pb::TaskRun> = HashMap::new();
        for r in runs {
            let active = matches!(S::try_from(r.status), Ok(S::Pending | S::Running));
            if active && r.cell_id == self.cfg.cell.cell_id {
                wanted.insert((r.run_id.clone(), r.attempt), r);
            }
        }
        self.runs.retain(|k, r| {
            let keep = wanted.contains_key(k);
            if !keep {
                r.cancel();
            }
            keep
        });
        for (k, r) in wanted {
            if let Some(local) = self.runs.get_mut(&k) {
                if r.stop_requested {
                    local.cancel();
                }
                continue;
            }
            self.runs.insert(k.clone(), Running { cancel: None });
            let pending = r.status == S::Pending as i32;
            let report = match (&self.cfg.mode, pending, r.stop_requested) {
                // Asked to stop before it ran here: it never runs.
                (_, _, true) => Some(drivers::run::report(&r, K::NotStarted, 0, "stopped before it started")),
                (Mode::Simulated, true, false) => {
                    let _ = self.reports.send(drivers::run::report(&r, K::Started, 0, "")).await;
                    Some(drivers::run::report(&r, K::Exited, 0, "Exited successfully"))
                }
                // RUNNING here but unknown to this agent: it was lost with an agent restart.
                (_, false, false) => Some(drivers::run::report(
                    &r,
                    K::NotStarted,
                    0,
                    "run lost: the cell agent restarted",
                )),
                (Mode::Process { .. }, true, false) => {
                    let Some(ctx) = self.process.clone() else { continue };
                    let (tx, rx) = oneshot::channel();
                    let reports = self.reports.clone();
                    let docker_rootfs = r.receptor.as_ref().is_some_and(|t| t.rootfs.starts_with("docker:"));
                    match (&self.docker, r.receptor.is_some()) {
                        (Some(docker), true) if docker_rootfs => {
                            tokio::spawn(drivers::docker::run_receptor_task(docker.clone(), r, ctx, reports, rx));
                        }
                        (_, true) => {
                            tokio::spawn(drivers::run::run_receptor_task(r, ctx, reports, rx));
                        }
                        (Some(docker), false) if self.cfg.task_docker => {
                            tokio::spawn(drivers::docker::run_task(docker.clone(), r, ctx, reports, rx));
                        }
                        _ => {
                            tokio::spawn(drivers::run::run_process(r, ctx, reports, rx));
                        }
                    }
                    if let Some(local) = self.runs.get_mut(&k) {
                        local.cancel = Some(tx);
                    }
                    None
                }
            };
            if let Some(report) = report {
                let _ = self.reports.send(report).await;
            }
        }
    }

    async fn reconcile(&mut self, mut update: pb::Assignments) {
        self.reconcile_runs(std::mem::take(&mut update.task_runs)).await;
        let mut wanted: HashMap<InstanceKey, pb::Assignment> = HashMap::new();
        for a in update.assignments {
            let Some(actual) = &a.actual else { continue };
            let s = ActualLrpState::try_from(actual.state).unwrap_or(ActualLrpState::Unspecified);
            if matches!(s, ActualLrpState::Claimed | ActualLrpState::Running) && actual.cell_id == self.cfg.cell.cell_id
            {
                wanted.insert(
                    (actual.process_guid.clone(), actual.index, actual.instance_guid.clone()),
                    a,
                );
            }
        }
        // Stop what is no longer ours.
        self.running.retain(|k, r| {
            if wanted.contains_key(k) {
                return true;
            }
            if let Some(c) = r.cancel.take() {
                let _ = c.send(());
            }
            false
        });
        for (k, a) in wanted {
            if self.running.contains_key(&k) {
                continue;
            }
            let running = a
                .actual
                .as_ref()
                .is_some_and(|x| x.state == ActualLrpState::Running as i32);
            match (&self.cfg.mode, running) {
                (Mode::Simulated, _) => {
                    self.running.insert(k, Running { cancel: None });
                    if !running {
                        let _ = self.reports.send(simulated_start(&a, &self.cfg.cell.address)).await;
                    }
                }
                // RUNNING here but not in this agent: it was lost (agent restart). Report the crash
                // so that it is placed again.
                (Mode::Process { .. }, true) => {
                    self.running.insert(k, Running { cancel: None });
                    if let Some(x) = &a.actual {
                        let lost = instance::crash(&instance::key(x), "instance lost: the cell agent restarted".into());
                        let _ = self.reports.send(lost).await;
                    }
                }
                (Mode::Process { .. }, false) => {
                    let Some(ctx) = self.process.clone() else {
                        continue;
                    };
                    let (tx, rx) = oneshot::channel();
                    let docker_rootfs = a.desired.as_ref().is_some_and(|d| d.rootfs.starts_with("docker:"));
                    match (&self.docker, docker_rootfs) {
                        (Some(docker), true) => {
                            tokio::spawn(drivers::docker::run(docker.clone(), a, ctx, self.reports.clone(), rx));
                        }
                        _ => {
                            tokio::spawn(drivers::process::run(a, ctx, self.reports.clone(), rx));
                        }
                    }
                    self.running.insert(k, Running { cancel: Some(tx) });
                }
            }
        }
    }

    /// Registers, then follows assignments until the stream ends or the cell must re-register.
    async fn session(
        &mut self,
        reregister: &mut watch::Receiver<u64>,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut client = connect(&self.cfg.cluster).await.context("no cluster node answered")?;
        client.register_cell(self.cfg.cell.clone()).await.context("register")?;
        reregister.borrow_and_update();
        let mut stream = client
            .watch_assignments(pb::WatchAssignmentsRequest {
                cell_id: self.cfg.cell.cell_id.clone(),
            })
            .await
            .context("watch assignments")?
            .into_inner();
        loop {
            tokio::select! {
                msg = stream.message() => match msg {
                    Ok(Some(update)) => self.reconcile(update).await,
                    Ok(None) => anyhow::bail!("assignment stream ended"),
                    Err(e) => anyhow::bail!("assignment stream: {e}"),
                },
                _ = reregister.changed() => anyhow::bail!("the leader does not know this cell"),
                _ = stop.changed() => return Ok(()),
            }
        }
    }

    fn stop_all(&mut self) {
        for mut r in self
            .running
            .drain()
            .map(|(_, r)| r)
            .chain(self.runs.drain().map(|(_, r)| r))
        {
            r.cancel();
        }
    }
}

fn simulated_start(a: &pb::Assignment, address: &str) -> Report {
    let x = a.actual.clone().unwrap_or_default();
    let ports = a
        .desired
        .as_ref()
        .map(|d| {
            d.ports
                .iter()
                .map(|p| pb::PortMapping {
                    container_port: *p,
                    host_port: 40000 + (x.index % 20000),
                })
                .collect()
        })
        .unwrap_or_default();
    Report::Started(pb::StartedActualLrp {
        key: Some(pb::ActualLrpKey {
            process_guid: x.process_guid,
            index: x.index,
            instance_guid: x.instance_guid,
            cell_id: x.cell_id,
        }),
        address: address.to_owned(),
        ports,
    })
}

/// Runs one agent until `stop`: reconnecting and re-registering as needed.
pub async fn run_agent(
    cfg: CellConfig,
    reports: mpsc::Sender<Report>,
    mut reregister: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
    usage: super::usage::UsageBook,
) {
    let process = match &cfg.mode {
        Mode::Process { ports, stop_grace } => Some(DriverCtx {
            cell_id: cfg.cell.cell_id.clone(),
            address: cfg.cell.address.clone(),
            work_dir: cfg.work_dir.clone(),
            ports: Arc::new(PortPool::new(ports.0..=ports.1, &cfg.cell.address)),
            stop_grace: *stop_grace,
            usage,
        }),
        Mode::Simulated => None,
    };
    let docker = if cfg.cell.docker { docker_engine().await } else { None };
    let mut agent = Agent {
        cfg,
        reports,
        running: HashMap::new(),
        runs: HashMap::new(),
        process,
        docker,
    };
    loop {
        match agent.session(&mut reregister, &mut stop).await {
            Ok(()) => break,
            Err(e) => {
                tracing::info!(cell = %agent.cfg.cell.cell_id, error = %format!("{e:#}"), "cell session ended; reconnecting")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_BACKOFF) => {}
            _ = stop.changed() => break,
        }
    }
    agent.stop_all();
}
