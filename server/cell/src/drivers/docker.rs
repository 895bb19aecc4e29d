//! The docker driver: runs an instance whose rootfs is `docker:///repo#tag` (or
//! `docker://registry/repo#tag`) in a container from an image already present on the cell's
//! docker engine (it never pulls). The container runs the DesiredLRP's `run` action with the
//! instance environment, each container port published on a host port, and the memory limit
//! set; its output goes to the instance's bounded log file. Health is a connect to the first
//! published port (or "running" when there are no ports).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use capstan_proto::pb::{self, action::Kind};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::instance::{self, Prepared};
use super::supervise::{MainEnded, Supervised};
use super::DriverCtx;
use crate::reporter::Report;

/// `docker:///busybox#1.35` → `busybox:1.35`; `docker://registry:5000/app#v1` → `registry:5000/app:v1`.
pub fn image_of(rootfs: &str) -> Option<String> {
    let rest = rootfs.strip_prefix("docker://")?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let (repo, tag) = match rest.split_once('#') {
        Some((r, t)) if !t.is_empty() => (r, t),
        Some((r, _)) => (r, "latest"),
        None => (rest, "latest"),
    };
    (!repo.is_empty()).then(|| format!("{repo}:{tag}"))
}

/// The `run` action a container runs: the action itself, or the one inside timeout / try /
/// emit_progress wrappers or a one-element list.
fn main_run(a: &pb::Action) -> Option<&pb::RunAction> {
    match a.kind.as_ref()? {
        Kind::Run(r) => Some(r),
        Kind::Timeout(t) => main_run(t.action.as_deref()?),
        Kind::Try(t) => main_run(t.action.as_deref()?),
        Kind::EmitProgress(e) => main_run(e.action.as_deref()?),
        Kind::Serial(l) | Kind::Parallel(l) | Kind::Codependent(l) if l.actions.len() == 1 => main_run(&l.actions[0]),
        _ => None,
    }
}

/// Copies a container's output (stdout and stderr, followed) into its log until it ends.
fn copy_output(docker: &Docker, name: &str, log: Arc<crate::logs::LogFile>) -> tokio::task::JoinHandle<()> {
    let follow = docker.logs(
        name,
        Some(LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        }),
    );
    tokio::spawn(async move {
        futures::pin_mut!(follow);
        while let Some(Ok(chunk)) = follow.next().await {
            log.write(&chunk.into_bytes());
        }
    })
}

/// The host pid of a running container's first process (its processes share its group).
async fn container_pid(docker: &Docker, name: &str) -> Option<i32> {
    let info = docker.inspect_container(name, None).await.ok()?;
    let pid = info.state?.pid?;
    i32::try_from(pid).ok().filter(|p| *p > 0)
}

