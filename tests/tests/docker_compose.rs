//! The docker-compose cluster (3 servers + a gateway) comes up on the local docker engine from an
//! image built FROM scratch, and serves the Receptor API. Skips with a message where no docker
//! engine is reachable.

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
    sh(Command::new("bash")
        .arg(root.join("deploy/build-image.sh"))
        .arg(format!("{project}:test"))
        .arg(&bin))
    .expect("image builds from scratch");
    let compose = Compose {
        project,
        file: root.join("deploy/docker-compose.yml"),
    };
    sh(compose.cmd().args(["up", "-d"])).expect("compose up");
    let port = sh(compose.cmd().args(["port", "gateway", "8080"])).expect("gateway port");
    let base = format!("http://{}", port.trim());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // The cluster elects a leader and the gateway serves writes through it.
    wait_for(
        "the compose cluster to accept a write",
        Duration::from_secs(90),
        || async {
            let r = client
                .post(format!("{base}/v1/desired_lrps"))
                .header("content-type", "application/json")
                .body(lrp_json("compose-web", "cf-apps", 2))
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
    let a = read("/v1/actual_lrps/compose-web".into()).await;
    assert_eq!(a.as_array().map(Vec::len), Some(2));
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
