//! The public `ControlPlane` gRPC service (Diego's Receptor family): validates with the pure rules
//! (bad input never reaches the log), proposes commands through the Raft node, and answers queries
//! from the views. Receptor tasks are task runs with `receptor` set: the same queue, scheduler
//! and cells as Flotilla's runs.

use capstan_proto::pb::{self, control_plane_server::ControlPlane, ErrorKind};
use capstan_storage::rules::decide::cf_owner;
use capstan_storage::rules::{receptor_tasks, validate};
use tonic::{Request, Response, Status};

use super::forward::Forwarder;
use super::stream::{stream_rows, stream_rows_as, RowStream};
use super::watch::{self, Watchers};
use crate::auth::scopes::{self, Scope};
use crate::errors;

pub struct ControlPlaneService {
    fwd: Forwarder,
    watchers: Watchers,
}

impl ControlPlaneService {
    pub fn new(fwd: Forwarder, watchers: Watchers) -> Self {
        Self { fwd, watchers }
    }

    fn views(&self) -> &capstan_storage::Views {
        self.fwd.node().views()
    }
}

/// A Receptor write refused because the CF family owns the LRP (the tenancy model): logged and
/// counted with the auth guard's refusals (`kind="cf_owned"`), as every refusal is.
fn counted(status: Status) -> Status {
    if status.code() == tonic::Code::PermissionDenied {
        metrics::counter!(crate::metrics::AUTH_REFUSALS, "kind" => "cf_owned").increment(1);
        tracing::info!(refusal = "cf_owned", message = status.message(), "call refused");
    }
    status
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

#[tonic::async_trait]
impl ControlPlane for ControlPlaneService {
    async fn desire_lrp(&self, req: Request<pb::DesireLrp>) -> Result<Response<pb::DesireLrpResponse>, Status> {
        let req = req.into_inner();
        let Some(desired) = &req.desired_lrp else {
            return Err(errors::status(ErrorKind::InvalidLrp, "invalid action type", 0));
        };
        validate::admit_desired_lrp(desired).map_err(|m| errors::status(ErrorKind::InvalidLrp, m, 0))?;
        let events = self
            .fwd
            .decide(pb::command::Kind::DesireLrp(req))
            .await
            .map_err(counted)?;
        let created = events
            .iter()
            .any(|e| matches!(e.kind, Some(pb::event::Kind::DesiredLrpCreated(_))));
        Ok(Response::new(pb::DesireLrpResponse { created }))
    }

    async fn update_desired_lrp(&self, req: Request<pb::UpdateDesiredLrp>) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        require("process_guid", &req.process_guid)?;
        validate::admit_update(&req.update.clone().unwrap_or_default()).map_err(invalid_request)?;
        self.fwd
            .decide(pb::command::Kind::UpdateDesiredLrp(req))
            .await
            .map_err(counted)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn remove_desired_lrp(&self, req: Request<pb::RemoveDesiredLrp>) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        require("process_guid", &req.process_guid)?;
        self.fwd
            .decide(pb::command::Kind::RemoveDesiredLrp(req))
            .await
            .map_err(counted)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn retire_actual_lrp(&self, req: Request<pb::RetireActualLrp>) -> Result<Response<pb::Empty>, Status> {
        // Killing an instance of a CF process through Receptor: an admin's call (CF's own is
        // `/v3/processes/:guid/instances/:index`). Changes no desired state, so checked here.
        let admin = admin_or_internal(&req);
        let req = req.into_inner();
        require("process_guid", &req.process_guid)?;
        if !admin {
            if let Some(p) = cf_owner(self.views(), &req.process_guid).map_err(errors::storage)? {
                return Err(counted(errors::status(
                    ErrorKind::Forbidden,
                    format!(
                        "Desired LRP '{}' runs the {} process {} of a CF app: its instances are killed through \
                         the CF API (/v3/processes/{}/instances/{}), or by an admin",
                        req.process_guid, p.r#type, p.guid, p.guid, req.index
                    ),
                    0,
                )));
            }
        }
        self.fwd.decide(pb::command::Kind::RetireActualLrp(req)).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn bump_fresh_domain(&self, req: Request<pb::BumpFreshDomain>) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        require("domain", &req.domain)?;
        if !validate::is_clean_name(&req.domain) {
            return Err(errors::status(ErrorKind::InvalidDomain, "Invalid field: domain", 0));
        }
        self.fwd.decide(pb::command::Kind::BumpFreshDomain(req)).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn get_desired_lrp(
        &self,
        req: Request<pb::GetDesiredLrpRequest>,
    ) -> Result<Response<pb::DesiredLrp>, Status> {
        let secrets = admin_or_internal(&req);
        let req = req.into_inner();
        require("process_guid", &req.process_guid)?;
        match self.views().get_desired(&req.process_guid).map_err(errors::storage)? {
            Some(d) => Ok(Response::new(shown(d, secrets))),
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
        let secrets = admin_or_internal(&req);
        let req = req.into_inner();
        let domain = (!req.domain.is_empty()).then_some(req.domain.as_str());
        let rows = self.views().desired_lrps(domain);
        Ok(Response::new(stream_rows_as(rows, move |d| Some(shown(d, secrets)))))
    }

    async fn get_actual_lrp(&self, req: Request<pb::GetActualLrpRequest>) -> Result<Response<pb::ActualLrp>, Status> {
        let req = req.into_inner();
        require("process_guid", &req.process_guid)?;
        match self
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
        let req = req.into_inner();
        let views = self.views();
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
        _req: Request<pb::ListFreshDomainsRequest>,
    ) -> Result<Response<pb::ListFreshDomainsResponse>, Status> {
        let domains = self
            .views()
            .fresh_domains(capstan_raft::node::unix_now_ns())
            .map_err(errors::storage)?;
        Ok(Response::new(pb::ListFreshDomainsResponse { domains }))
    }

    async fn list_cells(&self, _req: Request<pb::ListCellsRequest>) -> Result<Response<pb::ListCellsResponse>, Status> {
        let cells = self.views().cells().map_err(errors::storage)?;
        Ok(Response::new(pb::ListCellsResponse { cells }))
    }

    async fn create_task(&self, req: Request<pb::CreateTaskRequest>) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        let command = pb::DesireTask {
            task_guid: req.task_guid.clone(),
            memory_mb: req.memory_mb,
            env: req.env.clone(),
            task: req.task.clone(),
        };
        receptor_tasks::validate(&command).map_err(|m| errors::status(ErrorKind::InvalidTask, m, 0))?;
        self.fwd.decide(pb::command::Kind::DesireTask(command)).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn get_task(&self, req: Request<pb::TaskGuid>) -> Result<Response<pb::TaskRun>, Status> {
        let req = req.into_inner();
        require("task_guid", &req.task_guid)?;
        let found = self.views().get_task_run(&req.task_guid).map_err(errors::storage)?;
        found
            .filter(|r| r.receptor.is_some())
            .map(Response::new)
            .ok_or_else(|| task_not_found(&req.task_guid))
    }

    type ListTasksStream = RowStream<pb::TaskRun>;

    async fn list_tasks(&self, req: Request<pb::ListTasksRequest>) -> Result<Response<Self::ListTasksStream>, Status> {
        let req = req.into_inner();
        let domain = req.domain;
        let rows = self.views().task_runs();
        Ok(Response::new(stream_rows(rows, move |r| {
            r.receptor
                .as_ref()
                .is_some_and(|t| domain.is_empty() || t.domain == domain)
        })))
    }

    async fn delete_task(&self, req: Request<pb::TaskGuid>) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        require("task_guid", &req.task_guid)?;
        let command = pb::command::Kind::ResolveTask(pb::ResolveTask {
            task_guid: req.task_guid.clone(),
        });
        self.fwd.decide(command).await?;
        Ok(Response::new(pb::Empty {}))
    }

    type WatchStream = RowStream<pb::WatchEvent>;

    /// Served by every node from its own journal (never forwarded).
    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let secrets = admin_or_internal(&req);
        let node = self.fwd.node().clone();
        Ok(Response::new(
            watch::watch(node, &self.watchers, req.into_inner(), secrets).await?,
        ))
    }

    /// Cancel is a stop of the run: a pending task completes failed at once, a running one is
    /// killed on its cell and completes failed; a completed one is left as it is.
    async fn cancel_task(&self, req: Request<pb::TaskGuid>) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        require("task_guid", &req.task_guid)?;
        // Only a Receptor task is cancelled through this family (the leader has applied every
        // acknowledged create, so its view is enough to tell).
        let known = self.views().get_task_run(&req.task_guid).map_err(errors::storage)?;
        if known.is_none_or(|r| r.receptor.is_none()) {
            return Err(task_not_found(&req.task_guid));
        }
        let command = pb::command::Kind::StopTaskRun(pb::StopTaskRun {
            run_id: req.task_guid.clone(),
        });
        self.fwd.propose(command).await?;
        Ok(Response::new(pb::Empty {}))
    }
}

/// An admin or the cluster itself: who may kill a CF instance through Receptor and read secrets in
/// Receptor's view and the event stream (a CF app's environment variables).
fn admin_or_internal<T>(req: &Request<T>) -> bool {
    req.extensions()
        .get::<crate::auth::guard::Caller>()
        .is_none_or(|c| c.internal || scopes::allows(&c.scopes, Scope::ADMIN))
}

/// A DesiredLRP as the caller may see it.
fn shown(mut d: pb::DesiredLrp, secrets: bool) -> pb::DesiredLrp {
    if !secrets {
        capstan_storage::rules::cf::hide_app_env(&mut d);
    }
    d
}

fn task_not_found(task_guid: &str) -> Status {
    errors::rejection(&capstan_storage::rules::decide::task_not_found(task_guid))
}
