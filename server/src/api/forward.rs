//! The one place a request goes to the leader. Every public and internal service decides here
//! whether it serves a request itself or sends it one hop to the leader: writes before they are
//! stamped (only the leader stamps and proposes) — as the command alone, batched with the other
//! commands this node forwards, when the answer depends only on the outcome ([`Forwarder::decide`]),
//! else as the whole request, unchanged ([`Forwarder::propose`]) — and linearizable reads after the
//! read-index barrier says this node is not the leader. A forwarded request carries a marker so it
//! is never forwarded twice; clients of other nodes are one re-used gRPC channel per address.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb::{self, ErrorKind};
use capstan_raft::channels::Channels;
use capstan_raft::credential::{Authed, ClusterCredential};
use capstan_raft::{RaftNode, WriteError};
use tonic::{Request, Response, Status};

use crate::errors;

/// Metadata key set on a forwarded request.
pub const FORWARDED: &str = "x-capstan-forwarded";
/// Deadline of a forwarded call, a little over the leader's own quorum wait.
const FORWARD_TIMEOUT: Duration = capstan_raft::forward::FORWARD_WAIT;
/// How long connecting to another node may take before the call is "leader unreachable".
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Where a request is served: here (with what serving it produced), or by the leader at `addr`.
pub enum Served<T> {
    Here(T),
    Leader(String),
}

/// How often the channels of nodes and cells that are gone are dropped.
pub const PEER_CHANNELS_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// One gRPC channel per node (or cell) address, created lazily and kept while the address is a
/// member or a registered cell ([`prune_peer_channels`]); every call on it carries the cluster
/// credential.
#[derive(Default)]
pub struct Peers {
    channels: Channels<Authed>,
    credential: ClusterCredential,
}

impl Peers {
    pub fn new(credential: ClusterCredential) -> Self {
        Self {
            channels: Channels::default(),
            credential,
        }
    }

