//! The cell agent: registers with the cluster over the internal `CellService`, heartbeats within
//! the presence TTL, follows its assignment set, runs what is assigned (instances and task runs;
//! process or docker driver, or the simulated driver for scale work), stops what is no longer
//! assigned, and reports starts, crashes and exits in batches. It serves what only it has (run
//! logs) on its own `CellApi` listener. It survives leader changes and reconnects by itself;
//! instances and runs keep running across reconnects.

pub mod actions;
mod agent;
mod api;
pub mod drivers;
mod heartbeat;
pub mod logs;
mod reporter;
pub mod usage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use capstan_proto::pb;
use tokio::sync::{mpsc, watch};

use agent::run_agent;
use heartbeat::run_heartbeats;
pub use reporter::Uplink;
use reporter::{run_reporter, REPORT_BUFFER};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// `docker://` rootfs in containers when a docker engine answers; everything else (task runs
    /// included: `sh -c` on the host, the image recorded) as processes.
    Auto,
    /// Run instances as host processes only.
    Process,
    /// Require a docker engine: `docker://` rootfs and task runs in containers of their image
    /// (the rest of the instances as processes).
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
    #[arg(long, env = "CAPSTAN_CELL_ID", default_value = "cell-1")]
    id: String,
    #[arg(long, env = "CAPSTAN_CELL_ZONE", default_value = "z1")]
    zone: String,
    /// The pool (Flotilla cluster) this cell belongs to.
    #[arg(long, env = "CAPSTAN_CELL_POOL", default_value = "default")]
    pool: String,
    #[arg(long, env = "CAPSTAN_CELL_MEMORY_MB", default_value_t = 8192)]
    memory_mb: i32,
    #[arg(long, env = "CAPSTAN_CELL_DISK_MB", default_value_t = 65536)]
    disk_mb: i32,
    #[arg(long, env = "CAPSTAN_CELL_CONTAINERS", default_value_t = 256)]
    containers: i32,
    #[arg(long, env = "CAPSTAN_CELL_DRIVER", value_enum, default_value_t = Driver::Auto)]
    driver: Driver,
    /// Stacks offered as `preloaded:<stack>` rootfs, comma-separated.
    #[arg(long, env = "CAPSTAN_STACKS", default_value = "cflinuxfs4,cflinuxfs3")]
    stacks: String,
    /// The address instances are reachable at (CF_INSTANCE_IP).
    #[arg(long, env = "CAPSTAN_CELL_ADDRESS", default_value = "127.0.0.1")]
    address: String,
    /// Where instance directories and logs live.
    #[arg(long, env = "CAPSTAN_CELL_WORK_DIR", default_value = "capstan-cell")]
    work_dir: PathBuf,
    /// First and last host port handed to instances.
    #[arg(long, env = "CAPSTAN_CELL_PORT_RANGE", default_value = "61000-61999")]
    port_range: String,
    /// Register N simulated cells that report RUNNING without running anything (scale work).
    #[arg(long, env = "CAPSTAN_CELL_SIMULATE")]
    simulate: Option<usize>,
    /// Where the cell serves its CellApi (run logs) to the cluster nodes; port 0 picks one.
    #[arg(long, env = "CAPSTAN_CELL_API", default_value = "127.0.0.1:0")]
    api_listen: String,
    #[command(flatten)]
    credential: capstan_client::secret::SecretArgs,
    #[command(flatten)]
    _config: capstan_client::flags::ConfigArg,
}

#[derive(Clone, Debug)]
pub enum Mode {
    Process { ports: (u16, u16), stop_grace: Duration },
    Simulated,
}

/// Everything one cell agent needs.
#[derive(Clone, Debug)]
pub struct CellConfig {
    pub cluster: Uplink,
    pub cell: pb::Cell,
    pub work_dir: PathBuf,
    pub mode: Mode,
    /// Task runs in containers of their image (`--driver docker`); else `sh -c` on the host.
    pub task_docker: bool,
    /// Where the CellApi listens (the bound address becomes `cell.api_addr`).
    pub api_listen: String,
    /// TLS of the CellApi listener (the nodes then call it over TLS with their certificates).
    pub api_tls: Option<capstan_client::tls::Tls>,
}

