//! Black-box test harness: builds and starts real `capstan` processes, waits on conditions with
//! deadlines (never fixed sleeps), and talks to them over HTTP like a user would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod auth;
pub mod bench;
pub mod cluster;
pub mod flotilla;
pub mod linearizability;
pub mod load;
pub mod nemesis;
pub mod netns;
pub mod routes;
pub mod sse;

/// How long a process may take to print its ready line.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// The `capstan` binary of this workspace, built once per test process in the same profile.
pub fn capstan_bin() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build_bin().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("CAPSTAN_BIN") {
        return Ok(PathBuf::from(p));
    }
    // target/<profile>/deps/<test-exe> or target/<profile>/<bench-exe> → target/<profile>
    let exe = std::env::current_exe()?;
    let mut profile_dir = exe.parent().context("executable has no folder")?.to_path_buf();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir = profile_dir.parent().context("deps has no parent")?.to_path_buf();
    }
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "capstan", "--bin", "capstan"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build for the capstan binary")?;
    if !status.success() {
        bail!("cargo build of the capstan binary failed: {status}");
    }
    let bin = profile_dir.join("capstan");
    if !bin.exists() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

/// A running `capstan dev` process. Killed (SIGKILL) when dropped.
pub struct Capstan {
    child: Option<Child>,
    pub http: String,
    pub grpc: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
}

/// What a request returned: status, headers and the body as text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Capstan {
    /// Starts `capstan dev --no-cell` (the API alone: instances stay UNCLAIMED) on free
    /// loopback ports with its data in `data_dir`.
    pub fn dev(data_dir: &Path) -> Result<Self> {
        Self::dev_with(data_dir, &["--no-cell"])
    }

    /// Starts `capstan dev <extra>` on free loopback ports with its data in `data_dir`.
    pub fn dev_with(data_dir: &Path, extra: &[&str]) -> Result<Self> {
        Self::spawn(&Self::dev_args(data_dir, extra), data_dir, None)
    }

    /// The arguments of `capstan dev <extra>` on free loopback ports with its data in `data_dir`
    /// (for starting it under a wrapper, see [`Capstan::spawn_under`]).
    pub fn dev_args(data_dir: &Path, extra: &[&str]) -> Vec<String> {
        ["dev", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--data-dir"]
            .iter()
            .map(|s| s.to_string())
            .chain([data_dir.display().to_string()])
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    }

    /// Starts `capstan <args>` (inside network namespace `netns` when given) and waits for its
    /// ready line, reading the bound addresses from its stdout.
    pub fn spawn(args: &[String], data_dir: &Path, netns: Option<&str>) -> Result<Self> {
        Self::spawn_bin(&capstan_bin()?, args, data_dir, netns)
    }

    /// [`Capstan::spawn`] of another `capstan` binary (an earlier build, for a benchmark).
    pub fn spawn_bin(bin: &Path, args: &[String], data_dir: &Path, netns: Option<&str>) -> Result<Self> {
        match netns {
            None => Self::spawn_program(bin, &[], args, data_dir),
            Some(ns) => Self::spawn_program(bin, &["ip", "netns", "exec", ns], args, data_dir),
        }
    }

    /// Starts `<wrapper...> capstan <args>` (e.g. under `strace`, or in a network namespace) and
    /// waits for its ready line.
    pub fn spawn_under(wrapper: &[&str], args: &[String], data_dir: &Path) -> Result<Self> {
        Self::spawn_program(&capstan_bin()?, wrapper, args, data_dir)
    }

    fn spawn_program(bin: &Path, wrapper: &[&str], args: &[String], data_dir: &Path) -> Result<Self> {
        let mut cmd = match wrapper.split_first() {
            None => Command::new(bin),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
        };
        let mut child = cmd
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning capstan")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_DEADLINE;
        let (mut http, mut grpc) = (String::new(), String::new());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // Its stdout closed: it exited (its stderr, inherited, says why).
                    let status = child.wait()?;
                    bail!("capstan {args:?} exited ({status}) before it was ready; its stderr is above");
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("capstan {args:?} did not become ready within {START_DEADLINE:?}");
                }
            };
            if let Some(a) = line.strip_prefix("capstan: http=") {
                http = format!("http://{a}");
            } else if let Some(a) = line.strip_prefix("capstan: grpc=") {
                grpc = a.to_owned();
            } else if line.starts_with("capstan: ready") {
                break;
            }
        }
        Ok(Self {
            child: Some(child),
            http,
            grpc,
            data_dir: data_dir.to_owned(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                // Below the shortest idle cut a test gives a node (`--http-header-timeout-ms 600`):
                // a kept connection the node is closing at that moment must not be reused (the
                // request then fails with "error sending request", seen in CI under load).
                .pool_idle_timeout(Duration::from_millis(300))
                .timeout(Duration::from_secs(20))
                .build()?,
        })
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, no chance to flush: what a power cut looks like to the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for an orderly exit.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let mut c = self.child.take().context("not running")?;
        let pid = i32::try_from(c.id())?;
        let rc = send_signal(pid, 15);
        if rc != 0 {
            bail!("kill(SIGTERM) failed");
        }
        Ok(c.wait()?)
    }

    /// The exit status once the process has exited by itself (polled; `None` while it runs).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the process (Linux /proc), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmRSS:")
    }

    /// The most resident memory the process has had (its high-water mark), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmHWM:")
    }

    fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<String>) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path} failed: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.request(reqwest::Method::POST, path, Some(body.to_owned())).await
    }
    pub async fn put(&self, path: &str, body: &str) -> Reply {
        self.request(reqwest::Method::PUT, path, Some(body.to_owned())).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.request(reqwest::Method::DELETE, path, None).await
    }
}

