//! Flotilla's task API (seed 002, CLASSIC semantics), served under `/api/v1` and `/api/v6`: task
//! definitions — list, create, get (by id or alias), update, delete — the groups, tags and
//! clusters metadata, runs — execute (by id or alias), history (all runs or a definition's), get,
//! stop — and run logs with `last_seen` tokens. Every handler makes exactly one gRPC call.

pub mod dto;
pub mod error;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use capstan_proto::pb;
use serde_json::{json, Value};

use crate::common::body;
use crate::common::extract::FamilyPath;
use crate::Gateway;
use dto::{fold_keys, Definition, DefinitionRequest, ExecuteRequest, Run};
use error::{Errors, FlotillaError};

type Result<T> = std::result::Result<T, FlotillaError>;

/// The filters a definition list accepts (anything else is refused, never interpolated).
const DEFINITION_FILTERS: [&str; 4] = ["image", "group_name", "alias", "tag"];
/// The filters a run list accepts.
const RUN_FILTERS: [&str; 4] = ["status", "cluster_name", "group_name", "alias"];
/// Paging and sorting keys every list accepts.
const LIST_KEYS: [&str; 4] = ["limit", "offset", "sort_by", "order"];

/// The family's part of the API document (nested under `/api/v1` and `/api/v6`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_definitions,
    create_definition,
    get_definition,
    update_definition,
    delete_definition,
    get_definition_by_alias,
    execute,
    execute_by_alias,
    list_definition_runs,
    get_run_of_definition,
    stop_run,
    get_run,
    list_runs,
    get_run_in_history,
    get_logs,
    list_groups,
    list_tags,
    list_clusters,
))]
pub struct Api;

pub fn routes() -> Router<Gateway> {
    Router::new()
        .route("/task", get(list_definitions).post(create_definition))
        .route(
            "/task/{definition_id}",
            get(get_definition).put(update_definition).delete(delete_definition),
        )
        .route("/task/alias/{alias}", get(get_definition_by_alias))
        .route("/task/{definition_id}/execute", put(execute))
        .route("/task/alias/{alias}/execute", put(execute_by_alias))
        .route("/task/{definition_id}/history", get(list_definition_runs))
        .route(
            "/task/{definition_id}/history/{run_id}",
            get(get_run_of_definition).delete(stop_run),
        )
        .route("/task/history/{run_id}", get(get_run))
        .route("/history", get(list_runs))
        .route("/history/{run_id}", get(get_run_in_history))
        .route("/{run_id}/logs", get(get_logs))
        .route("/groups", get(list_groups))
        .route("/tags", get(list_tags))
        .route("/clusters", get(list_clusters))
        .fallback(no_such_route)
}

async fn no_such_route(uri: axum::http::Uri) -> FlotillaError {
    FlotillaError {
        status: StatusCode::NOT_FOUND,
        message: format!("no route for {}", uri.path()),
        retry_after_ms: 0,
    }
}

/// A JSON body decoded as Go does it: keys case-insensitive, unknown keys ignored.
async fn folded<T: serde::de::DeserializeOwned>(req: Body) -> Result<T> {
    let bytes = body::read(req).await?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| FlotillaError::bad_request(e.to_string()))?;
    serde_json::from_value(fold_keys(value)).map_err(|e| FlotillaError::bad_request(e.to_string()))
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

/// A definition in Flotilla's field order (written directly: a `Value` would sort the keys).
fn definition(d: pb::TaskDefinition) -> Response {
    (StatusCode::OK, Json(Definition::from(d))).into_response()
}

/// Flotilla's list envelope; every column filter given is echoed back as an array.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct DefinitionList {
    total: u64,
    definitions: Vec<Definition>,
    limit: u32,
    offset: u32,
    sort_by: String,
    order: String,
    env_filters: BTreeMap<String, String>,
    /// Each column filter given, echoed back as an array under its own key.
    #[serde(flatten)]
    #[schema(ignore)]
    filters: BTreeMap<String, Vec<String>>,
}

/// Query parameters, each with every value it was given (Flotilla's filters repeat).
fn query_params(raw: Option<String>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        out.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    out
}

