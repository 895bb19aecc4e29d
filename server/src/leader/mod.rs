//! What runs on the leader (and follows the journal on every node): the hub that keeps the fleet's
//! picture, the scheduler, the converger and the cell presence monitor. Only the leader schedules,
//! converges and judges presence; each loop checks leadership before every pass.

pub mod converger;
pub mod hub;
pub mod presence;
pub mod scheduler;
