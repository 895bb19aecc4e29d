//! The one registry of trees ([`Tree::ALL`]: sled's, and the indexes kept in memory) and key
//! layouts. Every persisted key is built here.
//!
//! Strings in composite keys are length-prefixed (u16 big-endian), so no byte of a user-chosen
//! domain or guid can make two keys collide, and a prefix scan over `len ++ guid` finds exactly
//! that guid's rows. Integers are big-endian so that byte order is numeric order.

/// What a tree holds, which decides who writes it and what a snapshot or replay carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Written by the log store only (log entries, vote, committed, purge floor).
    Raft,
    /// The state machine's own metadata (`last_applied`, `last_membership`, `installing`).
    StateMeta,
    /// A materialised view: written only by apply, carried by snapshots, reproduced by replay.
    View,
    /// The event journal: written by apply, reproduced by replay, restarted by a snapshot install.
    Journal,
    /// An index of a view, derived from its rows alone: kept in memory (`crate::indexes`), not in
    /// sled; written by apply after its transaction, rebuilt at start-up and after an install,
    /// not carried by snapshots, reproduced by replay.
    Index,
}

/// Every sled tree of the process. The names are persisted: never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tree {
    /// `u64 index` → `LogEntry`.
    RaftLog,
    /// `vote`, `committed`, `last_purged` → `Vote` / `LogId`.
    RaftMeta,
    /// `last_applied`, `last_membership`, `installing`.
    StateMeta,
    /// `process_guid` → `DesiredLrp`.
    Desired,
    /// `str domain ++ str process_guid` → empty. In memory (an index of `Desired`).
    DesiredByDomain,
    /// `str process_guid ++ u32 index` → `ActualLrp`.
    Actual,
    /// `str domain ++ str process_guid ++ u32 index` → empty. In memory (an index of `Actual`).
    ActualByDomain,
    /// `domain` → `FreshDomain`.
    FreshDomains,
    /// `u64 log index` → `JournalRecord`.
    Journal,
    /// `cell_id` → `Cell`.
    Cells,
    /// `str cell_id ++ str process_guid ++ u32 index` → empty: the instances placed on a cell.
    /// In memory (an index of `Actual`).
    ActualByCell,
    /// `definition_id` → `TaskDefinition`.
    TaskDefinitions,
    /// `alias` → `definition_id` (aliases are unique).
    TaskDefinitionsByAlias,
    /// `run_id` → `TaskRun`.
    TaskRuns,
    /// `str definition_id ++ str run_id` → empty: a definition's runs (they outlive it).
    TaskRunsByDefinition,
    /// `str cell_id ++ str run_id` → empty: the runs on a cell now (PENDING or RUNNING).
    TaskRunsByCell,
    /// `jti` → `TokenRevocation`: tokens revoked (logout) until they would have expired anyway.
    RevokedTokens,
    /// `expires_at_ns (u64 BE) ++ jti` → empty: the revocations in expiry order, for pruning.
    RevokedTokensByExpiry,
    /// `guid` → `CfOrganization`.
    CfOrganizations,
    /// `guid` → `CfSpace`.
    CfSpaces,
    /// `guid` → `CfApp`.
    CfApps,
    /// `guid` → `CfProcess`.
    CfProcesses,
    /// `guid` → `CfJob`.
    CfJobs,
    /// `u8 kind ++ str parent guid ++ str name` → guid: names unique per parent (a process's
    /// "name" is its type within its app).
    CfNames,
    /// `str parent guid ++ str child guid` → `u8 kind`: what a delete cascades to.
    CfChildren,
    /// `u8 kind ++ created_at (u64 BE) ++ str guid` → empty: lists in creation order.
    CfByCreated,
    /// `u8 kind ++ updated_at (u64 BE) ++ str guid` → empty: lists ordered by `updated_at`.
    CfByUpdated,
}

impl Tree {
    /// The registry: every tree, once. Views, apply, snapshots and replay derive their lists here.
    pub const ALL: [Tree; 27] = [
        Tree::RaftLog,
        Tree::RaftMeta,
        Tree::StateMeta,
        Tree::Desired,
        Tree::DesiredByDomain,
        Tree::Actual,
        Tree::ActualByDomain,
        Tree::FreshDomains,
        Tree::Journal,
        Tree::Cells,
        Tree::ActualByCell,
        Tree::TaskDefinitions,
        Tree::TaskDefinitionsByAlias,
        Tree::TaskRuns,
        Tree::TaskRunsByDefinition,
        Tree::TaskRunsByCell,
        Tree::RevokedTokens,
        Tree::RevokedTokensByExpiry,
        Tree::CfOrganizations,
        Tree::CfSpaces,
        Tree::CfApps,
        Tree::CfProcesses,
        Tree::CfJobs,
        Tree::CfNames,
        Tree::CfChildren,
        Tree::CfByCreated,
        Tree::CfByUpdated,
    ];

