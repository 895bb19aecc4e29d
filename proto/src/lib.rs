//! Capstan's contract: the `capstan.v1` gRPC services and the versioned protobuf records that are
//! persisted (log entries, commands, events, view rows, snapshot rows). Generated code; no logic.
//!
//! API boundary: everything that crosses a process or reaches disk is defined here and nowhere else.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("capstan.v1");
}

pub use v1 as pb;

/// The version written into every `LogEntry`, `Proposal`, `JournalRecord` and `SnapshotHeader`.
/// A reader refuses a version it does not know rather than guessing.
pub const FORMAT_VERSION: u32 = 1;
