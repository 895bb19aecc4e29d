//! The docker driver: a cell with a reachable docker engine runs `docker://` rootfs instances in
//! containers from a local image (built here FROM scratch with Debian's busybox-static; never
//! pulled), with published ports and the memory limit; a `--driver docker` cell runs Flotilla task
//! runs in their image. Skips with a message where there is no docker engine or no busybox.

use std::process::Command;
use std::time::Duration;

use capstan_tests::{wait_for, Capstan, CellAgent};
use serde_json::json;

const IMAGE: &str = "capstan-busybox";

fn docker_ok() -> Result<(), String> {
    if !Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err("no docker engine is reachable".into());
    }
    if !std::path::Path::new("/bin/busybox").exists() {
        return Err("/bin/busybox is missing (apt-get install busybox-static)".into());
    }
    Ok(())
}

struct Image(String);

impl Image {
    /// An image of busybox alone (`/bin/busybox`), and with `sh_too` also as `/bin/sh`.
    fn build(tag: &str, sh_too: bool) -> Self {
        let ctx = tempfile::tempdir().expect("tempdir");
        std::fs::copy("/bin/busybox", ctx.path().join("busybox")).expect("copy busybox");
        let sh = if sh_too { "COPY busybox /bin/sh\n" } else { "" };
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!("FROM scratch\nCOPY busybox /bin/busybox\n{sh}"),
        )
        .expect("dockerfile");
        let name = format!("{IMAGE}:{tag}");
        let ok = Command::new("docker")
            .args(["build", "-q", "-t", &name])
            .arg(ctx.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "docker build of {name}");
        Image(name)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let tag = self.0.rsplit(':').next().unwrap_or_default().to_owned();
        for label in [
            format!("capstan.process_guid=dk-{tag}"),
            format!("capstan.cell=dk-{tag}"),
        ] {
            if let Ok(out) = Command::new("docker")
                .args(["ps", "-aq", "--filter", &format!("label={label}")])
                .output()
            {
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("docker").args(["rm", "-f", id]).output();
                }
            }
        }
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

