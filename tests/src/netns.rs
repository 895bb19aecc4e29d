//! Test hosts with their own addresses: one network namespace per host, joined by a bridge, so a
//! test can cut one host off from the others (iptables inside its namespace) while the test
//! process still reaches every host. Needs root; `NetLab::create` says why it cannot run otherwise.

use std::process::Command;

use anyhow::{bail, Context, Result};

pub struct NetLab {
    bridge: String,
    subnet: String,
    pub hosts: Vec<Host>,
}

pub struct Host {
    pub ns: String,
    pub ip: String,
    veth_host: String,
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl NetLab {
    /// Creates `n` hosts, or returns why it cannot (not root, no `ip netns`, no iptables).
    pub fn create(n: usize) -> std::result::Result<Self, String> {
        if !Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"))
        {
            return Err("needs root for network namespaces".into());
        }
        sweep_stale_labs();
        let token = std::process::id();
        let mut lab = NetLab {
            bridge: format!("cpbr{token}"),
            subnet: format!("169.254.{}", 10 + token % 200),
            hosts: Vec::new(),
        };
        lab.build(n, token)
            .map_err(|e| format!("cannot build the network lab: {e:#}"))?;
        Ok(lab)
    }

    fn build(&mut self, n: usize, token: u32) -> Result<()> {
        let br = self.bridge.clone();
        run(&["ip", "link", "add", &br, "type", "bridge"])?;
        run(&["ip", "addr", "add", &format!("{}.254/24", self.subnet), "dev", &br])?;
        run(&["ip", "link", "set", &br, "up"])?;
        // Docker's FORWARD policy drops bridged traffic when br_netfilter is loaded; let ours pass.
        let _ = run(&["iptables", "-I", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"]);
        for i in 1..=n {
            let ns = format!("cp{token}n{i}");
            let (vh, vn) = (format!("cp{token}h{i}"), format!("cp{token}v{i}"));
            let ip = format!("{}.{i}", self.subnet);
            run(&["ip", "netns", "add", &ns])?;
            self.hosts.push(Host {
                ns: ns.clone(),
                ip: ip.clone(),
                veth_host: vh.clone(),
            });
            run(&["ip", "link", "add", &vh, "type", "veth", "peer", "name", &vn])?;
            run(&["ip", "link", "set", &vh, "master", &br, "up"])?;
            run(&["ip", "link", "set", &vn, "netns", &ns])?;
            run(&["ip", "-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", &vn])?;
            run(&["ip", "-n", &ns, "link", "set", &vn, "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            run(&["ip", "netns", "exec", &ns, "iptables", "-L", "-n"])?;
        }
        Ok(())
    }

    /// Cuts host `i` (0-based) off from the other hosts; the test process still reaches it.
    pub fn isolate(&self, i: usize) -> Result<()> {
        let h = &self.hosts[i];
        for (j, other) in self.hosts.iter().enumerate() {
            if j != i {
                run(&[
                    "ip", "netns", "exec", &h.ns, "iptables", "-A", "INPUT", "-s", &other.ip, "-j", "DROP",
                ])?;
                run(&[
                    "ip", "netns", "exec", &h.ns, "iptables", "-A", "OUTPUT", "-d", &other.ip, "-j", "DROP",
                ])?;
            }
        }
        Ok(())
    }

    /// Undoes `isolate`.
    pub fn heal(&self, i: usize) -> Result<()> {
        let h = &self.hosts[i];
        run(&["ip", "netns", "exec", &h.ns, "iptables", "-F", "INPUT"])?;
        run(&["ip", "netns", "exec", &h.ns, "iptables", "-F", "OUTPUT"])?;
        Ok(())
    }
}

/// Removes the labs of test processes that died without dropping theirs (a test run killed
/// hard): their `capstan` processes, namespaces, forward rule and bridge. A lab is named for the
/// pid of the process that built it (`cpbr<pid>`, `cp<pid>n<i>`); one whose process is gone is stale.
fn sweep_stale_labs() {
    let Ok(out) = Command::new("ip")
        .args(["-o", "link", "show", "type", "bridge"])
        .output()
    else {
        return;
    };
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let namespaces = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for line in listing.lines() {
        let Some(name) = line.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n)) else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("cpbr")
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let prefix = format!("cp{pid}n");
        for ns in namespaces.lines().filter_map(|l| l.split_whitespace().next()) {
            if !ns
                .strip_prefix(&prefix)
                .is_some_and(|i| i.bytes().all(|b| b.is_ascii_digit()))
            {
                continue;
            }
            let pids = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for p in pids.split_whitespace() {
                let _ = run(&["kill", "-9", p]);
            }
            let _ = run(&["ip", "netns", "del", ns]);
        }
        let _ = run(&["iptables", "-D", "FORWARD", "-i", name, "-o", name, "-j", "ACCEPT"]);
        let _ = run(&["ip", "link", "del", name]);
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = run(&["ip", "link", "del", &h.veth_host]);
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        let _ = run(&[
            "iptables",
            "-D",
            "FORWARD",
            "-i",
            &self.bridge,
            "-o",
            &self.bridge,
            "-j",
            "ACCEPT",
        ]);
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}
