//! The instances waiting for a cell, as the scheduler walks them.

use std::collections::{BTreeMap, BTreeSet};

/// (process_guid, index)
pub type InstanceId = (String, u32);

/// One UNCLAIMED instance waiting for a cell.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub epoch: String,
    pub placement_error: String,
}

/// The UNCLAIMED instances, and among them those not tried since they began waiting (no
/// placement error yet): a scheduling pass with no new capacity walks only those, so thousands
/// of instances that found no room cost nothing per pass.
#[derive(Default)]
pub struct Unclaimed {
    all: BTreeMap<InstanceId, Waiting>,
    untried: BTreeSet<InstanceId>,
}

impl Unclaimed {
    pub fn insert(&mut self, key: InstanceId, waiting: Waiting) {
        if waiting.placement_error.is_empty() {
            self.untried.insert(key.clone());
        } else {
            self.untried.remove(&key);
        }
        self.all.insert(key, waiting);
    }

    pub fn remove(&mut self, key: &InstanceId) {
        self.untried.remove(key);
        self.all.remove(key);
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Every waiting instance, in (process_guid, index) order.
    pub fn iter(&self) -> impl Iterator<Item = (&InstanceId, &Waiting)> {
        self.all.iter()
    }

    /// The waiting instances with no placement error, in (process_guid, index) order.
    pub fn untried(&self) -> impl Iterator<Item = (&InstanceId, &Waiting)> {
        self.untried.iter().filter_map(|k| self.all.get_key_value(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(error: &str) -> Waiting {
        Waiting {
            epoch: "e".into(),
            placement_error: error.into(),
        }
    }

    fn untried(u: &Unclaimed) -> Vec<u32> {
        u.untried().map(|((_, i), _)| *i).collect()
    }

    #[test]
    fn untried_follows_each_instance_s_placement_error() {
        let mut u = Unclaimed::default();
        u.insert(("web".into(), 0), waiting(""));
        u.insert(("web".into(), 1), waiting(""));
        assert_eq!(untried(&u), [0, 1]);
        // Tried and failed: no longer untried, still waiting.
        u.insert(("web".into(), 0), waiting("insufficient resources"));
        assert_eq!(untried(&u), [1]);
        assert_eq!(u.len(), 2);
        assert_eq!(u.iter().map(|((_, i), _)| *i).collect::<Vec<_>>(), [0, 1]);
        // Waiting anew with its error cleared (a new epoch): untried again.
        u.insert(("web".into(), 0), waiting(""));
        assert_eq!(untried(&u), [0, 1]);
        // Claimed: gone from both.
        u.remove(&("web".into(), 1));
        assert_eq!(untried(&u), [0]);
        assert_eq!(u.len(), 1);
        u.remove(&("web".into(), 0));
        assert!(u.is_empty() && untried(&u).is_empty());
    }
}
