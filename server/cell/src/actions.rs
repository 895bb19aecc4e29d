//! Executes Diego actions on the host for the process driver: `run` (path, args, env, dir) in its
//! own process group, and the combinators `serial`, `parallel`, `codependent`, `try`, `timeout`,
//! `emit_progress`. Every process group started is recorded so the instance can be stopped.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_proto::pb::{self, action::Kind};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::AsyncReadExt;

use super::logs::LogFile;

/// What every action of one instance shares.
#[derive(Clone)]
pub struct Exec {
    /// `NAME=value` pairs: the DesiredLRP's env and the instance environment.
    pub env: Vec<(String, String)>,
    pub log: Arc<LogFile>,
    /// Process groups started by this instance (pgid = pid of the group leader).
    pub groups: Arc<Mutex<Vec<i32>>>,
    /// Working directory when an action names none.
    pub default_dir: PathBuf,
}

/// How long, after a process exited, its output may take to reach the log (a child it left
/// behind may hold the pipes open).
const OUTPUT_DRAIN_MAX: Duration = Duration::from_secs(2);

/// A process started for a `run` action, with the readers copying its output to the log.
pub struct Started {
    child: tokio::process::Child,
    pipes: Vec<tokio::task::JoinHandle<()>>,
}

impl Started {
    /// Waits for the exit, then (bounded) for the rest of its output to reach the log, so that
    /// whoever hears of the exit can read all of it.
    pub async fn wait(mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await?;
        let _ = tokio::time::timeout(OUTPUT_DRAIN_MAX, futures::future::join_all(self.pipes)).await;
        Ok(status)
    }
}

/// The exit code a shell would report: the code, or 128 + the signal that ended it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

fn pipe_to_log<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut r: R,
    log: Arc<LogFile>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => log.write(&buf[..n]),
            }
        }
    })
}

impl Exec {
    /// Runs an action to completion: `Ok` on success, `Err(reason)` on failure.
    pub fn run<'a>(&'a self, action: &'a pb::Action) -> BoxFuture<'a, Result<(), String>> {
        async move {
            match &action.kind {
                None => Err("empty action".to_owned()),
                Some(Kind::Run(r)) => self.run_process(r).await,
                Some(Kind::Download(_)) => Err("download actions are not supported by the process driver".into()),
                Some(Kind::Upload(_)) => Err("upload actions are not supported by the process driver".into()),
                Some(Kind::Serial(l)) => {
                    for a in &l.actions {
                        self.run(a).await?;
                    }
                    Ok(())
                }
                Some(Kind::Parallel(l)) => {
                    let results = futures::future::join_all(l.actions.iter().map(|a| self.run(a))).await;
                    results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
                }
                Some(Kind::Codependent(l)) => {
                    if l.actions.is_empty() {
                        return Ok(());
                    }
                    // Returns as soon as any child exits, always as a failure of the group.
                    let (first, _, _) = futures::future::select_all(l.actions.iter().map(|a| self.run(a))).await;
                    Err(match first {
                        Ok(()) => "a codependent action exited".to_owned(),
                        Err(e) => e,
                    })
                }
                Some(Kind::Try(t)) => {
                    if let Some(inner) = &t.action {
                        if let Err(e) = self.run(inner).await {
                            self.log.line(&format!("[try] ignored failure: {e}"));
                        }
                    }
                    Ok(())
                }
                Some(Kind::Timeout(t)) => {
                    let inner = t.action.as_deref().ok_or("timeout without an action")?;
                    let limit = Duration::from_nanos(u64::try_from(t.timeout).unwrap_or(0));
                    match tokio::time::timeout(limit, self.run(inner)).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("timed out after {limit:?}")),
                    }
                }
                Some(Kind::EmitProgress(e)) => {
                    let inner = e.action.as_deref().ok_or("emit_progress without an action")?;
                    if !e.start_message.is_empty() {
                        self.log.line(&e.start_message);
                    }
                    let r = self.run(inner).await;
                    match &r {
                        Ok(()) if !e.success_message.is_empty() => self.log.line(&e.success_message),
                        Err(err) if !e.failure_message_prefix.is_empty() => {
                            self.log.line(&format!("{}: {err}", e.failure_message_prefix))
                        }
                        _ => {}
                    }
                    r
                }
            }
        }
        .boxed()
    }

    async fn run_process(&self, r: &pb::RunAction) -> Result<(), String> {
        let status = self
            .spawn(r)?
            .wait()
            .await
            .map_err(|e| format!("waiting for {}: {e}", r.path))?;
        if status.success() {
            Ok(())
        } else {
            match status.code() {
                Some(code) => Err(format!("Exited with status {code}")),
                None => Err(format!("Exited on a signal ({status})")),
            }
        }
    }

    /// Starts a `run` action's process in its own process group, its output piped to the log.
    pub fn spawn(&self, r: &pb::RunAction) -> Result<Started, String> {
        let mut cmd = tokio::process::Command::new(&r.path);
        cmd.args(&r.args)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(r.env.iter().map(|e| (e.name.as_str(), e.value.as_str())))
            .current_dir(if r.dir.is_empty() {
                self.default_dir.clone()
            } else {
                PathBuf::from(&r.dir)
            })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("could not start {}: {e}", r.path))?;
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            if let Ok(mut g) = self.groups.lock() {
                g.push(pid);
            }
        }
        let mut pipes = Vec::new();
        if let Some(out) = child.stdout.take() {
            pipes.push(pipe_to_log(out, self.log.clone()));
        }
        if let Some(err) = child.stderr.take() {
            pipes.push(pipe_to_log(err, self.log.clone()));
        }
        Ok(Started { child, pipes })
    }

    /// SIGTERM to every process group, then SIGKILL to those still alive after `grace`.
    pub async fn stop_all(&self, grace: Duration) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let groups: Vec<i32> = self.groups.lock().map(|g| g.clone()).unwrap_or_default();
        let alive = |pg: i32| killpg(Pid::from_raw(pg), None).is_ok() && group_has_live_member(pg);
        for pg in &groups {
            let _ = killpg(Pid::from_raw(*pg), Signal::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while groups.iter().any(|pg| alive(*pg)) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for pg in &groups {
            if alive(*pg) {
                let _ = killpg(Pid::from_raw(*pg), Signal::SIGKILL);
            }
        }
    }
}

