//! Benchmark (prints figures, asserts nothing): scheduling at scale with simulated cells.
//! Starts `capstan dev --no-cell` (or, with `--nodes N`, an N-node cluster of `capstan server`) with
//! default flags and `capstan cell --simulate CELLS`, desires LRPS DesiredLRPs of INSTANCES each,
//! and measures until every instance is RUNNING: placements per second, time to all RUNNING, and
//! every node's RSS (peak sampled while it runs). With `--lose K`, K of the cells are a second
//! simulated fleet, killed with -9 once all run: the time until every instance runs again
//! elsewhere (the presence TTL included). With `--restart` (one node), the node is then killed with
//! -9 and started again on its data: how long until it is ready and serves a linearizable read;
//! `--log-entries E` first grows its log to E entries (no compaction before then) with small LRP
//! updates, so that the restart finds a log that long.
//! Run: `cargo run --release -p capstan-tests --bin bench-cells [CELLS] [LRPS] [INSTANCES] [--nodes N] [--lose K] [--restart [--log-entries E]]`.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use capstan_tests::bench::{drive, post_json, Stop};
use capstan_tests::cluster::Cluster;
use capstan_tests::{Capstan, CellAgent};

/// What the cells and the load talk to.
enum Target {
    Dev(Capstan, tempfile::TempDir),
    Cluster(Cluster),
}

impl Target {
    fn nodes(&self) -> Vec<(u64, &Capstan)> {
        match self {
            Target::Dev(c, _) => vec![(1, c)],
            Target::Cluster(cl) => cl.alive().map(|(id, c)| (*id, c)).collect(),
        }
    }

