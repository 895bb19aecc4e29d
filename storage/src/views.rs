//! The materialised views on sled: what GETs read and what decide reads. Written only by apply.

use crate::keyspace::{self as ks, Tree, Trees};
use crate::rules::decide::ViewRead;
use crate::rules::freshness;
use crate::view_read::TreeRead;
use crate::{decode, pb, StoreError};

/// Handles to the view trees of the one `sled::Db`. Cheap to clone.
#[derive(Clone)]
pub struct Views {
    pub(crate) trees: Trees,
    /// Bumped after each snapshot install: readers that follow the journal must rebuild then.
    pub(crate) installs: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Journal records this node keeps (set by the state machine).
    pub(crate) journal_retained: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The newest journal records as apply made them (filled by apply, reset by installs).
    pub(crate) recent_journal: crate::recent_journal::RecentJournal,
    /// The index trees (kept in memory, written by apply, rebuilt at open and after installs).
    pub(crate) indexes: crate::indexes::Indexes,
}

/// A lazily read sequence of rows; lists stream from sled ranges, never from a built table.
pub type RowIter<T> = Box<dyn Iterator<Item = Result<T, StoreError>> + Send>;

impl Views {
    /// Opens the view trees and builds the in-memory indexes from them.
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let views = Self {
            trees: Trees::open(db)?,
            installs: Default::default(),
            journal_retained: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(ks::JOURNAL_RECORDS_MAX)),
            recent_journal: Default::default(),
            indexes: Default::default(),
        };
        for t in Tree::INDEXES {
            // Builds before the indexes moved to memory kept them in sled: dropped once.
            if !views.trees.get(t).is_empty() {
                views.trees.get(t).clear()?;
            }
        }
        views.indexes.rebuild(&views.trees)?;
        Ok(views)
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        self.trees.get(tree)
    }

    pub fn get_desired(&self, process_guid: &str) -> Result<Option<pb::DesiredLrp>, StoreError> {
        self.row(Tree::Desired, process_guid.as_bytes(), "desired lrp")
    }

    /// Every DesiredLRP, or those of one domain, in process_guid order.
    pub fn desired_lrps(&self, domain: Option<&str>) -> RowIter<pb::DesiredLrp> {
        match domain {
            None => Box::new(self.tree(Tree::Desired).iter().map(|kv| {
                kv.map_err(StoreError::from)
                    .and_then(|(_, v)| decode("desired lrp", &v))
            })),
            Some(domain) => {
                let desired = self.tree(Tree::Desired).clone();
                let domain = domain.to_owned();
                Box::new(
                    self.indexes
                        .scan_prefix(Tree::DesiredByDomain, ks::domain_prefix(&domain))
                        .filter_map(move |key| {
                            let guid = ks::guid_of_desired_by_domain_key(&key, &domain)?;
                            match desired.get(guid.as_bytes()) {
                                Ok(Some(v)) => Some(decode("desired lrp", &v)),
                                Ok(None) => None,
                                Err(e) => Some(Err(e.into())),
                            }
                        }),
                )
            }
        }
    }

    pub fn get_actual(&self, process_guid: &str, index: u32) -> Result<Option<pb::ActualLrp>, StoreError> {
        self.row(Tree::Actual, &ks::actual_key(process_guid, index), "actual lrp")
    }

    /// ActualLRPs: of one process (index order), of one domain, or all.
    pub fn actual_lrps(&self, domain: Option<&str>, process_guid: Option<&str>) -> RowIter<pb::ActualLrp> {
        let decode_row = |kv: Result<(sled::IVec, sled::IVec), sled::Error>| {
            kv.map_err(StoreError::from)
                .and_then(|(_, v)| decode::<pb::ActualLrp>("actual lrp", &v))
        };
        match (process_guid, domain) {
            (Some(guid), domain) => {
                let domain = domain.map(str::to_owned);
                Box::new(
                    self.tree(Tree::Actual)
                        .scan_prefix(ks::actual_prefix(guid))
                        .map(decode_row)
                        .filter(move |a| match (a, &domain) {
                            (Ok(a), Some(d)) => &a.domain == d,
                            _ => true,
                        }),
                )
            }
            (None, None) => Box::new(self.tree(Tree::Actual).iter().map(decode_row)),
            (None, Some(domain)) => self.actuals_indexed(Tree::ActualByDomain, domain),
        }
    }

    /// The domains still fresh at `now_ns`, in name order.
    pub fn fresh_domains(&self, now_ns: i64) -> Result<Vec<pb::FreshDomain>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree(Tree::FreshDomains).iter() {
            let (_, v) = kv?;
            let d: pb::FreshDomain = decode("fresh domain", &v)?;
            if freshness::is_fresh(&d, now_ns) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// How many snapshots this process installed (the journal restarts after each).
    pub fn installs(&self) -> u64 {
        self.installs.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The revocation of a token id, if it was revoked (and the revocation not yet pruned).
    pub fn get_token_revocation(&self, jti: &str) -> Result<Option<pb::TokenRevocation>, StoreError> {
        self.row(Tree::RevokedTokens, jti.as_bytes(), "token revocation")
    }

    pub fn get_cell(&self, cell_id: &str) -> Result<Option<pb::Cell>, StoreError> {
        self.row(Tree::Cells, cell_id.as_bytes(), "cell")
    }

    /// Every registered cell, in id order.
    pub fn cells(&self) -> Result<Vec<pb::Cell>, StoreError> {
        ViewRead::cells(self)
    }

    /// The instances placed on a cell, in (process_guid, index) order.
    pub fn actuals_on_cell(&self, cell_id: &str) -> RowIter<pb::ActualLrp> {
        self.actuals_indexed(Tree::ActualByCell, cell_id)
    }

    /// The ActualLRPs under `owner` (a domain or a cell) in an index of `Actual`, in
    /// (process_guid, index) order; an index key whose row is gone meanwhile is skipped.
    fn actuals_indexed(&self, index: Tree, owner: &str) -> RowIter<pb::ActualLrp> {
        let actual = self.tree(Tree::Actual).clone();
        let owner = owner.to_owned();
        Box::new(
            self.indexes
                .scan_prefix(index, ks::domain_prefix(&owner))
                .filter_map(move |key| {
                    let actual_key = ks::actual_key_of_by_domain_key(&key, &owner)?;
                    match actual.get(actual_key) {
                        Ok(Some(v)) => Some(decode("actual lrp", &v)),
                        Ok(None) => None,
                        Err(e) => Some(Err(e.into())),
                    }
                }),
        )
    }

    /// The log index of the last applied entry (0 before any).
    pub fn last_applied_index(&self) -> Result<u64, StoreError> {
        match self.tree(Tree::StateMeta).get(ks::KEY_LAST_APPLIED)? {
            None => Ok(0),
            Some(v) => Ok(decode::<pb::LogId>("last applied", &v)?.index),
        }
    }

    /// The lowest log index whose journal record this node may still hold: below it, records may
    /// have been trimmed (the retention limit) or never kept (a snapshot install starts the
    /// journal over). An event stream cannot resume from before it.
    pub fn journal_floor(&self) -> Result<u64, StoreError> {
        let installed = match self.tree(Tree::StateMeta).get(ks::KEY_JOURNAL_FLOOR)? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
            None => 0,
        };
        let retained = self.journal_retained.load(std::sync::atomic::Ordering::SeqCst);
        let trimmed = (self.last_applied_index()? + 1).saturating_sub(retained);
        Ok(installed.max(trimmed).max(1))
    }

    /// Journal records with log index ≥ `from`, in log order: from memory when the newest
    /// records held there cover `from` (readers right behind apply), else from sled.
    pub fn journal_from(&self, from: u64) -> RowIter<std::sync::Arc<pb::JournalRecord>> {
        match self.recent_journal.from(from) {
            Some(records) => Box::new(records.into_iter().map(Ok)),
            None => Box::new(self.journal_stored_from(from).map(|r| r.map(std::sync::Arc::new))),
        }
    }

    /// Journal records with log index ≥ `from`, in log order, as sled holds them.
    pub fn journal_stored_from(&self, from: u64) -> RowIter<pb::JournalRecord> {
        Box::new(self.tree(Tree::Journal).range(ks::log_key(from)..).map(|kv| {
            kv.map_err(StoreError::from)
                .and_then(|(_, v)| decode("journal record", &v))
        }))
    }
}

