//! The one check every gRPC call passes, as a tower layer around all of a node's services: the
//! method's rule ([`super::scopes::access`]) against the caller's credential — the cluster secret
//! (cells, peers, forwarded calls), a bearer token, or (Receptor's family only) HTTP basic auth.
//! A refusal is answered here with the family-neutral `ErrorDetail` the gateway maps to each
//! family's shape; it is logged once, without the credential, and counted by kind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use capstan_proto::pb::ErrorKind;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use capstan_raft::credential::{cell_secret, same_secret, ClusterCredential, CELL_ID_HEADER, CELL_SECRET_HEADER};

use super::scopes::{self, Access, Scope};
use super::tokens::{BearerError, Issuer};
use crate::around::{Answer, Around, AroundLayer};
use crate::errors;

/// Metadata key of the cluster secret on internal calls.
pub use capstan_raft::credential::CLUSTER_SECRET_HEADER;

/// On a call forwarded to the leader under the cluster credential, the caller it was made by:
/// its scopes (space-separated names), its user, the cell it is bound to. Read from internal
/// callers only. (The names date from when only CF calls carried them; kept so that members of
/// mixed builds understand each other.)
pub const ON_BEHALF_SCOPE: &str = "x-capstan-cf-scope";
pub const ON_BEHALF_USER: &str = "x-capstan-cf-user";
pub const ON_BEHALF_CELL: &str = "x-capstan-on-behalf-cell";

/// How long a checked basic-auth pair is remembered (argon2 is slow on purpose; Receptor clients
/// send the pair on every request).
const BASIC_AUTH_CACHE_TTL: Duration = Duration::from_secs(60);
/// Basic-auth pairs remembered at most.
const BASIC_AUTH_CACHE_ENTRIES_MAX: usize = 1_024;

/// Who made a call, put in the request's extensions for the services that answer by role.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub user: Option<String>,
    pub scopes: Vec<Scope>,
    pub internal: bool,
    /// A cell that presented its own credential: it may act as this cell only.
    pub cell: Option<String>,
}

/// The cell a call is bound to, when a cell made it with its own credential (`None`: a node, the
/// cluster secret, or auth off — any cell id goes).
pub fn bound_cell<T>(req: &tonic::Request<T>) -> Option<String> {
    req.extensions().get::<Caller>().and_then(|c| c.cell.clone())
}

/// The kinds of refusal, each counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    BadBasic,
    Expired,
    InvalidToken,
    BadClusterSecret,
    Forbidden,
}

impl Refusal {
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::BadBasic => "bad_basic",
            Refusal::Expired => "expired",
            Refusal::InvalidToken => "invalid_token",
            Refusal::BadClusterSecret => "bad_cluster_secret",
            Refusal::Forbidden => "forbidden",
        }
    }
}

/// The node's authenticator: the token issuer (keys, users), the cluster secret, the basic-auth
/// cache. Refusals are counted in the metrics ([`crate::metrics::AUTH_REFUSALS`], by kind).
pub struct Authenticator {
    issuer: Issuer,
    cluster: ClusterCredential,
    basic_cache: Mutex<HashMap<[u8; 32], (Instant, Caller)>>,
}

impl Authenticator {
    pub fn new(issuer: Issuer) -> Result<Arc<Self>, capstan_raft::credential::BadSecret> {
        let cluster = ClusterCredential::new(issuer.settings().cluster_secret.as_deref())?;
        Ok(Arc::new(Self {
            issuer,
            cluster,
            basic_cache: Mutex::new(HashMap::new()),
        }))
    }

    /// Auth off: every call open (a fresh key signs the tokens the token endpoint still hands out).
    pub fn off() -> Result<Arc<Self>, super::config::ConfigError> {
        let settings = super::config::AuthConfig::default().load(std::path::Path::new("."))?;
        Self::new(Issuer::new(settings)).map_err(|e| super::config::ConfigError {
            key: "cluster_secret".into(),
            message: e.to_string(),
        })
    }

    /// What this node presents on its own internal calls (to peers, the leader, cells).
    pub fn cluster_credential(&self) -> ClusterCredential {
        self.cluster.clone()
    }

    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// A user's CF roles; `None` when auth is off, or the user has none (a user of every space).
    pub fn cf_roles(&self, user: &str) -> Option<&[super::config::CfRole]> {
        if !self.enabled() {
            return None;
        }
        self.issuer
            .settings()
            .users
            .iter()
            .find(|u| u.name == user)
            .map(|u| u.cf_roles.as_slice())
            .filter(|r| !r.is_empty())
    }

