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

/// (process_guid, index): one instance slot; the agent runs at most one instance in each.
type InstanceKey = (String, u32);
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
    /// What runs in each slot: its instance guid.
    running: HashMap<InstanceKey, (String, Running)>,
    runs: HashMap<RunKey, Running>,
    process: Option<DriverCtx>,
    docker: Option<Arc<bollard::Docker>>,
}

impl Agent {
    /// A run this cell must act on: placed here (PENDING) or running here.
    fn run_is_mine(&self, r: &pb::TaskRun) -> bool {
        use pb::TaskRunStatus as S;
        matches!(S::try_from(r.status), Ok(S::Pending | S::Running)) && r.cell_id == self.cfg.cell.cell_id
    }

    /// Kills the runs `keep` says no to.
    fn cancel_runs(&mut self, keep: impl Fn(&RunKey) -> bool) {
        self.runs.retain(|k, r| {
            let keep = keep(k);
            if !keep {
                r.cancel();
            }
            keep
        });
    }

    /// The whole set of runs: starts those placed here, kills those asked to stop or no longer
    /// placed here.
    async fn reconcile_runs(&mut self, runs: Vec<pb::TaskRun>) {
        let mut wanted: HashMap<RunKey, pb::TaskRun> = HashMap::new();
        for r in runs {
            if self.run_is_mine(&r) {
                wanted.insert((r.run_id.clone(), r.attempt), r);
            }
        }
        self.cancel_runs(|k| wanted.contains_key(k));
        for (k, r) in wanted {
            self.want_run(k, r).await;
        }
    }

    /// One run's newest state (`None`: it left this cell).
    async fn run_changed(&mut self, run_id: &str, r: Option<pb::TaskRun>) {
        match r.filter(|r| self.run_is_mine(r)) {
            Some(r) => {
                let k = (r.run_id.clone(), r.attempt);
                self.cancel_runs(|other| other.0 != run_id || *other == k);
                self.want_run(k, r).await;
            }
            None => self.cancel_runs(|other| other.0 != run_id),
        }
    }

    /// Starts a run placed here, or stops it when asked to.
    async fn want_run(&mut self, k: RunKey, r: pb::TaskRun) {
        use pb::{TaskRunReportKind as K, TaskRunStatus as S};
        if let Some(local) = self.runs.get_mut(&k) {
            if r.stop_requested {
                local.cancel();
            }
            return;
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
                let Some(ctx) = self.process.clone() else { return };
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

    /// An instance this cell must run: placed here (CLAIMED) or running here.
    fn instance_is_mine(&self, a: &pb::ActualLrp) -> bool {
        let s = ActualLrpState::try_from(a.state).unwrap_or(ActualLrpState::Unspecified);
        matches!(s, ActualLrpState::Claimed | ActualLrpState::Running) && a.cell_id == self.cfg.cell.cell_id
    }

    /// Stops what runs in a slot.
    fn stop_instance(&mut self, k: &InstanceKey) {
        if let Some((_, mut r)) = self.running.remove(k) {
            r.cancel();
        }
    }

    /// A message of the assignment stream: the whole set, or what changed.
    async fn apply(&mut self, mut update: pb::Assignments) {
        if !update.delta {
            return self.reconcile(update).await;
        }
        for run_id in std::mem::take(&mut update.removed_runs) {
            self.run_changed(&run_id, None).await;
        }
        for r in std::mem::take(&mut update.task_runs) {
            self.run_changed(&r.run_id.clone(), Some(r)).await;
        }
        for k in update.removed {
            self.stop_instance(&(k.process_guid, k.index));
        }
        for a in update.assignments {
            let Some(actual) = &a.actual else { continue };
            if self.instance_is_mine(actual) {
                self.want_instance(a).await;
            } else {
                self.stop_instance(&(actual.process_guid.clone(), actual.index));
            }
        }
    }

    /// The whole set: runs what is assigned here, stops everything else.
    async fn reconcile(&mut self, mut update: pb::Assignments) {
        self.reconcile_runs(std::mem::take(&mut update.task_runs)).await;
        let mut wanted: HashMap<InstanceKey, pb::Assignment> = HashMap::new();
        for a in update.assignments {
            let Some(actual) = &a.actual else { continue };
            if self.instance_is_mine(actual) {
                wanted.insert((actual.process_guid.clone(), actual.index), a);
            }
        }
        // Stop what is no longer ours.
        self.running.retain(|k, (instance_guid, r)| {
            let keep = wanted
                .get(k)
                .and_then(|a| a.actual.as_ref())
                .is_some_and(|a| &a.instance_guid == instance_guid);
            if !keep {
                r.cancel();
            }
            keep
        });
        for a in wanted.into_values() {
            self.want_instance(a).await;
        }
    }

    /// Runs an instance assigned here, unless it already runs (another instance in its slot is
    /// stopped first).
    async fn want_instance(&mut self, a: pb::Assignment) {
        let Some(actual) = &a.actual else { return };
        let k = (actual.process_guid.clone(), actual.index);
        match self.running.get(&k) {
            Some((instance_guid, _)) if *instance_guid == actual.instance_guid => return,
            Some(_) => self.stop_instance(&k),
            None => {}
        }
        let instance_guid = actual.instance_guid.clone();
        let running = actual.state == ActualLrpState::Running as i32;
        match (&self.cfg.mode, running) {
            (Mode::Simulated, _) => {
                self.running.insert(k, (instance_guid, Running { cancel: None }));
                if !running {
                    let _ = self.reports.send(simulated_start(&a, &self.cfg.cell.address)).await;
                }
            }
            // RUNNING here but not in this agent: it was lost (agent restart). Report the crash
            // so that it is placed again.
            (Mode::Process { .. }, true) => {
                self.running.insert(k, (instance_guid, Running { cancel: None }));
                if let Some(x) = &a.actual {
                    let lost = instance::crash(&instance::key(x), "instance lost: the cell agent restarted".into());
                    let _ = self.reports.send(lost).await;
                }
            }
            (Mode::Process { .. }, false) => {
                let Some(ctx) = self.process.clone() else {
                    return;
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
                self.running.insert(k, (instance_guid, Running { cancel: Some(tx) }));
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
                deltas: true,
            })
            .await
            .context("watch assignments")?
            .into_inner();
        loop {
            tokio::select! {
                msg = stream.message() => match msg {
                    Ok(Some(update)) => self.apply(update).await,
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
            .map(|(_, (_, r))| r)
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
