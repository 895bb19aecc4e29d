//! The cell agent: registers with the cluster over the internal `CellService`, heartbeats within
//! the presence TTL, follows its assignment set, runs what is assigned (process driver, or the
//! simulated driver for scale work), stops what is no longer assigned, and reports starts and
//! crashes in batches. It survives leader changes and reconnects by itself; instances keep
//! running across reconnects.

pub mod actions;
pub mod docker_driver;
pub mod instance;
pub mod logs;
pub mod process_driver;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use capstan_proto::pb::{self, cell_service_client::CellServiceClient, ActualLrpState};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::transport::{Channel, Endpoint};

use process_driver::{PortPool, ProcessCtx};

/// Reports buffered before a batch is sent.
const REPORT_BUFFER: usize = 4096;
/// How long reports gather before a batch goes out.
const REPORT_BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Backoff between reconnect attempts.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// `docker://` rootfs in containers when a docker engine answers; everything else as processes.
    Auto,
    /// Run instances as host processes only.
    Process,
    /// Require a docker engine for `docker://` rootfs (and run the rest as processes).
    Docker,
}

/// A docker engine client when one answers on the local socket.
pub async fn docker_engine() -> Option<Arc<bollard::Docker>> {
    let docker = bollard::Docker::connect_with_local_defaults().ok()?;
    match tokio::time::timeout(Duration::from_secs(2), docker.ping()).await {
        Ok(Ok(_)) => Some(Arc::new(docker)),
        _ => None,
    }
}

#[derive(clap::Args)]
pub struct CellArgs {
    /// Cluster nodes' gRPC addresses, comma-separated.
    #[arg(long, env = "CAPSTAN_CLUSTER", default_value = "127.0.0.1:7070")]
    cluster: String,
    /// This cell's id (with --simulate, the prefix of the simulated cells' ids).
    #[arg(long, default_value = "cell-1")]
    id: String,
    #[arg(long, default_value = "z1")]
    zone: String,
    /// The pool (Flotilla cluster) this cell belongs to.
    #[arg(long, default_value = "default")]
    pool: String,
    #[arg(long, default_value_t = 8192)]
    memory_mb: i32,
    #[arg(long, default_value_t = 65536)]
    disk_mb: i32,
    #[arg(long, default_value_t = 256)]
    containers: i32,
    #[arg(long, value_enum, default_value_t = Driver::Auto)]
    driver: Driver,
    /// Stacks offered as `preloaded:<stack>` rootfs, comma-separated.
    #[arg(long, default_value = "cflinuxfs4,cflinuxfs3")]
    stacks: String,
    /// The address instances are reachable at (CF_INSTANCE_IP).
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// Where instance directories and logs live.
    #[arg(long, default_value = "capstan-cell")]
    work_dir: PathBuf,
    /// First and last host port handed to instances.
    #[arg(long, default_value = "61000-61999")]
    port_range: String,
    /// Register N simulated cells that report RUNNING without running anything (scale work).
    #[arg(long)]
    simulate: Option<usize>,
}

#[derive(Clone, Debug)]
pub enum Mode {
    Process { ports: (u16, u16), stop_grace: Duration },
    Simulated,
}

/// Everything one cell agent needs.
#[derive(Clone, Debug)]
pub struct CellConfig {
    pub cluster: Vec<String>,
    pub cell: pb::Cell,
    pub work_dir: PathBuf,
    pub mode: Mode,
}

