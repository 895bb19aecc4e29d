//! The LRP index trees kept in memory ([`Role::Index`](crate::keyspace::Role::Index)): the DesiredLRPs of a domain, the
//! ActualLRPs of a domain and those placed on a cell. Each is a function of one view's rows (its
//! base), so nothing is lost by not persisting it: it is rebuilt from the base at start-up and
//! after a snapshot install, and apply keeps it up to date from the same writes folding makes for
//! sled. What that saves is sled's per-insert work (leaf splits, page consolidations) on every
//! create: two or three of its five or six keys. etcd keeps its key index in memory the same way.
//!
//! Readers see an index write once apply's sled transaction for the same batch has committed, and
//! before openraft learns the batch was applied — so a linearizable read (which waits for its
//! read index to be applied) sees both. A concurrent lagging reader may find an index key whose
//! row is already gone (it skips it) or a row whose key is not there yet (as if it read a moment
//! earlier); never a row of another state.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::keyspace::{self as ks, Tree, Trees};
use crate::{decode, pb, StoreError};

/// Keys of one index, read a chunk at a time by lazy iterators (the lock is never held between).
const SCAN_CHUNK: usize = 512;

/// The in-memory index trees of one process. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Indexes(Arc<[RwLock<BTreeSet<Vec<u8>>>; Tree::INDEXES.len()]>);

impl Indexes {
    fn slot(&self, tree: Tree) -> Option<&RwLock<BTreeSet<Vec<u8>>>> {
        Tree::INDEXES.iter().position(|t| *t == tree).map(|i| &self.0[i])
    }

    fn read(&self, tree: Tree) -> Option<RwLockReadGuard<'_, BTreeSet<Vec<u8>>>> {
        // A poisoned lock only means a writer panicked between two whole-key operations.
        self.slot(tree).map(|l| l.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn write(&self, tree: Tree) -> Option<RwLockWriteGuard<'_, BTreeSet<Vec<u8>>>> {
        self.slot(tree).map(|l| l.write().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn contains(&self, tree: Tree, key: &[u8]) -> bool {
        self.read(tree).is_some_and(|set| set.contains(key))
    }

    /// At most `max` keys with `start ≤ key` (and `key < end` when given), in key order.
    pub fn range(&self, tree: Tree, start: &[u8], end: Option<&[u8]>, max: usize) -> Vec<Vec<u8>> {
        let Some(set) = self.read(tree) else { return Vec::new() };
        let end = end.map_or(Bound::Unbounded, Bound::Excluded);
        set.range::<[u8], _>((Bound::Included(start), end))
            .take(max)
            .cloned()
            .collect()
    }

    /// Every key starting with `prefix`, in key order, read lazily a chunk at a time: a key
    /// added behind the iterator's position is not seen, one removed ahead of it is not returned.
    pub fn scan_prefix(&self, tree: Tree, prefix: Vec<u8>) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
        let this = self.clone();
        let mut chunk = std::collections::VecDeque::new();
        let mut next = Some(Bound::Included(prefix.clone()));
        std::iter::from_fn(move || {
            if chunk.is_empty() {
                let from = next.take()?;
                let set = this.read(tree)?;
                chunk.extend(
                    set.range::<Vec<u8>, _>((from, Bound::Unbounded))
                        .take_while(|k| k.starts_with(&prefix))
                        .take(SCAN_CHUNK)
                        .cloned(),
                );
                if chunk.len() == SCAN_CHUNK {
                    next = chunk.back().map(|k: &Vec<u8>| Bound::Excluded(k.clone()));
                }
            }
            chunk.pop_front()
        })
    }

    /// Applies committed index writes (`Some`: add the key; `None`: remove it), in order.
    pub fn apply<'a>(&self, writes: impl IntoIterator<Item = (Tree, &'a [u8], bool)>) {
        let mut writes = writes.into_iter().peekable();
        while let Some((tree, _, _)) = writes.peek().copied() {
            let Some(mut set) = self.write(tree) else {
                writes.next();
                continue;
            };
            // One lock per run of writes to the same tree (apply's writes come in tree order).
            while let Some((_, key, add)) = writes.next_if(|(t, _, _)| *t == tree) {
                if add {
                    set.insert(key.to_vec());
                } else {
                    set.remove(key);
                }
            }
        }
    }

    /// Every key of an index (for replay comparisons and tests), in key order.
    pub fn keys(&self, tree: Tree) -> Vec<Vec<u8>> {
        self.read(tree).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Rebuilds every index from its base rows as they are in `trees` now (no apply runs).
    pub fn rebuild(&self, trees: &Trees) -> Result<(), StoreError> {
        let mut fresh: [BTreeSet<Vec<u8>>; Tree::INDEXES.len()] = Default::default();
        let slot = |t: Tree| Tree::INDEXES.iter().position(|i| *i == t);
        for kv in trees.get(Tree::Desired).iter() {
            let d: pb::DesiredLrp = decode("desired lrp", &kv?.1)?;
            for (tree, key) in desired_index_keys(&d) {
                slot(tree).map(|i| fresh[i].insert(key));
            }
        }
        for kv in trees.get(Tree::Actual).iter() {
            let a: pb::ActualLrp = decode("actual lrp", &kv?.1)?;
            for (tree, key) in actual_index_keys(&a) {
                slot(tree).map(|i| fresh[i].insert(key));
            }
        }
        for (lock, set) in self.0.iter().zip(fresh) {
            *lock.write().unwrap_or_else(|e| e.into_inner()) = set;
        }
        Ok(())
    }
}

