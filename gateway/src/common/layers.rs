//! The tower layers every family's routes run under: a tracing span per request, a request
//! timeout, an `X-Request-Id` (the caller's, or a new one) on the request, its span and its answer, a cap
//! on requests in flight that sheds load (503 + `Retry-After`) instead of queueing
//! without bound, an inactivity timeout on request bodies, and an early 413 for a body declared
//! (by `Content-Length`) larger than any route accepts — before a byte of it is read. Refusals
//! answer in the family's shape ([`Family`]).

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::MatchedPath;
use axum::extract::Request;
use axum::http::{header, HeaderName, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::{BoxError, ServiceBuilder};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use super::family::Family;
use crate::REQUEST_BODY_BYTES_MAX;

pub use super::headers::REQUEST_ID;

/// Longest a request may take end to end (the node's own forwarding deadline is 8 s and the
/// gateway's gRPC deadline 15 s; this is the outer bound).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests served at once by one gateway; more are refused with 503 rather than queued.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 1024;
/// Longest a request body may stall (no bytes arriving) before the request is refused with 408.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The per-request limits of the REST surface.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    pub request_timeout: Duration,
    pub in_flight_max: usize,
    pub body_idle_timeout: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            request_timeout: REQUEST_TIMEOUT,
            in_flight_max: REQUESTS_IN_FLIGHT_MAX,
            body_idle_timeout: BODY_IDLE_TIMEOUT,
        }
    }
}

/// Wraps the whole REST surface in the shared layers.
pub fn apply(router: Router, limits: RequestLimits) -> Router {
    let timeout = limits.request_timeout;
    router
        .layer(axum::middleware::from_fn(super::credentials::carry))
        .layer(axum::middleware::from_fn(family_shaped_method_errors))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .layer(RequestBodyTimeoutLayer::new(limits.body_idle_timeout))
        .layer(
            ServiceBuilder::new()
                // One span per request; a 503 during an election is ordinary: failures are
                // logged at debug, not as errors.
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_request(())
                        .on_response(answered)
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
                )
                .layer(HandleErrorLayer::new(move |uri: Uri, err: BoxError| {
                    refusal(uri, err, timeout)
                }))
                .load_shed()
                .concurrency_limit(limits.in_flight_max.max(1))
                .timeout(timeout),
        )
        // Outermost, so refusals of the layers above are counted too; a layer of the whole
        // router still runs per route, after routing, so it sees the route template.
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(PropagateRequestIdLayer::new(HeaderName::from_static(REQUEST_ID)))
        .layer(SetRequestIdLayer::new(
            HeaderName::from_static(REQUEST_ID),
            MakeRequestUuid,
        ))
}

/// The span of one request: family, route template, method and request id; status and latency
/// are recorded when it is answered.
fn request_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        family = crate::metrics::family_label(req.uri().path()),
        route,
        method = %req.method(),
        request_id,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

/// The access log line, one per request (target `capstan::access`: filter it like any other).
fn answered(resp: &Response, latency: Duration, span: &tracing::Span) {
    span.record("status", resp.status().as_u16());
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    tracing::info!(target: "capstan::access", "answered");
}

/// 413 at once for a `Content-Length` over the limit: the answer does not wait for the body.
/// The body is still read and dropped for a while in the background (a lingering close), so that
/// a client busy uploading it gets to read the 413 instead of a reset connection.
async fn refuse_declared_oversize(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > REQUEST_BODY_BYTES_MAX as u64 => {
            let family = Family::of_path(req.uri().path());
            tokio::spawn(drain(req.into_body()));
            let message = format!("request body is larger than {REQUEST_BODY_BYTES_MAX} bytes");
            let mut resp = match family {
                Some(f) => f.error(StatusCode::PAYLOAD_TOO_LARGE, "InvalidRequest", &message, None),
                None => (StatusCode::PAYLOAD_TOO_LARGE, message).into_response(),
            };
            resp.headers_mut()
                .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            resp
        }
        _ => next.run(req).await,
    }
}

/// How long, and how much of, an oversize body is read and dropped after its 413.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES_MAX: usize = 64 * 1024 * 1024;

async fn drain(body: axum::body::Body) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut read = 0usize;
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > LINGER_BYTES_MAX {
                break;
            }
        }
    })
    .await;
}

/// The router's own 405 (a known path, another method) has an empty body: give it the family's
/// shape, keeping its `Allow` header.
async fn family_shaped_method_errors(req: Request, next: Next) -> Response {
    let family = Family::of_path(req.uri().path());
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let resp = next.run(req).await;
    match family {
        Some(f)
            if resp.status() == StatusCode::METHOD_NOT_ALLOWED
                && !resp.headers().contains_key(header::CONTENT_TYPE) =>
        {
            let allow = resp.headers().get(header::ALLOW).cloned();
            let mut shaped = f.error(
                StatusCode::METHOD_NOT_ALLOWED,
                "InvalidRequest",
                &format!("method {method} is not allowed on {path}"),
                None,
            );
            if let Some(a) = allow {
                shaped.headers_mut().insert(header::ALLOW, a);
            }
            shaped
        }
        _ => resp,
    }
}

async fn refusal(uri: Uri, err: BoxError, timeout: Duration) -> Response {
    let (status, message, retry) = if err.is::<tower::timeout::error::Elapsed>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {} ms", timeout.as_millis()),
            Some(1),
        )
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; retry shortly".to_owned(),
            Some(1),
        )
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, err.to_string(), None)
    };
    match Family::of_path(uri.path()) {
        Some(f) => f.error(status, "ServiceUnavailable", &message, retry),
        None => (status, message).into_response(),
    }
}
