//! The public `TaskService` (Flotilla's task family): task definitions. Requests are the API's own
//! messages, translated here into log commands; bad input is refused at the edge with Flotilla's
//! messages and never reaches the log. Runs, history and logs come with the rest of issue 8.

use std::collections::BTreeSet;

use capstan_proto::pb::{self, task_service_client::TaskServiceClient, task_service_server::TaskService, ErrorKind};
use capstan_storage::rules::task_definitions::{self, ListQuery};
use tonic::{Request, Response, Status};

use super::forward::{is_forwarded, on_leader, Forwarder, Served};
use crate::errors;

pub struct TaskServiceImpl {
    fwd: Forwarder,
}

impl TaskServiceImpl {
    pub fn new(fwd: Forwarder) -> Self {
        Self { fwd }
    }

    fn views(&self) -> &capstan_storage::Views {
        self.fwd.node().views()
    }
}

fn invalid(message: impl Into<String>) -> Status {
    errors::status(ErrorKind::InvalidDefinition, message, 0)
}

fn not_found(message: String) -> Status {
    errors::status(ErrorKind::DefinitionNotFound, message, 0)
}

/// The definition an outcome's event carries (created or changed).
fn definition_of(events: &[pb::Event]) -> Result<pb::TaskDefinition, Status> {
    events
        .iter()
        .find_map(|e| match &e.kind {
            Some(pb::event::Kind::TaskDefinitionCreated(c)) => c.definition.clone(),
            Some(pb::event::Kind::TaskDefinitionChanged(c)) => c.after.clone(),
            _ => None,
        })
        .ok_or_else(|| errors::status(ErrorKind::Internal, "the entry applied without a definition event", 0))
}

#[tonic::async_trait]
impl TaskService for TaskServiceImpl {
    async fn create_task_definition(
        &self,
        req: Request<pb::CreateTaskDefinitionRequest>,
    ) -> Result<Response<pb::TaskDefinition>, Status> {
        let fwd = is_forwarded(&req);
        let r = req.into_inner();
        let definition = pb::TaskDefinition {
            alias: r.alias.clone(),
            group_name: r.group_name.clone(),
            image: r.image.clone(),
            command: r.command.clone(),
            memory: r.memory.unwrap_or_default(),
            env: r.env.clone(),
            tags: r.tags.clone(),
            ports: r.ports.clone(),
            user: r.user.clone(),
            ..Default::default()
        };
        task_definitions::create(&definition, r.memory.is_some()).map_err(invalid)?;
        let command = pb::command::Kind::CreateTaskDefinition(pb::CreateTaskDefinition {
            definition: Some(definition),
        });
        match self.fwd.propose(command, fwd).await? {
            Served::Here(events) => Ok(Response::new(definition_of(&events)?)),
            Served::Leader(addr) => on_leader!(self.fwd, addr, TaskServiceClient, create_task_definition, r),
        }
    }

    async fn update_task_definition(
        &self,
        req: Request<pb::UpdateTaskDefinitionRequest>,
    ) -> Result<Response<pb::TaskDefinition>, Status> {
        let fwd = is_forwarded(&req);
        let r = req.into_inner();
        if !r.group_name.is_empty() {
            return Err(invalid("group_name cannot be changed on update"));
        }
        let update = pb::UpdateTaskDefinition {
            definition_id: r.definition_id.clone(),
            alias: r.alias.clone(),
            image: r.image.clone(),
            command: r.command.clone(),
            memory: r.memory,
            has_env: r.has_env,
            env: r.env.clone(),
            has_tags: r.has_tags,
            tags: r.tags.clone(),
            has_ports: r.has_ports,
            ports: r.ports.clone(),
            user: r.user.clone(),
        };
        task_definitions::update(&update).map_err(invalid)?;
        match self
            .fwd
            .propose(pb::command::Kind::UpdateTaskDefinition(update), fwd)
            .await?
        {
            Served::Here(events) => Ok(Response::new(definition_of(&events)?)),
            Served::Leader(addr) => on_leader!(self.fwd, addr, TaskServiceClient, update_task_definition, r),
        }
    }

    async fn delete_task_definition(
        &self,
        req: Request<pb::TaskDefinitionId>,
    ) -> Result<Response<pb::DeleteTaskDefinitionResponse>, Status> {
        let fwd = is_forwarded(&req);
        let r = req.into_inner();
        let command = pb::command::Kind::DeleteTaskDefinition(pb::DeleteTaskDefinition {
            definition_id: r.definition_id.clone(),
        });
        match self.fwd.propose(command, fwd).await? {
            Served::Here(_) => Ok(Response::new(pb::DeleteTaskDefinitionResponse {
                definition_id: r.definition_id,
            })),
            Served::Leader(addr) => on_leader!(self.fwd, addr, TaskServiceClient, delete_task_definition, r),
        }
    }

