//! The server side of the Raft network: the `RaftPeer` tonic service hands each RPC to openraft.

use capstan_proto::pb;
use capstan_proto::pb::raft_peer_server::RaftPeer;
use capstan_storage::codec;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest};
use openraft::SnapshotMeta;
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::RaftNode;

pub struct PeerService {
    /// The node whose Raft core takes the RPCs and whose batcher takes forwarded writes.
    node: RaftNode,
}

impl PeerService {
    pub fn new(node: RaftNode) -> Self {
        Self { node }
    }
}

fn raft_status(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

impl PeerService {
    /// A Raft RPC is taken only from a member of this node's membership (voter or learner) — the
    /// sender is the node its vote names (the leader, or the candidate). A node with no membership
    /// yet (being added) takes it from whoever its credentials let through: the leader that is
    /// adding it. So a node removed from the cluster, still running with valid credentials, cannot
    /// disturb it with elections.
    fn check_sender(&self, vote: Option<&pb::Vote>) -> Result<(), Status> {
        self.check_member(vote.map(|v| v.node_id).unwrap_or_default())
    }

    fn check_member(&self, sender: u64) -> Result<(), Status> {
        let metrics = self.node.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        if membership.nodes().next().is_none() || membership.get_node(&sender).is_some() {
            return Ok(());
        }
        tracing::info!(sender, "raft call from a node outside the membership refused");
        Err(Status::permission_denied(format!(
            "node {sender} is not a member of this cluster"
        )))
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        req: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let req = req.into_inner();
        self.check_sender(req.vote.as_ref())?;
        let mut entries = Vec::with_capacity(req.entries.len());
        let mut received = Vec::with_capacity(req.entries.len());
        for bytes in req.entries {
            let entry = pb::LogEntry::decode(bytes.clone())
                .map_err(|e| Status::invalid_argument(format!("log entry: {e}")))
                .and_then(|e| codec::entry_from_pb(e).map_err(|e| Status::invalid_argument(e.to_string())))?;
            received.push((entry.log_id, bytes));
            entries.push(entry);
        }
        // The entries are stored in the bytes they came in (not encoded again).
        self.node.log.offer_received(received);
        let rpc = AppendEntriesRequest {
            vote: codec::vote_from_pb(&req.vote.unwrap_or_default()),
            prev_log_id: codec::opt_log_id_from_pb(req.prev_log_id.as_ref()),
            entries,
            leader_commit: codec::opt_log_id_from_pb(req.leader_commit.as_ref()),
        };
        let resp = self.node.raft.append_entries(rpc).await.map_err(raft_status)?;
        if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
            self.node.note_leader_contact();
        }
        use pb::append_entries_response::Result as R;
        let result = match resp {
            AppendEntriesResponse::Success => R::Success(true),
            AppendEntriesResponse::PartialSuccess(Some(l)) => R::PartialSuccess(codec::log_id_to_pb(&l)),
            AppendEntriesResponse::PartialSuccess(None) => R::PartialSuccessNone(true),
            AppendEntriesResponse::Conflict => R::Conflict(true),
            AppendEntriesResponse::HigherVote(v) => R::HigherVote(codec::vote_to_pb(&v)),
        };
        Ok(Response::new(pb::AppendEntriesResponse { result: Some(result) }))
    }

    async fn vote(&self, req: Request<pb::VoteRequest>) -> Result<Response<pb::VoteResponse>, Status> {
        let req = req.into_inner();
        self.check_sender(req.vote.as_ref())?;
        let rpc = VoteRequest {
            vote: codec::vote_from_pb(&req.vote.unwrap_or_default()),
            last_log_id: codec::opt_log_id_from_pb(req.last_log_id.as_ref()),
        };
        let resp = self.node.raft.vote(rpc).await.map_err(raft_status)?;
        Ok(Response::new(pb::VoteResponse {
            vote: Some(codec::vote_to_pb(&resp.vote)),
            vote_granted: resp.vote_granted,
            last_log_id: codec::opt_log_id_to_pb(resp.last_log_id.as_ref()),
        }))
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        let req = req.into_inner();
        self.check_sender(req.vote.as_ref())?;
        let meta = req.meta.unwrap_or_default();
        let rpc = InstallSnapshotRequest {
            vote: codec::vote_from_pb(&req.vote.unwrap_or_default()),
            meta: SnapshotMeta {
                last_log_id: codec::opt_log_id_from_pb(meta.last_log_id.as_ref()),
                last_membership: meta
                    .last_membership
                    .as_ref()
                    .map(codec::stored_membership_from_pb)
                    .unwrap_or_default(),
                snapshot_id: meta.snapshot_id,
            },
            offset: req.offset,
            data: req.data,
            done: req.done,
        };
        let resp = self.node.raft.install_snapshot(rpc).await.map_err(raft_status)?;
        Ok(Response::new(pb::InstallSnapshotResponse {
            vote: Some(codec::vote_to_pb(&resp.vote)),
        }))
    }

    /// A member's forwarded writes: proposed here when this node leads (never forwarded again).
    async fn propose(&self, req: Request<pb::ForwardedWrites>) -> Result<Response<pb::ForwardedOutcomes>, Status> {
        let req = req.into_inner();
        self.check_member(req.from_node)?;
        let answer = match self.node.write_all(req.commands).await {
            Ok(outcomes) => pb::ForwardedOutcomes {
                outcomes,
                refused: None,
            },
            Err(e) => pb::ForwardedOutcomes {
                outcomes: vec![],
                refused: Some(pb::WriteRefusal::from(&e)),
            },
        };
        Ok(Response::new(answer))
    }
}
