//! The one place a request is sent to the leader: a tower layer around all of a node's gRPC
//! services that reads, from one table keyed by the method ([`served_at`]), where the method is
//! served, and either lets the call through or sends it, unchanged, one hop to the leader.
//!
//! - **Anywhere**: writes whose answer depends only on what their command decided go through the
//!   command forwarder ([`super::forward::Forwarder::decide`]: a follower sends the command alone,
//!   batched with the others it forwards); node-local calls and the streams.
//! - **Leader**: writes that read the views around their command (access checks, alias lookups,
//!   the cell presence the leader keeps) and membership changes: served by the leader only.
//! - **Read**: a linearizable read passes the read-index barrier here, or goes to the leader
//!   when this node is not it; a stale read is served by any node.
//! - **PreferLeader**: asked of the leader, answered here when the leader cannot be reached.
//!
//! A forwarded call carries the caller (its user, scopes, or the cell it is bound to) in
//! on-behalf headers under the cluster credential, so the leader's guard sees the same caller
//! ([`crate::auth::guard`]), and a marker so that it is never forwarded twice.

use bytes::Bytes;
use capstan_proto::pb::{self, ErrorKind};
use capstan_raft::WriteError;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::codegen::http::request::Parts;
use tonic::codegen::http::{HeaderMap, HeaderValue, Request, Response};
use tonic::Status;
use tower::ServiceExt;

use super::forward::Forwarder;
use crate::around::{Answer, Around, AroundLayer};
use crate::auth::guard::{Caller, ON_BEHALF_CELL, ON_BEHALF_SCOPE, ON_BEHALF_USER};
use crate::errors;

/// Header set on a forwarded call.
pub const FORWARDED: &str = "x-capstan-forwarded";
/// The largest request a read's route reads to find its consistency (tonic's own decoding limit).
const READ_REQUEST_BYTES_MAX: usize = 4 * 1024 * 1024;
/// How long a call that prefers the leader's answer waits for it before answering here.
const PREFER_LEADER_WAIT: std::time::Duration = std::time::Duration::from_millis(1_600);

/// Where a method is served.
#[derive(Clone, Copy)]
pub enum Route {
    Anywhere,
    Leader,
    /// A read: the request's consistency decides (the method's request type reads it).
    Read(fn(&[u8]) -> Option<i32>),
    PreferLeader,
}

/// A request message that names the consistency it is read with.
trait Consistent: prost::Message + Default {
    fn consistency(&self) -> i32;
}

macro_rules! consistent {
    ($($t:ident),* $(,)?) => {
        $(impl Consistent for pb::$t {
            fn consistency(&self) -> i32 {
                self.consistency
            }
        })*
    };
}
consistent!(
    GetDesiredLrpRequest,
    ListDesiredLrpsRequest,
    GetActualLrpRequest,
    ListActualLrpsRequest,
    ListFreshDomainsRequest,
    ListCellsRequest,
    TaskGuid,
    ListTasksRequest,
    TaskDefinitionId,
    TaskDefinitionAlias,
    ListTaskDefinitionsRequest,
    ListNamesRequest,
    TaskRunId,
    ListTaskRunsRequest,
    GetRunLogsRequest,
    CfGetRequest,
    ListCfRequest,
    CfJobRequest,
    CfProcessRef,
);

/// The consistency of an encoded `M` (`None`: it does not decode).
fn consistency_of<M: Consistent>(message: &[u8]) -> Option<i32> {
    M::decode(message).ok().map(|m| m.consistency())
}

fn read<M: Consistent>() -> Route {
    Route::Read(consistency_of::<M>)
}

