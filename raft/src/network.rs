//! The Raft network: openraft's three RPCs over the `RaftPeer` tonic service.
//!
//! A peer that cannot be reached answers `Unreachable`, so openraft backs off instead of
//! retrying at once; a call past openraft's per-RPC deadline is openraft's `Timeout` (retried at
//! once), the transport's own deadline lying beyond it.

use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb;
use capstan_proto::pb::raft_peer_client::RaftPeerClient;
use capstan_storage::{codec, LogStore};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use tonic::transport::Channel;

use crate::channels::Channels;
use crate::credential::{Authed, ClusterCredential};
use crate::TypeConfig;

/// How long a connection attempt to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest peer message; a snapshot chunk and a full AppendEntries batch fit well inside.
pub const PEER_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Opens peer clients; each carries the cluster credential on every RPC. Clients share one lazily
/// connected channel per peer address: openraft asks for a client per replication stream and per
/// vote round, and for every follower on each linearizable read (`ensure_linearizable`), so a new
/// client must not cost a new TCP connection and HTTP/2 handshake. A channel reconnects by itself
/// when its connection breaks; the channel of an address that left the membership is dropped
/// ([`Network::retain_channels`]).
#[derive(Clone, Default)]
pub struct Network {
    credential: ClusterCredential,
    channels: Arc<Channels<Channel>>,
    /// This node's log: entries are sent to followers in the bytes it stored them in.
    log: Option<LogStore>,
}

impl Network {
    pub fn new(credential: ClusterCredential) -> Self {
        Self {
            credential,
            channels: Arc::default(),
            log: None,
        }
    }

    /// Sends entries in the bytes `log` stored them in (encoded once, not once per follower).
    pub fn sending_from(mut self, log: LogStore) -> Self {
        self.log = Some(log);
        self
    }

    /// The shared channel to `addr`, made on first use; `None` for an address that is no endpoint.
    fn channel(&self, addr: &str) -> Option<Channel> {
        self.channels
            .get_or_make(addr, || {
                let endpoint = self.credential.endpoint(addr).map_err(|_| ())?;
                Ok::<_, ()>(
                    endpoint
                        .connect_timeout(CONNECT_TIMEOUT)
                        .tcp_nodelay(true)
                        .connect_lazy(),
                )
            })
            .ok()
    }

    /// Drops the channels of peers `keep` says are gone; how many were dropped.
    pub fn retain_channels(&self, keep: impl Fn(&str) -> bool) -> usize {
        self.channels.retain(keep)
    }

    /// A `RaftPeer` client of the node at `addr` on its shared channel; `None` for an address
    /// that is no endpoint.
    pub(crate) fn peer(&self, addr: &str) -> Option<RaftPeerClient<Authed>> {
        let channel = self.channel(addr)?;
        Some(
            RaftPeerClient::new(self.credential.wrap(channel))
                .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
        )
    }
}

pub struct PeerClient {
    target: u64,
    client: Option<RaftPeerClient<Authed>>,
    log: Option<LogStore>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        let client = self.peer(&node.addr);
        if client.is_none() {
            tracing::error!(target, addr = %node.addr, "peer address is not a valid endpoint");
        }
        PeerClient {
            target,
            client,
            log: self.log.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PeerError(String);

fn status_to_rpc<E: std::error::Error>(target: u64, s: tonic::Status) -> RPCError<u64, BasicNode, RaftError<u64, E>> {
    let err = PeerError(format!("peer {target}: {}: {}", s.code(), s.message()));
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&err))
        }
        _ => RPCError::Network(NetworkError::new(&err)),
    }
}

impl PeerClient {
    fn client(&self) -> Result<RaftPeerClient<Authed>, Unreachable> {
        self.client
            .clone()
            .ok_or_else(|| Unreachable::new(&PeerError(format!("peer {} has no valid address", self.target))))
    }
}

/// How much later than openraft's own deadline for an RPC the transport gives up on it. openraft
/// wraps every call in its deadline and counts an expiry as a `Timeout`, retried at once; were the
/// transport's (same) deadline to fire first, the expiry would come back as a cancelled call, i.e.
/// `Unreachable`, and the replication stream would stop for openraft's 500 ms backoff. A follower
/// slow to append one large batch (a loaded 3-node cluster on 2 cores did so ~140 times in one
/// run) would then hold commits back for half a second each time.
const TRANSPORT_DEADLINE_SLACK: u32 = 2;

