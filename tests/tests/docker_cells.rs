//! The docker driver: a cell with a reachable docker engine runs `docker://` rootfs instances in
//! containers from a local image (built here FROM scratch with Debian's busybox-static; never
//! pulled), with published ports and the memory limit. Skips with a message where there is no
//! docker engine or no busybox.

use std::process::Command;
use std::time::Duration;

use capstan_tests::{wait_for, Capstan};
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
    fn build(tag: &str) -> Self {
        let ctx = tempfile::tempdir().expect("tempdir");
        std::fs::copy("/bin/busybox", ctx.path().join("busybox")).expect("copy busybox");
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\n",
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
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=capstan.process_guid=dk-{tag}")])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
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
    let _image = Image::build(&tag);
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
