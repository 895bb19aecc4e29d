//! The scheduler, on the leader only: places UNCLAIMED instances and QUEUED task runs on cells
//! (the pure placement rules over the hub's picture of the fleet) and proposes the decisions in
//! batches. It runs when the hub says there is work, and on a short tick so that waiting work is
//! retried as soon as capacity appears. A run that finds no room stays QUEUED: nothing is written
//! for it, and a pool's queue is scanned only until its runs stop fitting.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use capstan_proto::pb;
use capstan_raft::RaftNode;
use capstan_storage::rules::placement::{self, Need};

use super::hub::{Fleet, Hub, QueuedRun, Res, RunNeeds};

/// Most placement decisions in one log entry.
pub const PLACEMENTS_PER_ENTRY_MAX: usize = 1_000;
/// Retry period for instances that could not be placed.
const RETRY_TICK: Duration = Duration::from_millis(500);
/// Entries that only record placement failures go at most this often: the first at once, the
/// ones after it gathered (a burst of creates with no room costs a few entries, not one each).
const FAILURES_EVERY: Duration = Duration::from_millis(50);

/// One scheduling pass over the live fleet: the decisions to propose, if any. Placements are
/// counted on their cells at once (tentatively) so the next pass does not overfill them. An
/// instance that already failed to place is tried again only once capacity changed since the
/// last pass that tried it (a burst of creates with no room costs a walk, not a search each).
pub fn plan(fleet: &mut Fleet) -> Option<pb::PlaceActualLrps> {
    if fleet.unclaimed.is_empty() {
        return None;
    }
    let retry_failed = fleet.placed_at_version != Some(fleet.capacity_version);
    let mut cmd = pb::PlaceActualLrps::default();
    let mut decided: Vec<(String, u32, String)> = Vec::new();
    {
        let Fleet {
            desired,
            loads,
            unclaimed,
            ..
        } = fleet;
        let unknown = Res::default();
        // Instances are in (process_guid, index) order: one placer per process.
        let mut current: Option<(&str, placement::ProcessPlacer<'_>)> = None;
        let candidates: Box<dyn Iterator<Item = _>> = if retry_failed {
            Box::new(unclaimed.iter())
        } else {
            Box::new(unclaimed.untried())
        };
        for ((guid, index), waiting) in candidates {
            if cmd.placements.len() + cmd.failures.len() >= PLACEMENTS_PER_ENTRY_MAX {
                break;
            }
            if current.as_ref().map(|(g, _)| *g) != Some(guid.as_str()) {
                let res = desired.get(guid).unwrap_or(&unknown);
                let need = Need {
                    process_guid: guid,
                    requires: placement::Requires::Rootfs(&res.rootfs),
                    memory_mb: res.memory_mb,
                    disk_mb: res.disk_mb,
                };
                current = Some((guid.as_str(), placement::ProcessPlacer::new(loads, need)));
            }
            let Some((_, placer)) = current.as_mut() else { break };
            match placer.place(loads) {
                Ok(i) => {
                    let cell_id = loads[i].cell.cell_id.clone();
                    decided.push((guid.clone(), *index, cell_id.clone()));
                    cmd.placements.push(pb::Placement {
                        process_guid: guid.clone(),
                        index: *index,
                        epoch: waiting.epoch.clone(),
                        cell_id,
                    });
                }
                // Only a new or different error is worth an entry.
                Err(e) if waiting.placement_error != e => cmd.failures.push(pb::PlacementFailure {
                    process_guid: guid.clone(),
                    index: *index,
                    epoch: waiting.epoch.clone(),
                    error: e.to_owned(),
                }),
                Err(_) => {}
            }
        }
    }
    // A pass cut short at the entry limit has not tried everything: the next one tries again.
    let complete = cmd.placements.len() + cmd.failures.len() < PLACEMENTS_PER_ENTRY_MAX;
    // The placer already counted them on the loads; record them so the hub can undo that
    // when the real change arrives (or when apply skipped them).
    for (guid, index, cell) in decided {
        fleet.count_tentative_only(&guid, index, &cell);
    }
    if complete {
        fleet.placed_at_version = Some(fleet.capacity_version);
    }
    (!cmd.placements.is_empty() || !cmd.failures.is_empty()).then_some(cmd)
}

/// One pass over the queued task runs, pool by pool in queue order (first come first served): the
/// placements to propose. Within a pool, once a run of some size finds no room, runs at least as
/// large are not tried again in this pass, so thousands of waiting runs cost a scan, not a search.
pub fn plan_runs(fleet: &mut Fleet) -> Option<pb::PlaceTaskRuns> {
    if fleet.queued.is_empty() {
        return None;
    }
    let mut cmd = pb::PlaceTaskRuns::default();
    let mut decided: Vec<(QueuedRun, String)> = Vec::new();
    {
        let Fleet { loads, queued, .. } = fleet;
        // (what the runs need, the (memory, disk) of the first of them that found no room)
        let mut full: Option<(&RunNeeds, (i32, i32))> = None;
        for ((needs, _, _), run) in queued.iter() {
            if cmd.placements.len() >= PLACEMENTS_PER_ENTRY_MAX {
                break;
            }
            let size = (run.memory_mb, run.disk_mb);
            match full {
                Some((n, (m, d))) if n == needs && size.0 >= m && size.1 >= d => continue,
                Some((n, _)) if n != needs => full = None,
                _ => {}
            }
            let requires = match needs {
                RunNeeds::Pool(pool) => placement::Requires::Pool(pool),
                RunNeeds::Rootfs(rootfs) => placement::Requires::Rootfs(rootfs),
            };
            let need = Need {
                process_guid: &run.definition_id,
                requires,
                memory_mb: run.memory_mb,
                disk_mb: run.disk_mb,
            };
            match placement::place(loads, &need) {
                Ok(i) => {
                    let cell_id = loads[i].cell.cell_id.clone();
                    cmd.placements.push(pb::TaskRunPlacement {
                        run_id: run.run_id.clone(),
                        attempt: run.attempt,
                        cell_id: cell_id.clone(),
                    });
                    decided.push((run.clone(), cell_id));
                }
                // Runs at least as large in both do not fit either (a smaller one still may).
                Err(_) => {
                    if full.is_none() {
                        full = Some((needs, size));
                    }
                }
            }
        }
    }
    for (run, cell) in &decided {
        fleet.count_run_tentative_only(run, cell);
    }
    (!cmd.placements.is_empty()).then_some(cmd)
}

/// Proposes one batch; `false` when nothing was applied or the write failed (the picture is
/// behind, or this node no longer leads): wait for the next tick, do not spin.
async fn propose(node: &RaftNode, kind: pb::command::Kind) -> bool {
    match node.write(pb::Command { kind: Some(kind) }).await {
        Ok(outcome) => !outcome.events.is_empty(),
        Err(e) => {
            tracing::debug!(error = %e, "placement not proposed");
            false
        }
    }
}

/// When entries that only record placement failures may go ([`FAILURES_EVERY`]).
#[derive(Default)]
struct FailureWindow {
    /// when failures were last proposed alone
    proposed_at: Option<Instant>,
    /// failures were held back since then
    held: bool,
}

impl FailureWindow {
    /// Whether a pass's decisions go now; `failures_only`: it placed nothing.
    fn admit(&mut self, failures_only: bool, now: Instant) -> bool {
        if !failures_only {
            return true;
        }
        if self.proposed_at.is_some_and(|at| now < at + FAILURES_EVERY) {
            self.held = true;
            return false;
        }
        (self.proposed_at, self.held) = (Some(now), false);
        true
    }

    /// How long until the next pass at the latest: the end of the window when failures wait.
    fn next_pass_in(&self, now: Instant) -> Duration {
        match self.proposed_at.filter(|_| self.held) {
            Some(at) => (at + FAILURES_EVERY).saturating_duration_since(now),
            None => RETRY_TICK,
        }
    }
}

pub async fn run(node: RaftNode, hub: Arc<Hub>) {
    use crate::metrics as M;
    let mut failures = FailureWindow::default();
    loop {
        let wake = failures.next_pass_in(Instant::now());
        tokio::select! {
            _ = hub.schedule.notified() => {}
            _ = tokio::time::sleep(wake) => {}
        }
        if !node.is_leader() {
            continue;
        }
        // Place as long as there is work: each pass waits for its own entry to be reflected.
        loop {
            hub.caught_up().await;
            hub.drop_tentative();
            let (instances, runs) = hub.with_fleet(|f| (plan(f), plan_runs(f)));
            // Failures alone, too soon after the last: not proposed now. The instances stay
            // untried (no error recorded), so the pass at the window's end finds them again.
            let instances = instances.filter(|cmd| failures.admit(cmd.placements.is_empty(), Instant::now()));
            if instances.is_none() && runs.is_none() {
                break;
            }
            let mut progressed = false;
            if let Some(cmd) = instances {
                let (placed, failed) = (cmd.placements.len() as u64, cmd.failures.len() as u64);
                let applied = propose(&node, pb::command::Kind::PlaceActualLrps(cmd)).await;
                if applied {
                    metrics::counter!(M::SCHEDULER_PLACEMENTS, "kind" => "instance").increment(placed);
                    metrics::counter!(M::SCHEDULER_PLACEMENT_FAILURES, "kind" => "instance").increment(failed);
                }
                progressed |= applied && placed > 0;
            }
            if let Some(cmd) = runs {
                let placed = cmd.placements.len() as u64;
                let applied = propose(&node, pb::command::Kind::PlaceTaskRuns(cmd)).await;
                if applied {
                    metrics::counter!(M::SCHEDULER_PLACEMENTS, "kind" => "task_run").increment(placed);
                }
                progressed |= applied;
            }
            if !progressed {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(id: &str, pool: &str, memory_mb: i32) -> pb::Cell {
        pb::Cell {
            cell_id: id.into(),
            pool: pool.into(),
            capacity: Some(pb::CellCapacity {
                memory_mb,
                disk_mb: 1000,
                containers: 100,
            }),
            ..Default::default()
        }
    }

    fn queued(id: &str, pool: &str, memory: i32, queued_at: i64) -> pb::TaskRun {
        pb::TaskRun {
            run_id: id.into(),
            definition_id: "def".into(),
            cluster_name: pool.into(),
            memory,
            queued_at,
            status: pb::TaskRunStatus::Queued as i32,
            ..Default::default()
        }
    }

    fn placed(cmd: Option<pb::PlaceTaskRuns>) -> Vec<(String, String)> {
        cmd.map(|c| c.placements.into_iter().map(|p| (p.run_id, p.cell_id)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn an_instance_that_found_no_room_is_tried_again_only_once_capacity_changes() {
        let mut f = Fleet::default();
        f.desired.insert(
            "web".into(),
            Res {
                memory_mb: 500,
                disk_mb: 10,
                rootfs: "preloaded:cflinuxfs4".into(),
            },
        );
        let waiting = |error: &str| super::super::hub::Waiting {
            epoch: "e".into(),
            placement_error: error.into(),
        };
        f.unclaimed.insert(("web".into(), 0), waiting(""));
        // No cell: the failure is proposed.
        let first = plan(&mut f).expect("a failure");
        assert_eq!(first.failures.iter().map(|x| x.index).collect::<Vec<_>>(), [0]);
        // Applied with an error of its own; the fleet has not changed since that pass, so the
        // instance is not tried again (were it tried, its error would be proposed anew), while
        // a newly waiting instance is.
        f.unclaimed
            .insert(("web".into(), 0), waiting("an error from an earlier fleet"));
        f.unclaimed.insert(("web".into(), 1), waiting(""));
        let second = plan(&mut f).expect("the new instance's failure");
        assert_eq!(second.failures.iter().map(|x| x.index).collect::<Vec<_>>(), [1]);
        f.unclaimed
            .insert(("web".into(), 1), waiting(&second.failures[0].error));
        assert!(plan(&mut f).is_none());
        // A cell appears: both are tried again, and placed.
        let mut c = cell("a", "default", 1000);
        c.preloaded_stacks = vec!["cflinuxfs4".into()];
        f.cell(&c);
        let placed = plan(&mut f).expect("placements");
        assert_eq!(placed.placements.len(), 2);
        assert!(placed.failures.is_empty());
    }

    #[test]
    fn failures_alone_are_proposed_at_most_once_a_window_and_placements_always() {
        let t0 = Instant::now();
        let mut w = FailureWindow::default();
        assert_eq!(w.next_pass_in(t0), RETRY_TICK);
        assert!(w.admit(true, t0), "the first failures go at once");
        assert!(!w.admit(true, t0 + FAILURES_EVERY / 2), "the next ones wait");
        assert_eq!(
            w.next_pass_in(t0 + FAILURES_EVERY / 2),
            FAILURES_EVERY / 2,
            "a pass at the window's end"
        );
        assert!(w.admit(false, t0 + FAILURES_EVERY / 2), "placements never wait");
        assert!(
            w.admit(true, t0 + FAILURES_EVERY),
            "the held ones go when the window ends"
        );
        assert_eq!(
            w.next_pass_in(t0 + FAILURES_EVERY),
            RETRY_TICK,
            "nothing is held any more"
        );
    }

    #[test]
    fn runs_are_placed_first_come_first_served_in_their_pool_and_wait_when_full() {
        let mut f = Fleet::default();
        f.cell(&cell("a", "default", 1000));
        f.cell(&cell("g", "gpu", 4000));
        f.run(&queued("late", "default", 600, 20));
        f.run(&queued("early", "default", 600, 10));
        f.run(&queued("small", "default", 100, 30));
        f.run(&queued("gpu-1", "gpu", 3000, 40));
        // early fits; late (600) does not any more; small (100) still does; gpu goes to its own pool.
        let mut got = placed(plan_runs(&mut f));
        got.sort();
        assert_eq!(
            got,
            [
                ("early".into(), "a".into()),
                ("gpu-1".into(), "g".into()),
                ("small".into(), "a".into())
            ]
        );
        // Applied (the scheduler plans again only once the hub reflects its entry).
        let mut early = queued("early", "default", 600, 10);
        early.status = pb::TaskRunStatus::Pending as i32;
        early.cell_id = "a".into();
        early.attempt = 1;
        f.drop_tentative();
        f.run(&early);
        let mut small = queued("small", "default", 100, 30);
        small.status = pb::TaskRunStatus::Running as i32;
        small.cell_id = "a".into();
        small.attempt = 1;
        f.run(&small);
        let mut gpu = queued("gpu-1", "gpu", 3000, 40);
        gpu.status = pb::TaskRunStatus::Pending as i32;
        gpu.cell_id = "g".into();
        gpu.attempt = 1;
        f.run(&gpu);
        assert_eq!(placed(plan_runs(&mut f)), vec![], "a is full while early runs");
        early.status = pb::TaskRunStatus::Stopped as i32;
        f.run(&early);
        assert_eq!(placed(plan_runs(&mut f)), vec![("late".into(), "a".into())]);
    }

    #[test]
    fn thousands_of_runs_that_cannot_fit_cost_one_scan_and_no_entry() {
        let mut f = Fleet::default();
        f.cell(&cell("a", "default", 100));
        for i in 0..5_000 {
            f.run(&queued(&format!("r{i:05}"), "default", 200, i));
        }
        assert!(plan_runs(&mut f).is_none(), "nothing is proposed while nothing fits");
        assert_eq!(f.queued.len(), 5_000, "and every run still waits");
    }
}
