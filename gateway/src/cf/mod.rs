//! Cloud Foundry's V3 API (seed 001 and spec/cf_v3_processes.md), under `/v3`: the 12 process
//! operations in their global and app-scoped forms plus `process_instances`, and the resources
//! that own processes — organizations, spaces, apps (start, stop, restart, environment variables),
//! `apply_manifest` and jobs.
//! Every handler makes exactly one gRPC call (`CfService`); JSON shapes are in `present.rs`,
//! bodies in `request.rs`, the manifest in `manifest.rs`, links in `query.rs`, errors in
//! `error.rs` (CF's `errors[]` envelope).

pub mod env;
pub mod error;
pub mod manifest;
pub mod present;
pub mod processes;
pub mod query;
pub mod request;
pub mod stats;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use capstan_proto::pb::{self, CfKind};
use serde_json::{json, Value};

use crate::common::body;
use crate::common::extract::FamilyPath;
use crate::uaa::base_url;
use crate::Gateway;
use error::{Answers, CfError};

type Result<T> = std::result::Result<T, CfError>;

/// The family's part of the API document (nested under `/v3`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    v3_root,
    list_organizations,
    create_organization,
    get_organization,
    update_organization,
    delete_organization,
    list_spaces,
    create_space,
    get_space,
    update_space,
    delete_space,
    apply_manifest,
    list_apps,
    create_app,
    get_app,
    update_app,
    delete_app,
    start_app,
    stop_app,
    env::restart_app,
    env::get_environment_variables,
    env::update_environment_variables,
    env::get_env,
    list_app_processes,
    processes::get_app_process,
    processes::update_app_process,
    processes::app_process_stats,
    processes::scale_app_process,
    processes::terminate_app_process,
    get_job,
    list_processes,
    processes::get_process,
    processes::update_process,
    processes::process_stats,
    processes::process_instances,
    processes::scale_process,
    processes::terminate_process,
))]
pub struct Api;

pub fn routes() -> Router<Gateway> {
    Router::new()
        .route("/", get(v3_root))
        .route("/organizations", get(list_organizations).post(create_organization))
        .route(
            "/organizations/{guid}",
            get(get_organization)
                .patch(update_organization)
                .delete(delete_organization),
        )
        .route("/spaces", get(list_spaces).post(create_space))
        .route(
            "/spaces/{guid}",
            get(get_space).patch(update_space).delete(delete_space),
        )
        .route("/spaces/{guid}/actions/apply_manifest", post(apply_manifest))
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/{guid}", get(get_app).patch(update_app).delete(delete_app))
        .route("/apps/{guid}/actions/start", post(start_app))
        .route("/apps/{guid}/actions/stop", post(stop_app))
        .route("/apps/{guid}/actions/restart", post(env::restart_app))
        .route(
            "/apps/{guid}/environment_variables",
            get(env::get_environment_variables).patch(env::update_environment_variables),
        )
        .route("/apps/{guid}/env", get(env::get_env))
        .route("/apps/{guid}/processes", get(list_app_processes))
        .route(
            "/apps/{guid}/processes/{type}",
            get(processes::get_app_process).patch(processes::update_app_process),
        )
        .route("/apps/{guid}/processes/{type}/stats", get(processes::app_process_stats))
        .route(
            "/apps/{guid}/processes/{type}/actions/scale",
            post(processes::scale_app_process),
        )
        .route(
            "/apps/{guid}/processes/{type}/instances/{index}",
            delete(processes::terminate_app_process),
        )
        .route("/jobs/{guid}", get(get_job))
        .route("/processes", get(list_processes))
        .route(
            "/processes/{guid}",
            get(processes::get_process).patch(processes::update_process),
        )
        .route("/processes/{guid}/stats", get(processes::process_stats))
        .route("/processes/{guid}/process_instances", get(processes::process_instances))
        .route("/processes/{guid}/actions/scale", post(processes::scale_process))
        .route(
            "/processes/{guid}/instances/{index}",
            delete(processes::terminate_process),
        )
        .fallback(unknown_request)
}

/// No such route under `/v3`: CF's 404 CF-NotFound.
async fn unknown_request() -> CfError {
    CfError::new(StatusCode::NOT_FOUND, "CF-NotFound", 10000, "Unknown request")
}

