//! What runs on the leader (and follows the journal on every node): the hub that keeps the fleet's
//! picture, the scheduler, the converger, the cell presence monitor and the Receptor task
//! completion callbacks, the steps of CF rolling restarts. Only the leader schedules, converges,
//! judges presence, delivers callbacks and steps rollouts; each loop checks leadership before every pass.

pub mod callbacks;
pub mod cell_feed;
pub mod converger;
pub mod fleet;
pub mod hub;
pub mod presence;
pub mod rollouts;
pub mod scheduler;
pub mod unclaimed;
