//! The probes: `GET /healthz` (the process answers) and `GET /readyz` (the node behind it can
//! serve: it has a leader it heard from lately and has applied its log, `Admin.Readiness`), each
//! with a short JSON body saying why not. A gateway that no node answers is not ready.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use capstan_proto::pb;
use serde_json::json;

use crate::Gateway;

pub fn routes() -> Router<Gateway> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

#[utoipa::path(
    get, path = "/healthz", tag = "Operations", description = "The process answers.",
    responses((status = 200, body = Object, example = json!({"status": "ok"})))
)]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get, path = "/readyz", tag = "Operations",
    description = "The node behind this listener can serve: it heard from its leader (a leader: from a quorum) within twice the election timeout, and has applied its log to within 1,000 entries.",
    responses((status = 200, description = "Ready", body = Object), (status = 503, description = "Not ready; `reasons` says why", body = Object))
)]
pub(crate) async fn readyz(State(gw): State<Gateway>) -> Response {
    match gw.admin.clone().readiness(pb::ReadinessRequest {}).await {
        Ok(r) => {
            let r = r.into_inner();
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = json!({
                "ready": r.ready,
                "reasons": r.reasons,
                "node_id": r.node_id,
                "leader_id": if r.leader_id == 0 { serde_json::Value::Null } else { json!(r.leader_id) },
                "last_applied": r.last_applied,
                "last_log_index": r.last_log_index,
            });
            (status, Json(body)).into_response()
        }
        Err(s) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reasons": [format!("no node answers: {}", s.message())] })),
        )
            .into_response(),
    }
}