    pub fn enabled(&self) -> bool {
        self.issuer.settings().enabled
    }

    /// Decides a call: the caller when it may go on, else the refusal. `verified_client_cert`: the
    /// connection presented a client certificate the cluster's CA signed (mutual TLS), which
    /// makes the caller internal as the cluster secret does.
    pub fn check(
        &self,
        path: &str,
        headers: &HeaderMap,
        verified_client_cert: bool,
    ) -> Result<Caller, (Refusal, String)> {
        let rule = scopes::access(path);
        let everyone = Caller {
            user: None,
            scopes: Scope::ALL.to_vec(),
            internal: false,
            cell: None,
        };
        if !self.enabled() || rule == Access::Public {
            return Ok(everyone);
        }
        if verified_client_cert {
            return on_behalf(headers, rule);
        }
        if let (Some(id), Some(given)) = (headers.get(CELL_ID_HEADER), headers.get(CELL_SECRET_HEADER)) {
            let id = id
                .to_str()
                .map_err(|_| (Refusal::Malformed, "the cell id is not ASCII".to_owned()))?;
            let expected = self
                .issuer
                .settings()
                .cluster_secret
                .as_deref()
                .map(|s| cell_secret(s, id));
            if !expected.is_some_and(|e| same_secret(e.as_bytes(), given.as_bytes())) {
                return Err((Refusal::BadClusterSecret, "the cell secret is wrong".into()));
            }
            if !path.starts_with("/capstan.v1.CellService/") {
                return Err((
                    Refusal::Forbidden,
                    "a cell's credential is good for the cell service only".into(),
                ));
            }
            return Ok(Caller {
                cell: Some(id.to_owned()),
                ..Caller::default()
            });
        }
        if let Some(given) = headers.get(CLUSTER_SECRET_HEADER) {
            return if self.cluster.matches(given.as_bytes()) {
                on_behalf(headers, rule)
            } else {
                Err((Refusal::BadClusterSecret, "the cluster secret is wrong".into()))
            };
        }
        let needed = match rule {
            Access::Public => return Ok(everyone),
            Access::Internal => {
                return Err((
                    Refusal::Missing,
                    "this service is for cells and peers: present the cluster secret".into(),
                ))
            }
            Access::Scoped(s) => s,
        };
        let header = headers.get("authorization").ok_or((
            Refusal::Missing,
            "no Authorization header: log in and send a bearer token".into(),
        ))?;
        let header = header
            .to_str()
            .map_err(|_| (Refusal::Malformed, "the Authorization header is not ASCII".into()))?;
        let (kind, credential) = header.split_once(' ').unwrap_or((header, ""));
        let caller = if kind.eq_ignore_ascii_case("bearer") {
            let (user, scopes) = self.issuer.check_bearer(credential.trim()).map_err(|e| match e {
                BearerError::Expired => (Refusal::Expired, e.to_string()),
                BearerError::Invalid(_) => (Refusal::InvalidToken, e.to_string()),
            })?;
            Caller {
                user,
                scopes,
                ..Caller::default()
            }
        } else if kind.eq_ignore_ascii_case("basic") && scopes::basic_auth_accepted(path) {
            self.check_basic(credential.trim())?
        } else {
            return Err((
                Refusal::Malformed,
                "the Authorization header is not 'bearer <token>'".into(),
            ));
        };
        if scopes::allows(&caller.scopes, needed) {
            Ok(caller)
        } else {
            Err((
                Refusal::Forbidden,
                format!("this call needs the scope {}", needed.name()),
            ))
        }
    }

