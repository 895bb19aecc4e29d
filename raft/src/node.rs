//! The node handle: start a Raft node on the process's sled `Db`, write commands (stamped with
//! the leader's time and id entropy) and make reads linearizable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb;
use capstan_storage::{LogStore, StateMachine, Views};
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, SnapshotPolicy};

use crate::batcher::{BatchLimits, Batcher};
use crate::fence::RestartFence;
use crate::network::Network;
use crate::Raft;
use capstan_storage::metrics as metrics_names;

pub use crate::write::{WriteError, QUORUM_WAIT, RETRY_AFTER};

/// Tunables of one node; defaults suit loopback and a LAN.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: u64,
    /// Folder for snapshot files (the sled `Db` is opened by the caller).
    pub snapshot_dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_every_entries: u64,
    /// Entries kept behind a snapshot for followers that are only a little behind.
    pub logs_kept_behind_snapshot: u64,
    /// Writes are refused while the data directory's filesystem has less free space than this.
    pub disk_free_floor_bytes: u64,
    /// Journal records this node keeps (the window event streams resume from).
    pub journal_records_max: u64,
    /// Encoded journal bytes this node keeps.
    pub journal_bytes_max: u64,
    /// What this node presents to its peers on every Raft RPC.
    pub credential: crate::credential::ClusterCredential,
    /// How the leader batches concurrent writes into entries.
    pub write_batch: BatchLimits,
    /// How a follower batches the writes it forwards into calls to the leader.
    pub forward_batch: BatchLimits,
}

/// Default free-space floor: room for sled to finish what it has begun and for a snapshot.
pub const DISK_FREE_FLOOR_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// The retry hint given with an "insufficient storage" answer.
pub const DISK_FULL_RETRY_AFTER: Duration = Duration::from_secs(5);

impl NodeConfig {
    pub fn new(id: u64, snapshot_dir: PathBuf) -> Self {
        Self {
            id,
            snapshot_dir,
            // Fail-over time: openraft 0.9 lets a follower stand for election only after the leader
            // lease (= election_timeout_max) plus its election timeout (drawn once per process in
            // [min, max)) have passed without a heartbeat: 1.2-1.6 s here. 300-500 and 300-600 ms were
            // tried: better at best, worse in the tail over 24 nemesis cycles (BENCHMARKS.md,
            // "Fail-over").
            heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_every_entries: 10_000,
            logs_kept_behind_snapshot: 2_000,
            disk_free_floor_bytes: DISK_FREE_FLOOR_BYTES_DEFAULT,
            journal_records_max: capstan_storage::keyspace::JOURNAL_RECORDS_MAX,
            journal_bytes_max: capstan_storage::keyspace::JOURNAL_BYTES_MAX,
            credential: crate::credential::ClusterCredential::none(),
            write_batch: BatchLimits::default(),
            // Many more calls in flight than entries: a call only queues its commands at the
            // leader, whose batcher is where writes wait. A follower that held them back in a
            // queue of its own made forwarded writes wait twice (at 8: p99 at 64 connections
            // 33-42 ms; at 32-64: 28-31 ms, at or below etcd's; BENCHMARKS.md).
            forward_batch: BatchLimits {
                in_flight_max: 64,
                ..BatchLimits::default()
            },
        }
    }

    fn raft_config(&self) -> Result<Config, String> {
        Config {
            cluster_name: "capstan".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: 5_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.logs_kept_behind_snapshot,
            snapshot_max_chunk_size: 8 * 1024 * 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| e.to_string())
    }
}

