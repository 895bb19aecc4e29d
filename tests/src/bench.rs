//! Figures for the benchmark programs: latency percentiles and one printed line per measurement.

use std::time::Duration;

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
}
