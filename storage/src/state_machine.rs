//! The state machine: `apply` is the only entry point that changes the views. For each entry it
//! decides against the views, then folds the events into the views, appends them to the event
//! journal and records `last_applied` — in ONE sled transaction.
//!
//! Snapshots are the view trees (not the journal) at `last_applied`, written as length-delimited
//! protobuf rows to `<dir>/snapshot.current`. Installing one is crash-safe: the file is made
//! durable first, an `installing` marker is set, the trees are replaced, the marker is cleared;
//! a node that finds the marker at start-up re-installs from the file.

use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use prost::Message;
use sled::transaction::{ConflictableTransactionError, Transactional};

use crate::codec::{self, Entry};
use crate::keyspace as ks;
use crate::rules::decide::{self, Decision};
use crate::{decode, pb, StoreError, TypeConfig, Views};

const SNAPSHOT_FILE: &str = "snapshot.current";
use ks::SNAPSHOT_TREES;

/// Snapshot bytes with the meta they describe.
type SnapshotBytes = (Vec<u8>, SnapshotMeta<u64, BasicNode>);
/// One row of a view tree: (tree name, key, value).
pub type ViewRow = (String, Vec<u8>, Vec<u8>);

pub struct StateMachine {
    db: sled::Db,
    views: Views,
    meta: sled::Tree,
    dir: PathBuf,
    snapshots_built: u64,
}

/// One write that folding an event produces: (tree, key, value or delete).
struct Write {
    tree: Tree,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

#[derive(Clone, Copy)]
enum Tree {
    Desired = 0,
    DesiredByDomain = 1,
    Actual = 2,
    ActualByDomain = 3,
    Domains = 4,
    Journal = 5,
    Meta = 6,
    Cells = 7,
    ActualByCell = 8,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

impl StateMachine {
    /// Opens the state machine on the process's `db`; `dir` holds the current snapshot file.
    pub fn open(db: &sled::Db, dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let mut sm = Self {
            db: db.clone(),
            views: Views::open(db)?,
            meta: db.open_tree(ks::SM_META)?,
            dir: dir.to_owned(),
            snapshots_built: 0,
        };
        if sm.meta.get(ks::KEY_INSTALLING)?.is_some() {
            tracing::warn!("an interrupted snapshot install was found; installing it again");
            let data = std::fs::read(sm.snapshot_path())?;
            sm.replace_trees(&data)?;
        }
        Ok(sm)
    }

    pub fn views(&self) -> &Views {
        &self.views
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_FILE)
    }

    fn trees(&self) -> [sled::Tree; 9] {
        [
            self.views.desired.clone(),
            self.views.desired_by_domain.clone(),
            self.views.actual.clone(),
            self.views.actual_by_domain.clone(),
            self.views.domains.clone(),
            self.views.journal.clone(),
            self.meta.clone(),
            self.views.cells.clone(),
            self.views.actual_by_cell.clone(),
        ]
    }

    pub fn last_applied(&self) -> Result<Option<LogId<u64>>, StoreError> {
        Ok(self
            .meta
            .get(ks::KEY_LAST_APPLIED)?
            .map(|v| decode::<pb::LogId>("last applied", &v))
            .transpose()?
            .map(|l| codec::log_id_from_pb(&l)))
    }

    fn last_membership(&self) -> Result<StoredMembership<u64, BasicNode>, StoreError> {
        Ok(self
            .meta
            .get(ks::KEY_LAST_MEMBERSHIP)?
            .map(|v| decode::<pb::StoredMembership>("last membership", &v))
            .transpose()?
            .map(|m| codec::stored_membership_from_pb(&m))
            .unwrap_or_default())
    }

