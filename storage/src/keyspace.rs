//! The one registry of sled trees and key layouts. Every persisted key is built here.
//!
//! Strings in composite keys are length-prefixed (u16 big-endian), so no byte of a user-chosen
//! domain or guid can make two keys collide, and a prefix scan over `len ++ guid` finds exactly
//! that guid's rows. Integers are big-endian so that byte order is numeric order.

/// Raft log: `u64 index` → `LogEntry`.
pub const RAFT_LOG: &str = "raft_log";
/// Raft metadata: `vote`, `committed`, `last_purged` → `Vote` / `LogId`.
pub const RAFT_META: &str = "raft_meta";
/// State machine metadata: `last_applied`, `last_membership`, `installing`.
pub const SM_META: &str = "sm_meta";
/// `process_guid` → `DesiredLrp`.
pub const DESIRED: &str = "desired_lrps";
/// `str domain ++ str process_guid` → empty.
pub const DESIRED_BY_DOMAIN: &str = "desired_lrps_by_domain";
/// `str process_guid ++ u32 index` → `ActualLrp`.
pub const ACTUAL: &str = "actual_lrps";
/// `str domain ++ str process_guid ++ u32 index` → empty.
pub const ACTUAL_BY_DOMAIN: &str = "actual_lrps_by_domain";
/// `domain` → `FreshDomain`.
pub const DOMAINS: &str = "fresh_domains";
/// `u64 log index` → `JournalRecord`.
pub const JOURNAL: &str = "event_journal";

/// `cell_id` → `Cell`.
pub const CELLS: &str = "cells";
/// `str cell_id ++ str process_guid ++ u32 index` → empty: the instances placed on a cell.
pub const ACTUAL_BY_CELL: &str = "actual_lrps_by_cell";

/// The trees a snapshot carries (the journal restarts at the snapshot's index on install).
pub const SNAPSHOT_TREES: [&str; 7] = [
    DESIRED,
    DESIRED_BY_DOMAIN,
    ACTUAL,
    ACTUAL_BY_DOMAIN,
    DOMAINS,
    CELLS,
    ACTUAL_BY_CELL,
];
/// The view trees and the journal: what replay must reproduce byte for byte.
pub const VIEW_TREES: [&str; 8] = [
    DESIRED,
    DESIRED_BY_DOMAIN,
    ACTUAL,
    ACTUAL_BY_DOMAIN,
    DOMAINS,
    CELLS,
    ACTUAL_BY_CELL,
    JOURNAL,
];

pub const KEY_VOTE: &[u8] = b"vote";
pub const KEY_COMMITTED: &[u8] = b"committed";
pub const KEY_LAST_PURGED: &[u8] = b"last_purged";
pub const KEY_LAST_APPLIED: &[u8] = b"last_applied";
pub const KEY_LAST_MEMBERSHIP: &[u8] = b"last_membership";
pub const KEY_INSTALLING: &[u8] = b"installing";

/// How many journal records are kept; older ones are trimmed deterministically by apply.
pub const JOURNAL_RECORDS_MAX: u64 = 100_000;

fn push_str(key: &mut Vec<u8>, s: &str) {
    // Strings longer than u16::MAX never reach here: the edge limits guids and domains.
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub fn log_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

pub fn desired_by_domain_key(domain: &str, process_guid: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + domain.len() + process_guid.len());
    push_str(&mut k, domain);
    push_str(&mut k, process_guid);
    k
}

/// The prefix under which `desired_by_domain_key(domain, _)` keys sort.
pub fn domain_prefix(domain: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + domain.len());
    push_str(&mut k, domain);
    k
}

/// Recovers the guid from a `desired_by_domain_key`.
pub fn guid_of_desired_by_domain_key(key: &[u8], domain: &str) -> Option<String> {
    let rest = key.get(2 + domain.len()..)?;
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    String::from_utf8(rest.get(2..2 + len)?.to_vec()).ok()
}

pub fn actual_key(process_guid: &str, index: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(6 + process_guid.len());
    push_str(&mut k, process_guid);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The prefix under which every `actual_key(process_guid, _)` sorts.
pub fn actual_prefix(process_guid: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + process_guid.len());
    push_str(&mut k, process_guid);
    k
}

pub fn actual_by_cell_key(cell_id: &str, process_guid: &str, index: u32) -> Vec<u8> {
    actual_by_domain_key(cell_id, process_guid, index)
}

pub fn actual_by_domain_key(domain: &str, process_guid: &str, index: u32) -> Vec<u8> {
    let mut k = domain_prefix(domain);
    k.extend_from_slice(&actual_key(process_guid, index));
    k
}

/// Recovers the `actual_key` part of an `actual_by_domain_key`.
pub fn actual_key_of_by_domain_key(key: &[u8], domain: &str) -> Option<Vec<u8>> {
    key.get(2 + domain.len()..).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actual_prefix_does_not_match_a_longer_guid() {
        let k = actual_key("ab", 1);
        assert!(k.starts_with(&actual_prefix("ab")));
        assert!(!k.starts_with(&actual_prefix("a")));
    }

    #[test]
    fn by_domain_keys_round_trip() {
        let k = desired_by_domain_key("d\0x", "pg");
        assert!(k.starts_with(&domain_prefix("d\0x")));
        assert!(!k.starts_with(&domain_prefix("d")));
        assert_eq!(guid_of_desired_by_domain_key(&k, "d\0x").as_deref(), Some("pg"));
        let a = actual_by_domain_key("d", "pg", 7);
        assert_eq!(actual_key_of_by_domain_key(&a, "d"), Some(actual_key("pg", 7)));
    }

    #[test]
    fn index_order_is_numeric() {
        assert!(actual_key("p", 2) < actual_key("p", 10));
        assert!(log_key(2) < log_key(256));
    }
}
