//! The caller's credentials, carried from the REST request to the one gRPC call it makes. The
//! gateway checks nothing itself: the node's guard does, for every family alike. A middleware puts
//! the request's `Authorization` header (or, under `/v1`, Receptor's `receptor_authorization`
//! cookie, which browsers' EventSource needs) in a task-local; the gRPC clients' interceptor
//! copies it into the call's metadata.

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tonic::metadata::MetadataValue;

tokio::task_local! {
    static AUTHORIZATION: Option<HeaderValue>;
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
    AUTHORIZATION.scope(credential, next.run(req)).await
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
        let credential = AUTHORIZATION.try_with(Clone::clone).ok().flatten();
        if let Some(v) = credential.and_then(|v| MetadataValue::try_from(v.as_bytes()).ok()) {
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}
