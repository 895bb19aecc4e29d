//! The restart fence: what a node that restarted (after a crash, say) must have applied before it
//! serves a linearizable read.
//!
//! Issue 14: a leader killed right after acknowledging writes can restart with a committed id from
//! before them (the committed id is written, not made durable: that would cost a durability pass
//! on every apply), and openraft 0.9 restores a node whose vote it holds as leader at once, in
//! the same term — its read index then comes from that stale committed id, and a read could be
//! answered from below what the node acknowledged.
//!
//! Everything a node acknowledged before the restart was committed and is in its log (an
//! acknowledged entry was durable in the leader's log before it counted, and a committed entry is
//! never truncated), so at an index no higher than the last one the node found in its log at
//! start. A linearizable read is therefore safe once the node has applied that index; or once it
//! has applied an entry of a later term than the vote it found at start, since the leader that
//! committed that entry held every entry committed in earlier terms, below that entry's index.
//! Both conditions are on the applied log id alone, so they hold whatever leadership does.

use openraft::LogId;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestartFence {
    /// The term of the vote found at start (no entry in the log has a later one).
    term: u64,
    /// The last log index found at start (0: an empty log, nothing to wait for).
    index: u64,
}

impl RestartFence {
    pub fn new(vote_term: u64, last_log_index: u64) -> Self {
        Self {
            term: vote_term,
            index: last_log_index,
        }
    }

    /// Whether a node that has applied up to `applied` may serve linearizable reads.
    pub fn passed(&self, applied: Option<&LogId<u64>>) -> bool {
        self.index == 0 || applied.is_some_and(|a| a.index >= self.index || a.leader_id.term > self.term)
    }

    pub fn index(&self) -> u64 {
        self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn applied(term: u64, index: u64) -> Option<LogId<u64>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    #[test]
    fn an_empty_log_has_nothing_to_wait_for() {
        assert!(RestartFence::new(0, 0).passed(None));
        assert!(RestartFence::new(4, 0).passed(None));
    }

    #[test]
    fn a_restored_leader_waits_until_it_has_applied_its_whole_log() {
        let fence = RestartFence::new(3, 50);
        assert!(!fence.passed(None));
        // Restored in term 3 with a committed id from before its last acknowledged writes.
        assert!(!fence.passed(applied(3, 12).as_ref()));
        assert!(!fence.passed(applied(3, 49).as_ref()));
        assert!(fence.passed(applied(3, 50).as_ref()));
        assert!(fence.passed(applied(3, 51).as_ref()));
    }

    #[test]
    fn an_entry_of_a_later_term_lets_reads_through_below_the_old_log_end() {
        // Its uncommitted tail was replaced by a later leader with a shorter log.
        let fence = RestartFence::new(3, 50);
        assert!(fence.passed(applied(4, 40).as_ref()));
        assert!(!fence.passed(applied(2, 40).as_ref()));
    }
}