pub fn send_signal(pid: i32, sig: i32) -> i32 {
    // The shell's `kill` keeps this crate free of `unsafe` (the workspace forbids it).
    match Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
    {
        Ok(s) if s.success() => 0,
        _ => -1,
    }
}

impl Drop for Capstan {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A `capstan cell` agent process (killed with -9 when dropped).
pub struct CellAgent(pub Child);

impl CellAgent {
    /// Starts `capstan cell --cluster <grpc> --id <id> --work-dir <work> <extra>` and waits for
    /// its ready line.
    pub fn start(grpc: &str, id: &str, work: &Path, extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(capstan_bin()?)
            .args([
                "cell",
                "--cluster",
                grpc,
                "--id",
                id,
                "--port-range",
                "62000-62999",
                "--work-dir",
            ])
            .arg(work)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a cell agent")?;
        let out = child.stdout.take().context("cell stdout")?;
        let mut lines = BufReader::new(out).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("capstan: ready") => break,
                Some(Ok(_)) => continue,
                _ => bail!("the cell agent {id} exited before it was ready"),
            }
        }
        Ok(Self(child))
    }

    /// Starts `capstan cell --simulate N` (N cells that report their work started without running
    /// it, for scale work) against `grpc`, and waits for its ready line.
    pub fn simulated(grpc: &str, n: usize, extra: &[&str]) -> Result<Self> {
        Self::simulated_as("sim", grpc, n, extra)
    }

    /// [`CellAgent::simulated`] with the cells' ids prefixed `id` (two fleets side by side).
    pub fn simulated_as(id: &str, grpc: &str, n: usize, extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(capstan_bin()?)
            .args(["cell", "--simulate", &n.to_string(), "--cluster", grpc, "--id", id])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting simulated cells")?;
        let out = child.stdout.take().context("cell stdout")?;
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if l.starts_with("capstan: ready") {
                return Ok(Self(child));
            }
        }
        bail!("the simulated cells exited before they were ready")
    }

    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Capstan {
    /// Waits until at least `n` cells are registered (through `/v1/cells`).
    pub async fn wait_for_cells(&self, n: usize, deadline: Duration) {
        wait_for(&format!("{n} cells to register"), deadline, || async {
            (self.get("/v1/cells").await.json().as_array().map(Vec::len).unwrap_or(0) >= n).then_some(())
        })
        .await
    }
}

impl Drop for CellAgent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `check` until it returns `Some`, or fails after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    let mut backoff = Duration::from_millis(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// A valid DesiredLRPCreateRequest body.
pub fn lrp_json(process_guid: &str, domain: &str, instances: i32) -> String {
    serde_json::json!({
        "process_guid": process_guid,
        "domain": domain,
        "rootfs": "preloaded:cflinuxfs4",
        "instances": instances,
        "action": {"run": {"path": "sh", "args": ["-c", "sleep 1000"], "user": "vcap"}},
        "ports": [8080],
        "routes": {"cf-router": [{"hostnames": [format!("{process_guid}.example.com")], "port": 8080}]},
        "memory_mb": 128,
        "disk_mb": 256,
    })
    .to_string()
}

/// The virtualenv with the unmodified python `cloudfoundry-client` (pinned in
/// `tests/cf-client/requirements.txt`, installed by `tests/cf-client/setup.sh`), set up once per
/// target directory: its python. `None`: it cannot be made here (PyPI unreachable, or no venv
/// module for python3; the script says which on stderr).
pub fn cf_client_python() -> Option<PathBuf> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let venv = target.join("cf-client-venv");
    let status = Command::new("bash")
        .arg(root.join("tests/cf-client/setup.sh"))
        .arg(&venv)
        .status()
        .expect("run tests/cf-client/setup.sh");
    match status.code() {
        Some(0) => Some(venv.join("bin/python")),
        Some(3) => None,
        _ => panic!("tests/cf-client/setup.sh failed: {status}"),
    }
}

/// The names of a CF list's resources, in order.
pub fn cf_names(list: &serde_json::Value) -> Vec<String> {
    let rows = list["resources"].as_array().into_iter().flatten();
    rows.filter_map(|r| r["name"].as_str().map(str::to_owned)).collect()
}
