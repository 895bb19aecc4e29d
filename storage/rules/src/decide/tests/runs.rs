//! Decide for Flotilla runs and Receptor tasks: execute, placement, reports, stop, a lost cell,
//! and the Receptor task commands, against the in-memory view of `mod.rs`.

use super::*;

#[test]
fn execute_queues_a_run_with_the_definition_snapshot_and_flotilla_env() {
    let m = Mem::default();
    let mut create = definition("job");
    if let pb::command::Kind::CreateTaskDefinition(c) = &mut create {
        if let Some(d) = c.definition.as_mut() {
            d.env = vec![
                pb::EnvironmentVariable {
                    name: "A".into(),
                    value: "1".into(),
                },
                pb::EnvironmentVariable {
                    name: "B".into(),
                    value: "2".into(),
                },
            ];
        }
    }
    assert!(m.run(1, create).is_ok());
    pool_cell(&m, "c1", "default", 1024);
    let id = m.defs.borrow().keys().next().cloned().unwrap_or_default();
    let execute = |overrides: Vec<(&str, &str)>| {
        pb::command::Kind::ExecuteTask(pb::ExecuteTask {
            definition_id: id.clone(),
            cluster_name: String::new(),
            env_overrides: overrides
                .into_iter()
                .map(|(n, v)| pb::EnvironmentVariable {
                    name: n.into(),
                    value: v.into(),
                })
                .collect(),
        })
    };
    let events = m
        .run(2, execute(vec![("B", "override"), ("C", "3")]))
        .unwrap_or_default();
    let Some(Ev::TaskRunQueued(q)) = events.first().and_then(|e| e.kind.clone()) else {
        panic!("no run queued: {events:?}");
    };
    let run = q.run.unwrap_or_default();
    assert_eq!(run.status, pb::TaskRunStatus::Queued as i32);
    assert_eq!(
        (run.cluster_name.as_str(), run.queued_at, run.command.as_str()),
        ("default", 2000, "echo hi")
    );
    let env: Vec<(String, String)> = run.env.iter().map(|e| (e.name.clone(), e.value.clone())).collect();
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "A",
            "B",
            "C",
            "FLOTILLA_RUN_ID",
            "FLOTILLA_SERVER_MODE",
            "FLOTILLA_RUN_OWNER_ID"
        ]
    );
    assert_eq!(env[1].1, "override");
    assert_eq!(env[3].1, run.run_id);
    assert_eq!(
        kind(&m.run(3, execute(vec![("FLOTILLA_RUN_ID", "x")]))),
        RejectionKind::ReservedEnv as i32
    );
    let missing = pb::command::Kind::ExecuteTask(pb::ExecuteTask {
        definition_id: "nope".into(),
        ..Default::default()
    });
    assert_eq!(kind(&m.run(4, missing)), RejectionKind::DefinitionNotFound as i32);
}

fn pool_cell(m: &Mem, id: &str, pool: &str, memory_mb: i32) {
    let cell = pb::Cell {
        cell_id: id.into(),
        pool: pool.into(),
        address: "10.0.0.1".into(),
        api_addr: "10.0.0.1:7071".into(),
        capacity: Some(pb::CellCapacity {
            memory_mb,
            disk_mb: 1000,
            containers: 10,
        }),
        ..Default::default()
    };
    assert!(m
        .run(
            100,
            pb::command::Kind::RegisterCell(pb::RegisterCell { cell: Some(cell) })
        )
        .is_ok());
}

/// A definition "job" (512 MB) and one queued run of it on `cluster`; the run's id.
fn queued_run(m: &Mem, cluster: &str) -> String {
    if m.defs.borrow().is_empty() {
        assert!(m.run(1, definition("job")).is_ok());
    }
    let id = m.defs.borrow().keys().next().cloned().unwrap_or_default();
    let before: Vec<String> = m.runs.borrow().keys().cloned().collect();
    let seed = 10 + before.len() as u64;
    let d = m.run(
        seed,
        pb::command::Kind::ExecuteTask(pb::ExecuteTask {
            definition_id: id,
            cluster_name: cluster.into(),
            env_overrides: vec![],
        }),
    );
    assert!(d.is_ok(), "{d:?}");
    let after = m.runs.borrow();
    after.keys().find(|k| !before.contains(k)).cloned().unwrap_or_default()
}

