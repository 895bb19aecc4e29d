//! Multi-node clusters of real `capstan server` processes for the black-box tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::netns::NetLab;
use crate::{capstan_bin, wait_for, Capstan};

/// How one node is started (kept so that it can be restarted the same way).
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: u64,
    /// `ip:port` the node listens on and advertises for gRPC.
    pub grpc: String,
    /// `ip:port` of its REST gateway.
    pub http: String,
    pub data_dir: PathBuf,
    /// Network namespace to run in, if any.
    pub netns: Option<String>,
}

pub struct Cluster {
    pub specs: BTreeMap<u64, NodeSpec>,
    pub nodes: BTreeMap<u64, Capstan>,
    /// Extra flags every node gets (e.g. a small snapshot policy).
    pub extra_args: Vec<String>,
    /// Extra flags of every `capstan cluster` call (e.g. TLS files and the cluster secret).
    pub cli_args: Vec<String>,
    pub initial: String,
    /// The `capstan` binary the nodes run (`None`: this workspace's).
    pub bin: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768-60999), so neither a
/// `:0` listener nor the source port of an outgoing connection can take one between the check and
/// the node's bind (a CI run lost a founding node to exactly that race).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free loopback port for a node to bind later. Each call in a test process gets a port no other
/// call got (a shared cursor, starting at a per-process offset so concurrent test processes rarely
/// meet), checked free by binding it once.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(97) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = TEST_PORTS.start + u16::try_from(offset)?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port in {TEST_PORTS:?}")
}

impl Cluster {
    /// Starts `n` founding nodes on loopback.
    pub fn start(n: u64, extra_args: &[&str]) -> Result<Self> {
        Self::start_bin(n, extra_args, None)
    }

    /// [`Cluster::start`] with the nodes running `bin` (an earlier build, side by side in a benchmark).
    pub fn start_bin(n: u64, extra_args: &[&str], bin: Option<std::path::PathBuf>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut specs = BTreeMap::new();
        for id in 1..=n {
            specs.insert(
                id,
                NodeSpec {
                    id,
                    grpc: format!("127.0.0.1:{}", free_port()?),
                    http: format!("127.0.0.1:{}", free_port()?),
                    data_dir: dir.path().join(format!("node{id}")),
                    netns: None,
                },
            );
        }
        Self::start_specs(dir, specs, extra_args, bin)
    }

    /// Starts one founding node on each host of `lab` (its own network namespace and address), so a
    /// test can cut any of them off. The lab's addresses are not loopback and its nodes run without
    /// auth, which `capstan server` refuses unless told `--insecure`: the lab is the test's own.
    pub fn start_in_lab(lab: &NetLab, extra_args: &[&str]) -> Result<Self> {
        let extra_args: Vec<&str> = extra_args.iter().copied().chain(["--insecure"]).collect();
        let extra_args = extra_args.as_slice();
        let dir = tempfile::tempdir()?;
        let specs = lab
            .hosts
            .iter()
            .zip(1u64..)
            .map(|(h, id)| {
                let spec = NodeSpec {
                    id,
                    grpc: format!("{}:7070", h.ip),
                    http: format!("{}:8080", h.ip),
                    data_dir: dir.path().join(format!("node{id}")),
                    netns: Some(h.ns.clone()),
                };
                (id, spec)
            })
            .collect();
        Self::start_specs(dir, specs, extra_args, None)
    }

    /// Starts founding nodes as described by `specs`, running `bin` (`None`: this workspace's).
    pub fn start_specs(
        dir: tempfile::TempDir,
        specs: BTreeMap<u64, NodeSpec>,
        extra_args: &[&str],
        bin: Option<std::path::PathBuf>,
    ) -> Result<Self> {
        let initial = specs
            .values()
            .map(|s| format!("{}={}", s.id, s.grpc))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            specs,
            nodes: BTreeMap::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            cli_args: Vec::new(),
            initial,
            bin,
            _dir: dir,
        };
        let ids: Vec<u64> = c.specs.keys().copied().collect();
        for id in ids {
            c.start_node(id)?;
        }
        Ok(c)
    }

    fn args(&self, spec: &NodeSpec, founding: bool) -> Vec<String> {
        let mut a = vec![
            "server".to_string(),
            "--id".into(),
            spec.id.to_string(),
            "--data-dir".into(),
            spec.data_dir.display().to_string(),
            "--grpc".into(),
            spec.grpc.clone(),
            "--http".into(),
            spec.http.clone(),
        ];
        if founding {
            a.push("--initial-cluster".into());
            a.push(self.initial.clone());
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// (Re)starts node `id` with its spec and data dir.
    pub fn start_node(&mut self, id: u64) -> Result<()> {
        let spec = self.specs.get(&id).context("unknown node")?.clone();
        let founding = self.initial.split(',').any(|p| p.starts_with(&format!("{id}=")));
        let args = self.args(&spec, founding);
        let node = match &self.bin {
            None => Capstan::spawn(&args, &spec.data_dir, spec.netns.as_deref())?,
            Some(bin) => Capstan::spawn_bin(bin, &args, &spec.data_dir, spec.netns.as_deref())?,
        };
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Describes and starts a brand-new node that belongs to no cluster until added.
    pub fn start_new_node(&mut self, id: u64) -> Result<NodeSpec> {
        let base = self.specs.values().next().context("no nodes")?.data_dir.clone();
        let spec = NodeSpec {
            id,
            grpc: format!("127.0.0.1:{}", free_port()?),
            http: format!("127.0.0.1:{}", free_port()?),
            data_dir: base.with_file_name(format!("node{id}")),
            netns: None,
        };
        self.specs.insert(id, spec.clone());
        self.start_node(id)?;
        Ok(spec)
    }

    pub fn kill9(&mut self, id: u64) {
        if let Some(mut n) = self.nodes.remove(&id) {
            n.kill9();
        }
    }

    pub fn node(&self, id: u64) -> &Capstan {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    pub fn alive(&self) -> impl Iterator<Item = (&u64, &Capstan)> {
        self.nodes.iter()
    }

    /// Runs `capstan cluster <args> --json` against the running nodes; returns its JSON.
    pub fn cli(&self, args: &[&str]) -> Result<Value> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        self.cli_via(&ids, args)
    }

    /// As `cli`, asking only the nodes `ids`.
    pub fn cli_via(&self, ids: &[u64], args: &[&str]) -> Result<Value> {
        let addrs = ids
            .iter()
            .filter_map(|id| self.specs.get(id))
            .map(|s| s.grpc.clone())
            .collect::<Vec<_>>()
            .join(",");
        let out = Command::new(capstan_bin()?)
            .arg("cluster")
            .args(&self.cli_args)
            .args(args)
            .args(["--json", "--cluster", &addrs])
            .output()?;
        if !out.status.success() {
            bail!("capstan cluster {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Waits until a running node is the leader and every running voter agrees; returns its id.
    pub async fn leader(&self, deadline: Duration) -> u64 {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        self.leader_among(&ids, deadline).await
    }

    /// Waits until one of `ids` is the leader as seen by the nodes `ids`; returns its id.
    pub async fn leader_among(&self, ids: &[u64], deadline: Duration) -> u64 {
        wait_for("a leader among the given nodes", deadline, || async {
            let s = self.cli_via(ids, &["status"]).ok()?;
            let leader = s["leader_id"].as_u64()?;
            (ids.contains(&leader) && self.nodes.contains_key(&leader)).then_some(leader)
        })
        .await
    }
}
