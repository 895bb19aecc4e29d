//! Figures for the benchmark programs: the one load driver they share ([`drive`]), latency
//! percentiles and one printed line per measurement.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When a [`drive`] stops: after so many operations in all, or at a deadline.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    AfterOps(usize),
    At(Instant),
}

/// What a [`drive`] measured.
#[derive(Debug, Default)]
pub struct Driven {
    /// Latencies of the operations that succeeded, sorted.
    pub latencies: Vec<Duration>,
    /// The operations that failed, by what went wrong.
    pub errors: BTreeMap<String, usize>,
    /// From the drive's start until its last worker was done.
    pub wall: Duration,
}

impl Driven {
    /// Successes per second.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Operations that failed.
    pub fn failed(&self) -> usize {
        self.errors.values().sum()
    }

    /// Prints the measurement's line ([`report`]) and, on stderr, what failed if anything did.
    pub fn report(&self, what: &str) {
        report(what, self.latencies.clone(), self.wall);
        self.report_errors(what);
    }

    /// What failed, on stderr (so a figure's table stays clean and an error count is never a mystery).
    pub fn report_errors(&self, what: &str) {
        if !self.errors.is_empty() {
            eprintln!("{what}: errors {:?}", self.errors);
        }
    }
}

/// The load every benchmark puts on: `clients` workers at once, each taking the next operation
/// number `i` (0, 1, 2, … over all workers) and running `op(worker, i)` until `stop`; an
/// operation's latency counts when it returns `Ok`, an `Err` counts under its text.
pub async fn drive<F, Fut>(clients: usize, stop: Stop, op: F) -> Driven
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|w| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = Driven::default();
                loop {
                    if let Stop::At(deadline) = stop {
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if matches!(stop, Stop::AfterOps(n) if i >= n) {
                        break;
                    }
                    let t = Instant::now();
                    match op(w, i).await {
                        Ok(()) => done.latencies.push(t.elapsed()),
                        Err(kind) => *done.errors.entry(kind).or_default() += 1,
                    }
                }
                done
            })
        })
        .collect();
    let mut all = Driven::default();
    for w in workers {
        match w.await {
            Ok(done) => {
                all.latencies.extend(done.latencies);
                for (kind, n) in done.errors {
                    *all.errors.entry(kind).or_default() += n;
                }
            }
            Err(e) => *all.errors.entry(format!("worker ended: {e}")).or_default() += 1,
        }
    }
    all.wall = started.elapsed();
    all.latencies.sort();
    all
}

/// POSTs the JSON `body` to `url` as a [`drive`] operation: see [`answered`].
pub async fn post_json(client: reqwest::Client, url: &str, body: String, accepted: &[u16]) -> Result<(), String> {
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    answered(sent, accepted).await
}

/// An HTTP answer as a [`drive`] operation's outcome: `Ok` when its status is one of `accepted`
/// (the body is read to the end, so the connection is reused), else what went wrong.
pub async fn answered(sent: reqwest::Result<reqwest::Response>, accepted: &[u16]) -> Result<(), String> {
    match sent {
        Ok(r) if accepted.contains(&r.status().as_u16()) => {
            r.bytes().await.map(drop).map_err(|_| "body cut short".to_owned())
        }
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Err("timeout".to_owned()),
        Err(_) => Err("transport error".to_owned()),
    }
}

/// CPU time (user + system) the processes `pids` have used so far, in seconds, from
/// `/proc/<pid>/stat`; a process that is gone counts nothing. Linux's clock tick is 100 Hz on
/// every supported kernel configuration (`USER_HZ`), so a figure is good to 10 ms per process.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    const USER_HZ: f64 = 100.0;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name (which may hold spaces), from field 3 on: utime is
            // field 14, stime field 15.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
            Some(ticks(14)? + ticks(15)?)
        })
        .sum::<f64>()
        / USER_HZ
}

/// Bytes the processes `pids` have sent to the storage layer so far (`write_bytes` of
/// `/proc/<pid>/io`: what their writes put on the block device, pages rewritten by each sync
/// included; socket writes are not in it); a process that is gone counts nothing.
pub fn disk_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/io")).ok())
        .filter_map(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// The `p` quantile (0..=1) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Prints throughput, p50, p99 and max of `lat` measured over `wall`.
pub fn report(what: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    println!(
        "{what:<44} n={:<6} {:>9.1}/s  p50={:>8.2?}  p99={:>8.2?}  max={:>8.2?}",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drive_runs_each_operation_once_and_sorts_outcomes() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let run = drive(3, Stop::AfterOps(10), move |w, i| {
            let log = log.clone();
            async move {
                assert!(w < 3, "worker {w} of 3");
                log.lock().expect("lock").push(i);
                if i % 3 == 0 {
                    Err("multiple of three".to_owned())
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let mut ops = seen.lock().expect("lock").clone();
        ops.sort();
        assert_eq!(ops, (0..10).collect::<Vec<_>>(), "each operation number once");
        assert_eq!(run.latencies.len(), 6);
        assert!(run.latencies.windows(2).all(|w| w[0] <= w[1]), "latencies sorted");
        assert_eq!(run.errors.get("multiple of three"), Some(&4));
        assert_eq!(run.failed(), 4);

        // A deadline already passed: nothing runs.
        let run = drive(2, Stop::At(Instant::now()), |_, _| async { Ok(()) }).await;
        assert!(run.latencies.is_empty() && run.errors.is_empty());
    }

    #[test]
    fn cpu_seconds_counts_this_process_and_nothing_for_the_gone() {
        let me = std::process::id();
        let before = cpu_seconds(&[me]);
        let until = std::time::Instant::now() + Duration::from_millis(300);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = cpu_seconds(&[me]);
        assert!(
            after - before >= 0.2,
            "300 ms of spinning counted as {} s",
            after - before
        );
        assert_eq!(cpu_seconds(&[u32::MAX]), 0.0);
    }

    #[test]
    fn disk_bytes_counts_a_synced_write_and_nothing_for_the_gone() {
        let me = std::process::id();
        let before = disk_bytes(&[me]);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).expect("write");
        std::fs::File::open(&path).and_then(|f| f.sync_all()).expect("sync");
        let after = disk_bytes(&[me]);
        // tmpfs has no block device: nothing reaches the storage layer there.
        let on_tmpfs = nix::sys::statfs::statfs(dir.path())
            .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
            .unwrap_or(false);
        if on_tmpfs {
            eprintln!("SKIPPED the byte count: the temporary directory is on tmpfs (no block device)");
        } else {
            assert!(
                after - before >= 1 << 20,
                "1 MiB synced counted as {} bytes",
                after - before
            );
        }
        assert_eq!(disk_bytes(&[u32::MAX]), 0);
    }
}
