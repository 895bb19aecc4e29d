//! The public `TaskService` (Flotilla's task family): task definitions, runs (execute, get, list,
//! stop) and run logs. Requests are the API's own messages, translated here into log commands;
//! bad input is refused at the edge with Flotilla's messages and never reaches the log. A run's
//! log lives on the cell that ran it: any node reads it from there (`CellApi`) for the client.

use std::collections::BTreeSet;

use capstan_proto::pb::{self, cell_api_client::CellApiClient, task_service_server::TaskService, ErrorKind};
use capstan_storage::rules::task_definitions::{self, ListQuery};
use capstan_storage::rules::task_runs::RunQuery;
use tonic::{Request, Response, Status};

use super::forward::Forwarder;
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

fn run_not_found(run_id: &str) -> Status {
    errors::status(ErrorKind::RunNotFound, format!("Run with id {run_id} not found"), 0)
}

/// The run an outcome's event carries (queued).
fn run_of(events: &[pb::Event]) -> Result<pb::TaskRun, Status> {
    events
        .iter()
        .find_map(|e| match &e.kind {
            Some(pb::event::Kind::TaskRunQueued(q)) => q.run.clone(),
            _ => None,
        })
        .ok_or_else(|| errors::status(ErrorKind::Internal, "the entry applied without a run event", 0))
}

/// A log position as clients carry it: `b/<attempt>/<offset>` (opaque to them).
pub fn log_token(attempt: u32, offset: u64) -> String {
    format!("b/{attempt}/{offset}")
}

/// Reads a `last_seen` token; empty = the start.
pub fn parse_log_token(token: &str) -> Result<(u32, u64), String> {
    if token.is_empty() {
        return Ok((0, 0));
    }
    let bad = || format!("invalid last_seen token [{token}]");
    let rest = token.strip_prefix("b/").ok_or_else(bad)?;
    let (attempt, offset) = rest.split_once('/').ok_or_else(bad)?;
    Ok((attempt.parse().map_err(|_| bad())?, offset.parse().map_err(|_| bad())?))
}

/// What a client is told when a run's older output was dropped by the per-run log limit.
fn dropped_marker(bytes: u64) -> String {
    format!("[capstan: {bytes} bytes of older output were dropped: a run's log keeps its newest bytes]\n")
}