/// Where every method a node serves is served, by its path. A method not listed is served where
/// it is called (a test walks the .proto files so that none is forgotten).
pub fn served_at(path: &str) -> Route {
    let Some((service, method)) = path.strip_prefix("/capstan.v1.").and_then(|p| p.split_once('/')) else {
        return Route::Anywhere;
    };
    match (service, method) {
        ("ControlPlane", "GetDesiredLrp") => read::<pb::GetDesiredLrpRequest>(),
        ("ControlPlane", "ListDesiredLrps") => read::<pb::ListDesiredLrpsRequest>(),
        ("ControlPlane", "GetActualLrp") => read::<pb::GetActualLrpRequest>(),
        ("ControlPlane", "ListActualLrps") => read::<pb::ListActualLrpsRequest>(),
        ("ControlPlane", "ListFreshDomains") => read::<pb::ListFreshDomainsRequest>(),
        ("ControlPlane", "ListCells") => read::<pb::ListCellsRequest>(),
        ("ControlPlane", "GetTask") => read::<pb::TaskGuid>(),
        ("ControlPlane", "ListTasks") => read::<pb::ListTasksRequest>(),
        // only a Receptor task is cancelled: told from the leader's view
        ("ControlPlane", "CancelTask") => Route::Leader,
        ("TaskService", "GetTaskDefinition") => read::<pb::TaskDefinitionId>(),
        ("TaskService", "GetTaskDefinitionByAlias") => read::<pb::TaskDefinitionAlias>(),
        ("TaskService", "ListTaskDefinitions") => read::<pb::ListTaskDefinitionsRequest>(),
        ("TaskService", "ListGroups" | "ListTags" | "ListClusters") => read::<pb::ListNamesRequest>(),
        ("TaskService", "GetTaskRun") => read::<pb::TaskRunId>(),
        ("TaskService", "ListTaskRuns") => read::<pb::ListTaskRunsRequest>(),
        ("TaskService", "GetRunLogs") => read::<pb::GetRunLogsRequest>(),
        // the alias is resolved, and a stopped run's definition read, in the leader's view
        ("TaskService", "ExecuteTask" | "StopTaskRun") => Route::Leader,
        ("CfService", "GetResource" | "GetAppEnvironment") => read::<pb::CfGetRequest>(),
        ("CfService", "List") => read::<pb::ListCfRequest>(),
        ("CfService", "GetJob") => read::<pb::CfJobRequest>(),
        ("CfService", "GetProcess" | "ProcessStats") => read::<pb::CfProcessRef>(),
        // every CF write checks the caller's access in the leader's view
        (
            "CfService",
            "CreateOrganization" | "CreateSpace" | "CreateApp" | "UpdateResource" | "DeleteResource" | "SetAppState"
            | "ApplyManifest" | "UpdateProcess" | "ScaleProcess" | "TerminateInstance",
        ) => Route::Leader,
        ("Admin", "ClusterStatus") => Route::PreferLeader,
        ("Admin", "AddMember" | "RemoveMember") => Route::Leader,
        // presence is the leader's memory; a bound cell's reports are checked in the leader's view
        ("CellService", "RegisterCell" | "Heartbeat" | "ReportActualLrps" | "ReportTaskRuns") => Route::Leader,
        _ => Route::Anywhere,
    }
}

/// The layer that routes calls to the leader (inside the auth guard, which names the caller).
#[derive(Clone)]
pub struct ToLeader {
    fwd: Forwarder,
}

impl ToLeader {
    pub fn layer(fwd: Forwarder) -> AroundLayer<ToLeader> {
        AroundLayer(ToLeader { fwd })
    }
}

/// What a call's route decided.
enum Decision {
    Here,
    Leader(String),
    /// Ask the leader at this address; answer here if it cannot be reached.
    LeaderElseHere(String),
}

impl Around for ToLeader {
    fn around<S>(&self, mut inner: S, req: Request<Body>) -> Answer<S::Error>
    where
        S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let route = served_at(req.uri().path());
        let forwarded = req.headers().contains_key(FORWARDED);
        let fwd = self.fwd.clone();
        // The common case on the leader costs no allocation and no await.
        let leads = fwd.node().is_leader();
        if matches!(route, Route::Anywhere) || (leads && !matches!(route, Route::Read(_))) {
            return Box::pin(inner.call(req));
        }
        Box::pin(async move {
            let (req, decision) = match decide(&fwd, route, forwarded, req).await {
                Ok(decided) => decided,
                Err(status) => return Ok(status.into_http()),
            };
            match decision {
                Decision::Here => inner.call(req).await,
                Decision::Leader(addr) => Ok(send_to_leader(&fwd, &addr, req).await.unwrap_or_else(Status::into_http)),
                Decision::LeaderElseHere(addr) => {
                    let (parts, body) = req.into_parts();
                    let bytes = match read_body(body).await {
                        Ok(b) => b,
                        Err(status) => return Ok(status.into_http()),
                    };
                    let there = send_to_leader(&fwd, &addr, copy_of(&parts, bytes.clone()));
                    match tokio::time::timeout(PREFER_LEADER_WAIT, there).await {
                        Ok(Ok(answer)) => Ok(answer),
                        _ => inner.call(Request::from_parts(parts, full(bytes))).await,
                    }
                }
            }
        })
    }
}

