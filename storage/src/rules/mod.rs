//! The pure rules: validation, the decide step of apply, deterministic ids, freshness.
//!
//! Plain synchronous code with no sled, tokio or tonic in it; the server re-uses the validation
//! to refuse bad input before proposing, and apply re-runs it so the log can never smuggle it in.

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
