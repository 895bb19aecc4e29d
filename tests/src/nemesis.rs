//! A nemesis run against a real 3-node cluster, in the spirit of etcd's robustness tests and
//! Jepsen: concurrent clients write and read registers (DesiredLRP annotations) through random
//! nodes — so writes and linearizable reads go through followers and are forwarded — while the
//! nemesis kills (-9) and restarts, or pauses (SIGSTOP/SIGCONT), the leader or a follower, or
//! cuts one off from the others with a network partition (each node in its own network namespace
//! where the machine allows; said and skipped where it does not). Every
//! operation's invocation and completion is recorded (acknowledged, refused, indeterminate) and
//! the history is checked for linearizability (`linearizability.rs`). Reads flagged stale are
//! never part of a checked history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cluster::Cluster;
use crate::linearizability::{self, Op, Operation, Violation};
use crate::netns::NetLab;
use crate::{lrp_json, send_signal, wait_for};

/// The faults the nemesis injects, one per cycle, in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    KillLeader,
    KillFollower,
    PauseLeader,
    PauseFollower,
    PartitionLeader,
    PartitionFollower,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::PauseLeader,
        Fault::PauseFollower,
        Fault::PartitionLeader,
        Fault::PartitionFollower,
    ];

    fn on_leader(self) -> bool {
        matches!(self, Fault::KillLeader | Fault::PauseLeader | Fault::PartitionLeader)
    }

    fn is_partition(self) -> bool {
        matches!(self, Fault::PartitionLeader | Fault::PartitionFollower)
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub cycles: usize,
    pub clients: usize,
    pub keys: usize,
    /// How long a fault lasts before it is healed.
    pub fault_ms: u64,
    /// Quiet time between a heal and the next fault.
    pub quiet_ms: u64,
    /// A request with no answer after this is indeterminate.
    pub request_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cycles: 8,
            clients: 6,
            keys: 5,
            fault_ms: 1_500,
            quiet_ms: 1_000,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What a run did and found.
pub struct Report {
    pub operations: usize,
    pub acknowledged_writes: usize,
    pub reads: usize,
    pub refused: usize,
    pub indeterminate: usize,
    pub faults: BTreeMap<Fault, usize>,
    /// Per fault kind, the longest time without an acknowledged write from the fault's
    /// injection until the next fault (or the end).
    pub worst_unavailability: BTreeMap<Fault, Duration>,
    /// Per fault kind, the longest time from a fault's injection until a fresh write (sent after
    /// the injection, 1 s timeout) was acknowledged through every node the fault did not hit.
    pub worst_recovery: BTreeMap<Fault, Duration>,
    pub verdict: Result<(), Violation>,
    /// Why partitions were not injected, when they were not.
    pub partitions_skipped: Option<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "operations {} (acknowledged writes {}, reads {}), refused {}, indeterminate {}",
            self.operations, self.acknowledged_writes, self.reads, self.refused, self.indeterminate
        )?;
        for (fault, n) in &self.faults {
            let worst = self.worst_unavailability.get(fault).copied().unwrap_or_default();
            let recovery = self.worst_recovery.get(fault).copied().unwrap_or_default();
            writeln!(
                f,
                "fault {fault:?}: {n} times, worst unavailability {:.2} s, worst write recovery through every other node {:.2} s",
                worst.as_secs_f64(),
                recovery.as_secs_f64()
            )?;
        }
        if let Some(why) = &self.partitions_skipped {
            writeln!(f, "partitions SKIPPED: {why}")?;
        }
        match &self.verdict {
            Ok(()) => write!(f, "verdict: linearizable"),
            Err(v) => write!(f, "verdict: NOT linearizable\n{v}"),
        }
    }
}

/// A small xorshift generator: the run needs variety, not cryptographic randomness.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % (n.max(1) as u64)).unwrap_or(0)
    }
}

/// One write of the prober: through which node (0-based), when it was sent, when acknowledged.
#[derive(Clone, Copy, Debug)]
struct Probe {
    node: usize,
    invoked_ns: u64,
    acked_ns: Option<u64>,
}

/// How often the prober sends a fresh write through each node (without waiting for the last).
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// A probe unanswered after this counts as not acknowledged (the prober: 1 s).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

