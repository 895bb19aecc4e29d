//! The journal follower of a node: after every apply it reads the new journal records and
//! (1) wakes the assignment streams of the cells the events touch, (2) keeps the scheduler's
//! picture of the fleet (cell loads, UNCLAIMED instances, QUEUED task runs, desired resources)
//! current without re-scanning the views. After a snapshot install it rebuilds from the views.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use capstan_proto::pb::{self, event::Kind as Ev, ActualLrpState};
use capstan_raft::RaftNode;
use capstan_storage::rules::placement::CellLoad;
use tokio::sync::watch;

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
    positions: HashMap<String, usize>,
    pub unclaimed: Unclaimed,
    /// what each placed instance counts for on its cell: (cell, memory, disk)
    placed: HashMap<InstanceId, Counted>,
    /// placements proposed but not yet seen applied, counted on their cells meanwhile
    tentative: HashMap<InstanceId, Counted>,
    /// the newest state seen per instance: (epoch, tag index); older events are skipped, so a
    /// rebuild racing with apply cannot leave a stale UNCLAIMED entry behind
    seen: HashMap<InstanceId, (String, u32)>,
    /// task runs waiting for a cell, per pool in queue order
    pub queued: BTreeMap<QueueKey, QueuedRun>,
    queue_keys: HashMap<String, QueueKey>,
    /// what each run on a cell counts for there: (definition_id, (cell, memory, disk))
    runs_placed: HashMap<String, (String, Counted)>,
    /// run placements proposed but not yet seen applied
    runs_tentative: HashMap<String, (String, Counted)>,
    /// the furthest state seen per run (kept for STOPPED runs too: a replayed older event of a
    /// finished run must not queue it again)
    runs_seen: HashMap<String, (u32, u8, bool)>,
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

    fn load_mut(&mut self, cell_id: &str) -> Option<&mut CellLoad> {
        let i = *self.positions.get(cell_id)?;
        self.capacity_version += 1;
        self.loads.get_mut(i)
    }

    fn uncount(&mut self, guid: &str, (cell, m, d): Counted) {
        if let Some(load) = self.load_mut(&cell) {
            load.remove(guid, m, d);
        }
    }

    fn actual(&mut self, before: Option<&pb::ActualLrp>, after: Option<&pb::ActualLrp>) {
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
    fn remove_run(&mut self, run_id: &str) {
        self.runs_seen.remove(run_id);
        self.callbacks.remove(run_id);
        self.forget_run_state(run_id);
    }

    /// Takes a run off the queue and off its cell's load.
    fn forget_run_state(&mut self, run_id: &str) {
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

    fn desired(&mut self, d: &pb::DesiredLrp) {
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

    fn remove_cell(&mut self, cell_id: &str) {
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

pub struct Hub {
    node: RaftNode,
    fleet: Mutex<Fleet>,
    cells: Mutex<HashMap<String, watch::Sender<u64>>>,
    processed: watch::Sender<u64>,
    /// Wakes the scheduler when instances became UNCLAIMED or cells changed.
    pub schedule: tokio::sync::Notify,
    /// Wakes the converger when a cell was removed.
    pub converge: tokio::sync::Notify,
    /// Wakes the callback worker when a Receptor task with a callback completed.
    pub callbacks: tokio::sync::Notify,
    /// Wakes the rollout stepper when an instance or a rolling process changed.
    pub rollouts: tokio::sync::Notify,
}

impl Hub {
    pub fn new(node: RaftNode) -> Arc<Self> {
        Arc::new(Self {
            node,
            fleet: Mutex::new(Fleet::default()),
            cells: Mutex::new(HashMap::new()),
            processed: watch::channel(0).0,
            schedule: tokio::sync::Notify::new(),
            converge: tokio::sync::Notify::new(),
            callbacks: tokio::sync::Notify::new(),
            rollouts: tokio::sync::Notify::new(),
        })
    }

    /// Waits for a leader loop's next pass: until `woken` or `every` has passed, this node leads,
    /// and the hub has processed every applied entry.
    pub async fn next_pass(&self, woken: &tokio::sync::Notify, every: std::time::Duration) {
        loop {
            tokio::select! {
                _ = woken.notified() => {}
                _ = tokio::time::sleep(every) => {}
            }
            if self.node.is_leader() {
                self.caught_up().await;
                return;
            }
        }
    }

    /// Runs `f` on the fleet as of the last processed entry.
    pub fn with_fleet<T>(&self, f: impl FnOnce(&mut Fleet) -> T) -> T {
        let mut guard = match self.fleet.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }

    pub fn has_cell(&self, cell_id: &str) -> bool {
        self.with_fleet(|f| f.positions.contains_key(cell_id))
    }

    pub fn cell_ids(&self) -> Vec<String> {
        self.with_fleet(|f| f.positions.keys().cloned().collect())
    }

    /// Forgets tentative placements once their entry has been processed.
    pub fn drop_tentative(&self) {
        self.with_fleet(Fleet::drop_tentative);
    }

    /// The last log index whose events are reflected in `fleet()` and the cell notifications.
    /// Waits until the hub reflects everything this node has applied (the scheduler and the
    /// converger plan from the hub, so each pass starts from at least what the node has applied).
    pub async fn caught_up(&self) {
        let applied = self
            .node
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        let mut processed = self.processed();
        let _ = processed.wait_for(|p| *p >= applied).await;
    }

    pub fn processed(&self) -> watch::Receiver<u64> {
        self.processed.subscribe()
    }

    /// Notifications for one cell's assignment set.
    pub fn watch_cell(&self, cell_id: &str) -> watch::Receiver<u64> {
        let mut cells = match self.cells.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        cells
            .entry(cell_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn notify_cell(&self, cell_id: &str, index: u64) {
        if cell_id.is_empty() {
            return;
        }
        if let Ok(cells) = self.cells.lock() {
            if let Some(tx) = cells.get(cell_id) {
                tx.send_replace(index);
            }
        }
    }

    fn notify_all_cells(&self, index: u64) {
        if let Ok(cells) = self.cells.lock() {
            for tx in cells.values() {
                tx.send_replace(index);
            }
        }
    }

    fn rebuild(&self) -> Result<(), capstan_storage::StoreError> {
        let views = self.node.views();
        let mut fleet = Fleet::default();
        for d in views.desired_lrps(None) {
            fleet.desired(&d?);
        }
        for c in views.cells()? {
            fleet.cell(&c);
        }
        for a in views.actual_lrps(None, None) {
            fleet.actual(None, Some(&a?));
        }
        for r in views.task_runs() {
            fleet.run(&r?);
        }
        for p in views.cf_rows::<pb::CfProcess>(false, false) {
            fleet.process(&p?);
        }
        if let Ok(mut f) = self.fleet.lock() {
            *f = fleet;
        }
        Ok(())
    }

    fn process(&self, record: &pb::JournalRecord) {
        let mut schedule = false;
        let mut converge = false;
        let mut rollouts = false;
        let mut touched: Vec<String> = Vec::new();
        {
            let Ok(mut fleet) = self.fleet.lock() else {
                return;
            };
            for e in &record.events {
                match &e.kind {
                    Some(Ev::DesiredLrpCreated(c)) => {
                        if let Some(d) = &c.desired_lrp {
                            fleet.desired(d);
                        }
                    }
                    Some(Ev::DesiredLrpChanged(c)) => {
                        if let Some(d) = &c.after {
                            fleet.desired(d);
                        }
                    }
                    // Placed instances carry their own resources, so this is safe.
                    Some(Ev::DesiredLrpRemoved(c)) => {
                        if let Some(d) = &c.desired_lrp {
                            fleet.desired.remove(&d.process_guid);
                        }
                    }
                    Some(Ev::ActualLrpCreated(c)) => {
                        fleet.actual(None, c.actual_lrp.as_ref());
                        schedule = true;
                    }
                    Some(Ev::ActualLrpChanged(c)) => {
                        fleet.actual(c.before.as_ref(), c.after.as_ref());
                        for a in [&c.before, &c.after].into_iter().flatten() {
                            touched.push(a.cell_id.clone());
                        }
                        schedule |= c
                            .after
                            .as_ref()
                            .is_some_and(|a| a.state == ActualLrpState::Unclaimed as i32);
                        rollouts |= !fleet.rollouts.is_empty()
                            && c.after
                                .as_ref()
                                .is_some_and(|a| a.state == ActualLrpState::Running as i32);
                    }
                    Some(Ev::ActualLrpRemoved(c)) => {
                        fleet.actual(c.actual_lrp.as_ref(), None);
                        if let Some(a) = &c.actual_lrp {
                            touched.push(a.cell_id.clone());
                        }
                    }
                    Some(Ev::CellRegistered(c)) => {
                        if let Some(cell) = &c.cell {
                            fleet.cell(cell);
                            touched.push(cell.cell_id.clone());
                        }
                        schedule = true;
                    }
                    Some(Ev::CellRemoved(c)) => {
                        if let Some(cell) = &c.cell {
                            fleet.remove_cell(&cell.cell_id);
                        }
                        converge = true;
                    }
                    Some(Ev::TaskRunQueued(q)) => {
                        if let Some(r) = &q.run {
                            fleet.run(r);
                        }
                        schedule = true;
                    }
                    Some(Ev::TaskRunChanged(c)) => {
                        if let Some(a) = &c.after {
                            fleet.run(a);
                        }
                        for r in [&c.before, &c.after].into_iter().flatten() {
                            touched.push(r.cell_id.clone());
                        }
                        // Queued again, or a cell has room again.
                        schedule = true;
                    }
                    Some(Ev::CfProcessChanged(c)) => {
                        match (&c.before, &c.after) {
                            (_, Some(p)) => fleet.process(p),
                            (Some(p), None) => {
                                fleet.rollouts.remove(&p.guid);
                            }
                            (None, None) => {}
                        }
                        rollouts = true;
                    }
                    Some(Ev::TaskRunRemoved(c)) => {
                        if let Some(r) = &c.run {
                            fleet.remove_run(&r.run_id);
                        }
                    }
                    // Nothing the scheduler or the cells follow.
                    Some(Ev::FreshDomainBumped(_))
                    | Some(Ev::TaskDefinitionCreated(_))
                    | Some(Ev::TaskDefinitionChanged(_))
                    | Some(Ev::TaskDefinitionDeleted(_))
                    | Some(Ev::TokensRevoked(_))
                    | Some(Ev::CfOrganizationChanged(_))
                    | Some(Ev::CfSpaceChanged(_))
                    | Some(Ev::CfAppChanged(_))
                    | Some(Ev::CfJobRecorded(_))
                    | None => {}
                }
            }
        }
        for cell in touched {
            self.notify_cell(&cell, record.log_index);
        }
        if schedule {
            self.schedule.notify_one();
        }
        if converge {
            self.converge.notify_one();
        }
        if rollouts {
            self.rollouts.notify_one();
        }
        // A run that changed may have completed a task with a callback.
        if schedule {
            self.callbacks.notify_one();
        }
    }

    /// Follows the node's applied index forever.
    pub async fn run(self: Arc<Self>) {
        let mut metrics = self.node.raft.metrics();
        let mut processed = 0u64;
        let mut installs_seen: Option<u64> = None;
        loop {
            let applied = metrics.borrow_and_update().last_applied.map(|l| l.index).unwrap_or(0);
            let installs = self.node.views().installs();
            // First pass, or a snapshot was installed over entries this hub never saw.
            if installs_seen != Some(installs) {
                match self.rebuild() {
                    Ok(()) => {
                        installs_seen = Some(installs);
                        processed = applied;
                        self.notify_all_cells(applied);
                        self.schedule.notify_one();
                    }
                    Err(e) => tracing::error!(error = %e, "hub rebuild failed"),
                }
            } else if applied > processed {
                for record in self.node.views().journal_from(processed + 1) {
                    match record {
                        Ok(r) if r.log_index <= applied => self.process(&r),
                        Ok(_) => break,
                        Err(e) => {
                            tracing::error!(error = %e, "journal read failed");
                            break;
                        }
                    }
                }
                processed = applied;
            }
            self.processed.send_replace(processed);
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }
}
