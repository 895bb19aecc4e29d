//! A node's metrics: every gRPC call by service, method and status code with its latency (a
//! layer of the gRPC server), the Raft core's figures (published on every change of its
//! metrics), and the counts over the replicated state (cells, instances, task runs by state;
//! the scheduler's queues), computed when `/metrics` is scraped. The REST side's figures are the
//! gateway's ([`capstan_gateway::metrics`]); the recorder is the one process-wide recorder.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::around::{Answer, Around, AroundLayer};
use capstan_gateway::metrics::{add_collector, CollectorGuard};
use capstan_proto::pb;
use capstan_raft::RaftNode;
use http_body::{Body as HttpBody, Frame};
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};

use crate::leader::hub::Hub;
use crate::leader::presence::Presence;

pub const GRPC_REQUESTS: &str = "capstan_grpc_requests_total";
pub const GRPC_REQUEST_DURATION: &str = "capstan_grpc_request_duration_seconds";
pub const RAFT_TERM: &str = "capstan_raft_term";
pub const RAFT_LEADER: &str = "capstan_raft_leader_id";
pub const RAFT_IS_LEADER: &str = "capstan_raft_is_leader";
pub const RAFT_LAST_LOG_INDEX: &str = "capstan_raft_last_log_index";
pub const RAFT_APPLIED_INDEX: &str = "capstan_raft_applied_index";
pub const RAFT_LOG_ENTRIES: &str = "capstan_raft_log_entries";
pub const RAFT_SNAPSHOT_AGE: &str = "capstan_raft_snapshot_age_entries";
pub const RAFT_MEMBERS: &str = "capstan_raft_members";
pub const CELLS: &str = "capstan_cells";
pub const INSTANCES: &str = "capstan_instances";
pub const TASK_RUNS: &str = "capstan_task_runs";
pub const SCHEDULER_QUEUE: &str = "capstan_scheduler_queue_length";
pub const SCHEDULER_PLACEMENTS: &str = "capstan_scheduler_placements_total";
pub const SCHEDULER_PLACEMENT_FAILURES: &str = "capstan_scheduler_placement_failures_total";
pub const EVENT_SUBSCRIBERS: &str = "capstan_events_subscribers";
pub const EVENT_SUBSCRIBERS_DROPPED: &str = "capstan_events_subscribers_dropped_total";
pub const AUTH_REFUSALS: &str = "capstan_auth_refusals_total";

/// Help texts of the node's metrics (the storage layer describes its own).
pub fn describe() {
    use metrics::{describe_counter as c, describe_gauge as g, describe_histogram as h, Unit};
    capstan_storage::metrics::describe();
    c!(GRPC_REQUESTS, "gRPC calls answered, by service, method and status code");
    h!(
        GRPC_REQUEST_DURATION,
        Unit::Seconds,
        "gRPC call latency (to the end of the response stream), by service and method"
    );
    g!(RAFT_TERM, "Current Raft term");
    g!(RAFT_LEADER, "Node id of the leader this node knows (0: none)");
    g!(RAFT_IS_LEADER, "1 on the leader, 0 elsewhere");
    g!(RAFT_LAST_LOG_INDEX, "Index of the last entry in this node's log");
    g!(
        RAFT_APPLIED_INDEX,
        "Index of the last entry applied to this node's state"
    );
    g!(
        RAFT_LOG_ENTRIES,
        "Entries kept in this node's log (after the last purge)"
    );
    g!(RAFT_SNAPSHOT_AGE, "Entries applied since this node's newest snapshot");
    g!(RAFT_MEMBERS, "Voting members of the cluster");
    g!(
        CELLS,
        "Cells by state: registered (in the state), heartbeating (leader: heard within the TTL)"
    );
    g!(INSTANCES, "LRP instances (ActualLRPs) by state");
    g!(TASK_RUNS, "Task runs by status");
    g!(
        SCHEDULER_QUEUE,
        "Work waiting for a cell: unclaimed instances, queued task runs"
    );
    c!(SCHEDULER_PLACEMENTS, "Placements applied by the scheduler, by kind");
    c!(
        SCHEDULER_PLACEMENT_FAILURES,
        "Instances the scheduler found no cell for, by kind"
    );
    g!(EVENT_SUBSCRIBERS, "Event streams open on this node");
    c!(
        EVENT_SUBSCRIBERS_DROPPED,
        "Event streams ended for a subscriber that did not read"
    );
    c!(AUTH_REFUSALS, "Calls refused by the auth guard, by kind of refusal");
}

