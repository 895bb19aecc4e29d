//! The leader's picture of the fleet, kept by the hub from the journal: cell loads, what each
//! placed instance and run counts for where, UNCLAIMED instances and QUEUED runs waiting for a
//! cell, completion callbacks to deliver, CF processes with a rolling restart under way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use capstan_proto::pb::{self, ActualLrpState};
use capstan_storage::rules::placement::CellLoad;

/// What placing one instance of a process needs.
#[derive(Debug, Clone, Default)]
pub struct Res {
    pub memory_mb: i32,
    pub disk_mb: i32,
    pub rootfs: String,
}

/// One QUEUED (or NEEDS_RETRY) task run waiting for a cell.
#[derive(Debug, Clone)]
pub struct QueuedRun {
    pub run_id: String,
    /// what spread counts: the definition of a Flotilla run, the domain of a Receptor task
    pub definition_id: String,
    pub attempt: u32,
    pub memory_mb: i32,
    pub disk_mb: i32,
}

/// Which cells a queued run can go to: a pool (Flotilla) or a rootfs (Receptor).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunNeeds {
    Pool(String),
    Rootfs(String),
}

/// Where a queued run sorts: what it needs, then first come first served.
pub type QueueKey = (RunNeeds, i64, String);

/// How far a run has come; strictly increases with every transition (`run_lifecycle`), so an
/// event no further than what is reflected is a replay and changes nothing.
fn run_progress(r: &pb::TaskRun) -> (u32, u8, bool) {
    use pb::TaskRunStatus as S;
    let rank = match S::try_from(r.status).unwrap_or(S::Unspecified) {
        S::Unspecified | S::Queued => 0,
        S::Pending => 1,
        S::Running => 2,
        S::NeedsRetry => 3,
        S::Stopped => 4,
    };
    (r.attempt, rank, r.stop_requested)
}

pub use super::unclaimed::{InstanceId, Unclaimed, Waiting};
/// What an instance or run counts for on a cell: (cell_id, memory_mb, disk_mb). The cell id is
/// the one the fleet holds for the cell, shared by everything placed there.
type Counted = (Arc<str>, i32, i32);

/// What the fleet keeps for each instance (a 250,000-instance fleet holds one per instance, so it
/// is kept small: 48 bytes, its process guid shared per process and its cell id per cell).
struct Slot {
    /// the newest state seen, as (epoch, tag index): an older event is skipped, so a rebuild
    /// racing with apply cannot leave a stale UNCLAIMED entry behind
    epoch: EpochId,
    tag_index: u32,
    /// what it counts for on its cell, while it has one
    placed: Option<Counted>,
}
const _: () = assert!(std::mem::size_of::<Slot>() == 48);

/// An epoch as a number: the 128 bits of the UUID decide mints, else (a hand-made epoch) a hash
/// of its text. Only equality matters: two epochs of one instance slot.
type EpochId = [u64; 2];

/// `map`'s own copy of `key` when it holds one, else a new one.
fn shared<V>(map: &HashMap<Arc<str>, V>, key: &str) -> Arc<str> {
    map.get_key_value(key)
        .map_or_else(|| Arc::from(key), |(k, _)| k.clone())
}