struct Shared {
    start: Instant,
    history: Mutex<Vec<Operation>>,
    probes: Mutex<Vec<Probe>>,
    refused: AtomicU64,
    last_ack_ns: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

const INITIAL: &str = "initial";

/// Runs the nemesis on a fresh 3-node cluster and checks the history.
pub async fn run(cfg: &Config) -> Result<Report> {
    let (lab, partitions_skipped) = match NetLab::create(3) {
        Ok(lab) => (Some(lab), None),
        Err(why) => (None, Some(why)),
    };
    let mut cluster = match &lab {
        None => Cluster::start(3, &[])?,
        Some(lab) => Cluster::start_in_lab(lab, &[])?,
    };
    let kinds: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|f| lab.is_some() || !f.is_partition())
        .collect();
    cluster.leader(Duration::from_secs(30)).await;
    let urls: Vec<String> = cluster.specs.values().map(|s| format!("http://{}", s.http)).collect();
    let http = reqwest::Client::builder().timeout(cfg.request_timeout).build()?;
    // The checked registers (set to INITIAL) and the prober's own, one per node.
    let names = (0..cfg.keys)
        .map(|k| (format!("reg-{k}"), true))
        .chain((0..urls.len()).map(|n| (format!("probe-{n}"), false)));
    for (name, set_initial) in names {
        let body = lrp_json(&name, "nemesis", 0);
        let url = format!("{}/v1/desired_lrps", urls[0]);
        wait_for("the registers to be created", Duration::from_secs(30), || {
            let (http, url, body, name) = (http.clone(), url.clone(), body.clone(), name.clone());
            async move {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .ok()?;
                let created = matches!(r.status().as_u16(), 200 | 201);
                if !set_initial {
                    return created.then_some(());
                }
                let set = http
                    .put(format!("{url}/{name}"))
                    .body(serde_json::json!({ "annotation": INITIAL }).to_string())
                    .send()
                    .await
                    .ok()?;
                (created && set.status().as_u16() == 204).then_some(())
            }
        })
        .await;
    }

