//! Flotilla's API as the run tests drive it: define a task, execute it, follow a run to a status,
//! read its whole log by `last_seen`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{wait_for, Capstan};

/// How long a run may take to reach a status the tests wait for.
pub const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// Creates a definition; its id.
pub async fn define(c: &Capstan, alias: &str, command: &str, memory: i64) -> String {
    let body = json!({"alias": alias, "group_name": "testing", "image": "library/ubuntu:latest",
                      "command": command, "memory": memory, "tags": ["applesauce"],
                      "env": [{"name": "USERNAME", "value": "definition"}]});
    let r = c.post("/api/v1/task", &body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["definition_id"].as_str().unwrap_or_default().to_owned()
}

/// Executes a definition; the queued run.
pub async fn execute(c: &Capstan, definition_id: &str, body: Value) -> Value {
    let r = c
        .put(&format!("/api/v1/task/{definition_id}/execute"), &body.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

pub async fn run_of(c: &Capstan, run_id: &str) -> Value {
    c.get(&format!("/api/v1/history/{run_id}")).await.json()
}

/// Waits until the run's status is `status`; the run.
pub async fn status_is(c: &Capstan, run_id: &str, status: &str) -> Value {
    wait_for(&format!("run {run_id} {status}"), RUN_DEADLINE, || async {
        let r = run_of(c, run_id).await;
        (r["status"] == status).then_some(r)
    })
    .await
}

/// Reads the whole log from `token` on, following `last_seen` until nothing new comes.
pub async fn read_log(c: &Capstan, run_id: &str, mut token: String) -> (String, String) {
    let mut log = String::new();
    loop {
        let r = c.get(&format!("/api/v1/{run_id}/logs?last_seen={token}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        let chunk = v["log"].as_str().unwrap_or_default().to_owned();
        let next = v["last_seen"].as_str().unwrap_or_default().to_owned();
        if chunk.is_empty() {
            assert_eq!(next, token, "no new output keeps the token");
            return (log, next);
        }
        log.push_str(&chunk);
        token = next;
    }
}