impl Views {
    pub fn get_task_definition(&self, definition_id: &str) -> Result<Option<pb::TaskDefinition>, StoreError> {
        self.row(Tree::TaskDefinitions, definition_id.as_bytes(), "task definition")
    }

    pub fn task_definition_id_by_alias(&self, alias: &str) -> Result<Option<String>, StoreError> {
        ViewRead::task_definition_by_alias(self, alias)
    }

    pub fn get_task_run(&self, run_id: &str) -> Result<Option<pb::TaskRun>, StoreError> {
        self.row(Tree::TaskRuns, run_id.as_bytes(), "task run")
    }

    /// Every task run, in run_id order (lazily read).
    pub fn task_runs(&self) -> RowIter<pb::TaskRun> {
        Box::new(
            self.tree(Tree::TaskRuns)
                .iter()
                .map(|kv| kv.map_err(StoreError::from).and_then(|(_, v)| decode("task run", &v))),
        )
    }

    /// The runs an index tree lists under `owner` (a definition, or a cell), in run_id order.
    fn runs_indexed(&self, index: Tree, owner: &str) -> RowIter<pb::TaskRun> {
        let runs = self.tree(Tree::TaskRuns).clone();
        let owner = owner.to_owned();
        Box::new(
            self.tree(index)
                .scan_prefix(ks::domain_prefix(&owner))
                .filter_map(move |kv| {
                    let key = match kv {
                        Ok((k, _)) => k,
                        Err(e) => return Some(Err(e.into())),
                    };
                    let run_id = ks::run_id_of_key(&key, &owner)?;
                    match runs.get(run_id.as_bytes()) {
                        Ok(Some(v)) => Some(decode("task run", &v)),
                        Ok(None) => None,
                        Err(e) => Some(Err(e.into())),
                    }
                }),
        )
    }

