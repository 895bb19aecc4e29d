//! The internal `CellService`: cells register, heartbeat, follow their assignments and report.
//! Registration and reports are log entries (written by the leader); presence is the leader's
//! memory: a cell not heard from within the TTL is removed by an entry, which triggers convergence.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb::{self, cell_service_server::CellService, ErrorKind};
use capstan_raft::RaftNode;
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::forward::Forwarder;
use crate::auth::guard::bound_cell;
use crate::errors;
use crate::leader::hub::Hub;
use crate::leader::presence::Presence;

/// How long a cell's stream gathers further changes before it re-reads the assignment set.
const ASSIGNMENT_COALESCE: Duration = Duration::from_millis(50);
/// Assignment updates buffered per cell stream before the sender waits.
const ASSIGNMENT_STREAM_BUFFER: usize = 4;

pub struct CellServiceImpl {
    fwd: Forwarder,
    node: RaftNode,
    hub: Arc<Hub>,
    presence: Arc<Presence>,
}

impl CellServiceImpl {
    pub fn new(fwd: Forwarder, hub: Arc<Hub>, presence: Arc<Presence>) -> Self {
        Self {
            node: fwd.node().clone(),
            fwd,
            hub,
            presence,
        }
    }
}

type AssignmentStream = Pin<Box<dyn Stream<Item = Result<pb::Assignments, Status>> + Send>>;

/// What a cell acts on in an assignment set: each instance's key and state, each run's
/// placement, status and stop flag. An update with the same signature is not sent again.
type Signature = (Vec<(String, u32, String, i32)>, Vec<(String, u32, i32, bool)>);

fn signature(a: &pb::Assignments) -> Signature {
    (
        a.assignments
            .iter()
            .filter_map(|a| a.actual.as_ref())
            .map(|a| (a.process_guid.clone(), a.index, a.instance_guid.clone(), a.state))
            .collect(),
        a.task_runs
            .iter()
            .map(|r| (r.run_id.clone(), r.attempt, r.status, r.stop_requested))
            .collect(),
    )
}

fn assignments(node: &RaftNode, cell_id: &str, index: u64) -> Result<pb::Assignments, Status> {
    let views = node.views();
    let mut out = pb::Assignments {
        assignments: Vec::new(),
        as_of_log_index: index,
        task_runs: views
            .task_runs_on_cell(cell_id)
            .collect::<Result<_, _>>()
            .map_err(errors::storage)?,
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

/// A cell that called with its own credential may speak only for itself.
fn speaks_for(bound: Option<&str>, cell_id: &str) -> Result<(), Status> {
    match bound {
        Some(b) if b != cell_id => Err(errors::status(
            ErrorKind::Forbidden,
            format!("this credential belongs to cell {b}, not {cell_id}"),
            0,
        )),
        _ => Ok(()),
    }
}

impl CellServiceImpl {
    /// The reports about instances that are on `cell` now (a cell bound to its credential cannot
    /// report for another cell's instances; stale reports about its own are skipped by apply).
    fn own_instance_reports(&self, cell: &str, mut req: pb::ReportActualLrps) -> Result<pb::ReportActualLrps, Status> {
        let views = self.node.views();
        let on_cell = |key: Option<&pb::ActualLrpKey>| -> Result<bool, Status> {
            let Some(k) = key else { return Ok(false) };
            Ok(views
                .get_actual(&k.process_guid, k.index)
                .map_err(errors::storage)?
                .is_some_and(|a| a.cell_id == cell))
        };
        let mut started = Vec::with_capacity(req.started.len());
        for r in req.started {
            if on_cell(r.key.as_ref())? {
                started.push(r);
            }
        }
        let mut crashed = Vec::with_capacity(req.crashed.len());
        for r in req.crashed {
            if on_cell(r.key.as_ref())? {
                crashed.push(r);
            }
        }
        req.started = started;
        req.crashed = crashed;
        Ok(req)
    }
}

#[tonic::async_trait]
impl CellService for CellServiceImpl {
    async fn register_cell(&self, req: Request<pb::Cell>) -> Result<Response<pb::RegisterCellResponse>, Status> {
        let bound = bound_cell(&req);
        let cell = req.into_inner();
        speaks_for(bound.as_deref(), &cell.cell_id)?;
        if cell.cell_id.is_empty() {
            return Err(errors::status(
                ErrorKind::InvalidCell,
                "cell_id missing from request",
                0,
            ));
        }
        if !capstan_storage::rules::validate::is_clean_name(&cell.cell_id) {
            return Err(errors::status(ErrorKind::InvalidCell, "Invalid field: cell_id", 0));
        }
        let id = cell.cell_id.clone();
        let command = pb::command::Kind::RegisterCell(pb::RegisterCell {
            cell: Some(cell.clone()),
        });
        self.fwd.propose(command).await?;
        self.presence.touch(&id);
        tracing::info!(cell = %id, "cell registered");
        let ttl_ms = u32::try_from(self.presence.ttl.as_millis()).unwrap_or(u32::MAX);
        Ok(Response::new(pb::RegisterCellResponse {
            ttl_ms,
            heartbeat_interval_ms: (ttl_ms / 3).max(100),
        }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let bound = bound_cell(&req);
        let req = req.into_inner();
        for id in &req.cell_ids {
            speaks_for(bound.as_deref(), id)?;
        }
        // Presence is the leader's memory: heartbeats go where it is.
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
        let bound = bound_cell(&req);
        let cell_id = req.into_inner().cell_id;
        speaks_for(bound.as_deref(), &cell_id)?;
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
            let mut last: Option<Signature> = None;
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
                let sig = signature(&update);
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
        let bound = bound_cell(&req);
        let mut req = req.into_inner();
        if let Some(cell) = &bound {
            req = self.own_instance_reports(cell, req)?;
        }
        self.fwd
            .propose(pb::command::Kind::ReportActualLrps(req.clone()))
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn report_task_runs(&self, req: Request<pb::ReportTaskRuns>) -> Result<Response<pb::Empty>, Status> {
        let bound = bound_cell(&req);
        let mut req = req.into_inner();
        if let Some(cell) = &bound {
            // Apply checks each report's cell and attempt against the run; a bound cell names itself.
            req.reports.retain(|r| &r.cell_id == cell);
        }
        self.fwd.propose(pb::command::Kind::ReportTaskRuns(req.clone())).await?;
        Ok(Response::new(pb::Empty {}))
    }
}
