//! Cell presence, judged by the leader alone: the last heartbeat of each cell, and the monitor that
//! removes a cell not heard from within the TTL (a `RemoveCell` entry, which triggers convergence).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capstan_proto::pb;
use capstan_raft::RaftNode;

use super::hub::Hub;

/// The leader's view of which cells are alive: last heartbeat per cell.
pub struct Presence {
    pub ttl: Duration,
    seen: Mutex<HashMap<String, Instant>>,
}

impl Presence {
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Cells heard from within the TTL (meaningful on the leader, which receives heartbeats).
    pub fn heard_within_ttl(&self) -> usize {
        let now = Instant::now();
        self.seen
            .lock()
            .map(|s| s.values().filter(|t| now.duration_since(**t) <= self.ttl).count())
            .unwrap_or(0)
    }

    pub fn touch(&self, cell_id: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.insert(cell_id.to_owned(), Instant::now());
        }
    }
}

/// On the leader: removes cells whose presence lapsed. A new leader gives every registered cell a
/// full TTL before judging it.
pub async fn run(node: RaftNode, hub: Arc<Hub>, presence: Arc<Presence>) {
    let mut was_leader = false;
    let tick = (presence.ttl / 4).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(tick).await;
        let leader = node.is_leader();
        if !leader {
            was_leader = false;
            continue;
        }
        let cells: std::collections::HashSet<String> = hub.cell_ids().into_iter().collect();
        let now = Instant::now();
        let expired: Vec<String> = {
            let Ok(mut seen) = presence.seen.lock() else {
                continue;
            };
            if !was_leader {
                seen.clear();
                for c in &cells {
                    seen.insert(c.clone(), now);
                }
            }
            seen.retain(|c, _| cells.contains(c));
            cells
                .iter()
                .filter(|c| seen.get(*c).is_none_or(|t| now.duration_since(*t) > presence.ttl))
                .cloned()
                .collect()
        };
        was_leader = true;
        for cell_id in expired {
            tracing::warn!(cell = %cell_id, "cell presence expired; removing it");
            let cmd = pb::Command {
                kind: Some(pb::command::Kind::RemoveCell(pb::RemoveCell {
                    cell_id: cell_id.clone(),
                    reason: "presence TTL expired".into(),
                })),
            };
            if let Err(e) = node.write(cmd).await {
                tracing::debug!(error = %e, "cell removal not proposed");
            } else if let Ok(mut seen) = presence.seen.lock() {
                seen.remove(&cell_id);
            }
        }
    }
}