#[utoipa::path(
    get, path = "/", tag = "CF: root", responses((status = 200, description = "Links to the resources", body = Object))
)]
async fn v3_root(headers: HeaderMap) -> Json<Value> {
    let base = base_url(&headers);
    let link = |path: &str| json!({ "href": format!("{base}/v3{path}") });
    Json(json!({
        "links": {
            "self": link(""),
            "apps": link("/apps"),
            "jobs": link("/jobs"),
            "organizations": link("/organizations"),
            "processes": link("/processes"),
            "spaces": link("/spaces"),
        }
    }))
}

/// The gateway's clock (it depends on `capstan-proto` only, so not on the client crate's
/// `clock`): CF's presentation times of what it answers, never a decision.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// 202 with the job's `Location` (CF's asynchronous answer; Capstan's jobs are already finished).
fn accepted(base: &str, job: &pb::CfJob) -> Response {
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/v3/jobs/{}", job.guid)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

async fn object(body: Body) -> Result<serde_json::Map<String, Value>> {
    let bytes = body::read(body).await?;
    request::object(&bytes)
}

// --- lists -------------------------------------------------------------------------------

async fn list(
    gw: &Gateway,
    headers: &HeaderMap,
    kind: CfKind,
    app_guid: &str,
    raw: Option<String>,
) -> Result<Response> {
    let query = query::pairs(raw.as_deref());
    let page = gw
        .cf
        .clone()
        .list(pb::ListCfRequest {
            kind: kind as i32,
            query: query.clone(),
            app_guid: app_guid.to_owned(),
            consistency: 0,
        })
        .await?
        .into_inner();
    let base = base_url(headers);
    let path = match kind {
        CfKind::Organization => "/v3/organizations".to_owned(),
        CfKind::Space => "/v3/spaces".to_owned(),
        CfKind::App => "/v3/apps".to_owned(),
        _ if app_guid.is_empty() => "/v3/processes".to_owned(),
        _ => format!("/v3/apps/{app_guid}/processes"),
    };
    let now = now_ns();
    let resources: Vec<Value> = match kind {
        CfKind::Organization => page
            .organizations
            .iter()
            .map(|o| json!(present::organization(&base, o)))
            .collect(),
        CfKind::Space => page.spaces.iter().map(|s| json!(present::space(&base, s))).collect(),
        CfKind::App => page.apps.iter().map(|a| json!(present::app(&base, a))).collect(),
        _ => page
            .processes
            .iter()
            .map(|p| {
                let embedded = page
                    .process_instances
                    .iter()
                    .find(|e| e.process_guid == p.guid)
                    .map(|e| e.instances.as_slice());
                let embedded = embedded.or(if page.process_instances.is_empty() {
                    None
                } else {
                    Some(&[])
                });
                json!(present::process(&base, p, embedded, now))
            })
            .collect(),
    };
    let pagination = query::pagination(&base, &path, &query, &page);
    Ok(Json(json!({ "pagination": pagination, "resources": resources })).into_response())
}

#[utoipa::path(
    get, path = "/organizations", tag = "CF: organizations", params(("page" = Option<u32>, Query), ("per_page" = Option<u32>, Query, description = "1 to 5000"), ("order_by" = Option<String>, Query, description = "`created_at`, `updated_at` (or `-` first for descending); `name` where the resource has one"), ("label_selector" = Option<String>, Query), ("created_ats" = Option<String>, Query), ("updated_ats" = Option<String>, Query), ("guids" = Option<String>, Query, description = "Comma-separated"), ("names" = Option<String>, Query, description = "Comma-separated")),
    responses((status = 200, description = "`{pagination, resources}`", body = present::Page<present::Organization>), Answers)
)]
async fn list_organizations(State(gw): State<Gateway>, headers: HeaderMap, RawQuery(q): RawQuery) -> Result<Response> {
    list(&gw, &headers, CfKind::Organization, "", q).await
}

#[utoipa::path(
    get, path = "/spaces", tag = "CF: spaces", params(("page" = Option<u32>, Query), ("per_page" = Option<u32>, Query, description = "1 to 5000"), ("order_by" = Option<String>, Query, description = "`created_at`, `updated_at` (or `-` first for descending); `name` where the resource has one"), ("label_selector" = Option<String>, Query), ("created_ats" = Option<String>, Query), ("updated_ats" = Option<String>, Query), ("guids" = Option<String>, Query, description = "Comma-separated"), ("names" = Option<String>, Query, description = "Comma-separated"), ("organization_guids" = Option<String>, Query)),
    responses((status = 200, description = "`{pagination, resources}`", body = present::Page<present::Space>), Answers)
)]
async fn list_spaces(State(gw): State<Gateway>, headers: HeaderMap, RawQuery(q): RawQuery) -> Result<Response> {
    list(&gw, &headers, CfKind::Space, "", q).await
}

