//! Benchmark (prints figures, asserts nothing): scheduling at scale with simulated cells.
//! Starts `capstan dev --no-cell` (release) and `capstan cell --simulate CELLS`, desires LRPS
//! DesiredLRPs of INSTANCES each, and measures until every instance is RUNNING: placements per
//! second, time to all RUNNING, and the leader's RSS.
//! Run: `cargo run --release -p capstan-tests --bin bench-cells [CELLS] [LRPS] [INSTANCES]`.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use capstan_tests::bench::{drive, post_json, Stop};
use capstan_tests::{Capstan, CellAgent};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let cells: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let lrps: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let instances: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(250);
    let dir = tempfile::tempdir()?;
    let c = Capstan::dev_with(
        &dir.path().join("data"),
        &["--no-cell", "--cell-ttl-ms", "30000", "--converge-interval-ms", "30000"],
    )?;
    let mut sim = CellAgent::simulated(&c.grpc, cells, &["--memory-mb", "1000000", "--containers", "100000"])?;
    let t0 = Instant::now();
    c.wait_for_cells(cells, Duration::from_secs(300)).await;
    println!("{cells} simulated cells registered in {:.2?}", t0.elapsed());

    let started = Instant::now();
    let (client, url) = (c.client.clone(), c.url("/v1/desired_lrps"));
    let desired = drive(8, Stop::AfterOps(lrps), move |_, i| {
        let (client, url) = (client.clone(), url.clone());
        let body = serde_json::json!({
            "process_guid": format!("scale-{i:05}"),
            "domain": "bench",
            "rootfs": "preloaded:cflinuxfs4",
            "instances": instances,
            "memory_mb": 128,
            "ports": [8080],
            "action": {"run": {"path": "/bin/app", "user": "vcap"}},
        })
        .to_string();
        async move { post_json(client, &url, body, &[201]).await }
    })
    .await;
    desired.report_errors("desire");
    let desired_at = started.elapsed();
    println!("{lrps} DesiredLRPs × {instances} instances desired in {desired_at:.2?}");

    let mut pending: BTreeSet<usize> = (0..lrps).collect();
    let mut peak_rss = 0u64;
    while !pending.is_empty() {
        let mut done = Vec::new();
        for &i in pending.iter().take(50) {
            let a = c.get(&format!("/v1/actual_lrps/scale-{i:05}")).await.json();
            let all = a
                .as_array()
                .is_some_and(|v| v.len() == instances && v.iter().all(|x| x["state"] == "RUNNING"));
            if all {
                done.push(i);
            }
        }
        for i in &done {
            pending.remove(i);
        }
        peak_rss = peak_rss.max(c.rss_kib().unwrap_or(0));
        if done.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!("{} LRPs not all RUNNING after an hour", pending.len());
        }
    }
    let all_running = started.elapsed();
    let total = lrps * instances;
    println!(
        "all {total} instances RUNNING {all_running:.2?} after the first create ({:.0} instances/s placed, claimed and started)",
        total as f64 / all_running.as_secs_f64()
    );
    println!(
        "leader RSS: now {} MiB, peak seen {} MiB",
        c.rss_kib().unwrap_or(0) / 1024,
        peak_rss / 1024
    );
    let du = Command::new("du").arg("-sh").arg(dir.path()).output()?;
    println!("data dir: {}", String::from_utf8_lossy(&du.stdout).trim());
    sim.kill9();
    Ok(())
}
