//! The task-run lifecycle (spec/flotilla.md §3, DECISIONS "Flotilla"): one small function per
//! transition, each refusing what the status does not allow. Status is monotonic: QUEUED →
//! PENDING (placed on a cell) → RUNNING → STOPPED; a run that could not start or lost its cell is
//! NEEDS_RETRY, which the scheduler places again like QUEUED, at most [`ATTEMPTS_MAX`] times in
//! all; nothing leaves STOPPED. Stop: a QUEUED (or NEEDS_RETRY) run is STOPPED at once; one on a
//! cell is marked and the cell kills it and reports the exit; a STOPPED one is left as it is.
//! `stop_requested` records that a stop was asked for, whichever way the run then ended.
//!
//! `ExecuteTask` and `DesireTask` queue runs; `PlaceTaskRuns`, `ReportTaskRuns`, `StopTaskRun` and
//! a cell's removal move them, always through these functions.

use crate::pb::{self, TaskRunStatus as S};

/// Placements a run may have in all before it is STOPPED instead of retried.
pub const ATTEMPTS_MAX: u32 = 3;

/// Why a transition is refused.
pub type Refusal = &'static str;

fn status(r: &pb::TaskRun) -> S {
    S::try_from(r.status).unwrap_or(S::Unspecified)
}

/// The cell a run is on now: placed and not yet STOPPED (a STOPPED run keeps its cell id for its
/// logs, but no longer counts as on the cell).
pub fn on_cell(r: &pb::TaskRun) -> Option<&str> {
    let active = matches!(
        pb::TaskRunStatus::try_from(r.status),
        Ok(pb::TaskRunStatus::Pending | pb::TaskRunStatus::Running)
    );
    (active && !r.cell_id.is_empty()).then_some(r.cell_id.as_str())
}

/// Places a QUEUED or NEEDS_RETRY run on a cell: PENDING, one more attempt.
pub fn place(r: &pb::TaskRun, cell_id: &str) -> Result<pb::TaskRun, Refusal> {
    if !matches!(status(r), S::Queued | S::NeedsRetry) {
        return Err("only a queued run is placed");
    }
    if r.attempt >= ATTEMPTS_MAX {
        return Err("the run has used all its attempts");
    }
    let mut next = r.clone();
    next.status = S::Pending as i32;
    next.cell_id = cell_id.to_owned();
    next.attempt += 1;
    Ok(next)
}

/// The cell started it: PENDING → RUNNING, reported by the cell it is on.
pub fn start(r: &pb::TaskRun, cell_id: &str, now: i64) -> Result<pb::TaskRun, Refusal> {
    if status(r) != S::Pending || r.cell_id != cell_id {
        return Err("only a pending run on this cell starts");
    }
    let mut next = r.clone();
    next.status = S::Running as i32;
    next.started_at = now;
    Ok(next)
}

/// It exited (or was killed after a stop): STOPPED with its exit code, reported by its cell.
pub fn exit(r: &pb::TaskRun, cell_id: &str, exit_code: i32, reason: &str, now: i64) -> Result<pb::TaskRun, Refusal> {
    if !matches!(status(r), S::Pending | S::Running) || r.cell_id != cell_id {
        return Err("only a run on this cell exits");
    }
    let mut next = r.clone();
    next.status = S::Stopped as i32;
    next.exit_code = Some(exit_code);
    next.exit_reason = if r.stop_requested && reason.is_empty() {
        "Task was stopped".to_owned()
    } else {
        reason.to_owned()
    };
    if next.started_at == 0 {
        next.started_at = now;
    }
    next.finished_at = now;
    Ok(next)
}

/// It could not start on its cell, or its cell was lost: NEEDS_RETRY while attempts remain (a stop
/// asked for meanwhile wins), else STOPPED with the reason.
pub fn retry(r: &pb::TaskRun, reason: &str, now: i64) -> Result<pb::TaskRun, Refusal> {
    if !matches!(status(r), S::Pending | S::Running) {
        return Err("only a run on a cell is retried");
    }
    let mut next = r.clone();
    next.cell_id.clear();
    next.exit_reason = reason.to_owned();
    if r.stop_requested || r.attempt >= ATTEMPTS_MAX {
        next.status = S::Stopped as i32;
        next.finished_at = now;
        if !r.stop_requested {
            next.exit_reason = format!("{reason} (gave up after {} attempts)", r.attempt);
        }
    } else {
        next.status = S::NeedsRetry as i32;
    }
    Ok(next)
}

