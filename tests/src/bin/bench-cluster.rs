//! Benchmark (prints figures, asserts nothing): a 3-node cluster of real `capstan server`
//! processes on loopback. Write throughput and latency over REST and over gRPC at 1, 16 and 64
//! concurrent clients (spread over all nodes, so 2/3 of requests are forwarded one hop), REST
//! linearizable reads at the same levels, then
//! the time from a leader `kill -9` to the first acknowledged write, over 10 runs.
//! Run: `cargo run --release -p capstan-tests --bin bench-cluster [OPS_PER_LEVEL] [FAILOVER_RUNS]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_proto::pb;
use capstan_tests::bench::{answered, drive, percentile, post_json, Stop};
use capstan_tests::cluster::Cluster;
use capstan_tests::lrp_json;

fn desired(guid: &str) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "bench".into(),
        rootfs: "preloaded:cflinuxfs4".into(),
        instances: 1,
        action: Some(pb::Action {
            kind: Some(pb::action::Kind::Run(pb::RunAction {
                path: "sh".into(),
                user: "vcap".into(),
                ..Default::default()
            })),
        }),
        memory_mb: 128,
        ..Default::default()
    }
}

async fn rest_level(c: &Cluster, clients: usize, ops: usize, tag: &str) {
    let urls: Arc<Vec<String>> = Arc::new(c.alive().map(|(_, n)| format!("{}/v1/desired_lrps", n.http)).collect());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap_or_default();
    let tag = tag.to_owned();
    let run = drive(clients, Stop::AfterOps(ops), move |w, i| {
        let (http, urls, body) = (http.clone(), urls.clone(), lrp_json(&format!("{tag}-{i}"), "bench", 1));
        async move { post_json(http, &urls[(w + i) % urls.len()], body, &[201]).await }
    })
    .await;
    run.report(&format!("REST create, {clients} clients"));
}

/// Linearizable REST reads of the DesiredLRPs `tag-0..ops` (created before), spread over all nodes.
async fn read_level(c: &Cluster, clients: usize, ops: usize, tag: &str) {
    let bases: Arc<Vec<String>> = Arc::new(c.alive().map(|(_, n)| format!("{}/v1/desired_lrps", n.http)).collect());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap_or_default();
    let tag = tag.to_owned();
    let run = drive(clients, Stop::AfterOps(ops), move |w, i| {
        let (http, url) = (http.clone(), format!("{}/{tag}-{i}", bases[(w + i) % bases.len()]));
        async move { answered(http.get(&url).send().await, &[200]).await }
    })
    .await;
    run.report(&format!("REST linearizable GET, {clients} clients"));
}

async fn grpc_level(c: &Cluster, clients: usize, ops: usize, tag: &str) -> anyhow::Result<()> {
    let mut channels = Vec::new();
    for (_, n) in c.alive() {
        channels.push(
            tonic::transport::Endpoint::from_shared(format!("http://{}", n.grpc))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let channels = Arc::new(channels);
    let tag = tag.to_owned();
    let run = drive(clients, Stop::AfterOps(ops), move |w, i| {
        let mut client = pb::control_plane_client::ControlPlaneClient::new(channels[(w + i) % channels.len()].clone());
        let desired_lrp = Some(desired(&format!("{tag}-{i}")));
        async move {
            client
                .desire_lrp(pb::DesireLrp { desired_lrp })
                .await
                .map(drop)
                .map_err(|status| format!("{:?}", status.code()))
        }
    })
    .await;
    run.report(&format!("gRPC DesireLrp, {clients} clients"));
    Ok(())
}

/// Kills the leader and measures until the first write acknowledged through a survivor.
async fn failover_once(c: &mut Cluster, run: usize) -> anyhow::Result<Duration> {
    let leader = c.leader(Duration::from_secs(30)).await;
    let survivors: Vec<String> = c
        .alive()
        .filter(|(id, _)| **id != leader)
        .map(|(_, n)| n.http.clone())
        .collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    c.kill9(leader);
    let killed = Instant::now();
    let mut i = 0usize;
    let took = loop {
        let url = format!("{}/v1/desired_lrps", survivors[i % survivors.len()]);
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(lrp_json(&format!("fo{run}-{i}"), "bench", 1))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().as_u16() == 201) {
            break killed.elapsed();
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
        if killed.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("no write acknowledged within 60 s of the leader kill");
        }
    };
    c.start_node(leader)?;
    Ok(took)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let ops: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4000);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut c = Cluster::start(3, &[])?;
    c.leader(Duration::from_secs(30)).await;
    println!("3-node cluster on loopback; {ops} creates per level, requests spread over all nodes");
    for clients in [1, 16, 64] {
        rest_level(&c, clients, ops, &format!("rest{clients}")).await;
    }
    for clients in [1, 16, 64] {
        read_level(&c, clients, ops, "rest1").await;
    }
    for clients in [1, 16, 64] {
        grpc_level(&c, clients, ops, &format!("grpc{clients}")).await?;
    }
    let mut took = Vec::new();
    for run in 0..runs {
        let t = failover_once(&mut c, run).await?;
        println!("failover run {run}: first acknowledged write {t:.2?} after the leader kill");
        took.push(t);
        // Let the restarted node rejoin before the next kill.
        c.leader(Duration::from_secs(30)).await;
        capstan_tests::wait_for("all 3 nodes to report status", Duration::from_secs(30), || async {
            let s = c.cli(&["status"]).ok()?;
            s["members"]
                .as_array()?
                .iter()
                .all(|m| m["status"].is_object() && m["lag"].as_u64().is_some_and(|l| l < 10))
                .then_some(())
        })
        .await;
    }
    took.sort();
    println!(
        "leader kill → first acknowledged write over {} runs: median {:.2?}, worst {:.2?}",
        took.len(),
        percentile(&took, 0.5),
        took.last().copied().unwrap_or_default()
    );
    Ok(())
}
