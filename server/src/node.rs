//! Wiring of one node: sled, the Raft node, the leader's loops, the gRPC services, the optional
//! REST gateway and embedded cell, and an orderly shutdown when the shutdown future resolves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use capstan_gateway::common::layers::RequestLimits;

use crate::api::leader::ToLeader;
use capstan_gateway::common::serve::{self, HttpLimits, LimitedIncoming, GRPC_CONNECTIONS_MAX};
use capstan_proto::pb::admin_server::AdminServer;
use capstan_proto::pb::cell_service_server::CellServiceServer;
use capstan_proto::pb::cf_service_server::CfServiceServer;
use capstan_proto::pb::control_plane_server::ControlPlaneServer;
use capstan_proto::pb::raft_peer_server::RaftPeerServer;
use capstan_proto::pb::task_service_server::TaskServiceServer;
use capstan_raft::network::PEER_MESSAGE_BYTES_MAX;
use capstan_raft::peer_service::PeerService;
use capstan_raft::{NodeConfig, RaftNode};
use tokio::net::TcpListener;

use crate::api::admin::AdminService;
use crate::api::cells::CellServiceImpl;
use crate::api::control_plane::ControlPlaneService;
use crate::api::forward::{Forwarder, Peers};
use crate::api::tasks::TaskServiceImpl;
use crate::auth::service::AuthService;
use crate::auth::{Authenticator, Guard};
use crate::leader::hub::Hub;
use crate::leader::presence::{self, Presence};
use crate::leader::{callbacks, converger, scheduler};
use capstan_proto::pb::auth_server::AuthServer;

/// The limits of a node's listeners (all named, all configurable).
#[derive(Clone, Copy, Debug, Default)]
pub struct ListenLimits {
    pub http: HttpLimits,
    pub request: RequestLimits,
    pub grpc: GrpcLimits,
}

