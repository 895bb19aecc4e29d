//! Diego Receptor routes: the LRP routes of the seed and of 2015, both served from the same views,
//! and the 2015 task routes (spec/DECISIONS.md). Every handler makes exactly one gRPC call.

pub mod dto;
pub mod error;
pub mod events;
pub mod tasks;

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use capstan_proto::pb;

use crate::common::extract::{FamilyPath, FamilyQuery};
use crate::common::{body, list};
use crate::Gateway;
use dto::*;
use error::{Errors, ReceptorError};

type Result<T> = std::result::Result<T, ReceptorError>;

/// Header a caller sets to `stale` to read this node's view without a leader round trip.
pub const CONSISTENCY_HEADER: &str = "x-capstan-consistency";

/// The family's part of the API document (nested under `/v1`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_desired,
    list_desired,
    get_desired,
    update_desired,
    delete_desired,
    list_desired_in_domain,
    list_desired_in_domain_singular,
    list_actual,
    list_actual_in_domain,
    list_actual_of_desired,
    kill_by_query,
    list_actual_of_process,
    get_actual_at_index,
    kill_by_path,
    bump_fresh_domain,
    list_fresh_domains,
    upsert_domain,
    list_domains,
    list_cells,
    tasks::create_task,
    tasks::list_tasks,
    tasks::get_task,
    tasks::delete_task,
    tasks::cancel_task,
    events::events,
))]
pub struct Api;

pub fn routes() -> Router<Gateway> {
    Router::new()
        .route("/desired_lrps", get(list_desired).post(create_desired))
        .route(
            "/desired_lrps/{process_guid}",
            get(get_desired).put(update_desired).delete(delete_desired),
        )
        .route("/domain/{domain}/desired_lrps", get(list_desired_in_domain_singular))
        .route("/domains/{domain}/desired_lrps", get(list_desired_in_domain))
        .route("/actual_lrps", get(list_actual))
        .route("/domains/{domain}/actual_lrps", get(list_actual_in_domain))
        .route(
            "/desired_lrps/{process_guid}/actual_lrps",
            get(list_actual_of_desired).delete(kill_by_query),
        )
        .route("/actual_lrps/{process_guid}", get(list_actual_of_process))
        .route(
            "/actual_lrps/{process_guid}/index/{index}",
            get(get_actual_at_index).delete(kill_by_path),
        )
        .route("/fresh_domains", get(list_fresh_domains).post(bump_fresh_domain))
        .route("/domains", get(list_domains))
        .route("/domains/{domain}", axum::routing::put(upsert_domain))
        .route("/cells", get(list_cells))
        .route("/tasks", get(tasks::list_tasks).post(tasks::create_task))
        .route("/tasks/{task_guid}", get(tasks::get_task).delete(tasks::delete_task))
        .route("/tasks/{task_guid}/cancel", axum::routing::post(tasks::cancel_task))
        .route("/events", get(events::events))
        // Unknown paths under /v1 (a trailing slash included): 404 in Receptor's shape.
        .fallback(no_such_route)
}

async fn no_such_route(uri: axum::http::Uri) -> ReceptorError {
    ReceptorError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!("no route for {}", uri.path()),
    )
}

pub(crate) fn consistency(headers: &HeaderMap) -> i32 {
    match headers.get(CONSISTENCY_HEADER).and_then(|v| v.to_str().ok()) {
        Some(v) if v.eq_ignore_ascii_case("stale") => pb::ReadConsistency::Stale as i32,
        _ => pb::ReadConsistency::Linearizable as i32,
    }
}

fn require(name: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        Err(ReceptorError::invalid_request(format!("{name} missing from request")))
    } else {
        Ok(())
    }
}

fn parse_index(raw: Option<&str>) -> Result<u32> {
    let raw = raw
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ReceptorError::invalid_request("index missing from request"))?;
    match raw.parse::<i64>() {
        Err(_) => Err(ReceptorError::invalid_request("index not a number")),
        Ok(n) => u32::try_from(n).map_err(|_| ReceptorError::invalid_request("index must be a non-negative number")),
    }
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

// ---------- desired ----------

#[utoipa::path(
    post, path = "/desired_lrps", tag = "Receptor: LRPs", request_body = DesiredLrpCreate,
    responses((status = 201, description = "Desired"), (status = 200, description = "Already desired exactly so"), Errors)
)]
async fn create_desired(State(gw): State<Gateway>, req: Body) -> Result<Response> {
    let create: DesiredLrpCreate = body::json(req).await?;
    create
        .check_action_depth()
        .map_err(|m| ReceptorError::new(StatusCode::BAD_REQUEST, "InvalidLRP", m))?;
    let resp = gw
        .client
        .clone()
        .desire_lrp(pb::DesireLrp {
            desired_lrp: Some(create.into()),
        })
        .await?
        .into_inner();
    Ok(if resp.created {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::OK.into_response()
    })
}