/// A running Raft node and the views its state machine keeps.
#[derive(Clone)]
pub struct RaftNode {
    pub id: u64,
    pub raft: Raft,
    views: Views,
    /// The leader's batcher: commands proposed here share entries.
    batcher: Batcher,
    /// A follower's batcher: commands forwarded to the leader (keyed by its address) share calls.
    forwarder: Batcher<String>,
    /// The peer channels (shared with the Raft core's copy): pruned to the membership.
    network: Network,
    disk: capstan_storage::Disk,
    /// This node's log (a handle): the peer service offers it the bytes entries arrived in.
    pub(crate) log: LogStore,
    disk_free_floor_bytes: u64,
    /// Longest silence from a quorum a leader tolerates before refusing writes and reads.
    quorum_contact_max_ms: u64,
    /// Unix ms of the last AppendEntries this node took from a leader (`note_leader_contact`).
    leader_contact: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// What it must have applied before serving a linearizable read (its log as found at start).
    fence: RestartFence,
    fence_passed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Entries a ready node may have in its log beyond what it applied: more means it is catching up.
pub const READY_APPLY_LAG_MAX: u64 = 1_000;

/// Whether a node can serve: a leader it heard from lately, and its state machine caught up.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    pub ready: bool,
    /// why not, when not
    pub reasons: Vec<String>,
    pub leader_id: Option<u64>,
    pub last_applied: u64,
    pub last_log_index: u64,
}

impl RaftNode {
    /// Starts the node on `db`. It joins no cluster until [`RaftNode::initialize`] or a leader adds it.
    pub async fn start(config: &NodeConfig, disk: &capstan_storage::Disk) -> anyhow_like::Result<Self> {
        let mut log = LogStore::open(disk).map_err(anyhow_like::msg)?;
        let fence = {
            let vote = log.read_vote().await.map_err(anyhow_like::msg)?;
            let state = log.get_log_state().await.map_err(anyhow_like::msg)?;
            RestartFence::new(
                vote.map(|v| v.leader_id.term).unwrap_or(0),
                state.last_log_id.map(|l| l.index).unwrap_or(0),
            )
        };
        let mut sm = StateMachine::open(disk, &config.snapshot_dir).map_err(anyhow_like::msg)?;
        sm.set_journal_records_max(config.journal_records_max);
        sm.set_journal_bytes_max(config.journal_bytes_max);
        let views = sm.views().clone();
        let raft_config = Arc::new(config.raft_config().map_err(anyhow_like::msg)?);
        let log_handle = log.clone();
        let network = Network::new(config.credential.clone()).sending_from(log.clone());
        let peers = network.clone();
        let raft = Raft::new(config.id, raft_config, network.clone(), log, sm)
            .await
            .map_err(anyhow_like::msg)?;
        let proposer = raft.clone();
        let batcher = Batcher::start(
            config.write_batch,
            metrics_names::WRITE_BATCH_COMMANDS,
            move |(), commands| crate::batcher::propose_entry(proposer.clone(), commands, QUORUM_WAIT),
        );
        let from_node = config.id;
        let watcher = raft.clone();
        let forwarder = Batcher::start(
            config.forward_batch,
            metrics_names::FORWARD_BATCH_COMMANDS,
            move |addr: String, commands| {
                let metrics = watcher.metrics();
                let call = crate::forward::send(network.clone(), from_node, addr.clone(), commands);
                crate::forward::unless_leader_moves(call, metrics, addr, WriteError::Unavailable)
            },
        );
        Ok(Self {
            id: config.id,
            raft,
            views,
            batcher,
            forwarder,
            network: peers,
            disk: disk.clone(),
            log: log_handle,
            disk_free_floor_bytes: config.disk_free_floor_bytes,
            quorum_contact_max_ms: 2 * config.election_timeout_max_ms,
            leader_contact: Default::default(),
            fence,
            fence_passed: Default::default(),
        })
    }