    /// Applies one entry: decide, fold, journal, last_applied — one transaction.
    pub fn apply_entry(&mut self, entry: &Entry) -> Result<pb::Outcome, StoreError> {
        let mut writes = vec![Write {
            tree: Tree::Meta,
            key: ks::KEY_LAST_APPLIED.to_vec(),
            value: Some(codec::log_id_to_pb(&entry.log_id).encode_to_vec()),
        }];
        let outcome = match &entry.payload {
            EntryPayload::Blank => pb::Outcome::default(),
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                writes.push(Write {
                    tree: Tree::Meta,
                    key: ks::KEY_LAST_MEMBERSHIP.to_vec(),
                    value: Some(codec::stored_membership_to_pb(&stored).encode_to_vec()),
                });
                pb::Outcome::default()
            }
            EntryPayload::Normal(proposal) => {
                let decision: Decision = if proposal.version != capstan_proto::FORMAT_VERSION {
                    Err(decide::reject(
                        pb::RejectionKind::UnknownCommand,
                        format!("proposal format version {} is unknown", proposal.version),
                    ))
                } else {
                    let stamp = proposal.stamp.unwrap_or_default();
                    let command = proposal.command.clone().unwrap_or_default();
                    decide::decide(&self.views, &stamp, &command)?
                };
                match decision {
                    Err(rejection) => pb::Outcome {
                        events: vec![],
                        rejection: Some(rejection),
                    },
                    Ok(events) => {
                        for e in &events {
                            fold(e, &mut writes);
                        }
                        let index = entry.log_id.index;
                        let record = pb::JournalRecord {
                            version: capstan_proto::FORMAT_VERSION,
                            log_index: index,
                            time_unix_ns: proposal.stamp.map(|s| s.time_unix_ns).unwrap_or_default(),
                            events: events.clone(),
                        };
                        writes.push(Write {
                            tree: Tree::Journal,
                            key: ks::log_key(index).to_vec(),
                            value: Some(record.encode_to_vec()),
                        });
                        if let Some(old) = index.checked_sub(ks::JOURNAL_RECORDS_MAX) {
                            writes.push(Write {
                                tree: Tree::Journal,
                                key: ks::log_key(old).to_vec(),
                                value: None,
                            });
                        }
                        pb::Outcome {
                            events,
                            rejection: None,
                        }
                    }
                }
            }
        };
        let trees = self.trees();
        trees.as_slice().transaction(|tx| {
            for w in &writes {
                let t = &tx[w.tree as usize];
                match &w.value {
                    Some(v) => {
                        t.insert(w.key.as_slice(), v.as_slice())?;
                    }
                    None => {
                        t.remove(w.key.as_slice())?;
                    }
                }
            }
            Ok::<(), ConflictableTransactionError<StoreError>>(())
        })?;
        Ok(outcome)
    }

    /// Encodes the snapshot trees and meta as one byte stream (header, then rows).
    fn dump(&self, snapshot_id: String) -> Result<SnapshotBytes, StoreError> {
        let last_applied = self.last_applied()?;
        let last_membership = self.last_membership()?;
        let mut rows = Vec::new();
        let mut count = 0u64;
        for name in SNAPSHOT_TREES {
            let tree = self.db.open_tree(name)?;
            for kv in tree.iter() {
                let (k, v) = kv?;
                pb::SnapshotRow {
                    tree: name.to_owned(),
                    key: k.to_vec(),
                    value: v.to_vec(),
                }
                .encode_length_delimited(&mut rows)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                count += 1;
            }
        }
        let header = pb::SnapshotHeader {
            version: capstan_proto::FORMAT_VERSION,
            last_applied: codec::opt_log_id_to_pb(last_applied.as_ref()),
            last_membership: Some(codec::stored_membership_to_pb(&last_membership)),
            snapshot_id: snapshot_id.clone(),
            row_count: count,
        };
        let mut data = Vec::with_capacity(rows.len() + 128);
        header
            .encode_length_delimited(&mut data)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        data.extend_from_slice(&rows);
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        Ok((data, meta))
    }