#[utoipa::path(
    get, path = "/apps", tag = "CF: apps", params(("page" = Option<u32>, Query), ("per_page" = Option<u32>, Query, description = "1 to 5000"), ("order_by" = Option<String>, Query, description = "`created_at`, `updated_at` (or `-` first for descending); `name` where the resource has one"), ("label_selector" = Option<String>, Query), ("created_ats" = Option<String>, Query), ("updated_ats" = Option<String>, Query), ("guids" = Option<String>, Query, description = "Comma-separated"), ("names" = Option<String>, Query, description = "Comma-separated"), ("space_guids" = Option<String>, Query), ("organization_guids" = Option<String>, Query)),
    responses((status = 200, description = "`{pagination, resources}`", body = present::Page<present::App>), Answers)
)]
async fn list_apps(State(gw): State<Gateway>, headers: HeaderMap, RawQuery(q): RawQuery) -> Result<Response> {
    list(&gw, &headers, CfKind::App, "", q).await
}

#[utoipa::path(
    get, path = "/processes", tag = "CF: processes", params(("page" = Option<u32>, Query), ("per_page" = Option<u32>, Query, description = "1 to 5000"), ("order_by" = Option<String>, Query, description = "`created_at`, `updated_at` (or `-` first for descending); `name` where the resource has one"), ("label_selector" = Option<String>, Query), ("created_ats" = Option<String>, Query), ("updated_ats" = Option<String>, Query), ("guids" = Option<String>, Query, description = "Comma-separated"), ("types" = Option<String>, Query), ("app_guids" = Option<String>, Query), ("space_guids" = Option<String>, Query), ("organization_guids" = Option<String>, Query), ("embed" = Option<String>, Query, description = "`process_instances`")),
    responses((status = 200, description = "`{pagination, resources}`", body = present::Page<present::Process>), Answers)
)]
async fn list_processes(State(gw): State<Gateway>, headers: HeaderMap, RawQuery(q): RawQuery) -> Result<Response> {
    list(&gw, &headers, CfKind::Process, "", q).await
}

#[utoipa::path(
    get, path = "/apps/{guid}/processes", tag = "CF: processes", params(("page" = Option<u32>, Query), ("per_page" = Option<u32>, Query, description = "1 to 5000"), ("order_by" = Option<String>, Query, description = "`created_at`, `updated_at` (or `-` first for descending); `name` where the resource has one"), ("label_selector" = Option<String>, Query), ("created_ats" = Option<String>, Query), ("updated_ats" = Option<String>, Query), ("guids" = Option<String>, Query, description = "Comma-separated"), ("guid" = String, Path), ("types" = Option<String>, Query), ("embed" = Option<String>, Query, description = "`process_instances`")),
    responses((status = 200, description = "`{pagination, resources}`", body = present::Page<present::Process>), Answers)
)]
async fn list_app_processes(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    FamilyPath(guid): FamilyPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    list(&gw, &headers, CfKind::Process, &guid, q).await
}

// --- organizations, spaces, apps -----------------------------------------------------------

async fn get_resource(gw: &Gateway, headers: &HeaderMap, kind: CfKind, guid: String) -> Result<Response> {
    let r = gw
        .cf
        .clone()
        .get_resource(pb::CfGetRequest {
            kind: kind as i32,
            guid,
            consistency: 0,
        })
        .await?
        .into_inner();
    Ok(Json(resource(&base_url(headers), r)).into_response())
}

fn resource(base: &str, r: pb::CfResource) -> Value {
    use pb::cf_resource::Kind as R;
    match r.kind {
        Some(R::Organization(o)) => json!(present::organization(base, &o)),
        Some(R::Space(s)) => json!(present::space(base, &s)),
        Some(R::App(a)) => json!(present::app(base, &a)),
        Some(R::Process(p)) => json!(present::process(base, &p, None, now_ns())),
        None => Value::Null,
    }
}

#[utoipa::path(
    get, path = "/organizations/{guid}", tag = "CF: organizations", params(("guid" = String, Path)), responses((status = 200, body = present::Organization), Answers)
)]
async fn get_organization(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(g): FamilyPath<String>,
) -> Result<Response> {
    get_resource(&gw, &h, CfKind::Organization, g).await
}

