//! Benchmark (prints figures, asserts nothing): Cloud Foundry V3 lists and scale calls against a
//! real `capstan dev` process. Creates PROCESSES processes through `apply_manifest` (apps of 20
//! processes, 100 apps per manifest), then times `GET /v3/processes?per_page=5000` (first and
//! last page, a type filter, a label_selector), the node's RSS before and after, and
//! `POST /v3/processes/:guid/actions/scale` calls/s with CLIENTS concurrent clients.
//! Run: `cargo run --release -p capstan-tests --bin bench-cf [PROCESSES] [CLIENTS] [SCALES]`.

use std::sync::Arc;
use std::time::Instant;

use capstan_tests::bench::{drive, post_json, report, Stop};
use capstan_tests::Capstan;
use serde_json::{json, Value};

const PROCESSES_PER_APP: usize = 20;
const APPS_PER_MANIFEST: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let processes: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    let scales: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let dir = tempfile::tempdir()?;
    let c = Capstan::dev(&dir.path().join("data"))?;
    println!(
        "capstan dev at {} — {processes} CF processes, {clients} concurrent scale clients",
        c.http
    );
    let rss = |c: &Capstan| c.rss_kib().map_or("?".to_owned(), |k| format!("{} MiB", k / 1024));
    println!("RSS at start: {}", rss(&c));

    let org = c.post("/v3/organizations", r#"{"name":"bench"}"#).await.json();
    let body = json!({"name": "bench", "relationships": {"organization": {"data": {"guid": org["guid"]}}}});
    let space = c.post("/v3/spaces", &body.to_string()).await.json()["guid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let apps = processes.div_ceil(PROCESSES_PER_APP);
    let started = Instant::now();
    let mut lat = Vec::new();
    for first in (0..apps).step_by(APPS_PER_MANIFEST) {
        let mut yaml = String::from("applications:\n");
        for a in first..(first + APPS_PER_MANIFEST).min(apps) {
            yaml.push_str(&format!("- name: app-{a:05}\n  processes:\n"));
            for p in 0..PROCESSES_PER_APP {
                let t = if p == 0 {
                    "web".to_owned()
                } else {
                    format!("worker-{p}")
                };
                yaml.push_str(&format!("  - {{type: {t}, command: run-{p}, instances: 1}}\n"));
            }
        }
        let t = Instant::now();
        let r = c
            .client
            .post(c.url(&format!("/v3/spaces/{space}/actions/apply_manifest")))
            .header("content-type", "application/x-yaml")
            .body(yaml)
            .send()
            .await?;
        if r.status().as_u16() != 202 {
            eprintln!("apply_manifest: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        lat.push(t.elapsed());
    }
    let took = started.elapsed();
    report("apply_manifest (2,000 processes each)", lat, took);
    println!(
        "{:<44} {:.0} processes created/s",
        "",
        (apps * PROCESSES_PER_APP) as f64 / took.as_secs_f64()
    );
    println!("RSS after the creates: {}", rss(&c));

    let last_page = (apps * PROCESSES_PER_APP).div_ceil(5000);
    for (label, path, rounds) in [
        (
            "GET /v3/processes?per_page=5000 (page 1)",
            "/v3/processes?per_page=5000".to_owned(),
            10,
        ),
        (
            "GET /v3/processes?per_page=5000 (last page)",
            format!("/v3/processes?per_page=5000&page={last_page}"),
            10,
        ),
        (
            "GET /v3/processes?types=web&per_page=5000",
            "/v3/processes?types=web&per_page=5000".to_owned(),
            10,
        ),
        (
            "GET /v3/processes?label_selector=!x (all)",
            "/v3/processes?label_selector=!x&per_page=1".to_owned(),
            10,
        ),
    ] {
        let mut lat = Vec::new();
        let (mut bytes, mut total) = (0, Value::Null);
        let started = Instant::now();
        for _ in 0..rounds {
            let t = Instant::now();
            let body = c.client.get(c.url(&path)).send().await?.bytes().await?;
            lat.push(t.elapsed());
            bytes = body.len();
            total = serde_json::from_slice::<Value>(&body)?["pagination"]["total_results"].clone();
        }
        report(label, lat, started.elapsed());
        println!("{:<44} body={bytes} bytes, total_results={total}", "");
    }
    println!("RSS after the lists: {}", rss(&c));

    // Scale calls on distinct processes (apps stopped: the CF record alone changes).
    let page = c.get("/v3/processes?per_page=1000").await.json();
    let guids: Arc<Vec<String>> = Arc::new(
        page["resources"]
            .as_array()
            .map(|r| r.iter().filter_map(|p| p["guid"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
    );
    let (client, base) = (c.client.clone(), c.url(""));
    let ops = if guids.is_empty() { 0 } else { scales };
    let run = drive(clients, Stop::AfterOps(ops), move |_, i| {
        let client = client.clone();
        let url = format!("{base}/v3/processes/{}/actions/scale", guids[i % guids.len()]);
        async move { post_json(client, &url, format!("{{\"instances\": {}}}", i % 5), &[202]).await }
    })
    .await;
    run.report("POST /v3/processes/:guid/actions/scale");
    println!("RSS at the end: {}", rss(&c));
    let du = std::process::Command::new("du").arg("-sh").arg(dir.path()).output()?;
    println!("data dir: {}", String::from_utf8_lossy(&du.stdout).trim());
    Ok(())
}
