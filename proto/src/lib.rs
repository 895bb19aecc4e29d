//! Capstan's contract: the `capstan.v1` gRPC services and the versioned protobuf records that are
//! persisted (log entries, commands, events, view rows, snapshot rows). Generated code; no logic.
//!
//! API boundary: everything that crosses a process or reaches disk is defined here and nowhere else.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("capstan.v1");
}

pub use v1 as pb;

pub mod codec;

pub mod errors;

/// Depth of nested actions (try, timeout, emit_progress, serial, parallel, codependent) the API
/// accepts. Checked at the gateway before the tree is encoded, and again by the node's rules: a
/// tree much deeper would exceed prost's decode recursion limit (100 nested messages; each action
/// level is two) and could not even be read by the node.
pub const ACTION_DEPTH_MAX: usize = 32;
/// Nesting depth of one JSON route value (routes are stored and returned as raw JSON: a deeply
/// nested value would break the JSON parsers of the clients that read it back).
pub const ROUTE_JSON_DEPTH_MAX: usize = 16;

/// The version written into every `LogEntry`, `Proposal`, `JournalRecord` and `SnapshotHeader`.
/// A reader refuses a version it does not know rather than guessing.
pub const FORMAT_VERSION: u32 = 1;

/// The version of the `Proposal` this build writes. Version 2 carries a batch of commands
/// (`commands`); version 1, written by earlier builds, one (`command`). Apply reads both.
pub const PROPOSAL_VERSION: u32 = 2;
/// The oldest `Proposal` version apply still reads.
pub const PROPOSAL_VERSION_MIN: u32 = 1;

/// Flotilla's name of a task run status, as its API and its filters spell it.
pub fn task_run_status_name(status: i32) -> &'static str {
    match pb::TaskRunStatus::try_from(status).unwrap_or(pb::TaskRunStatus::Unspecified) {
        pb::TaskRunStatus::Queued | pb::TaskRunStatus::Unspecified => "QUEUED",
        pb::TaskRunStatus::Pending => "PENDING",
        pb::TaskRunStatus::Running => "RUNNING",
        pb::TaskRunStatus::Stopped => "STOPPED",
        pb::TaskRunStatus::NeedsRetry => "NEEDS_RETRY",
    }
}

/// Receptor's state of a task (a run with `receptor`): PENDING (waiting for a cell), CLAIMED
/// (placed, not yet running), RUNNING, COMPLETED, RESOLVING (its completion callback is being
/// delivered).
pub fn receptor_task_state_name(r: &pb::TaskRun) -> &'static str {
    use pb::TaskRunStatus as S;
    match S::try_from(r.status).unwrap_or(S::Unspecified) {
        S::Unspecified | S::Queued | S::NeedsRetry => "PENDING",
        S::Pending => "CLAIMED",
        S::Running => "RUNNING",
        S::Stopped if r.resolving => "RESOLVING",
        S::Stopped => "COMPLETED",
    }
}

/// The event names of the event stream (Receptor's, for LRPs and tasks); `None` for events the
/// stream does not carry (cells, Flotilla definitions and runs).
pub fn event_name(e: &pb::Event) -> Option<&'static str> {
    use pb::event::Kind as K;
    let receptor = |r: &Option<pb::TaskRun>| r.as_ref().is_some_and(|r| r.receptor.is_some());
    match e.kind.as_ref()? {
        K::DesiredLrpCreated(_) => Some("desired_lrp_created"),
        K::DesiredLrpChanged(_) => Some("desired_lrp_changed"),
        K::DesiredLrpRemoved(_) => Some("desired_lrp_removed"),
        K::ActualLrpCreated(_) => Some("actual_lrp_created"),
        K::ActualLrpChanged(_) => Some("actual_lrp_changed"),
        K::ActualLrpRemoved(_) => Some("actual_lrp_removed"),
        K::TaskRunQueued(q) if receptor(&q.run) => Some("task_created"),
        K::TaskRunChanged(c) if receptor(&c.after) => Some("task_changed"),
        K::TaskRunRemoved(r) if receptor(&r.run) => Some("task_removed"),
        _ => None,
    }
}

/// Every name [`event_name`] gives.
pub const EVENT_NAMES: [&str; 9] = [
    "desired_lrp_created",
    "desired_lrp_changed",
    "desired_lrp_removed",
    "actual_lrp_created",
    "actual_lrp_changed",
    "actual_lrp_removed",
    "task_created",
    "task_changed",
    "task_removed",
];