    /// Every node's gRPC address, as a cell is told them.
    fn grpc(&self) -> String {
        self.nodes()
            .iter()
            .map(|(_, c)| c.grpc.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn data_dirs(&self) -> Vec<std::path::PathBuf> {
        match self {
            Target::Dev(_, d) => vec![d.path().to_owned()],
            Target::Cluster(cl) => cl.specs.values().map(|s| s.data_dir.clone()).collect(),
        }
    }
}

/// The peak RSS seen of each node, in KiB.
#[derive(Default)]
struct Peaks(Vec<(u64, u64)>);

impl Peaks {
    fn sample(&mut self, t: &Target) {
        for (id, c) in t.nodes() {
            let rss = c.rss_kib().unwrap_or(0);
            match self.0.iter_mut().find(|(i, _)| *i == id) {
                Some((_, peak)) => *peak = (*peak).max(rss),
                None => self.0.push((id, rss)),
            }
        }
    }

    fn show(&self, t: &Target, leader: u64) -> String {
        self.0
            .iter()
            .map(|(id, peak)| {
                let node = t.nodes().into_iter().find(|(i, _)| i == id).map(|(_, c)| c);
                let now = node.and_then(Capstan::rss_kib).unwrap_or(0);
                // The kernel's high-water mark catches what the samples missed.
                let peak = node.and_then(Capstan::peak_rss_kib).unwrap_or(0).max(*peak);
                let role = if *id == leader { " (leader)" } else { "" };
                format!("node {id}{role}: now {} MiB, peak {} MiB", now / 1024, peak / 1024)
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn flag(args: &[String], name: &str) -> Option<usize> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.parse().ok()
}

/// Polls every LRP until all its instances are RUNNING (sampling RSS meanwhile).
async fn all_running(
    front: &Capstan,
    t: &Target,
    peaks: &mut Peaks,
    lrps: usize,
    instances: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut pending: BTreeSet<usize> = (0..lrps).collect();
    while !pending.is_empty() {
        let mut done = Vec::new();
        for &i in pending.iter().take(50) {
            let a = front.get(&format!("/v1/actual_lrps/scale-{i:05}")).await.json();
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
        peaks.sample(t);
        if done.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!("{} LRPs not all RUNNING after an hour", pending.len());
        }
    }
    Ok(())
}

/// `--restart` (single node): kill -9 the node holding the whole state, start it again on its data
/// dir, and time it until it is ready and until a linearizable read answers; its peak RSS.
async fn restart(target: Target, lrps: usize, instances: usize, log_entries: Option<usize>) -> anyhow::Result<()> {
    let Target::Dev(mut c, dir) = target else {
        anyhow::bail!("--restart measures a single node (no --nodes)");
    };
    if let Some(entries) = log_entries {
        grow_log(&c, lrps, entries as u64).await?;
    }
    let applied = c.get("/readyz").await.json()["last_applied"].as_u64();
    c.kill9();
    let t0 = Instant::now();
    let flags = dev_flags(log_entries);
    let c = Capstan::dev_with(
        &dir.path().join("data"),
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let ready = t0.elapsed();
    capstan_tests::wait_for(
        "a linearizable read of a whole LRP",
        Duration::from_secs(600),
        || async {
            let a = c.get("/v1/actual_lrps/scale-00000").await;
            (a.status == 200 && a.json().as_array().map(Vec::len) == Some(instances)).then_some(())
        },
    )
    .await;
    println!(
        "restart after kill -9 (log applied to {applied:?}): ready {ready:.2?}, first linearizable read {:.2?}, peak RSS {} MiB",
        t0.elapsed(),
        c.peak_rss_kib().unwrap_or(0) / 1024
    );
    Ok(())
}

/// `capstan dev`'s flags: no cell, and with a log to grow, no compaction before it is that long.
fn dev_flags(log_entries: Option<usize>) -> Vec<String> {
    let mut flags = vec!["--no-cell".to_owned()];
    if let Some(n) = log_entries {
        let keep = (n + 100_000).to_string();
        flags.extend(["--snapshot-every-entries".to_owned(), keep.clone()]);
        flags.extend(["--logs-kept-behind-snapshot".to_owned(), keep]);
    }
    flags
}

/// Grows the log to `entries` entries with small updates (each LRP's annotation) from 64
/// clients, reporting the rate as it goes.
async fn grow_log(c: &Capstan, lrps: usize, entries: u64) -> anyhow::Result<()> {
    let applied = || async { c.get("/readyz").await.json()["last_applied"].as_u64().unwrap_or(0) };
    let t0 = Instant::now();
    let client = reqwest::Client::new();
    let base = c.url("/v1/desired_lrps/");
    while applied().await < entries {
        let (client, base) = (client.clone(), base.clone());
        let round = drive(64, Stop::At(Instant::now() + Duration::from_secs(30)), move |_, i| {
            let url = format!("{base}scale-{:05}", i % lrps);
            let body = format!(r#"{{"annotation":"log-{i}"}}"#);
            let sent = client
                .put(url)
                .header("content-type", "application/json")
                .body(body)
                .send();
            async move { capstan_tests::bench::answered(sent.await, &[204]).await }
        })
        .await;
        round.report_errors("log growth");
        let now = applied().await;
        println!(
            "log at {now} entries after {:.0?} ({:.0} entries/s, {:.0} updates/s)",
            t0.elapsed(),
            now as f64 / t0.elapsed().as_secs_f64(),
            round.rate()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let positional: Vec<usize> = args[1..]
        .iter()
        .take_while(|a| !a.starts_with("--"))
        .filter_map(|a| a.parse().ok())
        .collect();
    let cells = positional.first().copied().unwrap_or(1000);
    let lrps = positional.get(1).copied().unwrap_or(1000);
    let instances = positional.get(2).copied().unwrap_or(250);
    let nodes = flag(&args, "--nodes").unwrap_or(1);
    let lose = flag(&args, "--lose").unwrap_or(0).min(cells);

    let target = if nodes > 1 {
        let cl = Cluster::start(u64::try_from(nodes)?, &[])?;
        cl.leader(Duration::from_secs(60)).await;
        Target::Cluster(cl)
    } else {
        let dir = tempfile::tempdir()?;
        let flags = dev_flags(flag(&args, "--log-entries"));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Target::Dev(Capstan::dev_with(&dir.path().join("data"), &flags)?, dir)
    };
    let leader = match &target {
        Target::Cluster(cl) => cl.leader(Duration::from_secs(60)).await,
        Target::Dev(..) => 1,
    };
    let nodes_now = target.nodes();
    let front: &Capstan = nodes_now
        .iter()
        .find(|(id, _)| *id == leader)
        .map(|(_, c)| *c)
        .ok_or_else(|| anyhow::anyhow!("no leader node"))?;
    let grpc = target.grpc();
    let cell_flags = ["--memory-mb", "1000000", "--containers", "100000"];
    let mut sim = CellAgent::simulated(&grpc, cells - lose, &cell_flags)?;
    let mut doomed = (lose > 0)
        .then(|| CellAgent::simulated_as("doomed", &grpc, lose, &cell_flags))
        .transpose()?;
    let t0 = Instant::now();
    front.wait_for_cells(cells, Duration::from_secs(300)).await;
    println!(
        "{cells} simulated cells registered in {:.2?} ({nodes} node(s), default flags)",
        t0.elapsed()
    );

    let mut peaks = Peaks::default();
    let started = Instant::now();
    let (client, url) = (front.client.clone(), front.url("/v1/desired_lrps"));
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
    println!(
        "{lrps} DesiredLRPs × {instances} instances desired in {:.2?}",
        started.elapsed()
    );

    all_running(front, &target, &mut peaks, lrps, instances).await?;
    let all_running_at = started.elapsed();
    let total = lrps * instances;
    println!(
        "all {total} instances RUNNING {all_running_at:.2?} after the first create ({:.0} instances/s placed, claimed and started)",
        total as f64 / all_running_at.as_secs_f64()
    );
    println!("RSS: {}", peaks.show(&target, leader));

    if let Some(d) = doomed.as_mut() {
        let lost = Instant::now();
        d.kill9();
        // Until the lost cells are gone and every instance runs again.
        capstan_tests::wait_for("the lost cells removed", Duration::from_secs(300), || async {
            let n = front.get("/v1/cells").await.json().as_array().map(Vec::len)?;
            (n <= cells - lose).then_some(())
        })
        .await;
        let removed = lost.elapsed();
        all_running(front, &target, &mut peaks, lrps, instances).await?;
        println!(
            "{lose} cells lost (kill -9): removed after {removed:.2?}, every instance RUNNING again {:.2?} after the kill",
            lost.elapsed()
        );
        println!("RSS: {}", peaks.show(&target, leader));
    }
    if args.iter().any(|a| a == "--restart") {
        restart(target, lrps, instances, flag(&args, "--log-entries")).await?;
        return Ok(());
    }
    for dir in target.data_dirs() {
        let du = Command::new("du").arg("-sh").arg(&dir).output()?;
        println!("data dir: {}", String::from_utf8_lossy(&du.stdout).trim());
    }
    sim.kill9();
    Ok(())
}