#[tokio::test]
async fn docker_rootfs_instances_run_in_local_containers() {
    if let Err(why) = docker_ok() {
        eprintln!("SKIPPED docker driver test: {why}");
        return;
    }
    let tag = format!("t{}", std::process::id());
    let _image = Image::build(&tag, false);
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev_with(&dir.path().join("data"), &["--converge-interval-ms", "1000"]).expect("dev");
    let cells = wait_for("a cell offering docker rootfs", Duration::from_secs(30), || async {
        let cells = c.get("/v1/cells").await.json();
        cells[0]["rootfs_providers"].get("docker").is_some().then_some(cells)
    })
    .await;
    assert_eq!(cells[0]["cell_id"], "cell-1");

    let guid = format!("dk-{tag}");
    let lrp = json!({
        "process_guid": guid,
        "domain": "cf-apps",
        "rootfs": format!("docker:///{IMAGE}#{tag}"),
        "instances": 2,
        "memory_mb": 64,
        "ports": [8080],
        "action": {"run": {"path": "/bin/busybox", "args": ["httpd", "-f", "-p", "8080", "-h", "/"], "user": "root"}},
    });
    assert_eq!(c.post("/v1/desired_lrps", &lrp.to_string()).await.status, 201);
    let running = wait_for("2 RUNNING containers", Duration::from_secs(90), || async {
        let a = c.get(&format!("/v1/actual_lrps/{guid}")).await.json();
        let all = a
            .as_array()
            .is_some_and(|v| v.len() == 2 && v.iter().all(|x| x["state"] == "RUNNING"));
        all.then_some(a)
    })
    .await;
    for a in running.as_array().into_iter().flatten() {
        let port = a["ports"][0]["host_port"].as_u64().unwrap_or(0);
        assert_eq!(a["ports"][0]["container_port"], 8080);
        let r = reqwest::get(format!("http://127.0.0.1:{port}/")).await;
        assert!(r.is_ok(), "busybox httpd answers on host port {port}");
        let name = format!("capstan-{}", a["instance_guid"].as_str().unwrap_or_default());
        let out = Command::new("docker")
            .args(["inspect", "--format", "{{.HostConfig.Memory}}", &name])
            .output()
            .expect("inspect");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "67108864",
            "memory limit of {name}"
        );
    }

    // An image that is not on the cell: a clear crash reason, no pull.
    let missing = json!({
        "process_guid": format!("{guid}-missing"),
        "domain": "cf-apps",
        "rootfs": "docker:///no-such-image#x",
        "instances": 1,
        "action": {"run": {"path": "/bin/true", "user": "root"}},
    });
    assert_eq!(c.post("/v1/desired_lrps", &missing.to_string()).await.status, 201);
    let crashed = wait_for("the missing image to be reported", Duration::from_secs(60), || async {
        let a = c.get(&format!("/v1/actual_lrps/{guid}-missing/index/0")).await.json();
        a["crash_reason"]
            .as_str()
            .is_some_and(|r| r.contains("not present"))
            .then_some(a)
    })
    .await;
    assert!(crashed["crash_count"].as_i64().unwrap_or(0) >= 1);

    // Delete: the containers go away.
    assert_eq!(c.delete(&format!("/v1/desired_lrps/{guid}")).await.status, 204);
    wait_for("the containers to be removed", Duration::from_secs(60), || async {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=capstan.process_guid={guid}")])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_docker_cell_runs_task_runs_in_their_image() {
    if let Err(why) = docker_ok() {
        eprintln!("SKIPPED docker task-run test: {why}");
        return;
    }
    let tag = format!("r{}", std::process::id());
    let image = Image::build(&tag, true);
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev_with(&dir.path().join("data"), &["--no-cell"]).expect("dev");
    let cell_id = format!("dk-{tag}");
    let _cell = CellAgent::start(&c.grpc, &cell_id, &dir.path().join("cell"), &["--driver", "docker"]).expect("cell");
    wait_for("the docker cell to register", Duration::from_secs(30), || async {
        (c.get("/v1/cells").await.json().as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    let define = |alias: &str, image: &str| {
        json!({"alias": alias, "group_name": "docker", "image": image, "memory": 64,
               "command": "echo in the container $GREETING; ls /bin; exit 4"})
        .to_string()
    };
    let d = c.post("/api/v1/task", &define("in-image", &image.0)).await.json();
    let id = d["definition_id"].as_str().unwrap_or_default().to_owned();
    let body = json!({"env": [{"name": "GREETING", "value": "hello"}]}).to_string();
    let run = c.put(&format!("/api/v1/task/{id}/execute"), &body).await.json();
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let done = wait_for("the containerised run to stop", Duration::from_secs(90), || async {
        let r = c.get(&format!("/api/v1/history/{run_id}")).await.json();
        (r["status"] == "STOPPED").then_some(r)
    })
    .await;
    assert_eq!(done["exit_code"], 4, "{done}");
    let log = c.get(&format!("/api/v1/{run_id}/logs")).await.json();
    let text = log["log"].as_str().unwrap_or_default();
    // `ls /bin` inside the image shows the image's files, not the host's.
    assert_eq!(text, "in the container hello\nbusybox\nsh\n", "{log}");

    // An image the cell does not have: retried, then STOPPED with a clear reason (never pulled).
    let d = c
        .post("/api/v1/task", &define("no-image", "no-such-image:x"))
        .await
        .json();
    let id = d["definition_id"].as_str().unwrap_or_default().to_owned();
    let run = c.put(&format!("/api/v1/task/{id}/execute"), "{}").await.json();
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let gave_up = wait_for("the missing image to stop the run", Duration::from_secs(60), || async {
        let r = c.get(&format!("/api/v1/history/{run_id}")).await.json();
        (r["status"] == "STOPPED").then_some(r)
    })
    .await;
    let reason = gave_up["exit_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("image no-such-image:x is not present") && reason.contains("gave up after 3 attempts"),
        "{gave_up}"
    );
    assert!(gave_up.get("exit_code").is_none(), "{gave_up}");
}
