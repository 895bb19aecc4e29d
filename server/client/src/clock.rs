//! The wall clock: [`unix_now_ns`] is the one reader of it outside tests, for every process of
//! the binary (nodes, cells, CLIs). Apply never calls it; the leader stamps entries with it and
//! queries compare against it (freshness, backoff, presence).

/// Wall-clock time in Unix nanoseconds.
pub fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