#[utoipa::path(
    put, path = "/desired_lrps/{process_guid}", tag = "Receptor: LRPs", params(("process_guid" = String, Path, description = "The DesiredLRP's process guid")), request_body = DesiredLrpUpdate,
    responses((status = 204, description = "Updated"), Errors)
)]
async fn update_desired(
    State(gw): State<Gateway>,
    FamilyPath(process_guid): FamilyPath<String>,
    req: Body,
) -> Result<Response> {
    require("process_guid", &process_guid)?;
    let update: DesiredLrpUpdate = body::json(req).await?;
    gw.client
        .clone()
        .update_desired_lrp(pb::UpdateDesiredLrp {
            process_guid,
            update: Some(update.into()),
        })
        .await?;
    Ok(no_content())
}

#[utoipa::path(
    delete, path = "/desired_lrps/{process_guid}", tag = "Receptor: LRPs", params(("process_guid" = String, Path, description = "The DesiredLRP's process guid")),
    responses((status = 204, description = "Removed, with its instances"), Errors)
)]
async fn delete_desired(State(gw): State<Gateway>, FamilyPath(process_guid): FamilyPath<String>) -> Result<Response> {
    require("process_guid", &process_guid)?;
    gw.client
        .clone()
        .remove_desired_lrp(pb::RemoveDesiredLrp { process_guid })
        .await?;
    Ok(no_content())
}

#[utoipa::path(
    get, path = "/desired_lrps/{process_guid}", tag = "Receptor: LRPs", params(("process_guid" = String, Path, description = "The DesiredLRP's process guid"), ("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = DesiredLrpResponse), Errors)
)]
async fn get_desired(
    State(gw): State<Gateway>,
    FamilyPath(process_guid): FamilyPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    require("process_guid", &process_guid)?;
    let d = gw
        .client
        .clone()
        .get_desired_lrp(pb::GetDesiredLrpRequest {
            process_guid,
            consistency: consistency(&headers),
        })
        .await?
        .into_inner();
    Ok(Json(DesiredLrpResponse::from(d)).into_response())
}

async fn desired_list(gw: Gateway, domain: String, headers: &HeaderMap) -> Result<Response> {
    let stream = gw
        .client
        .clone()
        .list_desired_lrps(pb::ListDesiredLrpsRequest {
            domain,
            consistency: consistency(headers),
        })
        .await?
        .into_inner();
    Ok(list::array(stream, DesiredLrpResponse::from))
}

#[utoipa::path(
    get, path = "/desired_lrps", tag = "Receptor: LRPs",
    params(("domain" = Option<String>, Query), ("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = Vec<DesiredLrpResponse>), Errors)
)]
async fn list_desired(
    State(gw): State<Gateway>,
    FamilyQuery(q): FamilyQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response> {
    desired_list(gw, q.get("domain").cloned().unwrap_or_default(), &headers).await
}

#[utoipa::path(
    get, path = "/domains/{domain}/desired_lrps", tag = "Receptor: LRPs", params(("domain" = String, Path), ("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = Vec<DesiredLrpResponse>), Errors)
)]
async fn list_desired_in_domain(
    State(gw): State<Gateway>,
    FamilyPath(domain): FamilyPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    require("domain", &domain)?;
    desired_list(gw, domain, &headers).await
}

#[utoipa::path(
    get, path = "/domain/{domain}/desired_lrps", tag = "Receptor: LRPs", params(("domain" = String, Path), ("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")), description = "The seed's spelling of `/domains/{domain}/desired_lrps`.",
    responses((status = 200, body = Vec<DesiredLrpResponse>), Errors)
)]
async fn list_desired_in_domain_singular(
    gw: State<Gateway>,
    domain: FamilyPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    list_desired_in_domain(gw, domain, headers).await
}

// ---------- actual ----------

async fn actual_list(gw: Gateway, req: pb::ListActualLrpsRequest) -> Result<Response> {
    let stream = gw.client.clone().list_actual_lrps(req).await?.into_inner();
    Ok(list::array(stream, ActualLrpResponse::from))
}