/// Whether a process group still has a member that is not a zombie. A member that died is a
/// zombie until its parent reaps it, and may stay one for long when that parent is a PID 1 that
/// reaps lazily; it must not make a stop wait out its whole grace period. Where /proc cannot be
/// read, every member counts.
fn group_has_live_member(pg: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if pgrp == Some(pg) && state != Some("Z") {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> pb::Action {
        pb::Action {
            kind: Some(Kind::Run(pb::RunAction {
                path: "sh".into(),
                args: vec!["-c".into(), script.into()],
                user: "vcap".into(),
                ..Default::default()
            })),
        }
    }

    fn list(actions: Vec<pb::Action>) -> pb::ActionList {
        pb::ActionList {
            actions,
            log_source: String::new(),
        }
    }

    fn exec(dir: &std::path::Path) -> Exec {
        Exec {
            env: vec![("GREETING".into(), "hello".into())],
            log: LogFile::create(&dir.join("i.log")).unwrap(),
            groups: Arc::new(Mutex::new(Vec::new())),
            default_dir: dir.to_owned(),
        }
    }

    #[tokio::test]
    async fn combinators_follow_diego_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let e = exec(dir.path());
        // serial stops at the first failure
        let serial = pb::Action {
            kind: Some(Kind::Serial(list(vec![
                sh("echo $GREETING > a"),
                sh("exit 4"),
                sh("touch never"),
            ]))),
        };
        assert_eq!(e.run(&serial).await, Err("Exited with status 4".into()));
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap().trim(), "hello");
        assert!(!dir.path().join("never").exists());
        // parallel runs all and fails with an error
        let parallel = pb::Action {
            kind: Some(Kind::Parallel(list(vec![sh("touch p1"), sh("exit 2"), sh("touch p3")]))),
        };
        assert_eq!(e.run(&parallel).await, Err("Exited with status 2".into()));
        assert!(dir.path().join("p1").exists() && dir.path().join("p3").exists());
        // codependent returns (with an error) as soon as one child exits
        let codependent = pb::Action {
            kind: Some(Kind::Codependent(list(vec![sh("sleep 30"), sh("true")]))),
        };
        let t = std::time::Instant::now();
        assert!(e.run(&codependent).await.is_err());
        assert!(t.elapsed() < Duration::from_secs(10));
        // try swallows errors
        let try_ = pb::Action {
            kind: Some(Kind::Try(Box::new(pb::TryAction {
                action: Some(Box::new(sh("exit 9"))),
                log_source: String::new(),
            }))),
        };
        assert_eq!(e.run(&try_).await, Ok(()));
        // timeout fails what runs too long
        let timeout = pb::Action {
            kind: Some(Kind::Timeout(Box::new(pb::TimeoutAction {
                action: Some(Box::new(sh("sleep 30"))),
                timeout: 200_000_000,
                log_source: String::new(),
            }))),
        };
        assert!(e.run(&timeout).await.is_err_and(|m| m.starts_with("timed out")));
        // emit_progress logs its messages
        let progress = pb::Action {
            kind: Some(Kind::EmitProgress(Box::new(pb::EmitProgressAction {
                action: Some(Box::new(sh("echo out"))),
                start_message: "starting".into(),
                success_message: "done".into(),
                failure_message_prefix: "failed".into(),
                log_source: String::new(),
            }))),
        };
        assert_eq!(e.run(&progress).await, Ok(()));
        e.stop_all(Duration::from_millis(200)).await;
        // Output reaches the log through a pipe reader; wait for it with a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut log = String::new();
        while std::time::Instant::now() < deadline {
            log = std::fs::read_to_string(dir.path().join("i.log")).unwrap();
            if log.contains("out") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            log.contains("starting") && log.contains("out") && log.contains("done"),
            "{log}"
        );
        // download is refused with a clear reason
        let download = pb::Action {
            kind: Some(Kind::Download(pb::DownloadAction::default())),
        };
        assert!(e.run(&download).await.is_err_and(|m| m.contains("not supported")));
    }
}
