//! The state machine: `apply` is the only entry point that changes the views. For each entry it
//! decides against the views, then folds the events into the views, appends them to the event
//! journal and records `last_applied` — in ONE sled transaction.
//!
//! Snapshots are the view trees (not the journal) at `last_applied`: made durable where they are
//! for log compaction, read out as length-delimited protobuf rows to `<dir>/snapshot.current`
//! only when one is served (`snapshot.rs`). Installing one is crash-safe: the file is made
//! durable first, an `installing` marker is set, the trees are replaced, the marker is cleared;
//! a node that finds the marker at start-up re-installs from the file.

mod fold;
mod snapshot;
mod staged;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use prost::Message;
use sled::transaction::{ConflictableTransactionError, Transactional};

use crate::codec::{self, Entry};
use crate::keyspace::{self as ks, Role, Tree};
use crate::rules::decide::{self, Decision};
use crate::rules::ids;
use crate::view_read::TreeRead;
use crate::{decode, pb, StoreError, TypeConfig, Views};
use fold::{fold, Write};
pub use snapshot::{SnapshotBuilder, ViewRow};
pub(crate) use staged::Staged;

/// Entries applied in one sled transaction at most, and keys written: bounds how long one apply
/// holds sled's transaction lock (the log's appends wait on it).
const APPLY_BATCH_ENTRIES_MAX: usize = 64;
const APPLY_BATCH_WRITES_MAX: usize = 8_192;

pub struct StateMachine {
    db: sled::Db,
    /// Durability passes (a snapshot built for compaction is the views made durable).
    disk: crate::Disk,
    views: Views,
    dir: PathBuf,
    /// Bytes of the last snapshot read out (the next one's starting capacity).
    last_dump_bytes: usize,
    /// The trees apply writes (`Tree::written_by_apply`), in registry order, for one transaction.
    applied_trees: Vec<(Tree, sled::Tree)>,
    /// Journal records kept (older ones are trimmed by apply).
    journal_records_max: u64,
    /// Encoded journal bytes kept (the oldest records are trimmed by apply beyond it).
    journal_bytes_max: u64,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

impl StateMachine {
    /// Opens the state machine on the process's `db`; `dir` holds the current snapshot file.
    pub fn open(disk: &crate::Disk, dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let db = disk.db();
        let mut sm = Self {
            db: db.clone(),
            disk: disk.clone(),
            views: Views::open(db)?,
            dir: dir.to_owned(),
            last_dump_bytes: 0,
            applied_trees: Vec::new(),
            journal_records_max: ks::JOURNAL_RECORDS_MAX,
            journal_bytes_max: ks::JOURNAL_BYTES_MAX,
        };
        sm.applied_trees = Tree::select(Tree::written_by_apply)
            .map(|t| (t, sm.views.trees.get(t).clone()))
            .collect();
        if sm.meta().get(ks::KEY_INSTALLING)?.is_some() {
            tracing::warn!("an interrupted snapshot install was found; installing it again");
            let data = std::fs::read(sm.snapshot_path())?;
            sm.replace_trees(&data)?;
        }
        sm.views.recent_journal.reset(sm.views.last_applied_index()? + 1);
        Ok(sm)
    }

    pub fn views(&self) -> &Views {
        &self.views
    }

    /// How many encoded bytes of journal this node keeps (the newest record always stays).
    pub fn set_journal_bytes_max(&mut self, n: u64) {
        self.journal_bytes_max = n.max(1);
    }

