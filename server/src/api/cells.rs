//! The internal `CellService`: cells register, heartbeat, follow their assignments and report.
//! Registration and reports are log entries (written by the leader); presence is the leader's
//! memory: a cell not heard from within the TTL is removed by an entry, which triggers convergence.

use std::pin::Pin;
use std::sync::Arc;

use capstan_proto::pb::{self, cell_service_server::CellService, ErrorKind};
use capstan_raft::RaftNode;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::assignments;
use super::forward::Forwarder;
use crate::auth::guard::bound_cell;
use crate::errors;
use crate::leader::hub::Hub;
use crate::leader::presence::Presence;

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
        let pb::WatchAssignmentsRequest { cell_id, deltas } = req.into_inner();
        speaks_for(bound.as_deref(), &cell_id)?;
        if cell_id.is_empty() {
            return Err(errors::status(
                ErrorKind::InvalidCell,
                "cell_id missing from request",
                0,
            ));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(ASSIGNMENT_STREAM_BUFFER);
        let stream = assignments::Stream {
            feed: self.hub.feed_cell(&cell_id),
            hub: self.hub.clone(),
            node: self.node.clone(),
            cell_id,
            tx,
        };
        tokio::spawn(stream.run(deltas));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(|m| *m))))
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