fn run_of(m: &Mem, id: &str) -> pb::TaskRun {
    m.runs.borrow().get(id).cloned().unwrap_or_default()
}

fn status_of(m: &Mem, id: &str) -> pb::TaskRunStatus {
    pb::TaskRunStatus::try_from(run_of(m, id).status).unwrap_or(pb::TaskRunStatus::Unspecified)
}

fn place_run(m: &Mem, id: &str, cell: &str) -> Decision {
    let attempt = run_of(m, id).attempt;
    m.run(
        200,
        pb::command::Kind::PlaceTaskRuns(pb::PlaceTaskRuns {
            placements: vec![pb::TaskRunPlacement {
                run_id: id.into(),
                attempt,
                cell_id: cell.into(),
            }],
        }),
    )
}

fn report_run(m: &Mem, id: &str, kind: pb::TaskRunReportKind, exit_code: i32) -> Decision {
    let r = run_of(m, id);
    m.run(
        300,
        pb::command::Kind::ReportTaskRuns(pb::ReportTaskRuns {
            reports: vec![pb::TaskRunReport {
                run_id: id.into(),
                cell_id: r.cell_id,
                attempt: r.attempt,
                kind: kind as i32,
                exit_code,
                reason: String::new(),
                result: String::new(),
            }],
        }),
    )
}

#[test]
fn execute_refuses_a_cluster_no_cell_could_ever_fit() {
    let m = Mem::default();
    assert!(m.run(1, definition("job")).is_ok());
    let id = m.defs.borrow().keys().next().cloned().unwrap_or_default();
    let exec = |cluster: &str| {
        pb::command::Kind::ExecuteTask(pb::ExecuteTask {
            definition_id: id.clone(),
            cluster_name: cluster.into(),
            env_overrides: vec![],
        })
    };
    let refused = m.run(2, exec("default"));
    assert_eq!(
        kind(&refused),
        RejectionKind::ClusterCannotRun as i32,
        "no cells at all"
    );
    assert_eq!(
        refused.err().map(|r| r.message),
        Some(format!("definition [{id}] cannot be run on cluster [default]"))
    );
    pool_cell(&m, "small", "default", 256);
    assert_eq!(
        kind(&m.run(3, exec("default"))),
        RejectionKind::ClusterCannotRun as i32,
        "too small"
    );
    pool_cell(&m, "big", "gpu", 4096);
    assert_eq!(
        kind(&m.run(4, exec("default"))),
        RejectionKind::ClusterCannotRun as i32,
        "other pool"
    );
    assert!(m.run(5, exec("gpu")).is_ok());
}

#[test]
fn a_run_goes_queued_pending_running_stopped_through_place_and_reports() {
    let m = Mem::default();
    pool_cell(&m, "c1", "default", 1024);
    let id = queued_run(&m, "");
    assert_eq!(status_of(&m, &id), pb::TaskRunStatus::Queued);
    assert!(place_run(&m, &id, "c1").is_ok());
    let placed = run_of(&m, &id);
    assert_eq!(status_of(&m, &id), pb::TaskRunStatus::Pending);
    assert_eq!(
        (
            placed.cell_id.as_str(),
            placed.attempt,
            placed.cell_address.as_str(),
            placed.log_addr.as_str()
        ),
        ("c1", 1, "10.0.0.1", "10.0.0.1:7071")
    );
    // A second placement of the same attempt is stale: nothing changes.
    assert_eq!(place_run(&m, &id, "c1").map(|e| e.len()), Ok(0));
    assert!(report_run(&m, &id, pb::TaskRunReportKind::Started, 0).is_ok());
    assert_eq!(status_of(&m, &id), pb::TaskRunStatus::Running);
    assert_eq!(run_of(&m, &id).started_at, 300_000);
    assert!(report_run(&m, &id, pb::TaskRunReportKind::Exited, 3).is_ok());
    let done = run_of(&m, &id);
    assert_eq!(
        (done.status, done.exit_code),
        (pb::TaskRunStatus::Stopped as i32, Some(3))
    );
    // A report for another cell or attempt is skipped.
    let other = queued_run(&m, "default");
    assert!(place_run(&m, &other, "c1").is_ok());
    let stale = m.run(
        301,
        pb::command::Kind::ReportTaskRuns(pb::ReportTaskRuns {
            reports: vec![pb::TaskRunReport {
                run_id: other.clone(),
                cell_id: "c2".into(),
                attempt: 1,
                kind: pb::TaskRunReportKind::Started as i32,
                ..Default::default()
            }],
        }),
    );
    assert_eq!(stale.map(|e| e.len()), Ok(0));
    // Placing on an unknown cell is skipped too.
    let third = queued_run(&m, "default");
    assert_eq!(place_run(&m, &third, "nope").map(|e| e.len()), Ok(0));
}

