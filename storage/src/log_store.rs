//! The Raft log: its entries in segment files of their own ([`crate::wal`]), its vote, committed
//! id and purge floor in sled. Every write here but the committed id is durable before openraft
//! hears it is done — an append by the log's own `fdatasync`, the vote and the floor by a sled
//! durability pass ([`Disk::make_durable`]): the leader commits on the strength of an append, and
//! a voter's vote must survive a crash. The committed id is only written (see `save_committed`).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use prost::Message;

use crate::codec::{self, Entry};
use crate::keyspace as ks;
use crate::wal::{self, Wal};
use crate::{decode, pb, Disk, StoreError, TypeConfig};

#[derive(Clone)]
pub struct LogStore {
    disk: Disk,
    /// The entries above the purge floor (the segment files are its own).
    wal: Arc<Mutex<Wal>>,
    meta: sled::Tree,
    /// The newest entries, shared with the readers (this store's clones).
    recent: Arc<Mutex<Recent>>,
}

/// Entries kept in memory at most, and their encoded bytes.
const RECENT_ENTRIES_MAX: usize = 1_024;
const RECENT_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The newest entries of the log, contiguous and ending at its last entry: replication to each
/// follower and apply read what was just appended, and from here that is a clone of shared
/// proposals, not a sled read and a decode per reader. It mirrors the log: append adds, truncate
/// and purge remove; a range it does not hold whole is read from sled.
#[derive(Default)]
struct Recent {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Recent {
    fn push(&mut self, entry: Entry, bytes: usize) {
        if self
            .entries
            .back()
            .is_some_and(|(last, _)| last.log_id.index + 1 != entry.log_id.index)
        {
            self.clear();
        }
        self.entries.push_back((entry, bytes));
        self.bytes += bytes;
        while self.entries.len() > RECENT_ENTRIES_MAX || (self.bytes > RECENT_BYTES_MAX && self.entries.len() > 1) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, bytes)) = self.entries.pop_front() {
            self.bytes -= bytes;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Forgets the entries at `index` and after (a truncation).
    fn truncate_from(&mut self, index: u64) {
        while let Some((last, bytes)) = self.entries.back() {
            if last.log_id.index < index {
                break;
            }
            self.bytes -= bytes;
            self.entries.pop_back();
        }
    }

    /// Forgets the entries up to `index` (a purge).
    fn purge_to(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(first, _)| first.log_id.index <= index)
        {
            self.pop_front();
        }
    }

    /// The entries `start..end` (to the last when `end` is `None`), when all of them are here.
    fn range(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.0.log_id.index;
        let after_last = self.entries.back()?.0.log_id.index + 1;
        let end = end.unwrap_or(after_last);
        if start < first || end > after_last || start >= end {
            return None;
        }
        let (from, to) = (usize::try_from(start - first).ok()?, usize::try_from(end - first).ok()?);
        Some(self.entries.range(from..to).map(|(e, _)| e.clone()).collect())
    }
}

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

/// The log's segment files, inside sled's directory.
const WAL_DIR: &str = "raft-wal";

impl LogStore {
    pub fn open(disk: &Disk) -> Result<Self, StoreError> {
        let db = disk.db();
        let meta = db.open_tree(ks::Tree::RaftMeta.name())?;
        let floor = read_log_id(&meta, ks::KEY_LAST_PURGED)?.map(|l| l.index);
        let index_of = |b: &[u8]| codec::stored_entry_log_id(b).map(|l| l.index);
        let mut wal = Wal::open(&disk.dir().join(WAL_DIR), floor, index_of)?;
        // Builds before the segment files kept the entries in sled: moved over once.
        let old = db.open_tree(ks::Tree::RaftLog.name())?;
        if !old.is_empty() {
            if wal.is_empty() {
                let mut moved = Vec::new();
                for kv in old.iter() {
                    let (k, v) = kv?;
                    let index = ks::log_index(&k).ok_or_else(|| StoreError::Corrupt("log key".into()))?;
                    if floor.is_none_or(|f| index > f) {
                        moved.push((index, v));
                    }
                }
                let records: Vec<(u64, &[u8])> = moved.iter().map(|(i, v)| (*i, v.as_ref())).collect();
                wal.append(&records)?;
                tracing::info!(entries = records.len(), "raft log moved from sled to its segment files");
            }
            old.clear()?;
        }
        Ok(Self {
            disk: disk.clone(),
            wal: Arc::new(Mutex::new(wal)),
            meta,
            recent: Arc::default(),
        })
    }

