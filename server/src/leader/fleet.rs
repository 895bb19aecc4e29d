//! The leader's picture of the fleet, kept by the hub from the journal: cell loads, what each
//! placed instance and run counts for where, UNCLAIMED instances and QUEUED runs waiting for a
//! cell, completion callbacks to deliver, CF processes with a rolling restart under way.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
/// What an instance counts for on a cell: (cell_id, memory_mb, disk_mb).
type Counted = (String, i32, i32);

/// The fleet as the scheduler needs it.
#[derive(Default)]
pub struct Fleet {
    pub desired: HashMap<String, Res>,
    /// cells with what is placed on them, and where each cell sits in `loads`
    pub loads: Vec<CellLoad>,
    pub(super) positions: HashMap<String, usize>,
    pub unclaimed: Unclaimed,
    /// what each placed instance counts for on its cell: (cell, memory, disk)
    pub(super) placed: HashMap<InstanceId, Counted>,
    /// placements proposed but not yet seen applied, counted on their cells meanwhile
    pub(super) tentative: HashMap<InstanceId, Counted>,
    /// the newest state seen per instance: (epoch, tag index); older events are skipped, so a
    /// rebuild racing with apply cannot leave a stale UNCLAIMED entry behind
    pub(super) seen: HashMap<InstanceId, (String, u32)>,
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

    pub(super) fn actual(&mut self, before: Option<&pb::ActualLrp>, after: Option<&pb::ActualLrp>) {
        let tag = |a: &pb::ActualLrp| {
            let t = a.modification_tag.clone().unwrap_or_default();
            (t.epoch, t.index)
        };
        // An event older than what is already reflected (replayed after a rebuild) changes nothing.
        if let Some(x) = after.or(before) {
            let key = (x.process_guid.clone(), x.index);
            if let (Some((epoch, index)), Some(a)) = (self.seen.get(&key), after) {
                let (e, i) = tag(a);
                if *epoch == e && *index >= i {
                    return;
                }
            }
            if after.is_none() {
                if let (Some((epoch, _)), Some(b)) = (self.seen.get(&key), before) {
                    if *epoch != tag(b).0 {
                        return;
                    }
                }
            }
        }
        match after {
            Some(a) => {
                self.seen.insert((a.process_guid.clone(), a.index), tag(a));
            }
            None => {
                if let Some(b) = before {
                    self.seen.remove(&(b.process_guid.clone(), b.index));
                }
            }
        }
        if let Some(b) = before {
            let key = (b.process_guid.clone(), b.index);
            self.unclaimed.remove(&key);
            if let Some(p) = self.placed.remove(&key) {
                self.uncount(&b.process_guid, p);
            }
        }
        if let Some(a) = after {
            let key = (a.process_guid.clone(), a.index);
            if let Some(t) = self.tentative.remove(&key) {
                self.uncount(&a.process_guid, t);
            }
            if a.state == ActualLrpState::Unclaimed as i32 {
                self.unclaimed.insert(
                    key.clone(),
                    Waiting {
                        epoch: a.modification_tag.as_ref().map(|t| t.epoch.clone()).unwrap_or_default(),
                        placement_error: a.placement_error.clone(),
                    },
                );
            }
            if !a.cell_id.is_empty() {
                let res = self.desired.get(&a.process_guid).cloned().unwrap_or_default();
                if let Some(load) = self.load_mut(&a.cell_id) {
                    load.add(&a.process_guid, res.memory_mb, res.disk_mb);
                }
                self.placed.insert(key, (a.cell_id.clone(), res.memory_mb, res.disk_mb));
            }
        }
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
                self.runs_placed
                    .insert(r.run_id.clone(), (spread, (r.cell_id.clone(), r.memory, disk_mb)));
            }
            _ => {}
        }
    }

    /// Records a run placement already counted on its cell's load by the scheduler's pass.
    pub fn count_run_tentative_only(&mut self, run: &QueuedRun, cell_id: &str) {
        self.runs_tentative.insert(
            run.run_id.clone(),
            (
                run.definition_id.clone(),
                (cell_id.to_owned(), run.memory_mb, run.disk_mb),
            ),
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
        for ((guid, _), (cell, m, d)) in self.placed.iter().chain(self.tentative.iter()) {
            if cell == &c.cell_id {
                load.add(guid, *m, *d);
            }
        }
        for (def, (cell, m, d)) in self.runs_placed.values().chain(self.runs_tentative.values()) {
            if cell == &c.cell_id {
                load.add(def, *m, *d);
            }
        }
        self.positions.insert(c.cell_id.clone(), self.loads.len());
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
            self.positions.insert(moved.cell.cell_id.clone(), i);
        }
    }

    /// Records a placement already counted on its cell's load (by the scheduler's pass) as
    /// tentative: undone when the hub sees the instance's real change, or when it is dropped.
    pub fn count_tentative_only(&mut self, guid: &str, index: u32, cell_id: &str) {
        let res = self.desired.get(guid).cloned().unwrap_or_default();
        self.tentative.insert(
            (guid.to_owned(), index),
            (cell_id.to_owned(), res.memory_mb, res.disk_mb),
        );
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