/// A copy of a (unary) call with its body read: what it asks and who asks it.
fn copy_of(parts: &Parts, bytes: Bytes) -> Request<Body> {
    let mut req = Request::new(full(bytes));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    if let Some(caller) = parts.extensions.get::<Caller>() {
        req.extensions_mut().insert(caller.clone());
    }
    req
}

fn full(bytes: Bytes) -> Body {
    Body::new(http_body_util::Full::new(bytes))
}

/// Reads a (unary) request's body, bounded.
async fn read_body(body: Body) -> Result<Bytes, Status> {
    http_body_util::Limited::new(body, READ_REQUEST_BYTES_MAX)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            errors::status(
                ErrorKind::InvalidRequest,
                format!("the request could not be read: {e}"),
                0,
            )
        })
}

/// Where a call that the table does not serve anywhere goes; a read's body is read to find its
/// consistency and handed on unchanged.
async fn decide(
    fwd: &Forwarder,
    route: Route,
    forwarded: bool,
    req: Request<Body>,
) -> Result<(Request<Body>, Decision), Status> {
    let node = fwd.node();
    match route {
        Route::Anywhere => Ok((req, Decision::Here)),
        Route::Leader | Route::PreferLeader if node.is_leader() => Ok((req, Decision::Here)),
        Route::Leader => {
            let addr = leader_addr(fwd, forwarded, None)?;
            Ok((req, Decision::Leader(addr)))
        }
        Route::PreferLeader => match node.leader_addr() {
            Some(addr) if !forwarded => Ok((req, Decision::LeaderElseHere(addr))),
            _ => Ok((req, Decision::Here)),
        },
        Route::Read(consistency_of) => {
            let (parts, body) = req.into_parts();
            let bytes = read_body(body).await?;
            // a gRPC frame: compressed flag, length, message; anything else is read as linearizable
            let consistency = match bytes.first() {
                Some(0) => bytes.get(5..).and_then(consistency_of).unwrap_or_default(),
                _ => pb::ReadConsistency::Linearizable as i32,
            };
            let req = Request::from_parts(parts, full(bytes));
            if consistency == pb::ReadConsistency::Stale as i32 {
                return Ok((req, Decision::Here));
            }
            match node.linearizable_barrier().await {
                Ok(()) => Ok((req, Decision::Here)),
                Err(e) => Ok((req, Decision::Leader(leader_addr(fwd, forwarded, Some(e))?))),
            }
        }
    }
}

/// The leader's address to forward to — unless the call was forwarded already or no leader is
/// known, which is "unavailable, retry" (with the leader's id and address when known).
fn leader_addr(fwd: &Forwarder, forwarded: bool, error: Option<WriteError>) -> Result<String, Status> {
    let node = fwd.node();
    let error = error.unwrap_or_else(|| WriteError::NotLeader {
        leader_id: node.raft.metrics().borrow().current_leader,
        leader_addr: node.leader_addr(),
    });
    match error {
        WriteError::NotLeader {
            leader_addr: Some(addr),
            ..
        } if !forwarded => Ok(addr),
        e => Err(errors::write_error(&e)),
    }
}

/// Sends a call, unchanged but for its credential, to the leader at `addr`: the caller goes in
/// on-behalf headers, the cluster credential is the channel's.
async fn send_to_leader(fwd: &Forwarder, addr: &str, req: Request<Body>) -> Result<Response<Body>, Status> {
    let (mut parts, body) = req.into_parts();
    let caller = parts.extensions.get::<Caller>().cloned();
    on_behalf(&mut parts.headers, caller.as_ref());
    parts.headers.insert(FORWARDED, HeaderValue::from_static("1"));
    parts.extensions = Default::default();
    let req = Request::from_parts(parts, body);
    let channel = fwd.peers().channel(addr)?;
    let call = async move {
        channel
            .oneshot(req)
            .await
            .map(|answer| answer.map(Body::new))
            .map_err(|e| super::forward::leader_unreachable(Status::unavailable(e.to_string())))
    };
    fwd.unless_leader_moves(call, addr).await
}

