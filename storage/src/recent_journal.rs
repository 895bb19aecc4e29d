//! The newest journal records, kept in memory as apply made them: the hub of every node and each
//! event stream follow the journal right behind apply, and read them from here instead of reading
//! sled and decoding every record again per reader. Holds at most [`RECORDS_MAX`] records taking
//! about [`HEAP_BYTES_MAX`] of heap; every record from `complete_from` on is here, so a reader from an
//! index at or past it gets exactly what sled would give, and a reader from before it reads sled.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::pb;

pub const RECORDS_MAX: usize = 4_096;
/// Heap the held records may take. They are held decoded, and a decoded record takes several
/// times its encoded length (its strings and nested messages each their own allocation): a heap
/// profile of 250,000 instances placed found 16 MiB of encoded records holding ~110 MB.
pub const HEAP_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Heap a held record is charged per byte of its encoding (the ratio that profile measured, ~6.5).
pub const HEAP_PER_ENCODED_BYTE: usize = 7;

#[derive(Default)]
struct Inner {
    /// Oldest first, by log index, each with the heap it is charged.
    records: VecDeque<(Arc<pb::JournalRecord>, usize)>,
    /// heap charged for all of them
    bytes: usize,
    /// No record at or after this index is missing. `u64::MAX` until apply has said where
    /// it starts (nothing is served from memory before that).
    complete_from: u64,
}

/// Cheap to clone (one shared buffer).
#[derive(Clone)]
pub struct RecentJournal {
    inner: Arc<Mutex<Inner>>,
}

impl Default for RecentJournal {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                complete_from: u64::MAX,
                ..Inner::default()
            })),
        }
    }
}

impl RecentJournal {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets every record: the next one apply makes will be at `next_index` or later (at
    /// start-up, after the last applied entry; after a snapshot install, after its index).
    pub fn reset(&self, next_index: u64) {
        let mut inner = self.lock();
        inner.records.clear();
        inner.bytes = 0;
        inner.complete_from = next_index;
    }

    /// Records apply has committed to sled, in log order, each with its encoded length (charged
    /// [`HEAP_PER_ENCODED_BYTE`] per byte).
    pub fn push(&self, records: impl IntoIterator<Item = (Arc<pb::JournalRecord>, usize)>) {
        let mut inner = self.lock();
        for (record, len) in records {
            let heap = len.saturating_mul(HEAP_PER_ENCODED_BYTE);
            inner.bytes += heap;
            inner.records.push_back((record, heap));
        }
        while inner.records.len() > RECORDS_MAX || (inner.bytes > HEAP_BYTES_MAX && inner.records.len() > 1) {
            let Some((old, len)) = inner.records.pop_front() else {
                break;
            };
            inner.bytes -= len;
            inner.complete_from = inner.complete_from.max(old.log_index + 1);
        }
    }

    /// The records with log index ≥ `from`, in order, when this buffer holds all of them.
    pub fn from(&self, from: u64) -> Option<Vec<Arc<pb::JournalRecord>>> {
        let inner = self.lock();
        if from < inner.complete_from {
            return None;
        }
        let start = inner.records.partition_point(|(r, _)| r.log_index < from);
        Some(inner.records.range(start..).map(|(r, _)| r.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(index: u64) -> (Arc<pb::JournalRecord>, usize) {
        let r = pb::JournalRecord {
            log_index: index,
            ..Default::default()
        };
        (Arc::new(r), 1_000)
    }

    fn indexes(v: Option<Vec<Arc<pb::JournalRecord>>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|r| r.log_index).collect())
    }

    #[test]
    fn serves_nothing_before_it_knows_where_it_starts() {
        let j = RecentJournal::default();
        assert_eq!(indexes(j.from(1)), None);
        j.reset(5);
        assert_eq!(indexes(j.from(4)), None);
        assert_eq!(indexes(j.from(5)), Some(vec![]));
    }

    #[test]
    fn serves_from_any_index_it_holds_whole_records_past_gaps_included() {
        let j = RecentJournal::default();
        j.reset(3);
        j.push([rec(3), rec(5), rec(9)]);
        assert_eq!(indexes(j.from(3)), Some(vec![3, 5, 9]));
        // Entries without accepted commands leave no record: 4 starts at 5.
        assert_eq!(indexes(j.from(4)), Some(vec![5, 9]));
        assert_eq!(indexes(j.from(10)), Some(vec![]));
        assert_eq!(indexes(j.from(2)), None);
    }

    #[test]
    fn evicting_the_oldest_moves_where_it_is_complete() {
        let j = RecentJournal::default();
        j.reset(1);
        j.push((1..=RECORDS_MAX as u64 + 2).map(|i| rec(i * 2)));
        // Records 2 and 4 went: everything from 5 on is still here.
        assert_eq!(indexes(j.from(4)), None);
        assert_eq!(indexes(j.from(5)).map(|v| v[0]), Some(6));
        j.reset(100_000);
        assert_eq!(indexes(j.from(6)), None);
    }

    #[test]
    fn the_byte_bound_keeps_at_least_the_newest_record() {
        let j = RecentJournal::default();
        j.reset(1);
        let encoded = HEAP_BYTES_MAX / HEAP_PER_ENCODED_BYTE;
        j.push([(rec(1).0, encoded), (rec(2).0, encoded)]);
        assert_eq!(indexes(j.from(1)), None);
        assert_eq!(indexes(j.from(2)), Some(vec![2]));
        // Charged as held, not as encoded: two records whose encodings take a seventh of the
        // bound together do not both fit.
        let j = RecentJournal::default();
        j.reset(1);
        let half = encoded / 2 + 1;
        j.push([(rec(1).0, half)]);
        assert_eq!(indexes(j.from(1)), Some(vec![1]));
        j.push([(rec(2).0, half)]);
        assert_eq!(indexes(j.from(1)), None);
        assert_eq!(indexes(j.from(2)), Some(vec![2]));
    }
}
