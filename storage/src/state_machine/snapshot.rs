//! Snapshots: the view trees at `last_applied`, as length-delimited protobuf rows (a header, then
//! rows) in `<dir>/snapshot.current`. Installing one is crash-safe: the file is made durable
//! first, an `installing` marker is set, the trees are replaced, the marker is cleared; a node that
//! finds the marker at start-up re-installs from the file.

use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};

use openraft::storage::{RaftSnapshotBuilder, Snapshot};
use openraft::{ErrorVerb, SnapshotMeta, StorageError};
use prost::Message;

use super::{snap_err, StateMachine};
use crate::codec;
use crate::keyspace::{self as ks, Tree};
use crate::{pb, StoreError, TypeConfig};

pub(super) const SNAPSHOT_FILE: &str = "snapshot.current";

/// Snapshot bytes with the meta they describe.
pub(super) type SnapshotBytes = (Vec<u8>, SnapshotMeta<u64, openraft::BasicNode>);
/// One row of a view tree: (tree name, key, value).
pub type ViewRow = (String, Vec<u8>, Vec<u8>);

impl StateMachine {
    /// Encodes the snapshot trees and meta as one byte stream (header, then rows).
    pub(super) fn dump(&self, snapshot_id: String) -> Result<SnapshotBytes, StoreError> {
        let last_applied = self.last_applied()?;
        let last_membership = self.last_membership()?;
        // Apply waits while this runs: rows are encoded straight from sled's buffers, and the
        // buffer starts at the size of the last snapshot (no regrowth copies).
        let mut rows = Vec::with_capacity(self.last_dump_bytes);
        let mut count = 0u64;
        for t in Tree::select(Tree::in_snapshot) {
            let (name, tree) = (t.name(), self.views.trees.get(t));
            for kv in tree.iter() {
                let (k, v) = kv?;
                encode_row(name, &k, &v, &mut rows);
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
        if header.version != capstan_proto::FORMAT_VERSION {
            return Err(StoreError::Corrupt(format!(
                "snapshot format version {} is unknown",
                header.version
            )));
        }
        self.meta().insert(ks::KEY_INSTALLING, &[1u8][..])?;
        self.db.flush()?;
        for t in Tree::select(Tree::replayed) {
            self.views.trees.get(t).clear()?;
        }
        let mut seen = 0u64;
        while !buf.is_empty() {
            let row = pb::SnapshotRow::decode_length_delimited(&mut buf).map_err(|source| StoreError::Decode {
                what: "snapshot row",
                source,
            })?;
            let Some(tree) = Tree::by_name(&row.tree).filter(|t| t.in_snapshot()) else {
                return Err(StoreError::Corrupt(format!(
                    "snapshot row for unknown tree {}",
                    row.tree
                )));
            };
            self.views.trees.get(tree).insert(row.key, row.value)?;
            seen += 1;
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

    /// Every row of the view trees and the journal, for replay comparisons in tests.
    pub fn view_rows(&self) -> Result<Vec<ViewRow>, StoreError> {
        let mut out = Vec::new();
        for t in Tree::select(Tree::replayed) {
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

/// Builds a snapshot from bytes dumped while apply was paused.
pub struct SnapshotBuilder {
    pub(super) dump: Result<SnapshotBytes, String>,
    pub(super) dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        // Built once: the dump moves into the file write and back, never copied.
        let (data, meta) = std::mem::replace(&mut self.dump, Err("this snapshot was already built".into()))
            .map_err(|e| snap_err(ErrorVerb::Read, StoreError::Corrupt(e)))?;
        let dir = self.dir.clone();
        let data = tokio::task::spawn_blocking(move || StateMachine::persist_snapshot(&dir, &data).map(|()| data))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        metrics::counter!(crate::metrics::SNAPSHOTS_BUILT).increment(1);
        metrics::gauge!(crate::metrics::SNAPSHOT_SIZE).set(data.len() as f64);
        tracing::info!(snapshot_id = %meta.snapshot_id, bytes = data.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
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
