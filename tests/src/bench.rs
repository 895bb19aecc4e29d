//! Figures for the benchmark programs: latency percentiles and one printed line per measurement.

use std::time::Duration;

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