    /// The sled tree name (persisted).
    pub const fn name(self) -> &'static str {
        match self {
            Tree::RaftLog => "raft_log",
            Tree::RaftMeta => "raft_meta",
            Tree::StateMeta => "sm_meta",
            Tree::Desired => "desired_lrps",
            Tree::DesiredByDomain => "desired_lrps_by_domain",
            Tree::Actual => "actual_lrps",
            Tree::ActualByDomain => "actual_lrps_by_domain",
            Tree::FreshDomains => "fresh_domains",
            Tree::Journal => "event_journal",
            Tree::Cells => "cells",
            Tree::ActualByCell => "actual_lrps_by_cell",
            Tree::TaskDefinitions => "task_definitions",
            Tree::TaskDefinitionsByAlias => "task_definitions_by_alias",
            Tree::TaskRuns => "task_runs",
            Tree::TaskRunsByDefinition => "task_runs_by_definition",
            Tree::TaskRunsByCell => "task_runs_by_cell",
            Tree::RevokedTokens => "revoked_tokens",
            Tree::RevokedTokensByExpiry => "revoked_tokens_by_expiry",
            Tree::CfOrganizations => "cf_organizations",
            Tree::CfSpaces => "cf_spaces",
            Tree::CfApps => "cf_apps",
            Tree::CfProcesses => "cf_processes",
            Tree::CfJobs => "cf_jobs",
            Tree::CfNames => "cf_names",
            Tree::CfChildren => "cf_children",
            Tree::CfByCreated => "cf_by_created",
            Tree::CfByUpdated => "cf_by_updated",
        }
    }

    pub const fn role(self) -> Role {
        match self {
            Tree::RaftLog | Tree::RaftMeta => Role::Raft,
            Tree::StateMeta => Role::StateMeta,
            Tree::Journal => Role::Journal,
            Tree::DesiredByDomain | Tree::ActualByDomain | Tree::ActualByCell => Role::Index,
            Tree::Desired
            | Tree::Actual
            | Tree::FreshDomains
            | Tree::Cells
            | Tree::TaskDefinitions
            | Tree::TaskDefinitionsByAlias
            | Tree::TaskRuns
            | Tree::TaskRunsByDefinition
            | Tree::TaskRunsByCell
            | Tree::RevokedTokens
            | Tree::RevokedTokensByExpiry
            | Tree::CfOrganizations
            | Tree::CfSpaces
            | Tree::CfApps
            | Tree::CfProcesses
            | Tree::CfJobs
            | Tree::CfNames
            | Tree::CfChildren
            | Tree::CfByCreated
            | Tree::CfByUpdated => Role::View,
        }
    }

    /// A snapshot carries the views (the journal restarts at the snapshot's index on install).
    pub fn in_snapshot(self) -> bool {
        self.role() == Role::View
    }

    /// Replay from empty must reproduce the views, their indexes and the journal byte for byte.
    pub fn replayed(self) -> bool {
        matches!(self.role(), Role::View | Role::Index | Role::Journal)
    }

    /// Apply writes the views, the journal and the state machine metadata in sled, in one
    /// transaction (and the in-memory indexes after it).
    pub fn written_by_apply(self) -> bool {
        matches!(self.role(), Role::StateMeta | Role::View | Role::Journal)
    }

    /// The index trees, kept in memory (their sled trees stay empty).
    pub const INDEXES: [Tree; 3] = [Tree::DesiredByDomain, Tree::ActualByDomain, Tree::ActualByCell];

    pub fn by_name(name: &str) -> Option<Tree> {
        Tree::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The trees with a property, in registry order.
    pub fn select(keep: fn(Tree) -> bool) -> impl Iterator<Item = Tree> {
        Tree::ALL.into_iter().filter(move |t| keep(*t))
    }
}

/// Handles to every tree of the one `sled::Db`, indexed by [`Tree`]. Cheap to clone.
#[derive(Clone)]
pub struct Trees(Vec<sled::Tree>);

impl Trees {
    pub fn open(db: &sled::Db) -> sled::Result<Self> {
        Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<sled::Result<_>>()
            .map(Trees)
    }

    pub fn get(&self, tree: Tree) -> &sled::Tree {
        // `ALL` lists every variant in declaration order, so the discriminant is the position.
        &self.0[tree as usize]
    }
}

pub const KEY_VOTE: &[u8] = b"vote";
pub const KEY_COMMITTED: &[u8] = b"committed";
pub const KEY_LAST_PURGED: &[u8] = b"last_purged";
pub const KEY_LAST_APPLIED: &[u8] = b"last_applied";
pub const KEY_LAST_MEMBERSHIP: &[u8] = b"last_membership";
pub const KEY_INSTALLING: &[u8] = b"installing";
/// The lowest log index the journal may still hold records for (set by a snapshot install, which
/// starts the journal over; the retention limit raises it further as records are trimmed).
pub const KEY_JOURNAL_FLOOR: &[u8] = b"journal_floor";
/// Encoded bytes of the records the journal holds (kept by apply, for the bytes limit).
pub const KEY_JOURNAL_BYTES: &[u8] = b"journal_bytes";

