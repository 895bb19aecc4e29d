//! Benchmark (prints figures, asserts nothing): replicated writes of a 3-node Capstan cluster
//! against a 3-member etcd on the same box, side by side in one run. Both are driven by this same
//! load generator over HTTP/1.1 keep-alive with ~1 KiB bodies, requests spread round-robin over
//! the three members: Capstan creates DesiredLRPs (`POST /v1/desired_lrps`), etcd puts keys through
//! its JSON gateway (`POST /v3/kv/put`). Each level runs etcd then Capstan for the same time;
//! every line gives throughput, p50, p99, the CPU time the three members spent per acknowledged
//! write (from `/proc/<pid>/stat`: what a saturated box's throughput comes down to), the bytes a
//! member sent to its disk per acknowledged write (`/proc/<pid>/io` `write_bytes`), and the last
//! the ratios (Capstan / etcd).
//! With `CAPSTAN_BIN_BEFORE=<an earlier capstan binary>`, a second 3-node cluster runs that build and
//! each level runs etcd, the earlier build, then this one (a line each for the two Capstans).
//! `BENCH_CAPSTAN_ARGS` adds flags to every Capstan node of both builds.
//! Run: `tests/bench/vs-etcd.sh [SECONDS_PER_RUN] [LEVELS]` (installs Debian's etcd-server),
//! or `cargo run --release -p capstan-tests --bin bench-vs-etcd -- [SECONDS] [1,16,64,256]`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use capstan_tests::bench::{cpu_seconds, disk_bytes, drive, percentile, post_json, Stop};
use capstan_tests::cluster::{free_port, Cluster};
use capstan_tests::{lrp_json, wait_for};

/// What a cluster's `/metrics` say about a run: leader elections and snapshots (the p99 tail's
/// usual causes), summed over the nodes.
#[derive(Default)]
struct RaftFacts {
    term: f64,
    snapshots: f64,
    dump_seconds: f64,
    /// Keys apply wrote to sled, over the nodes.
    apply_writes: f64,
    nodes: f64,
}

impl RaftFacts {
    async fn of(cluster: &Cluster) -> Self {
        let mut facts = RaftFacts::default();
        for (_, node) in cluster.alive() {
            facts.nodes += 1.0;
            let Ok(text) = node.client.get(format!("{}/metrics", node.http)).send().await else {
                continue;
            };
            for line in text.text().await.unwrap_or_default().lines() {
                let mut parts = line.split_whitespace();
                let (Some(name), Some(Ok(value))) = (parts.next(), parts.next().map(str::parse::<f64>)) else {
                    continue;
                };
                match name {
                    "capstan_raft_term" => facts.term = facts.term.max(value),
                    "capstan_raft_snapshots_built_total" => facts.snapshots += value,
                    "capstan_raft_snapshot_dump_duration_seconds_sum" => facts.dump_seconds += value,
                    "capstan_storage_apply_batch_writes_sum" => facts.apply_writes += value,
                    _ => {}
                }
            }
        }
        facts
    }

    /// The run's facts, `creates` being how many the run got answered.
    fn since(&self, start: &RaftFacts, creates: f64) -> String {
        format!(
            "#      terms {} -> {}, snapshots built {} (reading them out: {:.2} s over the nodes), \
             sled keys written by apply per create per node: {:.2}",
            start.term,
            self.term,
            self.snapshots - start.snapshots,
            self.dump_seconds - start.dump_seconds,
            (self.apply_writes - start.apply_writes) / self.nodes.max(1.0) / creates.max(1.0)
        )
    }
}