impl CellConfig {
    /// The cell `capstan dev` runs in its own process.
    pub fn embedded(data_dir: &Path, stacks: &str, memory_mb: i32) -> Self {
        CellConfig {
            cluster: Vec::new(),
            cell: pb::Cell {
                cell_id: "cell-1".into(),
                zone: "z1".into(),
                pool: "default".into(),
                capacity: Some(pb::CellCapacity {
                    memory_mb,
                    disk_mb: 65_536,
                    containers: 256,
                }),
                preloaded_stacks: split(stacks),
                docker: false,
                address: "127.0.0.1".into(),
                registered_at: 0,
            },
            work_dir: data_dir.join("cell"),
            mode: Mode::Process {
                ports: (61000, 61999),
                stop_grace: Duration::from_secs(10),
            },
        }
    }
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What an instance tells its cell.
pub enum Report {
    Started(pb::StartedActualLrp),
    Crashed(pb::CrashedActualLrp),
}

async fn connect(cluster: &[String]) -> Option<CellServiceClient<Channel>> {
    for addr in cluster {
        let Ok(ep) = Endpoint::from_shared(format!("http://{addr}")) else {
            continue;
        };
        if let Ok(ch) = ep
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect()
            .await
        {
            return Some(CellServiceClient::new(ch));
        }
    }
    None
}

/// Sends reports in batches; keeps a batch and retries while no node takes it.
async fn run_reporter(cluster: Vec<String>, mut rx: mpsc::Receiver<Report>) {
    let mut client: Option<CellServiceClient<Channel>> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = pb::ReportActualLrps::default();
        let add = |r: Report, b: &mut pb::ReportActualLrps| match r {
            Report::Started(s) => b.started.push(s),
            Report::Crashed(c) => b.crashed.push(c),
        };
        add(first, &mut batch);
        let window = tokio::time::sleep(REPORT_BATCH_WINDOW);
        tokio::pin!(window);
        loop {
            tokio::select! {
                r = rx.recv() => match r { Some(r) => add(r, &mut batch), None => break },
                _ = &mut window => break,
            }
        }
        // Keep the batch until a node takes it (stale reports are harmless: apply skips them).
        for attempt in 0u32.. {
            if client.is_none() {
                client = connect(&cluster).await;
            }
            if let Some(c) = client.as_mut() {
                match c.report_actual_lrps(batch.clone()).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, attempt, "report not taken");
                        if e.code() == tonic::Code::Unavailable {
                            client = None;
                        }
                    }
                }
            }
            tokio::time::sleep(RECONNECT_BACKOFF * attempt.min(4)).await;
        }
    }
}

type InstanceKey = (String, u32, String);

struct Running {
    cancel: Option<oneshot::Sender<()>>,
}

/// The agent of one cell.
struct Agent {
    cfg: CellConfig,
    reports: mpsc::Sender<Report>,
    running: HashMap<InstanceKey, Running>,
    process: Option<ProcessCtx>,
    docker: Option<Arc<bollard::Docker>>,
}

