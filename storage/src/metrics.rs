//! The storage layer's metrics (recorded through the `metrics` facade; the process that serves
//! `/metrics` installs the recorder). Apply records sizes only: it reads no clock (the crate's
//! invariant), so its latency is not measured here.

/// Entries per `append` call (a leader's proposals, a follower's replicated batch).
pub const APPEND_ENTRIES: &str = "capstan_raft_append_batch_entries";
/// Time of one `append` until the entries are durable (sled write, flush and fdatasync).
pub const APPEND_DURATION: &str = "capstan_raft_append_duration_seconds";
/// Time of one durability pass of the database (sled flush, then fdatasync).
pub const FLUSH_DURATION: &str = "capstan_storage_flush_duration_seconds";
/// Entries per apply transaction.
pub const APPLY_ENTRIES: &str = "capstan_raft_apply_batch_entries";
/// Commands per proposed entry (the leader's write batcher).
pub const WRITE_BATCH_COMMANDS: &str = "capstan_raft_write_batch_commands";
/// Commands per call a follower forwarded to the leader.
pub const FORWARD_BATCH_COMMANDS: &str = "capstan_raft_forward_batch_commands";
/// Keys written per apply transaction.
pub const APPLY_WRITES: &str = "capstan_storage_apply_batch_writes";
/// The highest log index this node knows committed.
pub const COMMITTED_INDEX: &str = "capstan_raft_committed_index";
/// Snapshots built and installed by this node.
pub const SNAPSHOTS_BUILT: &str = "capstan_raft_snapshots_built_total";
pub const SNAPSHOTS_INSTALLED: &str = "capstan_raft_snapshots_installed_total";
/// How long apply waited while the views were read out for a snapshot to serve (a follower behind
/// the purged log, or start-up); snapshots built for log compaction read nothing out.
pub const SNAPSHOT_DUMP_DURATION: &str = "capstan_raft_snapshot_dump_duration_seconds";
/// Bytes of the newest snapshot built or installed.
pub const SNAPSHOT_SIZE: &str = "capstan_raft_snapshot_size_bytes";

/// Help texts, for the exposition's `# HELP` lines.
pub fn describe() {
    use metrics::Unit;
    metrics::describe_histogram!(APPEND_ENTRIES, Unit::Count, "Raft log entries per durable append");
    metrics::describe_histogram!(
        APPEND_DURATION,
        Unit::Seconds,
        "Durable append of log entries (write, flush, fdatasync)"
    );
    metrics::describe_histogram!(
        FLUSH_DURATION,
        Unit::Seconds,
        "One durability pass of the database (flush, fdatasync)"
    );
    metrics::describe_histogram!(
        APPLY_ENTRIES,
        Unit::Count,
        "Committed entries applied per sled transaction"
    );
    metrics::describe_histogram!(
        WRITE_BATCH_COMMANDS,
        Unit::Count,
        "Commands the leader proposed in one entry"
    );
    metrics::describe_histogram!(
        FORWARD_BATCH_COMMANDS,
        Unit::Count,
        "Commands a follower forwarded to the leader in one call"
    );
    metrics::describe_histogram!(
        APPLY_WRITES,
        Unit::Count,
        "sled keys (views, journal, meta) written per apply transaction; the in-memory indexes are not counted"
    );
    metrics::describe_histogram!(
        SNAPSHOT_DUMP_DURATION,
        Unit::Seconds,
        "Apply paused while the views were read out for a snapshot to serve"
    );
    metrics::describe_gauge!(COMMITTED_INDEX, "Highest log index this node knows committed");
    metrics::describe_counter!(SNAPSHOTS_BUILT, "Snapshots this node built");
    metrics::describe_counter!(SNAPSHOTS_INSTALLED, "Snapshots this node installed from its leader");
    metrics::describe_gauge!(
        SNAPSHOT_SIZE,
        Unit::Bytes,
        "Size of the newest snapshot built or installed"
    );
}
