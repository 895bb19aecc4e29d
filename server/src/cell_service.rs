//! The internal `CellService`: cells register, heartbeat, follow their assignments and report.
//! Registration and reports are log entries (written by the leader); presence is the leader's
//! memory: a cell not heard from within the TTL is removed by an entry, which triggers convergence.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capstan_proto::pb::{self, cell_service_server::CellService, ErrorKind};
use capstan_raft::RaftNode;
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::errors;
use crate::hub::Hub;
use crate::peers::{self, Peers};

/// How long a cell's stream gathers further changes before it re-reads the assignment set.
const ASSIGNMENT_COALESCE: Duration = Duration::from_millis(50);
/// Assignment updates buffered per cell stream before the sender waits.
const ASSIGNMENT_STREAM_BUFFER: usize = 4;

pub struct CellServiceImpl {
    node: RaftNode,
    hub: Arc<Hub>,
    peers: Arc<Peers>,
    presence: Arc<Presence>,
}

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

    fn touch(&self, cell_id: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.insert(cell_id.to_owned(), Instant::now());
        }
    }
}

impl CellServiceImpl {
    pub fn new(node: RaftNode, hub: Arc<Hub>, peers: Arc<Peers>, presence: Arc<Presence>) -> Self {
        Self {
            node,
            hub,
            peers,
            presence,
        }
    }

    async fn propose(&self, kind: pb::command::Kind) -> Result<(), Status> {
        let outcome = self
            .node
            .write(pb::Command { kind: Some(kind) })
            .await
            .map_err(|e| errors::write_error(&e))?;
        match outcome.rejection {
            Some(r) => Err(errors::rejection(&r)),
            None => Ok(()),
        }
    }
}

type AssignmentStream = Pin<Box<dyn Stream<Item = Result<pb::Assignments, Status>> + Send>>;

fn assignments(node: &RaftNode, cell_id: &str, index: u64) -> Result<pb::Assignments, Status> {
    let views = node.views();
    let mut out = pb::Assignments {
        assignments: Vec::new(),
        as_of_log_index: index,
    };
    let mut desired: HashMap<String, Option<pb::DesiredLrp>> = HashMap::new();
    for a in views.actuals_on_cell(cell_id) {
        let a = a.map_err(errors::storage)?;
        let d = match desired.get(&a.process_guid) {
            Some(d) => d.clone(),
            None => {
                let d = views.get_desired(&a.process_guid).map_err(errors::storage)?;
                desired.insert(a.process_guid.clone(), d.clone());
                d
            }
        };
        out.assignments.push(pb::Assignment {
            actual: Some(a),
            desired: d,
        });
    }
    Ok(out)
}

#[tonic::async_trait]
impl CellService for CellServiceImpl {
    async fn register_cell(&self, req: Request<pb::Cell>) -> Result<Response<pb::RegisterCellResponse>, Status> {
        let fwd = peers::is_forwarded(&req);
        let cell = req.into_inner();
        if cell.cell_id.is_empty() {
            return Err(errors::status(
                ErrorKind::InvalidCell,
                "cell_id missing from request",
                0,
            ));
        }
        if !self.node.is_leader() {
            if let (Some(addr), false) = (self.node.leader_addr(), fwd) {
                return self.peers.cell(&addr)?.register_cell(peers::forwarded(cell)).await;
            }
        }
        let id = cell.cell_id.clone();
        self.propose(pb::command::Kind::RegisterCell(pb::RegisterCell { cell: Some(cell) }))
            .await?;
        self.presence.touch(&id);
        tracing::info!(cell = %id, "cell registered");
        let ttl_ms = u32::try_from(self.presence.ttl.as_millis()).unwrap_or(u32::MAX);
        Ok(Response::new(pb::RegisterCellResponse {
            ttl_ms,
            heartbeat_interval_ms: (ttl_ms / 3).max(100),
        }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        if !self.node.is_leader() {
            return match (self.node.leader_addr(), fwd) {
                (Some(addr), false) => self.peers.cell(&addr)?.heartbeat(peers::forwarded(req)).await,
                _ => Err(errors::status(
                    ErrorKind::Unavailable,
                    "no leader to take the heartbeat",
                    500,
                )),
            };
        }
        let mut unknown = Vec::new();
        for id in req.cell_ids {
            if self.hub.has_cell(&id) {
                self.presence.touch(&id);
            } else {
                unknown.push(id);
            }
        }
        Ok(Response::new(pb::HeartbeatResponse {
            unknown_cell_ids: unknown,
        }))
    }

    type WatchAssignmentsStream = AssignmentStream;

    async fn watch_assignments(
        &self,
        req: Request<pb::WatchAssignmentsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        let cell_id = req.into_inner().cell_id;
        if cell_id.is_empty() {
            return Err(errors::status(
                ErrorKind::InvalidCell,
                "cell_id missing from request",
                0,
            ));
        }
        let mut changes = self.hub.watch_cell(&cell_id);
        let node = self.node.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(ASSIGNMENT_STREAM_BUFFER);
        tokio::spawn(async move {
            let mut last: Option<Vec<(String, u32, String, i32)>> = None;
            loop {
                let index = *changes.borrow_and_update();
                let update = match tokio::task::block_in_place(|| assignments(&node, &cell_id, index)) {
                    Ok(u) => u,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                // Send only when the set (or a state in it) changed.
                let sig: Vec<(String, u32, String, i32)> = update
                    .assignments
                    .iter()
                    .filter_map(|a| a.actual.as_ref())
                    .map(|a| (a.process_guid.clone(), a.index, a.instance_guid.clone(), a.state))
                    .collect();
                if last.as_ref() != Some(&sig) {
                    last = Some(sig);
                    if tx.send(Ok(update)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
                // Coalesce a burst of entries touching this cell into one re-read.
                tokio::time::sleep(ASSIGNMENT_COALESCE).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn report_actual_lrps(&self, req: Request<pb::ReportActualLrps>) -> Result<Response<pb::Empty>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        if !self.node.is_leader() {
            if let (Some(addr), false) = (self.node.leader_addr(), fwd) {
                return self.peers.cell(&addr)?.report_actual_lrps(peers::forwarded(req)).await;
            }
        }
        self.propose(pb::command::Kind::ReportActualLrps(req)).await?;
        Ok(Response::new(pb::Empty {}))
    }
}

/// On the leader: removes cells whose presence lapsed. A new leader gives every registered cell a
/// full TTL before judging it.
pub async fn run_presence_monitor(node: RaftNode, hub: Arc<Hub>, presence: Arc<Presence>) {
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
