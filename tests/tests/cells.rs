//! Capstan really runs LRPs: `capstan dev` (one node + one cell with the process driver) and
//! extra `capstan cell` processes, with real instance processes whose ports answer.

use std::collections::BTreeSet;
use std::process::Command;

use std::time::Duration;

use capstan_tests::{wait_for, Capstan, CellAgent};
use serde_json::{json, Value};

const SERVER: &str = env!("CARGO_BIN_EXE_test-http-server");

/// Processes of one test, found by a marker argument; killed when the test ends.
struct Marker(String);

impl Marker {
    fn new(name: &str) -> Self {
        Marker(format!("capstan-test-{name}-{}", std::process::id()))
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-9", "-f", &self.0]).status();
    }
}

fn http_lrp(guid: &str, instances: i32, marker: &Marker) -> String {
    json!({
        "process_guid": guid,
        "domain": "cf-apps",
        "rootfs": "preloaded:cflinuxfs4",
        "instances": instances,
        "memory_mb": 64,
        "ports": [8080],
        "action": {"run": {"path": SERVER, "args": [marker.0], "user": "vcap"}},
    })
    .to_string()
}

fn dev() -> (tempfile::TempDir, Capstan) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev_with(
        &dir.path().join("data"),
        &["--converge-interval-ms", "1000", "--cell-ttl-ms", "3000"],
    )
    .expect("capstan dev");
    (dir, c)
}

async fn actuals(c: &Capstan, guid: &str) -> Vec<Value> {
    c.get(&format!("/v1/actual_lrps/{guid}"))
        .await
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until `guid` has exactly `n` RUNNING instances; returns them.
async fn running(c: &Capstan, guid: &str, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} RUNNING instances of {guid}"),
        Duration::from_secs(60),
        || async {
            let a = actuals(c, guid).await;
            (a.len() == n && a.iter().all(|x| x["state"] == "RUNNING")).then_some(a)
        },
    )
    .await
}

