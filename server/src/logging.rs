//! The process's log output: `tracing` to stderr, as text (the default) or as one JSON object per
//! line (`--log-format json`, `[log] format = "json"` in the config file), filtered by `RUST_LOG`.
//! Each REST request has a span (family, route, method, request id, status, latency; its access
//! line has the target `capstan::access`), and each gRPC call one with the request id the gateway
//! passed on, so a request can be followed from the gateway to the node.

pub use capstan_client::flags::LogFormat;

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

/// Puts [`grpc_span`] around calls that do not come through the gRPC server: the REST gateway
/// inside a node calls its services in-process.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcSpanLayer;

impl<S> tower::Layer<S> for GrpcSpanLayer {
    type Service = GrpcSpanned<S>;

    fn layer(&self, inner: S) -> GrpcSpanned<S> {
        GrpcSpanned(inner)
    }
}

#[derive(Clone, Debug)]
pub struct GrpcSpanned<S>(S);

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for GrpcSpanned<S>
where
    S: tower::Service<tonic::codegen::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        use tracing::Instrument as _;
        let span = grpc_span(&req);
        let call = span.in_scope(|| self.0.call(req));
        call.instrument(span)
    }
}
