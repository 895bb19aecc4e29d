//! A follower's writes on their way to the leader: batches of commands in one
//! `RaftPeer.Propose` call (the follower's [`crate::batcher::Batcher`] keyed by the leader's
//! address), and the refusal that carries a [`WriteError`] back across the call.

use std::time::Duration;

use capstan_proto::pb;
use pb::write_refusal::Kind;

use crate::network::Network;
use crate::write::{WriteError, QUORUM_WAIT};

/// How long a forwarded write may wait for the leader's answer: a little over the leader's own
/// quorum wait, so that the leader's "no quorum" arrives before the call is given up.
pub const FORWARD_WAIT: Duration = Duration::from_secs(QUORUM_WAIT.as_secs() + 3);

/// Sends `commands` from node `from_node` to the leader at `addr` in one call; one outcome per
/// command, in order, or the reason none was taken.
pub async fn send(
    network: Network,
    from_node: u64,
    addr: String,
    commands: Vec<pb::Command>,
) -> Result<Vec<pb::Outcome>, WriteError> {
    let Some(mut client) = network.peer(&addr) else {
        return Err(WriteError::Unavailable(format!(
            "the leader's address {addr} is not a valid endpoint"
        )));
    };
    let mut request = tonic::Request::new(pb::ForwardedWrites { from_node, commands });
    request.set_timeout(FORWARD_WAIT);
    match tokio::time::timeout(FORWARD_WAIT, client.propose(request)).await {
        Err(_) => Err(WriteError::no_quorum(FORWARD_WAIT)),
        Ok(Err(status)) => Err(WriteError::Unavailable(format!(
            "the leader could not be reached: {}",
            status.message()
        ))),
        Ok(Ok(answer)) => {
            let answer = answer.into_inner();
            match answer.refused {
                Some(refusal) => Err(WriteError::from(refusal)),
                None => Ok(answer.outcomes),
            }
        }
    }
}

/// A forwarded call to the leader at `addr`, given up as soon as this node learns of another
/// leader (or leads itself): a leader that was paused or cut off keeps the call's connection open
/// and silent, and the writes queued behind it would otherwise wait out [`FORWARD_WAIT`] while a
/// new leader serves. The outcome of what was sent is then unknown (the old leader may have had it
/// replicated), which the caller hears as "unavailable" — as from any lost call.
pub async fn unless_leader_moves<F, T, E>(
    call: F,
    mut metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, openraft::BasicNode>>,
    addr: String,
    moved_error: impl FnOnce(String) -> E,
) -> Result<T, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let moved = async {
        loop {
            if let Some(leader) = leader_elsewhere(&metrics.borrow(), &addr) {
                return leader;
            }
            if metrics.changed().await.is_err() {
                // the Raft core stopped: the call ends by itself
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        answer = call => answer,
        leader = moved => Err(moved_error(format!(
            "the leader changed (now node {leader}) while the call was forwarded to {addr}; its outcome is \
             unknown, retry"
        ))),
    }
}

/// The new leader's id when the metrics name a leader other than the one at `addr`.
fn leader_elsewhere(m: &openraft::RaftMetrics<u64, openraft::BasicNode>, addr: &str) -> Option<u64> {
    let leader = m.current_leader?;
    let leader_addr = if leader == m.id {
        None
    } else {
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.as_str())
    };
    (leader_addr != Some(addr)).then_some(leader)
}

impl From<&WriteError> for pb::WriteRefusal {
    fn from(e: &WriteError) -> Self {
        let mut r = pb::WriteRefusal {
            message: e.to_string(),
            ..Default::default()
        };
        match e {
            WriteError::NotLeader { leader_id, leader_addr } => {
                r.set_kind(Kind::NotLeader);
                r.leader_id = leader_id.unwrap_or(0);
                r.leader_addr = leader_addr.clone().unwrap_or_default();
            }
            WriteError::Unavailable(m) => {
                r.set_kind(Kind::Unavailable);
                r.message = m.clone();
            }
            WriteError::Fatal(m) => {
                r.set_kind(Kind::Fatal);
                r.message = m.clone();
            }
            WriteError::DiskFull {
                free_bytes,
                floor_bytes,
            } => {
                r.set_kind(Kind::DiskFull);
                r.free_bytes = *free_bytes;
                r.floor_bytes = *floor_bytes;
            }
        }
        r
    }
}

impl From<pb::WriteRefusal> for WriteError {
    fn from(r: pb::WriteRefusal) -> Self {
        match r.kind() {
            Kind::NotLeader => WriteError::NotLeader {
                leader_id: Some(r.leader_id).filter(|id| *id != 0),
                leader_addr: Some(r.leader_addr).filter(|a| !a.is_empty()),
            },
            Kind::DiskFull => WriteError::DiskFull {
                free_bytes: r.free_bytes,
                floor_bytes: r.floor_bytes,
            },
            Kind::Fatal => WriteError::Fatal(format!("on the leader: {}", r.message)),
            Kind::Unavailable | Kind::Unspecified => WriteError::Unavailable(r.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_error_crosses_the_call_unchanged() {
        let errors = [
            WriteError::NotLeader {
                leader_id: Some(2),
                leader_addr: Some("http://127.0.0.1:7001".into()),
            },
            WriteError::NotLeader {
                leader_id: None,
                leader_addr: None,
            },
            WriteError::Unavailable("no quorum".into()),
            WriteError::DiskFull {
                free_bytes: 10,
                floor_bytes: 64,
            },
        ];
        for e in errors {
            let back = WriteError::from(pb::WriteRefusal::from(&e));
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
        }
        let fatal = WriteError::from(pb::WriteRefusal::from(&WriteError::Fatal("disk".into())));
        assert!(
            matches!(fatal, WriteError::Fatal(m) if m.contains("disk")),
            "a fatal error stays fatal"
        );
    }
}
