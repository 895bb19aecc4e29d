//! Benchmark (prints figures, asserts nothing): POST and GET /v1/desired_lrps against a real
//! `capstan dev` process. Run: `cargo run --release -p capstan-tests --bin bench-receptor [LRPS] [CLIENTS]`.
//! With `CAPSTAN_BENCH_AUTH=on` the node runs with auth on and every request carries a bearer
//! token (the cost of checking it, side by side with a run without).

use std::time::Instant;

use capstan_tests::auth::AuthFixture;
use capstan_tests::bench::{drive, post_json, report, Stop};
use capstan_tests::{lrp_json, Capstan};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let lrps: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    let dir = tempfile::tempdir()?;
    let auth = std::env::var("CAPSTAN_BENCH_AUTH").is_ok_and(|v| v == "on");
    let fixture = if auth { Some(AuthFixture::new("")?) } else { None };
    let mut c = match &fixture {
        Some(fx) => fx.dev(&dir.path().join("data"))?,
        None => Capstan::dev(&dir.path().join("data"))?,
    };
    if let Some(fx) = &fixture {
        let token = fx.login(&c, "writer", "writer-pw").await;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("bearer {}", token["access_token"].as_str().unwrap_or_default()).parse()?,
        );
        c.client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .default_headers(headers)
            .build()?;
    }
    println!(
        "capstan dev at {} — {lrps} LRPs (1 instance each), {clients} concurrent clients, auth {}",
        c.http,
        if auth {
            "on (bearer token on every request)"
        } else {
            "off"
        }
    );

    let (client, url) = (c.client.clone(), c.url("/v1/desired_lrps"));
    let run = drive(clients, Stop::AfterOps(lrps), move |_, i| {
        let (client, url) = (client.clone(), url.clone());
        let body = lrp_json(&format!("bench-{i:06}"), "bench", 1);
        async move { post_json(client, &url, body, &[201]).await }
    })
    .await;
    run.report("POST /v1/desired_lrps (create)");

    for (label, path, rounds) in [
        ("GET /v1/desired_lrps (all, linearizable)", "/v1/desired_lrps", 20),
        ("GET /v1/desired_lrps?domain=bench", "/v1/desired_lrps?domain=bench", 20),
        (
            "GET /v1/desired_lrps/:guid (one)",
            "/v1/desired_lrps/bench-004242",
            2000,
        ),
    ] {
        let mut lat = Vec::new();
        let mut bytes = 0;
        let started = Instant::now();
        for _ in 0..rounds {
            let t = Instant::now();
            let body = c.client.get(c.url(path)).send().await?.bytes().await?;
            lat.push(t.elapsed());
            bytes = body.len();
        }
        report(label, lat, started.elapsed());
        println!("{:<44} body={bytes} bytes", "");
    }
    if let Some(kib) = c.rss_kib() {
        println!("capstan dev RSS after the run: {} MiB", kib / 1024);
    }
    let du = std::process::Command::new("du").arg("-sh").arg(dir.path()).output()?;
    println!("data dir: {}", String::from_utf8_lossy(&du.stdout).trim());
    Ok(())
}