/// One page of a sorted list: only the sort keys of the matching rows (`key` gives `None` for a
/// row that does not match) are held; the page's rows are read again with `fetch`.
fn sorted_page<T, K>(
    rows: impl Iterator<Item = Result<T, capstan_storage::StoreError>>,
    key: impl Fn(&T) -> Option<K>,
    order: impl Fn(&K, &K) -> std::cmp::Ordering,
    (offset, limit): (u32, u32),
    fetch: impl Fn(&K) -> Result<Option<T>, capstan_storage::StoreError>,
) -> Result<(u64, Vec<T>), Status> {
    let mut keys = Vec::new();
    for row in rows {
        if let Some(k) = key(&row.map_err(errors::storage)?) {
            keys.push(k);
        }
    }
    keys.sort_by(&order);
    let mut page = Vec::new();
    for k in keys
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(0))
    {
        if let Some(row) = fetch(k).map_err(errors::storage)? {
            page.push(row);
        }
    }
    Ok((keys.len() as u64, page))
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
        let events = self.fwd.decide(command).await?;
        Ok(Response::new(definition_of(&events)?))
    }

    async fn update_task_definition(
        &self,
        req: Request<pb::UpdateTaskDefinitionRequest>,
    ) -> Result<Response<pb::TaskDefinition>, Status> {
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
        let events = self.fwd.decide(pb::command::Kind::UpdateTaskDefinition(update)).await?;
        Ok(Response::new(definition_of(&events)?))
    }

    async fn delete_task_definition(
        &self,
        req: Request<pb::TaskDefinitionId>,
    ) -> Result<Response<pb::DeleteTaskDefinitionResponse>, Status> {
        let r = req.into_inner();
        let command = pb::command::Kind::DeleteTaskDefinition(pb::DeleteTaskDefinition {
            definition_id: r.definition_id.clone(),
        });
        self.fwd.decide(command).await?;
        Ok(Response::new(pb::DeleteTaskDefinitionResponse {
            definition_id: r.definition_id,
        }))
    }

    async fn get_task_definition(
        &self,
        req: Request<pb::TaskDefinitionId>,
    ) -> Result<Response<pb::TaskDefinition>, Status> {
        let r = req.into_inner();
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
        let r = req.into_inner();
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
        let r = req.into_inner();
        let query = ListQuery::from_request(&r).map_err(invalid)?;
        let views = self.views().clone();
        // Only the sort keys of the matching definitions are held; the page's rows are read again.
        let page = tokio::task::spawn_blocking(move || {
            let (total, definitions) = sorted_page(
                views.task_definitions(),
                |d| query.matches(d).then(|| query.sort_key(d)),
                |a, b| query.order(a, b),
                (query.offset, query.limit),
                |k| views.get_task_definition(&k.id),
            )?;
            Ok::<_, Status>(pb::ListTaskDefinitionsResponse { total, definitions })
        })
        .await
        .map_err(|e| errors::status(ErrorKind::Internal, e.to_string(), 0))??;
        Ok(Response::new(page))
    }

    async fn list_groups(&self, _req: Request<pb::ListNamesRequest>) -> Result<Response<pb::NameList>, Status> {
        self.distinct(|d, out| {
            out.insert(d.group_name.clone());
        })
    }

    async fn list_tags(&self, _req: Request<pb::ListNamesRequest>) -> Result<Response<pb::NameList>, Status> {
        self.distinct(|d, out| out.extend(d.tags.iter().cloned()))
    }

    async fn list_clusters(&self, _req: Request<pb::ListNamesRequest>) -> Result<Response<pb::NameList>, Status> {
        let cells = self.views().cells().map_err(errors::storage)?;
        let names: BTreeSet<String> = cells.into_iter().map(|c| c.pool).filter(|p| !p.is_empty()).collect();
        Ok(Response::new(pb::NameList {
            names: names.into_iter().collect(),
        }))
    }

    async fn execute_task(&self, req: Request<pb::ExecuteTaskRequest>) -> Result<Response<pb::TaskRun>, Status> {
        let r = req.into_inner();
        if let Some(bad) = r.env.iter().find(|e| e.name.is_empty()) {
            return Err(errors::status(
                ErrorKind::InvalidRequest,
                format!("an env override needs a name (value [{}])", bad.value),
                0,
            ));
        }
        // The alias is resolved on the leader, which has applied every acknowledged create.
        let definition_id = if r.definition_id.is_empty() {
            self.views()
                .task_definition_id_by_alias(&r.alias)
                .map_err(errors::storage)?
                .ok_or_else(|| not_found(format!("Definition with alias {} not found", r.alias)))?
        } else {
            r.definition_id.clone()
        };
        let command = pb::command::Kind::ExecuteTask(pb::ExecuteTask {
            definition_id,
            cluster_name: r.cluster.clone(),
            env_overrides: r.env.clone(),
        });
        let events = self.fwd.propose(command).await?;
        Ok(Response::new(run_of(&events)?))
    }

    async fn get_task_run(&self, req: Request<pb::TaskRunId>) -> Result<Response<pb::TaskRun>, Status> {
        let r = req.into_inner();
        let found = self.views().get_task_run(&r.run_id).map_err(errors::storage)?;
        found.map(Response::new).ok_or_else(|| run_not_found(&r.run_id))
    }

    async fn list_task_runs(
        &self,
        req: Request<pb::ListTaskRunsRequest>,
    ) -> Result<Response<pb::ListTaskRunsResponse>, Status> {
        let r = req.into_inner();
        let query = RunQuery::from_request(&r).map_err(|m| errors::status(ErrorKind::InvalidRequest, m, 0))?;
        let views = self.views().clone();
        if !query.definition_id.is_empty()
            && views
                .get_task_definition(&query.definition_id)
                .map_err(errors::storage)?
                .is_none()
        {
            return Err(not_found(format!(
                "Definition with ID {} not found",
                query.definition_id
            )));
        }
        // Only the sort keys of the matching runs are held; the page's rows are read again.
        let page = tokio::task::spawn_blocking(move || {
            let rows = if query.definition_id.is_empty() {
                views.task_runs()
            } else {
                views.task_runs_of_definition(&query.definition_id)
            };
            let (total, runs) = sorted_page(
                rows,
                |r| query.matches(r).then(|| query.sort_key(r)),
                |a, b| query.order(a, b),
                (query.offset, query.limit),
                |k| views.get_task_run(&k.run_id),
            )?;
            Ok::<_, Status>(pb::ListTaskRunsResponse { total, runs })
        })
        .await
        .map_err(|e| errors::status(ErrorKind::Internal, e.to_string(), 0))??;
        Ok(Response::new(page))
    }

    async fn stop_task_run(&self, req: Request<pb::TaskRunId>) -> Result<Response<pb::StopTaskRunResponse>, Status> {
        let r = req.into_inner();
        let command = pb::command::Kind::StopTaskRun(pb::StopTaskRun {
            run_id: r.run_id.clone(),
        });
        self.fwd.propose(command).await?;
        let run = self.views().get_task_run(&r.run_id).map_err(errors::storage)?;
        let run = run.ok_or_else(|| run_not_found(&r.run_id))?;
        Ok(Response::new(pb::StopTaskRunResponse {
            definition_id: run.definition_id,
        }))
    }

    async fn get_run_logs(&self, req: Request<pb::GetRunLogsRequest>) -> Result<Response<pb::RunLogs>, Status> {
        let r = req.into_inner();
        let (attempt, offset) =
            parse_log_token(&r.last_seen).map_err(|m| errors::status(ErrorKind::InvalidRequest, m, 0))?;
        // The run is read in this node's view (past the read barrier of a linearizable read, or
        // on the leader); its log is read from the cell that ran it.
        let found = self.views().get_task_run(&r.run_id).map_err(errors::storage)?;
        let run = found.ok_or_else(|| run_not_found(&r.run_id))?;
        // Each attempt writes its own log: a token of an earlier attempt starts the new one over.
        let offset = if attempt == run.attempt { offset } else { 0 };
        if run.log_addr.is_empty() || run.attempt == 0 {
            return Ok(Response::new(pb::RunLogs {
                log: String::new(),
                last_seen: log_token(run.attempt, offset),
            }));
        }
        let channel = self.fwd.peers().channel(&run.log_addr)?;
        let chunk = CellApiClient::new(channel)
            .read_run_log(pb::ReadRunLogRequest {
                run_id: run.run_id.clone(),
                offset,
                attempt: run.attempt,
            })
            .await
            .map_err(|e| {
                errors::status(
                    ErrorKind::Unavailable,
                    format!(
                        "the log of run {} is on cell {} ({}), which does not answer: {}",
                        run.run_id,
                        run.cell_id,
                        run.log_addr,
                        e.message()
                    ),
                    u32::try_from(capstan_raft::node::RETRY_AFTER.as_millis()).unwrap_or(500),
                )
            })?
            .into_inner();
        let mut log = String::new();
        if chunk.dropped_bytes > 0 {
            log.push_str(&dropped_marker(chunk.dropped_bytes));
        }
        log.push_str(&String::from_utf8_lossy(&chunk.data));
        Ok(Response::new(pb::RunLogs {
            log,
            last_seen: log_token(run.attempt, chunk.next_offset),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tokens_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_log_token(""), Ok((0, 0)));
        assert_eq!(parse_log_token(&log_token(2, 1234)), Ok((2, 1234)));
        for bad in ["f/123", "b/1", "b/x/1", "b/1/-1", "123"] {
            assert!(parse_log_token(bad).is_err(), "{bad}");
        }
    }
}