    fn check_basic(&self, encoded: &str) -> Result<Caller, (Refusal, String)> {
        let bad = || (Refusal::BadBasic, "Unauthorized".to_owned());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| bad())?;
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &decoded)
            .as_ref()
            .try_into()
            .map_err(|_| bad())?;
        if let Ok(cache) = self.basic_cache.lock() {
            if let Some((at, caller)) = cache.get(&key) {
                if at.elapsed() < BASIC_AUTH_CACHE_TTL {
                    return Ok(caller.clone());
                }
            }
        }
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = text.split_once(':').ok_or_else(bad)?;
        let scopes = self.issuer.check_user(user, password).ok_or_else(bad)?;
        let caller = Caller {
            user: Some(user.to_owned()),
            scopes,
            ..Caller::default()
        };
        if let Ok(mut cache) = self.basic_cache.lock() {
            if cache.len() >= BASIC_AUTH_CACHE_ENTRIES_MAX {
                cache.retain(|_, (at, _)| at.elapsed() < BASIC_AUTH_CACHE_TTL);
                if cache.len() >= BASIC_AUTH_CACHE_ENTRIES_MAX {
                    cache.clear();
                }
            }
            cache.insert(key, (Instant::now(), caller.clone()));
        }
        Ok(caller)
    }

    /// [`Authenticator::check`], with a refusal logged, counted and turned into its status.
    pub fn decide(&self, path: &str, headers: &HeaderMap, verified_client_cert: bool) -> Result<Caller, tonic::Status> {
        self.check(path, headers, verified_client_cert)
            .map_err(|(refusal, message)| self.refused(path, refusal, message))
    }

    fn refused(&self, path: &str, refusal: Refusal, message: String) -> tonic::Status {
        metrics::counter!(crate::metrics::AUTH_REFUSALS, "kind" => refusal.name()).increment(1);
        tracing::info!(method = path, refusal = refusal.name(), "call refused");
        let kind = match refusal {
            Refusal::Forbidden => ErrorKind::Forbidden,
            Refusal::Expired | Refusal::InvalidToken => ErrorKind::InvalidToken,
            Refusal::Missing | Refusal::Malformed | Refusal::BadBasic | Refusal::BadClusterSecret => {
                ErrorKind::Unauthenticated
            }
        };
        errors::status(kind, message, 0)
    }
}

/// An internal caller (the cluster secret or certificate): the cluster itself, or — on a call a
/// member forwarded — the caller named in its on-behalf headers, held to the method's rule again.
fn on_behalf(headers: &HeaderMap, rule: Access) -> Result<Caller, (Refusal, String)> {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(scopes) = header(ON_BEHALF_SCOPE) else {
        return Ok(Caller {
            user: None,
            scopes: Scope::ALL.to_vec(),
            internal: true,
            cell: None,
        });
    };
    let caller = Caller {
        user: header(ON_BEHALF_USER),
        scopes: scopes.split(' ').filter_map(Scope::parse).collect(),
        internal: false,
        cell: header(ON_BEHALF_CELL),
    };
    match rule {
        Access::Scoped(needed) if caller.cell.is_none() && !scopes::allows(&caller.scopes, needed) => Err((
            Refusal::Forbidden,
            format!("this call needs the scope {}", needed.name()),
        )),
        _ => Ok(caller),
    }
}

/// The layer that puts the check around a node's gRPC services.
#[derive(Clone)]
pub struct Guard {
    auth: Arc<Authenticator>,
}

impl Guard {
    pub fn layer(auth: Arc<Authenticator>) -> AroundLayer<Guard> {
        AroundLayer(Guard { auth })
    }
}

impl Around for Guard {
    fn around<S>(&self, mut inner: S, mut req: Request<Body>) -> Answer<S::Error>
    where
        S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let auth = self.auth.clone();
        if !auth.enabled() {
            // Auth off: every call is open; nothing to read, copy or check.
            req.extensions_mut().insert(Caller {
                scopes: Scope::ALL.to_vec(),
                ..Caller::default()
            });
            return Box::pin(inner.call(req));
        }
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let headers = req.headers().clone();
            // rustls verified a presented client certificate against the cluster's CA.
            let cert = req
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(TlsConnectInfo::peer_certs)
                .is_some_and(|c| !c.is_empty());
            // A basic-auth check may run argon2 (tens of ms): off the async threads.
            let basic = |h: &tonic::codegen::http::HeaderValue| {
                h.as_bytes().get(..6).is_some_and(|p| p.eq_ignore_ascii_case(b"basic "))
            };
            let decided = if headers.get("authorization").is_some_and(basic) {
                let (a, p) = (auth.clone(), path.clone());
                tokio::task::spawn_blocking(move || a.decide(&p, &headers, cert))
                    .await
                    .unwrap_or_else(|_| Err(auth.refused(&path, Refusal::BadBasic, "Unauthorized".into())))
            } else {
                auth.decide(&path, &headers, cert)
            };
            match decided {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                    inner.call(req).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