/// A 3-member etcd on loopback, killed when dropped.
struct Etcd {
    members: Vec<Child>,
    clients: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> anyhow::Result<Self> {
        let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let dir = tempfile::tempdir()?;
        let ports: Vec<(u16, u16)> = (0..3)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let log = std::fs::File::create(dir.path().join(format!("e{i}.log")))?;
            let child = Command::new(&bin)
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("e{i}")))
                .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-cluster", &cluster, "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "capstan-bench"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {bin} (install Debian's etcd-server, or set ETCD_BIN)"))?;
            members.push(child);
        }
        let clients = ports.iter().map(|(c, _)| format!("http://127.0.0.1:{c}")).collect();
        Ok(Etcd {
            members,
            clients,
            _dir: dir,
        })
    }

    fn version() -> String {
        let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

/// What one system is asked to do, and the processes that do it.
struct Target {
    urls: Vec<String>,
    body: fn(&str) -> String,
    /// The status a write is answered with.
    accepted: u16,
    pids: Vec<u32>,
}

/// ~1 KiB: a DesiredLRP whose annotation pads it.
fn capstan_body(key: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&lrp_json(key, "bench", 1)).unwrap_or_default();
    v["annotation"] = serde_json::Value::String("x".repeat(560));
    v.to_string()
}

/// ~1 KiB: a put of a 700-byte value (base64 in etcd's JSON gateway).
fn etcd_body(key: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::json!({ "key": b64.encode(key), "value": b64.encode("v".repeat(700)) }).to_string()
}

/// One measurement: `clients` concurrent clients for `secs`; (successes/s, p50, p99, errors,
/// CPU seconds the target's processes spent per success, bytes each member sent to its disk per
/// success).
async fn run(target: &Target, clients: usize, secs: u64, tag: &str) -> Figures {
    let (cpu_at_start, disk_at_start) = (cpu_seconds(&target.pids), disk_bytes(&target.pids));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients.max(1))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default();
    let urls = Arc::new(target.urls.clone());
    let (body, accepted, tag_owned) = (target.body, target.accepted, tag.to_owned());
    let until = Instant::now() + Duration::from_secs(secs);
    let run = drive(clients, Stop::At(until), move |w, i| {
        let (http, urls, key) = (http.clone(), urls.clone(), format!("{tag_owned}-{i}"));
        async move { post_json(http, &urls[(w + i) % urls.len()], body(&key), &[accepted]).await }
    })
    .await;
    run.report_errors(tag);
    let cpu = cpu_seconds(&target.pids) - cpu_at_start;
    let disk = disk_bytes(&target.pids).saturating_sub(disk_at_start) as f64 / target.pids.len().max(1) as f64;
    let successes = (run.latencies.len() as f64).max(1.0);
    (
        run.rate(),
        percentile(&run.latencies, 0.50),
        percentile(&run.latencies, 0.99),
        run.failed(),
        cpu / successes,
        disk / successes,
    )
}

type Figures = (f64, Duration, Duration, usize, f64, f64);