/// The limits of the gRPC listener.
#[derive(Clone, Copy, Debug)]
pub struct GrpcLimits {
    pub connections_max: usize,
    /// Deadline of one call on the server.
    pub request_timeout: Duration,
    pub streams_per_connection_max: u32,
    /// HTTP/2 keepalive: ping a quiet connection this often, drop it when a ping goes unanswered.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            connections_max: GRPC_CONNECTIONS_MAX,
            request_timeout: GRPC_REQUEST_TIMEOUT,
            streams_per_connection_max: GRPC_STREAMS_PER_CONNECTION_MAX,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// How long `capstan dev` waits for its embedded cell to register before it says it is ready.
pub const EMBEDDED_CELL_REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// A gRPC call's outer deadline on the server (the forwarding hop's own is 8 s).
pub const GRPC_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent streams one gRPC connection may open (a gateway multiplexes its clients on few).
pub const GRPC_STREAMS_PER_CONNECTION_MAX: u32 = 1024;

pub struct NodeOptions {
    pub id: u64,
    pub data_dir: PathBuf,
    pub grpc: SocketAddr,
    /// The address peers reach this node at; `None` = the bound gRPC address.
    pub advertise: Option<String>,
    pub http: Option<SocketAddr>,
    /// Founding members (id → address). `None` = a one-node cluster of this node (dev);
    /// empty = join no cluster by itself, wait to be added.
    pub initial_members: Option<BTreeMap<u64, String>>,
    /// How the node is tuned (the flags `dev` and `server` share).
    pub tuning: Tuning,
    /// Run a cell agent in this process (`capstan dev`).
    pub embedded_cell: Option<crate::cell::CellConfig>,
    /// Who may call what (auth off: everyone may do everything).
    pub auth: std::sync::Arc<Authenticator>,
    /// TLS on the listeners and on the calls this node makes (`None`: plain TCP).
    pub tls: Option<crate::tls::Tls>,
}

/// What `capstan dev` and `capstan server` tune alike.
pub struct Tuning {
    /// Snapshot policy overrides (`None` = the node defaults).
    pub snapshot_every_entries: Option<u64>,
    pub logs_kept_behind_snapshot: Option<u64>,
    /// Writes are refused (507) while the data directory's filesystem has less free space.
    pub disk_free_floor_bytes: u64,
    /// Journal records kept (the window `/v1/events` and `Watch` resume from).
    pub journal_records_max: u64,
    /// Encoded journal bytes kept (the oldest records go first beyond it).
    pub journal_bytes_max: u64,
    /// sled's page cache (`capstan_storage::disk::SLED_CACHE_BYTES_DEFAULT`).
    pub sled_cache_bytes: u64,
    pub limits: ListenLimits,
    /// Cell presence TTL the leader enforces.
    pub cell_ttl: std::time::Duration,
    /// Period of the convergence pass (it also runs at once when a cell is lost).
    pub converge_interval: std::time::Duration,
}

/// Runs a node until `shutdown` resolves, then stops it in order (cell, REST, leader loops, gRPC,
/// Raft) and flushes its storage.
pub async fn run(opts: NodeOptions, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    capstan_gateway::metrics::install();
    crate::metrics::describe();
    std::fs::create_dir_all(&opts.data_dir).with_context(|| format!("creating {}", opts.data_dir.display()))?;
    let db =
        capstan_storage::Disk::open(&opts.data_dir.join("db"), opts.tuning.sled_cache_bytes).context("opening sled")?;

    let grpc_listener = serve::bind(opts.grpc).with_context(|| format!("binding gRPC {}", opts.grpc))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_listener = match opts.http {
        Some(a) => Some(serve::bind(a).with_context(|| format!("binding HTTP {a}"))?),
        None => None,
    };

    let mut config = NodeConfig::new(opts.id, opts.data_dir.join("snapshots"));
    if let Some(n) = opts.tuning.snapshot_every_entries {
        config.snapshot_every_entries = n;
    }
    if let Some(n) = opts.tuning.logs_kept_behind_snapshot {
        config.logs_kept_behind_snapshot = n;
    }
    config.disk_free_floor_bytes = opts.tuning.disk_free_floor_bytes;
    config.journal_records_max = opts.tuning.journal_records_max;
    config.journal_bytes_max = opts.tuning.journal_bytes_max;
    let credential = match &opts.tls {
        Some(tls) => opts.auth.cluster_credential().with_tls(tls.client(true)?),
        None => opts.auth.cluster_credential(),
    };
    config.credential = credential.clone();
    let node = RaftNode::start(&config, &db).await.map_err(|e| anyhow::anyhow!(e))?;

    // Revoked tokens are refused by every node as soon as it has applied the revocation.
    let views = node.views().clone();
    opts.auth.issuer().watch_revocations(Box::new(move |jti| {
        views.get_token_revocation(jti).ok().flatten().is_some()
    }));
    let hub = Hub::new(node.clone());
    let presence = Presence::new(opts.tuning.cell_ttl);
    let _state_metrics = crate::metrics::collect_state(node.clone(), hub.clone(), presence.clone());
    let leader_tasks = [
        tokio::spawn(crate::metrics::publish_raft(node.clone())),
        tokio::spawn(hub.clone().run()),
        tokio::spawn(scheduler::run(node.clone(), hub.clone())),
        tokio::spawn(callbacks::run(node.clone(), hub.clone())),
        tokio::spawn(converger::run(node.clone(), hub.clone(), opts.tuning.converge_interval)),
        tokio::spawn(presence::run(node.clone(), hub.clone(), presence.clone())),
        tokio::spawn(crate::leader::rollouts::run(node.clone(), hub.clone())),
    ];

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (grpc_server, in_process, pruner) = {
        let mut stop = stop_rx.clone();
        let fwd = Forwarder::new(node.clone(), std::sync::Arc::new(Peers::new(credential.clone())));
        let pruner = tokio::spawn(crate::api::forward::prune_peer_channels(fwd.clone()));
        let watchers = crate::api::watch::Watchers::new(stop_rx.clone());
        let cp = ControlPlaneServer::new(ControlPlaneService::new(fwd.clone(), watchers));
        let admin = AdminServer::new(AdminService::new(fwd.clone()));
        let tasks = TaskServiceServer::new(TaskServiceImpl::new(fwd.clone()));
        let cf = CfServiceServer::new(crate::api::cf::CfServiceImpl::new(fwd.clone(), opts.auth.clone()));
        let cells = CellServiceServer::new(CellServiceImpl::new(fwd.clone(), hub.clone(), presence));
        let peer = RaftPeerServer::new(PeerService::new(node.clone()))
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX);
        let tokens = AuthServer::new(AuthService::new(opts.auth.clone(), fwd.clone()));
        // The one list of services: the public ones (the REST gateway in this process calls them
        // behind the same layers), then those for cells and peers, on the gRPC port only.
        let public = tonic::service::Routes::new(cp)
            .add_service(tasks)
            .add_service(cf)
            .add_service(admin)
            .add_service(tokens);
        let every = public.clone().add_service(cells).add_service(peer);
        let in_process = tower::ServiceBuilder::new()
            .layer(crate::logging::GrpcSpanLayer)
            .layer(crate::metrics::GrpcMetrics::layer())
            .layer(Guard::layer(opts.auth.clone()))
            .layer(ToLeader::layer(fwd.clone()))
            .service(public);
        let grpc = opts.tuning.limits.grpc;
        let mut server = tonic::transport::Server::builder().trace_fn(crate::logging::grpc_span);
        if let Some(tls) = &opts.tls {
            server = server.tls_config(tls.grpc_server(false)?).context("gRPC TLS")?;
        }
        let task = tokio::spawn(
            server
                .layer(crate::metrics::GrpcMetrics::layer())
                .layer(Guard::layer(opts.auth.clone()))
                .layer(ToLeader::layer(fwd.clone()))
                .timeout(grpc.request_timeout)
                .max_concurrent_streams(grpc.streams_per_connection_max)
                .http2_keepalive_interval(Some(grpc.keepalive_interval))
                .http2_keepalive_timeout(Some(grpc.keepalive_timeout))
                .tcp_keepalive(Some(grpc.keepalive_interval))
                .add_routes(every)
                .serve_with_incoming_shutdown(
                    LimitedIncoming::new(
                        grpc_listener,
                        grpc.connections_max,
                        opts.tuning.limits.http.header_read_timeout,
                    ),
                    async move {
                        let _ = stop.changed().await;
                    },
                ),
        );
        (task, in_process, pruner)
    };

