//! The Receptor error table: `{name, message}` bodies with the statuses of spec/receptor.md §1.1.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::common::body::BodyError;
use crate::common::node_error::NodeError;
use crate::common::response::json_error;

/// Receptor's error body: `{"name": "DesiredLRPNotFound", "message": "..."}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReceptorError {
    #[serde(skip)]
    pub status: StatusCode,
    #[serde(skip)]
    pub retry_after_ms: u32,
    pub name: &'static str,
    pub message: String,
}

impl ReceptorError {
    pub fn new(status: StatusCode, name: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            retry_after_ms: 0,
            name,
            message: message.into(),
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }
}

impl From<BodyError> for ReceptorError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge => ReceptorError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "InvalidRequest",
                format!("request body is larger than {} bytes", crate::REQUEST_BODY_BYTES_MAX),
            ),
            BodyError::Timeout => ReceptorError::new(
                StatusCode::REQUEST_TIMEOUT,
                "InvalidRequest",
                "the request body stopped arriving before it was complete",
            ),
            BodyError::Read(m) => ReceptorError::invalid_request(m),
            BodyError::Json(m) => ReceptorError::new(StatusCode::BAD_REQUEST, "InvalidJSON", m),
        }
    }
}

impl From<tonic::Status> for ReceptorError {
    fn from(s: tonic::Status) -> Self {
        let e = NodeError::from(s);
        let (status, name) = capstan_proto::errors::error_row(e.kind).receptor;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ReceptorError {
            status,
            retry_after_ms: e.retry_after_ms,
            name,
            message: e.message,
        }
    }
}

impl IntoResponse for ReceptorError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        crate::common::family::Family::Receptor.challenge(json_error(self.status, body, self.retry_after_ms))
    }
}

/// The error answers of Receptor's routes, for the API document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Errors {
    /// Invalid request, LRP, task or domain; malformed JSON.
    #[response(status = 400)]
    BadRequest(ReceptorError),
    /// No credentials, or bad ones (auth on).
    #[response(status = 401)]
    Unauthorized(ReceptorError),
    /// The credentials do not allow this call.
    #[response(status = 403)]
    Forbidden(ReceptorError),
    /// No such DesiredLRP, ActualLRP index, task or route.
    #[response(status = 404)]
    NotFound(ReceptorError),
    /// The body stopped arriving.
    #[response(status = 408)]
    Timeout(ReceptorError),
    /// Already exists, or not deletable yet.
    #[response(status = 409)]
    Conflict(ReceptorError),
    /// The body is larger than 1 MiB.
    #[response(status = 413)]
    TooLarge(ReceptorError),
    /// No leader, or overloaded: retry after `Retry-After`.
    #[response(status = 503)]
    Unavailable(ReceptorError),
    /// The node's disk is below its free-space floor: writes are refused.
    #[response(status = 507)]
    InsufficientStorage(ReceptorError),
}
