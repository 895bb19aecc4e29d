//! The drivers that run work on a cell — `process` (host processes) and `docker` (local
//! containers) — and what they share: the cell's context and port pool, the instance preparation
//! (`instance.rs`), the supervision loop (`supervise.rs`) that decides CLAIMED → RUNNING with a
//! health check within the start timeout and turns an exit or a failed check into a crash, and
//! task runs (`run.rs`), which run to exit and report their exit code instead.

pub mod docker;
pub mod instance;
pub mod process;
pub mod run;
pub mod supervise;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Host ports handed to instances, from a fixed range.
pub struct PortPool {
    range: std::ops::RangeInclusive<u16>,
    used: Mutex<BTreeSet<u16>>,
    bind_ip: String,
}

impl PortPool {
    pub fn new(range: std::ops::RangeInclusive<u16>, bind_ip: &str) -> Self {
        Self {
            range,
            used: Mutex::new(BTreeSet::new()),
            bind_ip: bind_ip.to_owned(),
        }
    }

    /// A port no instance holds and nothing on the host listens on.
    pub fn take(&self) -> Option<u16> {
        let mut used = self.used.lock().ok()?;
        let port = self
            .range
            .clone()
            .find(|p| !used.contains(p) && TcpListener::bind((self.bind_ip.as_str(), *p)).is_ok())?;
        used.insert(port);
        Some(port)
    }

    pub fn give_back(&self, ports: &[u16]) {
        if let Ok(mut used) = self.used.lock() {
            for p in ports {
                used.remove(p);
            }
        }
    }
}

/// What a driver needs from its cell.
#[derive(Clone)]
pub struct DriverCtx {
    pub cell_id: String,
    pub address: String,
    pub work_dir: PathBuf,
    pub ports: Arc<PortPool>,
    pub stop_grace: Duration,
    /// where the instances it runs are measured for the CellApi
    pub usage: crate::usage::UsageBook,
}
