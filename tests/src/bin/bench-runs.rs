//! Benchmark (prints figures, asserts nothing): task runs end to end. First `capstan dev
//! --no-cell` with `capstan cell --simulate CELLS` (cells that report a run started and exited at
//! once): RUNS runs of `true` executed by 16 clients — execute latency, execute → STOPPED
//! throughput, and queue-to-start latency (the leader's own `queued_at` → `started_at`). Then
//! `capstan dev` with its real cell: REAL runs of `true` as real `sh -c` processes.
//! Run: `cargo run --release -p capstan-tests --bin bench-runs [CELLS] [RUNS] [REAL]`.

use std::time::{Duration, Instant};

use capstan_tests::bench::{answered, drive, report, Stop};
use capstan_tests::{Capstan, CellAgent};
use serde_json::{json, Value};

const CLIENTS: usize = 16;

fn ns(t: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t.as_str()?)
        .ok()?
        .timestamp_nanos_opt()
}

/// Executes `runs` runs of `definition_id` from CLIENTS clients; the execute latencies.
async fn execute_all(c: &Capstan, definition_id: &str, runs: usize) -> anyhow::Result<Vec<Duration>> {
    let (client, url) = (
        c.client.clone(),
        c.url(&format!("/api/v1/task/{definition_id}/execute")),
    );
    let run = drive(CLIENTS, Stop::AfterOps(runs), move |_, _| {
        let (client, url) = (client.clone(), url.clone());
        async move { answered(client.put(&url).body("{}").send().await, &[200, 201]).await }
    })
    .await;
    run.report_errors("execute");
    Ok(run.latencies)
}

/// Waits until `runs` runs are STOPPED; the time it took from `since`.
async fn all_stopped(c: &Capstan, runs: usize, since: Instant) -> anyhow::Result<Duration> {
    loop {
        let h = c.get("/api/v1/history?status=STOPPED&limit=1").await.json();
        if h["total"].as_u64().unwrap_or(0) as usize >= runs {
            return Ok(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(900) {
            anyhow::bail!("only {} of {runs} runs stopped", h["total"]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Queue-to-start and queue-to-finish latencies of every stopped run, from the run records.
async fn run_latencies(c: &Capstan) -> (Vec<Duration>, Vec<Duration>, usize) {
    let mut start = Vec::new();
    let mut finish = Vec::new();
    let mut failed = 0;
    let mut offset = 0;
    loop {
        let page = c
            .get(&format!("/api/v1/history?status=STOPPED&limit=5000&offset={offset}"))
            .await
            .json();
        let runs = page["history"].as_array().cloned().unwrap_or_default();
        if runs.is_empty() {
            break;
        }
        offset += runs.len();
        for r in runs {
            if r["exit_code"] != 0 {
                failed += 1;
            }
            let (Some(q), Some(s), Some(f)) = (ns(&r["queued_at"]), ns(&r["started_at"]), ns(&r["finished_at"])) else {
                continue;
            };
            start.push(Duration::from_nanos(u64::try_from(s - q).unwrap_or(0)));
            finish.push(Duration::from_nanos(u64::try_from(f - q).unwrap_or(0)));
        }
    }
    (start, finish, failed)
}

async fn define(c: &Capstan) -> anyhow::Result<String> {
    let d = c
        .post(
            "/api/v1/task",
            &json!({"alias": "bench", "group_name": "bench", "image": "x", "command": "true", "memory": 64})
                .to_string(),
        )
        .await
        .json();
    d["definition_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no definition: {d}"))
}

async fn simulated(cells: usize, runs: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let c = Capstan::dev_with(&dir.path().join("data"), &["--no-cell", "--cell-ttl-ms", "30000"])?;
    let mut sim = CellAgent::simulated(&c.grpc, cells, &["--memory-mb", "100000", "--containers", "1000"])?;
    c.wait_for_cells(cells, Duration::from_secs(120)).await;
    let id = define(&c).await?;
    let t = Instant::now();
    let lat = execute_all(&c, &id, runs).await?;
    let executed = t.elapsed();
    report("execute (REST PUT .../execute), 16 clients", lat, executed);
    let wall = all_stopped(&c, runs, t).await?;
    println!(
        "{runs} runs execute → STOPPED through {cells} simulated cells: {:.2?}, {:.0} runs/s",
        wall,
        runs as f64 / wall.as_secs_f64()
    );
    let (start, _, failed) = run_latencies(&c).await;
    report("queue → start (leader stamps)", start, wall);
    println!("runs that did not exit 0: {failed}; leader RSS {:?} KiB", c.rss_kib());
    sim.kill9();
    Ok(())
}

async fn real(runs: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let c = Capstan::dev_with(&dir.path().join("data"), &[])?;
    c.wait_for_cells(1, Duration::from_secs(30)).await;
    let id = define(&c).await?;
    let t = Instant::now();
    let lat = execute_all(&c, &id, runs).await?;
    report("execute on the dev cell, 16 clients", lat, t.elapsed());
    let wall = all_stopped(&c, runs, t).await?;
    println!(
        "{runs} real runs of `true` execute → STOPPED on the dev cell: {:.2?}, {:.1} runs/s",
        wall,
        runs as f64 / wall.as_secs_f64()
    );
    let (start, finish, failed) = run_latencies(&c).await;
    report("queue → start (real processes)", start, wall);
    report("queue → finish (real processes)", finish, wall);
    println!("runs that did not exit 0: {failed}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let cells: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let real_runs: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
    simulated(cells, runs).await?;
    real(real_runs).await
}
