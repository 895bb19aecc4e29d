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

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(gw): State<Gateway>) -> Response {
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