    let advertise = opts.advertise.clone().unwrap_or_else(|| grpc_addr.to_string());
    let dev = opts.initial_members.is_none();
    let members = opts
        .initial_members
        .unwrap_or_else(|| BTreeMap::from([(opts.id, advertise.clone())]));
    // Exactly one founding member bootstraps (the lowest id), and only on empty state; the
    // others learn the membership from it.
    if members.keys().next() == Some(&opts.id) {
        node.initialize(members).await.map_err(|e| anyhow::anyhow!(e))?;
    }
    if dev {
        // A one-node cluster elects itself at once; say "ready" only when it has.
        let mut metrics = node.raft.metrics();
        let elected = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            metrics.wait_for(|m| m.current_leader == Some(opts.id)),
        )
        .await;
        if !matches!(elected, Ok(Ok(_))) {
            anyhow::bail!("the single node did not become leader within 10 s");
        }
    }

    let http_task = match http_listener {
        None => None,
        Some(listener) => {
            let http_addr = listener.local_addr()?;
            // In-process: the gateway calls this node's services without a socket.
            let gateway = capstan_gateway::Gateway::over(in_process);
            let acceptor = opts.tls.as_ref().map(rest_tls).transpose()?;
            let task = tokio::spawn(serve_http(
                listener,
                gateway,
                opts.tuning.limits,
                acceptor,
                stop_rx.clone(),
            ));
            println!("capstan: http={http_addr}");
            Some(task)
        }
    };
    let embedded_cell_id = opts.embedded_cell.as_ref().map(|c| c.cell.cell_id.clone());
    let cell_task = opts.embedded_cell.map(|mut cfg| {
        cfg.cluster = crate::cell::Uplink {
            addrs: vec![grpc_addr.to_string()],
            credential: credential.clone(),
        };
        cfg.api_tls = opts.tls.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move { crate::cell::run(cfg, stop).await })
    });
    if let Some(cell_id) = embedded_cell_id {
        // Ready means ready to run things: a task executed at once must find the embedded cell.
        let mut metrics = node.raft.metrics();
        let registered = tokio::time::timeout(EMBEDDED_CELL_REGISTER_TIMEOUT, async {
            while node.views().get_cell(&cell_id).ok().flatten().is_none() {
                if metrics.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if registered.is_err() {
            tracing::warn!(cell = %cell_id, "the embedded cell has not registered yet; going on without waiting");
        }
    }
    println!("capstan: grpc={grpc_addr}");
    println!("capstan: ready node={} advertise={advertise}", opts.id);
    tracing::info!(node = opts.id, %grpc_addr, data_dir = %opts.data_dir.display(), "capstan node ready");

    // A node whose Raft core stopped (its storage failed: a full disk, an I/O error) serves
    // nothing useful: it stops and exits non-zero so that its supervisor restarts it.
    let storage_failure = tokio::select! {
        _ = shutdown => None,
        reason = node.stopped() => Some(reason),
    };
    match &storage_failure {
        None => tracing::info!("shutting down"),
        Some(reason) => {
            tracing::error!(%reason, "the raft core stopped (storage failure); exiting so the node can be restarted")
        }
    }
    let _ = stop_tx.send(true);
    if let Some(t) = cell_task {
        let _ = t.await;
    }
    if let Some(t) = http_task {
        let _ = t.await;
    }
    for t in leader_tasks.into_iter().chain([pruner]) {
        t.abort();
    }
    let _ = grpc_server.await;
    node.shutdown().await;
    if let Some(reason) = storage_failure {
        anyhow::bail!("storage failed: {reason}");
    }
    db.make_durable().await.context("final flush")?;
    Ok(())
}

/// The REST gateway's client of the nodes at `addrs` (over TLS, without a client certificate:
/// its calls carry the REST callers' own credentials) and its listener's TLS.
/// The REST listener's TLS, from this process's certificate.
fn rest_tls(tls: &crate::tls::Tls) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let (cert, key) = tls.identity_pem()?;
    serve::tls_acceptor(cert, key).map_err(anyhow::Error::msg)
}

fn gateway_tls(
    addrs: &[String],
    tls: Option<&crate::tls::Tls>,
) -> anyhow::Result<(capstan_gateway::Gateway, Option<tokio_rustls::TlsAcceptor>)> {
    let client = tls.map(|t| t.client(false)).transpose()?;
    let gateway = capstan_gateway::Gateway::connect_lazy(addrs, client)?;
    let acceptor = tls.map(rest_tls).transpose()?;
    Ok((gateway, acceptor))
}

/// Serves the REST gateway within its limits until `stop` changes.
async fn serve_http(
    listener: TcpListener,
    gateway: capstan_gateway::Gateway,
    limits: ListenLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = capstan_gateway::router_with(gateway, limits.request);
    serve::serve(listener, app, limits.http, tls, async move {
        let _ = stop.changed().await;
    })
    .await
}

/// `capstan gateway`: REST only, balanced over the cluster's nodes (any node serves any request).
pub async fn run_gateway(
    cluster: &str,
    http: SocketAddr,
    limits: ListenLimits,
    tls: Option<crate::tls::Tls>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let addrs: Vec<String> = cluster
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if addrs.is_empty() {
        anyhow::bail!("--cluster names no node");
    }
    capstan_gateway::metrics::install();
    let (gateway, acceptor) = gateway_tls(&addrs, tls.as_ref())?;
    let listener = serve::bind(http).with_context(|| format!("binding HTTP {http}"))?;
    println!("capstan: http={}", listener.local_addr()?);
    println!("capstan: ready gateway");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(serve_http(listener, gateway, limits, acceptor, stop_rx));
    shutdown.await;
    let _ = stop_tx.send(true);
    task.await??;
    Ok(())
}
