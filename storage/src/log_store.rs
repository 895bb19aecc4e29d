//! The Raft log on sled: entries, vote, committed id and purge floor. Every write here is made
//! durable ([`Disk::make_durable`]: flush, then fdatasync) before openraft hears it is done: the
//! leader commits on the strength of an append, a voter's vote must survive a crash, and the
//! committed id must never go back below an index this node acknowledged (a node restarted as
//! leader serves linearizable reads from its committed id).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use prost::Message;

use crate::codec::{self, Entry};
use crate::keyspace as ks;
use crate::{decode, pb, Disk, StoreError, TypeConfig};

#[derive(Clone)]
pub struct LogStore {
    disk: Disk,
    log: sled::Tree,
    meta: sled::Tree,
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
        })
    }

    fn read_log_id(&self, key: &[u8]) -> Result<Option<LogId<u64>>, StoreError> {
        Ok(self
            .meta
            .get(key)?
            .map(|v| decode::<pb::LogId>("log id", &v))
            .transpose()?
            .map(|l| codec::log_id_from_pb(&l)))
    }

    fn write_log_id(&self, key: &[u8], id: Option<&LogId<u64>>) -> Result<(), StoreError> {
        match id {
            Some(id) => self.meta.insert(key, codec::log_id_to_pb(id).encode_to_vec())?,
            None => self.meta.remove(key)?,
        };
        Ok(())
    }

    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StoreError> {
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
        let mut batch = sled::Batch::default();
        let mut n = 0u32;
        for e in entries {
            batch.insert(&ks::log_key(e.log_id.index), codec::entry_to_pb(&e).encode_to_vec());
            n += 1;
        }
        self.log.apply_batch(batch)?;
        self.disk.make_durable().await?;
        metrics::histogram!(crate::metrics::APPEND_ENTRIES).record(f64::from(n));
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
        let last = self.last_log_id().map_err(read_err)?.or(last_purged);
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
        // it answer a linearizable read from before writes it had acknowledged.
        self.write_log_id(ks::KEY_COMMITTED, committed.as_ref())
            .map_err(write_err)?;
        self.disk.make_durable().await.map_err(write_err)?;
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
        // The floor first: a crash between the two steps leaves extra entries, never a hole.
        self.write_log_id(ks::KEY_LAST_PURGED, Some(&log_id))
            .map_err(write_err)?;
        self.disk.make_durable().await.map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for kv in self.log.range(..=ks::log_key(log_id.index)) {
            let (k, _) = kv.map_err(write_err)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.disk.make_durable().await.map_err(write_err)?;
        Ok(())
    }
}