/// The index keys a DesiredLRP row has (what folding writes for it).
pub fn desired_index_keys(d: &pb::DesiredLrp) -> Vec<(Tree, Vec<u8>)> {
    vec![(
        Tree::DesiredByDomain,
        ks::desired_by_domain_key(&d.domain, &d.process_guid),
    )]
}

/// The index keys an ActualLRP row has (what folding writes for it): its domain's, and its
/// cell's once it is placed.
pub fn actual_index_keys(a: &pb::ActualLrp) -> Vec<(Tree, Vec<u8>)> {
    let mut keys = vec![(
        Tree::ActualByDomain,
        ks::actual_by_domain_key(&a.domain, &a.process_guid, a.index),
    )];
    if !a.cell_id.is_empty() {
        keys.push((
            Tree::ActualByCell,
            ks::actual_by_cell_key(&a.cell_id, &a.process_guid, a.index),
        ));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_scan_reads_every_chunk_and_stops_at_the_prefix() {
        let ix = Indexes::default();
        let keys: Vec<Vec<u8>> = (0..(SCAN_CHUNK * 2 + 7) as u32)
            .map(|i| ks::actual_by_domain_key("d", "pg", i))
            .collect();
        let others = [
            ks::actual_by_domain_key("c", "pg", 0),
            ks::actual_by_domain_key("e", "pg", 0),
        ];
        ix.apply(
            keys.iter()
                .chain(&others)
                .map(|k| (Tree::ActualByDomain, k.as_slice(), true)),
        );
        let found: Vec<_> = ix.scan_prefix(Tree::ActualByDomain, ks::domain_prefix("d")).collect();
        assert_eq!(found, keys);
        assert!(ix.contains(Tree::ActualByDomain, &others[0]));
        ix.apply([(Tree::ActualByDomain, others[0].as_slice(), false)]);
        assert!(!ix.contains(Tree::ActualByDomain, &others[0]));
        assert_eq!(ix.range(Tree::ActualByDomain, &[], None, 1), vec![keys[0].clone()]);
        // Not an index tree: nothing is kept.
        ix.apply([(Tree::Desired, b"pg".as_slice(), true)]);
        assert!(!ix.contains(Tree::Desired, b"pg"));
    }

    #[test]
    fn a_scan_sees_keys_removed_ahead_of_it_go() {
        let ix = Indexes::default();
        let keys: Vec<Vec<u8>> = (0..(SCAN_CHUNK * 2) as u32)
            .map(|i| ks::desired_by_domain_key("d", &format!("pg-{i:05}")))
            .collect();
        ix.apply(keys.iter().map(|k| (Tree::DesiredByDomain, k.as_slice(), true)));
        let mut scan = ix.scan_prefix(Tree::DesiredByDomain, ks::domain_prefix("d"));
        assert_eq!(scan.next().as_ref(), Some(&keys[0]));
        let last = keys.last().expect("keys");
        ix.apply([(Tree::DesiredByDomain, last.as_slice(), false)]);
        assert_eq!(scan.count(), keys.len() - 2);
    }
}
