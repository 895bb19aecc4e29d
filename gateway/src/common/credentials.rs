//! The caller's credentials, carried from the REST request to the one gRPC call it makes. The
//! gateway checks nothing itself: the node's guard does, for every family alike. A middleware puts
//! the request's `Authorization` header (or, under `/v1`, Receptor's `receptor_authorization`
//! cookie, which browsers' EventSource needs) in a task-local; the gRPC clients' interceptor
//! copies it into the call's metadata, with the request's `X-Request-Id`.

use std::cell::Cell;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use capstan_proto::pb;
use tonic::metadata::MetadataValue;

use super::family::Family;
use super::node_error::NodeError;
use crate::Gateway;

tokio::task_local! {
    static AUTHORIZATION: Option<HeaderValue>;
    /// The request's `X-Request-Id`, passed on to the node so its logs name the same request.
    static REQUEST_ID: Option<HeaderValue>;
    /// Whether serving this request has called a node (which checked the credential).
    static CONSULTED: Cell<bool>;
}

/// Receptor's cookie that stands in for the Authorization header.
const RECEPTOR_COOKIE: &str = "receptor_authorization";

/// Runs the rest of the request with its credential at hand for the gRPC call.
pub async fn carry(req: Request, next: Next) -> Response {
    let mut credential = req.headers().get(header::AUTHORIZATION).cloned();
    if req.uri().path().starts_with("/v1/") {
        if let Some(c) = receptor_cookie(&req) {
            credential = Some(c);
        }
    }
    let request_id = req.headers().get(super::headers::REQUEST_ID).cloned();
    REQUEST_ID
        .scope(request_id, AUTHORIZATION.scope(credential, next.run(req)))
        .await
}

fn receptor_cookie(req: &Request) -> Option<HeaderValue> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == RECEPTOR_COOKIE)
        .and_then(|(_, v)| HeaderValue::from_str(v).ok())
}

/// Copies the REST caller's credential into every gRPC call made while serving its request.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassCredentials;

impl tonic::service::Interceptor for PassCredentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let _ = CONSULTED.try_with(|c| c.set(true));
        let credential = AUTHORIZATION.try_with(Clone::clone).ok().flatten();
        if let Some(v) = credential.and_then(|v| MetadataValue::try_from(v.as_bytes()).ok()) {
            req.metadata_mut().insert("authorization", v);
        }
        let request_id = REQUEST_ID.try_with(Clone::clone).ok().flatten();
        if let Some(v) = request_id.and_then(|v| MetadataValue::try_from(v.as_bytes()).ok()) {
            req.metadata_mut().insert(super::headers::REQUEST_ID, v);
        }
        Ok(req)
    }
}

/// For routes of a family (`route_layer`: unknown paths stay plain 404s, as Receptor's were): a
/// request the gateway refused by itself (bad input, before any node call) is first checked with
/// the node — `Auth.Authorize` for the family's read or write call — so that a caller without the
/// right gets 401/403 rather than learning how its input was wrong.
pub async fn vouch(State(gw): State<Gateway>, req: Request, next: Next) -> Response {
    // Inside a nested router the path has lost its prefix; the family is read off the original.
    let family = match req.extensions().get::<axum::extract::OriginalUri>() {
        Some(original) => Family::of_path(original.path()),
        None => Family::of_path(req.uri().path()),
    };
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let resp = CONSULTED.scope(Cell::new(false), async move {
        let resp = next.run(req).await;
        (resp, CONSULTED.with(Cell::get))
    });
    let (resp, consulted) = resp.await;
    let refused_here = resp.status().is_client_error() && resp.status() != StatusCode::METHOD_NOT_ALLOWED;
    let Some(family) = family.filter(|_| refused_here && !consulted) else {
        return resp;
    };
    let rpc = family.representative_rpc(writes);
    match gw
        .auth
        .clone()
        .authorize(pb::AuthorizeRequest { rpc: rpc.into() })
        .await
    {
        Ok(_) => resp,
        Err(s) => {
            let e = NodeError::from(s);
            match e.kind {
                pb::ErrorKind::Unauthenticated | pb::ErrorKind::InvalidToken => {
                    family.error(StatusCode::UNAUTHORIZED, "Unauthorized", &e.message, None)
                }
                pb::ErrorKind::Forbidden => family.error(StatusCode::FORBIDDEN, "Forbidden", &e.message, None),
                // The node could not say (unavailable): the gateway's own answer stands.
                _ => resp,
            }
        }
    }
}
