//! Task-run commands: the scheduler's placements, the cells' reports, a stop, and what a lost
//! cell means for the runs on it. Every transition goes through `rules::run_lifecycle`; a
//! placement or report that names a run which has moved on (another attempt, another cell, a
//! status it cannot leave) is stale and skipped, so late or duplicate decisions are harmless.

use std::collections::BTreeMap;

use super::events::ev;
use super::{reject, Ctx, Decision, ViewRead};
use crate::pb;
use crate::run_lifecycle;
use pb::{event::Kind as Ev, RejectionKind, TaskRunReportKind as K};

pub fn not_found(run_id: &str) -> pb::Rejection {
    reject(RejectionKind::RunNotFound, format!("Run with id {run_id} not found"))
}

/// The runs an entry has changed so far (a batch may name a run twice) and their events.
struct Changes<'v, V> {
    view: &'v V,
    runs: BTreeMap<String, pb::TaskRun>,
    events: Vec<pb::Event>,
}

impl<'v, V: ViewRead> Changes<'v, V> {
    fn new(view: &'v V) -> Self {
        Self {
            view,
            runs: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    fn run(&self, run_id: &str) -> Result<Option<pb::TaskRun>, V::Error> {
        match self.runs.get(run_id) {
            Some(r) => Ok(Some(r.clone())),
            None => self.view.task_run(run_id),
        }
    }

    fn changed(&mut self, before: pb::TaskRun, after: pb::TaskRun) {
        self.runs.insert(after.run_id.clone(), after.clone());
        self.events.push(changed(before, after));
    }
}

pub fn changed(before: pb::TaskRun, after: pb::TaskRun) -> pb::Event {
    ev(Ev::TaskRunChanged(pb::TaskRunChanged {
        before: Some(before),
        after: Some(after),
    }))
}

/// Places runs on cells: each QUEUED/NEEDS_RETRY run at the attempt the scheduler saw, on a cell
/// that is still registered, becomes PENDING there.
pub fn place<V: ViewRead>(view: &V, c: &pb::PlaceTaskRuns) -> Result<Decision, V::Error> {
    let mut changes = Changes::new(view);
    for p in &c.placements {
        let Some(run) = changes.run(&p.run_id)? else { continue };
        if run.attempt != p.attempt {
            continue;
        }
        let Some(cell) = view.cell(&p.cell_id)? else { continue };
        let Ok(mut next) = run_lifecycle::place(&run, &p.cell_id) else {
            continue;
        };
        next.cell_address = cell.address.clone();
        next.log_addr = cell.api_addr.clone();
        changes.changed(run, next);
    }
    Ok(Ok(changes.events))
}

/// A cell's reports about its runs: started, exited (with the code), or could not start.
pub fn report<V: ViewRead>(view: &V, c: &pb::ReportTaskRuns, cx: &Ctx) -> Result<Decision, V::Error> {
    let mut changes = Changes::new(view);
    for r in &c.reports {
        let Some(run) = changes.run(&r.run_id)? else { continue };
        if run.attempt != r.attempt || run.cell_id != r.cell_id {
            continue;
        }
        let next = match K::try_from(r.kind).unwrap_or(K::Unspecified) {
            K::Started => run_lifecycle::start(&run, &r.cell_id, cx.now),
            K::Exited => run_lifecycle::exit(&run, &r.cell_id, r.exit_code, &r.reason, cx.now).map(|mut next| {
                if next.receptor.is_some() && r.exit_code == 0 {
                    next.result = crate::receptor_tasks::bounded_result(&r.result);
                }
                next
            }),
            K::NotStarted => run_lifecycle::retry(&run, &r.reason, cx.now),
            K::Unspecified => continue,
        };
        if let Ok(next) = next {
            changes.changed(run, next);
        }
    }
    Ok(Ok(changes.events))
}

/// Flotilla's stop. A run already STOPPED (or already asked to stop) changes nothing.
pub fn stop<V: ViewRead>(view: &V, c: &pb::StopTaskRun, cx: &Ctx) -> Result<Decision, V::Error> {
    let Some(run) = view.task_run(&c.run_id)? else {
        return Ok(Err(not_found(&c.run_id)));
    };
    Ok(match run_lifecycle::stop(&run, cx.now) {
        Ok(None) => Ok(vec![]),
        Ok(Some(next)) => Ok(vec![changed(run, next)]),
        Err(why) => Err(reject(RejectionKind::InvalidRequest, why)),
    })
}

/// The runs on a cell that is gone: each is retried elsewhere (or STOPPED after its last
/// attempt, or at once when a stop was asked for).
pub fn lost_with_cell<V: ViewRead>(view: &V, cell_id: &str, cx: &Ctx) -> Result<Vec<pb::Event>, V::Error> {
    let mut events = Vec::new();
    for run in view.task_runs_on_cell(cell_id)? {
        if let Ok(next) = run_lifecycle::retry(&run, &format!("cell {cell_id} was lost"), cx.now) {
            events.push(changed(run, next));
        }
    }
    Ok(events)
}

/// Whether any cell of `pool` could ever take a run needing `memory_mb` (its whole capacity).
pub fn pool_can_run(cells: &[pb::Cell], pool: &str, memory_mb: i32) -> bool {
    cells.iter().any(|c| {
        let cap = c.capacity.unwrap_or_default();
        c.pool == pool && cap.containers > 0 && cap.memory_mb >= memory_mb.max(0)
    })
}