#[utoipa::path(
    get, path = "/actual_lrps", tag = "Receptor: LRPs", params(("domain" = Option<String>, Query), ("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = Vec<ActualLrpResponse>), Errors)
)]
async fn list_actual(
    State(gw): State<Gateway>,
    FamilyQuery(q): FamilyQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response> {
    let req = pb::ListActualLrpsRequest {
        domain: q.get("domain").cloned().unwrap_or_default(),
        consistency: consistency(&headers),
        ..Default::default()
    };
    actual_list(gw, req).await
}

#[utoipa::path(
    get, path = "/domains/{domain}/actual_lrps", tag = "Receptor: LRPs", params(("domain" = String, Path), ("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = Vec<ActualLrpResponse>), Errors)
)]
async fn list_actual_in_domain(
    State(gw): State<Gateway>,
    FamilyPath(domain): FamilyPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    require("domain", &domain)?;
    let req = pb::ListActualLrpsRequest {
        domain,
        consistency: consistency(&headers),
        ..Default::default()
    };
    actual_list(gw, req).await
}

#[utoipa::path(
    get, path = "/desired_lrps/{process_guid}/actual_lrps", tag = "Receptor: LRPs",
    params(("process_guid" = String, Path, description = "The DesiredLRP's process guid"), ("index" = Option<u32>, Query), ("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = Vec<ActualLrpResponse>), Errors)
)]
async fn list_actual_of_desired(
    State(gw): State<Gateway>,
    FamilyPath(process_guid): FamilyPath<String>,
    FamilyQuery(q): FamilyQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response> {
    require("process_guid", &process_guid)?;
    let index = match q.get("index") {
        None => None,
        Some(raw) => Some(parse_index(Some(raw))?),
    };
    let req = pb::ListActualLrpsRequest {
        process_guid,
        index,
        consistency: consistency(&headers),
        ..Default::default()
    };
    actual_list(gw, req).await
}

#[utoipa::path(
    get, path = "/actual_lrps/{process_guid}", tag = "Receptor: LRPs", params(("process_guid" = String, Path, description = "The DesiredLRP's process guid"), ("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = Vec<ActualLrpResponse>), Errors)
)]
async fn list_actual_of_process(
    State(gw): State<Gateway>,
    FamilyPath(process_guid): FamilyPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    require("process_guid", &process_guid)?;
    let req = pb::ListActualLrpsRequest {
        process_guid,
        consistency: consistency(&headers),
        ..Default::default()
    };
    actual_list(gw, req).await
}

#[utoipa::path(
    get, path = "/actual_lrps/{process_guid}/index/{index}", tag = "Receptor: LRPs", params(("process_guid" = String, Path, description = "The DesiredLRP's process guid"), ("index" = u32, Path, description = "Instance index"), ("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = ActualLrpResponse), Errors)
)]
async fn get_actual_at_index(
    State(gw): State<Gateway>,
    FamilyPath((process_guid, index)): FamilyPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    require("process_guid", &process_guid)?;
    let index = parse_index(Some(&index))?;
    let a = gw
        .client
        .clone()
        .get_actual_lrp(pb::GetActualLrpRequest {
            process_guid,
            index,
            consistency: consistency(&headers),
        })
        .await?
        .into_inner();
    Ok(Json(ActualLrpResponse::from(a)).into_response())
}

async fn kill(gw: Gateway, process_guid: String, index: u32) -> Result<Response> {
    require("process_guid", &process_guid)?;
    gw.client
        .clone()
        .retire_actual_lrp(pb::RetireActualLrp { process_guid, index })
        .await?;
    Ok(no_content())
}

#[utoipa::path(
    delete, path = "/desired_lrps/{process_guid}/actual_lrps", tag = "Receptor: LRPs", params(("process_guid" = String, Path, description = "The DesiredLRP's process guid"), ("index" = u32, Query)),
    responses((status = 204, description = "The instance is stopped and replaced"), Errors)
)]
async fn kill_by_query(
    State(gw): State<Gateway>,
    FamilyPath(process_guid): FamilyPath<String>,
    FamilyQuery(q): FamilyQuery<HashMap<String, String>>,
) -> Result<Response> {
    let index = parse_index(q.get("index").map(String::as_str))?;
    kill(gw, process_guid, index).await
}

#[utoipa::path(
    delete, path = "/actual_lrps/{process_guid}/index/{index}", tag = "Receptor: LRPs", params(("process_guid" = String, Path, description = "The DesiredLRP's process guid"), ("index" = u32, Path, description = "Instance index")),
    responses((status = 204, description = "The instance is stopped and replaced"), Errors)
)]
async fn kill_by_path(
    State(gw): State<Gateway>,
    FamilyPath((process_guid, index)): FamilyPath<(String, String)>,
) -> Result<Response> {
    let index = parse_index(Some(&index))?;
    kill(gw, process_guid, index).await
}

