//! What decide reads, over any source of tree rows: the views on sled ([`Views`]), or the views
//! under the writes a batch of entries has decided but not yet committed
//! (`state_machine::staged::Staged`). Both answer the same two primitives, so every rule reads the
//! same rows either way — which is what makes a batch of commands in one entry, or of entries in
//! one sled transaction, decide exactly as the commands would one entry at a time.

use std::ops::Bound;

use sled::IVec;

use crate::keyspace::{Role, Tree};
use crate::{decode, StoreError, Views};

/// Raw reads of the trees apply writes.
pub trait TreeRead {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<IVec>, StoreError>;
    /// At most `max` rows with `start ≤ key` (and `key < end` when given), in key order.
    fn range(&self, tree: Tree, start: &[u8], end: Option<&[u8]>, max: usize) -> Result<Vec<(IVec, IVec)>, StoreError>;

    /// The row under `key`, decoded.
    fn row<M: prost::Message + Default>(
        &self,
        tree: Tree,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<M>, StoreError> {
        self.get(tree, key)?.map(|v| decode(what, &v)).transpose()
    }

    /// Every row whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(IVec, IVec)>, StoreError> {
        self.range(tree, prefix, prefix_end(prefix).as_deref(), usize::MAX)
    }
}

/// The least key above every key that starts with `prefix` (`None`: no such bound).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl TreeRead for Views {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        if tree.role() == Role::Index {
            return Ok(self.indexes.contains(tree, key).then(IVec::default));
        }
        Ok(self.trees.get(tree).get(key)?)
    }

    fn range(&self, tree: Tree, start: &[u8], end: Option<&[u8]>, max: usize) -> Result<Vec<(IVec, IVec)>, StoreError> {
        if tree.role() == Role::Index {
            let keys = self.indexes.range(tree, start, end, max);
            return Ok(keys.into_iter().map(|k| (IVec::from(k), IVec::default())).collect());
        }
        let end = end.map_or(Bound::Unbounded, Bound::Excluded);
        let rows = self.trees.get(tree).range::<&[u8], _>((Bound::Included(start), end));
        rows.take(max).map(|kv| kv.map_err(StoreError::from)).collect()
    }
}

