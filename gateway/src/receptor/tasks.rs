//! Receptor's 2015 task routes: create, list, get, delete (resolve a COMPLETED task) and cancel.
//! One gRPC call each.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use capstan_proto::pb;

use super::dto::{TaskCreate, TaskResponse};
use super::error::{Errors, ReceptorError};
use super::{consistency, require, Result};
use crate::common::extract::{FamilyPath, FamilyQuery};
use crate::common::{body, list};
use crate::Gateway;

#[utoipa::path(
    post, path = "/tasks", tag = "Receptor: tasks", request_body = TaskCreate,
    responses((status = 201, description = "Queued"), Errors)
)]
pub(super) async fn create_task(State(gw): State<Gateway>, req: Body) -> Result<Response> {
    let create: TaskCreate = body::json(req).await?;
    create
        .check_action_depth()
        .map_err(|m| ReceptorError::new(StatusCode::BAD_REQUEST, "InvalidTask", m))?;
    gw.client
        .clone()
        .create_task(pb::CreateTaskRequest::from(create))
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

#[utoipa::path(
    get, path = "/tasks", tag = "Receptor: tasks", params(("domain" = Option<String>, Query), ("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = Vec<TaskResponse>), Errors)
)]
pub(super) async fn list_tasks(
    State(gw): State<Gateway>,
    FamilyQuery(q): FamilyQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response> {
    let req = pb::ListTasksRequest {
        domain: q.get("domain").cloned().unwrap_or_default(),
        consistency: consistency(&headers),
    };
    let stream = gw.client.clone().list_tasks(req).await?.into_inner();
    Ok(list::array(stream, TaskResponse::from))
}

fn task_guid(task_guid: String, headers: &HeaderMap) -> Result<pb::TaskGuid> {
    require("task_guid", &task_guid)?;
    Ok(pb::TaskGuid {
        task_guid,
        consistency: consistency(headers),
    })
}

#[utoipa::path(
    get, path = "/tasks/{task_guid}", tag = "Receptor: tasks", params(("task_guid" = String, Path), ("X-Capstan-Consistency" = Option<String>, Header, description = "`stale`: read this node's view without a leader round trip")),
    responses((status = 200, body = TaskResponse), Errors)
)]
pub(super) async fn get_task(
    State(gw): State<Gateway>,
    FamilyPath(guid): FamilyPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let task = gw
        .client
        .clone()
        .get_task(task_guid(guid, &headers)?)
        .await?
        .into_inner();
    Ok(Json(TaskResponse::from(task)).into_response())
}

/// Delete resolves a COMPLETED task: 200 with no body.
#[utoipa::path(
    delete, path = "/tasks/{task_guid}", tag = "Receptor: tasks", params(("task_guid" = String, Path)),
    responses((status = 200, description = "A COMPLETED task resolved"), Errors)
)]
pub(super) async fn delete_task(
    State(gw): State<Gateway>,
    FamilyPath(guid): FamilyPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    gw.client.clone().delete_task(task_guid(guid, &headers)?).await?;
    Ok(StatusCode::OK.into_response())
}

#[utoipa::path(
    post, path = "/tasks/{task_guid}/cancel", tag = "Receptor: tasks", params(("task_guid" = String, Path)),
    responses((status = 200, description = "Cancelled"), Errors)
)]
pub(super) async fn cancel_task(
    State(gw): State<Gateway>,
    FamilyPath(guid): FamilyPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    gw.client.clone().cancel_task(task_guid(guid, &headers)?).await?;
    Ok(StatusCode::OK.into_response())
}
