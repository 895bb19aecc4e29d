//! JSON logs (`[log] format = "json"` in the config file): one access line per REST request with
//! its span's family, route template, method, status, latency and request id — the caller's
//! `X-Request-Id` when it sent one (answered back), a fresh one otherwise — and the node's own
//! lines for the gRPC call carry the same id.

use std::time::Duration;

use capstan_tests::auth::AuthFixture;
use capstan_tests::{wait_for, Capstan};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_carry_the_request_span_and_its_id_from_gateway_to_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Auth on: a refused call is a line the node writes inside the gRPC call's span.
    let fixture = AuthFixture::new("[log]\nformat = \"json\"\n").expect("fixture");
    let log = dir.path().join("stderr.log");
    let script = format!("RUST_LOG=info exec \"$0\" \"$@\" 2>{}", log.display());
    let data = dir.path().join("data");
    let config = fixture.config.display().to_string();
    let args = Capstan::dev_args(&data, &["--no-cell", "--config", &config]);
    let c = Capstan::spawn_under(&["sh", "-c", &script], &args, &data).expect("start");

    let sent = c
        .client
        .get(c.url("/v1/desired_lrps/web"))
        .header("X-Request-Id", "req-from-the-caller")
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status().as_u16(), 401);
    assert_eq!(sent.headers()["x-request-id"], "req-from-the-caller", "answered back");
    let fresh = c.get("/healthz").await;
    let fresh_id = fresh.header("x-request-id").expect("an id is made up").to_owned();
    assert_eq!(fresh_id.len(), 36, "a UUID: {fresh_id}");

    let lines = wait_for("both access lines written", DEADLINE, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect();
        let accessed = lines.iter().filter(|l| l["target"] == "capstan::access").count();
        (accessed >= 2).then_some(lines)
    })
    .await;
    let access = |id: &str| {
        lines
            .iter()
            .find(|l| l["target"] == "capstan::access" && l["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no access line for {id}: {lines:?}"))
            .clone()
    };
    let a = access("req-from-the-caller");
    assert_eq!(a["level"], "INFO");
    let span = &a["span"];
    assert_eq!(span["family"], "receptor");
    assert_eq!(span["route"], "/v1/desired_lrps/{process_guid}");
    assert_eq!(span["method"], "GET");
    assert_eq!(span["status"], 401);
    assert!(span["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{a}");
    let h = access(&fresh_id);
    assert_eq!(
        (h["span"]["family"].clone(), h["span"]["route"].clone()),
        ("ops".into(), "/healthz".into())
    );

    let refused = lines
        .iter()
        .find(|l| l["message"] == "call refused" && l["span"]["request_id"] == "req-from-the-caller")
        .unwrap_or_else(|| panic!("the node's refusal names the request: {lines:?}"));
    assert_eq!(refused["span"]["name"], "grpc");
    assert_eq!(refused["span"]["method"], "/capstan.v1.ControlPlane/GetDesiredLrp");
}