    /// The journal writes of appending `record` at `index`: the record, and the trims that keep
    /// the journal within its record and byte limits (the floor raised past what is trimmed).
    /// Deterministic: it reads only the journal and its meta as of the previous entry (through
    /// the batch's staged writes).
    fn journal_writes(
        &self,
        view: &Staged,
        index: u64,
        record: Vec<u8>,
        writes: &mut Vec<Write>,
    ) -> Result<(), StoreError> {
        let meta_u64 = |key: &[u8]| -> Result<u64, StoreError> {
            Ok(view
                .get(Tree::StateMeta, key)?
                .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])))
                .unwrap_or(0))
        };
        let mut bytes = meta_u64(ks::KEY_JOURNAL_BYTES)? + record.len() as u64;
        let mut floor = meta_u64(ks::KEY_JOURNAL_FLOOR)?;
        let floor_before = floor;
        writes.push(Write {
            tree: Tree::Journal,
            key: ks::log_key(index).to_vec(),
            value: Some(record),
        });
        let trim = |key: &[u8], len: usize, writes: &mut Vec<Write>, floor: &mut u64, bytes: &mut u64| {
            *bytes = bytes.saturating_sub(len as u64);
            if let Some(i) = ks::log_index(key) {
                *floor = (*floor).max(i + 1);
            }
            writes.push(Write {
                tree: Tree::Journal,
                key: key.to_vec(),
                value: None,
            });
        };
        let by_count = index.checked_sub(self.journal_records_max).map(ks::log_key);
        if let Some(old) = by_count {
            if let Some(v) = view.get(Tree::Journal, &old)? {
                trim(&old, v.len(), writes, &mut floor, &mut bytes);
            }
        }
        if bytes > self.journal_bytes_max {
            let mut trimmed = 0;
            // The oldest records (one more: the record trimmed by count may be among them).
            for (k, v) in view.range(Tree::Journal, &[], None, ks::JOURNAL_TRIM_PER_ENTRY_MAX + 1)? {
                if bytes <= self.journal_bytes_max || trimmed >= ks::JOURNAL_TRIM_PER_ENTRY_MAX {
                    break;
                }
                if by_count.is_some_and(|old| old[..] == k[..]) {
                    continue;
                }
                trim(&k, v.len(), writes, &mut floor, &mut bytes);
                trimmed += 1;
            }
        }
        writes.push(Write {
            tree: Tree::StateMeta,
            key: ks::KEY_JOURNAL_BYTES.to_vec(),
            value: Some(bytes.to_be_bytes().to_vec()),
        });
        if floor != floor_before {
            writes.push(Write {
                tree: Tree::StateMeta,
                key: ks::KEY_JOURNAL_FLOOR.to_vec(),
                value: Some(floor.to_be_bytes().to_vec()),
            });
        }
        Ok(())
    }

    /// How many journal records this node keeps (at least 1).
    pub fn set_journal_records_max(&mut self, n: u64) {
        self.journal_records_max = n.max(1);
        self.views
            .journal_retained
            .store(self.journal_records_max, std::sync::atomic::Ordering::SeqCst);
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join(snapshot::SNAPSHOT_FILE)
    }

    fn meta(&self) -> &sled::Tree {
        self.views.trees.get(Tree::StateMeta)
    }

    pub fn last_applied(&self) -> Result<Option<LogId<u64>>, StoreError> {
        Ok(self
            .meta()
            .get(ks::KEY_LAST_APPLIED)?
            .map(|v| decode::<pb::LogId>("last applied", &v))
            .transpose()?
            .map(|l| codec::log_id_from_pb(&l)))
    }

    fn last_membership(&self) -> Result<StoredMembership<u64, BasicNode>, StoreError> {
        Ok(self
            .meta()
            .get(ks::KEY_LAST_MEMBERSHIP)?
            .map(|v| decode::<pb::StoredMembership>("last membership", &v))
            .transpose()?
            .map(|m| codec::stored_membership_from_pb(&m))
            .unwrap_or_default())
    }

    /// Decides one entry against the views under the batch's staged writes and stages what it
    /// writes: each command's events folded into the views, the entry's journal record,
    /// `last_applied`. Returns each command's outcome.
    /// The entry's journal record, if it has one, goes to `records` with its encoded length.
    fn stage_entry(
        &self,
        view: &mut Staged,
        entry: &Entry,
        records: &mut Vec<(Arc<pb::JournalRecord>, usize)>,
    ) -> Result<pb::Outcomes, StoreError> {
        let mut writes = vec![Write {
            tree: Tree::StateMeta,
            key: ks::KEY_LAST_APPLIED.to_vec(),
            value: Some(codec::log_id_to_pb(&entry.log_id).encode_to_vec()),
        }];
        let mut outcomes = Vec::new();
        match &entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                writes.push(Write {
                    tree: Tree::StateMeta,
                    key: ks::KEY_LAST_MEMBERSHIP.to_vec(),
                    value: Some(codec::stored_membership_to_pb(&stored).encode_to_vec()),
                });
            }
            EntryPayload::Normal(proposal) => {
                let stamp = proposal.stamp.unwrap_or_default();
                let mut journaled = None::<Vec<pb::Event>>;
                for (position, command) in commands_of(proposal).into_iter().enumerate() {
                    let decision: Decision = match command {
                        Ok(command) => decide::decide(&*view, &ids::command_stamp(&stamp, position), command)?,
                        Err(rejection) => Err(rejection),
                    };
                    outcomes.push(match decision {
                        Err(rejection) => pb::Outcome {
                            events: vec![],
                            rejection: Some(rejection),
                        },
                        Ok(events) => {
                            let mut folded = Vec::new();
                            for e in &events {
                                fold(e, &mut folded);
                            }
                            view.stage(folded);
                            journaled.get_or_insert_with(Vec::new).extend(events.iter().cloned());
                            pb::Outcome {
                                events,
                                rejection: None,
                            }
                        }
                    });
                }
                // An entry with at least one accepted command has a journal record.
                if let Some(events) = journaled {
                    let index = entry.log_id.index;
                    let record = pb::JournalRecord {
                        version: capstan_proto::FORMAT_VERSION,
                        log_index: index,
                        time_unix_ns: stamp.time_unix_ns,
                        events,
                    };
                    let bytes = record.encode_to_vec();
                    records.push((Arc::new(record), bytes.len()));
                    self.journal_writes(view, index, bytes, &mut writes)?;
                }
            }
        }
        view.stage(writes);
        // One outcome per command, in order: the proposer matches them to its callers by position.
        debug_assert_eq!(
            outcomes.len(),
            match &entry.payload {
                EntryPayload::Normal(p) => commands_of(p).len(),
                _ => 0,
            },
            "outcomes of entry {:?}",
            entry.log_id
        );
        Ok(pb::Outcomes { outcomes })
    }

    /// Commits the batch's staged writes in ONE sled transaction, then the in-memory indexes'.
    fn commit(&self, view: &mut Staged) -> Result<(), StoreError> {
        let writes = view.take();
        let trees: Vec<&sled::Tree> = self.applied_trees.iter().map(|(_, t)| t).collect();
        let slot = |tree: Tree| self.applied_trees.iter().position(|(t, _)| *t == tree);
        let in_sled = || writes.iter().filter(|((t, _), _)| t.role() != Role::Index);
        trees.as_slice().transaction(|tx| {
            for ((tree, key), value) in in_sled() {
                let Some(t) = slot(*tree).and_then(|i| tx.get(i)) else {
                    let bad = StoreError::Corrupt(format!("apply may not write {tree:?}"));
                    return Err(ConflictableTransactionError::Abort(bad));
                };
                match value {
                    Some(v) => {
                        t.insert(key.as_slice(), v.clone())?;
                    }
                    None => {
                        t.remove(key.as_slice())?;
                    }
                }
            }
            Ok::<(), ConflictableTransactionError<StoreError>>(())
        })?;
        let indexed = writes.iter().filter(|((t, _), _)| t.role() == Role::Index);
        self.views
            .indexes
            .apply(indexed.map(|((t, k), v)| (*t, k.as_slice(), v.is_some())));
        metrics::histogram!(crate::metrics::APPLY_WRITES).record(in_sled().count() as f64);
        Ok(())
    }
}