/// How many journal records are kept by default; older ones are trimmed deterministically by
/// apply (`--journal-records-max` sets it per node: the journal is each node's window of history,
/// which event-stream clients resume from).
pub const JOURNAL_RECORDS_MAX: u64 = 100_000;
/// Encoded bytes of journal records kept by default (`--journal-bytes-max`): the oldest records go
/// first once the journal holds more (the newest is always kept).
pub const JOURNAL_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Records one entry's apply trims for the bytes limit at most, so that apply stays short; the
/// limit is met again over the next entries.
pub const JOURNAL_TRIM_PER_ENTRY_MAX: usize = 1024;

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

/// `str definition_id ++ str run_id`: a definition's runs sort together.
pub fn run_by_definition_key(definition_id: &str, run_id: &str) -> Vec<u8> {
    let mut k = domain_prefix(definition_id);
    push_str(&mut k, run_id);
    k
}

/// `str cell_id ++ str run_id`: the runs on a cell sort together.
pub fn run_by_cell_key(cell_id: &str, run_id: &str) -> Vec<u8> {
    run_by_definition_key(cell_id, run_id)
}

/// Recovers the run id from a `run_by_definition_key` / `run_by_cell_key` under `owner`.
pub fn run_id_of_key(key: &[u8], owner: &str) -> Option<String> {
    guid_of_desired_by_domain_key(key, owner)
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

/// Key of a revocation in expiry order.
pub fn revoked_by_expiry_key(expires_at_ns: i64, jti: &str) -> Vec<u8> {
    let mut k = u64::try_from(expires_at_ns.max(0))
        .unwrap_or_default()
        .to_be_bytes()
        .to_vec();
    k.extend_from_slice(jti.as_bytes());
    k
}

/// `u8 kind ++ str parent ++ str name`: a CF name within its parent.
pub fn cf_name_key(kind: u8, parent: &str, name: &str) -> Vec<u8> {
    let mut k = vec![kind];
    push_str(&mut k, parent);
    push_str(&mut k, name);
    k
}

/// `str parent ++ str child`: a CF resource's children sort together.
pub fn cf_child_key(parent: &str, child: &str) -> Vec<u8> {
    run_by_definition_key(parent, child)
}

/// Recovers the child guid of a `cf_child_key` under `parent`.
pub fn cf_child_of_key(key: &[u8], parent: &str) -> Option<String> {
    guid_of_desired_by_domain_key(key, parent)
}

/// `u8 kind ++ time (u64 BE) ++ str guid`: CF resources of a kind in time order.
pub fn cf_time_key(kind: u8, time_ns: i64, guid: &str) -> Vec<u8> {
    let mut k = vec![kind];
    k.extend_from_slice(&u64::try_from(time_ns.max(0)).unwrap_or_default().to_be_bytes());
    push_str(&mut k, guid);
    k
}

/// Recovers the guid of a `cf_time_key`.
pub fn cf_guid_of_time_key(key: &[u8]) -> Option<String> {
    let rest = key.get(9..)?;
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    String::from_utf8(rest.get(2..2 + len)?.to_vec()).ok()
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
    fn registry_lists_every_tree_once_in_declaration_order() {
        for (i, t) in Tree::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i, "{t:?}");
            assert_eq!(Tree::by_name(t.name()), Some(*t));
        }
        let names: std::collections::BTreeSet<_> = Tree::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), Tree::ALL.len());
    }

    #[test]
    fn the_trees_kept_in_memory_are_exactly_the_index_role() {
        let by_role: Vec<Tree> = Tree::select(|t| t.role() == Role::Index).collect();
        assert_eq!(by_role, Tree::INDEXES.to_vec());
        assert!(Tree::INDEXES
            .iter()
            .all(|t| !t.in_snapshot() && !t.written_by_apply() && t.replayed()));
    }

    #[test]
    fn cf_keys_round_trip_and_sort_by_time() {
        let a = cf_time_key(4, 5, "zz");
        let b = cf_time_key(4, 256, "aa");
        assert!(a < b);
        assert_eq!(cf_guid_of_time_key(&b).as_deref(), Some("aa"));
        assert_eq!(cf_child_of_key(&cf_child_key("p", "c"), "p").as_deref(), Some("c"));
        assert_ne!(cf_name_key(1, "", "ab"), cf_name_key(1, "a", "b"));
    }

    #[test]
    fn index_order_is_numeric() {
        assert!(actual_key("p", 2) < actual_key("p", 10));
        assert!(log_key(2) < log_key(256));
    }
}
