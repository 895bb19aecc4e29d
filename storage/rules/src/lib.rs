//! The pure rules: validation, the decide step of apply, deterministic ids, freshness, lifecycle
//! tables, the restart calculator, placement, CF's queries and labels.
//!
//! Plain synchronous code: this crate depends on the contract (`capstan-proto`) and `uuid` only,
//! so no sled, tokio or tonic can be used here — the compiler keeps it pure. The server re-uses the
//! validation to refuse bad input before proposing, and apply re-runs it so the log can never
//! smuggle it in. `capstan-storage` re-exports it as `capstan_storage::rules`.

pub use capstan_proto::pb;

pub mod cf;
pub mod convergence;
pub mod decide;
pub mod freshness;
pub mod ids;
pub mod lifecycle;
pub mod limits;
pub mod placement;
pub mod receptor_tasks;
pub mod run_lifecycle;
pub mod task_definitions;
pub mod task_runs;
pub mod validate;