    /// Bootstraps a cluster with these members once; a no-op when this node already has state.
    pub async fn initialize(&self, members: BTreeMap<u64, String>) -> anyhow_like::Result<()> {
        if self.raft.is_initialized().await.map_err(anyhow_like::msg)? {
            return Ok(());
        }
        let nodes: BTreeMap<u64, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            // Another member bootstrapped first and this node has already heard of it.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(anyhow_like::msg(e)),
        }
    }

    pub fn views(&self) -> &Views {
        &self.views
    }

    /// Records that a leader's AppendEntries was taken now (the peer service calls it).
    pub fn note_leader_contact(&self) {
        let now_ms = unix_now_ns() / 1_000_000;
        self.leader_contact.store(now_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this node can serve now: it knows a leader and has heard from it (or, leading, from
    /// a quorum) within twice the longest election timeout, and it has applied all but
    /// [`READY_APPLY_LAG_MAX`] of its log.
    pub fn readiness(&self) -> Readiness {
        let m = self.raft.metrics().borrow().clone();
        let last_applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let last_log_index = m.last_log_index.unwrap_or(0);
        let mut reasons = Vec::new();
        match m.current_leader {
            None => reasons.push("no leader is known".to_owned()),
            Some(l) if l == m.id => {
                if let Err(e) = self.check_quorum_contact() {
                    reasons.push(e.to_string());
                }
            }
            Some(l) => {
                let heard_ms = self.leader_contact.load(std::sync::atomic::Ordering::Relaxed);
                let silent_ms = unix_now_ns() / 1_000_000 - heard_ms;
                if heard_ms == 0 || silent_ms > i64::try_from(self.quorum_contact_max_ms).unwrap_or(i64::MAX) {
                    reasons.push(format!("no word from the leader (node {l}) for {silent_ms} ms"));
                }
            }
        }
        let lag = last_log_index.saturating_sub(last_applied);
        if lag > READY_APPLY_LAG_MAX {
            reasons.push(format!("applied index {last_applied} is {lag} entries behind the log"));
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
            leader_id: m.current_leader,
            last_applied,
            last_log_index,
        }
    }

    /// The addresses of the members (voters and learners) of the current configuration.
    pub fn member_addrs(&self) -> std::collections::HashSet<String> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .nodes()
            .map(|(_, n)| n.addr.clone())
            .collect()
    }

    /// Drops the peer channels of addresses no longer in the membership; how many were dropped.
    pub fn prune_peer_channels(&self) -> usize {
        let members = self.member_addrs();
        self.network.retain_channels(|addr| members.contains(addr))
    }

    /// The last index openraft has published as applied: the views and the in-memory indexes
    /// hold every entry up to it.
    pub fn applied_index(&self) -> u64 {
        self.raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == openraft::ServerState::Leader
    }

    /// The address of the leader when it is another node; `None` when this node leads or no
    /// leader is known.
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader
            .filter(|l| *l != m.id)
            .and_then(|l| m.membership_config.membership().get_node(&l).map(|n| n.addr.clone()))
    }

    /// Refuses at once when this node leads a multi-voter cluster but has not heard from a
    /// quorum recently (it is on the minority side of a partition): callers get a fast
    /// "unavailable" instead of waiting out `QUORUM_WAIT`.
    fn check_quorum_contact(&self) -> Result<(), WriteError> {
        let m = self.raft.metrics().borrow().clone();
        if m.state != openraft::ServerState::Leader || m.membership_config.membership().voter_ids().count() < 2 {
            return Ok(());
        }
        match m.millis_since_quorum_ack {
            Some(ms) if ms > self.quorum_contact_max_ms => Err(WriteError::Unavailable(format!(
                "this leader has not heard from a quorum for {ms} ms (partitioned?)"
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a write while the disk is below its floor, before anything reaches the log: a
    /// full disk would stop the Raft core (sled cannot finish a flush), and the node with it.
    fn check_disk_floor(&self) -> Result<(), WriteError> {
        match self.disk.free_bytes() {
            Ok(free) if free < self.disk_free_floor_bytes => Err(WriteError::DiskFull {
                free_bytes: free,
                floor_bytes: self.disk_free_floor_bytes,
            }),
            Ok(_) => Ok(()),
            // Not knowing is no reason to refuse: the write itself will say if the disk fails.
            Err(e) => {
                tracing::debug!(error = %e, "free space unknown");
                Ok(())
            }
        }
    }

    /// Resolves with the reason when the Raft core stops by itself (a storage failure): the node
    /// can then do nothing useful and must exit so that its supervisor restarts it.
    pub async fn stopped(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the raft core stopped".into();
            }
        }
    }

    /// Proposes a command through the write batcher: it shares an entry with the commands
    /// queued beside it, stamped once by this node, which must be the leader.
    pub async fn write(&self, command: pb::Command) -> Result<pb::Outcome, WriteError> {
        self.checked_within_quorum_wait(self.batcher.submit((), command)).await
    }

    /// Proposes the commands a follower forwarded in one call (this node must be the leader):
    /// they join the batcher's queue like local writes; one outcome each, in order.
    pub async fn write_all(&self, commands: Vec<pb::Command>) -> Result<Vec<pb::Outcome>, WriteError> {
        self.checked_within_quorum_wait(self.batcher.submit_all((), commands))
            .await
    }

    /// A write through the leader's batcher: refused at once without a recent quorum or below the
    /// disk floor (nothing proposed), else its answer within [`QUORUM_WAIT`].
    async fn checked_within_quorum_wait<T>(
        &self,
        answer: impl std::future::Future<Output = Result<T, WriteError>>,
    ) -> Result<T, WriteError> {
        self.check_quorum_contact()?;
        self.check_disk_floor()?;
        tokio::time::timeout(QUORUM_WAIT, answer)
            .await
            .unwrap_or_else(|_| Err(WriteError::no_quorum(QUORUM_WAIT)))
    }

    /// Writes `command` wherever this node is: the leader proposes it; a follower forwards the
    /// command (batched with the others it forwards) to the leader it knows and hands back the
    /// leader's outcome. Without a known leader, or when leadership moves mid-way, the caller
    /// gets `NotLeader`/`Unavailable`, to retry.
    pub async fn write_anywhere(&self, command: pb::Command) -> Result<pb::Outcome, WriteError> {
        match self.leader_addr() {
            Some(addr) => self.forwarder.submit(addr, command).await,
            None => self.write(command).await,
        }
    }

    /// Waits until this node's views include every write acknowledged before the call
    /// (read-index on the leader, and the restart fence). Fails fast on a follower with the
    /// leader's name.
    pub async fn linearizable_barrier(&self) -> Result<(), WriteError> {
        self.check_quorum_contact()?;
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(QUORUM_WAIT, self.raft.ensure_linearizable()).await {
            Err(_) => Err(WriteError::Unavailable(format!(
                "no quorum confirmed the leader within {} ms",
                QUORUM_WAIT.as_millis()
            ))),
            Ok(Ok(_)) => {
                self.pass_restart_fence(QUORUM_WAIT.saturating_sub(started.elapsed()))
                    .await
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => Err(f.into()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))) => {
                Err(WriteError::Unavailable(q.to_string()))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(WriteError::Fatal(f.to_string())),
        }
    }

    /// Waits (at most `wait`) until this node has applied what the restart fence asks
    /// ([`crate::fence`]): openraft's read index alone can be stale on a leader it restored.
    async fn pass_restart_fence(&self, wait: Duration) -> Result<(), WriteError> {
        use std::sync::atomic::Ordering;
        if self.fence_passed.load(Ordering::Acquire) {
            return Ok(());
        }
        let fence = self.fence;
        let waited = self
            .raft
            .wait(Some(wait))
            .metrics(move |m| fence.passed(m.last_applied.as_ref()), "restart fence")
            .await;
        match waited {
            Ok(_) => {
                self.fence_passed.store(true, Ordering::Release);
                Ok(())
            }
            Err(_) => Err(WriteError::Unavailable(format!(
                "restarted with log entries up to index {} not yet applied; linearizable reads wait for them",
                fence.index()
            ))),
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// Wall-clock time in Unix nanoseconds (the one clock reader, `capstan_client::clock`).
pub use capstan_client::clock::unix_now_ns;

/// A minimal boxed-error result for start-up paths (the binary wraps it in anyhow).
pub mod anyhow_like {
    pub type Error = Box<dyn std::error::Error + Send + Sync>;
    pub type Result<T> = std::result::Result<T, Error>;

    pub fn msg(e: impl std::fmt::Display) -> Error {
        e.to_string().into()
    }
}
