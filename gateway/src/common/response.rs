//! The JSON error answer every family's error shape is written into: status, body, and a
//! `Retry-After` when the node gave a retry hint.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// A JSON error answer, with `Retry-After` (whole seconds, at least 1) when a retry hint is given.
pub fn json_error(status: StatusCode, body: impl Into<axum::body::Body>, retry_after_ms: u32) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body.into()).into_response();
    if retry_after_ms > 0 {
        let secs = retry_after_ms.div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}
