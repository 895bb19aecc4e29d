//! The Raft log on sled: entries, vote, committed id and purge floor. Every write here is made
//! durable ([`Disk::make_durable`]: flush, then fdatasync) before openraft hears it is done: the
//! leader commits on the strength of an append, a voter's vote must survive a crash, and the
//! committed id must never go back below an index this node acknowledged (a node restarted as
//! leader serves linearizable reads from its committed id).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use prost::bytes::Bytes;
use prost::Message;

use crate::codec::{self, Entry};
use crate::keyspace as ks;
use crate::{decode, pb, Disk, StoreError, TypeConfig};

mod recent;
use recent::Recent;

#[derive(Clone)]
pub struct LogStore {
    disk: Disk,
    log: sled::Tree,
    meta: sled::Tree,
    /// The newest entries, shared with the readers (this store's clones).
    recent: Arc<Mutex<Recent>>,
    /// Entries as a follower received them, offered before openraft hands the same entries to
    /// `append` (which then stores these bytes instead of encoding the entry again).
    received: Arc<Mutex<Received>>,
}

/// Entries with the bytes they arrived in, in the order they were offered.
type Received = VecDeque<(LogId<u64>, Bytes)>;

/// Received entries kept at most for the append that stores them (one AppendEntries' worth
/// and more: what is not taken is dropped by the next offers).
const RECEIVED_ENTRIES_MAX: usize = 4_096;

