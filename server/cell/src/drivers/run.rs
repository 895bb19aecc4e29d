//! Task runs on a cell: run to exit, not supervised for health. The process driver runs a
//! Flotilla run's command with `sh -c` on the cell's host (the image is recorded, not used), and a
//! Receptor task's action tree on the host; the docker driver runs either in its image
//! (`drivers::docker::run_task`). Each reports STARTED once it runs, then EXITED with its exit code
//! (a Receptor task: 0, or 1 with the failure, and the content of its `result_file`); a stop
//! (cancel) is TERM, then KILL after the grace period, and is reported as the exit it caused.
//! What cannot be started is NOT_STARTED, which the control plane retries on another placement.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use capstan_proto::pb::{self, TaskRunReportKind as K};
use tokio::sync::{mpsc, oneshot};

use super::DriverCtx;
use crate::actions::{exit_code, Exec};
use crate::logs::LogFile;
use crate::reporter::Report;

/// A run's report of `kind` about the placement it was given.
pub fn report(run: &pb::TaskRun, kind: K, exit_code: i32, reason: impl Into<String>) -> Report {
    Report::Run(pb::TaskRunReport {
        run_id: run.run_id.clone(),
        cell_id: run.cell_id.clone(),
        attempt: run.attempt,
        kind: kind as i32,
        exit_code,
        reason: reason.into(),
        result: String::new(),
    })
}

/// Whether a run id is safe as a file name (it is a UUID the leader generated).
pub fn is_run_id(run_id: &str) -> bool {
    !run_id.is_empty() && run_id.len() <= 64 && run_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Where the log of one attempt of a run lives on its cell (each attempt is its own stream).
pub fn log_path(work_dir: &std::path::Path, run_id: &str, attempt: u32) -> PathBuf {
    work_dir.join("runs").join(format!("{run_id}.{attempt}.log"))
}

/// The reason an exit is reported with; empty after a stop (the lifecycle names it then).
pub fn exit_reason(code: i32, stopped: bool) -> String {
    match (stopped, code) {
        (true, _) => String::new(),
        (false, 0) => "Exited successfully".into(),
        (false, c) if c > 128 => format!("Exited on signal {}", c - 128),
        (false, c) => format!("Exited with status {c}"),
    }
}

/// Opens the run's log, reporting NOT_STARTED when it cannot.
pub async fn open_log(run: &pb::TaskRun, ctx: &DriverCtx, reports: &mpsc::Sender<Report>) -> Option<Arc<LogFile>> {
    if !is_run_id(&run.run_id) {
        let _ = reports
            .send(report(run, K::NotStarted, 0, "the run id is not a valid file name"))
            .await;
        return None;
    }
    match LogFile::create(&log_path(&ctx.work_dir, &run.run_id, run.attempt)) {
        Ok(log) => Some(log),
        Err(e) => {
            let _ = reports
                .send(report(
                    run,
                    K::NotStarted,
                    0,
                    format!("could not open the log file: {e}"),
                ))
                .await;
            None
        }
    }
}

/// Runs one task run as a host process until it exits or is cancelled (stopped).
pub async fn run_process(
    run: pb::TaskRun,
    ctx: DriverCtx,
    reports: mpsc::Sender<Report>,
    mut cancel: oneshot::Receiver<()>,
) {
    let Some(log) = open_log(&run, &ctx, &reports).await else {
        return;
    };
    let dir = ctx.work_dir.join("runs").join(&run.run_id);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        let reason = format!("could not create the run directory: {e}");
        let _ = reports.send(report(&run, K::NotStarted, 0, reason)).await;
        return;
    }
    let exec = Exec {
        env: run.env.iter().map(|e| (e.name.clone(), e.value.clone())).collect(),
        log: log.clone(),
        groups: Arc::new(Mutex::new(Vec::new())),
        default_dir: dir,
    };
    let action = pb::RunAction {
        path: "sh".into(),
        args: vec!["-c".into(), run.command.clone()],
        ..Default::default()
    };
    let started = match exec.spawn(&action) {
        Ok(s) => s,
        Err(e) => {
            log.line(&format!("[cell {}] {e}", ctx.cell_id));
            let _ = reports.send(report(&run, K::NotStarted, 0, e)).await;
            return;
        }
    };
    let _ = reports.send(report(&run, K::Started, 0, "")).await;
    let wait = started.wait();
    tokio::pin!(wait);
    let mut stopped = false;
    let status = tokio::select! {
        s = &mut wait => s,
        _ = &mut cancel => {
            stopped = true;
            // Reap while signalling: a group leader that died on TERM is a zombie until reaped,
            // and would look alive to the signaller for the whole grace period.
            let (status, ()) = tokio::join!(wait, exec.stop_all(ctx.stop_grace));
            status
        }
    };
    let (code, reason) = match status {
        Ok(s) => {
            let code = exit_code(s);
            (code, exit_reason(code, stopped))
        }
        Err(e) => (-1, format!("lost the process: {e}")),
    };
    if stopped {
        log.line(&format!("[cell {}] stopped (exit code {code})", ctx.cell_id));
    }
    let _ = reports.send(report(&run, K::Exited, code, reason)).await;
}