/// `ViewRead` over a source of tree rows: the rules crate owns the trait, so each source gets its
/// impl here (a blanket impl over `TreeRead` would be a foreign trait on a foreign type).
macro_rules! view_read_over_trees {
    ($($source:ty),+) => {$(
        // In a block of its own, so the paths resolve the same wherever it is instantiated.
        const _: () = {
        #[allow(unused_imports)]
        use $crate::keyspace::{self as ks, Role, Tree};
        use $crate::rules::decide::ViewRead;
        #[allow(unused_imports)]
        use $crate::view_read::TreeRead;
        #[allow(unused_imports)]
        use $crate::{decode, pb, StoreError};
        impl ViewRead for $source {
        type Error = StoreError;

        fn desired(&self, process_guid: &str) -> Result<Option<pb::DesiredLrp>, StoreError> {
            self.row(Tree::Desired, process_guid.as_bytes(), "desired lrp")
        }

        fn actuals(&self, process_guid: &str) -> Result<Vec<pb::ActualLrp>, StoreError> {
            self.scan_prefix(Tree::Actual, &ks::actual_prefix(process_guid))?
                .into_iter()
                .map(|(_, v)| decode("actual lrp", &v))
                .collect()
        }

        fn actual(&self, process_guid: &str, index: u32) -> Result<Option<pb::ActualLrp>, StoreError> {
            self.row(Tree::Actual, &ks::actual_key(process_guid, index), "actual lrp")
        }

        fn cell(&self, cell_id: &str) -> Result<Option<pb::Cell>, StoreError> {
            self.row(Tree::Cells, cell_id.as_bytes(), "cell")
        }

        fn task_definition(&self, definition_id: &str) -> Result<Option<pb::TaskDefinition>, StoreError> {
            self.row(Tree::TaskDefinitions, definition_id.as_bytes(), "task definition")
        }

        fn task_definition_by_alias(&self, alias: &str) -> Result<Option<String>, StoreError> {
            Ok(self
                .get(Tree::TaskDefinitionsByAlias, alias.as_bytes())?
                .map(|v| String::from_utf8_lossy(&v).into_owned()))
        }

        fn cells(&self) -> Result<Vec<pb::Cell>, StoreError> {
            self.scan_prefix(Tree::Cells, &[])?
                .into_iter()
                .map(|(_, v)| decode("cell", &v))
                .collect()
        }

        fn task_run(&self, run_id: &str) -> Result<Option<pb::TaskRun>, StoreError> {
            self.row(Tree::TaskRuns, run_id.as_bytes(), "task run")
        }

        fn task_runs_on_cell(&self, cell_id: &str) -> Result<Vec<pb::TaskRun>, StoreError> {
            let mut out = Vec::new();
            for (k, _) in self.scan_prefix(Tree::TaskRunsByCell, &ks::domain_prefix(cell_id))? {
                if let Some(run) = ks::run_id_of_key(&k, cell_id)
                    .map(|id| self.task_run(&id))
                    .transpose()?
                {
                    out.extend(run);
                }
            }
            Ok(out)
        }

        fn token_revocation(&self, jti: &str) -> Result<Option<pb::TokenRevocation>, StoreError> {
            self.row(Tree::RevokedTokens, jti.as_bytes(), "token revocation")
        }

        fn token_revocations_expired(&self, now_ns: i64, max: usize) -> Result<Vec<pb::TokenRevocation>, StoreError> {
            let end = ks::revoked_by_expiry_key(now_ns.saturating_add(1), "");
            let mut out = Vec::new();
            for (k, _) in self.range(Tree::RevokedTokensByExpiry, &[], Some(&end), max)? {
                let jti = String::from_utf8_lossy(k.get(8..).unwrap_or_default()).into_owned();
                out.extend(self.token_revocation(&jti)?);
            }
            Ok(out)
        }

        fn cf_organization(&self, guid: &str) -> Result<Option<pb::CfOrganization>, StoreError> {
            self.row(Tree::CfOrganizations, guid.as_bytes(), "cf organization")
        }

        fn cf_space(&self, guid: &str) -> Result<Option<pb::CfSpace>, StoreError> {
            self.row(Tree::CfSpaces, guid.as_bytes(), "cf space")
        }

        fn cf_app(&self, guid: &str) -> Result<Option<pb::CfApp>, StoreError> {
            self.row(Tree::CfApps, guid.as_bytes(), "cf app")
        }

        fn cf_process(&self, guid: &str) -> Result<Option<pb::CfProcess>, StoreError> {
            self.row(Tree::CfProcesses, guid.as_bytes(), "cf process")
        }

        fn cf_named(&self, kind: pb::CfKind, parent: &str, name: &str) -> Result<Option<String>, StoreError> {
            Ok(self
                .get(Tree::CfNames, &ks::cf_name_key(kind as u8, parent, name))?
                .map(|v| String::from_utf8_lossy(&v).into_owned()))
        }

        fn cf_children(&self, parent: &str) -> Result<Vec<(pb::CfKind, String)>, StoreError> {
            let mut out = Vec::new();
            for (k, v) in self.scan_prefix(Tree::CfChildren, &ks::domain_prefix(parent))? {
                let kind = v
                    .first()
                    .and_then(|b| pb::CfKind::try_from(i32::from(*b)).ok())
                    .unwrap_or(pb::CfKind::Unspecified);
                if let Some(child) = ks::cf_child_of_key(&k, parent) {
                    out.push((kind, child));
                }
            }
            Ok(out)
        }

        }
        };
    )+};
}

pub(crate) use view_read_over_trees;

view_read_over_trees!(Views);

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_least_key_above_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[]), None);
    }
}
