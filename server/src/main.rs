//! The `capstan` binary: `dev` (embedded single node), `server` (a cluster node), `gateway`
//! (REST only, in front of a cluster), `cell` (an agent), `cluster` (the membership CLI) and
//! `task` (Flotilla's task walk from a terminal).

use capstan::auth::config::AuthSettings;
use capstan::auth::tokens::{hash_password, Issuer};
use capstan::auth::Authenticator;
use capstan::config_file::{self, ConfigArg, ConfigFile};
use capstan::shutdown::shutdown_signal;
use capstan::{cell, node};
use capstan_cli::{cluster as cli, events as events_cli, task as task_cli};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};

/// jemalloc, not glibc's malloc: sled allocates a fresh 512 KiB I/O buffer for every log segment
/// it fills, and glibc hands each one back to the kernel when it is freed (trim or munmap), so
/// every page of the next was faulted in and zeroed again — 10 % of a loaded cluster's CPU. jemalloc
/// keeps freed extents for reuse (dirty pages decay over seconds) and is faster across threads.
/// The `system-allocator` feature leaves it out, for heap profilers that interpose malloc
/// (heaptrack; BENCHMARKS.md says how).
#[cfg(all(target_os = "linux", not(feature = "system-allocator")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "capstan",
    version,
    about = "Capstan: an event-sourced, Raft-replicated control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The embedded single-node default: one Raft node, the gRPC API and the REST gateway.
    Dev(DevArgs),
    /// One node of a multi-node cluster (gRPC for peers and clients; REST optional).
    Server(ServerArgs),
    /// A REST gateway in its own process, in front of a cluster.
    Gateway(GatewayArgs),
    /// Cluster administration: status, add and remove members.
    Cluster(cli::ClusterArgs),
    /// A cell agent: registers with the cluster and runs the instances and task runs placed on it.
    Cell(cell::CellArgs),
    /// Flotilla tasks from the terminal: define, list, run, status, stop, logs -f (REST client).
    Task(task_cli::TaskArgs),
    /// Follow the event stream: one JSON line per event, resuming on reconnect.
    Events(events_cli::EventsArgs),
    /// A health check for images without curl: GET URL (e.g. http://127.0.0.1:8080/readyz); exit 0
    /// on a 2xx answer, 1 otherwise (with the status and body on stderr).
    Probe {
        url: String,
        /// Give up on one request after this many milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// Ask again until a 2xx answer or this many milliseconds have passed (0: ask once).
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
    },
    /// Config files: `capstan config check FILE`.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Auth helpers: password hashes and signing keys for the [auth] table.
    #[command(subcommand)]
    Auth(AuthCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Reads FILE as a mode would (keys, [auth], the files it names) and says what is wrong.
    Check {
        file: PathBuf,
        /// Check the keys against this mode only (dev, server, gateway, cell).
        #[arg(long)]
        mode: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Reads a password on stdin and prints its argon2id hash (for password_hash / secret_hash).
    HashPassword,
    /// Writes a new ES256 (P-256) token signing key as PKCS#8 PEM (for [[auth.keys]]).
    GenKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Prints the secret of one cell, derived from the cluster secret (for its --cell-secret-file).
    CellSecret {
        #[arg(long)]
        cell_id: String,
        #[command(flatten)]
        secret: capstan::auth::client::SecretArgs,
    },
}

#[derive(clap::Args)]
struct DevArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    tls: capstan::tls::TlsArgs,
    /// REST gateway listen address (port 0 picks a free port).
    #[arg(long, env = "CAPSTAN_HTTP", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// gRPC listen address (public API and Raft peers; port 0 picks a free port).
    #[arg(long, env = "CAPSTAN_GRPC", default_value = "127.0.0.1:7070")]
    grpc: SocketAddr,
    /// Where the node keeps its data (kept across restarts).
    #[arg(long, env = "CAPSTAN_DATA_DIR", default_value = "capstan-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    node: NodeFlags,
    /// Stacks the embedded cell offers as `preloaded:<stack>` rootfs, comma-separated.
    #[arg(long, env = "CAPSTAN_STACKS", default_value = "cflinuxfs4,cflinuxfs3")]
    stacks: String,
    /// Memory the embedded cell offers, in MB.
    #[arg(long, env = "CAPSTAN_CELL_MEMORY_MB", default_value_t = 8192)]
    cell_memory_mb: i32,
    /// Run without the embedded cell (instances then stay UNCLAIMED until a cell joins).
    #[arg(long, env = "CAPSTAN_NO_CELL")]
    no_cell: bool,
}