    let shared = Arc::new(Shared {
        start: Instant::now(),
        history: Mutex::new(Vec::new()),
        probes: Mutex::new(Vec::new()),
        refused: AtomicU64::new(0),
        last_ack_ns: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let mut clients = Vec::new();
    for client in 0..cfg.clients {
        let (shared, urls, http, keys) = (shared.clone(), urls.clone(), http.clone(), cfg.keys);
        clients.push(tokio::spawn(async move {
            client_loop(client, &shared, &urls, &http, keys).await;
        }));
    }

    let prober = {
        let (shared, urls) = (shared.clone(), urls.clone());
        let http = reqwest::Client::builder().timeout(PROBE_TIMEOUT).build()?;
        tokio::spawn(async move { probe_loop(&shared, &urls, &http).await })
    };

    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id()));
    let mut faults: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut windows: Vec<(Fault, u64)> = Vec::new();
    let mut targets: Vec<usize> = Vec::new();
    for cycle in 0..cfg.cycles {
        tokio::time::sleep(Duration::from_millis(cfg.quiet_ms)).await;
        let fault = kinds[cycle % kinds.len()];
        let leader = cluster.leader(Duration::from_secs(30)).await;
        let followers: Vec<u64> = cluster.nodes.keys().copied().filter(|id| *id != leader).collect();
        let target = if fault.on_leader() {
            leader
        } else {
            followers[rng.below(followers.len())]
        };
        let host = usize::try_from(target - 1)?;
        let injected_ns = shared.now_ns();
        match fault {
            Fault::KillLeader | Fault::KillFollower => cluster.kill9(target),
            Fault::PauseLeader | Fault::PauseFollower => signal(&cluster, target, 19)?,
            Fault::PartitionLeader | Fault::PartitionFollower => lab.as_ref().context("no lab")?.isolate(host)?,
        }
        tokio::time::sleep(Duration::from_millis(cfg.fault_ms)).await;
        let healed_ns = shared.now_ns();
        let acked_during = shared
            .history
            .lock()
            .map(|h| {
                h.iter()
                    .filter(|o| matches!(o.op, Op::Write(_)))
                    .filter(|o| o.completed_ns.is_some_and(|c| c > injected_ns && c < healed_ns))
                    .count()
            })
            .unwrap_or(0);
        match fault {
            Fault::KillLeader | Fault::KillFollower => cluster.start_node(target)?,
            Fault::PauseLeader | Fault::PauseFollower => signal(&cluster, target, 18)?,
            Fault::PartitionLeader | Fault::PartitionFollower => lab.as_ref().context("no lab")?.heal(host)?,
        }
        // The cluster serves writes again before the next fault.
        let shared2 = shared.clone();
        wait_for("an acknowledged write after the heal", Duration::from_secs(60), || {
            let acked = shared2.last_ack_ns.load(Ordering::SeqCst);
            async move { (acked > healed_ns).then_some(()) }
        })
        .await;
        *faults.entry(fault).or_default() += 1;
        windows.push((fault, injected_ns));
        targets.push(host);
        eprintln!(
            "nemesis: cycle {cycle}: {fault:?} on node {target}: {acked_during} writes acknowledged during the fault"
        );
    }
    shared.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.context("client task")?;
    }
    prober.await.context("prober task")?;
    let probes = std::mem::take(&mut *shared.probes.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let recovery = worst_recovery(&probes, &windows, &targets, urls.len());

    let history = std::mem::take(&mut *shared.history.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let worst = worst_gaps(&history, &windows, shared.now_ns());
    let verdict = linearizability::check(&history, Some(INITIAL));
    Ok(Report {
        operations: history.len(),
        acknowledged_writes: history
            .iter()
            .filter(|o| matches!(o.op, Op::Write(_)) && o.completed_ns.is_some())
            .count(),
        reads: history.iter().filter(|o| matches!(o.op, Op::Read(_))).count(),
        refused: usize::try_from(shared.refused.load(Ordering::SeqCst)).unwrap_or(usize::MAX),
        indeterminate: history.iter().filter(|o| o.completed_ns.is_none()).count(),
        faults,
        worst_unavailability: worst,
        worst_recovery: recovery,
        verdict,
        partitions_skipped,
    })
}

/// Every [`PROBE_INTERVAL`], sends one fresh write through each node (its own register, so the
/// checked history is untouched) without waiting for the earlier ones, and records each probe.
async fn probe_loop(shared: &Arc<Shared>, urls: &[String], http: &reqwest::Client) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = Vec::new();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        tick.tick().await;
        for (node, url) in urls.iter().enumerate() {
            n += 1;
            let (shared, http) = (shared.clone(), http.clone());
            let url = format!("{url}/v1/desired_lrps/probe-{node}");
            let body = serde_json::json!({ "annotation": format!("p{n}") }).to_string();
            sent.push(tokio::spawn(async move {
                let invoked_ns = shared.now_ns();
                let r = http
                    .put(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let acked_ns = r.ok().filter(|r| r.status().as_u16() == 204).map(|_| shared.now_ns());
                if let Ok(mut p) = shared.probes.lock() {
                    p.push(Probe {
                        node,
                        invoked_ns,
                        acked_ns,
                    });
                }
            }));
        }
    }
    for t in sent {
        let _ = t.await;
    }
}

/// Per fault kind, the longest time from an injection until, through every node the fault did not
/// hit, a probe sent after the injection was acknowledged (to the end of the window if none was).
fn worst_recovery(
    probes: &[Probe],
    windows: &[(Fault, u64)],
    targets: &[usize],
    nodes: usize,
) -> BTreeMap<Fault, Duration> {
    let mut worst: BTreeMap<Fault, Duration> = BTreeMap::new();
    for (i, ((fault, from), target)) in windows.iter().zip(targets).enumerate() {
        let to = windows.get(i + 1).map_or(u64::MAX, |w| w.1);
        let per_node: Vec<(usize, u64)> = (0..nodes)
            .filter(|n| n != target)
            .map(|node| {
                let first = probes
                    .iter()
                    .filter(|p| p.node == node && p.invoked_ns >= *from && p.invoked_ns < to)
                    .filter_map(|p| p.acked_ns)
                    .min()
                    .map_or(to.saturating_sub(*from), |acked| acked - from);
                (node, first)
            })
            .collect();
        let recovered = per_node.iter().map(|(_, t)| *t).max().unwrap_or(0);
        let shown: Vec<String> = per_node
            .iter()
            .map(|(n, t)| format!("node {}: {:.2} s", n + 1, Duration::from_nanos(*t).as_secs_f64()))
            .collect();
        eprintln!(
            "nemesis: window {i}: {fault:?} on node {}: first fresh write acknowledged through {}",
            target + 1,
            shown.join(", ")
        );
        let w = worst.entry(*fault).or_default();
        *w = (*w).max(Duration::from_nanos(recovered));
    }
    worst
}