fn number(params: &BTreeMap<String, Vec<String>>, key: &str) -> Result<u32> {
    match params.get(key).and_then(|v| v.first()) {
        None => Ok(0),
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| FlotillaError::bad_request(format!("{key} must be a non-negative integer, was {v}"))),
    }
}

fn single(params: &BTreeMap<String, Vec<String>>, key: &str) -> String {
    params.get(key).and_then(|v| v.first()).cloned().unwrap_or_default()
}

/// Refuses a query key that is neither a list key nor one of `filters` (deliberate fix: Flotilla
/// interpolated unknown keys into SQL and answered 500).
fn known_keys(params: &BTreeMap<String, Vec<String>>, filters: &[&str]) -> Result<()> {
    match params
        .keys()
        .find(|k| !filters.contains(&k.as_str()) && !LIST_KEYS.contains(&k.as_str()))
    {
        None => Ok(()),
        Some(key) => Err(FlotillaError::bad_request(format!(
            "unknown filter [{key}], must be one of [{}]",
            filters.join(", ")
        ))),
    }
}

/// The page, sort and order a list echoes back (defaults filled in as Flotilla does).
fn echo(limit: u32, offset: u32, sort_by: &str, order: &str) -> (u32, u32, String, String) {
    (
        if limit == 0 { 1024 } else { limit },
        offset,
        if sort_by.is_empty() { "group_name" } else { sort_by }.to_owned(),
        if order.is_empty() { "asc" } else { order }.to_owned(),
    )
}

#[utoipa::path(
    get, path = "/task", tag = "Flotilla: definitions",
    params(("limit" = Option<u32>, Query, description = "Page size (default 1024)"), ("offset" = Option<u32>, Query), ("sort_by" = Option<String>, Query), ("order" = Option<String>, Query, description = "`asc` or `desc`"), ("image" = Option<String>, Query), ("group_name" = Option<String>, Query), ("alias" = Option<String>, Query), ("tag" = Option<String>, Query)),
    responses((status = 200, body = DefinitionList), Errors)
)]
async fn list_definitions(State(gw): State<Gateway>, RawQuery(raw): RawQuery) -> Result<Response> {
    let params = query_params(raw);
    known_keys(&params, &DEFINITION_FILTERS)?;
    let filter = |k: &str| params.get(k).cloned().unwrap_or_default();
    let req = pb::ListTaskDefinitionsRequest {
        limit: number(&params, "limit")?,
        offset: number(&params, "offset")?,
        sort_by: single(&params, "sort_by"),
        order: single(&params, "order"),
        image: filter("image"),
        group_name: filter("group_name"),
        alias: filter("alias"),
        tag: filter("tag"),
        consistency: pb::ReadConsistency::Linearizable as i32,
    };
    let (limit, offset, sort_by, order) = echo(req.limit, req.offset, &req.sort_by, &req.order);
    let page = gw.tasks.clone().list_task_definitions(req).await?.into_inner();
    let filters = params
        .into_iter()
        .filter(|(k, _)| DEFINITION_FILTERS.contains(&k.as_str()))
        .collect();
    let body = DefinitionList {
        total: page.total,
        definitions: page.definitions.into_iter().map(Definition::from).collect(),
        limit,
        offset,
        sort_by,
        order,
        env_filters: BTreeMap::new(),
        filters,
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

#[utoipa::path(
    post, path = "/task", tag = "Flotilla: definitions", request_body = DefinitionRequest,
    responses((status = 200, description = "Created", body = Definition), Errors)
)]
async fn create_definition(State(gw): State<Gateway>, req: Body) -> Result<Response> {
    let request: DefinitionRequest = folded(req).await?;
    let created = gw.tasks.clone().create_task_definition(request.into_create()).await?;
    Ok(definition(created.into_inner()))
}

#[utoipa::path(
    get, path = "/task/{definition_id}", tag = "Flotilla: definitions", params(("definition_id" = String, Path)),
    responses((status = 200, body = Definition), Errors)
)]
async fn get_definition(State(gw): State<Gateway>, FamilyPath(definition_id): FamilyPath<String>) -> Result<Response> {
    let d = gw
        .tasks
        .clone()
        .get_task_definition(pb::TaskDefinitionId {
            definition_id,
            consistency: pb::ReadConsistency::Linearizable as i32,
        })
        .await?;
    Ok(definition(d.into_inner()))
}

