//! Diego Receptor tasks (2015 routes, DECISIONS "Receptor tasks") on a real `capstan dev` and its
//! cell — the same run machinery as Flotilla's: create → COMPLETED with the result file → delete →
//! gone; failures and their reasons; cancel of a running and of a completed task; delete of an
//! unfinished task refused; a task no cell could ever fit; errors in `{name, message}` with
//! nothing created; and the completion callback (503 retried, then resolved and removed).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capstan_tests::{wait_for, Capstan};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(30);

/// `capstan dev` with its cell registered (a task created before any cell could run it would
/// be COMPLETED at once with "insufficient resources", as in Diego).
async fn dev() -> (tempfile::TempDir, Capstan) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev_with(&dir.path().join("data"), &[]).expect("start");
    wait_for("the dev cell to register", DEADLINE, || async {
        (c.get("/v1/cells").await.json().as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    (dir, c)
}

fn task(guid: &str, script: &str) -> Value {
    json!({"task_guid": guid, "domain": "tests", "rootfs": "preloaded:cflinuxfs4", "memory_mb": 64,
           "result_file": "result.txt", "env": [{"name": "GREETING", "value": "hello"}],
           "action": {"run": {"path": "sh", "args": ["-c", script], "user": "vcap"}}})
}

async fn create(c: &Capstan, body: &Value) {
    let r = c.post("/v1/tasks", &body.to_string()).await;
    assert_eq!((r.status, r.body.as_str()), (201, ""), "create {body}");
}

async fn state_is(c: &Capstan, guid: &str, state: &str) -> Value {
    wait_for(&format!("task {guid} {state}"), DEADLINE, || async {
        let t = c.get(&format!("/v1/tasks/{guid}")).await.json();
        (t["state"] == state).then_some(t)
    })
    .await
}

#[tokio::test]
async fn a_task_runs_to_completed_with_its_result_and_is_deleted() {
    let (_d, c) = dev().await;
    create(
        &c,
        &task("t-ok", "echo working; printf '%s' \"$GREETING world\" > result.txt"),
    )
    .await;
    let done = state_is(&c, "t-ok", "COMPLETED").await;
    assert_eq!(
        (&done["failed"], &done["failure_reason"]),
        (&json!(false), &json!("")),
        "{done}"
    );
    assert_eq!(done["result"], "hello world");
    assert_eq!((&done["cell_id"], &done["domain"]), (&json!("cell-1"), &json!("tests")));
    assert!(done["created_at"].as_i64().unwrap_or(0) > 0, "{done}");
    let listed = c.get("/v1/tasks?domain=tests").await.json();
    assert_eq!(listed, json!([done.clone()]));
    assert_eq!(c.get("/v1/tasks?domain=other").await.json(), json!([]));
    // Receptor tasks are not Flotilla runs.
    assert_eq!(c.get("/api/v1/history").await.json()["total"], 0);
    let del = c.delete("/v1/tasks/t-ok").await;
    assert_eq!((del.status, del.body.as_str()), (200, ""));
    let gone = c.get("/v1/tasks/t-ok").await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["name"], "TaskNotFound");
    assert_eq!(c.get("/v1/tasks").await.json(), json!([]));
}

#[tokio::test]
async fn failures_cancels_and_deletes_follow_receptor() {
    let (_d, c) = dev().await;
    create(&c, &task("t-fail", "exit 7")).await;
    let failed = state_is(&c, "t-fail", "COMPLETED").await;
    assert_eq!(
        (&failed["failed"], &failed["failure_reason"]),
        (&json!(true), &json!("Exited with status 7"))
    );

    create(&c, &task("t-long", "sleep 300")).await;
    state_is(&c, "t-long", "RUNNING").await;
    let refused = c.delete("/v1/tasks/t-long").await;
    assert_eq!(
        (refused.status, refused.json()["name"].clone()),
        (409, json!("TaskNotDeletable"))
    );
    let cancel = c.post("/v1/tasks/t-long/cancel", "").await;
    assert_eq!((cancel.status, cancel.body.as_str()), (200, ""));
    let cancelled = state_is(&c, "t-long", "COMPLETED").await;
    assert_eq!(
        (&cancelled["failed"], &cancelled["failure_reason"]),
        (&json!(true), &json!("task was cancelled"))
    );
    // Cancelling a completed task is a no-op.
    assert_eq!(c.post("/v1/tasks/t-long/cancel", "").await.status, 200);
    assert_eq!(c.get("/v1/tasks/t-long").await.json(), cancelled);

    // No cell could ever fit it: accepted, then COMPLETED failed.
    let mut huge = task("t-huge", "true");
    huge["memory_mb"] = json!(10_000_000);
    create(&c, &huge).await;
    let t = state_is(&c, "t-huge", "COMPLETED").await;
    assert_eq!(
        (&t["failed"], &t["failure_reason"]),
        (&json!(true), &json!("insufficient resources"))
    );
}

/// (method, path, body, status, error name, message prefix)
type Case = (
    reqwest::Method,
    &'static str,
    Option<String>,
    u16,
    &'static str,
    &'static str,
);

#[tokio::test]
async fn bad_task_requests_get_receptor_errors_and_create_nothing() {
    let (_d, c) = dev().await;
    create(&c, &task("exists", "true")).await;
    let cases: Vec<Case> = vec![
        (
            reqwest::Method::POST,
            "/v1/tasks",
            Some(task("exists", "true").to_string()),
            409,
            "TaskGuidAlreadyExists",
            "task already exists",
        ),
        (
            reqwest::Method::POST,
            "/v1/tasks",
            Some(json!({"task_guid": "bad guid", "rootfs": "x"}).to_string()),
            400,
            "InvalidTask",
            "Invalid field: domain, Invalid field: task_guid, Invalid field: rootfs, invalid action type",
        ),
        (
            reqwest::Method::POST,
            "/v1/tasks",
            Some("{".into()),
            400,
            "InvalidJSON",
            "",
        ),
        (
            reqwest::Method::POST,
            "/v1/tasks",
            Some(
                json!({"task_guid": "cb", "domain": "d", "rootfs": "preloaded:cflinuxfs4",
                     "completion_callback_url": "not a url", "action": {"run": {"path": "true", "user": "vcap"}}})
                .to_string(),
            ),
            400,
            "InvalidTask",
            "Invalid field: completion_callback_url",
        ),
        (
            reqwest::Method::GET,
            "/v1/tasks/nope",
            None,
            404,
            "TaskNotFound",
            "task with guid 'nope' not found",
        ),
        (
            reqwest::Method::DELETE,
            "/v1/tasks/nope",
            None,
            404,
            "TaskNotFound",
            "task with guid 'nope' not found",
        ),
        (
            reqwest::Method::POST,
            "/v1/tasks/nope/cancel",
            None,
            404,
            "TaskNotFound",
            "task with guid 'nope' not found",
        ),
    ];
    for (method, path, body, status, name, message) in cases {
        let r = c.request(method.clone(), path, body).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        let e = r.json();
        assert_eq!(e["name"], name, "{method} {path}: {e}");
        assert!(e["message"].as_str().unwrap_or_default().starts_with(message), "{e}");
    }
    let all = c.get("/v1/tasks").await.json();
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(1),
        "only the first create made a task: {all}"
    );
}