/// Publishes the Raft core's figures on each change of its metrics until the node stops.
pub async fn publish_raft(node: RaftNode) {
    let mut rx = node.raft.metrics();
    loop {
        {
            let m = rx.borrow_and_update();
            let leader = m.current_leader.unwrap_or(0);
            let last = m.last_log_index.unwrap_or(0);
            let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
            let purged = m.purged.map(|l| l.index + 1).unwrap_or(0);
            let snapshot = m.snapshot.map(|l| l.index).unwrap_or(0);
            metrics::gauge!(RAFT_TERM).set(m.current_term as f64);
            metrics::gauge!(RAFT_LEADER).set(leader as f64);
            metrics::gauge!(RAFT_IS_LEADER).set(if leader == m.id { 1.0 } else { 0.0 });
            metrics::gauge!(RAFT_LAST_LOG_INDEX).set(last as f64);
            metrics::gauge!(RAFT_APPLIED_INDEX).set(applied as f64);
            metrics::gauge!(RAFT_LOG_ENTRIES).set(last.saturating_add(1).saturating_sub(purged) as f64);
            metrics::gauge!(RAFT_SNAPSHOT_AGE).set(applied.saturating_sub(snapshot) as f64);
            metrics::gauge!(RAFT_MEMBERS).set(m.membership_config.membership().voter_ids().count() as f64);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Registers the collector of the counts over this node's state; it runs at each scrape while
/// the guard lives.
pub fn collect_state(node: RaftNode, hub: Arc<Hub>, presence: Arc<Presence>) -> CollectorGuard {
    add_collector(move || {
        let views = node.views();
        let registered = views.cells().map(|c| c.len()).unwrap_or(0);
        metrics::gauge!(CELLS, "state" => "registered").set(registered as f64);
        let heartbeating = if node.is_leader() {
            presence.heard_within_ttl()
        } else {
            0
        };
        metrics::gauge!(CELLS, "state" => "heartbeating").set(heartbeating as f64);

        use pb::{ActualLrpState as A, TaskRunStatus as T};
        // Every state starts at zero, so that an emptied state reads 0, not its last count.
        let mut instances: BTreeMap<i32, u64> = [A::Unclaimed, A::Claimed, A::Running, A::Crashed]
            .map(|s| (s as i32, 0))
            .into();
        for a in views.actual_lrps(None, None).flatten() {
            *instances.entry(a.state).or_default() += 1;
        }
        for (state, n) in instances {
            let name = A::try_from(state)
                .map(|s| s.as_str_name())
                .unwrap_or("ACTUAL_LRP_STATE_UNKNOWN");
            metrics::gauge!(INSTANCES, "state" => label(name, "ACTUAL_LRP_STATE_")).set(n as f64);
        }
        let mut runs: BTreeMap<i32, u64> = [T::Queued, T::Pending, T::Running, T::Stopped, T::NeedsRetry]
            .map(|s| (s as i32, 0))
            .into();
        for r in views.task_runs().flatten() {
            *runs.entry(r.status).or_default() += 1;
        }
        for (status, n) in runs {
            let name = T::try_from(status)
                .map(|s| s.as_str_name())
                .unwrap_or("TASK_RUN_STATUS_UNKNOWN");
            metrics::gauge!(TASK_RUNS, "status" => label(name, "TASK_RUN_STATUS_")).set(n as f64);
        }
        let (unclaimed, queued) = hub.with_fleet(|f| (f.unclaimed.len(), f.queued.len()));
        metrics::gauge!(SCHEDULER_QUEUE, "kind" => "instance").set(unclaimed as f64);
        metrics::gauge!(SCHEDULER_QUEUE, "kind" => "task_run").set(queued as f64);
    })
}

/// `ACTUAL_LRP_STATE_RUNNING` → `running`.
fn label(name: &'static str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_ascii_lowercase()
}

/// Counts and times every gRPC call (outermost layer: refusals of the auth guard count too).
#[derive(Clone, Copy, Default)]
pub struct GrpcMetrics;

impl GrpcMetrics {
    pub fn layer() -> AroundLayer<GrpcMetrics> {
        AroundLayer(GrpcMetrics)
    }
}

impl Around for GrpcMetrics {
    fn around<S>(&self, mut inner: S, req: Request<Body>) -> Answer<S::Error>
    where
        S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let call = Call::of(req.uri().path());
        let fut = inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            let (parts, body) = resp.into_parts();
            // An error before any message comes as a trailers-only answer: the code is in the head.
            let done = match grpc_status(&parts.headers) {
                Some(code) => {
                    call.finish(code);
                    None
                }
                None => Some(call),
            };
            Ok(Response::from_parts(
                parts,
                Body::new(Observed {
                    inner: body,
                    call: done,
                }),
            ))
        })
    }
}

/// One call being measured.
struct Call {
    service: String,
    method: String,
    started: Instant,
}

impl Call {
    fn of(path: &str) -> Self {
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
        Self {
            service: service.to_owned(),
            method: method.to_owned(),
            started: Instant::now(),
        }
    }

    fn finish(self, code: i32) {
        // Unknown methods answer UNIMPLEMENTED: one label for them all, so callers cannot grow
        // the label set.
        let (service, method) = if code == tonic::Code::Unimplemented as i32 {
            ("unknown".to_owned(), "unknown".to_owned())
        } else {
            (self.service, self.method)
        };
        let code_name = format!("{:?}", tonic::Code::from_i32(code));
        metrics::counter!(GRPC_REQUESTS, "service" => service.clone(), "method" => method.clone(), "code" => code_name)
            .increment(1);
        metrics::histogram!(GRPC_REQUEST_DURATION, "service" => service, "method" => method)
            .record(self.started.elapsed().as_secs_f64());
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// A response body that records its call when the trailers carry its status (or, for a stream
/// the client dropped, when the body is dropped: CANCELLED).
struct Observed {
    inner: Body,
    call: Option<Call>,
}

impl HttpBody for Observed {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    if let Some(call) = self.call.take() {
                        call.finish(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.finish(tonic::Code::Internal as i32);
                }
            }
            Poll::Ready(None) => {
                if let Some(call) = self.call.take() {
                    call.finish(tonic::Code::Ok as i32);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish(tonic::Code::Cancelled as i32);
        }
    }
}