    /// Writes snapshot bytes durably to the current-snapshot file (temp file, fsync, rename).
    fn persist_snapshot(dir: &Path, data: &[u8]) -> Result<(), StoreError> {
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Replaces the view trees, journal and meta with a snapshot's content.
    fn replace_trees(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let mut buf = data;
        let header = pb::SnapshotHeader::decode_length_delimited(&mut buf).map_err(|source| StoreError::Decode {
            what: "snapshot header",
            source,
        })?;
        if header.version != capstan_proto::FORMAT_VERSION {
            return Err(StoreError::Corrupt(format!(
                "snapshot format version {} is unknown",
                header.version
            )));
        }
        self.meta.insert(ks::KEY_INSTALLING, &[1u8][..])?;
        self.db.flush()?;
        for name in SNAPSHOT_TREES.iter().chain([&ks::JOURNAL]) {
            self.db.open_tree(name)?.clear()?;
        }
        let mut seen = 0u64;
        while !buf.is_empty() {
            let row = pb::SnapshotRow::decode_length_delimited(&mut buf).map_err(|source| StoreError::Decode {
                what: "snapshot row",
                source,
            })?;
            if !SNAPSHOT_TREES.contains(&row.tree.as_str()) {
                return Err(StoreError::Corrupt(format!(
                    "snapshot row for unknown tree {}",
                    row.tree
                )));
            }
            self.db.open_tree(&row.tree)?.insert(row.key, row.value)?;
            seen += 1;
        }
        if seen != header.row_count {
            return Err(StoreError::Corrupt(format!(
                "snapshot has {seen} rows, header says {}",
                header.row_count
            )));
        }
        match &header.last_applied {
            Some(l) => self.meta.insert(ks::KEY_LAST_APPLIED, l.encode_to_vec())?,
            None => self.meta.remove(ks::KEY_LAST_APPLIED)?,
        };
        match &header.last_membership {
            Some(m) => self.meta.insert(ks::KEY_LAST_MEMBERSHIP, m.encode_to_vec())?,
            None => self.meta.remove(ks::KEY_LAST_MEMBERSHIP)?,
        };
        self.meta.remove(ks::KEY_INSTALLING)?;
        self.db.flush()?;
        self.views.installs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn read_snapshot_file(&self) -> Result<Option<SnapshotBytes>, StoreError> {
        let data = match std::fs::read(self.snapshot_path()) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let header =
            pb::SnapshotHeader::decode_length_delimited(data.as_slice()).map_err(|source| StoreError::Decode {
                what: "snapshot header",
                source,
            })?;
        let meta = SnapshotMeta {
            last_log_id: codec::opt_log_id_from_pb(header.last_applied.as_ref()),
            last_membership: header
                .last_membership
                .as_ref()
                .map(codec::stored_membership_from_pb)
                .unwrap_or_default(),
            snapshot_id: header.snapshot_id,
        };
        Ok(Some((data, meta)))
    }

    /// Every row of the view trees and the journal, for replay comparisons in tests.
    pub fn view_rows(&self) -> Result<Vec<ViewRow>, StoreError> {
        let mut out = Vec::new();
        for name in ks::VIEW_TREES {
            for kv in self.db.open_tree(name)?.iter() {
                let (k, v) = kv?;
                out.push((name.to_owned(), k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }
}

/// Folds one event into the writes it makes to the views.
fn fold(e: &pb::Event, writes: &mut Vec<Write>) {
    use pb::event::Kind;
    let mut put = |tree: Tree, key: Vec<u8>, value: Option<Vec<u8>>| writes.push(Write { tree, key, value });
    match &e.kind {
        Some(Kind::DesiredLrpCreated(pb::DesiredLrpCreated { desired_lrp: Some(d) }))
        | Some(Kind::DesiredLrpChanged(pb::DesiredLrpChanged { after: Some(d), .. })) => {
            put(
                Tree::Desired,
                d.process_guid.as_bytes().to_vec(),
                Some(d.encode_to_vec()),
            );
            put(
                Tree::DesiredByDomain,
                ks::desired_by_domain_key(&d.domain, &d.process_guid),
                Some(vec![]),
            );
        }
        Some(Kind::DesiredLrpRemoved(pb::DesiredLrpRemoved { desired_lrp: Some(d) })) => {
            put(Tree::Desired, d.process_guid.as_bytes().to_vec(), None);
            put(
                Tree::DesiredByDomain,
                ks::desired_by_domain_key(&d.domain, &d.process_guid),
                None,
            );
        }
        Some(Kind::ActualLrpCreated(pb::ActualLrpCreated { actual_lrp: Some(a) })) => {
            put_actual(&mut put, a);
        }
        Some(Kind::ActualLrpChanged(pb::ActualLrpChanged {
            before: Some(b),
            after: Some(a),
        })) => {
            if !b.cell_id.is_empty() && (b.cell_id != a.cell_id) {
                put(
                    Tree::ActualByCell,
                    ks::actual_by_cell_key(&b.cell_id, &b.process_guid, b.index),
                    None,
                );
            }
            put_actual(&mut put, a);
        }
        Some(Kind::ActualLrpRemoved(pb::ActualLrpRemoved { actual_lrp: Some(a) })) => {
            put(Tree::Actual, ks::actual_key(&a.process_guid, a.index), None);
            put(
                Tree::ActualByDomain,
                ks::actual_by_domain_key(&a.domain, &a.process_guid, a.index),
                None,
            );
            if !a.cell_id.is_empty() {
                put(
                    Tree::ActualByCell,
                    ks::actual_by_cell_key(&a.cell_id, &a.process_guid, a.index),
                    None,
                );
            }
        }
        Some(Kind::CellRegistered(pb::CellRegistered { cell: Some(c) })) => {
            put(Tree::Cells, c.cell_id.as_bytes().to_vec(), Some(c.encode_to_vec()));
        }
        Some(Kind::CellRemoved(pb::CellRemoved { cell: Some(c), .. })) => {
            put(Tree::Cells, c.cell_id.as_bytes().to_vec(), None);
        }
        Some(Kind::FreshDomainBumped(pb::FreshDomainBumped { fresh_domain: Some(d) })) => {
            put(Tree::Domains, d.domain.as_bytes().to_vec(), Some(d.encode_to_vec()));
        }
        // An event without its payload changes nothing; decide never makes one.
        _ => {}
    }
}

/// The writes of an actual's new state: its row, its domain index, its cell index.
fn put_actual(put: &mut impl FnMut(Tree, Vec<u8>, Option<Vec<u8>>), a: &pb::ActualLrp) {
    put(
        Tree::Actual,
        ks::actual_key(&a.process_guid, a.index),
        Some(a.encode_to_vec()),
    );
    put(
        Tree::ActualByDomain,
        ks::actual_by_domain_key(&a.domain, &a.process_guid, a.index),
        Some(vec![]),
    );
    if !a.cell_id.is_empty() {
        put(
            Tree::ActualByCell,
            ks::actual_by_cell_key(&a.cell_id, &a.process_guid, a.index),
            Some(vec![]),
        );
    }
}

/// Builds a snapshot from bytes dumped while apply was paused.
pub struct SnapshotBuilder {
    dump: Result<SnapshotBytes, String>,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (data, meta) = self
            .dump
            .clone()
            .map_err(|e| snap_err(ErrorVerb::Read, StoreError::Corrupt(e)))?;
        let dir = self.dir.clone();
        let to_write = data.clone();
        tokio::task::spawn_blocking(move || StateMachine::persist_snapshot(&dir, &to_write))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        tracing::info!(snapshot_id = %meta.snapshot_id, bytes = data.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
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

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<pb::Outcome>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let outcome = self
                .apply_entry(&entry)
                .map_err(|e| StorageIOError::apply(entry.log_id, AnyError::new(&e)))?;
            out.push(outcome);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        let id = match self.last_applied() {
            Ok(Some(l)) => format!("{}-{}-{}", l.leader_id.term, l.index, self.snapshots_built),
            _ => format!("0-0-{}", self.snapshots_built),
        };
        SnapshotBuilder {
            dump: self.dump(id).map_err(|e| e.to_string()),
            dir: self.dir.clone(),
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
        tracing::info!(snapshot_id = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let found = self.read_snapshot_file().map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(found.map(|(data, meta)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
