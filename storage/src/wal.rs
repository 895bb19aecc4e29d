//! The Raft log's entries in segment files of their own (a write-ahead log, as etcd keeps its
//! Raft log beside its B-tree), not in sled. An append is one `write` and one `fdatasync` of the
//! active segment: sled's flush of everything apply wrote is no longer on the path of every
//! acknowledgement, and the log's ~10 KiB entries no longer go through sled's pages (an insert, a
//! share of a leaf rewrite at every split and consolidation, a delete at each purge).
//!
//! Layout: `<dir>/<first index, 20 digits>.wal`, each a run of records
//! `len: u32 LE | crc32(body): u32 LE | body`, the body a kind byte then either an entry as
//! `codec::encode_entry` stores it, or a truncation (`u64 LE` index: the entries at and after it
//! are gone). A segment is named by the index of its first record; a new one starts when the
//! active one passes [`SEGMENT_BYTES`] (its name made durable before anything in it is).
//!
//! The log is a map from index to entry, as openraft's storage contract reads it: an entry
//! appended again at an index replaces it, and a truncation removes every entry at or after its
//! index. openraft itself only appends the next index, after truncating a conflict.
//!
//! Crash safety: records are only ever appended, each call's records durable before it returns,
//! so a crash can leave only a torn tail on the last segment — found by its length or checksum at
//! open and cut off — and replaying the records in order gives the log as acknowledged. A purge
//! deletes segments from the oldest while each holds no entry above the floor (which the caller
//! made durable first) — only ever a prefix of the segments, so an entry a truncation removed
//! never outlives the truncation's record; entries at or below the floor are skipped at open.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::StoreError;

/// A segment is closed once it holds this many bytes (the append that passes it completes first).
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// `len` and `crc32` before each record's body.
const HEADER: usize = 8;
/// A record longer than this is taken for a torn or corrupt header, not read.
const RECORD_BYTES_MAX: u32 = 256 * 1024 * 1024;
const SUFFIX: &str = ".wal";
/// The kind byte that starts a record's body.
const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;

/// Where one entry's bytes are.
#[derive(Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    file: Arc<File>,
    len: u64,
    /// The highest index of an entry record in it (superseded ones included).
    max_index: Option<u64>,
}

/// The segment files and where each entry above the purge floor is in them.
pub struct Wal {
    dir: PathBuf,
    /// Segments by the index of their first record; the last one is appended to.
    segments: BTreeMap<u64, Segment>,
    entries: BTreeMap<u64, Loc>,
    /// [`SEGMENT_BYTES`] (smaller in tests).
    segment_bytes: u64,
}

/// A located entry: its index, its segment file and where its bytes are in it.
pub type Located = (u64, Arc<File>, u64, u32);

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SUFFIX}"))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Appends one record (header, kind, body) to `buf`.
fn put_record(buf: &mut Vec<u8>, kind: u8, body: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(body.len() + 1)
        .ok()
        .filter(|l| *l <= RECORD_BYTES_MAX)
        .ok_or_else(|| corrupt("a raft log record is too large to store".into()))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(body);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(body);
    Ok(())
}

