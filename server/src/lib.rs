//! The `capstan` node as a library: the binary (`main.rs`) only parses flags and calls these entry
//! points, and tests can start a node in-process with a shutdown future of their own.
//!
//! - `api/`: the gRPC services a node serves, and `forward.rs`, the one way to the leader.
//! - `leader/`: the hub (journal follower), scheduler, converger and cell presence.
//! - `cell/`: the cell agent and its drivers.
//! - `cli.rs`, `task_cli.rs`: `capstan cluster` (gRPC Admin) and `capstan task` (REST).
//! - `node.rs`: the wiring of one node; `errors.rs`: the one place errors become gRPC statuses.

pub mod api;
pub mod auth;
pub mod cell;
pub mod cli;
pub mod config_file;
pub mod errors;
pub mod events_cli;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod shutdown;
pub mod task_cli;
pub mod tls;
