//! The leader's write batcher: concurrent writes share one Raft entry.
//!
//! openraft 0.9 makes each `client_write` an entry of its own, appended and made durable before
//! the next is looked at. So every command arriving here waits in one queue; a proposer takes
//! whatever has queued (up to [`BatchLimits`]) as ONE proposal, stamps it once and proposes it,
//! with at most `in_flight_max` proposals in flight. A lone write goes out at once (no window is
//! waited out); under load, commands queue while earlier entries are appended and replicated,
//! and the next entry carries all of them: group commit, one fsync per batch on each node.
//!
//! Each command keeps its own outcome (apply answers one per command, in order) and its own ids
//! (`capstan_storage::rules::ids::command_stamp`): batching changes how many entries the log
//! holds, never what a command decides.

use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb;
use openraft::error::{ClientWriteError, RaftError};
use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::node::WriteError;
use crate::Raft;

/// How large a batch may grow and how many may be in flight.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Commands in one entry at most.
    pub commands_max: usize,
    /// Encoded command bytes in one entry at most (a single larger command still goes, alone).
    pub bytes_max: usize,
    /// Proposals awaiting their commit at once: while they are full, commands queue and the
    /// next entry grows.
    pub in_flight_max: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            commands_max: 512,
            // Below sled 0.34's blob threshold (a value over segment size / 4, ~128 KiB, becomes a
            // file of its own, created and fsynced apart: profiled at 6% of the CPU of a burst).
            bytes_max: 96 * 1024,
            in_flight_max: 2,
        }
    }
}

/// Commands queued at most; a caller beyond it waits for room (back-pressure, not an error).
const QUEUE_MAX: usize = 8_192;

struct Queued {
    command: pb::Command,
    bytes: usize,
    reply: oneshot::Sender<Result<pb::Outcome, WriteError>>,
}

/// The handle writes are submitted through. Cheap to clone; the proposer stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Queued>,
}

impl Batcher {
    /// Starts the proposer on `raft`; `deadline` bounds how long one proposal may wait for its
    /// commit before its callers are told the cluster is unavailable.
    pub fn start(raft: Raft, limits: BatchLimits, deadline: Duration) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(propose_batches(raft, rx, limits, deadline));
        Self { queue }
    }

    /// Queues `command` and waits for its own outcome.
    pub async fn submit(&self, command: pb::Command) -> Result<pb::Outcome, WriteError> {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            bytes: command.encoded_len(),
            command,
            reply,
        };
        let stopped = || WriteError::Unavailable("the node is shutting down".into());
        self.queue.send(queued).await.map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn propose_batches(raft: Raft, mut rx: mpsc::Receiver<Queued>, limits: BatchLimits, deadline: Duration) {
    let slots = Arc::new(Semaphore::new(limits.in_flight_max.max(1)));
    let mut carried: Option<Queued> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < limits.commands_max {
            let Ok(next) = rx.try_recv() else { break };
            if bytes + next.bytes > limits.bytes_max {
                carried = Some(next);
                break;
            }
            bytes += next.bytes;
            batch.push(next);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            propose(&raft, batch, deadline).await;
        });
    }
}

/// Proposes one batch as one entry and answers each of its callers.
async fn propose(raft: &Raft, batch: Vec<Queued>, deadline: Duration) {
    metrics::histogram!(capstan_storage::metrics::WRITE_BATCH_COMMANDS).record(batch.len() as f64);
    let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|q| (q.command, q.reply)).unzip();
    let proposal = pb::Proposal {
        version: capstan_proto::PROPOSAL_VERSION,
        stamp: Some(crate::node::stamp_now()),
        command: None,
        commands,
    };
    let answer = match tokio::time::timeout(deadline, raft.client_write(proposal)).await {
        Err(_) => Err(WriteError::no_quorum(deadline)),
        Ok(Ok(resp)) => Ok(resp.data.outcomes),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => Err(f.into()),
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            Err(WriteError::Unavailable(e.to_string()))
        }
        Ok(Err(RaftError::Fatal(f))) => Err(WriteError::Fatal(f.to_string())),
    };
    match answer {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for reply in replies {
                let outcome = outcomes.next().ok_or_else(|| {
                    WriteError::Fatal("apply answered fewer outcomes than the entry has commands".into())
                });
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