    fn wal(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the segment files on the blocking pool (it writes, syncs or deletes files).
    async fn with_wal<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Wal) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || f(&mut wal.lock().unwrap_or_else(std::sync::PoisonError::into_inner)))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
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
        let located = self.wal().locate(start, end);
        located
            .into_iter()
            .map(|(_, file, offset, len)| {
                let bytes = wal::read_at(&file, offset, len)?;
                codec::entry_from_pb(decode("log entry", &bytes)?)
            })
            .collect()
    }

    /// The last log entry's id, if any.
    pub fn last_log_id(&self) -> Result<Option<LogId<u64>>, StoreError> {
        let last = {
            let wal = self.wal();
            wal.last_index().map(|i| wal.locate(i, None))
        };
        match last.and_then(|l| l.into_iter().next()) {
            None => Ok(None),
            Some((_, file, offset, len)) => Ok(Some(codec::stored_entry_log_id(&wal::read_at(&file, offset, len)?)?)),
        }
    }
}

impl LogStore {
    /// Appends entries and returns once they are durable — what openraft's `append` does before
    /// it reports the I/O complete (the leader counts this node's ack on it).
    pub async fn append_durably(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        // One write and one fdatasync of the active segment for the whole call.
        let (appended, encoded): (Vec<Entry>, Vec<(u64, Vec<u8>)>) = entries
            .into_iter()
            .map(|e| {
                let record = (e.log_id.index, codec::encode_entry(&e));
                (e, record)
            })
            .unzip();
        let n = appended.len();
        let lens: Vec<usize> = encoded.iter().map(|(_, b)| b.len()).collect();
        self.with_wal(move |wal| {
            let records: Vec<(u64, &[u8])> = encoded.iter().map(|(i, b)| (*i, b.as_slice())).collect();
            wal.append(&records)
        })
        .await?;
        {
            let mut recent = self.recent();
            for (e, bytes) in appended.into_iter().zip(lens) {
                recent.push(e, bytes);
            }
        }
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
        let index = log_id.index;
        self.with_wal(move |wal| wal.truncate_from(index))
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // The floor first, durable: a crash after it leaves entries at or below the floor (never
        // read; the next purge deletes them), never a hole.
        self.write_log_id(ks::KEY_LAST_PURGED, Some(&log_id))
            .map_err(write_err)?;
        self.disk.make_durable().await.map_err(write_err)?;
        self.recent().purge_to(log_id.index);
        // Forgetting the entries is a few unlinks of whole segment files.
        let index = log_id.index;
        self.with_wal(move |wal| wal.purge_to(index)).await.map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{CommittedLeaderId, EntryPayload};
    use proptest::prelude::*;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(u8),
        Truncate(u8),
        Purge(u8),
        Read(u8, Option<u8>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u8..6).prop_map(Op::Append),
            1 => any::<u8>().prop_map(Op::Truncate),
            1 => any::<u8>().prop_map(Op::Purge),
            4 => (any::<u8>(), proptest::option::of(any::<u8>())).prop_map(|(s, e)| Op::Read(s, e)),
        ]
    }

    proptest! {
        /// Whatever the recent entries answer is exactly what the log holds (they may decline).
        #[test]
        fn recent_entries_answer_only_what_the_log_holds(ops in proptest::collection::vec(op(), 1..80)) {
            let mut log: BTreeMap<u64, Entry> = BTreeMap::new();
            let mut recent = Recent::default();
            let mut term = 1;
            for op in ops {
                match op {
                    Op::Append(n) => {
                        let next = log.keys().next_back().map_or(1, |i| i + 1);
                        for index in next..next + u64::from(n) {
                            log.insert(index, entry(index, term));
                            recent.push(entry(index, term), 100);
                        }
                    }
                    Op::Truncate(at) => {
                        let at = u64::from(at % 64);
                        log.retain(|i, _| *i < at);
                        recent.truncate_from(at);
                        term += 1;
                    }
                    Op::Purge(upto) => {
                        let upto = u64::from(upto % 64);
                        log.retain(|i, _| *i > upto);
                        recent.purge_to(upto);
                    }
                    Op::Read(start, end) => {
                        let (start, end) = (u64::from(start % 64), end.map(|e| u64::from(e % 64)));
                        if let Some(got) = recent.range(start, end) {
                            let want: Vec<_> = log
                                .range(start..end.unwrap_or(u64::MAX))
                                .map(|(_, e)| e.log_id)
                                .collect();
                            prop_assert_eq!(got.iter().map(|e| e.log_id).collect::<Vec<_>>(), want);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_purge_forgets_below_its_floor_and_the_log_never_ends_below_it() {
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
            // The entries below the floor are gone from the segment files' index.
            assert_eq!(store.wal().locate(0, None).first().map(|l| l.0), Some(1_501));
            // Reopened, the log starts above the floor and reads back from the files.
            drop(store);
            let mut store = LogStore::open(&disk).expect("reopen");
            let got = store.try_get_log_entries(1_400..=2_000).await.expect("read");
            assert_eq!(got.first().map(|e| e.log_id.index), Some(1_501));
            assert_eq!(got.len(), 500);
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

    #[test]
    fn a_log_kept_in_sled_by_an_earlier_build_moves_to_the_segment_files() {
        let _serial = crate::SLED_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = crate::open_db(&dir.path().join("db")).expect("db");
        let old = disk.db().open_tree(ks::Tree::RaftLog.name()).expect("tree");
        for i in 1..=30 {
            old.insert(ks::log_key(i), codec::encode_entry(&entry(i, 2)))
                .expect("insert");
        }
        // Entries at or below the floor are left behind.
        let meta = disk.db().open_tree(ks::Tree::RaftMeta.name()).expect("meta");
        let floor = LogId::new(CommittedLeaderId::new(2, 1), 10);
        meta.insert(ks::KEY_LAST_PURGED, codec::log_id_to_pb(&floor).encode_to_vec())
            .expect("floor");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for _ in 0..2 {
            // Opened twice: the second finds the entries in the segment files only.
            let mut store = LogStore::open(&disk).expect("log store");
            assert!(old.is_empty(), "the sled tree was not emptied");
            let got = rt.block_on(store.try_get_log_entries(0..)).expect("read");
            assert_eq!(
                got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
                (11..=30).collect::<Vec<_>>()
            );
            let state = rt.block_on(store.get_log_state()).expect("state");
            assert_eq!(state.last_log_id, Some(entry(30, 2).log_id));
        }
    }

    #[test]
    fn recent_entries_keep_the_newest_within_their_bounds() {
        let mut recent = Recent::default();
        for i in 1..=(RECENT_ENTRIES_MAX as u64 + 10) {
            recent.push(entry(i, 1), 10);
        }
        assert_eq!(recent.entries.len(), RECENT_ENTRIES_MAX);
        assert!(recent.range(1, Some(5)).is_none(), "the oldest were let go");
        let last = RECENT_ENTRIES_MAX as u64 + 10;
        assert_eq!(recent.range(last - 1, None).map(|v| v.len()), Some(2));
        // A gap (entries appended after the log was cut elsewhere) starts afresh.
        recent.push(entry(last + 5, 2), 10);
        assert_eq!(recent.entries.len(), 1);
        // Bytes bound: one huge entry stays alone.
        recent.push(entry(last + 6, 2), RECENT_BYTES_MAX + 1);
        assert_eq!(recent.entries.len(), 1);
        assert_eq!(recent.bytes, RECENT_BYTES_MAX + 1);
    }
}