    async fn get_task_definition(
        &self,
        req: Request<pb::TaskDefinitionId>,
    ) -> Result<Response<pb::TaskDefinition>, Status> {
        let fwd = is_forwarded(&req);
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.read_barrier(r.consistency, fwd).await? {
            return on_leader!(self.fwd, addr, TaskServiceClient, get_task_definition, r);
        }
        let found = self
            .views()
            .get_task_definition(&r.definition_id)
            .map_err(errors::storage)?;
        found
            .map(Response::new)
            .ok_or_else(|| not_found(format!("Definition with ID {} not found", r.definition_id)))
    }

    async fn get_task_definition_by_alias(
        &self,
        req: Request<pb::TaskDefinitionAlias>,
    ) -> Result<Response<pb::TaskDefinition>, Status> {
        let fwd = is_forwarded(&req);
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.read_barrier(r.consistency, fwd).await? {
            return on_leader!(self.fwd, addr, TaskServiceClient, get_task_definition_by_alias, r);
        }
        let views = self.views();
        let found = match views.task_definition_id_by_alias(&r.alias).map_err(errors::storage)? {
            Some(id) => views.get_task_definition(&id).map_err(errors::storage)?,
            None => None,
        };
        found
            .map(Response::new)
            .ok_or_else(|| not_found(format!("Definition with alias {} not found", r.alias)))
    }

    async fn list_task_definitions(
        &self,
        req: Request<pb::ListTaskDefinitionsRequest>,
    ) -> Result<Response<pb::ListTaskDefinitionsResponse>, Status> {
        let fwd = is_forwarded(&req);
        let r = req.into_inner();
        let query = ListQuery::from_request(&r).map_err(invalid)?;
        if let Served::Leader(addr) = self.fwd.read_barrier(r.consistency, fwd).await? {
            return on_leader!(self.fwd, addr, TaskServiceClient, list_task_definitions, r);
        }
        let views = self.views().clone();
        // Only the sort keys of the matching definitions are held; the page's rows are read again.
        let page = tokio::task::spawn_blocking(move || -> Result<pb::ListTaskDefinitionsResponse, Status> {
            let mut keys = Vec::new();
            for d in views.task_definitions() {
                let d = d.map_err(errors::storage)?;
                if query.matches(&d) {
                    keys.push(query.sort_key(&d));
                }
            }
            keys.sort_by(|a, b| query.order(a, b));
            let total = keys.len() as u64;
            let mut definitions = Vec::new();
            for k in keys
                .iter()
                .skip(usize::try_from(query.offset).unwrap_or(usize::MAX))
                .take(usize::try_from(query.limit).unwrap_or(0))
            {
                if let Some(d) = views.get_task_definition(&k.id).map_err(errors::storage)? {
                    definitions.push(d);
                }
            }
            Ok(pb::ListTaskDefinitionsResponse { total, definitions })
        })
        .await
        .map_err(|e| errors::status(ErrorKind::Internal, e.to_string(), 0))??;
        Ok(Response::new(page))
    }

    async fn list_groups(&self, req: Request<pb::ListNamesRequest>) -> Result<Response<pb::NameList>, Status> {
        let fwd = is_forwarded(&req);
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.read_barrier(r.consistency, fwd).await? {
            return on_leader!(self.fwd, addr, TaskServiceClient, list_groups, r);
        }
        self.distinct(|d, out| {
            out.insert(d.group_name.clone());
        })
    }

    async fn list_tags(&self, req: Request<pb::ListNamesRequest>) -> Result<Response<pb::NameList>, Status> {
        let fwd = is_forwarded(&req);
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.read_barrier(r.consistency, fwd).await? {
            return on_leader!(self.fwd, addr, TaskServiceClient, list_tags, r);
        }
        self.distinct(|d, out| out.extend(d.tags.iter().cloned()))
    }

    async fn list_clusters(&self, req: Request<pb::ListNamesRequest>) -> Result<Response<pb::NameList>, Status> {
        let fwd = is_forwarded(&req);
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.read_barrier(r.consistency, fwd).await? {
            return on_leader!(self.fwd, addr, TaskServiceClient, list_clusters, r);
        }
        let cells = self.views().cells().map_err(errors::storage)?;
        let names: BTreeSet<String> = cells.into_iter().map(|c| c.pool).filter(|p| !p.is_empty()).collect();
        Ok(Response::new(pb::NameList {
            names: names.into_iter().collect(),
        }))
    }
}

impl TaskServiceImpl {
    /// The distinct names `pick` takes from every definition, in order.
    fn distinct(
        &self,
        pick: impl Fn(&pb::TaskDefinition, &mut BTreeSet<String>),
    ) -> Result<Response<pb::NameList>, Status> {
        let mut names = BTreeSet::new();
        for d in self.views().task_definitions() {
            pick(&d.map_err(errors::storage)?, &mut names);
        }
        Ok(Response::new(pb::NameList {
            names: names.into_iter().collect(),
        }))
    }
}