fn request<T>(msg: T, option: &RPCOption) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(option.hard_ttl() * TRANSPORT_DEADLINE_SLACK);
    r
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let msg = pb::AppendEntriesRequest {
            vote: Some(codec::vote_to_pb(&rpc.vote)),
            prev_log_id: codec::opt_log_id_to_pb(rpc.prev_log_id.as_ref()),
            entries: rpc
                .entries
                .iter()
                .map(|e| {
                    let stored = self.log.as_ref().and_then(|log| log.encoded(&e.log_id));
                    stored.unwrap_or_else(|| codec::encode_entry(e).into())
                })
                .collect(),
            leader_commit: codec::opt_log_id_to_pb(rpc.leader_commit.as_ref()),
        };
        let resp = self
            .client()?
            .append_entries(request(msg, &option))
            .await
            .map_err(|s| status_to_rpc(self.target, s))?
            .into_inner();
        use pb::append_entries_response::Result as R;
        Ok(match resp.result {
            Some(R::Success(_)) => AppendEntriesResponse::Success,
            Some(R::PartialSuccess(l)) => AppendEntriesResponse::PartialSuccess(Some(codec::log_id_from_pb(&l))),
            Some(R::PartialSuccessNone(_)) => AppendEntriesResponse::PartialSuccess(None),
            Some(R::Conflict(_)) => AppendEntriesResponse::Conflict,
            Some(R::HigherVote(v)) => AppendEntriesResponse::HigherVote(codec::vote_from_pb(&v)),
            None => {
                return Err(RPCError::Network(NetworkError::new(&PeerError(
                    "append_entries answer without a result".into(),
                ))))
            }
        })
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        let msg = pb::InstallSnapshotRequest {
            vote: Some(codec::vote_to_pb(&rpc.vote)),
            meta: Some(pb::SnapshotMeta {
                last_log_id: codec::opt_log_id_to_pb(rpc.meta.last_log_id.as_ref()),
                last_membership: Some(codec::stored_membership_to_pb(&rpc.meta.last_membership)),
                snapshot_id: rpc.meta.snapshot_id.clone(),
            }),
            offset: rpc.offset,
            data: rpc.data,
            done: rpc.done,
        };
        let resp = self
            .client()?
            .install_snapshot(request(msg, &option))
            .await
            .map_err(|s| status_to_rpc(self.target, s))?
            .into_inner();
        Ok(InstallSnapshotResponse {
            vote: codec::vote_from_pb(&resp.vote.unwrap_or_default()),
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let msg = pb::VoteRequest {
            vote: Some(codec::vote_to_pb(&rpc.vote)),
            last_log_id: codec::opt_log_id_to_pb(rpc.last_log_id.as_ref()),
        };
        let resp = self
            .client()?
            .vote(request(msg, &option))
            .await
            .map_err(|s| status_to_rpc(self.target, s))?
            .into_inner();
        Ok(VoteResponse {
            vote: codec::vote_from_pb(&resp.vote.unwrap_or_default()),
            vote_granted: resp.vote_granted,
            last_log_id: codec::opt_log_id_from_pb(resp.last_log_id.as_ref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deadline a call carries on the wire (`grpc-timeout`), as tonic wrote it.
    fn wire_deadline<T>(r: &tonic::Request<T>) -> Duration {
        let v = r
            .metadata()
            .get("grpc-timeout")
            .expect("a deadline")
            .to_str()
            .expect("ascii");
        let (n, unit) = v.split_at(v.len() - 1);
        let n: u64 = n.parse().expect("a number");
        match unit {
            "H" => Duration::from_secs(n * 3600),
            "M" => Duration::from_secs(n * 60),
            "S" => Duration::from_secs(n),
            "m" => Duration::from_millis(n),
            "u" => Duration::from_micros(n),
            "n" => Duration::from_nanos(n),
            other => panic!("unit {other}"),
        }
    }

    #[test]
    fn the_transport_gives_up_only_after_openraft_did() {
        for ttl in [
            Duration::from_millis(100),
            Duration::from_millis(400),
            Duration::from_secs(5),
        ] {
            let r = request((), &RPCOption::new(ttl));
            assert!(wire_deadline(&r) > ttl, "{ttl:?}: {:?}", wire_deadline(&r));
        }
    }
}
