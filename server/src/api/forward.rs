//! A node's way to the leader and to other nodes: its channels ([`Peers`], one re-used gRPC
//! channel per address, pruned when an address leaves) and the two ways a write reaches the
//! leader — its command alone, batched with the other commands this node forwards
//! ([`Forwarder::decide`]), or, for a method the route table sends to the leader, the whole call
//! ([`super::leader`]), which then proposes here ([`Forwarder::propose`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb::{self, ErrorKind};
use capstan_raft::channels::Channels;
use capstan_raft::credential::{Authed, ClusterCredential};
use capstan_raft::RaftNode;
use tonic::Status;

use crate::errors;

/// Deadline of a forwarded call, a little over the leader's own quorum wait.
const FORWARD_TIMEOUT: Duration = capstan_raft::forward::FORWARD_WAIT;
/// How long connecting to another node may take before the call is "leader unreachable".
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

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

    /// Proposes a command on this node, which the method's route ([`super::leader::served_at`])
    /// made the leader: its events, or a business refusal in the family's error shape; a
    /// leadership lost meanwhile is "unavailable, retry" with the new leader's address.
    pub async fn propose(&self, kind: pb::command::Kind) -> Result<Vec<pb::Event>, Status> {
        let outcome = self.node.write(pb::Command { kind: Some(kind) }).await;
        outcome.map_err(|e| errors::write_error(&e)).and_then(events_of)
    }

    /// Proposes a command from wherever this node is and answers its events: the leader
    /// proposes it; a follower forwards the command itself to the leader, batched with the other
    /// commands it forwards (one call carries many), and hands back the leader's outcome. For a
    /// request whose answer depends only on what its command decided; one that reads views
    /// around its write is routed whole to the leader instead ([`super::leader`]).
    pub async fn decide(&self, kind: pb::command::Kind) -> Result<Vec<pb::Event>, Status> {
        let outcome = self.node.write_anywhere(pb::Command { kind: Some(kind) }).await;
        outcome.map_err(|e| errors::write_error(&e)).and_then(events_of)
    }

    /// Awaits a call sent to the leader at `addr`, given up as "unavailable, retry" once another
    /// node leads (a paused or cut-off leader holds a call silently).
    pub async fn unless_leader_moves<R>(
        &self,
        call: impl Future<Output = Result<R, Status>>,
        addr: &str,
    ) -> Result<R, Status> {
        let moved = |message: String| {
            let retry = u32::try_from(capstan_raft::node::RETRY_AFTER.as_millis()).unwrap_or(500);
            errors::status(ErrorKind::Unavailable, message, retry)
        };
        let metrics = self.node.raft.metrics();
        capstan_raft::forward::unless_leader_moves(call, metrics, addr.to_owned(), moved).await
    }
}

/// A command's events, or its refusal in the family's error shape.
fn events_of(outcome: pb::Outcome) -> Result<Vec<pb::Event>, Status> {
    match outcome.rejection {
        Some(r) => Err(errors::rejection(&r)),
        None => Ok(outcome.events),
    }
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
