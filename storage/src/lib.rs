//! Capstan's event-sourced state on one `sled::Db`: the Raft log store, the state machine whose
//! `apply` is the only writer of the materialised views, the event journal and snapshots.
//!
//! Architecture invariant: nothing in this crate reads a clock, an RNG or the environment while
//! applying an entry; time and id entropy arrive in the entry's [`pb::Stamp`].

pub mod codec;
pub mod disk;
pub mod indexes;
pub mod keyspace;
pub mod log_store;
pub mod metrics;
pub mod recent_journal;
pub mod state_machine;
pub mod view_read;
pub mod views;

pub use capstan_proto::pb;
/// The pure rules (their own crate, `storage/rules`), where the state machine and the server use them.
pub use capstan_rules as rules;
pub use disk::Disk;
pub use log_store::LogStore;
pub use state_machine::StateMachine;
pub use views::Views;

openraft::declare_raft_types!(
    /// Capstan's openraft type configuration: protobuf proposals in, protobuf outcomes out. A
    /// proposal is shared, not copied: an entry goes from the leader's batcher to its log, to
    /// each follower's replication and to apply, and openraft clones entries on the way.
    pub TypeConfig:
        D = std::sync::Arc<pb::Proposal>,
        R = pb::Outcomes,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// Errors of the storage layer. Any of these is fatal for the node: openraft stops it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("decode {what}: {source}")]
    Decode {
        what: &'static str,
        source: prost::DecodeError,
    },
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(e: sled::transaction::TransactionError<StoreError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

/// Decodes one persisted protobuf value, naming what it was on failure.
pub fn decode<M: prost::Message + Default>(what: &'static str, bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|source| StoreError::Decode { what, source })
}

/// Refuses a persisted record of a format version this build does not read (never guessed).
pub fn known_format(what: &str, version: u32) -> Result<(), StoreError> {
    if version == capstan_proto::FORMAT_VERSION {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "{what} format version {version} is unknown"
    )))
}

/// Opens the one `sled::Db` of this process (sled must not be opened twice in one process).
/// With sled's page cache at its default size (`disk::SLED_CACHE_BYTES_DEFAULT`).
pub fn open_db(dir: &std::path::Path) -> Result<Disk, StoreError> {
    Disk::open(dir, disk::SLED_CACHE_BYTES_DEFAULT)
}

/// Unit tests that open sled databases take this first: sled databases opened concurrently in one
/// process can deadlock in flush.
#[cfg(test)]
pub(crate) static SLED_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
