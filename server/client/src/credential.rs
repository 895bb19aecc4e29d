//! The credential of internal calls: cells, peers, forwarded calls and the admin CLI present the
//! cluster secret in the `x-capstan-cluster-secret` metadata of every call they make, and reach
//! the nodes over TLS (with a client certificate: mutual TLS) when the cluster runs it. A client
//! built on [`Authed`] from [`ClusterCredential::endpoint`] does both on every request, so no call
//! site can forget either.

use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Metadata key of the cluster secret.
pub const CLUSTER_SECRET_HEADER: &str = "x-capstan-cluster-secret";
/// Metadata keys of a cell's own credential: its id and the secret derived for it.
pub const CELL_ID_HEADER: &str = "x-capstan-cell-id";
pub const CELL_SECRET_HEADER: &str = "x-capstan-cell-secret";

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(expected: &[u8], presented: &[u8]) -> bool {
    expected.len() == presented.len() && expected.iter().zip(presented).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The secret of one cell, derived from the cluster secret (HMAC-SHA256 of the cell id, hex): a
/// cell given only this can act as itself and as no other cell, and never as a node.
pub fn cell_secret(cluster_secret: &str, cell_id: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, cluster_secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("capstan-cell:{cell_id}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A channel whose every request carries the cluster credential (when one is configured).
pub type Authed = InterceptedService<Channel, ClusterCredential>;

/// The cluster secret an internal client presents; `none()` when the cluster runs without auth.
#[derive(Clone, Default)]
pub struct ClusterCredential {
    secret: Option<Arc<MetadataValue<Ascii>>>,
    /// A cell's own identity and derived secret, instead of the cluster secret.
    cell: Option<Arc<(MetadataValue<Ascii>, MetadataValue<Ascii>)>>,
    /// TLS to the nodes: the CA that signs them, and this process's own certificate when it has
    /// one (mutual TLS).
    tls: Option<ClientTlsConfig>,
}

impl std::fmt::Debug for ClusterCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCredential")
            .field("secret", &self.secret.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the cluster secret must be visible ASCII (it travels as gRPC metadata)")]
pub struct BadSecret;

impl ClusterCredential {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn new(secret: Option<&str>) -> Result<Self, BadSecret> {
        let secret = match secret {
            None | Some("") => None,
            Some(s) => Some(Arc::new(MetadataValue::try_from(s).map_err(|_| BadSecret)?)),
        };
        Ok(Self {
            secret,
            cell: None,
            tls: None,
        })
    }

    /// A cell's credential: its id and the secret derived for it ([`cell_secret`]).
    pub fn for_cell(cell_id: &str, cell_secret: &str) -> Result<Self, BadSecret> {
        let id = MetadataValue::try_from(cell_id).map_err(|_| BadSecret)?;
        let secret = MetadataValue::try_from(cell_secret).map_err(|_| BadSecret)?;
        Ok(Self {
            secret: None,
            cell: Some(Arc::new((id, secret))),
            tls: None,
        })
    }

    /// The same credential, reaching the nodes over TLS.
    pub fn with_tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The endpoint of a node (or cell) at `host:port`: `https` when this credential has TLS.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        match &self.tls {
            None => Endpoint::from_shared(format!("http://{addr}")),
            Some(tls) => Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.clone()),
        }
    }

    /// Whether a presented value is this secret (constant time). No secret configured: nothing
    /// matches.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.secret
            .as_ref()
            .is_some_and(|s| same_secret(s.as_bytes(), presented))
    }

    pub fn is_set(&self) -> bool {
        self.secret.is_some()
    }

    /// A server-side check for services only cells and peers may call (the cell's own
    /// `CellApi`): refuses a call without this secret; lets everything through when none is set.
    pub fn require(&self) -> impl tonic::service::Interceptor + Clone {
        let me = self.clone();
        move |req: tonic::Request<()>| {
            if !me.is_set() {
                return Ok(req);
            }
            match req.metadata().get(CLUSTER_SECRET_HEADER) {
                Some(v) if me.matches(v.as_bytes()) => Ok(req),
                _ => Err(tonic::Status::unauthenticated(
                    "this service is for cluster nodes: present the cluster secret",
                )),
            }
        }
    }

    /// `channel`, with this credential on every request.
    pub fn wrap(&self, channel: Channel) -> Authed {
        InterceptedService::new(channel, self.clone())
    }
}

impl tonic::service::Interceptor for ClusterCredential {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(s) = &self.secret {
            req.metadata_mut()
                .insert(CLUSTER_SECRET_HEADER, MetadataValue::clone(s));
        }
        if let Some(cell) = &self.cell {
            req.metadata_mut().insert(CELL_ID_HEADER, cell.0.clone());
            req.metadata_mut().insert(CELL_SECRET_HEADER, cell.1.clone());
        }
        Ok(req)
    }
}