#[utoipa::path(
    get, path = "/task/alias/{alias}", tag = "Flotilla: definitions", params(("alias" = String, Path)),
    responses((status = 200, body = Definition), Errors)
)]
async fn get_definition_by_alias(State(gw): State<Gateway>, FamilyPath(alias): FamilyPath<String>) -> Result<Response> {
    let d = gw
        .tasks
        .clone()
        .get_task_definition_by_alias(pb::TaskDefinitionAlias {
            alias,
            consistency: pb::ReadConsistency::Linearizable as i32,
        })
        .await?;
    Ok(definition(d.into_inner()))
}

#[utoipa::path(
    put, path = "/task/{definition_id}", tag = "Flotilla: definitions", params(("definition_id" = String, Path)), request_body = DefinitionRequest,
    responses((status = 200, body = Definition), Errors)
)]
async fn update_definition(
    State(gw): State<Gateway>,
    FamilyPath(definition_id): FamilyPath<String>,
    req: Body,
) -> Result<Response> {
    let request: DefinitionRequest = folded(req).await?;
    let updated = gw
        .tasks
        .clone()
        .update_task_definition(request.into_update(definition_id))
        .await?;
    Ok(definition(updated.into_inner()))
}

#[utoipa::path(
    delete, path = "/task/{definition_id}", tag = "Flotilla: definitions", params(("definition_id" = String, Path)),
    responses((status = 200, description = "`{\"definition_id\", \"deleted\": true}`", body = Object), Errors)
)]
async fn delete_definition(
    State(gw): State<Gateway>,
    FamilyPath(definition_id): FamilyPath<String>,
) -> Result<Response> {
    let deleted = gw
        .tasks
        .clone()
        .delete_task_definition(pb::TaskDefinitionId {
            definition_id,
            consistency: pb::ReadConsistency::Linearizable as i32,
        })
        .await?
        .into_inner();
    Ok(ok(json!({ "definition_id": deleted.definition_id, "deleted": true })))
}

/// `{"total", <key>: [...], "limit", "offset"}` over a sorted list of names, with `name` as a
/// substring filter (Flotilla's metadata lists).
fn name_page(key: &str, names: Vec<String>, raw: Option<String>) -> Result<Response> {
    let params = query_params(raw);
    let filter = single(&params, "name");
    let matching: Vec<String> = names.into_iter().filter(|n| n.contains(&filter)).collect();
    let limit = match number(&params, "limit")? {
        0 => 1024,
        n => n,
    };
    let offset = number(&params, "offset")?;
    let page: Vec<&String> = matching
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(0))
        .collect();
    Ok(ok(
        json!({ "total": matching.len(), key: page, "limit": limit, "offset": offset }),
    ))
}

fn names_request() -> pb::ListNamesRequest {
    pb::ListNamesRequest {
        consistency: pb::ReadConsistency::Linearizable as i32,
    }
}

#[utoipa::path(
    get, path = "/groups", tag = "Flotilla: definitions", params(("name" = Option<String>, Query, description = "Substring filter"), ("limit" = Option<u32>, Query), ("offset" = Option<u32>, Query)),
    responses((status = 200, body = Object), Errors)
)]
async fn list_groups(State(gw): State<Gateway>, RawQuery(raw): RawQuery) -> Result<Response> {
    let names = gw.tasks.clone().list_groups(names_request()).await?.into_inner().names;
    name_page("groups", names, raw)
}

#[utoipa::path(
    get, path = "/tags", tag = "Flotilla: definitions", params(("name" = Option<String>, Query, description = "Substring filter"), ("limit" = Option<u32>, Query), ("offset" = Option<u32>, Query)),
    responses((status = 200, body = Object), Errors)
)]
async fn list_tags(State(gw): State<Gateway>, RawQuery(raw): RawQuery) -> Result<Response> {
    let names = gw.tasks.clone().list_tags(names_request()).await?.into_inner().names;
    name_page("tags", names, raw)
}