#[test]
fn stop_per_status_and_unknown_runs() {
    let m = Mem::default();
    pool_cell(&m, "c1", "default", 1024);
    let stop = |id: &str| {
        m.run(
            400,
            pb::command::Kind::StopTaskRun(pb::StopTaskRun { run_id: id.into() }),
        )
    };
    let queued = queued_run(&m, "");
    assert!(stop(&queued).is_ok());
    assert_eq!(status_of(&m, &queued), pb::TaskRunStatus::Stopped);
    assert_eq!(
        stop(&queued).map(|e| e.len()),
        Ok(0),
        "stopping a STOPPED run is a no-op"
    );

    let running = queued_run(&m, "");
    assert!(place_run(&m, &running, "c1").is_ok());
    assert!(report_run(&m, &running, pb::TaskRunReportKind::Started, 0).is_ok());
    assert!(stop(&running).is_ok());
    let asked = run_of(&m, &running);
    assert!(asked.stop_requested && asked.status == pb::TaskRunStatus::Running as i32);
    assert!(report_run(&m, &running, pb::TaskRunReportKind::Exited, 143).is_ok());
    let killed = run_of(&m, &running);
    assert_eq!(
        (killed.exit_code, killed.exit_reason.as_str()),
        (Some(143), "Task was stopped")
    );

    assert_eq!(kind(&stop("nope")), RejectionKind::RunNotFound as i32);
}

#[test]
fn a_lost_cell_sends_its_runs_back_to_the_queue_in_the_same_entry() {
    let m = Mem::default();
    pool_cell(&m, "c1", "default", 1024);
    pool_cell(&m, "c2", "default", 1024);
    let id = queued_run(&m, "");
    assert!(place_run(&m, &id, "c1").is_ok());
    assert!(report_run(&m, &id, pb::TaskRunReportKind::Started, 0).is_ok());
    let removed = m
        .run(
            500,
            pb::command::Kind::RemoveCell(pb::RemoveCell {
                cell_id: "c1".into(),
                reason: "ttl".into(),
            }),
        )
        .unwrap_or_default();
    assert_eq!(removed.len(), 2, "CellRemoved and the run's change: {removed:?}");
    let r = run_of(&m, &id);
    assert_eq!(
        (r.status, r.cell_id.as_str()),
        (pb::TaskRunStatus::NeedsRetry as i32, "")
    );
    assert!(r.exit_reason.contains("c1"), "{}", r.exit_reason);
    // Placed again elsewhere: attempt 2.
    assert!(place_run(&m, &id, "c2").is_ok());
    assert_eq!(run_of(&m, &id).attempt, 2);
    // Could not start: back to NEEDS_RETRY; after the last attempt, STOPPED with the reason.
    assert!(report_run(&m, &id, pb::TaskRunReportKind::NotStarted, 0).is_ok());
    assert!(place_run(&m, &id, "c2").is_ok());
    assert!(report_run(&m, &id, pb::TaskRunReportKind::NotStarted, 0).is_ok());
    assert_eq!(status_of(&m, &id), pb::TaskRunStatus::Stopped);
}

