//! Snapshots. The views live in sled, which is durable: a snapshot built for log compaction is
//! the views made durable at `last_applied` (one durability pass), not a copy of them — openraft
//! 0.9 keeps only a built snapshot's meta and purges the log behind it. The views are read out
//! only when a snapshot is served (a follower behind the purged log, or openraft's start-up): as
//! length-delimited protobuf rows (a header, then rows) in `<dir>/snapshot.current`, made in the
//! state machine's worker between two applies, and reused while no entry it lacks was purged.
//! Installing one is crash-safe: the file is made durable first, an `installing` marker is set,
//! the trees are replaced, the marker is cleared; a node that finds the marker at start-up
//! re-installs from the file.

use std::io::{Cursor, Write as _};
use std::path::Path;

use openraft::storage::{RaftSnapshotBuilder, Snapshot};
use openraft::{ErrorVerb, SnapshotMeta, StorageError};
use prost::Message;

use super::{snap_err, StateMachine};
use crate::codec;
use crate::keyspace::{self as ks, Role, Tree};
use crate::{pb, Disk, StoreError, TypeConfig, Views};

pub(super) const SNAPSHOT_FILE: &str = "snapshot.current";

/// Snapshot bytes with the meta they describe.
pub(super) type SnapshotBytes = (Vec<u8>, SnapshotMeta<u64, openraft::BasicNode>);
/// One row of a view tree: (tree name, key, value).
pub type ViewRow = (String, Vec<u8>, Vec<u8>);

impl StateMachine {
    /// The snapshot to serve: the file while it still joins the log (no entry after its index
    /// was purged), else the views read out now — apply waits meanwhile, as this runs in the
    /// state machine's worker — and written to the file for the next request.
    pub(super) async fn current_snapshot(&mut self) -> Result<Option<SnapshotBytes>, StoreError> {
        let purged =
            crate::log_store::read_log_id(self.views.trees.get(Tree::RaftMeta), ks::KEY_LAST_PURGED)?.map(|l| l.index);
        if let Some((data, meta)) = self.read_snapshot_file()? {
            if meta.last_log_id.map(|l| l.index) >= purged {
                return Ok(Some((data, meta)));
            }
        }
        let meta = self.meta_now()?;
        if meta.last_log_id.is_none() {
            return Ok(None);
        }
        let (views, dir, capacity) = (self.views.clone(), self.dir.clone(), self.last_dump_bytes);
        let started = std::time::Instant::now();
        let (data, meta) = tokio::task::spawn_blocking(move || {
            let data = dump(&views, &meta, capacity)?;
            StateMachine::persist_snapshot(&dir, &data)?;
            Ok::<_, StoreError>((data, meta))
        })
        .await
        .map_err(std::io::Error::other)??;
        metrics::histogram!(crate::metrics::SNAPSHOT_DUMP_DURATION).record(started.elapsed().as_secs_f64());
        metrics::gauge!(crate::metrics::SNAPSHOT_SIZE).set(data.len() as f64);
        self.last_dump_bytes = data.len();
        tracing::info!(snapshot_id = %meta.snapshot_id, bytes = data.len(), "snapshot read out of the views");
        Ok(Some((data, meta)))
    }

    /// The meta of a snapshot of the views as they are now (between two applies).
    pub(super) fn meta_now(&self) -> Result<SnapshotMeta<u64, openraft::BasicNode>, StoreError> {
        let last_log_id = self.last_applied()?;
        Ok(SnapshotMeta {
            last_log_id,
            last_membership: self.last_membership()?,
            snapshot_id: snapshot_id(last_log_id.as_ref()),
        })
    }

