//! The views under the writes of a batch that apply has decided but not yet committed: decide
//! reads through them, so each command of a batch (and each entry of a batch of entries) sees
//! every earlier one exactly as if they had been committed one by one. The batch is then
//! committed as one sled transaction.

use std::collections::BTreeMap;

use sled::IVec;

use super::fold::Write;
use crate::keyspace::Tree;
use crate::view_read::TreeRead;
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
        let limit = max.saturating_add(removed);
        let committed = self.views.range(tree, start, end, limit)?;
        // When sled's answer was cut at the limit, committed rows past its last key were not read:
        // a staged row there cannot be placed among them, and is not needed (there are already
        // at least `max` rows below).
        let cut = (committed.len() == limit)
            .then(|| committed.last().map(|(k, _)| k.clone()))
            .flatten();
        let mut rows: BTreeMap<IVec, IVec> = committed.into_iter().collect();
        for (k, v) in self.staged_in(tree, start, end) {
            if cut.as_ref().is_some_and(|c| k.as_slice() > c.as_ref()) {
                break;
            }
            match v {
                Some(v) => rows.insert(IVec::from(k.as_slice()), v.clone()),
                None => rows.remove(k.as_slice()),
            };
        }
        Ok(rows.into_iter().take(max).collect())
    }
}
