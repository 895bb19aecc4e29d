//! The `capstan` node as a library: the binary (`main.rs`) only parses flags and calls these entry
//! points, and tests can start a node in-process with a shutdown future of their own.
//!
//! - `api/`: the gRPC services a node serves, and `forward.rs`, the one way to the leader.
//! - `leader/`: the hub (journal follower), scheduler, converger and cell presence.
//! - `cell`: the cell agent and its drivers — the crate `capstan-cell` (`server/cell`), re-exported.
//! - the client verbs (`capstan cluster`, `task`, `events`) are the crate `capstan-cli` (`server/cli`).
//! - `node.rs`: the wiring of one node; `errors.rs`: the one place errors become gRPC statuses.

pub mod api;
pub mod around;
pub mod auth;
/// The cell agent (its own crate, `server/cell`).
pub use capstan_cell as cell;
pub mod config_file;
pub mod errors;
pub mod fd_limit;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod shutdown;
/// The TLS settings of a process (the client crate's).
pub use capstan_client::tls;