/// A log id kept in the Raft meta tree (`vote` aside): `committed`, `last_purged`.
pub(crate) fn read_log_id(meta: &sled::Tree, key: &[u8]) -> Result<Option<LogId<u64>>, StoreError> {
    Ok(meta
        .get(key)?
        .map(|v| decode::<pb::LogId>("log id", &v))
        .transpose()?
        .map(|l| codec::log_id_from_pb(&l)))
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl LogStore {
    pub fn open(disk: &Disk) -> Result<Self, StoreError> {
        let db = disk.db();
        Ok(Self {
            disk: disk.clone(),
            log: db.open_tree(ks::Tree::RaftLog.name())?,
            meta: db.open_tree(ks::Tree::RaftMeta.name())?,
            recent: Arc::default(),
            received: Arc::default(),
        })
    }

    /// The stored bytes of the entry `log_id` (a `LogEntry` message), when it is among the newest:
    /// what replication sends, so that the leader encodes each entry once, not once per follower.
    pub fn encoded(&self, log_id: &LogId<u64>) -> Option<Bytes> {
        self.recent().encoded(log_id)
    }

    /// Offers the bytes an entry arrived in from the leader (`encoded` there), before openraft
    /// appends it here: the append stores them as they are instead of encoding the entry again.
    /// A log id names one entry in the whole cluster (Raft's log matching), so bytes are only
    /// ever taken for the entry they were sent as; ones never taken are dropped by later offers.
    pub fn offer_received(&self, entries: impl IntoIterator<Item = (LogId<u64>, Bytes)>) {
        let mut received = self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        received.extend(entries);
        let excess = received.len().saturating_sub(RECEIVED_ENTRIES_MAX);
        received.drain(..excess);
    }

    /// The bytes offered for `log_id`, taken (with every offer older than it); `None` when there
    /// were none.
    fn take_received(&self, log_id: &LogId<u64>) -> Option<Bytes> {
        let mut received = self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some((id, _)) = received.front() {
            if id.index > log_id.index {
                return None;
            }
            let (id, bytes) = received.pop_front()?;
            if id == *log_id {
                return Some(bytes);
            }
        }
        None
    }

    fn read_log_id(&self, key: &[u8]) -> Result<Option<LogId<u64>>, StoreError> {
        read_log_id(&self.meta, key)
    }

    fn write_log_id(&self, key: &[u8], id: Option<&LogId<u64>>) -> Result<(), StoreError> {
        match id {
            Some(id) => self.meta.insert(key, codec::log_id_to_pb(id).encode_to_vec())?,
            None => self.meta.remove(key)?,
        };
        Ok(())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StoreError> {
        if let Some(entries) = self.recent().range(start, end) {
            return Ok(entries);
        }
        let mut out = Vec::new();
        for kv in self.log.range(ks::log_key(start)..) {
            let (k, v) = kv?;
            let index = ks::log_index(&k).ok_or_else(|| StoreError::Corrupt("log key".into()))?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            out.push(codec::entry_from_pb(decode("log entry", &v)?)?);
        }
        Ok(out)
    }

    /// The last log entry's id, if any.
    pub fn last_log_id(&self) -> Result<Option<LogId<u64>>, StoreError> {
        match self.log.last()? {
            None => Ok(None),
            Some((_, v)) => Ok(Some(codec::entry_from_pb(decode("log entry", &v)?)?.log_id)),
        }
    }
}

impl LogStore {
    /// Appends entries and returns once they are durable — what openraft's `append` does before
    /// it reports the I/O complete (the leader counts this node's ack on it).
    pub async fn append_durably(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        // One insert per entry, in index order, not one `apply_batch`: a batch takes sled's
        // process-wide write lock and waits out apply's transaction, inserts only share it. The
        // log needs no atomicity across entries: sled recovers writes in order, so a crash leaves
        // a prefix of what was appended, and nothing is acknowledged before the pass below.
        let mut appended: Vec<(Entry, Bytes)> = Vec::new();
        for e in entries {
            // openraft hands an append's entries in one run of consecutive indexes; the purge,
            // the Recent window and replication's byte lookup rely on it.
            debug_assert!(
                appended
                    .last()
                    .is_none_or(|(p, _)| p.log_id.index + 1 == e.log_id.index),
                "append out of order: {:?} after {:?}",
                e.log_id,
                appended.last().map(|(p, _)| p.log_id)
            );
            let bytes = match self.take_received(&e.log_id) {
                Some(b) => b,
                None => Bytes::from(codec::encode_entry(&e)),
            };
            self.log.insert(ks::log_key(e.log_id.index), bytes.as_ref())?;
            appended.push((e, bytes));
        }
        let n = appended.len();
        {
            let mut recent = self.recent();
            for (e, bytes) in appended {
                recent.push(e, bytes);
            }
        }
        self.disk.make_durable().await?;
        metrics::histogram!(crate::metrics::APPEND_ENTRIES).record(n as f64);
        metrics::histogram!(crate::metrics::APPEND_DURATION).record(started.elapsed().as_secs_f64());
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => Some(x.saturating_add(1)),
            Bound::Excluded(x) => Some(*x),
            Bound::Unbounded => None,
        };
        self.entries(start, end).map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged = self.read_log_id(ks::KEY_LAST_PURGED).map_err(read_err)?;
        // Entries at or below the floor may remain a while after a purge (or after a crash in
        // one): the last log id is never below the floor.
        let last = self.last_log_id().map_err(read_err)?.max(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.meta
            .insert(ks::KEY_VOTE, codec::vote_to_pb(vote).encode_to_vec())
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        self.disk
            .make_durable()
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        let v = self
            .meta
            .get(ks::KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)))?;
        match v {
            None => Ok(None),
            Some(v) => {
                let vote: pb::Vote = decode("vote", &v).map_err(|e| StorageIOError::read_vote(AnyError::new(&e)))?;
                Ok(Some(codec::vote_from_pb(&vote)))
            }
        }
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError<u64>> {
        // Durable before apply and so before any client hears of the entries it covers: a node
        // restarted as leader takes its read index from this id (openraft `Engine::startup`
        // restores a leader at once), and a committed id that went back after a crash would let
        // it answer a linearizable read from before writes it had acknowledged. openraft calls
        // this before it hands the entries to apply. Written here, not made durable: a node
        // restarted with an older committed id holds linearizable reads at its restart fence
        // (`capstan_raft::fence`) until it has applied the log it found at start.
        self.write_log_id(ks::KEY_COMMITTED, committed.as_ref())
            .map_err(write_err)?;
        if let Some(c) = committed {
            metrics::gauge!(crate::metrics::COMMITTED_INDEX).set(c.index as f64);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        self.read_log_id(ks::KEY_COMMITTED).map_err(read_err)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        match self.append_durably(entries).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.recent().truncate_from(log_id.index);
        let mut batch = sled::Batch::default();
        for kv in self.log.range(ks::log_key(log_id.index)..) {
            let (k, _) = kv.map_err(write_err)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.disk.make_durable().await.map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // The floor first, durable: a crash after it leaves entries at or below the floor (never
        // read; the next purge deletes them), never a hole.
        self.write_log_id(ks::KEY_LAST_PURGED, Some(&log_id))
            .map_err(write_err)?;
        self.disk.make_durable().await.map_err(write_err)?;
        self.recent().purge_to(log_id.index);
        // openraft's core waits for this call, and a purge after each snapshot is ~10,000 entries:
        // they are deleted on a blocking thread, in chunks, so that no batch holds sled's write
        // lock (which apply and the log's appends wait on) for long.
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = delete_through(&log, log_id.index) {
                tracing::warn!(error = %e, index = log_id.index, "log entries below the purge floor were not all deleted");
            }
        });
        Ok(())
    }
}

/// Entries deleted per sled batch by a purge.
const PURGE_CHUNK: usize = 512;

/// Deletes the log entries at or below `index`, a chunk per batch.
fn delete_through(log: &sled::Tree, index: u64) -> sled::Result<()> {
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for kv in log.range(..=ks::log_key(index)).take(PURGE_CHUNK) {
            batch.remove(kv?.0);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        log.apply_batch(batch)?;
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    /// A blank entry at `index` of `term` (the log's and `Recent`'s tests).
    pub(super) fn entry(index: u64, term: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn a_purge_deletes_below_its_floor_and_the_log_never_ends_below_it() {
        let _serial = crate::SLED_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = crate::open_db(&dir.path().join("db")).expect("db");
        let mut store = LogStore::open(&disk).expect("log store");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            store
                .append_durably((1..=2_000).map(|i| entry(i, 1)))
                .await
                .expect("append");
            store
                .purge(LogId::new(CommittedLeaderId::new(1, 1), 1_500))
                .await
                .expect("purge");
            let state = store.get_log_state().await.expect("state");
            assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(1_500));
            assert_eq!(state.last_log_id.map(|l| l.index), Some(2_000));
            let got = store.try_get_log_entries(1_501..=2_000).await.expect("read");
            assert_eq!(got.len(), 500);
            // The entries below the floor go, on a blocking thread.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while store.log.range(..=ks::log_key(1_500)).next().is_some() {
                assert!(std::time::Instant::now() < deadline, "purged entries are still there");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert_eq!(
                store.log.first().expect("first").map(|(k, _)| ks::log_index(&k)),
                Some(Some(1_501))
            );
            // A floor above every entry (a snapshot installed past the log; entries not yet
            // deleted): the log ends at the floor.
            store
                .write_log_id(
                    ks::KEY_LAST_PURGED,
                    Some(&LogId::new(CommittedLeaderId::new(2, 1), 2_100)),
                )
                .expect("floor");
            let state = store.get_log_state().await.expect("state");
            assert_eq!(state.last_log_id.map(|l| l.index), Some(2_100));
        });
    }

    /// A follower stores an entry in the bytes it arrived in when they were offered for its log
    /// id, and encodes it itself otherwise (bytes offered for another term's entry at that index
    /// are never taken); reading the log back from sled gives the entries appended.
    #[test]
    fn an_append_stores_the_bytes_offered_for_its_entries_and_only_those() {
        let _serial = crate::SLED_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = crate::open_db(&dir.path().join("db")).expect("db");
        let store = LogStore::open(&disk).expect("log store");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Entry 2 is offered in another term's bytes (an entry this node will never append),
        // entry 3 in its own bytes with an unknown field after them: stored as they came.
        let mut as_sent = codec::encode_entry(&entry(3, 1));
        as_sent.extend_from_slice(&[0xf8, 0x07, 0x01]); // field 127, varint 1
        store.offer_received([
            (
                LogId::new(CommittedLeaderId::new(9, 1), 2),
                Bytes::from(codec::encode_entry(&entry(2, 9))),
            ),
            (
                LogId::new(CommittedLeaderId::new(1, 1), 3),
                Bytes::from(as_sent.clone()),
            ),
        ]);
        rt.block_on(store.append_durably((1..=4).map(|i| entry(i, 1))))
            .expect("append");
        let stored = |i| store.log.get(ks::log_key(i)).expect("read").expect("stored").to_vec();
        assert_eq!(
            stored(2),
            codec::encode_entry(&entry(2, 1)),
            "the other term's bytes were not taken"
        );
        assert_eq!(stored(3), as_sent, "the offered bytes were stored as received");
        assert_eq!(stored(4), codec::encode_entry(&entry(4, 1)));
        assert!(
            store.received.lock().expect("lock").is_empty(),
            "what was offered is taken or dropped"
        );
        store.recent().clear();
        let back = store.entries(1, None).expect("read back");
        assert_eq!(
            back.iter().map(|e| e.log_id).collect::<Vec<_>>(),
            (1..=4).map(|i| entry(i, 1).log_id).collect::<Vec<_>>()
        );
    }
}