    /// Writes snapshot bytes durably to the current-snapshot file (temp file, fsync, rename).
    pub(super) fn persist_snapshot(dir: &Path, data: &[u8]) -> Result<(), StoreError> {
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Replaces the view trees, journal and meta with a snapshot's content.
    pub(super) fn replace_trees(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let mut buf = data;
        let header = pb::SnapshotHeader::decode_length_delimited(&mut buf).map_err(|source| StoreError::Decode {
            what: "snapshot header",
            source,
        })?;
        crate::known_format("snapshot", header.version)?;
        self.meta().insert(ks::KEY_INSTALLING, &[1u8][..])?;
        self.db.flush()?;
        for t in Tree::select(Tree::replayed).filter(|t| t.role() != Role::Index) {
            self.views.trees.get(t).clear()?;
        }
        let mut seen = 0u64;
        while !buf.is_empty() {
            let row = pb::SnapshotRow::decode_length_delimited(&mut buf).map_err(|source| StoreError::Decode {
                what: "snapshot row",
                source,
            })?;
            seen += 1;
            let tree = Tree::by_name(&row.tree);
            if tree.is_some_and(|t| t.role() == Role::Index) {
                // Sent by a build that kept indexes in sled: rebuilt from the views below.
                continue;
            }
            let Some(tree) = tree.filter(|t| t.in_snapshot()) else {
                return Err(StoreError::Corrupt(format!(
                    "snapshot row for unknown tree {}",
                    row.tree
                )));
            };
            self.views.trees.get(tree).insert(row.key, row.value)?;
        }
        if seen != header.row_count {
            return Err(StoreError::Corrupt(format!(
                "snapshot has {seen} rows, header says {}",
                header.row_count
            )));
        }
        match &header.last_applied {
            Some(l) => self.meta().insert(ks::KEY_LAST_APPLIED, l.encode_to_vec())?,
            None => self.meta().remove(ks::KEY_LAST_APPLIED)?,
        };
        // The journal starts over after the snapshot: nothing at or below its index is kept.
        let floor = header.last_applied.as_ref().map_or(0, |l| l.index) + 1;
        self.meta().insert(ks::KEY_JOURNAL_FLOOR, &floor.to_be_bytes()[..])?;
        self.meta().insert(ks::KEY_JOURNAL_BYTES, &0u64.to_be_bytes()[..])?;
        match &header.last_membership {
            Some(m) => self.meta().insert(ks::KEY_LAST_MEMBERSHIP, m.encode_to_vec())?,
            None => self.meta().remove(ks::KEY_LAST_MEMBERSHIP)?,
        };
        self.views.indexes.rebuild(&self.views.trees)?;
        self.meta().remove(ks::KEY_INSTALLING)?;
        self.db.flush()?;
        self.views.recent_journal.reset(floor);
        self.views.installs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    pub(super) fn read_snapshot_file(&self) -> Result<Option<SnapshotBytes>, StoreError> {
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

    /// Every row of the view trees, their indexes and the journal, for replay comparisons in tests.
    pub fn view_rows(&self) -> Result<Vec<ViewRow>, StoreError> {
        let mut out = Vec::new();
        for t in Tree::select(Tree::replayed) {
            if t.role() == Role::Index {
                let keys = self.views.indexes.keys(t);
                out.extend(keys.into_iter().map(|k| (t.name().to_owned(), k, Vec::new())));
                continue;
            }
            for kv in self.views.trees.get(t).iter() {
                let (k, v) = kv?;
                out.push((t.name().to_owned(), k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }
}

/// Appends one length-delimited `pb::SnapshotRow` to `out`, encoded from borrowed slices: the same
/// bytes as the message's own encoding, without copying the key and value into a message first.
fn encode_row(tree: &str, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
    let fields = [(1u32, tree.as_bytes()), (2, key), (3, value)];
    // proto3 leaves empty fields out (an index row's value is empty).
    let present = || fields.iter().filter(|(_, b)| !b.is_empty());
    let len: usize = present()
        .map(|(tag, b)| key_len(*tag) + encoded_len_varint(b.len() as u64) + b.len())
        .sum();
    encode_varint(len as u64, out);
    for (tag, b) in present() {
        encode_key(*tag, WireType::LengthDelimited, out);
        encode_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
}

/// A snapshot's id names the state it holds: the views at one applied log id are the same on
/// every node and at every reading, so a snapshot built and one read out later at the same index
/// are the same snapshot.
fn snapshot_id(last_applied: Option<&openraft::LogId<u64>>) -> String {
    last_applied.map_or_else(|| "0-0".into(), |l| format!("{}-{}", l.leader_id.term, l.index))
}

/// Reads the views out as snapshot bytes (header, then rows) under `meta`. The caller makes sure
/// no apply runs meanwhile (sled has no point-in-time read).
fn dump(views: &Views, meta: &SnapshotMeta<u64, openraft::BasicNode>, capacity: usize) -> Result<Vec<u8>, StoreError> {
    // Rows are encoded straight from sled's buffers into a buffer of the last dump's size.
    let mut rows = Vec::with_capacity(capacity);
    let mut count = 0u64;
    for t in Tree::select(Tree::in_snapshot) {
        for kv in views.trees.get(t).iter() {
            let (k, v) = kv?;
            encode_row(t.name(), &k, &v, &mut rows);
            count += 1;
        }
    }
    let header = pb::SnapshotHeader {
        version: capstan_proto::FORMAT_VERSION,
        last_applied: codec::opt_log_id_to_pb(meta.last_log_id.as_ref()),
        last_membership: Some(codec::stored_membership_to_pb(&meta.last_membership)),
        snapshot_id: meta.snapshot_id.clone(),
        row_count: count,
    };
    let mut data = Vec::with_capacity(rows.len() + 128);
    header
        .encode_length_delimited(&mut data)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    data.extend_from_slice(&rows);
    Ok(data)
}

/// Builds the snapshot openraft compacts the log behind: the views made durable at its index.
pub struct SnapshotBuilder {
    pub(super) disk: Disk,
    /// The snapshot's index and membership, read when the builder was made (between two applies).
    pub(super) meta: Result<SnapshotMeta<u64, openraft::BasicNode>, String>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let meta = self
            .meta
            .clone()
            .map_err(|e| snap_err(ErrorVerb::Read, StoreError::Corrupt(e)))?;
        // The views (and `last_applied` with them, in the same transactions) as of at least this
        // index survive a crash from here on: the log at or below it may go. A node restarted
        // later finds `last_applied` ≥ this index and applies the log after it.
        self.disk
            .make_durable()
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        metrics::counter!(crate::metrics::SNAPSHOTS_BUILT).increment(1);
        tracing::debug!(snapshot_id = %meta.snapshot_id, "snapshot built (the views made durable)");
        // openraft 0.9 keeps a built snapshot's meta only; one that is sent is made by
        // `get_current_snapshot`, which reads the views out.
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_encodes_as_the_message_does() {
        let cases: [(&str, &[u8], &[u8]); 4] = [
            ("desired", b"guid-1", &[7u8; 300]),
            ("desired_by_domain", b"\x00\x05cf-apps", b""),
            ("cells", b"", b"v"),
            ("", b"", b""),
        ];
        for (tree, key, value) in cases {
            let mut ours = Vec::new();
            encode_row(tree, key, value, &mut ours);
            let theirs = pb::SnapshotRow {
                tree: tree.to_owned(),
                key: key.to_vec(),
                value: value.to_vec(),
            }
            .encode_length_delimited_to_vec();
            assert_eq!(ours, theirs, "row ({tree}, {key:?}, {} value bytes)", value.len());
        }
    }
}
