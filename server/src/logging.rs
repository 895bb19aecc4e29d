//! The process's log output: `tracing` to stderr, as text (the default) or as one JSON object per
//! line (`--log-format json`, `[log] format = "json"` in the config file), filtered by `RUST_LOG`.
//! Each REST request has a span (family, route, method, request id, status, latency; its access
//! line has the target `capstan::access`), and each gRPC call one with the request id the gateway
//! passed on, so a request can be followed from the gateway to the node.

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The filter when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,openraft=warn,sled=warn";

/// Installs the process's subscriber (once, first thing after the arguments are read).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// The span of one gRPC call on a node: its method and the request id its caller sent.
pub fn grpc_span<B>(req: &tonic::codegen::http::Request<B>) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("grpc", method = req.uri().path(), request_id)
}