#[utoipa::path(
    get, path = "/clusters", tag = "Flotilla: definitions",
    responses((status = 200, body = Object), Errors)
)]
async fn list_clusters(State(gw): State<Gateway>) -> Result<Response> {
    let names = gw
        .tasks
        .clone()
        .list_clusters(names_request())
        .await?
        .into_inner()
        .names;
    Ok(ok(json!({ "clusters": names })))
}

fn linearizable() -> i32 {
    pb::ReadConsistency::Linearizable as i32
}

fn run(r: pb::TaskRun) -> Response {
    (StatusCode::OK, Json(Run::from(r))).into_response()
}

/// Queues a run of the definition `definition_id`, or of the one holding `alias`.
async fn execute_run(gw: Gateway, definition_id: String, alias: String, req: Body) -> Result<Response> {
    let request: ExecuteRequest = folded(req).await?;
    let queued = gw
        .tasks
        .clone()
        .execute_task(request.into_request(definition_id, alias))
        .await?;
    Ok(run(queued.into_inner()))
}

#[utoipa::path(
    put, path = "/task/{definition_id}/execute", tag = "Flotilla: runs", params(("definition_id" = String, Path)), request_body = ExecuteRequest,
    responses((status = 200, description = "Queued", body = Run), Errors)
)]
async fn execute(
    State(gw): State<Gateway>,
    FamilyPath(definition_id): FamilyPath<String>,
    req: Body,
) -> Result<Response> {
    execute_run(gw, definition_id, String::new(), req).await
}

#[utoipa::path(
    put, path = "/task/alias/{alias}/execute", tag = "Flotilla: runs", params(("alias" = String, Path)), request_body = ExecuteRequest,
    responses((status = 200, description = "Queued", body = Run), Errors)
)]
async fn execute_by_alias(
    State(gw): State<Gateway>,
    FamilyPath(alias): FamilyPath<String>,
    req: Body,
) -> Result<Response> {
    execute_run(gw, String::new(), alias, req).await
}

#[utoipa::path(
    get, path = "/task/history/{run_id}", tag = "Flotilla: runs", params(("run_id" = String, Path)),
    responses((status = 200, body = Run), Errors)
)]
async fn get_run(State(gw): State<Gateway>, FamilyPath(run_id): FamilyPath<String>) -> Result<Response> {
    let found = gw
        .tasks
        .clone()
        .get_task_run(pb::TaskRunId {
            run_id,
            consistency: linearizable(),
        })
        .await?;
    Ok(run(found.into_inner()))
}

#[utoipa::path(
    get, path = "/history/{run_id}", tag = "Flotilla: runs", params(("run_id" = String, Path)),
    responses((status = 200, body = Run), Errors)
)]
async fn get_run_in_history(gw: State<Gateway>, run_id: FamilyPath<String>) -> Result<Response> {
    get_run(gw, run_id).await
}

/// `GET /task/{definition_id}/history/{run_id}`: the run (the definition id is not checked, as
/// in Flotilla).
#[utoipa::path(
    get, path = "/task/{definition_id}/history/{run_id}", tag = "Flotilla: runs", params(("definition_id" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, body = Run), Errors)
)]
async fn get_run_of_definition(
    State(gw): State<Gateway>,
    FamilyPath((_definition_id, run_id)): FamilyPath<(String, String)>,
) -> Result<Response> {
    get_run(State(gw), FamilyPath(run_id)).await
}

#[utoipa::path(
    delete, path = "/task/{definition_id}/history/{run_id}", tag = "Flotilla: runs", params(("definition_id" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, description = "`{\"definition_id\", \"stopped\": true}`", body = Object), Errors)
)]
async fn stop_run(
    State(gw): State<Gateway>,
    FamilyPath((_definition_id, run_id)): FamilyPath<(String, String)>,
) -> Result<Response> {
    let stopped = gw
        .tasks
        .clone()
        .stop_task_run(pb::TaskRunId {
            run_id,
            consistency: linearizable(),
        })
        .await?
        .into_inner();
    Ok(ok(json!({ "definition_id": stopped.definition_id, "stopped": true })))
}