/// Limits of the listeners: connections, timeouts, requests in flight.
#[derive(clap::Args, Clone)]
struct LimitArgs {
    /// An HTTP/1 client must send a request's head within this; idle keep-alive connections are
    /// closed after it too, and so are gRPC connections that send nothing at all.
    #[arg(long, env = "CAPSTAN_HTTP_HEADER_TIMEOUT_MS", default_value_t = 30_000)]
    http_header_timeout_ms: u64,
    /// A request body may stall this long before the request is refused with 408.
    #[arg(long, env = "CAPSTAN_HTTP_BODY_IDLE_TIMEOUT_MS", default_value_t = 10_000)]
    http_body_idle_timeout_ms: u64,
    /// Longest a REST request may take end to end (then 503).
    #[arg(long, env = "CAPSTAN_HTTP_REQUEST_TIMEOUT_MS", default_value_t = 20_000)]
    http_request_timeout_ms: u64,
    /// Open REST connections at most; one more is closed at once (counted and logged). Default:
    /// a quarter of the file limit (raised to the hard limit at start) left after 1,024 for the
    /// process itself, at least 512.
    #[arg(long, env = "CAPSTAN_HTTP_CONNECTIONS_MAX")]
    http_connections_max: Option<usize>,
    /// REST requests served at once; more are refused with 503.
    #[arg(long, env = "CAPSTAN_HTTP_REQUESTS_IN_FLIGHT_MAX", default_value_t = capstan_gateway::common::layers::REQUESTS_IN_FLIGHT_MAX)]
    http_requests_in_flight_max: usize,
    /// Open gRPC connections at most (cells, peers, gateways, clients); one more is closed at once
    /// (counted and logged). Default: three quarters of the file limit (raised to the hard limit at
    /// start) left after 1,024 for the process itself, at least 256.
    #[arg(long, env = "CAPSTAN_GRPC_CONNECTIONS_MAX")]
    grpc_connections_max: Option<usize>,
}

impl LimitArgs {
    fn limits(&self) -> node::ListenLimits {
        use capstan_gateway::common::{layers::RequestLimits, serve::HttpLimits};
        let ms = std::time::Duration::from_millis;
        let files = capstan::fd_limit::raised();
        let (grpc_auto, http_auto) = capstan::fd_limit::caps(files.now);
        let grpc_connections_max = self.grpc_connections_max.unwrap_or(grpc_auto);
        let http_connections_max = self.http_connections_max.unwrap_or(http_auto);
        tracing::info!(
            file_limit = files.now,
            file_limit_at_start = files.before,
            grpc_connections_max,
            http_connections_max,
            "connection caps"
        );
        node::ListenLimits {
            http: HttpLimits {
                header_read_timeout: ms(self.http_header_timeout_ms),
                connections_max: http_connections_max,
            },
            request: RequestLimits {
                request_timeout: ms(self.http_request_timeout_ms),
                in_flight_max: self.http_requests_in_flight_max,
                body_idle_timeout: ms(self.http_body_idle_timeout_ms),
            },
            grpc: node::GrpcLimits {
                connections_max: grpc_connections_max,
                ..Default::default()
            },
        }
    }
}

