//! The views under the writes of a batch that apply has decided but not yet committed: decide
//! reads through them, so each command of a batch (and each entry of a batch of entries) sees
//! every earlier one exactly as if they had been committed one by one. The batch is then
//! committed as one sled transaction.

use std::collections::BTreeMap;

use sled::IVec;

use super::fold::Write;
use crate::keyspace::Tree;
use crate::view_read::{view_read_over_trees, TreeRead};
use crate::{StoreError, Views};

/// Staged writes over the views: the last write to a key wins (`None` removes it).
pub struct Staged<'v> {
    views: &'v Views,
    writes: BTreeMap<(Tree, Vec<u8>), Option<IVec>>,
}

impl<'v> Staged<'v> {
    pub fn new(views: &'v Views) -> Self {
        Self {
            views,
            writes: BTreeMap::new(),
        }
    }

    pub fn stage(&mut self, writes: impl IntoIterator<Item = Write>) {
        for w in writes {
            self.writes.insert((w.tree, w.key), w.value.map(IVec::from));
        }
    }

    /// How many distinct keys are staged.
    pub(super) fn len(&self) -> usize {
        self.writes.len()
    }

    /// The staged writes, one per key, in (tree, key) order; the batch is empty afterwards.
    pub fn take(&mut self) -> BTreeMap<(Tree, Vec<u8>), Option<IVec>> {
        std::mem::take(&mut self.writes)
    }

    /// The staged writes of `tree` with `start ≤ key < end`.
    fn staged_in<'a>(
        &'a self,
        tree: Tree,
        start: &[u8],
        end: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Option<IVec>)> + 'a {
        self.writes
            .range((tree, start.to_vec())..)
            .take_while(move |((t, k), _)| *t == tree && end.is_none_or(|e| k.as_slice() < e))
            .map(|((_, k), v)| (k, v))
    }
}

impl TreeRead for Staged<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        match self.writes.get(&(tree, key.to_vec())) {
            Some(staged) => Ok(staged.clone()),
            None => self.views.get(tree, key),
        }
    }

    fn range(&self, tree: Tree, start: &[u8], end: Option<&[u8]>, max: usize) -> Result<Vec<(IVec, IVec)>, StoreError> {
        // A staged removal may hide a committed row: read that many more from sled.
        let removed = self.staged_in(tree, start, end).filter(|(_, v)| v.is_none()).count();
        // When sled's answer stops at that limit, at least `max` of its rows survive the removals,
        // so no row past its last key (committed or staged) reaches the first `max`.
        let committed = self.views.range(tree, start, end, max.saturating_add(removed))?;
        let mut rows: BTreeMap<IVec, IVec> = committed.into_iter().collect();
        for (k, v) in self.staged_in(tree, start, end) {
            match v {
                Some(v) => rows.insert(IVec::from(k.as_slice()), v.clone()),
                None => rows.remove(k.as_slice()),
            };
        }
        Ok(rows.into_iter().take(max).collect())
    }
}

view_read_over_trees!(Staged<'_>);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// What a bounded range must answer: the committed rows with the staged writes laid over
    /// them, in key order, cut at `max`.
    fn model(
        committed: &BTreeMap<Vec<u8>, Vec<u8>>,
        staged: &[(Vec<u8>, Option<Vec<u8>>)],
        start: &[u8],
        end: Option<&[u8]>,
        max: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut rows = committed.clone();
        for (k, v) in staged {
            match v {
                Some(v) => rows.insert(k.clone(), v.clone()),
                None => rows.remove(k),
            };
        }
        rows.into_iter()
            .filter(|(k, _)| k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e))
            .take(max)
            .collect()
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(0u8..4, 1..3)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        // Staged reads are what a committed batch would read: gets and bounded ranges, with
        // staged rows inserted among, replacing or hiding committed ones.
        #[test]
        fn staged_reads_are_the_committed_rows_under_the_staged_writes(
            committed in prop::collection::btree_map(key(), key(), 0..12),
            staged in prop::collection::vec((key(), prop::option::of(key())), 0..12),
            start in prop::collection::vec(0u8..4, 0..2),
            end in prop::option::of(prop::collection::vec(0u8..5, 1..3)),
            max in 0usize..8,
        ) {
            let _serial = crate::SLED_TESTS.lock().unwrap_or_else(|e| e.into_inner());
            let dir = tempfile::tempdir().expect("tempdir");
            let disk = crate::open_db(&dir.path().join("db")).expect("db");
            let views = Views::open(disk.db()).expect("views");
            let tree = views.trees.get(Tree::Desired);
            for (k, v) in &committed {
                tree.insert(k.as_slice(), v.as_slice()).expect("insert");
            }
            // A row in another tree that must never show through.
            views.trees.get(Tree::Cells).insert([1u8], &[9u8]).expect("insert");
            let mut view = Staged::new(&views);
            view.stage(staged.iter().map(|(k, v)| Write { tree: Tree::Desired, key: k.clone(), value: v.clone() }));
            let got: Vec<(Vec<u8>, Vec<u8>)> = view
                .range(Tree::Desired, &start, end.as_deref(), max)
                .expect("range")
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            prop_assert_eq!(got, model(&committed, &staged, &start, end.as_deref(), max));
            let all = model(&committed, &staged, &[], None, usize::MAX);
            for k in committed.keys().chain(staged.iter().map(|(k, _)| k)) {
                let want = all.iter().find(|(m, _)| m == k).map(|(_, v)| v.clone());
                prop_assert_eq!(view.get(Tree::Desired, k).expect("get").map(|v| v.to_vec()), want);
            }
        }
    }
}