async fn answer(port: u64) -> Option<String> {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

fn host_port(a: &Value) -> u64 {
    a["ports"][0]["host_port"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn desired_instances_run_answer_restart_scale_and_stop() {
    let m = Marker::new("run");
    let (d, c) = dev();
    let cells = wait_for("the embedded cell to register", Duration::from_secs(30), || async {
        let cells = c.get("/v1/cells").await.json();
        (cells.as_array().map(Vec::len) == Some(1)).then_some(cells)
    })
    .await;
    assert_eq!(cells[0]["cell_id"], "cell-1", "{cells}");
    assert_eq!(cells[0]["capacity"]["memory_mb"], 8192);
    assert_eq!(cells[0]["rootfs_providers"]["preloaded"][0], "cflinuxfs4");

    assert_eq!(c.post("/v1/desired_lrps", &http_lrp("web", 3, &m)).await.status, 201);
    let instances = running(&c, "web", 3).await;
    for a in &instances {
        assert_eq!(a["cell_id"], "cell-1");
        assert_eq!(a["address"], "127.0.0.1");
        assert_eq!(a["ports"][0]["container_port"], 8080);
        let body = answer(host_port(a)).await.unwrap_or_default();
        assert!(
            body.starts_with(&format!(
                "index={} guid={}",
                a["index"],
                a["instance_guid"].as_str().unwrap_or("")
            )),
            "{body}"
        );
    }

    // Each instance's output is in its bounded log file on the cell.
    let logs = d.path().join("data/cell/logs");
    let first = &instances[0];
    let file = logs.join(format!(
        "web-{}-{}.log",
        first["index"],
        first["instance_guid"].as_str().unwrap_or_default()
    ));
    wait_for(
        "the instance's output in its log file",
        Duration::from_secs(10),
        || async {
            std::fs::read_to_string(&file)
                .ok()?
                .contains("listening on")
                .then_some(())
        },
    )
    .await;

    // Kill one process behind Capstan's back: it crashes and is restarted at once.
    let victim = instances.iter().find(|a| a["index"] == 1).cloned().unwrap_or_default();
    let body = answer(host_port(&victim)).await.unwrap_or_default();
    let pid = body.rsplit("pid=").next().unwrap_or_default().to_owned();
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .is_ok_and(|s| s.success()));
    let restarted = wait_for("index 1 to crash and run again", Duration::from_secs(60), || async {
        let a = c.get("/v1/actual_lrps/web/index/1").await.json();
        (a["state"] == "RUNNING" && a["crash_count"] == 1 && a["instance_guid"] != victim["instance_guid"]).then_some(a)
    })
    .await;
    assert!(
        restarted["crash_reason"].as_str().is_some_and(|r| r.contains("signal")),
        "{restarted}"
    );
    assert!(answer(host_port(&restarted)).await.is_some());

    // Scale down: the extra instances stop and their ports go quiet.
    assert_eq!(c.put("/v1/desired_lrps/web", r#"{"instances":1}"#).await.status, 204);
    let left = running(&c, "web", 1).await;
    for a in instances.iter().chain([&restarted]).filter(|a| a["index"] != 0) {
        let port = host_port(a);
        wait_for(
            &format!("port {port} to stop answering"),
            Duration::from_secs(30),
            || async { answer(port).await.is_none().then_some(()) },
        )
        .await;
    }

    // Kill at an index: a new instance takes the index.
    assert_eq!(c.delete("/v1/desired_lrps/web/actual_lrps?index=0").await.status, 204);
    wait_for("a new instance at index 0", Duration::from_secs(60), || async {
        let a = c.get("/v1/actual_lrps/web/index/0").await.json();
        (a["state"] == "RUNNING" && a["instance_guid"] != left[0]["instance_guid"]).then_some(())
    })
    .await;

    // Delete: everything stops.
    let last = running(&c, "web", 1).await;
    assert_eq!(c.delete("/v1/desired_lrps/web").await.status, 204);
    let port = host_port(&last[0]);
    wait_for("the last instance to stop", Duration::from_secs(30), || async {
        answer(port).await.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_command_that_always_exits_becomes_crashed_with_backoff() {
    let (_d, c) = dev();
    let lrp = json!({
        "process_guid": "flaky",
        "domain": "cf-apps",
        "rootfs": "preloaded:cflinuxfs4",
        "instances": 1,
        "action": {"run": {"path": "sh", "args": ["-c", "exit 3"], "user": "vcap"}},
    });
    assert_eq!(c.post("/v1/desired_lrps", &lrp.to_string()).await.status, 201);
    // Crashes 1 and 2 restart at once; the 3rd is CRASHED.
    let crashed = wait_for("the 3rd crash", Duration::from_secs(60), || async {
        let a = c.get("/v1/actual_lrps/flaky/index/0").await.json();
        (a["state"] == "CRASHED").then_some(a)
    })
    .await;
    assert_eq!(crashed["crash_count"], 3, "{crashed}");
    assert_eq!(crashed["crash_reason"], "Exited with status 3");
    assert_eq!(crashed["instance_guid"], "");
    // Convergence restarts it after the 30 s backoff; it crashes again, with a growing count.
    let again = wait_for("the restart after the backoff", Duration::from_secs(90), || async {
        let a = c.get("/v1/actual_lrps/flaky/index/0").await.json();
        (a["state"] == "CRASHED" && a["crash_count"] == 4).then_some(a)
    })
    .await;
    let waited = again["since"].as_i64().unwrap_or(0) - crashed["since"].as_i64().unwrap_or(0);
    assert!(
        waited >= 30_000_000_000,
        "restarted only after the 30 s backoff ({waited} ns)"
    );
}

#[tokio::test]
async fn instances_on_a_lost_cell_are_placed_on_another_after_the_ttl() {
    let m = Marker::new("lost");
    let (d, c) = dev();
    let mut cell2 = CellAgent::start(&c.grpc, "cell-2", &d.path().join("cell2"), &[]).expect("cell agent");
    wait_for("two cells", Duration::from_secs(30), || async {
        (c.get("/v1/cells").await.json().as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    assert_eq!(c.post("/v1/desired_lrps", &http_lrp("spread", 4, &m)).await.status, 201);
    let before = running(&c, "spread", 4).await;
    let on: BTreeSet<String> = before
        .iter()
        .filter_map(|a| a["cell_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        on,
        BTreeSet::from(["cell-1".to_string(), "cell-2".to_string()]),
        "spread over both cells"
    );

    cell2.kill9();
    // After the presence TTL the cell is removed and its instances run on cell-1.
    wait_for("cell-2 to be removed", Duration::from_secs(30), || async {
        (c.get("/v1/cells").await.json().as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    let after = wait_for("all instances on cell-1", Duration::from_secs(60), || async {
        let a = actuals(&c, "spread").await;
        (a.len() == 4 && a.iter().all(|x| x["state"] == "RUNNING" && x["cell_id"] == "cell-1")).then_some(a)
    })
    .await;
    for a in &after {
        assert!(answer(host_port(a)).await.is_some(), "{a}");
    }
}

#[tokio::test]
async fn a_cell_survives_a_leader_change_and_keeps_running_its_instances() {
    let m = Marker::new("failover");
    let mut c = capstan_tests::cluster::Cluster::start(3, &["--cell-ttl-ms", "3000", "--converge-interval-ms", "1000"])
        .expect("cluster");
    let leader = c.leader(Duration::from_secs(20)).await;
    let grpcs: Vec<String> = c.specs.values().map(|s| s.grpc.clone()).collect();
    let work = tempfile::tempdir().expect("tempdir");
    let mut cell = CellAgent::start(&grpcs.join(","), "cell-ha", work.path(), &[]).expect("cell agent");
    let via = *c.nodes.keys().find(|id| **id != leader).expect("a follower");
    wait_for("the cell to register", Duration::from_secs(30), || async {
        (c.node(via).get("/v1/cells").await.json().as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    assert_eq!(
        c.node(via)
            .post("/v1/desired_lrps", &http_lrp("ha", 2, &m))
            .await
            .status,
        201
    );
    let before = running(c.node(via), "ha", 2).await;

    c.kill9(leader);
    let new_leader = c.leader(Duration::from_secs(30)).await;
    let n = c.node(new_leader);
    // The new leader places new work on the cell...
    assert_eq!(n.post("/v1/desired_lrps", &http_lrp("after", 1, &m)).await.status, 201);
    running(n, "after", 1).await;
    // Watch over two presence TTLs (an absence can only be observed over a window).
    let old: BTreeSet<String> = before
        .iter()
        .filter_map(|x| x["instance_guid"].as_str().map(str::to_owned))
        .collect();
    let window = std::time::Instant::now();
    while window.elapsed() < Duration::from_secs(6) {
        let cells = n.get("/v1/cells").await.json();
        assert_eq!(
            cells.as_array().map(Vec::len),
            Some(1),
            "the cell stays registered: {cells}"
        );
        let guids: BTreeSet<String> = actuals(n, "ha")
            .await
            .iter()
            .filter_map(|x| x["instance_guid"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(guids, old, "its instances are never re-placed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running(n, "ha", 2).await;
    cell.kill9();
}

/// Marker processes still alive (the instances of one test, on every cell).
fn alive(m: &Marker) -> usize {
    let out = Command::new("pgrep").args(["-f", &m.0]).output().expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Diego's rule for a cell cut off past its presence TTL: its instances are placed elsewhere, and
/// when it comes back it stops its old copies; nothing it reports about them is taken, so nothing
/// runs twice once it has caught up. The cut is a SIGSTOP of the agent (no heartbeats, no reports,
/// its connections held open), its instance processes going on meanwhile as a partition would leave them.
#[tokio::test]
async fn a_cell_back_from_a_partition_stops_its_replaced_copies() {
    let m = Marker::new("partition");
    let (d, c) = dev();
    let mut cell2 = CellAgent::start(&c.grpc, "cell-2", &d.path().join("cell2"), &[]).expect("cell agent");
    c.wait_for_cells(2, Duration::from_secs(30)).await;
    assert_eq!(c.post("/v1/desired_lrps", &http_lrp("cut", 4, &m)).await.status, 201);
    let before = running(&c, "cut", 4).await;
    assert!(
        before.iter().any(|a| a["cell_id"] == "cell-2"),
        "some instances on cell-2: {before:?}"
    );
    assert_eq!(alive(&m), 4);

    let pid = cell2.0.id() as i32;
    assert_eq!(capstan_tests::send_signal(pid, 19), 0, "SIGSTOP the cell agent");
    let moved = wait_for("every instance RUNNING on cell-1", Duration::from_secs(60), || async {
        let a = actuals(&c, "cut").await;
        (a.len() == 4 && a.iter().all(|x| x["state"] == "RUNNING" && x["cell_id"] == "cell-1")).then_some(a)
    })
    .await;
    // Cut off, cell-2's old copies still run beside their replacements.
    assert!(alive(&m) > 4, "the partitioned cell's copies outlive the cut");

    assert_eq!(capstan_tests::send_signal(pid, 18), 0, "SIGCONT the cell agent");
    c.wait_for_cells(2, Duration::from_secs(30)).await;
    wait_for("cell-2 to stop its old copies", Duration::from_secs(30), || async {
        (alive(&m) == 4).then_some(())
    })
    .await;
    // Over two presence TTLs: nothing comes back to cell-2 and nothing runs twice.
    let guids = |a: &[Value]| -> BTreeSet<String> {
        a.iter()
            .filter_map(|x| x["instance_guid"].as_str().map(str::to_owned))
            .collect()
    };
    let window = std::time::Instant::now();
    while window.elapsed() < Duration::from_secs(6) {
        let now = actuals(&c, "cut").await;
        assert_eq!(guids(&now), guids(&moved), "the replacements stay: {now:?}");
        assert!(now.iter().all(|x| x["cell_id"] == "cell-1" && x["state"] == "RUNNING"));
        assert_eq!(alive(&m), 4, "exactly one copy of each instance");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for a in &moved {
        assert!(answer(host_port(a)).await.is_some(), "{a}");
    }
    cell2.kill9();
}
