//! Capstan's REST gateway: each documented endpoint of an API family maps onto exactly one
//! gRPC call to a Capstan node; JSON shapes and error tables live beside each family's routes.
//!
//! API boundary: this crate depends on `capstan-proto` only. It cannot reach storage or raft.

pub mod cf;
pub mod common;
pub mod flotilla;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod receptor;
pub mod uaa;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use capstan_proto::pb::admin_client::AdminClient;
use capstan_proto::pb::auth_client::AuthClient;
use capstan_proto::pb::cf_service_client::CfServiceClient;
use capstan_proto::pb::control_plane_client::ControlPlaneClient;
use capstan_proto::pb::task_service_client::TaskServiceClient;
use tonic::service::interceptor::InterceptedService;

/// Largest request body any route accepts (a DesiredLRP with a 10 KiB annotation, 4 KiB of
/// routes and a deep action tree fits many times over).
pub const REQUEST_BODY_BYTES_MAX: usize = 1024 * 1024;

/// The gRPC transport under the gateway's clients: a channel to the nodes, or — when the gateway
/// runs inside a node — that node's own services called in-process (the same guard and codecs,
/// no socket and no HTTP/2 framing).
pub type GrpcTransport = tower::util::BoxCloneSyncService<
    tonic::codegen::http::Request<tonic::body::Body>,
    tonic::codegen::http::Response<tonic::body::Body>,
    TransportError,
>;

/// Why a call did not reach the node's services (a concrete type: the clients' futures need a
/// `'static` error they can convert).
#[derive(Debug)]
pub struct TransportError(tonic::codegen::StdError);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// The transport on which every call carries the REST caller's credentials.
pub type NodeChannel = InterceptedService<GrpcTransport, common::credentials::PassCredentials>;

/// What every handler holds: a client of the node the gateway talks to. axum clones it for every
/// request, so it is one `Arc` (a client's clone boxes a copy of the transport's whole service
/// stack); a handler clones only the client it calls.
#[derive(Clone)]
pub struct Gateway(std::sync::Arc<Clients>);

impl std::ops::Deref for Gateway {
    type Target = Clients;
    fn deref(&self) -> &Clients {
        &self.0
    }
}

/// The clients of the node's services, all on one channel.
pub struct Clients {
    pub client: ControlPlaneClient<NodeChannel>,
    /// Flotilla's task family, on the same channel.
    pub tasks: TaskServiceClient<NodeChannel>,
    /// Tokens (`/oauth/token`, `/token_keys`), on the same channel.
    pub auth: AuthClient<NodeChannel>,
    /// Cloud Foundry's V3 family, on the same channel.
    pub cf: CfServiceClient<NodeChannel>,
    /// The node's readiness (`/readyz`), on the same channel.
    pub admin: AdminClient<NodeChannel>,
}

impl Gateway {
    /// A gateway whose gRPC channel to the nodes at `addrs` (`host:port`) connects lazily and
    /// balances requests over them; any node serves any request.
    /// With `tls`, the nodes are reached over TLS (`https`).
    pub fn connect_lazy(
        addrs: &[String],
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Self, tonic::transport::Error> {
        let mut endpoints = Vec::with_capacity(addrs.len());
        for a in addrs {
            let endpoint = match &tls {
                None => tonic::transport::Endpoint::from_shared(format!("http://{a}"))?,
                Some(t) => tonic::transport::Endpoint::from_shared(format!("https://{a}"))?.tls_config(t.clone())?,
            };
            endpoints.push(
                endpoint
                    .connect_timeout(std::time::Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .timeout(std::time::Duration::from_secs(15)),
            );
        }
        let channel = match endpoints.len() {
            1 => endpoints.remove(0).connect_lazy(),
            _ => tonic::transport::Channel::balance_list(endpoints.into_iter()),
        };
        Ok(Self::over(channel))
    }

    /// A gateway whose calls go through `transport`: a channel to the nodes, or — inside a
    /// node — that node's own services behind its guard, called in-process.
    pub fn over<S>(transport: S) -> Self
    where
        S: tower::Service<
                tonic::codegen::http::Request<tonic::body::Body>,
                Response = tonic::codegen::http::Response<tonic::body::Body>,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<tonic::codegen::StdError>,
        S::Future: Send + 'static,
    {
        use tower::ServiceExt as _;
        let transport = GrpcTransport::new(transport.map_err(|e| TransportError(e.into())));
        let channel = InterceptedService::new(transport, common::credentials::PassCredentials);
        Self(std::sync::Arc::new(Clients {
            client: ControlPlaneClient::new(channel.clone()),
            tasks: TaskServiceClient::new(channel.clone()),
            cf: CfServiceClient::new(channel.clone()),
            admin: AdminClient::new(channel.clone()),
            auth: AuthClient::new(channel),
        }))
    }
}

/// The whole REST surface with the default limits, ready to serve; tests call it without a socket.
pub fn router(gateway: Gateway) -> Router {
    router_with(gateway, common::layers::RequestLimits::default())
}

/// The whole REST surface: each family nested under its prefix with its own fallback, the shared
/// layers around them all.
pub fn router_with(gateway: Gateway, limits: common::layers::RequestLimits) -> Router {
    metrics::install();
    let vouch = || axum::middleware::from_fn_with_state(gateway.clone(), common::credentials::vouch);
    let app = Router::new()
        .nest("/v1", receptor::routes().route_layer(vouch()))
        .nest("/api/v1", flotilla::routes().route_layer(vouch()))
        .nest("/api/v6", flotilla::routes().route_layer(vouch()))
        .nest("/v3", cf::routes().route_layer(vouch()))
        .merge(uaa::routes())
        .merge(health::routes())
        .merge(metrics::routes())
        .merge(openapi::routes())
        .fallback(not_found)
        .with_state(gateway);
    common::layers::apply(app, limits)
}

/// Unknown path outside every family: 404 as the Go routers answer it.
pub async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
}
