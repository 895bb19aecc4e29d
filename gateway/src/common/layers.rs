//! The tower layers every family's routes run under: a tracing span per request, a request
//! timeout, and a cap on requests in flight that sheds load (503 + `Retry-After`) instead of
//! queueing without bound. Refusals answer in the family's shape ([`Family`]).

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::{BoxError, ServiceBuilder};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use super::family::Family;

/// Longest a request may take end to end (the node's own forwarding deadline is 8 s and the
/// gateway's gRPC deadline 15 s; this is the outer bound).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests served at once by one gateway; more are refused with 503 rather than queued.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 1024;

/// Wraps the whole REST surface in the shared layers.
pub fn apply(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            // A 503 during an election is ordinary: failures are logged at debug, not as errors.
            .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)))
            .layer(HandleErrorLayer::new(refusal))
            .load_shed()
            .concurrency_limit(REQUESTS_IN_FLIGHT_MAX)
            .timeout(REQUEST_TIMEOUT),
    )
}

async fn refusal(uri: Uri, err: BoxError) -> Response {
    let (status, message, retry) = if err.is::<tower::timeout::error::Elapsed>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {} s", REQUEST_TIMEOUT.as_secs()),
            Some(1),
        )
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("more than {REQUESTS_IN_FLIGHT_MAX} requests in flight; retry shortly"),
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