/// Flotilla's run list envelope (`history`), with every filter given echoed back.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct RunList {
    #[serde(skip_serializing_if = "Option::is_none")]
    definition_id: Option<String>,
    total: u64,
    history: Vec<Run>,
    limit: u32,
    offset: u32,
    sort_by: String,
    order: String,
    env_filters: BTreeMap<String, String>,
    /// Each column filter given, echoed back as an array under its own key.
    #[serde(flatten)]
    #[schema(ignore)]
    filters: BTreeMap<String, Vec<String>>,
}

async fn runs_page(gw: Gateway, definition_id: Option<String>, raw: Option<String>) -> Result<Response> {
    let params = query_params(raw);
    known_keys(&params, &RUN_FILTERS)?;
    let filter = |k: &str| params.get(k).cloned().unwrap_or_default();
    let req = pb::ListTaskRunsRequest {
        definition_id: definition_id.clone().unwrap_or_default(),
        limit: number(&params, "limit")?,
        offset: number(&params, "offset")?,
        sort_by: single(&params, "sort_by"),
        order: single(&params, "order"),
        status: filter("status"),
        cluster_name: filter("cluster_name"),
        group_name: filter("group_name"),
        alias: filter("alias"),
        consistency: linearizable(),
    };
    let (limit, offset, sort_by, order) = echo(req.limit, req.offset, &req.sort_by, &req.order);
    let page = gw.tasks.clone().list_task_runs(req).await?.into_inner();
    let body = RunList {
        definition_id,
        total: page.total,
        history: page.runs.into_iter().map(Run::from).collect(),
        limit,
        offset,
        sort_by,
        order,
        env_filters: BTreeMap::new(),
        filters: params
            .into_iter()
            .filter(|(k, _)| RUN_FILTERS.contains(&k.as_str()))
            .collect(),
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

#[utoipa::path(
    get, path = "/history", tag = "Flotilla: runs",
    params(("limit" = Option<u32>, Query, description = "Page size (default 1024)"), ("offset" = Option<u32>, Query), ("sort_by" = Option<String>, Query), ("order" = Option<String>, Query, description = "`asc` or `desc`"), ("status" = Option<String>, Query), ("cluster_name" = Option<String>, Query), ("group_name" = Option<String>, Query), ("alias" = Option<String>, Query)),
    responses((status = 200, body = RunList), Errors)
)]
async fn list_runs(State(gw): State<Gateway>, RawQuery(raw): RawQuery) -> Result<Response> {
    runs_page(gw, None, raw).await
}

#[utoipa::path(
    get, path = "/task/{definition_id}/history", tag = "Flotilla: runs",
    params(("definition_id" = String, Path), ("limit" = Option<u32>, Query, description = "Page size (default 1024)"), ("offset" = Option<u32>, Query), ("sort_by" = Option<String>, Query), ("order" = Option<String>, Query, description = "`asc` or `desc`"), ("status" = Option<String>, Query), ("cluster_name" = Option<String>, Query), ("group_name" = Option<String>, Query), ("alias" = Option<String>, Query)),
    responses((status = 200, body = RunList), Errors)
)]
async fn list_definition_runs(
    State(gw): State<Gateway>,
    FamilyPath(definition_id): FamilyPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    runs_page(gw, Some(definition_id), raw).await
}

#[utoipa::path(
    get, path = "/{run_id}/logs", tag = "Flotilla: runs", params(("run_id" = String, Path), ("last_seen" = Option<String>, Query, description = "The token of the last read: only newer lines")),
    responses((status = 200, description = "`{\"last_seen\", \"log\"}`", body = Object), Errors)
)]
async fn get_logs(
    State(gw): State<Gateway>,
    FamilyPath(run_id): FamilyPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let params = query_params(raw);
    let logs = gw
        .tasks
        .clone()
        .get_run_logs(pb::GetRunLogsRequest {
            run_id,
            last_seen: single(&params, "last_seen"),
            consistency: linearizable(),
        })
        .await?
        .into_inner();
    Ok(ok(json!({ "last_seen": logs.last_seen, "log": logs.log })))
}
