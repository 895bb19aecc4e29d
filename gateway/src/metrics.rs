//! Prometheus metrics: the process's one recorder (every crate records into it through the
//! `metrics` macros), `GET /metrics` rendering it in the text exposition format, and the REST
//! side's own figures — each request by family, route template, method and status, with its
//! latency. Names follow `capstan_<subsystem>_<name>_<unit>`.
//!
//! Gauges that are a count over the state (cells, instances, runs by state) are computed when
//! scraped, by the collectors a node registers ([`add_collector`]), not kept up to date on every
//! write.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::common::family::Family;
use crate::Gateway;

/// REST requests answered, by family, route template, method and status.
pub const HTTP_REQUESTS: &str = "capstan_http_requests_total";
/// REST request latency, by family, route template and method.
pub const HTTP_REQUEST_DURATION: &str = "capstan_http_request_duration_seconds";

/// Upper bounds of the latency buckets (every `*_seconds` histogram): 0.5 ms to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the size buckets (every `*_entries` histogram): 1 to 4,096.
const ENTRIES_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];
/// How often histogram samples are folded into their buckets between scrapes (bounds memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

type Collector = Arc<dyn Fn() + Send + Sync>;

struct Registry {
    handle: PrometheusHandle,
    collectors: Mutex<Vec<(u64, Collector)>>,
}

static REGISTRY: OnceLock<Option<Registry>> = OnceLock::new();

/// Installs the process's recorder once (later calls return the same); `None` when another
/// recorder was installed first (metrics then go there and `/metrics` says so).
fn registry() -> Option<&'static Registry> {
    REGISTRY
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_entries".into()), ENTRIES_BUCKETS));
            let handle = match builder.and_then(|b| b.install_recorder()) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics will be empty");
                    return None;
                }
            };
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            describe();
            Some(Registry {
                handle,
                collectors: Mutex::new(Vec::new()),
            })
        })
        .as_ref()
}

/// Installs the recorder; call it first thing in a process that serves `/metrics`, so that
/// nothing recorded before the first scrape is lost.
pub fn install() {
    let _ = registry();
}

fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "REST requests answered, by family, route, method and status"
    );
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "REST request latency, by family, route and method"
    );
    metrics::describe_counter!(
        crate::common::serve::CONNECTIONS_REFUSED,
        "Connections closed at once because their listener (http, grpc) was at its cap"
    );
}

/// A collector runs just before each render (it sets gauges computed from the state); it stays
/// registered as long as the returned guard lives.
pub fn add_collector(f: impl Fn() + Send + Sync + 'static) -> CollectorGuard {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(r) = registry() {
        if let Ok(mut c) = r.collectors.lock() {
            c.push((id, Arc::new(f)));
        }
    }
    CollectorGuard(id)
}

/// Unregisters its collector when dropped.
pub struct CollectorGuard(u64);

impl Drop for CollectorGuard {
    fn drop(&mut self) {
        if let Some(r) = registry() {
            if let Ok(mut c) = r.collectors.lock() {
                c.retain(|(id, _)| *id != self.0);
            }
        }
    }
}

/// The exposition text: collectors run first.
pub fn render() -> String {
    let Some(r) = registry() else {
        return "# no metrics recorder: another recorder was installed in this process\n".to_owned();
    };
    let collectors: Vec<Collector> = match r.collectors.lock() {
        Ok(c) => c.iter().map(|(_, f)| f.clone()).collect(),
        Err(_) => Vec::new(),
    };
    for c in collectors {
        c();
    }
    r.handle.render()
}

pub fn routes() -> Router<Gateway> {
    Router::new().route("/metrics", get(scrape))
}

#[utoipa::path(
    get, path = "/metrics", tag = "Operations", description = "Prometheus metrics, text exposition format.",
    responses((status = 200, content_type = "text/plain", body = String))
)]
pub(crate) async fn scrape() -> Response {
    // Collectors walk the state: off the async threads.
    let text = tokio::task::spawn_blocking(render).await.unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The family label of a path: one of the API families, `uaa` for tokens, `ops` for the probes,
/// metrics and API document, `other` for the rest.
pub fn family_label(path: &str) -> &'static str {
    match Family::of_path(path) {
        Some(Family::Receptor) => "receptor",
        Some(Family::Flotilla) => "flotilla",
        Some(Family::Cf) => "cf",
        None => match path {
            "/healthz" | "/readyz" | "/metrics" | "/openapi.json" => "ops",
            p if p == "/docs" || p.starts_with("/docs/") => "ops",
            "/" | "/login" | "/token_keys" | "/token_key" => "uaa",
            p if p.starts_with("/oauth/") => "uaa",
            _ => "other",
        },
    }
}

/// The method label: the standard methods by name, anything else as `other` (bounded labels).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *m {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware (as a layer of the whole router, so it sees the matched route): counts and times
/// every request. A path no route matches is labelled `unmatched`, so callers cannot grow the
/// label set.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let family = family_label(req.uri().path());
    let method = method_label(req.method());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "family" => family, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, "family" => family, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_labelled_by_path() {
        assert_eq!(family_label("/v1/desired_lrps"), "receptor");
        assert_eq!(family_label("/api/v6/task"), "flotilla");
        assert_eq!(family_label("/v3/processes"), "cf");
        assert_eq!(family_label("/oauth/token"), "uaa");
        assert_eq!(family_label("/readyz"), "ops");
        assert_eq!(family_label("/nope"), "other");
    }

    #[test]
    fn collectors_run_at_render_and_stop_when_dropped() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        install();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let guard = add_collector(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            metrics::gauge!("capstan_test_collected").set(7.0);
        });
        assert!(render().contains("capstan_test_collected 7"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        drop(guard);
        render();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a dropped collector does not run");
    }
}
