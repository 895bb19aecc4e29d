//! Issue 9, defects 4 and 5: bad input found by fuzzing gets a clear error in Receptor's shape,
//! never a 500, a `text/plain` answer or a value that breaks the clients reading it back; and a
//! refused request changes nothing.

use capstan_tests::Capstan;
use serde_json::{json, Value};

fn dev() -> (tempfile::TempDir, Capstan) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev(&dir.path().join("data")).expect("start");
    (dir, c)
}

fn lrp(guid: &str, domain: &str, action: Value, routes: Value) -> String {
    json!({
        "process_guid": guid, "domain": domain, "rootfs": "preloaded:cflinuxfs4", "instances": 1,
        "action": action, "routes": routes,
    })
    .to_string()
}

fn run() -> Value {
    json!({"run": {"path": "true", "user": "vcap"}})
}

/// `depth` levels of `kind` wrapping a run action (kind: try, timeout, emit_progress, serial).
fn nested(kind: &str, depth: usize) -> Value {
    let mut a = run();
    for _ in 1..depth {
        a = match kind {
            "try" => json!({"try": {"action": a}}),
            "timeout" => json!({"timeout": {"action": a, "timeout": 1_000_000_000}}),
            "emit_progress" => json!({"emit_progress": {"action": a}}),
            _ => json!({"serial": {"actions": [a]}}),
        };
    }
    a
}

fn nested_json(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

#[tokio::test]
async fn deep_action_trees_are_refused_at_the_edge_not_with_500() {
    let (_d, c) = dev();
    let max = capstan_proto::ACTION_DEPTH_MAX;
    for kind in ["try", "timeout", "emit_progress", "serial"] {
        // What the fuzzer found: 49–62 deep passed the JSON depth limit and broke prost's decode.
        for depth in [max + 1, 49, 62] {
            let r = c
                .post(
                    "/v1/desired_lrps",
                    &lrp(&format!("deep-{kind}-{depth}"), "d", nested(kind, depth), json!({})),
                )
                .await;
            assert_eq!(r.status, 400, "{kind} x{depth}: {}", r.body);
            let name = r.json()["name"].as_str().unwrap_or("").to_owned();
            let message = r.json()["message"].as_str().unwrap_or("").to_owned();
            if depth == max + 1 || name != "InvalidJSON" {
                // Past the JSON decoder's own depth limit (a serial level is three JSON levels)
                // InvalidJSON is as clear; below it, the action-depth limit names itself.
                assert_eq!(name, "InvalidLRP", "{kind} x{depth}");
                assert!(message.contains(&format!("at most {max} deep")), "{message}");
            }
        }
        let ok = c
            .post(
                "/v1/desired_lrps",
                &lrp(&format!("deep-{kind}-ok"), "d", nested(kind, max), json!({})),
            )
            .await;
        assert_eq!(ok.status, 201, "{kind} at the limit: {}", ok.body);
    }
    assert_eq!(c.get("/v1/desired_lrps/deep-try-49").await.status, 404);
}

#[tokio::test]
async fn malformed_paths_and_router_errors_answer_in_receptors_shape() {
    let (_d, c) = dev();
    for path in [
        "/v1/desired_lrps/%FF",
        "/v1/actual_lrps/%C3%28/index/0",
        "/v1/domains/%FF/actual_lrps",
    ] {
        let r = c.get(path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        assert_eq!(r.json()["name"], "InvalidRequest", "{path}");
    }
    let r = c.request(reqwest::Method::PATCH, "/v1/desired_lrps/x", None).await;
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some());
    assert_eq!(r.json()["name"], "InvalidRequest");
}

#[tokio::test]
async fn deep_route_values_and_control_characters_are_refused_and_change_nothing() {
    let (_d, c) = dev();
    let deep_routes = json!({"cf-router": nested_json(capstan_proto::ROUTE_JSON_DEPTH_MAX + 1)});
    let r = c
        .post("/v1/desired_lrps", &lrp("deep-routes", "d", run(), deep_routes.clone()))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        (r.json()["name"].clone(), r.json()["message"].clone()),
        (json!("InvalidLRP"), json!("Invalid field: routes"))
    );
    // A 1,000-deep value (raw route values skip the JSON decoder's depth limit) is refused too.
    let thousand = format!(
        r#"{{"process_guid":"t","domain":"d","rootfs":"preloaded:x","action":{{"run":{{"path":"true","user":"u"}}}},"routes":{{"r":{}1{}}}}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    let r = c.post("/v1/desired_lrps", &thousand).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "Invalid field: routes");

    assert_eq!(
        c.post("/v1/desired_lrps", &lrp("ok", "d", run(), json!({"r": [1]})))
            .await
            .status,
        201
    );
    let r = c
        .put("/v1/desired_lrps/ok", &json!({"routes": deep_routes}).to_string())
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["name"], "InvalidRequest");
    assert_eq!(c.get("/v1/desired_lrps/ok").await.json()["routes"], json!({"r": [1]}));

    for domain in ["cf\u{0}apps", "tab\there", "bell\u{7}"] {
        let r = c.post("/v1/desired_lrps", &lrp("ctl", domain, run(), json!({}))).await;
        assert_eq!(r.status, 400, "{domain:?}: {}", r.body);
        assert_eq!(r.json()["message"], "Invalid field: domain");
        let r = c
            .post(
                "/v1/fresh_domains",
                &json!({"domain": domain, "ttl_in_seconds": 10}).to_string(),
            )
            .await;
        assert_eq!(r.status, 400, "{domain:?}: {}", r.body);
        assert_eq!(r.json()["name"], "InvalidDomain");
    }
    let r = c
        .post("/v1/desired_lrps", &lrp("nul\u{0}guid", "d", run(), json!({})))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        c.get("/v1/desired_lrps").await.json().as_array().map(Vec::len),
        Some(1),
        "only `ok` exists"
    );
    assert_eq!(c.get("/v1/fresh_domains").await.json(), json!([]));
}