#[utoipa::path(
    get, path = "/spaces/{guid}", tag = "CF: spaces", params(("guid" = String, Path)), responses((status = 200, body = present::Space), Answers)
)]
async fn get_space(State(gw): State<Gateway>, h: HeaderMap, FamilyPath(g): FamilyPath<String>) -> Result<Response> {
    get_resource(&gw, &h, CfKind::Space, g).await
}

#[utoipa::path(
    get, path = "/apps/{guid}", tag = "CF: apps", params(("guid" = String, Path)), responses((status = 200, body = present::App), Answers)
)]
async fn get_app(State(gw): State<Gateway>, h: HeaderMap, FamilyPath(g): FamilyPath<String>) -> Result<Response> {
    get_resource(&gw, &h, CfKind::App, g).await
}

#[utoipa::path(
    post, path = "/organizations", tag = "CF: organizations", request_body(content = Object, description = "`{name, metadata?}`"),
    responses((status = 201, body = present::Organization), Answers)
)]
async fn create_organization(State(gw): State<Gateway>, h: HeaderMap, b: Body) -> Result<Response> {
    let o = object(b).await?;
    let req = pb::CreateCfOrganization {
        name: request::name(&o)?,
        metadata: request::metadata(&o)?,
    };
    let org = gw.cf.clone().create_organization(req).await?.into_inner();
    Ok((StatusCode::CREATED, Json(present::organization(&base_url(&h), &org))).into_response())
}

#[utoipa::path(
    post, path = "/spaces", tag = "CF: spaces", request_body(content = Object, description = "`{name, relationships: {organization: {data: {guid}}}, metadata?}`"),
    responses((status = 201, body = present::Space), Answers)
)]
async fn create_space(State(gw): State<Gateway>, h: HeaderMap, b: Body) -> Result<Response> {
    let o = object(b).await?;
    let req = pb::CreateCfSpace {
        name: request::name(&o)?,
        organization_guid: request::relationship(&o, "organization")?,
        metadata: request::metadata(&o)?,
    };
    let space = gw.cf.clone().create_space(req).await?.into_inner();
    Ok((StatusCode::CREATED, Json(present::space(&base_url(&h), &space))).into_response())
}

#[utoipa::path(
    post, path = "/apps", tag = "CF: apps", request_body(content = Object, description = "`{name, relationships: {space: {data: {guid}}}, metadata?}`"),
    responses((status = 201, body = present::App), Answers)
)]
async fn create_app(State(gw): State<Gateway>, h: HeaderMap, b: Body) -> Result<Response> {
    let o = object(b).await?;
    let req = pb::CreateCfApp {
        name: request::name(&o)?,
        space_guid: request::relationship(&o, "space")?,
        docker_image: String::new(),
        metadata: request::metadata(&o)?,
    };
    let app = gw.cf.clone().create_app(req).await?.into_inner();
    Ok((StatusCode::CREATED, Json(present::app(&base_url(&h), &app))).into_response())
}

async fn update(gw: &Gateway, h: &HeaderMap, kind: CfKind, guid: String, b: Body) -> Result<Response> {
    let o = object(b).await?;
    let req = request::update_resource(&o, kind, &guid)?;
    let r = gw.cf.clone().update_resource(req).await?.into_inner();
    Ok(Json(resource(&base_url(h), r)).into_response())
}

#[utoipa::path(
    patch, path = "/organizations/{guid}", tag = "CF: organizations", params(("guid" = String, Path)), request_body(content = Object, description = "`{name?, metadata?}`"),
    responses((status = 200, body = present::Organization), Answers)
)]
async fn update_organization(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(g): FamilyPath<String>,
    b: Body,
) -> Result<Response> {
    update(&gw, &h, CfKind::Organization, g, b).await
}

#[utoipa::path(
    patch, path = "/spaces/{guid}", tag = "CF: spaces", params(("guid" = String, Path)), request_body(content = Object, description = "`{name?, metadata?}`"),
    responses((status = 200, body = present::Space), Answers)
)]
async fn update_space(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(g): FamilyPath<String>,
    b: Body,
) -> Result<Response> {
    update(&gw, &h, CfKind::Space, g, b).await
}