/// Runs one instance in a container until it exits or is cancelled.
pub async fn run(
    docker: Arc<Docker>,
    assignment: pb::Assignment,
    ctx: DriverCtx,
    reports: mpsc::Sender<Report>,
    mut cancel: oneshot::Receiver<()>,
) {
    let Some(actual) = assignment.actual else { return };
    let desired = assignment.desired.unwrap_or_default();
    let key = instance::key(&actual);
    let crash = |reason: String| instance::crash(&key, reason);
    let Some(image) = image_of(&desired.rootfs) else {
        let _ = reports
            .send(crash(format!("{} is not a docker rootfs", desired.rootfs)))
            .await;
        return;
    };
    if docker.inspect_image(&image).await.is_err() {
        let _ = reports
            .send(crash(format!(
                "image {image} is not present on the cell (images are never pulled)"
            )))
            .await;
        return;
    }
    let Some(run) = desired.action.as_ref().and_then(main_run) else {
        let _ = reports
            .send(crash("the docker driver runs a single run action".into()))
            .await;
        return;
    };
    let Prepared {
        mappings,
        host_ports,
        log,
        ..
    } = match instance::prepare_or_crash(&actual, &desired, &ctx, &reports).await {
        Some(p) => p,
        None => return,
    };
    let name = format!("capstan-{}", actual.instance_guid);
    let mut env: Vec<String> = instance::environment(&actual, &desired, &ctx, &mappings, |m| m.container_port)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(run.env.iter().map(|e| format!("{}={}", e.name, e.value)));
    let mut bindings = HashMap::new();
    for m in &mappings {
        bindings.insert(
            format!("{}/tcp", m.container_port),
            Some(vec![PortBinding {
                host_ip: Some(ctx.address.clone()),
                host_port: Some(m.host_port.to_string()),
            }]),
        );
    }
    let mut cmd = vec![run.path.clone()];
    cmd.extend(run.args.iter().cloned());
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        cmd: Some(cmd),
        env: Some(env),
        working_dir: (!run.dir.is_empty()).then(|| run.dir.clone()),
        exposed_ports: Some(mappings.iter().map(|m| format!("{}/tcp", m.container_port)).collect()),
        labels: Some(HashMap::from([
            ("capstan.cell".to_owned(), ctx.cell_id.clone()),
            ("capstan.process_guid".to_owned(), actual.process_guid.clone()),
        ])),
        host_config: Some(HostConfig {
            memory: (desired.memory_mb > 0).then(|| i64::from(desired.memory_mb) * 1024 * 1024),
            port_bindings: Some(bindings),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await;
    if let Err(e) = created {
        ctx.ports.give_back(&host_ports);
        let _ = reports
            .send(crash(format!("could not create the container: {e}")))
            .await;
        return;
    }
    let outcome = match docker.start_container(&name, None).await {
        Err(e) => Some(format!("could not start the container: {e}")),
        Ok(()) => {
            log.line(&format!("[cell {}] started container {name} from {image}", ctx.cell_id));
            let _measured = container_pid(&docker, &name).await.map(|pid| {
                ctx.usage
                    .register(&actual.instance_guid, Arc::new(Mutex::new(vec![pid])), None)
            });
            let log_task = copy_output(&docker, &name, log.clone());
            let sup = Supervised {
                desired: &desired,
                ctx: &ctx,
                mappings: &mappings,
                key: &key,
                reports: &reports,
                // A container is checked until it is healthy; its exit is what ends it after that.
                healthy_recheck: None,
            };
            let o = supervise(&docker, &name, &sup, &mut cancel).await;
            log_task.abort();
            o
        }
    };
    let _ = docker
        .stop_container(
            &name,
            Some(StopContainerOptions {
                t: Some(i32::try_from(ctx.stop_grace.as_secs()).unwrap_or(10)),
                ..Default::default()
            }),
        )
        .await;
    let _ = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    ctx.ports.give_back(&host_ports);
    if let Some(reason) = outcome {
        log.line(&format!("[cell {}] crashed: {reason}", ctx.cell_id));
        let _ = reports.send(crash(reason)).await;
    }
}

/// Supervises a started container: its exit is a crash; the port check decides RUNNING.
async fn supervise(
    docker: &Docker,
    name: &str,
    sup: &Supervised<'_>,
    cancel: &mut oneshot::Receiver<()>,
) -> Option<String> {
    let main = async {
        let wait = docker.wait_container(name, None::<WaitContainerOptions>);
        futures::pin_mut!(wait);
        MainEnded::Crashed(match wait.next().await {
            Some(Ok(r)) => format!("Exited with status {}", r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                format!("Exited with status {code}")
            }
            Some(Err(e)) => format!("lost the container: {e}"),
            None => "lost the container".to_owned(),
        })
    };
    sup.run(main, || sup.port_check(), cancel).await
}

/// Runs one task run in a container of its image (present locally; never pulled): `sh -c` with
/// the command, the run's env and memory limit; output to the run's log; the exit code reported.
pub async fn run_task(
    docker: Arc<Docker>,
    run: pb::TaskRun,
    ctx: DriverCtx,
    reports: mpsc::Sender<Report>,
    cancel: oneshot::Receiver<()>,
) {
    let cmd = vec!["sh".into(), "-c".into(), run.command.clone()];
    let image = run.image.clone();
    run_in_container(docker, run, image, cmd, ctx, reports, cancel).await;
}

/// Runs a Receptor task with a `docker://` rootfs: its single `run` action in the image.
pub async fn run_receptor_task(
    docker: Arc<Docker>,
    run: pb::TaskRun,
    ctx: DriverCtx,
    reports: mpsc::Sender<Report>,
    cancel: oneshot::Receiver<()>,
) {
    use super::run::report;
    let task = run.receptor.clone().unwrap_or_default();
    let (Some(image), Some(r)) = (image_of(&task.rootfs), task.action.as_ref().and_then(main_run)) else {
        let why = "the docker driver runs a single run action from a docker:// rootfs";
        let _ = reports.send(report(&run, pb::TaskRunReportKind::Exited, 1, why)).await;
        return;
    };
    let mut cmd = vec![r.path.clone()];
    cmd.extend(r.args.iter().cloned());
    run_in_container(docker, run, image, cmd, ctx, reports, cancel).await;
}

/// A run in a container of `image` running `cmd`, to exit (or to a stop).
async fn run_in_container(
    docker: Arc<Docker>,
    run: pb::TaskRun,
    image: String,
    cmd: Vec<String>,
    ctx: DriverCtx,
    reports: mpsc::Sender<Report>,
    mut cancel: oneshot::Receiver<()>,
) {
    use super::run::{exit_reason, open_log, report};
    use pb::TaskRunReportKind as K;
    if docker.inspect_image(&image).await.is_err() {
        let reason = format!(
            "image {image} is not present on cell {} (images are never pulled)",
            ctx.cell_id
        );
        let _ = reports.send(report(&run, K::NotStarted, 0, reason)).await;
        return;
    }
    let Some(log) = open_log(&run, &ctx, &reports).await else {
        return;
    };
    let name = format!("capstan-run-{}-{}", run.run_id, run.attempt);
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        cmd: Some(cmd),
        env: Some(run.env.iter().map(|e| format!("{}={}", e.name, e.value)).collect()),
        labels: Some(HashMap::from([
            ("capstan.cell".to_owned(), ctx.cell_id.clone()),
            ("capstan.run_id".to_owned(), run.run_id.clone()),
        ])),
        host_config: Some(HostConfig {
            memory: (run.memory > 0).then(|| i64::from(run.memory) * 1024 * 1024),
            ..Default::default()
        }),
        ..Default::default()
    };
    let create = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    if let Err(e) = docker.create_container(Some(create), body).await {
        let reason = format!("could not create the container: {e}");
        let _ = reports.send(report(&run, K::NotStarted, 0, reason)).await;
        return;
    }
    let remove = || async {
        let force = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let _ = docker.remove_container(&name, Some(force)).await;
    };
    if let Err(e) = docker.start_container(&name, None).await {
        remove().await;
        let reason = format!("could not start the container: {e}");
        let _ = reports.send(report(&run, K::NotStarted, 0, reason)).await;
        return;
    }
    let _ = reports.send(report(&run, K::Started, 0, "")).await;
    let copy = copy_output(&docker, &name, log.clone());
    let wait = async {
        let wait = docker.wait_container(&name, None::<WaitContainerOptions>);
        futures::pin_mut!(wait);
        match wait.next().await {
            Some(Ok(r)) => Ok(i32::try_from(r.status_code).unwrap_or(-1)),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Ok(i32::try_from(code).unwrap_or(-1))
            }
            Some(Err(e)) => Err(format!("lost the container: {e}")),
            None => Err("lost the container".to_owned()),
        }
    };
    tokio::pin!(wait);
    let mut stopped = false;
    let exited = tokio::select! {
        r = &mut wait => r,
        _ = &mut cancel => {
            stopped = true;
            let grace = StopContainerOptions {
                t: Some(i32::try_from(ctx.stop_grace.as_secs()).unwrap_or(10)),
                ..Default::default()
            };
            let _ = docker.stop_container(&name, Some(grace)).await;
            wait.await
        }
    };
    // The log stream ends with the container; give it a moment to deliver the last bytes.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), copy).await;
    remove().await;
    let (code, reason) = match exited {
        Ok(code) => (code, exit_reason(code, stopped)),
        Err(e) => (-1, e),
    };
    let _ = reports.send(report(&run, K::Exited, code, reason)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rootfs_to_image() {
        assert_eq!(image_of("docker:///busybox#1.35").as_deref(), Some("busybox:1.35"));
        assert_eq!(
            image_of("docker:///cloudfoundry/grace").as_deref(),
            Some("cloudfoundry/grace:latest")
        );
        assert_eq!(
            image_of("docker://registry:5000/app#v1").as_deref(),
            Some("registry:5000/app:v1")
        );
        assert_eq!(image_of("preloaded:cflinuxfs4"), None);
        assert_eq!(image_of("docker:///"), None);
    }
}