/// The commands of a proposal, in order; a version this build does not read is one rejection.
fn commands_of(proposal: &pb::Proposal) -> Vec<Result<&pb::Command, pb::Rejection>> {
    match proposal.version {
        1 => vec![proposal
            .command
            .as_ref()
            .ok_or_else(|| decide::reject(pb::RejectionKind::UnknownCommand, "the entry carries no command"))],
        v if (capstan_proto::PROPOSAL_VERSION_MIN..=capstan_proto::PROPOSAL_VERSION).contains(&v) => {
            proposal.commands.iter().map(Ok).collect()
        }
        v => vec![Err(decide::reject(
            pb::RejectionKind::UnknownCommand,
            format!("proposal format version {v} is unknown"),
        ))],
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let applied = self.last_applied().map_err(sm_err)?;
        let membership = self.last_membership().map_err(sm_err)?;
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<pb::Outcomes>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // No durability pass here: the committed id that covers these entries is written, not
        // made durable (a restarted node may find an older one). A node never serves a
        // linearizable read below what it acknowledged before a restart: raft's restart fence
        // (`capstan_raft::fence`) holds reads until it has applied its log as found at start.
        let views = self.views.clone();
        let mut view = Staged::new(&views);
        let mut out = Vec::new();
        let mut records = Vec::new();
        let (mut staged_entries, mut last) = (0, None);
        // Apply sees entries in log order, each past what it applied last: the views are "as of
        // last_applied" only if no entry is applied twice or out of order. (openraft's suite
        // applies with gaps, so only the order is asserted.)
        #[cfg(debug_assertions)]
        let mut expected = self.last_applied().ok().map(|l| l.map_or(0, |l| l.index + 1));
        for entry in entries {
            #[cfg(debug_assertions)]
            {
                debug_assert!(
                    expected.is_none_or(|next| entry.log_id.index >= next),
                    "apply got {:?}, expected index {expected:?} or later",
                    entry.log_id
                );
                expected = Some(entry.log_id.index + 1);
            }
            let outcomes = self
                .stage_entry(&mut view, &entry, &mut records)
                .map_err(|e| StorageIOError::apply(entry.log_id, AnyError::new(&e)))?;
            out.push(outcomes);
            staged_entries += 1;
            last = Some(entry.log_id);
            if staged_entries >= APPLY_BATCH_ENTRIES_MAX || view.len() >= APPLY_BATCH_WRITES_MAX {
                self.commit(&mut view)
                    .map_err(|e| StorageIOError::apply(entry.log_id, AnyError::new(&e)))?;
                self.views.recent_journal.push(records.drain(..));
                metrics::histogram!(crate::metrics::APPLY_ENTRIES).record(staged_entries as f64);
                staged_entries = 0;
            }
        }
        if let Some(last) = last.filter(|_| staged_entries > 0) {
            self.commit(&mut view)
                .map_err(|e| StorageIOError::apply(last, AnyError::new(&e)))?;
            self.views.recent_journal.push(records.drain(..));
            metrics::histogram!(crate::metrics::APPLY_ENTRIES).record(staged_entries as f64);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            disk: self.disk.clone(),
            meta: self.meta_now().map_err(|e| e.to_string()),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        Self::persist_snapshot(&self.dir, &data).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        self.replace_trees(&data).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        // openraft purges this node's log behind the snapshot next: the installed views must be
        // on stable storage first (replacing them flushed sled, which is not an fdatasync).
        self.disk
            .make_durable()
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        metrics::counter!(crate::metrics::SNAPSHOTS_INSTALLED).increment(1);
        metrics::gauge!(crate::metrics::SNAPSHOT_SIZE).set(data.len() as f64);
        tracing::info!(snapshot_id = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let found = self
            .current_snapshot()
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(found.map(|(data, meta)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