    pub fn channel(&self, addr: &str) -> Result<Authed, Status> {
        self.channels.get_or_make(addr, || {
            let endpoint = self
                .credential
                .endpoint(addr)
                .map_err(|e| errors::status(ErrorKind::Internal, format!("node address {addr}: {e}"), 0))?;
            let channel = endpoint
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .timeout(FORWARD_TIMEOUT)
                .connect_lazy();
            Ok(self.credential.wrap(channel))
        })
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

/// Every [`PEER_CHANNELS_PRUNE_INTERVAL`], drops the channels (this node's to other nodes and
/// cells, and its Raft core's to peers) whose address is no longer a member of the cluster or a
/// registered cell's API address.
pub async fn prune_peer_channels(fwd: Forwarder) {
    let mut tick = tokio::time::interval(PEER_CHANNELS_PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let raft_dropped = fwd.node.prune_peer_channels();
        let mut live = fwd.node.member_addrs();
        match fwd.node.views().cells() {
            Ok(cells) => live.extend(cells.into_iter().map(|c| c.api_addr)),
            // without the cell list nothing can be known gone: keep everything this round
            Err(e) => {
                tracing::warn!(error = %e, "peer channels not pruned: the cell list could not be read");
                continue;
            }
        }
        let dropped = fwd.peers.channels.retain(|addr| live.contains(addr));
        if raft_dropped + dropped > 0 {
            tracing::debug!(raft_dropped, dropped, kept = fwd.peers.len(), "peer channels pruned");
        }
    }
}

/// A node's way to the leader: its Raft node (who leads) and its channels (how to reach it).
#[derive(Clone)]
pub struct Forwarder {
    node: RaftNode,
    peers: Arc<Peers>,
}

impl Forwarder {
    pub fn new(node: RaftNode, peers: Arc<Peers>) -> Self {
        Self { node, peers }
    }

    pub fn node(&self) -> &RaftNode {
        &self.node
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Here when this node leads; else the leader's address — unless the request was already
    /// forwarded once or no leader is known, which is "unavailable, retry".
    pub fn route(&self, forwarded: bool) -> Result<Served<()>, Status> {
        if self.node.is_leader() {
            return Ok(Served::Here(()));
        }
        match (self.node.leader_addr(), forwarded) {
            (Some(addr), false) => Ok(Served::Leader(addr)),
            (leader_addr, _) => Err(errors::write_error(&WriteError::NotLeader {
                leader_id: self.node.raft.metrics().borrow().current_leader,
                leader_addr,
            })),
        }
    }

    /// Proposes a command on the leader: here when this node leads (a business refusal becomes
    /// the family's error), else the leader's address to forward the request to. Leadership lost
    /// between the check and the write is caught by the write and forwarded the same way.
    pub async fn propose(&self, kind: pb::command::Kind, forwarded: bool) -> Result<Served<Vec<pb::Event>>, Status> {
        if let Served::Leader(addr) = self.route(forwarded)? {
            return Ok(Served::Leader(addr));
        }
        match self.node.write(pb::Command { kind: Some(kind) }).await {
            Ok(outcome) => events_of(outcome).map(Served::Here),
            Err(e) => Self::leader_from(e, forwarded).map(Served::Leader),
        }
    }

    /// Proposes a command from wherever this node is and answers its events: the leader
    /// proposes it; a follower forwards the command itself to the leader, batched with the other
    /// commands it forwards (one call carries many), and hands back the leader's outcome. For a
    /// request whose answer depends only on what its command decided; one that reads views
    /// around its write is sent whole to the leader instead ([`Forwarder::propose`]). A request
    /// that was already forwarded whole is proposed here or refused, never sent on.
    pub async fn decide(&self, kind: pb::command::Kind, forwarded: bool) -> Result<Vec<pb::Event>, Status> {
        let command = pb::Command { kind: Some(kind) };
        let outcome = if forwarded {
            self.node.write(command).await
        } else {
            self.node.write_anywhere(command).await
        };
        outcome.map_err(|e| errors::write_error(&e)).and_then(events_of)
    }

    /// The read-index barrier of a linearizable read (nothing for a stale one): here when it
    /// passes, else the leader's address to forward the read to.
    pub async fn read_barrier(&self, consistency: i32, forwarded: bool) -> Result<Served<()>, Status> {
        if consistency == pb::ReadConsistency::Stale as i32 {
            return Ok(Served::Here(()));
        }
        match self.node.linearizable_barrier().await {
            Ok(()) => Ok(Served::Here(())),
            Err(e) => Self::leader_from(e, forwarded).map(Served::Leader),
        }
    }

    fn leader_from(e: WriteError, forwarded: bool) -> Result<String, Status> {
        match e {
            WriteError::NotLeader {
                leader_addr: Some(addr),
                ..
            } if !forwarded => Ok(addr),
            e => Err(errors::write_error(&e)),
        }
    }

    /// Sends a request to the leader at `addr` with `call`, which builds the service client on
    /// the channel and makes the call (marking the request with [`forwarded`]).
    pub async fn call_leader<R, Fut>(&self, addr: &str, call: impl FnOnce(Authed) -> Fut) -> Result<Response<R>, Status>
    where
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let channel = self.peers.channel(addr)?;
        // A paused or cut-off leader holds the call silently: give it up once another leads.
        let moved = |message: String| {
            let retry = u32::try_from(capstan_raft::node::RETRY_AFTER.as_millis()).unwrap_or(500);
            errors::status(ErrorKind::Unavailable, message, retry)
        };
        let metrics = self.node.raft.metrics();
        capstan_raft::forward::unless_leader_moves(call(channel), metrics, addr.to_owned(), moved)
            .await
            .map_err(leader_unreachable)
    }
}

/// A command's events, or its refusal in the family's error shape.
fn events_of(outcome: pb::Outcome) -> Result<Vec<pb::Event>, Status> {
    match outcome.rejection {
        Some(r) => Err(errors::rejection(&r)),
        None => Ok(outcome.events),
    }
}

/// Forwards a request to the leader: `on_leader!(forwarder, addr, ClientType, method, request)`.
macro_rules! on_leader {
    ($fwd:expr, $addr:expr, $client:ident, $method:ident, $req:expr) => {{
        let req = $req;
        $fwd.call_leader(&$addr, move |channel| async move {
            $client::new(channel)
                .$method($crate::api::forward::forwarded(req))
                .await
        })
        .await
    }};
}
pub(crate) use on_leader;

pub fn is_forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED)
}

/// Wraps a message for the one forwarding hop.
pub fn forwarded<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}

/// A transport failure reaching the leader is "unavailable, retry", like no leader at all.
pub fn leader_unreachable(status: Status) -> Status {
    if status.details().is_empty() {
        errors::status(
            ErrorKind::Unavailable,
            format!("the leader could not be reached: {}", status.message()),
            u32::try_from(capstan_raft::node::RETRY_AFTER.as_millis()).unwrap_or(500),
        )
    } else {
        status
    }
}