/// Tunables of the leader's loops.
#[derive(clap::Args, Clone)]
struct LeaderArgs {
    /// Cell presence TTL: a cell not heard from for this long is removed and its instances re-placed.
    #[arg(long, env = "CAPSTAN_CELL_TTL_MS", default_value_t = 10_000)]
    cell_ttl_ms: u64,
    /// Convergence period (it also runs at once when a cell is lost).
    #[arg(long, env = "CAPSTAN_CONVERGE_INTERVAL_MS", default_value_t = 30_000)]
    converge_interval_ms: u64,
    /// Writes are refused with 507 while the data directory's filesystem has less free space
    /// than this, in MiB.
    #[arg(long, env = "CAPSTAN_DISK_FREE_FLOOR_MB", default_value_t = capstan_raft::node::DISK_FREE_FLOOR_BYTES_DEFAULT / (1024 * 1024))]
    disk_free_floor_mb: u64,
    /// Journal records this node keeps: how far back an event stream can resume (older ids get
    /// 410 Gone: re-list).
    #[arg(long, env = "CAPSTAN_JOURNAL_RECORDS_MAX", default_value_t = capstan_storage::keyspace::JOURNAL_RECORDS_MAX)]
    journal_records_max: u64,
    /// Encoded bytes of journal this node keeps; the oldest records are dropped beyond it.
    #[arg(long, env = "CAPSTAN_JOURNAL_BYTES_MAX", default_value_t = capstan_storage::keyspace::JOURNAL_BYTES_MAX)]
    journal_bytes_max: u64,
    /// sled's page cache for the views, in MiB (pages outside it are read back from the files).
    #[arg(long, env = "CAPSTAN_SLED_CACHE_MB", default_value_t = capstan_storage::disk::SLED_CACHE_BYTES_DEFAULT / (1024 * 1024))]
    sled_cache_mb: u64,
}

#[derive(clap::Args)]
struct ServerArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    tls: capstan::tls::TlsArgs,
    /// Listen on a non-loopback address with auth off (anyone who reaches the port may do anything).
    #[arg(long, env = "CAPSTAN_INSECURE")]
    insecure: bool,
    /// This node's id (> 0, unique in the cluster, never re-used after its data is lost).
    #[arg(long, env = "CAPSTAN_ID")]
    id: u64,
    /// Where the node keeps its data.
    #[arg(long, env = "CAPSTAN_DATA_DIR")]
    data_dir: PathBuf,
    /// gRPC listen address (public API, Admin and Raft peers).
    #[arg(long, env = "CAPSTAN_GRPC", default_value = "127.0.0.1:7070")]
    grpc: SocketAddr,
    /// Address other nodes use to reach this one (default: this node's entry in
    /// --initial-cluster, else --grpc).
    #[arg(long, env = "CAPSTAN_ADVERTISE")]
    advertise: Option<String>,
    /// Optional REST gateway listen address in the same process.
    #[arg(long, env = "CAPSTAN_HTTP")]
    http: Option<SocketAddr>,
    /// The founding members, `1=host:port,2=host:port,...`. The lowest id bootstraps the
    /// cluster once; a node started without it waits to be added with `capstan cluster add`.
    #[arg(long, env = "CAPSTAN_INITIAL_CLUSTER")]
    initial_cluster: Option<String>,
    #[command(flatten)]
    node: NodeFlags,
}

