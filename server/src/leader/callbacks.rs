//! Receptor task completion callbacks, on the leader only (spec/receptor.md §3.7, DECISIONS
//! "Receptor tasks"): a COMPLETED task with a `completion_callback_url` is marked RESOLVING, its
//! TaskResponse JSON is POSTed to the URL, and any answer but 503/504 resolves (removes) it. 503,
//! 504 and transport failures are retried [`IMMEDIATE_RETRIES`] times, then once more after
//! [`LATE_RETRY_AFTER`]; after that the task is removed anyway (Diego gives up after about two
//! minutes too), so no task waits forever. A new leader delivers what its predecessor had not.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_gateway::receptor::dto::TaskResponse;
use capstan_proto::pb;
use capstan_raft::RaftNode;

use super::hub::Hub;

/// Retries right after a 503/504 or a failed connection (Diego: 3).
pub const IMMEDIATE_RETRIES: u32 = 3;
/// The pause before the one late retry (Diego: about 30 s).
pub const LATE_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Pause between the immediate retries.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// One callback request may take this long.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Callbacks delivered at once; the rest wait their turn.
pub const CALLBACKS_IN_FLIGHT_MAX: usize = 64;
/// How often the worker looks again without being woken.
const TICK: Duration = Duration::from_secs(1);

/// Whether the answer (or its absence) asks for another try.
fn retryable(answer: &Result<reqwest::StatusCode, reqwest::Error>) -> bool {
    match answer {
        Ok(s) => *s == reqwest::StatusCode::SERVICE_UNAVAILABLE || *s == reqwest::StatusCode::GATEWAY_TIMEOUT,
        Err(_) => true,
    }
}

async fn propose(node: &RaftNode, kind: pb::command::Kind) -> bool {
    match node.write(pb::Command { kind: Some(kind) }).await {
        Ok(o) => o.rejection.is_none(),
        Err(e) => {
            tracing::debug!(error = %e, "callback step not proposed");
            false
        }
    }
}

/// Delivers one task's callback and resolves it.
async fn deliver(node: RaftNode, http: reqwest::Client, task_guid: String, url: String) {
    let resolving = pb::command::Kind::MarkTaskResolving(pb::MarkTaskResolving {
        task_guid: task_guid.clone(),
    });
    if !propose(&node, resolving).await {
        return;
    }
    let task = match node.views().get_task_run(&task_guid) {
        Ok(Some(t)) => t,
        _ => return,
    };
    let body = TaskResponse::from(task);
    let mut attempt = 0u32;
    loop {
        let answer = http.post(&url).json(&body).send().await.map(|r| r.status());
        if !retryable(&answer) {
            break;
        }
        attempt += 1;
        match attempt {
            n if n <= IMMEDIATE_RETRIES => tokio::time::sleep(RETRY_PAUSE).await,
            n if n == IMMEDIATE_RETRIES + 1 => tokio::time::sleep(LATE_RETRY_AFTER).await,
            _ => {
                tracing::warn!(task = %task_guid, %url, "completion callback never answered; the task is removed");
                break;
            }
        }
        if !node.is_leader() {
            return;
        }
    }
    let resolve = pb::command::Kind::ResolveTask(pb::ResolveTask { task_guid });
    propose(&node, resolve).await;
}

pub async fn run(node: RaftNode, hub: Arc<Hub>) {
    let http = match reqwest::Client::builder().timeout(CALLBACK_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: completion callbacks are not delivered");
            return;
        }
    };
    let in_flight: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    loop {
        hub.next_pass(&hub.callbacks, TICK).await;
        let due: Vec<(String, String)> = hub.with_fleet(|f| f.callbacks.clone().into_iter().collect());
        for (guid, url) in due {
            {
                let Ok(mut busy) = in_flight.lock() else { return };
                if busy.len() >= CALLBACKS_IN_FLIGHT_MAX || !busy.insert(guid.clone()) {
                    continue;
                }
            }
            let (node, http, in_flight) = (node.clone(), http.clone(), in_flight.clone());
            tokio::spawn(async move {
                deliver(node, http, guid.clone(), url).await;
                if let Ok(mut busy) = in_flight.lock() {
                    busy.remove(&guid);
                }
            });
        }
    }
}
