//! The API families the gateway serves, by path prefix, and the error shape each answers in. The
//! shared layers (timeouts, overload) answer through here, so a refusal that no handler wrote
//! still comes back in the caller's family's shape. A new family adds a variant.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use super::response::json_error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Diego Receptor, under `/v1`: `{"name", "message"}`.
    Receptor,
    /// Flotilla, under `/api/v1` and `/api/v6`: `{"error"}`.
    Flotilla,
    /// Cloud Foundry V3, under `/v3`: `{"errors": [{"detail", "title", "code"}]}`.
    Cf,
}

impl Family {
    /// The family a request path belongs to, if any.
    pub fn of_path(path: &str) -> Option<Family> {
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        if under("/v1") {
            Some(Family::Receptor)
        } else if under("/api/v1") || under("/api/v6") {
            Some(Family::Flotilla)
        } else if under("/v3") {
            Some(Family::Cf)
        } else {
            None
        }
    }

    /// An error answer in this family's shape. `name` is the family's error name for it.
    pub fn error(self, status: StatusCode, name: &str, message: &str, retry_after_s: Option<u32>) -> Response {
        let body = match self {
            Family::Receptor => serde_json::json!({ "name": name, "message": message }),
            Family::Flotilla => serde_json::json!({ "error": message }),
            Family::Cf => {
                let mut e = crate::cf::error::CfError::for_status(status, message);
                e.retry_after_ms = retry_after_s.unwrap_or(0).saturating_mul(1000);
                return axum::response::IntoResponse::into_response(e);
            }
        };
        self.challenge(json_error(
            status,
            body.to_string(),
            retry_after_s.unwrap_or(0).saturating_mul(1000),
        ))
    }

    /// A 401 of Receptor's carries the basic-auth challenge Receptor sent (bearer tokens are
    /// accepted too).
    pub fn challenge(self, mut resp: Response) -> Response {
        if self == Family::Receptor && resp.status() == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"API Authentication\""),
            );
        }
        resp
    }

    /// A node call that stands for the family's reads or writes, to ask whether a caller may.
    pub fn representative_rpc(self, writes: bool) -> &'static str {
        match (self, writes) {
            (Family::Receptor, false) => "/capstan.v1.ControlPlane/ListDesiredLrps",
            (Family::Receptor, true) => "/capstan.v1.ControlPlane/DesireLrp",
            (Family::Flotilla, false) => "/capstan.v1.TaskService/ListTaskDefinitions",
            (Family::Flotilla, true) => "/capstan.v1.TaskService/CreateTaskDefinition",
            (Family::Cf, false) => "/capstan.v1.CfService/List",
            (Family::Cf, true) => "/capstan.v1.CfService/ScaleProcess",
        }
    }
}