/// What `dev` and `server` both tune: the log's compaction, the leader, the listeners' limits.
#[derive(clap::Args)]
struct NodeFlags {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    leader: LeaderArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

impl NodeFlags {
    fn tuning(&self) -> node::Tuning {
        node::Tuning {
            snapshot_every_entries: Some(self.log.snapshot_every_entries),
            logs_kept_behind_snapshot: Some(self.log.logs_kept_behind_snapshot),
            disk_free_floor_bytes: self.leader.disk_free_floor_mb.saturating_mul(1024 * 1024),
            journal_records_max: self.leader.journal_records_max,
            journal_bytes_max: self.leader.journal_bytes_max,
            sled_cache_bytes: self.leader.sled_cache_mb.saturating_mul(1024 * 1024),
            limits: self.limits.limits(),
            cell_ttl: std::time::Duration::from_millis(self.leader.cell_ttl_ms),
            converge_interval: std::time::Duration::from_millis(self.leader.converge_interval_ms),
        }
    }
}

/// How long the Raft log grows before compaction.
#[derive(clap::Args)]
struct LogArgs {
    /// Build a snapshot after this many entries applied since the last one.
    #[arg(long, env = "CAPSTAN_SNAPSHOT_EVERY_ENTRIES", default_value_t = 10_000)]
    snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot for followers that are only a little behind; a
    /// follower further behind than this catches up by snapshot.
    #[arg(long, env = "CAPSTAN_LOGS_KEPT_BEHIND_SNAPSHOT", default_value_t = 2_000)]
    logs_kept_behind_snapshot: u64,
}

#[derive(clap::Args)]
struct GatewayArgs {
    #[command(flatten)]
    _config: ConfigArg,
    #[command(flatten)]
    tls: capstan::tls::TlsArgs,
    /// Cluster nodes' gRPC addresses, comma-separated (any node serves any request).
    #[arg(long, env = "CAPSTAN_CLUSTER", default_value = "127.0.0.1:7070")]
    cluster: String,
    /// REST listen address.
    #[arg(long, env = "CAPSTAN_HTTP", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The node's authenticator from the config file's [auth] table (auth off without one). With auth
/// on, cells and peers need a way in: the cluster secret, or client certificates (`tls_mutual`).
fn authenticator(file: Option<&ConfigFile>, tls_mutual: bool) -> anyhow::Result<std::sync::Arc<Authenticator>> {
    let Some(file) = file else {
        println!("capstan: auth: off (loopback only)");
        return Ok(Authenticator::off()?);
    };
    let settings: AuthSettings = file.auth()?;
    if settings.enabled && settings.cluster_secret.is_none() && !tls_mutual {
        bail!(
            "{}: auth.cluster_secret: auth is enabled: cells, peers and the admin CLI need a cluster secret \
             (cluster_secret or cluster_secret_file) or client certificates (--tls-ca-file with --tls-cert-file)",
            file.path.display()
        );
    }
    if settings.enabled {
        println!(
            "capstan: auth: on ({} users, {} clients)",
            settings.users.len(),
            settings.clients.len()
        );
    } else {
        println!("capstan: auth: off (loopback only)");
    }
    Ok(Authenticator::new(Issuer::new(settings))?)
}

fn parse_members(spec: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .with_context(|| format!("'{part}' is not id=host:port"))?;
        let id: u64 = id.trim().parse().with_context(|| format!("'{id}' is not a node id"))?;
        if id == 0 || addr.trim().is_empty() {
            bail!("'{part}': ids are > 0 and addresses non-empty");
        }
        if out.insert(id, addr.trim().to_owned()).is_some() {
            bail!("node id {id} appears twice in the initial cluster");
        }
    }
    if out.is_empty() {
        bail!("the initial cluster names no member");
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let mut command = Cli::command().args_override_self(true);
    for mode in config_file::MODES {
        command = command.mut_subcommand(mode, |s| s.args_override_self(true));
    }
    let (argv, file) = config_file::expand(std::env::args_os().collect(), &command)?;
    let matches = command.get_matches_from(argv);
    let log_format = matches
        .subcommand()
        .and_then(|(_, m)| {
            m.try_get_one::<capstan::logging::LogFormat>("log_format")
                .ok()
                .flatten()
        })
        .copied()
        .unwrap_or_default();
    capstan::logging::init(log_format);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => {
                let auth = authenticator(file.as_ref(), args.tls.tls_ca_file.is_some())?;
                let cell = cell::CellConfig::embedded(&args.data_dir, &args.stacks, args.cell_memory_mb);
                node::run(
                    node::NodeOptions {
                        id: 1,
                        data_dir: args.data_dir,
                        grpc: args.grpc,
                        advertise: None,
                        http: Some(args.http),
                        initial_members: None,
                        tuning: args.node.tuning(),
                        embedded_cell: (!args.no_cell).then_some(cell),
                        auth,
                        tls: args.tls.load()?,
                    },
                    shutdown_signal(),
                )
                .await
            }
            Command::Server(args) => {
                if args.id == 0 {
                    bail!("--id must be > 0");
                }
                let members = args.initial_cluster.as_deref().map(parse_members).transpose()?;
                if let Some(m) = &members {
                    if !m.contains_key(&args.id) {
                        bail!("--initial-cluster does not name this node (--id {})", args.id);
                    }
                }
                let auth = authenticator(file.as_ref(), args.tls.tls_ca_file.is_some())?;
                let tls = args.tls.load()?;
                let exposed = [Some(args.grpc), args.http]
                    .into_iter()
                    .flatten()
                    .find(|a| !a.ip().is_loopback());
                if let (Some(addr), false, false, false) = (exposed, auth.enabled(), tls.is_some(), args.insecure) {
                    bail!(
                        "refusing to listen on {addr} with neither auth nor TLS: anyone who reaches it could do \
                         anything. Turn auth on ([auth] enabled = true in --config), give --tls-cert-file, or pass \
                         --insecure"
                    );
                }
                let advertise = args
                    .advertise
                    .or_else(|| members.as_ref().and_then(|m| m.get(&args.id).cloned()));
                node::run(
                    node::NodeOptions {
                        id: args.id,
                        data_dir: args.data_dir,
                        grpc: args.grpc,
                        advertise,
                        http: args.http,
                        initial_members: Some(members.unwrap_or_default()),
                        tuning: args.node.tuning(),
                        embedded_cell: None,
                        auth,
                        tls,
                    },
                    shutdown_signal(),
                )
                .await
            }
            Command::Gateway(args) => {
                node::run_gateway(
                    &args.cluster,
                    args.http,
                    args.limits.limits(),
                    args.tls.load()?,
                    shutdown_signal(),
                )
                .await
            }
            Command::Cluster(args) => cli::run(args).await,
            Command::Cell(args) => {
                // A cell's instances and log files (or a simulated fleet's connections) need
                // descriptors: take what the hard limit allows.
                let files = capstan::fd_limit::raised();
                tracing::debug!(file_limit = files.now, file_limit_at_start = files.before, "file limit");
                cell::run_cli(args, shutdown_signal()).await
            }
            Command::Events(args) => events_cli::run(args).await,
            Command::Probe {
                url,
                timeout_ms,
                wait_ms,
            } => {
                let client = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_millis(timeout_ms))
                    .build()?;
                let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
                loop {
                    let answer = match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => return Ok(()),
                        Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                        Err(e) => e.to_string(),
                    };
                    if std::time::Instant::now() >= deadline {
                        eprintln!("GET {url}: {answer}");
                        std::process::exit(1)
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
            }
            Command::Config(ConfigCommand::Check { file, mode }) => {
                let fits = ConfigFile::read(&file)?.check(&Cli::command(), mode.as_deref())?;
                println!("{}: ok (keys fit: {})", file.display(), fits.join(", "));
                Ok(())
            }
            Command::Auth(AuthCommand::HashPassword) => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the password on stdin")?;
                let password = line.trim_end_matches(['\n', '\r']);
                if password.is_empty() {
                    bail!("an empty password");
                }
                println!("{}", hash_password(password).map_err(anyhow::Error::msg)?);
                Ok(())
            }
            Command::Auth(AuthCommand::CellSecret { cell_id, secret }) => {
                let cluster = secret
                    .cluster_secret()?
                    .context("the cluster secret: --cluster-secret-file or CAPSTAN_CLUSTER_SECRET")?;
                println!("{}", capstan_raft::credential::cell_secret(&cluster, &cell_id));
                Ok(())
            }
            Command::Auth(AuthCommand::GenKey { out }) => {
                let (_, pem) = capstan::auth::keys::SigningKey::generate("new")?;
                let mut f = std::fs::OpenOptions::new();
                f.write(true).create_new(true);
                std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
                std::io::Write::write_all(
                    &mut f.open(&out).with_context(|| format!("creating {}", out.display()))?,
                    pem.as_bytes(),
                )?;
                println!("wrote {}", out.display());
                Ok(())
            }
            Command::Task(args) => match task_cli::run(args).await? {
                0 => Ok(()),
                code => std::process::exit(code),
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_members;

    #[test]
    fn initial_cluster_parsing() {
        let m = parse_members("1=a:1, 2=b:2,3=c:3").expect("parses");
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(&2).map(String::as_str), Some("b:2"));
        assert!(parse_members("1=a:1,1=b:2").is_err());
        assert!(parse_members("0=a:1").is_err());
        assert!(parse_members("x").is_err());
        assert!(parse_members("").is_err());
    }
}