fn receptor_task(guid: &str, memory_mb: i32) -> pb::command::Kind {
    pb::command::Kind::DesireTask(pb::DesireTask {
        task_guid: guid.into(),
        memory_mb,
        env: vec![],
        task: Some(pb::ReceptorTask {
            domain: "d".into(),
            rootfs: "preloaded:cflinuxfs4".into(),
            action: lrp(1).action,
            ..Default::default()
        }),
    })
}

#[test]
fn receptor_tasks_are_runs_created_resolved_and_marked_resolving() {
    let m = Mem::default();
    let cell = pb::Cell {
        cell_id: "c1".into(),
        preloaded_stacks: vec!["cflinuxfs4".into()],
        capacity: Some(pb::CellCapacity {
            memory_mb: 1024,
            disk_mb: 1024,
            containers: 4,
        }),
        ..Default::default()
    };
    assert!(m
        .run(
            1,
            pb::command::Kind::RegisterCell(pb::RegisterCell { cell: Some(cell) })
        )
        .is_ok());
    assert!(m.run(2, receptor_task("t1", 64)).is_ok());
    let t = run_of(&m, "t1");
    assert_eq!((t.status, t.queued_at), (pb::TaskRunStatus::Queued as i32, 2000));
    assert_eq!(t.receptor.as_ref().map(|r| r.created_at), Some(2000));
    assert_eq!(
        kind(&m.run(3, receptor_task("t1", 64))),
        RejectionKind::TaskGuidAlreadyExists as i32
    );
    let resolve = |g: &str| pb::command::Kind::ResolveTask(pb::ResolveTask { task_guid: g.into() });
    assert_eq!(kind(&m.run(4, resolve("t1"))), RejectionKind::TaskNotDeletable as i32);
    assert_eq!(kind(&m.run(4, resolve("nope"))), RejectionKind::TaskNotFound as i32);
    // Through the run lifecycle, with the result kept.
    assert!(place_run(&m, "t1", "c1").is_ok());
    assert!(report_run(&m, "t1", pb::TaskRunReportKind::Started, 0).is_ok());
    let r = run_of(&m, "t1");
    let exited = m.run(
        5,
        pb::command::Kind::ReportTaskRuns(pb::ReportTaskRuns {
            reports: vec![pb::TaskRunReport {
                run_id: "t1".into(),
                cell_id: r.cell_id,
                attempt: r.attempt,
                kind: pb::TaskRunReportKind::Exited as i32,
                exit_code: 0,
                reason: String::new(),
                result: "x".repeat(crate::limits::TASK_RESULT_BYTES_MAX + 10),
            }],
        }),
    );
    assert!(exited.is_ok());
    assert_eq!(
        run_of(&m, "t1").result.len(),
        crate::limits::TASK_RESULT_BYTES_MAX,
        "bounded"
    );
    let mark = pb::command::Kind::MarkTaskResolving(pb::MarkTaskResolving { task_guid: "t1".into() });
    assert_eq!(m.run(6, mark.clone()).map(|e| e.len()), Ok(1));
    assert!(run_of(&m, "t1").resolving);
    assert_eq!(m.run(7, mark).map(|e| e.len()), Ok(0), "marking twice changes nothing");
    let removed = m.run(8, resolve("t1")).unwrap_or_default();
    assert!(matches!(
        removed.first().and_then(|e| e.kind.clone()),
        Some(Ev::TaskRunRemoved(_))
    ));
    // A task no cell could ever fit is COMPLETED failed at once.
    assert!(m.run(9, receptor_task("huge", 4096)).is_ok());
    let huge = run_of(&m, "huge");
    assert_eq!(
        (huge.status, huge.exit_reason.as_str()),
        (pb::TaskRunStatus::Stopped as i32, "insufficient resources")
    );
    // A Flotilla run is not a Receptor task.
    pool_cell(&m, "c2", "default", 1024);
    let flotilla = queued_run(&m, "default");
    assert_eq!(kind(&m.run(10, resolve(&flotilla))), RejectionKind::TaskNotFound as i32);
}