/// A callback receiver: answers 503 to the first request and 200 after, keeping each body.
async fn receiver() -> (String, Arc<AtomicUsize>, tokio::sync::mpsc::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/done", listener.local_addr().expect("addr"));
    let seen = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            let body = loop {
                let Ok(n) = sock.read(&mut chunk).await else {
                    break String::new();
                };
                if n == 0 {
                    break String::new();
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if rest.len() >= len {
                        break rest.to_owned();
                    }
                }
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let status = if n == 0 { "503 Service Unavailable" } else { "200 OK" };
            let _ = sock
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                .await;
            let _ = tx.send(body).await;
        }
    });
    (url, seen, rx)
}

#[tokio::test]
async fn the_completion_callback_is_retried_on_503_then_resolves_the_task() {
    let (_d, c) = dev().await;
    let (url, seen, mut bodies) = receiver().await;
    let mut t = task("t-cb", "printf done > result.txt");
    t["completion_callback_url"] = json!(url);
    create(&c, &t).await;
    let first: Value = serde_json::from_str(&bodies.recv().await.expect("first callback")).expect("json");
    assert_eq!(
        (&first["task_guid"], &first["result"]),
        (&json!("t-cb"), &json!("done")),
        "{first}"
    );
    assert_eq!(
        first["state"], "RESOLVING",
        "the task is RESOLVING while its callback is delivered"
    );
    let _second = bodies.recv().await.expect("the retry after a 503");
    wait_for("the resolved task to be removed", DEADLINE, || async {
        (c.get("/v1/tasks/t-cb").await.status == 404).then_some(())
    })
    .await;
    assert_eq!(seen.load(Ordering::SeqCst), 2, "one 503, one 200");
}