/// Replaces a call's own credential by the caller it was found to be.
fn on_behalf(headers: &mut HeaderMap, caller: Option<&Caller>) {
    for h in [
        "authorization",
        capstan_raft::credential::CELL_ID_HEADER,
        capstan_raft::credential::CELL_SECRET_HEADER,
        capstan_raft::credential::CLUSTER_SECRET_HEADER,
        ON_BEHALF_USER,
        ON_BEHALF_SCOPE,
        ON_BEHALF_CELL,
    ] {
        headers.remove(h);
    }
    // An internal caller (no caller: auth off) is the cluster itself: the credential says it all.
    let Some(caller) = caller.filter(|c| !c.internal) else {
        return;
    };
    let scopes: Vec<&str> = caller.scopes.iter().map(|s| s.name()).collect();
    if let Ok(v) = HeaderValue::from_str(&scopes.join(" ")) {
        headers.insert(ON_BEHALF_SCOPE, v);
    }
    if let Some(v) = caller.user.as_deref().and_then(|u| HeaderValue::from_str(u).ok()) {
        headers.insert(ON_BEHALF_USER, v);
    }
    if let Some(v) = caller.cell.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(ON_BEHALF_CELL, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every read method whose request names a consistency is routed as a read of that request
    /// type (so a stale read stays here and a linearizable one passes the barrier).
    #[test]
    fn every_read_method_reads_its_consistency() {
        let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/proto/capstan/v1");
        let mut reads = 0;
        for entry in std::fs::read_dir(protos).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mut service = "";
            for line in text.lines().map(str::trim) {
                if let Some(s) = line.strip_prefix("service ") {
                    service = s.trim_end_matches(['{', ' ']);
                }
                let Some(rpc) = line.strip_prefix("rpc ") else { continue };
                let (method, rest) = rpc.split_once('(').unwrap();
                let request = rest.split(')').next().unwrap().trim();
                let path = format!("/capstan.v1.{service}/{method}");
                let reads_consistency = text.contains(&format!("message {request} {{"))
                    && text
                        .split(&format!("message {request} {{"))
                        .nth(1)
                        .and_then(|m| m.split('}').next())
                        .is_some_and(|m| m.contains("ReadConsistency consistency"));
                let read_level = matches!(
                    crate::auth::scopes::access(&path),
                    crate::auth::scopes::Access::Scoped(s) if s.level == crate::auth::scopes::Level::Read
                );
                if reads_consistency && read_level {
                    assert!(
                        matches!(served_at(&path), Route::Read(_)),
                        "{path} reads with a consistency"
                    );
                    reads += 1;
                }
            }
        }
        assert!(reads >= 19, "{reads}");
    }

    #[test]
    fn a_read_route_reads_the_consistency_of_its_request() {
        let stale = pb::TaskDefinitionId {
            definition_id: "d".into(),
            consistency: pb::ReadConsistency::Stale as i32,
        };
        let Route::Read(of) = served_at("/capstan.v1.TaskService/GetTaskDefinition") else {
            panic!("a read")
        };
        assert_eq!(of(&prost::Message::encode_to_vec(&stale)), Some(stale.consistency));
        assert_eq!(of(&[0xff, 0xff]), None);
    }

    #[test]
    fn a_forwarded_call_carries_its_caller_not_its_credential() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("bearer secret"));
        h.insert(ON_BEHALF_SCOPE, HeaderValue::from_static("capstan.admin"));
        let caller = Caller {
            user: Some("ann".into()),
            scopes: vec![crate::auth::scopes::Scope::CF_WRITE],
            internal: false,
            cell: None,
        };
        on_behalf(&mut h, Some(&caller));
        assert!(h.get("authorization").is_none());
        assert_eq!(h.get(ON_BEHALF_SCOPE).unwrap(), "cloud_controller.write");
        assert_eq!(h.get(ON_BEHALF_USER).unwrap(), "ann");
        let internal = Caller {
            internal: true,
            ..caller
        };
        on_behalf(&mut h, Some(&internal));
        assert!(h.get(ON_BEHALF_SCOPE).is_none() && h.get(ON_BEHALF_USER).is_none());
    }
}