/// One printed line: the connection count, etcd's figures (or blanks), a Capstan's, and the
/// ratios (throughput, p99, and CPU per write over the three members).
fn row(conns: &str, shown: Option<&Figures>, c: &Figures, etcd: &Figures) -> String {
    let ms = |d: Duration| format!("{:.2}ms", d.as_secs_f64() * 1000.0);
    let cpu = |s: f64| format!("{:.3}ms", s * 1000.0);
    let kb = |b: f64| format!("{:.1}KB", b / 1000.0);
    let etcd_cols = match shown {
        Some(e) => format!(
            "{:>9.0} {:>9} {:>9} {:>6} {:>8} {:>7}",
            e.0,
            ms(e.1),
            ms(e.2),
            e.3,
            cpu(e.4),
            kb(e.5)
        ),
        None => format!("{:>9} {:>9} {:>9} {:>6} {:>8} {:>7}", "", "", "", "", "", ""),
    };
    format!(
        "{conns:>5}  {etcd_cols}  {:>9.0} {:>9} {:>9} {:>6} {:>8} {:>7}  {:>7.2} {:>7.2} {:>7.2}",
        c.0,
        ms(c.1),
        ms(c.2),
        c.3,
        cpu(c.4),
        kb(c.5),
        c.0 / etcd.0.max(f64::MIN_POSITIVE),
        c.2.as_secs_f64() / etcd.2.as_secs_f64().max(f64::MIN_POSITIVE),
        c.4 / etcd.4.max(f64::MIN_POSITIVE),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let levels: Vec<usize> = args
        .get(2)
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 64, 256]);

    let etcd = Etcd::start()?;
    let health = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    for url in &etcd.clients {
        let url = format!("{url}/health");
        wait_for(&format!("etcd {url}"), Duration::from_secs(30), || {
            let (health, url) = (health.clone(), url.clone());
            async move {
                let r = health.get(&url).send().await.ok()?;
                let v: serde_json::Value = r.json().await.ok()?;
                (v["health"] == "true").then_some(())
            }
        })
        .await;
    }
    // Extra flags for every Capstan node (e.g. `--snapshot-every-entries 1000`, to see snapshots
    // within a short run), from `BENCH_CAPSTAN_ARGS`.
    let extra = std::env::var("BENCH_CAPSTAN_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    let capstan = Cluster::start(3, &extra)?;
    capstan.leader(Duration::from_secs(30)).await;
    // An earlier build side by side in the same run, when named.
    let before = match std::env::var_os("CAPSTAN_BIN_BEFORE") {
        None => None,
        Some(bin) => {
            let c = Cluster::start_bin(3, &extra, Some(bin.into()))?;
            c.leader(Duration::from_secs(30)).await;
            Some(c)
        }
    };
    let capstan_target = |c: &Cluster| Target {
        urls: c.alive().map(|(_, n)| format!("{}/v1/desired_lrps", n.http)).collect(),
        body: capstan_body,
        accepted: 201,
        pids: c.alive().filter_map(|(_, n)| n.pid()).collect(),
    };
    let before_target = before.as_ref().map(capstan_target);
    let targets = [
        Target {
            urls: etcd.clients.iter().map(|u| format!("{u}/v3/kv/put")).collect(),
            body: etcd_body,
            accepted: 200,
            pids: etcd.members.iter().map(Child::id).collect(),
        },
        capstan_target(&capstan),
    ];
    if targets[1].urls.len() != 3 {
        bail!("the Capstan cluster has {} nodes up, not 3", targets[1].urls.len());
    }
    println!(
        "# {} vs capstan (3 members each, loopback), {secs} s per run, ~1 KiB bodies",
        Etcd::version()
    );
    println!("# cpu/w: CPU time (user + system) of the three members per acknowledged write");
    println!("# disk/w: bytes a member sent to its disk per acknowledged write (/proc/<pid>/io write_bytes)");
    println!(
        "{:>5}  {:>9} {:>9} {:>9} {:>6} {:>8} {:>7}  {:>9} {:>9} {:>9} {:>6} {:>8} {:>7}  {:>7} {:>7} {:>7}",
        "conns",
        "etcd/s",
        "p50",
        "p99",
        "errs",
        "cpu/w",
        "disk/w",
        "capstan/s",
        "p50",
        "p99",
        "errs",
        "cpu/w",
        "disk/w",
        "x thr",
        "x p99",
        "x cpu/w"
    );
    for (round, &clients) in levels.iter().enumerate() {
        let e = run(&targets[0], clients, secs, &format!("e{round}")).await;
        if let (Some(t), Some(c)) = (&before_target, &before) {
            let at_start = RaftFacts::of(c).await;
            let b = run(t, clients, secs, &format!("b{round}")).await;
            println!("{}", row("", None, &b, &e) + "   (earlier build)");
            println!("{}", RaftFacts::of(c).await.since(&at_start, b.0 * secs as f64));
        }
        let at_start = RaftFacts::of(&capstan).await;
        let c = run(&targets[1], clients, secs, &format!("c{round}")).await;
        println!("{}", row(&clients.to_string(), Some(&e), &c, &e));
        println!("{}", RaftFacts::of(&capstan).await.since(&at_start, c.0 * secs as f64));
    }
    Ok(())
}