/// Runs a Receptor task's action tree on the host, in its own directory, until it ends or is
/// cancelled; a relative `result_file` is read from that directory.
pub async fn run_receptor_task(
    run: pb::TaskRun,
    ctx: DriverCtx,
    reports: mpsc::Sender<Report>,
    mut cancel: oneshot::Receiver<()>,
) {
    let task = run.receptor.clone().unwrap_or_default();
    let Some(log) = open_log(&run, &ctx, &reports).await else {
        return;
    };
    let dir = ctx.work_dir.join("runs").join(&run.run_id);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        let reason = format!("could not create the task directory: {e}");
        let _ = reports.send(report(&run, K::NotStarted, 0, reason)).await;
        return;
    }
    let Some(action) = task.action.clone() else {
        let _ = reports.send(report(&run, K::Exited, 1, "the task has no action")).await;
        return;
    };
    let exec = Exec {
        env: run.env.iter().map(|e| (e.name.clone(), e.value.clone())).collect(),
        log: log.clone(),
        groups: Arc::new(Mutex::new(Vec::new())),
        default_dir: dir.clone(),
    };
    let _ = reports.send(report(&run, K::Started, 0, "")).await;
    let outcome = {
        let main = exec.run(&action);
        tokio::pin!(main);
        tokio::select! {
            r = &mut main => Some(r),
            _ = &mut cancel => None,
        }
    };
    exec.stop_all(ctx.stop_grace).await;
    let exited = match outcome {
        // Cancelled: the lifecycle names the stop.
        None => report(&run, K::Exited, 1, ""),
        Some(Err(reason)) => report(&run, K::Exited, 1, reason),
        Some(Ok(())) => {
            let mut done = report(&run, K::Exited, 0, "");
            if let (Report::Run(r), false) = (&mut done, task.result_file.is_empty()) {
                r.result = read_result(&dir.join(&task.result_file));
            }
            done
        }
    };
    let _ = reports.send(exited).await;
}

/// The first bytes of a task's result file (an unreadable one reads as empty, as in Diego).
fn read_result(path: &std::path::Path) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let limit = capstan_rules::limits::TASK_RESULT_BYTES_MAX as u64;
        let _ = f.take(limit).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_and_safe_ids() {
        assert_eq!(exit_reason(0, false), "Exited successfully");
        assert_eq!(exit_reason(3, false), "Exited with status 3");
        assert_eq!(exit_reason(143, false), "Exited on signal 15");
        assert_eq!(exit_reason(143, true), "");
        assert!(is_run_id("5c042dbe-5895-465e-bb53-c53c07dcd5eb"));
        assert!(!is_run_id("../etc/passwd") && !is_run_id("") && !is_run_id("a/b"));
    }
}
