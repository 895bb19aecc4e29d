//! The `Admin` gRPC service: node and cluster status, and membership changes (add a learner,
//! wait for it to catch up, promote it; remove a voter). Changes run on the leader; other
//! nodes forward them there.

use std::collections::BTreeSet;
use std::time::Duration;

use capstan_proto::pb::{self, admin_client::AdminClient, admin_server::Admin, ErrorKind};
use capstan_raft::RaftNode;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use tonic::{Request, Response, Status};

use super::forward::Forwarder;
use crate::errors;

/// How long a member has to answer a status probe before it is reported without one.
const STATUS_PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long adding a member may take, including its catch-up by snapshot and log.
const ADD_MEMBER_TIMEOUT: Duration = Duration::from_secs(120);

pub struct AdminService {
    fwd: Forwarder,
    node: RaftNode,
}

impl AdminService {
    pub fn new(fwd: Forwarder) -> Self {
        Self {
            node: fwd.node().clone(),
            fwd,
        }
    }

    fn local_status(&self) -> pb::NodeStatus {
        let m = self.node.raft.metrics().borrow().clone();
        let addr = m
            .membership_config
            .membership()
            .get_node(&m.id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        pb::NodeStatus {
            node_id: m.id,
            addr,
            state: format!("{:?}", m.state),
            current_term: m.current_term,
            current_leader: m.current_leader.unwrap_or_default(),
            has_leader: m.current_leader.is_some(),
            last_log_index: m.last_log_index.unwrap_or_default(),
            last_applied_index: m.last_applied.map(|l| l.index).unwrap_or_default(),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or_default(),
            purged_index: m.purged.map(|l| l.index).unwrap_or_default(),
        }
    }

    async fn cluster_status_here(&self) -> pb::ClusterStatus {
        let m = self.node.raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or_default();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let mut members = Vec::new();
        for (id, node) in membership.nodes() {
            let matched = if *id == m.id {
                Some(last)
            } else {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned())
                    .map(|l| l.map(|l| l.index).unwrap_or_default())
            };
            let status = if *id == m.id {
                Some(self.local_status())
            } else {
                self.probe(&node.addr).await
            };
            members.push(pb::MemberStatus {
                node_id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
                matched_index: matched.unwrap_or_default(),
                lag: matched.map(|x| last.saturating_sub(x)).unwrap_or(last),
                status,
            });
        }
        pb::ClusterStatus {
            leader_id: m.current_leader.unwrap_or_default(),
            term: m.current_term,
            leader_last_log_index: last,
            members,
        }
    }

    async fn probe(&self, addr: &str) -> Option<pb::NodeStatus> {
        let mut client = AdminClient::new(self.fwd.peers().channel(addr).ok()?);
        let call = client.node_status(pb::NodeStatusRequest {});
        match tokio::time::timeout(STATUS_PROBE_TIMEOUT, call).await {
            Ok(Ok(r)) => Some(r.into_inner()),
            _ => None,
        }
    }
}

fn membership_error(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => errors::status(
            ErrorKind::Unavailable,
            "leadership changed during the membership change; retry",
            500,
        ),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            errors::status(ErrorKind::InvalidRequest, c.to_string(), 0)
        }
        RaftError::Fatal(f) => errors::status(ErrorKind::Internal, f.to_string(), 0),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn node_status(&self, _req: Request<pb::NodeStatusRequest>) -> Result<Response<pb::NodeStatus>, Status> {
        Ok(Response::new(self.local_status()))
    }

    async fn readiness(&self, _req: Request<pb::ReadinessRequest>) -> Result<Response<pb::Readiness>, Status> {
        let node = self.fwd.node();
        let r = node.readiness();
        Ok(Response::new(pb::Readiness {
            ready: r.ready,
            reasons: r.reasons,
            node_id: node.id,
            leader_id: r.leader_id.unwrap_or(0),
            last_applied: r.last_applied,
            last_log_index: r.last_log_index,
        }))
    }

    async fn cluster_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        // Routed to the leader, which knows every member's match index; served here (with what
        // this node knows) when the leader cannot be reached (`leader.rs`).
        Ok(Response::new(self.cluster_status_here().await))
    }

    async fn add_member(&self, req: Request<pb::AddMemberRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let req = req.into_inner();
        if req.node_id == 0 || req.addr.is_empty() {
            return Err(errors::status(
                ErrorKind::InvalidRequest,
                "node_id (> 0) and addr are required",
                0,
            ));
        }
        let raft = self.node.raft.clone();
        let work = async move {
            raft.add_learner(req.node_id, BasicNode::new(req.addr.clone()), true)
                .await
                .map_err(membership_error)?;
            tracing::info!(node = req.node_id, addr = %req.addr, "learner caught up");
            if req.promote {
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([req.node_id])), false)
                    .await
                    .map_err(membership_error)?;
                tracing::info!(node = req.node_id, "promoted to voter");
            }
            Ok::<(), Status>(())
        };
        tokio::time::timeout(ADD_MEMBER_TIMEOUT, work)
            .await
            .map_err(|_| errors::status(ErrorKind::Unavailable, "the new member did not catch up in time", 1000))??;
        Ok(Response::new(self.cluster_status_here().await))
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        let req = req.into_inner();
        let m = self.node.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        if membership.get_node(&req.node_id).is_none() {
            return Err(errors::status(
                ErrorKind::InvalidRequest,
                format!("node {} is not a member", req.node_id),
                0,
            ));
        }
        let change = if membership.voter_ids().any(|v| v == req.node_id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([req.node_id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([req.node_id]))
        };
        self.node
            .raft
            .change_membership(change, false)
            .await
            .map_err(membership_error)?;
        tracing::info!(node = req.node_id, "member removed");
        Ok(Response::new(self.cluster_status_here().await))
    }
}
