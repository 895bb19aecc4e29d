//! The gRPC services a node serves: the public `ControlPlane` (Receptor LRPs, tasks and the event
//! stream) and `TaskService` (Flotilla tasks), `CfService` (Cloud Foundry V3), the `Admin` service and the internal `CellService`.
//! Each validates at the edge and serves the call; `leader.rs` is the one place that decides, by the
//! method, whether a call is served here or sent to the leader, and `forward.rs` holds the node's
//! channels and the command forwarder; `stream.rs` is the shared list streaming; `watch.rs` the event stream,
//! which every node serves from its own journal.

pub mod admin;
pub mod assignments;
pub mod cells;
pub mod cf;
pub mod control_plane;
pub mod forward;
pub mod leader;
pub mod stream;
pub mod tasks;
pub mod watch;