impl Agent {
    async fn reconcile(&mut self, update: pb::Assignments) {
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
                            tokio::spawn(docker_driver::run(docker.clone(), a, ctx, self.reports.clone(), rx));
                        }
                        _ => {
                            tokio::spawn(process_driver::run(a, ctx, self.reports.clone(), rx));
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
        for (_, mut r) in self.running.drain() {
            if let Some(c) = r.cancel.take() {
                let _ = c.send(());
            }
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

/// Heartbeats for a set of cells; tells each agent (by its watch) when the leader forgot it.
async fn run_heartbeats(
    cluster: Vec<String>,
    cells: HashMap<String, watch::Sender<u64>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut client: Option<CellServiceClient<Channel>> = None;
    let mut interval = Duration::from_millis(1000);
    let ids: Vec<String> = cells.keys().cloned().collect();
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if client.is_none() {
            client = connect(&cluster).await;
        }
        let Some(c) = client.as_mut() else { continue };
        match c.heartbeat(pb::HeartbeatRequest { cell_ids: ids.clone() }).await {
            Ok(r) => {
                n += 1;
                for id in r.into_inner().unknown_cell_ids {
                    if let Some(tx) = cells.get(&id) {
                        tx.send_replace(n);
                    }
                }
                interval = Duration::from_millis(1000);
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed");
                client = None;
                interval = Duration::from_millis(300);
            }
        }
    }
}

/// Runs one agent until `stop`: reconnecting and re-registering as needed.
async fn run_agent(
    cfg: CellConfig,
    reports: mpsc::Sender<Report>,
    mut reregister: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let process = match &cfg.mode {
        Mode::Process { ports, stop_grace } => Some(ProcessCtx {
            cell_id: cfg.cell.cell_id.clone(),
            address: cfg.cell.address.clone(),
            work_dir: cfg.work_dir.clone(),
            ports: Arc::new(PortPool::new(ports.0..=ports.1, &cfg.cell.address)),
            stop_grace: *stop_grace,
        }),
        Mode::Simulated => None,
    };
    let docker = if cfg.cell.docker { docker_engine().await } else { None };
    let mut agent = Agent {
        cfg,
        reports,
        running: HashMap::new(),
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

/// Runs the agents for `cfgs` (one, or many simulated ones) until `stop` changes.
pub async fn run_many(cfgs: Vec<CellConfig>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let Some(first) = cfgs.first() else {
        return Ok(());
    };
    let cluster = first.cluster.clone();
    let (report_tx, report_rx) = mpsc::channel(REPORT_BUFFER);
    let reporter = tokio::spawn(run_reporter(cluster.clone(), report_rx));
    let mut senders = HashMap::new();
    let mut agents = Vec::new();
    for cfg in cfgs {
        let (tx, rx) = watch::channel(0u64);
        senders.insert(cfg.cell.cell_id.clone(), tx);
        agents.push(tokio::spawn(run_agent(cfg, report_tx.clone(), rx, stop.clone())));
    }
    drop(report_tx);
    let beats = tokio::spawn(run_heartbeats(cluster, senders, stop.clone()));
    let _ = stop.changed().await;
    for a in agents {
        let _ = a.await;
    }
    let _ = beats.await;
    // In-flight reports are dropped with the process: the leader's TTL takes over.
    reporter.abort();
    Ok(())
}

/// The embedded cell of `capstan dev`: docker rootfs too when a docker engine answers.
pub async fn run(mut cfg: CellConfig, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    cfg.cell.docker = docker_engine().await.is_some();
    tracing::info!(cell = %cfg.cell.cell_id, docker = cfg.cell.docker, "memory limits are recorded for placement, not enforced (process driver)");
    run_many(vec![cfg], stop).await
}

/// `capstan cell ...`
pub async fn run_cli(args: CellArgs) -> anyhow::Result<()> {
    let docker = match args.driver {
        Driver::Process => false,
        Driver::Auto => args.simulate.is_none() && docker_engine().await.is_some(),
        Driver::Docker => {
            if docker_engine().await.is_none() {
                anyhow::bail!("--driver docker: no docker engine answers on the local socket");
            }
            true
        }
    };
    let (lo, hi) = args
        .port_range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        .filter(|(a, b)| a <= b)
        .context("--port-range must be LOW-HIGH")?;
    let cluster = split(&args.cluster);
    let cell = |id: String| pb::Cell {
        cell_id: id,
        zone: args.zone.clone(),
        pool: args.pool.clone(),
        capacity: Some(pb::CellCapacity {
            memory_mb: args.memory_mb,
            disk_mb: args.disk_mb,
            containers: args.containers,
        }),
        preloaded_stacks: split(&args.stacks),
        docker,
        address: args.address.clone(),
        registered_at: 0,
    };
    let cfgs: Vec<CellConfig> = match args.simulate {
        Some(n) => (0..n)
            .map(|i| {
                let mut c = cell(format!("{}-{i:05}", args.id));
                // Spread simulated cells over three zones.
                c.zone = format!("{}-{}", args.zone, i % 3);
                CellConfig {
                    cluster: cluster.clone(),
                    cell: c,
                    work_dir: args.work_dir.clone(),
                    mode: Mode::Simulated,
                }
            })
            .collect(),
        None => {
            tracing::info!(cell = %args.id, "memory limits are recorded for placement, not enforced (process driver)");
            vec![CellConfig {
                cluster,
                cell: cell(args.id.clone()),
                work_dir: args.work_dir.clone(),
                mode: Mode::Process {
                    ports: (lo, hi),
                    stop_grace: Duration::from_secs(10),
                },
            }]
        }
    };
    println!("capstan: cells={}", cfgs.len());
    println!("capstan: ready cell");
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(run_many(cfgs, stop_rx));
    crate::node_process::shutdown_signal().await;
    let _ = stop_tx.send(true);
    run.await??;
    Ok(())
}
