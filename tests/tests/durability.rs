//! Durability: every write acknowledged with a 2xx survives `kill -9` of the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use capstan_tests::{lrp_json, Capstan};

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut c = Capstan::dev(&data).expect("start");

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, url) = (c.client.clone(), c.url("/v1/desired_lrps"));
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let guid = format!("w{w}-{i}");
                i += 1;
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(lrp_json(&guid, "durable", 2))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => acked.lock().expect("lock").push(guid),
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    // The process was killed under us: this write was never acknowledged.
                    Err(_) => break,
                }
            }
        }));
    }
    // Kill while writes are in flight, right after the 300th acknowledgement.
    capstan_tests::wait_for("300 acknowledged creates", std::time::Duration::from_secs(60), || {
        let n = acked.lock().expect("lock").len();
        async move { (n >= 300).then_some(()) }
    })
    .await;
    c.kill9();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 300);

    let c = Capstan::dev(&data).expect("restart");
    for guid in &acked {
        let r = c.get(&format!("/v1/desired_lrps/{guid}")).await;
        assert_eq!(r.status, 200, "acknowledged {guid} lost after kill -9");
        let actual = c.get(&format!("/v1/actual_lrps/{guid}")).await.json();
        assert_eq!(actual.as_array().map(Vec::len), Some(2), "{guid}");
    }
}

#[tokio::test]
async fn orderly_restart_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut c = Capstan::dev(&data).expect("start");
    assert_eq!(c.post("/v1/desired_lrps", &lrp_json("web", "d", 3)).await.status, 201);
    assert_eq!(
        c.post("/v1/fresh_domains", r#"{"domain":"d","ttl_in_seconds":0}"#)
            .await
            .status,
        204
    );
    let before = (
        c.get("/v1/desired_lrps").await.json(),
        c.get("/v1/actual_lrps").await.json(),
    );
    let status = c.terminate().expect("terminate");
    assert!(status.success(), "capstan dev exits cleanly on SIGTERM: {status}");
    let c = Capstan::dev(&data).expect("restart");
    let after = (
        c.get("/v1/desired_lrps").await.json(),
        c.get("/v1/actual_lrps").await.json(),
    );
    assert_eq!(before, after);
    assert_eq!(c.get("/v1/domains").await.json(), serde_json::json!(["d"]));
}

/// Seconds since the Unix epoch, as strace's `-ttt` prints them.
fn epoch_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Start times of the `fdatasync` calls on sled's data file (`<data>/db/db`) in an strace log.
fn data_file_syncs(trace: &str, data_file: &str) -> Vec<f64> {
    trace
        .lines()
        .filter(|l| l.contains("fdatasync(") && l.contains(&format!("<{data_file}>")))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .collect()
}

/// Issue 9, defect 1: an acknowledged append must be covered by an fdatasync of sled's data file
/// (sled's own flush only calls `sync_file_range`). Traces the real process's syscalls: each
/// acknowledged create must have an fdatasync of the data file between its request and its answer.
#[tokio::test]
async fn every_acknowledged_write_is_fdatasynced_before_the_answer() {
    let probe = std::process::Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: strace is not installed or ptrace is not permitted here");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let trace_file = dir.path().join("strace.txt");
    let trace_arg = trace_file.display().to_string();
    let args = Capstan::dev_args(&data, &["--no-cell"]);
    let wrapper = [
        "strace",
        "-f",
        "-qq",
        "-ttt",
        "-y",
        "-e",
        "signal=none",
        "-e",
        "trace=fdatasync,fsync",
        "-o",
        &trace_arg,
    ];
    let mut c = Capstan::spawn_under(&wrapper, &args, &data).expect("start under strace");

    let mut windows = Vec::new();
    for i in 0..20 {
        let sent = epoch_secs();
        let r = c
            .post("/v1/desired_lrps", &lrp_json(&format!("synced-{i}"), "d", 1))
            .await;
        let answered = epoch_secs();
        assert_eq!(r.status, 201, "{}", r.body);
        windows.push((sent, answered));
    }
    // Stop the traced process itself (killing strace would only detach it).
    let strace_pid = c.pid().expect("running");
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children")).unwrap_or_default();
    for pid in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        capstan_tests::send_signal(pid, 9);
    }
    c.kill9();

    let data_file = std::fs::canonicalize(data.join("db").join("db")).expect("data file");
    let trace = std::fs::read_to_string(&trace_file).expect("strace output");
    let syncs = data_file_syncs(&trace, &data_file.display().to_string());
    assert!(
        syncs.len() >= windows.len(),
        "{} fdatasync calls on {} for {} acknowledged creates",
        syncs.len(),
        data_file.display(),
        windows.len()
    );
    for (i, (sent, answered)) in windows.iter().enumerate() {
        assert!(
            syncs.iter().any(|t| t >= sent && t <= answered),
            "create {i} was acknowledged with no fdatasync of the data file while it was in flight"
        );
    }
}
