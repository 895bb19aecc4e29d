//! Cloud Foundry's error envelope (spec §4.3): `{"errors": [{"detail", "title", "code"}]}` with
//! CF's titles and codes, from a node's `ErrorDetail` or the gateway's own refusals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capstan_proto::errors::CfDetail;

use crate::common::node_error::NodeError;
use crate::common::response::json_error;

#[derive(Debug)]
pub struct CfError {
    pub status: StatusCode,
    pub title: &'static str,
    pub code: u32,
    pub detail: String,
    pub retry_after_ms: u32,
}

impl CfError {
    pub fn new(status: StatusCode, title: &'static str, code: u32, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            code,
            detail: detail.into(),
            retry_after_ms: 0,
        }
    }

    /// 404 CF-ResourceNotFound (`Process not found`, `App not found`, `Instance not found`).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "CF-ResourceNotFound", 10010, detail)
    }

    /// 422 CF-UnprocessableEntity: body or model validation.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "CF-UnprocessableEntity",
            10008,
            detail,
        )
    }

    /// 400 CF-BadQueryParameter.
    pub fn bad_query(message: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "CF-BadQueryParameter",
            10005,
            format!("The query parameter is invalid: {message}"),
        )
    }

    /// 400 CF-MessageParseError: a body that is not what the route reads.
    pub fn parse_error(what: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "CF-MessageParseError",
            1001,
            format!("Request invalid due to parse error: {what}"),
        )
    }

    /// An answer in CF's shape for a status the shared layers or the auth check produced.
    pub fn for_status(status: StatusCode, message: &str) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::new(status, "CF-NotAuthenticated", 10002, "Authentication error"),
            StatusCode::FORBIDDEN => Self::new(
                status,
                "CF-NotAuthorized",
                10003,
                "You are not authorized to perform the requested action",
            ),
            StatusCode::NOT_FOUND => Self::not_found(message),
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => Self {
                status,
                ..Self::parse_error(message)
            },
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => {
                Self::new(status, "CF-ServiceUnavailable", 10015, message)
            }
            _ => Self::new(status, "UnknownError", 10001, "An unknown error occurred."),
        }
    }

    pub fn body(&self) -> String {
        let body = Errors {
            errors: vec![ErrorItem {
                detail: self.detail.clone(),
                title: self.title.to_owned(),
                code: self.code,
            }],
        };
        serde_json::to_string(&body).unwrap_or_default()
    }
}

/// CF's error envelope.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = CfErrors)]
pub struct Errors {
    pub errors: Vec<ErrorItem>,
}

/// One error: `{"detail": "Process not found", "title": "CF-ResourceNotFound", "code": 10010}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = CfError)]
pub struct ErrorItem {
    pub detail: String,
    pub title: String,
    pub code: u32,
}

impl From<&capstan_proto::pb::CfJobError> for ErrorItem {
    fn from(e: &capstan_proto::pb::CfJobError) -> Self {
        ErrorItem {
            detail: e.detail.clone(),
            title: e.title.clone(),
            code: u32::try_from(e.code).unwrap_or_default(),
        }
    }
}

/// The error answers of CF's routes, for the API document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Answers {
    /// CF-MessageParseError, CF-BadQueryParameter.
    #[response(status = 400)]
    BadRequest(Errors),
    /// CF-InvalidAuthToken, CF-NotAuthenticated.
    #[response(status = 401)]
    Unauthorized(Errors),
    /// CF-NotAuthorized.
    #[response(status = 403)]
    Forbidden(Errors),
    /// CF-ResourceNotFound.
    #[response(status = 404)]
    NotFound(Errors),
    /// The body stopped arriving.
    #[response(status = 408)]
    Timeout(Errors),
    /// The body is larger than 1 MiB.
    #[response(status = 413)]
    TooLarge(Errors),
    /// CF-UnprocessableEntity.
    #[response(status = 422)]
    Unprocessable(Errors),
    /// CF-ServiceUnavailable: retry after `Retry-After`.
    #[response(status = 503)]
    Unavailable(Errors),
    /// The node's disk is below its free-space floor: writes are refused.
    #[response(status = 507)]
    InsufficientStorage(Errors),
}

impl From<crate::common::body::BodyError> for CfError {
    fn from(e: crate::common::body::BodyError) -> Self {
        use crate::common::body::BodyError as B;
        match e {
            B::TooLarge => Self {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..Self::parse_error("the request body is larger than the limit")
            },
            B::Timeout => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "CF-ServiceUnavailable",
                10015,
                "the request body stalled",
            ),
            B::Read(m) | B::Json(m) => Self::parse_error(&m),
        }
    }
}

impl From<tonic::Status> for CfError {
    fn from(s: tonic::Status) -> Self {
        let e = NodeError::from(s);
        let answer = capstan_proto::errors::error_row(e.kind).cf;
        let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let detail = match answer.detail {
            CfDetail::Message => e.message,
            CfDetail::Fixed(text) => text.to_owned(),
        };
        let mut err = Self::new(status, answer.title, answer.code, detail);
        err.retry_after_ms = e.retry_after_ms;
        err
    }
}

impl IntoResponse for CfError {
    fn into_response(self) -> Response {
        json_error(self.status, self.body(), self.retry_after_ms)
    }
}
