//! The public `ControlPlane` gRPC service: validates with the pure rules (bad input never reaches
//! the log), proposes commands through the Raft node, and answers queries from the views.

use std::pin::Pin;

use capstan_proto::pb::{self, control_plane_server::ControlPlane, ErrorKind};
use capstan_raft::RaftNode;
use capstan_storage::rules::{limits, validate};
use capstan_storage::views::RowIter;
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::errors;
use crate::peers::{self, Peers};

/// Rows a list stream may have in flight between the sled reader and the gRPC writer.
const LIST_STREAM_BUFFER_ROWS: usize = 256;

pub struct ControlPlaneService {
    node: RaftNode,
    peers: std::sync::Arc<Peers>,
}

/// Where a request is served: here, or by the leader at this address.
enum Route<T> {
    Here(T),
    Leader(String),
}

impl ControlPlaneService {
    pub fn new(node: RaftNode, peers: std::sync::Arc<Peers>) -> Self {
        Self { node, peers }
    }

    fn route_error(e: capstan_raft::WriteError, forwarded: bool) -> Result<String, Status> {
        match e {
            capstan_raft::WriteError::NotLeader {
                leader_addr: Some(addr),
                ..
            } if !forwarded => Ok(addr),
            e => Err(errors::write_error(&e)),
        }
    }

    async fn propose(&self, kind: pb::command::Kind, forwarded: bool) -> Result<Route<Vec<pb::Event>>, Status> {
        let outcome = match self.node.write(pb::Command { kind: Some(kind) }).await {
            Ok(o) => o,
            Err(e) => return Self::route_error(e, forwarded).map(Route::Leader),
        };
        match outcome.rejection {
            Some(r) => Err(errors::rejection(&r)),
            None => Ok(Route::Here(outcome.events)),
        }
    }

    async fn read_barrier(&self, consistency: i32, forwarded: bool) -> Result<Route<()>, Status> {
        if consistency == pb::ReadConsistency::Stale as i32 {
            return Ok(Route::Here(()));
        }
        match self.node.linearizable_barrier().await {
            Ok(()) => Ok(Route::Here(())),
            Err(e) => Self::route_error(e, forwarded).map(Route::Leader),
        }
    }
}

/// Serves the request here, or sends it to the leader (one hop) and returns its answer.
macro_rules! here_or_forward {
    ($self:ident, $route:expr, $method:ident, $req:expr) => {
        match $route {
            Route::Here(v) => v,
            Route::Leader(addr) => {
                let mut leader = $self.peers.control_plane(&addr)?;
                return leader
                    .$method(peers::forwarded($req))
                    .await
                    .map_err(peers::leader_unreachable);
            }
        }
    };
}

/// As `here_or_forward!`, for server-streaming RPCs.
macro_rules! here_or_forward_stream {
    ($self:ident, $route:expr, $method:ident, $req:expr) => {
        match $route {
            Route::Here(v) => v,
            Route::Leader(addr) => {
                let mut leader = $self.peers.control_plane(&addr)?;
                let stream = leader
                    .$method(peers::forwarded($req))
                    .await
                    .map_err(peers::leader_unreachable)?
                    .into_inner();
                return Ok(Response::new(Box::pin(stream)));
            }
        }
    };
}

fn invalid_request(message: impl Into<String>) -> Status {
    errors::status(ErrorKind::InvalidRequest, message, 0)
}

fn require(name: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        Err(invalid_request(format!("{name} missing from request")))
    } else {
        Ok(())
    }
}

type RowStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Streams rows read from sled on a blocking thread; stops when the caller goes away.
fn stream_rows<T: Send + 'static>(rows: RowIter<T>, keep: impl Fn(&T) -> bool + Send + 'static) -> RowStream<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(LIST_STREAM_BUFFER_ROWS);
    tokio::task::spawn_blocking(move || {
        for row in rows {
            let item = match row {
                Ok(r) if !keep(&r) => continue,
                Ok(r) => Ok(r),
                Err(e) => Err(errors::storage(e)),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                break;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl ControlPlane for ControlPlaneService {
    async fn desire_lrp(&self, req: Request<pb::DesireLrp>) -> Result<Response<pb::DesireLrpResponse>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        let Some(desired) = &req.desired_lrp else {
            return Err(errors::status(ErrorKind::InvalidLrp, "invalid action type", 0));
        };
        validate::desired_lrp(desired).map_err(|m| errors::status(ErrorKind::InvalidLrp, m, 0))?;
        let route = self.propose(pb::command::Kind::DesireLrp(req.clone()), fwd).await?;
        let events = here_or_forward!(self, route, desire_lrp, req);
        let created = events
            .iter()
            .any(|e| matches!(e.kind, Some(pb::event::Kind::DesiredLrpCreated(_))));
        Ok(Response::new(pb::DesireLrpResponse { created }))
    }

    async fn update_desired_lrp(&self, req: Request<pb::UpdateDesiredLrp>) -> Result<Response<pb::Empty>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        require("process_guid", &req.process_guid)?;
        validate::update(&req.update.clone().unwrap_or_default()).map_err(invalid_request)?;
        let route = self
            .propose(pb::command::Kind::UpdateDesiredLrp(req.clone()), fwd)
            .await?;
        here_or_forward!(self, route, update_desired_lrp, req);
        Ok(Response::new(pb::Empty {}))
    }

    async fn remove_desired_lrp(&self, req: Request<pb::RemoveDesiredLrp>) -> Result<Response<pb::Empty>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        require("process_guid", &req.process_guid)?;
        let route = self
            .propose(pb::command::Kind::RemoveDesiredLrp(req.clone()), fwd)
            .await?;
        here_or_forward!(self, route, remove_desired_lrp, req);
        Ok(Response::new(pb::Empty {}))
    }

    async fn retire_actual_lrp(&self, req: Request<pb::RetireActualLrp>) -> Result<Response<pb::Empty>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        require("process_guid", &req.process_guid)?;
        let route = self
            .propose(pb::command::Kind::RetireActualLrp(req.clone()), fwd)
            .await?;
        here_or_forward!(self, route, retire_actual_lrp, req);
        Ok(Response::new(pb::Empty {}))
    }

    async fn bump_fresh_domain(&self, req: Request<pb::BumpFreshDomain>) -> Result<Response<pb::Empty>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        require("domain", &req.domain)?;
        if req.domain.len() > limits::NAME_BYTES_MAX {
            return Err(errors::status(ErrorKind::InvalidDomain, "Invalid field: domain", 0));
        }
        let route = self
            .propose(pb::command::Kind::BumpFreshDomain(req.clone()), fwd)
            .await?;
        here_or_forward!(self, route, bump_fresh_domain, req);
        Ok(Response::new(pb::Empty {}))
    }

    async fn get_desired_lrp(
        &self,
        req: Request<pb::GetDesiredLrpRequest>,
    ) -> Result<Response<pb::DesiredLrp>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        require("process_guid", &req.process_guid)?;
        let route = self.read_barrier(req.consistency, fwd).await?;
        here_or_forward!(self, route, get_desired_lrp, req);
        match self
            .node
            .views()
            .get_desired(&req.process_guid)
            .map_err(errors::storage)?
        {
            Some(d) => Ok(Response::new(d)),
            None => Err(errors::rejection(&capstan_storage::rules::decide::not_found(
                &req.process_guid,
            ))),
        }
    }

    type ListDesiredLrpsStream = RowStream<pb::DesiredLrp>;

    async fn list_desired_lrps(
        &self,
        req: Request<pb::ListDesiredLrpsRequest>,
    ) -> Result<Response<Self::ListDesiredLrpsStream>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        let route = self.read_barrier(req.consistency, fwd).await?;
        here_or_forward_stream!(self, route, list_desired_lrps, req);
        let domain = (!req.domain.is_empty()).then_some(req.domain.as_str());
        let rows = self.node.views().desired_lrps(domain);
        Ok(Response::new(stream_rows(rows, |_| true)))
    }

    async fn get_actual_lrp(&self, req: Request<pb::GetActualLrpRequest>) -> Result<Response<pb::ActualLrp>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        require("process_guid", &req.process_guid)?;
        let route = self.read_barrier(req.consistency, fwd).await?;
        here_or_forward!(self, route, get_actual_lrp, req);
        match self
            .node
            .views()
            .get_actual(&req.process_guid, req.index)
            .map_err(errors::storage)?
        {
            Some(a) => Ok(Response::new(a)),
            None => Err(errors::rejection(&capstan_storage::rules::decide::index_not_found(
                &req.process_guid,
                req.index,
            ))),
        }
    }

    type ListActualLrpsStream = RowStream<pb::ActualLrp>;

    async fn list_actual_lrps(
        &self,
        req: Request<pb::ListActualLrpsRequest>,
    ) -> Result<Response<Self::ListActualLrpsStream>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        let route = self.read_barrier(req.consistency, fwd).await?;
        here_or_forward_stream!(self, route, list_actual_lrps, req);
        let views = self.node.views();
        let domain = (!req.domain.is_empty()).then_some(req.domain.as_str());
        let guid = (!req.process_guid.is_empty()).then_some(req.process_guid.as_str());
        let rows = views.actual_lrps(domain, guid);
        let index = req.index;
        Ok(Response::new(stream_rows(rows, move |a| {
            index.is_none_or(|i| a.index == i)
        })))
    }

    async fn list_fresh_domains(
        &self,
        req: Request<pb::ListFreshDomainsRequest>,
    ) -> Result<Response<pb::ListFreshDomainsResponse>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        let route = self.read_barrier(req.consistency, fwd).await?;
        here_or_forward!(self, route, list_fresh_domains, req);
        let domains = self
            .node
            .views()
            .fresh_domains(capstan_raft::node::unix_now_ns())
            .map_err(errors::storage)?;
        Ok(Response::new(pb::ListFreshDomainsResponse { domains }))
    }

    async fn list_cells(&self, req: Request<pb::ListCellsRequest>) -> Result<Response<pb::ListCellsResponse>, Status> {
        let fwd = peers::is_forwarded(&req);
        let req = req.into_inner();
        let route = self.read_barrier(req.consistency, fwd).await?;
        here_or_forward!(self, route, list_cells, req);
        let cells = self.node.views().cells().map_err(errors::storage)?;
        Ok(Response::new(pb::ListCellsResponse { cells }))
    }
}
