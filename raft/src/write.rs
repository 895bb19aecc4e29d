//! What a write is: how long it may wait, what it is answered with when it cannot be served
//! ([`WriteError`]), and the stamp the leader gives it. Shared by the node, the leader's batcher and
//! the follower's forward, which therefore do not import each other.

use std::time::Duration;

use capstan_proto::pb;
use openraft::error::ForwardToLeader;
use openraft::BasicNode;

use capstan_client::clock::unix_now_ns;

/// How long a write or a read barrier may wait for a quorum before the caller is told to retry.
pub const QUORUM_WAIT: Duration = Duration::from_secs(5);
/// The retry hint given with every "unavailable" answer.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Why a write or a linearizable read could not be served here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// This node is not the leader; the leader is named when known.
    #[error("not the leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader {
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    /// No quorum answered in time, or the node is shutting down.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The Raft core stopped (storage failure); the node must be restarted.
    #[error("raft stopped: {0}")]
    Fatal(String),
    /// The disk is below its free-space floor; checked before proposing, so nothing was written.
    #[error("the disk holding the data has {free_bytes} bytes free, below the floor of {floor_bytes} bytes; writes are refused until space is freed")]
    DiskFull { free_bytes: u64, floor_bytes: u64 },
}

impl WriteError {
    /// A write no quorum acknowledged within `waited` (it may still commit later).
    pub fn no_quorum(waited: Duration) -> Self {
        WriteError::Unavailable(format!(
            "no quorum acknowledged the write within {} ms",
            waited.as_millis()
        ))
    }
}

impl From<ForwardToLeader<u64, BasicNode>> for WriteError {
    fn from(f: ForwardToLeader<u64, BasicNode>) -> Self {
        WriteError::NotLeader {
            leader_id: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        }
    }
}

/// The leader's stamp: wall-clock time and fresh id entropy. Only the proposer reads these.
pub(crate) fn stamp_now() -> pb::Stamp {
    pb::Stamp {
        time_unix_ns: unix_now_ns(),
        id_seed_hi: rand::random(),
        id_seed_lo: rand::random(),
    }
}