#[utoipa::path(
    patch, path = "/apps/{guid}", tag = "CF: apps", params(("guid" = String, Path)), request_body(content = Object, description = "`{name?, metadata?}`"),
    responses((status = 200, body = present::App), Answers)
)]
async fn update_app(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(g): FamilyPath<String>,
    b: Body,
) -> Result<Response> {
    update(&gw, &h, CfKind::App, g, b).await
}

async fn remove(gw: &Gateway, h: &HeaderMap, kind: CfKind, guid: String) -> Result<Response> {
    let job = gw
        .cf
        .clone()
        .delete_resource(pb::DeleteCfResource {
            kind: kind as i32,
            guid,
        })
        .await?
        .into_inner();
    Ok(accepted(&base_url(h), &job))
}

#[utoipa::path(
    delete, path = "/organizations/{guid}", tag = "CF: organizations", params(("guid" = String, Path)), responses((status = 202, description = "Accepted: `Location` names the job (already COMPLETE)", headers(("Location" = String))), Answers)
)]
async fn delete_organization(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(g): FamilyPath<String>,
) -> Result<Response> {
    remove(&gw, &h, CfKind::Organization, g).await
}

#[utoipa::path(
    delete, path = "/spaces/{guid}", tag = "CF: spaces", params(("guid" = String, Path)), responses((status = 202, description = "Accepted: `Location` names the job (already COMPLETE)", headers(("Location" = String))), Answers)
)]
async fn delete_space(State(gw): State<Gateway>, h: HeaderMap, FamilyPath(g): FamilyPath<String>) -> Result<Response> {
    remove(&gw, &h, CfKind::Space, g).await
}

#[utoipa::path(
    delete, path = "/apps/{guid}", tag = "CF: apps", params(("guid" = String, Path)), responses((status = 202, description = "Accepted: `Location` names the job (already COMPLETE)", headers(("Location" = String))), Answers)
)]
async fn delete_app(State(gw): State<Gateway>, h: HeaderMap, FamilyPath(g): FamilyPath<String>) -> Result<Response> {
    remove(&gw, &h, CfKind::App, g).await
}

async fn set_state(gw: &Gateway, h: &HeaderMap, app_guid: String, started: bool) -> Result<Response> {
    let app = gw
        .cf
        .clone()
        .set_app_state(pb::SetCfAppState {
            app_guid,
            started,
            restart: false,
        })
        .await?
        .into_inner();
    Ok(Json(present::app(&base_url(h), &app)).into_response())
}

#[utoipa::path(
    post, path = "/apps/{guid}/actions/start", tag = "CF: apps", params(("guid" = String, Path)), responses((status = 200, body = present::App), Answers)
)]
async fn start_app(State(gw): State<Gateway>, h: HeaderMap, FamilyPath(g): FamilyPath<String>) -> Result<Response> {
    set_state(&gw, &h, g, true).await
}

#[utoipa::path(
    post, path = "/apps/{guid}/actions/stop", tag = "CF: apps", params(("guid" = String, Path)), responses((status = 200, body = present::App), Answers)
)]
async fn stop_app(State(gw): State<Gateway>, h: HeaderMap, FamilyPath(g): FamilyPath<String>) -> Result<Response> {
    set_state(&gw, &h, g, false).await
}

#[utoipa::path(
    post, path = "/spaces/{guid}/actions/apply_manifest", tag = "CF: spaces", params(("guid" = String, Path)),
    request_body(content_type = "application/x-yaml", content = String, description = "A CF app manifest (`applications:` with processes, instances, memory, disk, command, health checks)"),
    responses((status = 202, description = "Accepted: `Location` names the job (already COMPLETE)", headers(("Location" = String))), Answers)
)]
async fn apply_manifest(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(space): FamilyPath<String>,
    b: Body,
) -> Result<Response> {
    let bytes = body::read(b).await?;
    let req = manifest::parse(&bytes, &space)?;
    let job = gw.cf.clone().apply_manifest(req).await?.into_inner();
    Ok(accepted(&base_url(&h), &job))
}

#[utoipa::path(
    get, path = "/jobs/{guid}", tag = "CF: jobs", params(("guid" = String, Path)), responses((status = 200, body = present::Job), Answers)
)]
async fn get_job(State(gw): State<Gateway>, h: HeaderMap, FamilyPath(guid): FamilyPath<String>) -> Result<Response> {
    let job = gw
        .cf
        .clone()
        .get_job(pb::CfJobRequest { guid, consistency: 0 })
        .await?
        .into_inner();
    Ok(Json(present::job(&base_url(&h), &job)).into_response())
}