fn epoch_id(epoch: &str) -> EpochId {
    let mut bits: u128 = 0;
    let mut digits = 0;
    for b in epoch.bytes().filter(|b| *b != b'-') {
        match (b as char).to_digit(16) {
            Some(d) if digits < 32 => {
                bits = bits << 4 | u128::from(d);
                digits += 1;
            }
            _ => {
                digits = 0;
                break;
            }
        }
    }
    if digits == 32 {
        return [(bits >> 64) as u64, bits as u64];
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    epoch.hash(&mut h);
    [u64::MAX, h.finish()]
}

/// The fleet as the scheduler needs it.
#[derive(Default)]
pub struct Fleet {
    pub desired: HashMap<String, Res>,
    /// cells with what is placed on them, and where each cell sits in `loads`
    pub loads: Vec<CellLoad>,
    /// keyed by the cell id every `Counted` on that cell shares
    pub(super) positions: HashMap<Arc<str>, usize>,
    pub unclaimed: Unclaimed,
    /// every instance seen, per process guid (shared with the cells' per-process counts), by index
    instances: HashMap<Arc<str>, HashMap<u32, Slot>>,
    /// placements proposed but not yet seen applied, counted on their cells meanwhile
    pub(super) tentative: HashMap<InstanceId, Counted>,
    /// task runs waiting for a cell, per pool in queue order
    pub queued: BTreeMap<QueueKey, QueuedRun>,
    pub(super) queue_keys: HashMap<String, QueueKey>,
    /// what each run on a cell counts for there: (definition_id, (cell, memory, disk))
    pub(super) runs_placed: HashMap<String, (String, Counted)>,
    /// run placements proposed but not yet seen applied
    pub(super) runs_tentative: HashMap<String, (String, Counted)>,
    /// the furthest state seen per run (kept for STOPPED runs too: a replayed older event of a
    /// finished run must not queue it again)
    pub(super) runs_seen: HashMap<String, (u32, u8, bool)>,
    /// completed Receptor tasks with a completion callback to deliver: task_guid → url
    pub callbacks: BTreeMap<String, String>,
    /// CF processes with a rolling restart under way (a `previous_version`)
    pub rollouts: BTreeSet<String>,
    /// bumped whenever a cell's load or the set of cells changes: capacity may have appeared
    pub capacity_version: u64,
    /// the `capacity_version` the last placement pass tried every waiting instance at (`None`:
    /// never): until it moves, an instance that already failed to place would fail again
    pub placed_at_version: Option<u64>,
}

impl Fleet {
    /// Follows whether a CF process has a rollout under way.
    pub(crate) fn process(&mut self, p: &pb::CfProcess) {
        if p.previous_version.is_empty() {
            self.rollouts.remove(&p.guid);
        } else {
            self.rollouts.insert(p.guid.clone());
        }
    }

    pub(super) fn load_mut(&mut self, cell_id: &str) -> Option<&mut CellLoad> {
        let i = *self.positions.get(cell_id)?;
        self.capacity_version += 1;
        self.loads.get_mut(i)
    }

    pub(super) fn uncount(&mut self, guid: &str, (cell, m, d): Counted) {
        if let Some(load) = self.load_mut(&cell) {
            load.remove(guid, m, d);
        }
    }

    /// The fleet's copy of a cell id: the registered cell's, else a new one (an instance
    /// still on a cell that is gone).
    fn cell_ref(&self, cell_id: &str) -> Arc<str> {
        shared(&self.positions, cell_id)
    }

    pub(super) fn actual(&mut self, before: Option<&pb::ActualLrp>, after: Option<&pb::ActualLrp>) {
        let Some(x) = after.or(before) else {
            return;
        };
        let tag = |a: &pb::ActualLrp| {
            let t = a.modification_tag.as_ref();
            (epoch_id(t.map_or("", |t| t.epoch.as_str())), t.map_or(0, |t| t.index))
        };
        let slot = self
            .instances
            .get(x.process_guid.as_str())
            .and_then(|s| s.get(&x.index));
        // An event older than what is already reflected (replayed after a rebuild) changes nothing.
        if let Some(seen) = slot {
            match (before, after) {
                (_, Some(a)) => {
                    let (e, i) = tag(a);
                    if seen.epoch == e && seen.tag_index >= i {
                        return;
                    }
                }
                (Some(b), None) if seen.epoch != tag(b).0 => return,
                _ => {}
            }
        }
        let key = (x.process_guid.clone(), x.index);
        self.unclaimed.remove(&key);
        // What the slot counted is what its cell carries for it, whatever `before` says.
        let guid = self.guid_ref(&x.process_guid);
        let mut counted = None;
        if let Some(slots) = self.instances.get_mut(x.process_guid.as_str()) {
            counted = slots.remove(&x.index).and_then(|s| s.placed);
            if slots.is_empty() {
                self.instances.remove(x.process_guid.as_str());
            }
        }
        if let Some(p) = counted {
            self.uncount(&x.process_guid, p);
        }
        let Some(a) = after else {
            return;
        };
        if let Some(t) = self.tentative.remove(&key) {
            self.uncount(&a.process_guid, t);
        }
        if a.state == ActualLrpState::Unclaimed as i32 {
            self.unclaimed.insert(
                key,
                Waiting {
                    epoch: a.modification_tag.as_ref().map(|t| t.epoch.clone()).unwrap_or_default(),
                    placement_error: a.placement_error.clone(),
                },
            );
        }
        let placed = (!a.cell_id.is_empty()).then(|| {
            let res = self.desired.get(&a.process_guid).cloned().unwrap_or_default();
            let cell = self.cell_ref(&a.cell_id);
            if let Some(load) = self.load_mut(&a.cell_id) {
                load.add_shared(&guid, res.memory_mb, res.disk_mb);
            }
            (cell, res.memory_mb, res.disk_mb)
        });
        let (epoch, tag_index) = tag(a);
        self.instances.entry(guid).or_default().insert(
            a.index,
            Slot {
                epoch,
                tag_index,
                placed,
            },
        );
    }

    /// The fleet's copy of a process guid: the one its instances share, else a new one.
    fn guid_ref(&self, guid: &str) -> Arc<str> {
        shared(&self.instances, guid)
    }

    /// Forgets a run that is gone (a resolved Receptor task).
    pub(super) fn remove_run(&mut self, run_id: &str) {
        self.runs_seen.remove(run_id);
        self.callbacks.remove(run_id);
        self.forget_run_state(run_id);
    }

    /// Takes a run off the queue and off its cell's load.
    pub(super) fn forget_run_state(&mut self, run_id: &str) {
        if let Some(k) = self.queue_keys.remove(run_id) {
            self.queued.remove(&k);
        }
        for (def, counted) in [self.runs_placed.remove(run_id), self.runs_tentative.remove(run_id)]
            .into_iter()
            .flatten()
        {
            self.uncount(&def, counted);
        }
    }

    pub(crate) fn run(&mut self, r: &pb::TaskRun) {
        use pb::TaskRunStatus as S;
        let progress = run_progress(r);
        if self.runs_seen.get(&r.run_id).is_some_and(|seen| *seen >= progress) {
            return;
        }
        self.runs_seen.insert(r.run_id.clone(), progress);
        self.forget_run_state(&r.run_id);
        if let Some(t) = r.receptor.as_ref().filter(|t| !t.completion_callback_url.is_empty()) {
            if r.status == S::Stopped as i32 {
                self.callbacks
                    .insert(r.run_id.clone(), t.completion_callback_url.clone());
            }
        }
        match S::try_from(r.status).unwrap_or(S::Unspecified) {
            S::Queued | S::NeedsRetry => {
                let (needs, spread, disk_mb) = match &r.receptor {
                    Some(t) => (RunNeeds::Rootfs(t.rootfs.clone()), t.domain.clone(), t.disk_mb),
                    None => (RunNeeds::Pool(r.cluster_name.clone()), r.definition_id.clone(), 0),
                };
                let key = (needs, r.queued_at, r.run_id.clone());
                self.queue_keys.insert(r.run_id.clone(), key.clone());
                self.queued.insert(
                    key,
                    QueuedRun {
                        run_id: r.run_id.clone(),
                        definition_id: spread,
                        attempt: r.attempt,
                        memory_mb: r.memory,
                        disk_mb,
                    },
                );
            }
            S::Pending | S::Running if !r.cell_id.is_empty() => {
                let (spread, disk_mb) = match &r.receptor {
                    Some(t) => (t.domain.clone(), t.disk_mb),
                    None => (r.definition_id.clone(), 0),
                };
                if let Some(load) = self.load_mut(&r.cell_id) {
                    load.add(&spread, r.memory, disk_mb);
                }
                let cell = self.cell_ref(&r.cell_id);
                self.runs_placed
                    .insert(r.run_id.clone(), (spread, (cell, r.memory, disk_mb)));
            }
            _ => {}
        }
    }

    /// Records a run placement already counted on its cell's load by the scheduler's pass.
    pub fn count_run_tentative_only(&mut self, run: &QueuedRun, cell_id: &str) {
        let cell = self.cell_ref(cell_id);
        self.runs_tentative.insert(
            run.run_id.clone(),
            (run.definition_id.clone(), (cell, run.memory_mb, run.disk_mb)),
        );
    }

    pub(super) fn desired(&mut self, d: &pb::DesiredLrp) {
        self.desired.insert(
            d.process_guid.clone(),
            Res {
                memory_mb: d.memory_mb,
                disk_mb: d.disk_mb,
                rootfs: d.rootfs.clone(),
            },
        );
    }

    pub(crate) fn cell(&mut self, c: &pb::Cell) {
        if let Some(load) = self.load_mut(&c.cell_id) {
            load.cell = c.clone();
            return;
        }
        let mut load = CellLoad::new(c.clone());
        let here = |cell: &Arc<str>| **cell == *c.cell_id;
        for (guid, slots) in &self.instances {
            for (cell, m, d) in slots.values().filter_map(|s| s.placed.as_ref()) {
                if here(cell) {
                    load.add_shared(guid, *m, *d);
                }
            }
        }
        for ((guid, _), (cell, m, d)) in &self.tentative {
            if here(cell) {
                load.add(guid, *m, *d);
            }
        }
        for (def, (cell, m, d)) in self.runs_placed.values().chain(self.runs_tentative.values()) {
            if here(cell) {
                load.add(def, *m, *d);
            }
        }
        self.positions.insert(Arc::from(c.cell_id.as_str()), self.loads.len());
        self.loads.push(load);
        self.capacity_version += 1;
    }

    pub(super) fn remove_cell(&mut self, cell_id: &str) {
        let Some(i) = self.positions.remove(cell_id) else {
            return;
        };
        self.loads.swap_remove(i);
        self.capacity_version += 1;
        if let Some(moved) = self.loads.get(i) {
            if let Some(p) = self.positions.get_mut(moved.cell.cell_id.as_str()) {
                *p = i;
            }
        }
    }

    /// Records a placement already counted on its cell's load (by the scheduler's pass) as
    /// tentative: undone when the hub sees the instance's real change, or when it is dropped.
    pub fn count_tentative_only(&mut self, guid: &str, index: u32, cell_id: &str) {
        let res = self.desired.get(guid).cloned().unwrap_or_default();
        let cell = self.cell_ref(cell_id);
        self.tentative
            .insert((guid.to_owned(), index), (cell, res.memory_mb, res.disk_mb));
    }

    /// Forgets placements that apply skipped (the instance moved on meanwhile).
    pub(crate) fn drop_tentative(&mut self) {
        let left: Vec<(InstanceId, Counted)> = self.tentative.drain().collect();
        for ((guid, _), t) in left {
            self.uncount(&guid, t);
        }
        let runs: Vec<(String, Counted)> = self.runs_tentative.drain().map(|(_, v)| v).collect();
        for (def, t) in runs {
            self.uncount(&def, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(id: &str) -> pb::Cell {
        pb::Cell {
            cell_id: id.into(),
            capacity: Some(pb::CellCapacity {
                memory_mb: 10_000,
                disk_mb: 10_000,
                containers: 100,
            }),
            ..Default::default()
        }
    }

    fn actual(guid: &str, index: u32, epoch: &str, tag: u32, cell_id: &str) -> pb::ActualLrp {
        pb::ActualLrp {
            process_guid: guid.into(),
            index,
            cell_id: cell_id.into(),
            state: if cell_id.is_empty() {
                ActualLrpState::Unclaimed
            } else {
                ActualLrpState::Running
            } as i32,
            modification_tag: Some(pb::ModificationTag {
                epoch: epoch.into(),
                index: tag,
            }),
            ..Default::default()
        }
    }

    /// (cell, memory used, containers, instances of "web") per cell, in cell order.
    fn loads(f: &Fleet) -> Vec<(String, i64, i64, u32)> {
        let mut v: Vec<_> = f
            .loads
            .iter()
            .map(|l| {
                let web = l.per_process.get("web").copied().unwrap_or(0);
                (l.cell.cell_id.clone(), l.used_memory_mb, l.used_containers, web)
            })
            .collect();
        v.sort();
        v
    }

    const E1: &str = "6f1c2a4e-0b7d-4c1e-9a52-3d8e5f607182";
    const E2: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

    #[test]
    fn a_uuid_epoch_is_its_bits_and_any_other_epoch_a_hash() {
        assert_eq!(epoch_id(E1), [0x6f1c2a4e0b7d4c1e, 0x9a523d8e5f607182]);
        assert_ne!(epoch_id(E1), epoch_id(E2));
        assert_eq!(epoch_id("e1"), epoch_id("e1"));
        assert_ne!(epoch_id("e1"), epoch_id("e2"));
        assert_ne!(epoch_id(""), epoch_id(&format!("{E1}0")));
    }

    #[test]
    fn cells_carry_exactly_what_the_instances_on_them_count_for() {
        let mut f = Fleet::default();
        f.desired(&pb::DesiredLrp {
            process_guid: "web".into(),
            memory_mb: 100,
            ..Default::default()
        });
        f.cell(&cell("a"));
        let unclaimed = actual("web", 0, E1, 0, "");
        f.actual(None, Some(&unclaimed));
        assert_eq!(f.unclaimed.len(), 1);
        let on_a = actual("web", 0, E1, 1, "a");
        f.actual(Some(&unclaimed), Some(&on_a));
        assert!(f.unclaimed.is_empty());
        assert_eq!(loads(&f), [("a".into(), 100, 1, 1)]);
        // A replayed older event changes nothing; so does the same one again.
        f.actual(None, Some(&unclaimed));
        f.actual(Some(&unclaimed), Some(&on_a));
        assert!(f.unclaimed.is_empty());
        assert_eq!(loads(&f), [("a".into(), 100, 1, 1)]);
        // A cell registering late counts what is already placed on it.
        let on_b = actual("web", 1, E2, 1, "b");
        f.actual(None, Some(&on_b));
        f.cell(&cell("b"));
        assert_eq!(loads(&f), [("a".into(), 100, 1, 1), ("b".into(), 100, 1, 1)]);
        // Moving to another cell moves the count, even when the event does not say where it was.
        let moved = actual("web", 0, E1, 2, "b");
        f.actual(None, Some(&moved));
        assert_eq!(loads(&f), [("a".into(), 0, 0, 0), ("b".into(), 200, 2, 2)]);
        // Removing an instance of another epoch is a stale event; removing this one uncounts it.
        f.actual(Some(&actual("web", 0, E2, 9, "b")), None);
        assert_eq!(loads(&f), [("a".into(), 0, 0, 0), ("b".into(), 200, 2, 2)]);
        f.actual(Some(&moved), None);
        f.actual(Some(&on_b), None);
        assert_eq!(loads(&f), [("a".into(), 0, 0, 0), ("b".into(), 0, 0, 0)]);
        assert!(f.instances.is_empty(), "nothing kept for instances that are gone");
        // Cells removed and swapped in `loads` keep their positions right.
        f.remove_cell("a");
        f.actual(None, Some(&actual("web", 3, E1, 1, "b")));
        assert_eq!(loads(&f), [("b".into(), 100, 1, 1)]);
    }
}