    /// A definition's runs (they outlive it), in run_id order.
    pub fn task_runs_of_definition(&self, definition_id: &str) -> RowIter<pb::TaskRun> {
        self.runs_indexed(Tree::TaskRunsByDefinition, definition_id)
    }

    /// The runs on a cell now (PENDING or RUNNING), in run_id order.
    pub fn task_runs_on_cell(&self, cell_id: &str) -> RowIter<pb::TaskRun> {
        self.runs_indexed(Tree::TaskRunsByCell, cell_id)
    }

    /// Every task definition, in definition_id order (lazily read).
    pub fn task_definitions(&self) -> RowIter<pb::TaskDefinition> {
        Box::new(self.tree(Tree::TaskDefinitions).iter().map(|kv| {
            kv.map_err(StoreError::from)
                .and_then(|(_, v)| decode("task definition", &v))
        }))
    }
}

/// The CF record of a kind, and its tree.
pub trait CfRow: prost::Message + Default + crate::rules::cf::CfRecord {
    const TREE: Tree;
    const WHAT: &'static str;
}

macro_rules! cf_row {
    ($t:ty, $tree:ident, $what:literal) => {
        impl CfRow for $t {
            const TREE: Tree = Tree::$tree;
            const WHAT: &'static str = $what;
        }
    };
}
cf_row!(pb::CfOrganization, CfOrganizations, "cf organization");
cf_row!(pb::CfSpace, CfSpaces, "cf space");
cf_row!(pb::CfApp, CfApps, "cf app");
cf_row!(pb::CfProcess, CfProcesses, "cf process");

impl Views {
    pub fn get_cf<T: CfRow>(&self, guid: &str) -> Result<Option<T>, StoreError> {
        self.row(T::TREE, guid.as_bytes(), T::WHAT)
    }

    pub fn get_cf_job(&self, guid: &str) -> Result<Option<pb::CfJob>, StoreError> {
        self.row(Tree::CfJobs, guid.as_bytes(), "cf job")
    }

    /// The rows of a CF kind in creation or update order (each direction), lazily read.
    pub fn cf_rows<T: CfRow + 'static>(&self, by_updated: bool, descending: bool) -> RowIter<T> {
        let index = if by_updated {
            Tree::CfByUpdated
        } else {
            Tree::CfByCreated
        };
        let rows = self.tree(T::TREE).clone();
        let scan = self.tree(index).scan_prefix([T::KIND as u8]);
        let keys: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + Send> = if descending {
            Box::new(scan.rev())
        } else {
            Box::new(scan)
        };
        Box::new(keys.filter_map(move |kv| {
            let key = match kv {
                Ok((k, _)) => k,
                Err(e) => return Some(Err(e.into())),
            };
            let guid = ks::cf_guid_of_time_key(&key)?;
            match rows.get(guid.as_bytes()) {
                Ok(Some(v)) => Some(decode(T::WHAT, &v)),
                Ok(None) => None,
                Err(e) => Some(Err(e.into())),
            }
        }))
    }

    /// The processes of an app, in creation order.
    pub fn cf_processes_of_app(&self, app_guid: &str) -> Result<Vec<pb::CfProcess>, StoreError> {
        crate::rules::decide::cf_processes_of(self, app_guid)
    }
}
