//! The API families the gateway serves, by path prefix, and the error shape each answers in. The
//! shared layers (timeouts, overload) answer through here, so a refusal that no handler wrote
//! still comes back in the caller's family's shape. A new family adds a variant.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Diego Receptor, under `/v1`: `{"name", "message"}`.
    Receptor,
}

impl Family {
    /// The family a request path belongs to, if any.
    pub fn of_path(path: &str) -> Option<Family> {
        (path == "/v1" || path.starts_with("/v1/")).then_some(Family::Receptor)
    }

    /// An error answer in this family's shape. `name` is the family's error name for it.
    pub fn error(self, status: StatusCode, name: &str, message: &str, retry_after_s: Option<u32>) -> Response {
        let body = match self {
            Family::Receptor => serde_json::json!({ "name": name, "message": message }),
        };
        let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        if let Some(v) = retry_after_s.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
