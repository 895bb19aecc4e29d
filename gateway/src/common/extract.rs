//! Extractors whose refusals answer in the caller's family's shape. axum's own `Path` and
//! `Query` answer a malformed request (`/v1/desired_lrps/%FF`: not UTF-8 once decoded) with a
//! `text/plain` 400; these wrap them and answer through [`Family`].

use axum::extract::{FromRequestParts, OriginalUri, Path, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::family::Family;

/// `axum::extract::Path`, refusing in the family's shape.
pub struct FamilyPath<T>(pub T);

/// `axum::extract::Query`, refusing in the family's shape.
pub struct FamilyQuery<T>(pub T);

fn refuse(parts: &Parts, message: String) -> Response {
    // Inside a nested router the URI has lost its family prefix; the original one still has it.
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(parts.uri.path(), |u| u.0.path());
    match Family::of_path(path) {
        Some(f) => f.error(StatusCode::BAD_REQUEST, "InvalidRequest", &message, None),
        None => (StatusCode::BAD_REQUEST, message).into_response(),
    }
}

impl<T, S> FromRequestParts<S> for FamilyPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(FamilyPath(v)),
            Err(e) => Err(refuse(parts, format!("invalid path parameter: {}", e.body_text()))),
        }
    }
}

impl<T, S> FromRequestParts<S> for FamilyQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(FamilyQuery(v)),
            Err(e) => Err(refuse(parts, format!("invalid query: {}", e.body_text()))),
        }
    }
}
