//! What a cell measures of its instances for CF's stats (`usage`: cpu, mem, disk): the CPU time
//! and resident memory of every process in an instance's process groups (read from /proc), and
//! the bytes under its directory. Drivers register an instance while it runs; the `CellApi`
//! answers `InstanceUsage` from here. CPU is the share of one core since the previous sample of
//! the instance (since it started, for the first).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use capstan_proto::pb;

/// Files an instance's disk figure walks at most (a bound on one sample's cost).
const DISK_WALK_ENTRIES_MAX: usize = 100_000;

struct Tracked {
    /// process group ids (a process instance's groups, or a container's init pid)
    groups: Arc<Mutex<Vec<i32>>>,
    dir: Option<PathBuf>,
    last: (Instant, u64),
}

/// The instances a cell runs now, by instance guid. Cheap to clone.
#[derive(Clone, Default)]
pub struct UsageBook(Arc<Mutex<HashMap<String, Tracked>>>);

/// Removes its instance from the book when the driver is done with it.
pub struct Registration {
    book: UsageBook,
    instance_guid: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut m) = self.book.0.lock() {
            m.remove(&self.instance_guid);
        }
    }
}

impl UsageBook {
    /// Tracks an instance while the returned registration lives.
    pub fn register(&self, instance_guid: &str, groups: Arc<Mutex<Vec<i32>>>, dir: Option<PathBuf>) -> Registration {
        if let Ok(mut m) = self.0.lock() {
            m.insert(
                instance_guid.to_owned(),
                Tracked {
                    groups,
                    dir,
                    last: (Instant::now(), 0),
                },
            );
        }
        Registration {
            book: self.clone(),
            instance_guid: instance_guid.to_owned(),
        }
    }

    /// Samples the instances asked for that this cell runs.
    pub fn sample(&self, instance_guids: &[String], now_ns: i64) -> Vec<pb::InstanceUsage> {
        let wanted: Vec<(String, Vec<i32>, Option<PathBuf>)> = match self.0.lock() {
            Ok(m) => instance_guids
                .iter()
                .filter_map(|g| {
                    let t = m.get(g)?;
                    let groups = t.groups.lock().map(|g| g.clone()).unwrap_or_default();
                    Some((g.clone(), groups, t.dir.clone()))
                })
                .collect(),
            Err(_) => return Vec::new(),
        };
        if wanted.is_empty() {
            return Vec::new();
        }
        let procs = read_procs();
        let tick_hz = clock_ticks_per_second();
        let mut out = Vec::with_capacity(wanted.len());
        for (guid, groups, dir) in wanted {
            let (ticks, rss) = procs
                .iter()
                .filter(|p| groups.contains(&p.pgrp))
                .fold((0u64, 0u64), |(t, r), p| (t + p.ticks, r + p.rss_bytes));
            let now = Instant::now();
            let cpu = match self.0.lock() {
                Ok(mut m) => match m.get_mut(&guid) {
                    Some(t) => {
                        let (then, then_ticks) = t.last;
                        t.last = (now, ticks);
                        let secs = now.duration_since(then).as_secs_f64();
                        if secs > 0.0 {
                            ticks.saturating_sub(then_ticks) as f64 / tick_hz / secs
                        } else {
                            0.0
                        }
                    }
                    None => continue,
                },
                Err(_) => 0.0,
            };
            out.push(pb::InstanceUsage {
                instance_guid: guid,
                time_unix_ns: now_ns,
                cpu,
                mem_bytes: rss,
                disk_bytes: dir.as_deref().map(dir_bytes).unwrap_or(0),
            });
        }
        out
    }
}

struct Proc {
    pgrp: i32,
    ticks: u64,
    rss_bytes: u64,
}

/// Every process's group, CPU ticks (user + system) and resident bytes, from /proc/*/stat.
fn read_procs() -> Vec<Proc> {
    let page = page_size();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| parse_stat(&stat, page))
        .collect()
}

/// Fields after the command's closing parenthesis: state ppid pgrp … utime(14) stime(15) … rss(24).
fn parse_stat(stat: &str, page: u64) -> Option<Proc> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field n is f[n - 3].
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Proc {
        pgrp: f.get(2)?.parse().ok()?,
        ticks: field(14)? + field(15)?,
        rss_bytes: field(24)? * page,
    })
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(4096)
}

fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|v| v as f64)
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// Bytes of the files under `dir` (bounded walk; symlinks not followed).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            seen += 1;
            if seen > DISK_WALK_ENTRIES_MAX {
                return total;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_spaces_in_the_command() {
        let line = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 999 10000000 300 18446744073709551615";
        let p = parse_stat(line, 4096).expect("parses");
        assert_eq!((p.pgrp, p.ticks, p.rss_bytes), (1234, 300, 300 * 4096));
    }

    #[test]
    fn this_process_group_is_measured() {
        let book = UsageBook::default();
        let pgrp = nix::unistd::getpgrp().as_raw();
        let dir = std::env::temp_dir().join(format!("capstan-usage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), vec![0u8; 1000]).unwrap();
        let reg = book.register("i1", Arc::new(Mutex::new(vec![pgrp])), Some(dir.clone()));
        let u = book.sample(&["i1".into(), "other".into()], 7);
        assert_eq!(u.len(), 1);
        assert!(u[0].mem_bytes > 0, "a running process group has resident memory");
        assert_eq!(u[0].disk_bytes, 1000);
        drop(reg);
        assert!(
            book.sample(&["i1".into()], 8).is_empty(),
            "a stopped instance is no longer measured"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
