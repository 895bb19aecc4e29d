//! Write batching: concurrent writes share one Raft entry, and a follower's writes share one call
//! to the leader.
//!
//! openraft 0.9 makes each `client_write` an entry of its own, appended and made durable before
//! the next is looked at. So every command arriving at the leader waits in one queue; a sender
//! takes whatever has queued (up to [`BatchLimits`]) as ONE proposal, stamped once, with at most
//! `in_flight_max` proposals in flight. A lone write goes out at once (no window is waited out);
//! under load, commands queue while earlier entries are appended and replicated, and the next
//! entry carries all of them: group commit, one fsync per batch on each node.
//!
//! A follower does the same with the commands it forwards: one `RaftPeer.Propose` call carries
//! what has queued for the leader (the queue's key is the leader's address), instead of one
//! call per request.
//!
//! Each command keeps its own outcome (apply answers one per command, in order) and its own ids
//! (`capstan_storage::rules::ids::command_stamp`): batching changes how many entries the log
//! holds and how many calls carry them, never what a command decides.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb;
use openraft::error::{ClientWriteError, RaftError};
use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::write::WriteError;
use crate::Raft;

/// How large a batch may grow and how many may be in flight.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Commands in one batch at most.
    pub commands_max: usize,
    /// Encoded command bytes in one batch at most (a single larger command still goes, alone).
    pub bytes_max: usize,
    /// Batches awaiting their answer at once: while they are full, commands queue and the next
    /// batch grows.
    pub in_flight_max: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            commands_max: 512,
            // Below sled 0.34's blob threshold (a value over segment size / 4, ~128 KiB, becomes a
            // file of its own, created and fsynced apart: profiled at 6% of the CPU of a burst).
            bytes_max: 96 * 1024,
            // An entry holds its slot until it is applied and answered: with the CPU no longer
            // the limit, 4 beat 2 in a same-run comparison (BENCHMARKS.md).
            in_flight_max: 4,
        }
    }
}

/// Commands queued at most; a caller beyond it waits for room (back-pressure, not an error).
const QUEUE_MAX: usize = 8_192;

struct Queued<K> {
    /// where the command goes (commands with different keys never share a batch)
    key: K,
    command: pb::Command,
    bytes: usize,
    reply: oneshot::Sender<Answer>,
}

type Answer = Result<pb::Outcome, WriteError>;

/// The handle writes are submitted through. Cheap to clone; the sender task stops when the last
/// handle is dropped.
pub struct Batcher<K = ()> {
    queue: mpsc::Sender<Queued<K>>,
}

impl<K> Clone for Batcher<K> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<K: PartialEq + Clone + Send + 'static> Batcher<K> {
    /// Starts the task that takes queued commands in batches and hands each batch to `send`,
    /// which answers one outcome per command, in order (or one error for them all). `metric` is
    /// the histogram of commands per batch.
    pub fn start<F, Fut>(limits: BatchLimits, metric: &'static str, send: F) -> Self
    where
        F: Fn(K, Vec<pb::Command>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<pb::Outcome>, WriteError>> + Send + 'static,
    {
        let (queue, rx) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(send_batches(rx, limits, metric, Arc::new(send)));
        Self { queue }
    }

    /// Queues `command` for `key` and waits for its own outcome.
    pub async fn submit(&self, key: K, command: pb::Command) -> Result<pb::Outcome, WriteError> {
        let answer = self.enqueue(key, command).await?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Queues every command of `commands` for `key` (in order, before waiting for any) and waits
    /// for all their outcomes, in order.
    pub async fn submit_all(&self, key: K, commands: Vec<pb::Command>) -> Result<Vec<pb::Outcome>, WriteError> {
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            answers.push(self.enqueue(key.clone(), command).await?);
        }
        let mut outcomes = Vec::with_capacity(answers.len());
        for answer in answers {
            outcomes.push(answer.await.unwrap_or_else(|_| Err(stopped()))?);
        }
        Ok(outcomes)
    }

    async fn enqueue(&self, key: K, command: pb::Command) -> Result<oneshot::Receiver<Answer>, WriteError> {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            key,
            bytes: command.encoded_len(),
            command,
            reply,
        };
        self.queue.send(queued).await.map_err(|_| stopped())?;
        Ok(answer)
    }
}

fn stopped() -> WriteError {
    WriteError::Unavailable("the node is shutting down".into())
}

async fn send_batches<K, F, Fut>(
    mut rx: mpsc::Receiver<Queued<K>>,
    limits: BatchLimits,
    metric: &'static str,
    send: Arc<F>,
) where
    K: PartialEq + Send + 'static,
    F: Fn(K, Vec<pb::Command>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<pb::Outcome>, WriteError>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.in_flight_max.max(1)));
    let mut carried: Option<Queued<K>> = None;
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
        let key = first.key;
        let (mut commands, mut replies) = (vec![first.command], vec![first.reply]);
        while commands.len() < limits.commands_max {
            let Ok(next) = rx.try_recv() else { break };
            if next.key != key || bytes + next.bytes > limits.bytes_max {
                carried = Some(next);
                break;
            }
            bytes += next.bytes;
            commands.push(next.command);
            replies.push(next.reply);
        }
        metrics::histogram!(metric).record(commands.len() as f64);
        let answer = send(key, commands);
        tokio::spawn(async move {
            let _slot = slot;
            answer_each(replies, answer.await);
        });
    }
}

/// Gives each caller of a batch its own outcome, or the batch's error.
fn answer_each(replies: Vec<oneshot::Sender<Answer>>, answer: Result<Vec<pb::Outcome>, WriteError>) {
    match answer {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for reply in replies {
                let outcome = outcomes
                    .next()
                    .ok_or_else(|| WriteError::Fatal("fewer outcomes were answered than commands were sent".into()));
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

/// The leader's batch sender: proposes `commands` as ONE entry, stamped once, and waits at most
/// `deadline` for it to commit.
pub async fn propose_entry(
    raft: Raft,
    commands: Vec<pb::Command>,
    deadline: Duration,
) -> Result<Vec<pb::Outcome>, WriteError> {
    let proposal = pb::Proposal {
        version: capstan_proto::PROPOSAL_VERSION,
        stamp: Some(crate::write::stamp_now()),
        command: None,
        commands,
    };
    match tokio::time::timeout(deadline, raft.client_write(Arc::new(proposal))).await {
        Err(_) => Err(WriteError::no_quorum(deadline)),
        Ok(Ok(resp)) => Ok(resp.data.outcomes),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => Err(f.into()),
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            Err(WriteError::Unavailable(e.to_string()))
        }
        Ok(Err(RaftError::Fatal(f))) => Err(WriteError::Fatal(f.to_string())),
    }
}
