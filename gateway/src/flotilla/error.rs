//! Flotilla's error shape: `{"error": msg}` with 400 bad input, 404 missing, 409 conflict
//! (spec/flotilla.md §1.1), plus 503/507 with `Retry-After` when the cluster cannot take a write.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::common::body::BodyError;
use crate::common::node_error::NodeError;
use crate::common::response::json_error;

#[derive(Debug)]
pub struct FlotillaError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_ms: u32,
}

impl FlotillaError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            retry_after_ms: 0,
        }
    }
}

impl From<BodyError> for FlotillaError {
    fn from(e: BodyError) -> Self {
        let (status, message) = match e {
            BodyError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {} bytes", crate::REQUEST_BODY_BYTES_MAX),
            ),
            BodyError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "the request body stopped arriving before it was complete".to_owned(),
            ),
            BodyError::Read(m) | BodyError::Json(m) => (StatusCode::BAD_REQUEST, m),
        };
        Self {
            status,
            message,
            retry_after_ms: 0,
        }
    }
}

impl From<tonic::Status> for FlotillaError {
    fn from(s: tonic::Status) -> Self {
        let e = NodeError::from(s);
        let status = StatusCode::from_u16(capstan_proto::errors::error_row(e.kind).flotilla)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            message: e.message,
            retry_after_ms: e.retry_after_ms,
        }
    }
}

/// Flotilla's error body: `{"error": "..."}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = FlotillaError)]
pub struct ErrorBody {
    pub error: String,
}

impl IntoResponse for FlotillaError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody { error: self.message }).unwrap_or_default();
        json_error(self.status, body, self.retry_after_ms)
    }
}

/// The error answers of Flotilla's routes, for the API document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Errors {
    /// Bad input: a malformed body, an unknown filter, a bad number.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No credentials, or bad ones (auth on).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The credentials do not allow this call.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such definition, alias or run.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The body stopped arriving.
    #[response(status = 408)]
    Timeout(ErrorBody),
    /// The alias is taken; a reserved variable; not stoppable.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is larger than 1 MiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// No leader, or overloaded: retry after `Retry-After`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// The node's disk is below its free-space floor: writes are refused.
    #[response(status = 507)]
    InsufficientStorage(ErrorBody),
}
