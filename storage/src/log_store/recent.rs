//! The newest entries of the log in memory, with their stored bytes.

use std::collections::VecDeque;

use openraft::LogId;
use prost::bytes::Bytes;

use crate::codec::Entry;

/// Entries kept in memory at most, and their encoded bytes. The decoded entries beside those
/// bytes take about twice as much again (the heap profile of `bench-cells 1000 1000 250`: 32 MiB
/// of encoded entries held ~105 MiB), so 8 MiB here is ~25 MiB of heap: a few dozen of the largest
/// entries (placement batches), a thousand of the common small ones.
const RECENT_ENTRIES_MAX: usize = 1_024;
const RECENT_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The newest entries of the log, contiguous and ending at its last entry, each with its stored
/// bytes: replication to each follower and apply read what was just appended, and from here that
/// is a clone of shared proposals (and of the bytes replication sends), not a sled read and a
/// decode per reader, nor an encoding per follower. It mirrors the log: append adds, truncate and
/// purge remove; a range it does not hold whole is read from sled.
#[derive(Default)]
pub(super) struct Recent {
    entries: VecDeque<(Entry, Bytes)>,
    bytes: usize,
}

impl Recent {
    pub(super) fn push(&mut self, entry: Entry, encoded: Bytes) {
        let bytes = encoded.len();
        if self
            .entries
            .back()
            .is_some_and(|(last, _)| last.log_id.index + 1 != entry.log_id.index)
        {
            self.clear();
        }
        self.entries.push_back((entry, encoded));
        self.bytes += bytes;
        while self.entries.len() > RECENT_ENTRIES_MAX || (self.bytes > RECENT_BYTES_MAX && self.entries.len() > 1) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, encoded)) = self.entries.pop_front() {
            self.bytes -= encoded.len();
        }
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Forgets the entries at `index` and after (a truncation).
    pub(super) fn truncate_from(&mut self, index: u64) {
        while let Some((last, encoded)) = self.entries.back() {
            if last.log_id.index < index {
                break;
            }
            self.bytes -= encoded.len();
            self.entries.pop_back();
        }
    }

    /// Forgets the entries up to `index` (a purge).
    pub(super) fn purge_to(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(first, _)| first.log_id.index <= index)
        {
            self.pop_front();
        }
    }

    /// The entries `start..end` (to the last when `end` is `None`), when all of them are here.
    pub(super) fn range(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.0.log_id.index;
        let after_last = self.entries.back()?.0.log_id.index + 1;
        let end = end.unwrap_or(after_last);
        if start < first || end > after_last || start >= end {
            return None;
        }
        let (from, to) = (usize::try_from(start - first).ok()?, usize::try_from(end - first).ok()?);
        Some(self.entries.range(from..to).map(|(e, _)| e.clone()).collect())
    }

    /// The stored bytes of the entry `log_id`, when it is here.
    pub(super) fn encoded(&self, log_id: &LogId<u64>) -> Option<Bytes> {
        let first = self.entries.front()?.0.log_id.index;
        let at = usize::try_from(log_id.index.checked_sub(first)?).ok()?;
        let (entry, encoded) = self.entries.get(at)?;
        (entry.log_id == *log_id).then(|| encoded.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::CommittedLeaderId;
    use proptest::prelude::*;

    use super::super::tests::entry;
    use super::*;
    use crate::codec;

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![0; n])
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
                            recent.push(entry(index, term), bytes(100));
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
    fn recent_entries_keep_the_newest_within_their_bounds() {
        let mut recent = Recent::default();
        for i in 1..=(RECENT_ENTRIES_MAX as u64 + 10) {
            recent.push(entry(i, 1), bytes(10));
        }
        assert_eq!(recent.entries.len(), RECENT_ENTRIES_MAX);
        assert!(recent.range(1, Some(5)).is_none(), "the oldest were let go");
        let last = RECENT_ENTRIES_MAX as u64 + 10;
        assert_eq!(recent.range(last - 1, None).map(|v| v.len()), Some(2));
        // A gap (entries appended after the log was cut elsewhere) starts afresh.
        recent.push(entry(last + 5, 2), bytes(10));
        assert_eq!(recent.entries.len(), 1);
        // Bytes bound: one huge entry stays alone.
        recent.push(entry(last + 6, 2), bytes(RECENT_BYTES_MAX + 1));
        assert_eq!(recent.entries.len(), 1);
        assert_eq!(recent.bytes, RECENT_BYTES_MAX + 1);
    }

    #[test]
    fn recent_entries_give_their_stored_bytes_by_log_id() {
        let mut recent = Recent::default();
        for i in 1..=3 {
            let e = entry(i, 1);
            let encoded = Bytes::from(codec::encode_entry(&e));
            recent.push(e, encoded);
        }
        let id = |index, term| LogId::new(CommittedLeaderId::new(term, 1), index);
        assert_eq!(
            recent.encoded(&id(2, 1)),
            Some(Bytes::from(codec::encode_entry(&entry(2, 1))))
        );
        assert_eq!(
            recent.encoded(&id(2, 2)),
            None,
            "same index, another term: another entry"
        );
        assert_eq!(recent.encoded(&id(4, 1)), None);
        assert_eq!(recent.encoded(&id(0, 1)), None);
    }
}
