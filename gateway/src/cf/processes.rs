//! The process operations of CF's V3 family, in both forms: by process guid (`/v3/processes/{guid}`)
//! and by app and type (`/v3/apps/{guid}/processes/{type}`) — get, update, scale, stats,
//! `process_instances`, terminate an instance. One gRPC call each (`CfService`).

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use capstan_proto::pb;
use serde_json::json;

use super::error::Answers;
use super::{now_ns, object, present, query, request, Result};
use crate::common::extract::FamilyPath;
use crate::uaa::base_url;
use crate::Gateway;

fn by_guid(guid: String) -> pb::CfProcessRef {
    pb::CfProcessRef {
        guid,
        ..Default::default()
    }
}

fn by_app(app_guid: String, process_type: String) -> pb::CfProcessRef {
    pb::CfProcessRef {
        app_guid,
        r#type: process_type,
        ..Default::default()
    }
}

pub(super) async fn show(
    gw: &Gateway,
    h: &HeaderMap,
    mut r: pb::CfProcessRef,
    raw: Option<String>,
) -> Result<Response> {
    r.query = query::pairs(raw.as_deref());
    let view = gw.cf.clone().get_process(r).await?.into_inner();
    let p = view.process.unwrap_or_default();
    let embedded = view.embedded.then_some(view.instances.as_slice());
    Ok(Json(present::process(&base_url(h), &p, embedded, now_ns())).into_response())
}

#[utoipa::path(
    get, path = "/processes/{guid}", tag = "CF: processes", params(("guid" = String, Path), ("embed" = Option<String>, Query, description = "`process_instances`")), responses((status = 200, body = present::Process), Answers)
)]
pub(super) async fn get_process(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(g): FamilyPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    show(&gw, &h, by_guid(g), q).await
}

#[utoipa::path(
    get, path = "/apps/{guid}/processes/{type}", tag = "CF: processes", params(("guid" = String, Path), ("type" = String, Path, description = "Process type, e.g. `web`"), ("embed" = Option<String>, Query, description = "`process_instances`")), responses((status = 200, body = present::Process), Answers)
)]
pub(super) async fn get_app_process(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath((app, t)): FamilyPath<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    show(&gw, &h, by_app(app, t), q).await
}

pub(super) async fn patch(gw: &Gateway, h: &HeaderMap, r: pb::CfProcessRef, b: Body) -> Result<Response> {
    let o = object(b).await?;
    let update = request::update_process(&o)?;
    let p = gw
        .cf
        .clone()
        .update_process(pb::UpdateCfProcessRequest {
            process: Some(r),
            update: Some(update),
        })
        .await?
        .into_inner();
    Ok(Json(present::process(&base_url(h), &p, None, now_ns())).into_response())
}

#[utoipa::path(
    patch, path = "/processes/{guid}", tag = "CF: processes", params(("guid" = String, Path)), request_body(content = Object, description = "`{command?, health_check?, readiness_health_check?, metadata?}`"),
    responses((status = 200, body = present::Process), Answers)
)]
pub(super) async fn update_process(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(g): FamilyPath<String>,
    b: Body,
) -> Result<Response> {
    patch(&gw, &h, by_guid(g), b).await
}

#[utoipa::path(
    patch, path = "/apps/{guid}/processes/{type}", tag = "CF: processes", params(("guid" = String, Path), ("type" = String, Path, description = "Process type, e.g. `web`")), request_body(content = Object, description = "`{command?, health_check?, readiness_health_check?, metadata?}`"),
    responses((status = 200, body = present::Process), Answers)
)]
pub(super) async fn update_app_process(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath((app, t)): FamilyPath<(String, String)>,
    b: Body,
) -> Result<Response> {
    patch(&gw, &h, by_app(app, t), b).await
}

pub(super) async fn scale(gw: &Gateway, h: &HeaderMap, r: pb::CfProcessRef, b: Body) -> Result<Response> {
    let o = object(b).await?;
    let scale = request::scale(&o)?;
    let p = gw
        .cf
        .clone()
        .scale_process(pb::ScaleCfProcessRequest {
            process: Some(r),
            scale: Some(scale),
        })
        .await?
        .into_inner();
    Ok((
        StatusCode::ACCEPTED,
        Json(present::process(&base_url(h), &p, None, now_ns())),
    )
        .into_response())
}