// ---------- freshness ----------

async fn bump(gw: Gateway, domain: String, ttl_in_seconds: i64) -> Result<Response> {
    require("domain", &domain)?;
    let ttl_in_seconds = u32::try_from(ttl_in_seconds).map_err(|_| {
        ReceptorError::new(
            StatusCode::BAD_REQUEST,
            "InvalidDomain",
            "Invalid parameter: ttl_in_seconds",
        )
    })?;
    gw.client
        .clone()
        .bump_fresh_domain(pb::BumpFreshDomain { domain, ttl_in_seconds })
        .await?;
    Ok(no_content())
}

#[utoipa::path(
    post, path = "/fresh_domains", tag = "Receptor: domains", request_body = FreshDomain,
    responses((status = 204, description = "Fresh for ttl_in_seconds (0: for ever)"), Errors)
)]
async fn bump_fresh_domain(State(gw): State<Gateway>, req: Body) -> Result<Response> {
    let fd: FreshDomain = body::json(req).await?;
    if fd.domain.is_empty() {
        return Err(ReceptorError::new(
            StatusCode::BAD_REQUEST,
            "InvalidDomain",
            "Invalid field: domain",
        ));
    }
    bump(gw, fd.domain, fd.ttl_in_seconds).await
}

/// `PUT /v1/domains/:domain` with `Cache-Control: max-age=N` (absent = never expires).
#[utoipa::path(
    put, path = "/domains/{domain}", tag = "Receptor: domains",
    params(("domain" = String, Path), ("Cache-Control" = Option<String>, Header, description = "`max-age=N`: fresh for N seconds; absent: for ever")),
    responses((status = 204, description = "Fresh"), Errors)
)]
async fn upsert_domain(
    State(gw): State<Gateway>,
    FamilyPath(domain): FamilyPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let values: Vec<&str> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let ttl = if values.is_empty() {
        0
    } else {
        let directive = values
            .iter()
            .find_map(|v| v.strip_prefix("max-age="))
            .ok_or_else(|| ReceptorError::invalid_request("max-age directive missing from request"))?;
        directive
            .parse::<i64>()
            .map_err(|_| ReceptorError::invalid_request(format!("invalid-max-age-directive: max-age={directive}")))?
    };
    bump(gw, domain, ttl).await
}

async fn fresh_domains(gw: &Gateway, headers: &HeaderMap) -> Result<Vec<pb::FreshDomain>> {
    Ok(gw
        .client
        .clone()
        .list_fresh_domains(pb::ListFreshDomainsRequest {
            consistency: consistency(headers),
        })
        .await?
        .into_inner()
        .domains)
}

#[utoipa::path(
    get, path = "/fresh_domains", tag = "Receptor: domains", params(("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = Vec<FreshDomain>), Errors)
)]
async fn list_fresh_domains(State(gw): State<Gateway>, headers: HeaderMap) -> Result<Response> {
    let out: Vec<FreshDomain> = fresh_domains(&gw, &headers)
        .await?
        .into_iter()
        .map(|d| FreshDomain {
            domain: d.domain,
            ttl_in_seconds: i64::from(d.ttl_in_seconds),
        })
        .collect();
    Ok(Json(out).into_response())
}

#[utoipa::path(
    get, path = "/domains", tag = "Receptor: domains", params(("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = Vec<String>), Errors)
)]
async fn list_domains(State(gw): State<Gateway>, headers: HeaderMap) -> Result<Response> {
    let out: Vec<String> = fresh_domains(&gw, &headers)
        .await?
        .into_iter()
        .map(|d| d.domain)
        .collect();
    Ok(Json(out).into_response())
}

// ---------- cells ----------

#[utoipa::path(
    get, path = "/cells", tag = "Receptor: cells", params(("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = Vec<CellResponse>), Errors)
)]
async fn list_cells(State(gw): State<Gateway>, headers: HeaderMap) -> Result<Response> {
    let cells = gw
        .client
        .clone()
        .list_cells(pb::ListCellsRequest {
            consistency: consistency(&headers),
        })
        .await?
        .into_inner()
        .cells;
    let out: Vec<CellResponse> = cells.into_iter().map(CellResponse::from).collect();
    Ok(Json(out).into_response())
}