impl CellConfig {
    /// The cell `capstan dev` runs in its own process.
    pub fn embedded(data_dir: &Path, stacks: &str, memory_mb: i32) -> Self {
        CellConfig {
            cluster: Uplink::default(),
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
                api_addr: String::new(),
            },
            work_dir: data_dir.join("cell"),
            mode: Mode::Process {
                ports: (61000, 61999),
                stop_grace: Duration::from_secs(10),
            },
            task_docker: false,
            api_listen: "127.0.0.1:0".into(),
            api_tls: None,
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

/// The CellApi address the nodes dial: the bound one, or — bound on every interface (`0.0.0.0`,
/// `[::]`: a container, a host with several networks) — the cell's own `--address` with its port.
fn advertised(bound: &str, address: &str) -> String {
    match bound.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() && address.contains(':') => format!("[{address}]:{}", a.port()),
        Ok(a) if a.ip().is_unspecified() => format!("{address}:{}", a.port()),
        _ => bound.to_owned(),
    }
}

/// Runs the agents for `cfgs` (one, or many simulated ones) until `stop` changes.
pub async fn run_many(mut cfgs: Vec<CellConfig>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let Some(first) = cfgs.first() else {
        return Ok(());
    };
    let cluster = first.cluster.clone();
    let usage = usage::UsageBook::default();
    let (api_addr, api) = api::serve(
        &first.api_listen,
        first.work_dir.clone(),
        usage.clone(),
        first.cluster.credential.clone(),
        first.api_tls.as_ref(),
        stop.clone(),
    )
    .await?;
    let api_addr = advertised(&api_addr, &first.cell.address);
    for c in &mut cfgs {
        c.cell.api_addr = api_addr.clone();
    }
    let (report_tx, report_rx) = mpsc::channel(REPORT_BUFFER);
    let reporter = tokio::spawn(run_reporter(cluster.clone(), report_rx));
    let mut senders = HashMap::new();
    let mut agents = Vec::new();
    for cfg in cfgs {
        let (tx, rx) = watch::channel(0u64);
        senders.insert(cfg.cell.cell_id.clone(), tx);
        agents.push(tokio::spawn(run_agent(
            cfg,
            report_tx.clone(),
            rx,
            stop.clone(),
            usage.clone(),
        )));
    }
    drop(report_tx);
    let beats = tokio::spawn(run_heartbeats(cluster, senders, stop.clone()));
    let _ = stop.changed().await;
    for a in agents {
        let _ = a.await;
    }
    let _ = beats.await;
    let _ = api.await;
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
pub async fn run_cli(args: CellArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
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
    let cluster = Uplink {
        addrs: split(&args.cluster),
        // A cell secret binds the agent to its own id (not for --simulate's many cells).
        credential: args
            .credential
            .credential_as(args.simulate.is_none().then_some(args.id.as_str()))?,
    };
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
        api_addr: String::new(),
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
                    task_docker: false,
                    api_listen: args.api_listen.clone(),
                    api_tls: None,
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
                task_docker: docker && args.driver == Driver::Docker,
                api_listen: args.api_listen.clone(),
                api_tls: args.credential.tls.load()?,
            }]
        }
    };
    println!("capstan: cells={}", cfgs.len());
    println!("capstan: ready cell");
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(run_many(cfgs, stop_rx));
    shutdown.await;
    let _ = stop_tx.send(true);
    run.await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cellapi_bound_on_every_interface_is_advertised_at_the_cells_address() {
        assert_eq!(super::advertised("127.0.0.1:7071", "10.0.0.5"), "127.0.0.1:7071");
        assert_eq!(super::advertised("0.0.0.0:7071", "cell1"), "cell1:7071");
        assert_eq!(super::advertised("[::]:7071", "fd00::5"), "[fd00::5]:7071");
    }
}