impl Wal {
    /// Opens the log in `dir` (created if missing). Entries at or below `floor` are skipped;
    /// `index_of` reads an entry's log index from its bytes. A torn tail of the last segment is
    /// cut off; a bad record anywhere else is corruption.
    pub fn open(
        dir: &Path,
        floor: Option<u64>,
        index_of: impl Fn(&[u8]) -> Result<u64, StoreError>,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name();
            if let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            {
                names.push(first);
            }
        }
        names.sort_unstable();
        let mut wal = Wal {
            dir: dir.to_owned(),
            segments: BTreeMap::new(),
            entries: BTreeMap::new(),
            segment_bytes: SEGMENT_BYTES,
        };
        let last_segment = names.last().copied();
        for first in names {
            let path = segment_path(dir, first);
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let mut data = Vec::new();
            (&file).read_to_end(&mut data)?;
            let (mut at, mut max_index) = (0usize, None);
            while let Some(header) = data.get(at..at + HEADER) {
                let len = u32::from_le_bytes(header[..4].try_into().unwrap_or_default());
                let crc = u32::from_le_bytes(header[4..].try_into().unwrap_or_default());
                let body = (len <= RECORD_BYTES_MAX)
                    .then(|| data.get(at + HEADER..at + HEADER + len as usize))
                    .flatten()
                    .filter(|b| crc32fast::hash(b) == crc);
                let Some((&kind, rest)) = body.and_then(|b| b.split_first()) else {
                    break;
                };
                match kind {
                    KIND_ENTRY => {
                        let index = index_of(rest)?;
                        max_index = max_index.max(Some(index));
                        if floor.is_none_or(|f| index > f) {
                            let loc = Loc {
                                segment: first,
                                offset: (at + HEADER + 1) as u64,
                                len: len - 1,
                            };
                            wal.entries.insert(index, loc);
                        }
                    }
                    KIND_TRUNCATE => {
                        let index = u64::from_le_bytes(
                            rest.try_into()
                                .map_err(|_| corrupt(format!("raft log truncation record in {}", path.display())))?,
                        );
                        wal.entries.split_off(&index);
                    }
                    k => return Err(corrupt(format!("raft log record of kind {k} in {}", path.display()))),
                }
                at += HEADER + len as usize;
            }
            if at < data.len() {
                if Some(first) != last_segment {
                    return Err(corrupt(format!(
                        "raft log segment {} is damaged at byte {at} and is not the last",
                        path.display()
                    )));
                }
                tracing::warn!(segment = %path.display(), at, "cutting a torn tail off the raft log");
                file.set_len(at as u64)?;
                file.sync_all()?;
            }
            let segment = Segment {
                file: Arc::new(file),
                len: at as u64,
                max_index,
            };
            wal.segments.insert(first, segment);
        }
        Ok(wal)
    }

    /// The index of the last entry, if the log holds any above the floor.
    pub fn last_index(&self) -> Option<u64> {
        self.entries.last_key_value().map(|(i, _)| *i)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes `buf` (whole records) at the end of the active segment, starting a new one named
    /// `first_index` when the active one is full, and makes it durable. Returns the segment and
    /// the offset `buf` starts at.
    fn write(&mut self, first_index: u64, buf: &[u8]) -> Result<(u64, u64), StoreError> {
        let active = self.segments.last_key_value().map(|(k, s)| (*k, s.len));
        let segment = match active {
            Some((first, len)) if len < self.segment_bytes => first,
            _ => {
                let mut name = first_index;
                // Names only grow (a truncation may have the next append start lower).
                if let Some((last, _)) = active {
                    name = name.max(last + 1);
                }
                let path = segment_path(&self.dir, name);
                let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
                // The new name is durable before any acknowledged record is in it.
                sync_dir(&self.dir)?;
                let segment = Segment {
                    file: Arc::new(file),
                    len: 0,
                    max_index: None,
                };
                self.segments.insert(name, segment);
                name
            }
        };
        let seg = self
            .segments
            .get_mut(&segment)
            .ok_or_else(|| corrupt("raft log: no active segment".into()))?;
        let (offset, started) = (seg.len, std::time::Instant::now());
        seg.file.write_all_at(buf, offset)?;
        seg.file.sync_data()?;
        seg.len += buf.len() as u64;
        metrics::histogram!(crate::metrics::LOG_SYNC_DURATION).record(started.elapsed().as_secs_f64());
        Ok((segment, offset))
    }

    /// Appends entries (`(index, bytes)`; one at an index already there replaces it) and returns
    /// once they are on stable storage.
    pub fn append(&mut self, records: &[(u64, &[u8])]) -> Result<(), StoreError> {
        let Some(&(first_index, _)) = records.first() else {
            return Ok(());
        };
        let total: usize = records.iter().map(|(_, b)| HEADER + 1 + b.len()).sum();
        let mut buf = Vec::with_capacity(total);
        let mut placed = Vec::with_capacity(records.len());
        for (index, bytes) in records {
            placed.push((*index, (buf.len() + HEADER + 1) as u64, bytes.len() as u32));
            put_record(&mut buf, KIND_ENTRY, bytes)?;
        }
        let (segment, start) = self.write(first_index, &buf)?;
        for (index, at, len) in placed {
            let loc = Loc {
                segment,
                offset: start + at,
                len,
            };
            self.entries.insert(index, loc);
            if let Some(seg) = self.segments.get_mut(&segment) {
                seg.max_index = seg.max_index.max(Some(index));
            }
        }
        Ok(())
    }

    /// Removes the entries at `index` and after, durably (a truncation record).
    pub fn truncate_from(&mut self, index: u64) -> Result<(), StoreError> {
        if self.entries.range(index..).next().is_none() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(HEADER + 9);
        put_record(&mut buf, KIND_TRUNCATE, &index.to_le_bytes())?;
        self.write(index, &buf)?;
        self.entries.split_off(&index);
        Ok(())
    }

    /// Forgets the entries at or below `index` and deletes the oldest segments while they hold
    /// nothing above it (never the active one). The caller has made the purge floor durable.
    pub fn purge_to(&mut self, index: u64) -> Result<(), StoreError> {
        self.entries = self.entries.split_off(&index.saturating_add(1));
        let mut removed = false;
        while self.segments.len() > 1 {
            let Some((&first, seg)) = self.segments.first_key_value() else {
                break;
            };
            if seg.max_index.is_some_and(|m| m > index) {
                break;
            }
            self.segments.remove(&first);
            std::fs::remove_file(segment_path(&self.dir, first))?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The entries `start..end` (to the last when `end` is `None`), in order: where they are, to
    /// be read with [`read_at`] outside any lock (a purge may delete a file's name meanwhile,
    /// not the open file).
    pub fn locate(&self, start: u64, end: Option<u64>) -> Vec<Located> {
        let end = end.unwrap_or(u64::MAX);
        if start >= end {
            return Vec::new();
        }
        self.entries
            .range(start..end)
            .filter_map(|(i, loc)| {
                let seg = self.segments.get(&loc.segment)?;
                Some((*i, seg.file.clone(), loc.offset, loc.len))
            })
            .collect()
    }

    /// How many segment files there are (for tests).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

/// Reads one located entry's bytes.
pub fn read_at(file: &File, offset: u64, len: u32) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn index_of(b: &[u8]) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(b[..8].try_into().expect("8 bytes")))
    }

    fn record(i: u64, size: usize) -> Vec<u8> {
        let mut v = i.to_le_bytes().to_vec();
        v.resize(size.max(8), (i % 251) as u8);
        v
    }

    fn append(wal: &mut Wal, range: std::ops::RangeInclusive<u64>, size: usize) {
        let recs: Vec<(u64, Vec<u8>)> = range.map(|i| (i, record(i, size))).collect();
        let refs: Vec<(u64, &[u8])> = recs.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        wal.append(&refs).expect("append");
    }

    /// The indexes the log holds, each read back and checked.
    fn read_all(wal: &Wal) -> Vec<u64> {
        wal.locate(0, None)
            .into_iter()
            .map(|(i, f, o, l)| {
                assert_eq!(read_at(&f, o, l).expect("read"), record(i, l as usize));
                i
            })
            .collect()
    }

    #[test]
    fn appends_truncations_and_purges_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None, index_of).expect("open");
        append(&mut wal, 1..=10, 100);
        wal.truncate_from(8).expect("truncate");
        assert_eq!(read_all(&wal), (1..=7).collect::<Vec<_>>());
        append(&mut wal, 8..=12, 50);
        // An entry appended again at an index replaces it; a gap is kept as a gap.
        append(&mut wal, 3..=3, 40);
        append(&mut wal, 20..=20, 30);
        let want: Vec<u64> = (1..=12).chain([20]).collect();
        assert_eq!(read_all(&wal), want);
        drop(wal);
        let mut wal = Wal::open(dir.path(), None, index_of).expect("reopen");
        assert_eq!(read_all(&wal), want);
        wal.purge_to(5).expect("purge");
        let want: Vec<u64> = (6..=12).chain([20]).collect();
        assert_eq!(read_all(&wal), want);
        drop(wal);
        let wal = Wal::open(dir.path(), Some(5), index_of).expect("reopen above the floor");
        assert_eq!(read_all(&wal), want);
        assert_eq!(wal.last_index(), Some(20));
    }

    #[test]
    fn a_torn_tail_is_cut_off_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None, index_of).expect("open");
        append(&mut wal, 1..=3, 64);
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let full = std::fs::metadata(&path).expect("meta").len();
        // Half of the last record reached the disk.
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(full - 20).expect("cut");
        let wal = Wal::open(dir.path(), None, index_of).expect("reopen");
        assert_eq!(read_all(&wal), vec![1, 2]);
        let record_len = (HEADER + 1 + 64) as u64;
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 2 * record_len);
        drop(wal);
        // A whole record whose checksum does not match.
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&[65, 0, 0, 0, 1, 2, 3, 4, KIND_ENTRY]).expect("header");
        f.write_all(&record(3, 64)).expect("body");
        let wal = Wal::open(dir.path(), None, index_of).expect("reopen");
        assert_eq!(read_all(&wal), vec![1, 2]);
    }

    #[test]
    fn segments_roll_over_and_only_a_purged_prefix_is_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None, index_of).expect("open");
        wal.segment_bytes = 6_000;
        // Records of a sixth of a segment: a new segment every six appends.
        for i in 1..=20 {
            append(&mut wal, i..=i, 1_000);
        }
        let segments = wal.segment_count();
        assert!(segments >= 3, "{segments} segments");
        // A truncation reaching back into an older segment, then the log goes on.
        wal.truncate_from(4).expect("truncate across segments");
        assert_eq!(wal.last_index(), Some(3));
        append(&mut wal, 4..=6, 8);
        // The first segment holds 1..=6 as first written: purging to 5 deletes nothing (6 is
        // there), purging to 6 deletes it, and no later one while it holds a newer entry.
        wal.purge_to(5).expect("purge");
        assert_eq!(wal.segment_count(), segments);
        wal.purge_to(6).expect("purge");
        assert_eq!(wal.segment_count(), segments - 1);
        assert!(read_all(&wal).is_empty());
        append(&mut wal, 7..=8, 8);
        drop(wal);
        // Reopened above the floor: the truncation record still hides the old 7..=20.
        let wal = Wal::open(dir.path(), Some(6), index_of).expect("reopen");
        assert_eq!(read_all(&wal), vec![7, 8]);
    }
}
