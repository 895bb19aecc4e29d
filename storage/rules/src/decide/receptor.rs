//! Receptor task commands: create (a run carrying the task; a task no cell could ever fit is
//! COMPLETED failed at once, as Diego's auctioneer does), delete (resolve) a COMPLETED one, and
//! mark one RESOLVING while its completion callback is delivered. Cancel is `StopTaskRun`, and
//! placement, reports and cell loss are the runs' own commands (`runs.rs`).

use super::events::ev;
use super::{reject, Ctx, Decision, ViewRead};
use crate::pb;
use crate::receptor_tasks::{self, INSUFFICIENT_RESOURCES};
use pb::{event::Kind as Ev, RejectionKind, TaskRunStatus as S};

pub fn not_found(task_guid: &str) -> pb::Rejection {
    reject(
        RejectionKind::TaskNotFound,
        format!("task with guid '{task_guid}' not found"),
    )
}

/// The task, if `task_guid` names a Receptor task (a Flotilla run is not one).
fn task<V: ViewRead>(view: &V, task_guid: &str) -> Result<Option<pb::TaskRun>, V::Error> {
    Ok(view.task_run(task_guid)?.filter(|r| r.receptor.is_some()))
}

pub fn desire<V: ViewRead>(view: &V, c: &pb::DesireTask, cx: &Ctx) -> Result<Decision, V::Error> {
    if let Err(msg) = receptor_tasks::validate(c) {
        return Ok(Err(reject(RejectionKind::InvalidTask, msg)));
    }
    if view.task_run(&c.task_guid)?.is_some() {
        return Ok(Err(reject(RejectionKind::TaskGuidAlreadyExists, "task already exists")));
    }
    let mut t = c.task.clone().unwrap_or_default();
    t.created_at = cx.now;
    let fits = receptor_tasks::any_cell_fits(&view.cells()?, &t.rootfs, c.memory_mb, t.disk_mb);
    let mut run = pb::TaskRun {
        run_id: c.task_guid.clone(),
        image: t.rootfs.clone(),
        memory: c.memory_mb,
        env: c.env.clone(),
        status: S::Queued as i32,
        queued_at: cx.now,
        receptor: Some(t),
        ..Default::default()
    };
    if !fits {
        run.status = S::Stopped as i32;
        run.finished_at = cx.now;
        run.exit_reason = INSUFFICIENT_RESOURCES.to_owned();
    }
    Ok(Ok(vec![ev(Ev::TaskRunQueued(pb::TaskRunQueued { run: Some(run) }))]))
}

/// Delete: only a COMPLETED (or RESOLVING) task goes; it is gone from every view.
pub fn resolve<V: ViewRead>(view: &V, c: &pb::ResolveTask) -> Result<Decision, V::Error> {
    let Some(run) = task(view, &c.task_guid)? else {
        return Ok(Err(not_found(&c.task_guid)));
    };
    if run.status != S::Stopped as i32 {
        return Ok(Err(reject(
            RejectionKind::TaskNotDeletable,
            "This task has not been completed. Please retry when it is completed.",
        )));
    }
    Ok(Ok(vec![ev(Ev::TaskRunRemoved(pb::TaskRunRemoved { run: Some(run) }))]))
}

/// COMPLETED → RESOLVING (a task already resolving, or gone, changes nothing).
pub fn mark_resolving<V: ViewRead>(view: &V, c: &pb::MarkTaskResolving) -> Result<Decision, V::Error> {
    let Some(run) = task(view, &c.task_guid)? else {
        return Ok(Ok(vec![]));
    };
    if run.status != S::Stopped as i32 || run.resolving {
        return Ok(Ok(vec![]));
    }
    let mut next = run.clone();
    next.resolving = true;
    Ok(Ok(vec![super::runs::changed(run, next)]))
}