/// A stop. `Ok(None)`: nothing to change (already STOPPED, or already asked for).
pub fn stop(r: &pb::TaskRun, now: i64) -> Result<Option<pb::TaskRun>, Refusal> {
    match status(r) {
        S::Stopped => Ok(None),
        S::Queued | S::NeedsRetry => {
            let mut next = r.clone();
            next.status = S::Stopped as i32;
            next.stop_requested = true;
            next.exit_reason = "Task was stopped before it ran".to_owned();
            next.finished_at = now;
            Ok(Some(next))
        }
        S::Pending | S::Running if r.stop_requested => Ok(None),
        S::Pending | S::Running => {
            let mut next = r.clone();
            next.stop_requested = true;
            Ok(Some(next))
        }
        S::Unspecified => Err("the run has no status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: S) -> pb::TaskRun {
        pb::TaskRun {
            run_id: "r".into(),
            status: s as i32,
            cell_id: if matches!(s, S::Pending | S::Running) {
                "c1".into()
            } else {
                String::new()
            },
            attempt: u32::from(matches!(s, S::Pending | S::Running | S::NeedsRetry)),
            ..Default::default()
        }
    }

    const ALL: [S; 5] = [S::Queued, S::Pending, S::Running, S::Stopped, S::NeedsRetry];

    fn after(r: Result<pb::TaskRun, Refusal>) -> Option<S> {
        r.ok().map(|r| status(&r))
    }

    /// Every (status, transition) pair: what it leads to, or refused (`None`).
    #[test]
    fn transition_table() {
        for from in ALL {
            let r = run(from);
            let expected_place = matches!(from, S::Queued | S::NeedsRetry).then_some(S::Pending);
            assert_eq!(after(place(&r, "c1")), expected_place, "place from {from:?}");
            assert_eq!(
                after(start(&r, "c1", 5)),
                (from == S::Pending).then_some(S::Running),
                "start from {from:?}"
            );
            let on_cell = matches!(from, S::Pending | S::Running);
            assert_eq!(
                after(exit(&r, "c1", 0, "", 5)),
                on_cell.then_some(S::Stopped),
                "exit from {from:?}"
            );
            assert_eq!(
                after(retry(&r, "lost", 5)),
                on_cell.then_some(S::NeedsRetry),
                "retry from {from:?}"
            );
            let stopped = stop(&r, 5).ok().map(|o| o.map(|r| (status(&r), r.stop_requested)));
            let expected_stop = match from {
                S::Stopped => Some(None),
                S::Queued | S::NeedsRetry => Some(Some((S::Stopped, true))),
                _ => Some(Some((from, true))),
            };
            assert_eq!(stopped, expected_stop, "stop from {from:?}");
        }
    }

    #[test]
    fn only_the_cell_a_run_is_on_reports_for_it() {
        let r = run(S::Pending);
        assert!(start(&r, "c2", 1).is_err());
        assert!(exit(&r, "c2", 0, "", 1).is_err());
    }

    #[test]
    fn exits_record_code_reason_and_times() {
        let r = start(&run(S::Pending), "c1", 10).expect("start");
        let done = exit(&r, "c1", 3, "Exited with status 3", 20).expect("exit");
        assert_eq!((done.exit_code, done.started_at, done.finished_at), (Some(3), 10, 20));
        assert_eq!(done.exit_reason, "Exited with status 3");
    }

    #[test]
    fn retries_are_bounded_and_a_stop_wins() {
        let mut r = run(S::Queued);
        for attempt in 1..=ATTEMPTS_MAX {
            r = place(&r, "c1").expect("place");
            assert_eq!(r.attempt, attempt);
            r = retry(&r, "cell lost", 9).expect("retry");
        }
        assert_eq!(status(&r), S::Stopped, "gave up after {ATTEMPTS_MAX} attempts");
        assert!(r.exit_reason.contains("gave up"), "{}", r.exit_reason);
        assert!(place(&r, "c1").is_err(), "nothing leaves STOPPED");

        let on_cell = place(&run(S::Queued), "c1").expect("place");
        let asked = stop(&on_cell, 3).expect("stop").expect("changed");
        assert!(asked.stop_requested && status(&asked) == S::Pending);
        assert_eq!(stop(&asked, 4).expect("stop"), None, "asking twice changes nothing");
        let lost = retry(&asked, "cell lost", 5).expect("retry");
        assert_eq!(status(&lost), S::Stopped, "a run asked to stop is not retried");
        let killed = exit(&asked, "c1", 137, "", 6).expect("exit");
        assert_eq!(killed.exit_reason, "Task was stopped");
    }
}
