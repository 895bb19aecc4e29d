//! Capstan's consensus glue: the openraft type config, the tonic Raft network and peer service,
//! and the node handle through which the server writes commands and makes reads linearizable.

pub mod batcher;
pub mod channels;
/// The credential of internal calls (the client crate's; re-exported where the network uses it).
pub use capstan_client::credential;
pub mod fence;
pub mod forward;
pub mod network;
pub mod node;
pub mod peer_service;
pub mod write;

pub use capstan_storage::TypeConfig;
pub use node::{NodeConfig, RaftNode, WriteError};

pub type Raft = openraft::Raft<TypeConfig>;
