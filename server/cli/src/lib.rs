//! The client verbs of the `capstan` binary — programs that talk to a cluster and hold nothing of a
//! node: `cluster` (`capstan cluster status|add|remove`, the Admin gRPC service), `task`
//! (`capstan task ...`, Flotilla's REST API as curl would use it) and `events` (`capstan events`,
//! the gRPC `Watch`). Each is a clap `Args` and a `run`.

pub mod cluster;
pub mod events;
pub mod task;