#[utoipa::path(
    post, path = "/processes/{guid}/actions/scale", tag = "CF: processes", params(("guid" = String, Path)), request_body(content = Object, description = "`{instances?, memory_in_mb?, disk_in_mb?, log_rate_limit_in_bytes_per_second?}`"),
    responses((status = 202, body = present::Process), Answers)
)]
pub(super) async fn scale_process(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(g): FamilyPath<String>,
    b: Body,
) -> Result<Response> {
    scale(&gw, &h, by_guid(g), b).await
}

#[utoipa::path(
    post, path = "/apps/{guid}/processes/{type}/actions/scale", tag = "CF: processes", params(("guid" = String, Path), ("type" = String, Path, description = "Process type, e.g. `web`")), request_body(content = Object, description = "`{instances?, memory_in_mb?, disk_in_mb?, log_rate_limit_in_bytes_per_second?}`"),
    responses((status = 202, body = present::Process), Answers)
)]
pub(super) async fn scale_app_process(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath((app, t)): FamilyPath<(String, String)>,
    b: Body,
) -> Result<Response> {
    scale(&gw, &h, by_app(app, t), b).await
}

pub(super) async fn terminate(gw: &Gateway, r: pb::CfProcessRef, index: String) -> Result<Response> {
    gw.cf
        .clone()
        .terminate_instance(pb::TerminateCfInstanceRequest {
            process: Some(r),
            index,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    delete, path = "/processes/{guid}/instances/{index}", tag = "CF: processes", params(("guid" = String, Path), ("index" = String, Path, description = "Instance index")), responses((status = 204, description = "Terminated; it comes back as a new instance"), Answers)
)]
pub(super) async fn terminate_process(
    State(gw): State<Gateway>,
    FamilyPath((g, i)): FamilyPath<(String, String)>,
) -> Result<Response> {
    terminate(&gw, by_guid(g), i).await
}

#[utoipa::path(
    delete, path = "/apps/{guid}/processes/{type}/instances/{index}", tag = "CF: processes", params(("guid" = String, Path), ("type" = String, Path, description = "Process type, e.g. `web`"), ("index" = String, Path, description = "Instance index")), responses((status = 204, description = "Terminated; it comes back as a new instance"), Answers)
)]
pub(super) async fn terminate_app_process(
    State(gw): State<Gateway>,
    FamilyPath((app, t, i)): FamilyPath<(String, String, String)>,
) -> Result<Response> {
    terminate(&gw, by_app(app, t), i).await
}

pub(super) async fn stats(gw: &Gateway, r: pb::CfProcessRef) -> Result<Response> {
    let s = gw.cf.clone().process_stats(r).await?.into_inner();
    let mut resp = Json(super::stats::stats(&s, now_ns())).into_response();
    if s.usage_unavailable {
        resp.headers_mut().insert(
            "x-cf-warnings",
            HeaderValue::from_static("Stats+server+temporarily+unavailable."),
        );
    }
    Ok(resp)
}

#[utoipa::path(
    get, path = "/processes/{guid}/stats", tag = "CF: processes", params(("guid" = String, Path)), responses((status = 200, description = "`{resources: [instance stats]}`", body = super::stats::Stats), Answers)
)]
pub(super) async fn process_stats(State(gw): State<Gateway>, FamilyPath(g): FamilyPath<String>) -> Result<Response> {
    stats(&gw, by_guid(g)).await
}

#[utoipa::path(
    get, path = "/apps/{guid}/processes/{type}/stats", tag = "CF: processes", params(("guid" = String, Path), ("type" = String, Path, description = "Process type, e.g. `web`")), responses((status = 200, description = "`{resources: [instance stats]}`", body = super::stats::Stats), Answers)
)]
pub(super) async fn app_process_stats(
    State(gw): State<Gateway>,
    FamilyPath((app, t)): FamilyPath<(String, String)>,
) -> Result<Response> {
    stats(&gw, by_app(app, t)).await
}

#[utoipa::path(
    get, path = "/processes/{guid}/process_instances", tag = "CF: processes", params(("guid" = String, Path)), responses((status = 200, body = present::ProcessInstances), Answers)
)]
pub(super) async fn process_instances(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(g): FamilyPath<String>,
) -> Result<Response> {
    let s = gw.cf.clone().process_stats(by_guid(g.clone())).await?.into_inner();
    let base = base_url(&h);
    Ok(Json(present::ProcessInstances {
        resources: present::process_instances(&s.instances, now_ns()),
        links: json!({
            "self": { "href": format!("{base}/v3/processes/{g}/process_instances") },
            "process": { "href": format!("{base}/v3/processes/{g}") },
        }),
    })
    .into_response())
}
