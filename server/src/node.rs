//! Wiring of one node: sled, the Raft node, the leader's loops, the gRPC services, the optional
//! REST gateway and embedded cell, and an orderly shutdown when the shutdown future resolves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use capstan_proto::pb::admin_server::AdminServer;
use capstan_proto::pb::cell_service_server::CellServiceServer;
use capstan_proto::pb::control_plane_server::ControlPlaneServer;
use capstan_proto::pb::raft_peer_server::RaftPeerServer;
use capstan_raft::network::PEER_MESSAGE_BYTES_MAX;
use capstan_raft::peer_service::PeerService;
use capstan_raft::{NodeConfig, RaftNode};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::api::admin::AdminService;
use crate::api::cells::CellServiceImpl;
use crate::api::control_plane::ControlPlaneService;
use crate::api::forward::{Forwarder, Peers};
use crate::leader::hub::Hub;
use crate::leader::presence::{self, Presence};
use crate::leader::{converger, scheduler};

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
    /// Snapshot policy overrides (`None` = the node defaults).
    pub snapshot_every_entries: Option<u64>,
    pub logs_kept_behind_snapshot: Option<u64>,
    /// Writes are refused (507) while the data directory's filesystem has less free space.
    pub disk_free_floor_bytes: u64,
    /// Cell presence TTL the leader enforces.
    pub cell_ttl: std::time::Duration,
    /// Period of the convergence pass (it also runs at once when a cell is lost).
    pub converge_interval: std::time::Duration,
    /// Run a cell agent in this process (`capstan dev`).
    pub embedded_cell: Option<crate::cell::CellConfig>,
}

/// Accepted gRPC connections with Nagle off: small request/response pairs must not wait for
/// delayed ACKs (a 40 ms stall per round trip otherwise).
fn incoming_nodelay(listener: TcpListener) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Runs a node until `shutdown` resolves, then stops it in order (cell, REST, leader loops, gRPC,
/// Raft) and flushes its storage.
pub async fn run(opts: NodeOptions, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.data_dir).with_context(|| format!("creating {}", opts.data_dir.display()))?;
    let db = capstan_storage::open_db(&opts.data_dir.join("db")).context("opening sled")?;

    let grpc_listener = TcpListener::bind(opts.grpc)
        .await
        .with_context(|| format!("binding gRPC {}", opts.grpc))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_listener = match opts.http {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("binding HTTP {a}"))?,
        ),
        None => None,
    };

    let mut config = NodeConfig::new(opts.id, opts.data_dir.join("snapshots"));
    if let Some(n) = opts.snapshot_every_entries {
        config.snapshot_every_entries = n;
    }
    if let Some(n) = opts.logs_kept_behind_snapshot {
        config.logs_kept_behind_snapshot = n;
    }
    config.disk_free_floor_bytes = opts.disk_free_floor_bytes;
    let node = RaftNode::start(&config, &db).await.map_err(|e| anyhow::anyhow!(e))?;

    let hub = Hub::new(node.clone());
    let presence = Presence::new(opts.cell_ttl);
    let leader_tasks = [
        tokio::spawn(hub.clone().run()),
        tokio::spawn(scheduler::run(node.clone(), hub.clone())),
        tokio::spawn(converger::run(node.clone(), hub.clone(), opts.converge_interval)),
        tokio::spawn(presence::run(node.clone(), hub.clone(), presence.clone())),
    ];

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc_server = {
        let mut stop = stop_rx.clone();
        let fwd = Forwarder::new(node.clone(), std::sync::Arc::new(Peers::default()));
        let cp = ControlPlaneServer::new(ControlPlaneService::new(fwd.clone()));
        let admin = AdminServer::new(AdminService::new(fwd.clone()));
        let cells = CellServiceServer::new(CellServiceImpl::new(fwd, hub.clone(), presence));
        let peer = RaftPeerServer::new(PeerService::new(node.raft.clone()))
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(cp)
                .add_service(admin)
                .add_service(cells)
                .add_service(peer)
                .serve_with_incoming_shutdown(incoming_nodelay(grpc_listener), async move {
                    let _ = stop.changed().await;
                }),
        )
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
            let gateway = capstan_gateway::Gateway::connect_lazy(&[grpc_addr.to_string()])?;
            let task = tokio::spawn(serve_http(listener, gateway, stop_rx.clone()));
            println!("capstan: http={http_addr}");
            Some(task)
        }
    };
    let cell_task = opts.embedded_cell.map(|mut cfg| {
        cfg.cluster = vec![grpc_addr.to_string()];
        let stop = stop_rx.clone();
        tokio::spawn(async move { crate::cell::run(cfg, stop).await })
    });
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
    for t in leader_tasks {
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

/// Serves the REST gateway until `stop` changes.
async fn serve_http(
    listener: TcpListener,
    gateway: capstan_gateway::Gateway,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
    });
    axum::serve(listener, capstan_gateway::router(gateway))
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await
}

/// `capstan gateway`: REST only, balanced over the cluster's nodes (any node serves any request).
pub async fn run_gateway(
    cluster: &str,
    http: SocketAddr,
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
    let gateway = capstan_gateway::Gateway::connect_lazy(&addrs)?;
    let listener = TcpListener::bind(http)
        .await
        .with_context(|| format!("binding HTTP {http}"))?;
    println!("capstan: http={}", listener.local_addr()?);
    println!("capstan: ready gateway");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(serve_http(listener, gateway, stop_rx));
    shutdown.await;
    let _ = stop_tx.send(true);
    task.await??;
    Ok(())
}
