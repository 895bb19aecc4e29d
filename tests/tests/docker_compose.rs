//! The docker-compose cluster (3 servers, a cell agent, a gateway) comes up on the local docker
//! engine from an image built FROM scratch: every service turns healthy on its /readyz probe, an LRP
//! asked through the gateway runs (RUNNING on the compose cell) and a Flotilla task run ends
//! STOPPED with its exit code. Skips with a message where no docker engine is reachable, or where
//! the host has no static busybox to give the image a shell for the cell's process driver and
//! `deploy/build-image.sh` cannot install one (it then builds nothing: exit 3, checked below).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use capstan_tests::{capstan_bin, lrp_json, wait_for};

fn sh(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Compose {
    project: String,
    file: PathBuf,
}

impl Compose {
    fn cmd(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.args(["-p", &self.project, "-f"]).arg(&self.file);
        c.env("CAPSTAN_IMAGE", format!("{}:test", self.project));
        c.env("CAPSTAN_HTTP_PUBLISH", "127.0.0.1:0");
        c
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.cmd().args(["down", "-v", "--remove-orphans"]).output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &format!("{}:test", self.project)])
            .output();
    }
}

#[tokio::test]
async fn compose_cluster_serves_the_receptor_api() {
    if !Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("SKIPPED docker-compose test: no docker engine is reachable");
        return;
    }
    if !Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("SKIPPED docker-compose test: docker-compose is not installed");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let project = format!("capstantest{}", std::process::id());
    let bin = capstan_bin().expect("capstan binary");
    let built = Command::new("bash")
        .arg(root.join("deploy/build-image.sh"))
        .arg(format!("{project}:test"))
        .arg(&bin)
        .output()
        .expect("run deploy/build-image.sh");
    if built.status.code() == Some(3) {
        eprintln!(
            "SKIPPED docker-compose test: the image cannot get a shell here: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        return;
    }
    assert!(
        built.status.success(),
        "image builds from scratch: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let compose = Compose {
        project,
        file: root.join("deploy/docker-compose.yml"),
    };
    sh(compose.cmd().args(["up", "-d"])).expect("compose up");
    // The health checks are the services' own /readyz probes.
    for service in ["capstan1", "capstan2", "capstan3", "gateway"] {
        let id = sh(compose.cmd().args(["ps", "-q", service])).expect("container id");
        let id = id.trim().to_owned();
        wait_for(&format!("{service} healthy"), Duration::from_secs(90), || {
            let id = id.clone();
            async move {
                let out =
                    sh(Command::new("docker").args(["inspect", "--format", "{{.State.Health.Status}}", &id])).ok()?;
                (out.trim() == "healthy").then_some(())
            }
        })
        .await;
    }
    let port = sh(compose.cmd().args(["port", "gateway", "8080"])).expect("gateway port");
    let base = format!("http://{}", port.trim());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // A web process: busybox's httpd on the port the cell gives it (RUNNING once the port answers).
    let mut web: serde_json::Value = serde_json::from_str(&lrp_json("compose-web", "cf-apps", 2)).expect("lrp");
    web["action"]["run"]["args"] = serde_json::json!(["-c", "exec httpd -f -p $PORT"]);
    let web = web.to_string();
    // The cluster elects a leader and the gateway serves writes through it.
    wait_for(
        "the compose cluster to accept a write",
        Duration::from_secs(90),
        || async {
            let r = client
                .post(format!("{base}/v1/desired_lrps"))
                .header("content-type", "application/json")
                .body(web.clone())
                .send()
                .await
                .ok()?;
            matches!(r.status().as_u16(), 201 | 200).then_some(())
        },
    )
    .await;
    // Every node serves the reads (the gateway balances over them); a node that has not yet heard
    // who leads answers 503 + Retry-After, which a client retries, as this one does.
    let read = |path: String| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move {
            wait_for(&format!("GET {url} to be served"), Duration::from_secs(30), || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let r = client.get(&url).send().await.ok()?;
                    match r.status().as_u16() {
                        200 => r.json::<serde_json::Value>().await.ok(),
                        503 => None,
                        other => panic!("GET {url}: unexpected status {other}"),
                    }
                }
            })
            .await
        }
    };
    let d = read("/v1/desired_lrps/compose-web".into()).await;
    assert_eq!(d["instances"], 2);
    // The compose cell runs both instances.
    let running = wait_for(
        "both instances RUNNING on the compose cell",
        Duration::from_secs(90),
        || async move {
            let a = read("/v1/actual_lrps/compose-web".into()).await;
            let all = a.as_array()?.clone();
            (all.len() == 2 && all.iter().all(|i| i["state"] == "RUNNING")).then_some(all)
        },
    )
    .await;
    assert!(running.iter().all(|i| i["cell_id"] == "compose-cell-1"), "{running:?}");

    // A Flotilla task run goes to STOPPED with its exit code.
    let definition = client
        .post(format!("{base}/api/v1/task"))
        .header("content-type", "application/json")
        .body(r#"{"alias": "compose-hello", "group_name": "compose", "image": "busybox", "command": "echo hello; exit 3", "memory": 64}"#)
        .send()
        .await
        .expect("define");
    assert_eq!(definition.status().as_u16(), 200);
    let definition: serde_json::Value = definition.json().await.expect("definition json");
    let id = definition["definition_id"].as_str().expect("definition id").to_owned();
    let run = client
        .put(format!("{base}/api/v1/task/{id}/execute"))
        .body("{}")
        .send()
        .await
        .expect("execute");
    assert_eq!(run.status().as_u16(), 200);
    let run: serde_json::Value = run.json().await.expect("run json");
    let run_id = run["run_id"].as_str().expect("run id").to_owned();
    let done = wait_for("the task run STOPPED", Duration::from_secs(60), || {
        let path = format!("/api/v1/history/{run_id}");
        async move {
            let r = read(path).await;
            (r["status"] == "STOPPED").then_some(r)
        }
    })
    .await;
    assert_eq!(done["exit_code"], 3, "{done}");
    // A node that has not yet heard who leads answers the documented 503: retry it, as for reads.
    let url = format!("{base}/v1/desired_lrps/missing");
    let status = wait_for("GET of a missing LRP to be answered", Duration::from_secs(30), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let s = client.get(&url).send().await.ok()?.status().as_u16();
            (s != 503).then_some(s)
        }
    })
    .await;
    assert_eq!(status, 404);
}

/// Without a static busybox (here: named by BUSYBOX, missing or dynamically linked) the image
/// script stops before building anything, saying why: an image without `sh` would crash every
/// instance of its cells. Needs no docker engine: the check comes first.
#[test]
fn an_image_without_a_shell_is_never_built() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let tag = format!("capstan-noshell{}:test", std::process::id());
    for busybox in ["/nonexistent/busybox", "/bin/sh"] {
        let out = Command::new("bash")
            .arg(root.join("deploy/build-image.sh"))
            .args([tag.as_str(), "/nonexistent/capstan"])
            .env("BUSYBOX", busybox)
            .output()
            .expect("run deploy/build-image.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{busybox}: {stderr}");
        assert!(stderr.contains("no static busybox"), "{busybox}: {stderr}");
        assert!(!stderr.contains("built "), "{stderr}");
    }
    let inspected = Command::new("docker").args(["image", "inspect", &tag]).output();
    assert!(
        !inspected.is_ok_and(|o| o.status.success()),
        "no image may have been built"
    );
}