/// Per fault kind, the longest stretch without an acknowledged write inside each fault's window
/// (from its injection to the next fault's).
fn worst_gaps(history: &[Operation], windows: &[(Fault, u64)], end_ns: u64) -> BTreeMap<Fault, Duration> {
    let mut acks: Vec<u64> = history
        .iter()
        .filter(|o| matches!(o.op, Op::Write(_)))
        .filter_map(|o| o.completed_ns)
        .collect();
    acks.sort_unstable();
    let mut worst: BTreeMap<Fault, Duration> = BTreeMap::new();
    for (i, (fault, from)) in windows.iter().enumerate() {
        let to = windows.get(i + 1).map_or(end_ns, |w| w.1);
        let mut last = *from;
        let mut gap = 0u64;
        for t in acks.iter().copied().filter(|t| *t > *from && *t <= to) {
            gap = gap.max(t - last);
            last = t;
        }
        gap = gap.max(to.saturating_sub(last).min(if last == *from { u64::MAX } else { 0 }));
        let w = worst.entry(*fault).or_default();
        *w = (*w).max(Duration::from_nanos(gap));
    }
    worst
}

/// A 503 that says the write was never proposed (no leader here, or a leader cut off from its
/// quorum, both checked before proposing) is a refusal; any other 5xx may still commit.
fn never_proposed(status: u16, body: &str) -> bool {
    status == 507
        || (status == 503
            && [
                "this node is not the leader",
                "no leader is elected",
                "has not heard from a quorum",
            ]
            .iter()
            .any(|m| body.contains(m)))
}

fn signal(cluster: &Cluster, id: u64, sig: i32) -> Result<()> {
    let pid = cluster.node(id).pid().context("node not running")?;
    if send_signal(i32::try_from(pid)?, sig) != 0 {
        anyhow::bail!("signal {sig} to node {id} failed");
    }
    Ok(())
}

/// One client: writes and reads random registers through random nodes until told to stop.
async fn client_loop(client: usize, shared: &Shared, urls: &[String], http: &reqwest::Client, keys: usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (client as u64 + 1).wrapping_mul(0x1234_5678_9abc));
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let node = rng.below(urls.len());
        let key = format!("reg-{}", rng.below(keys));
        let url = format!("{}/v1/desired_lrps/{key}", urls[node]);
        let note = format!("via node {}", node + 1);
        let invoked_ns = shared.now_ns();
        if rng.below(2) == 0 {
            n += 1;
            let value = format!("c{client}-{n}");
            let sent = http
                .put(&url)
                .header("content-type", "application/json")
                .body(serde_json::json!({ "annotation": value }).to_string())
                .send()
                .await;
            let completed_ns = match sent {
                Ok(r) if r.status().as_u16() == 204 => {
                    let t = shared.now_ns();
                    shared.last_ack_ns.fetch_max(t, Ordering::SeqCst);
                    Some(t)
                }
                // A business refusal, or the connection was refused: it never reached a log.
                Ok(r) if r.status().is_client_error() => {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.text().await.unwrap_or_default();
                    if never_proposed(status, &body) {
                        shared.refused.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    None
                }
                Err(e) if e.is_connect() => {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                // 5xx (a quorum timeout may still commit later), timeouts, cut connections.
                _ => None,
            };
            record(shared, client, key, Op::Write(value), invoked_ns, completed_ns, note);
        } else {
            let Ok(r) = http.get(&url).send().await else { continue };
            if r.status().as_u16() != 200 {
                continue;
            }
            let Ok(body) = r.json::<serde_json::Value>().await else {
                continue;
            };
            let completed_ns = Some(shared.now_ns());
            let value = body["annotation"].as_str().map(str::to_owned);
            record(shared, client, key, Op::Read(value), invoked_ns, completed_ns, note);
        }
    }
}

fn record(
    shared: &Shared,
    client: usize,
    key: String,
    op: Op,
    invoked_ns: u64,
    completed_ns: Option<u64>,
    note: String,
) {
    if let Ok(mut h) = shared.history.lock() {
        h.push(Operation {
            client,
            key,
            op,
            invoked_ns,
            completed_ns,
            note,
        });
    }
}
