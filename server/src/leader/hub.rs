//! The journal follower of a node: after every apply it reads the new journal records and
//! (1) pushes what changed on each cell into the feeds of its assignment streams, (2) keeps the scheduler's
//! picture of the fleet (cell loads, UNCLAIMED instances, QUEUED task runs, desired resources)
//! current without re-scanning the views. After a snapshot install it rebuilds from the views.

use std::sync::{Arc, Mutex};

use capstan_proto::pb::{self, event::Kind as Ev, ActualLrpState};
use capstan_raft::RaftNode;
use tokio::sync::watch;

use super::cell_feed::{self, CellFeed, Feeds};
pub use super::fleet::{Fleet, InstanceId, QueueKey, QueuedRun, Res, RunNeeds, Unclaimed, Waiting};

pub struct Hub {
    node: RaftNode,
    fleet: Mutex<Fleet>,
    feeds: Feeds,
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
            feeds: Feeds::default(),
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
        self.with_fleet(|f| f.positions.keys().map(|k| k.to_string()).collect())
    }

    /// Forgets tentative placements once their entry has been processed.
    pub fn drop_tentative(&self) {
        self.with_fleet(Fleet::drop_tentative);
    }

    /// The last log index whose events are reflected in `fleet()` and the cell notifications.
    /// Waits until the hub reflects everything this node has applied (the scheduler and the
    /// converger plan from the hub, so each pass starts from at least what the node has applied).
    pub async fn caught_up(&self) {
        let applied = self.node.applied_index();
        let mut processed = self.processed();
        let _ = processed.wait_for(|p| *p >= applied).await;
    }

    pub fn processed(&self) -> watch::Receiver<u64> {
        self.processed.subscribe()
    }

    /// A feed of `cell_id`'s changes from the next processed entry on.
    pub fn feed_cell(&self, cell_id: &str) -> Arc<CellFeed> {
        self.feeds.subscribe(cell_id)
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
        let mut changes = Vec::new();
        {
            let Ok(mut fleet) = self.fleet.lock() else {
                return;
            };
            for e in &record.events {
                if let Some(kind) = &e.kind {
                    cell_feed::changes_of(kind, &mut changes);
                }
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
                    }
                    Some(Ev::CellRegistered(c)) => {
                        if let Some(cell) = &c.cell {
                            fleet.cell(cell);
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
        self.feeds.push(record.log_index, changes);
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
                        self.feeds.resync_all();
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
