//! The Receptor LRP API against a real `capstan dev` process, route by route: every success and
//! every documented error, and that a refused request changed nothing.

use std::time::Duration;

use capstan_tests::{lrp_json, wait_for, Capstan, Reply};
use serde_json::{json, Value};

fn dev() -> (tempfile::TempDir, Capstan) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev(&dir.path().join("data")).expect("capstan dev starts");
    (dir, c)
}

fn assert_error(r: &Reply, status: u16, name: &str) {
    assert_eq!(r.status, status, "status of {r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = r.json();
    assert_eq!(v["name"], name, "{r:?}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{r:?}");
}

/// Everything a user can read, for "nothing changed" comparisons.
async fn everything(c: &Capstan) -> (Value, Value, Value) {
    (
        c.get("/v1/desired_lrps").await.json(),
        c.get("/v1/actual_lrps").await.json(),
        c.get("/v1/fresh_domains").await.json(),
    )
}

#[tokio::test]
async fn desired_lrp_create_get_list_update_delete() {
    let (_d, c) = dev();
    let r = c.post("/v1/desired_lrps", &lrp_json("web", "cf-apps", 2)).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(
        c.post("/v1/desired_lrps", &lrp_json("worker", "other", 1)).await.status,
        201
    );

    let got = c.get("/v1/desired_lrps/web").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/json"));
    let d = got.json();
    assert_eq!(d["process_guid"], "web");
    assert_eq!(d["instances"], 2);
    assert_eq!(d["ports"], json!([8080]));
    assert_eq!(d["routes"]["cf-router"][0]["port"], 8080);
    assert_eq!(d["setup"], Value::Null);
    assert_eq!(d["modification_tag"]["index"], 0);
    assert!(d.get("annotation").is_none() && d.get("env").is_none() && d.get("egress_rules").is_none());
    let keys: Vec<&str> = d
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert!(keys.contains(&"modification_tag") && keys.contains(&"log_guid"));

    assert_eq!(c.get("/v1/desired_lrps").await.json().as_array().map(Vec::len), Some(2));
    for path in [
        "/v1/desired_lrps?domain=cf-apps",
        "/v1/domain/cf-apps/desired_lrps",
        "/v1/domains/cf-apps/desired_lrps",
    ] {
        let list = c.get(path).await.json();
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{path}");
        assert_eq!(list[0]["process_guid"], "web", "{path}");
    }
    assert_eq!(c.get("/v1/desired_lrps?domain=nope").await.json(), json!([]));

    let r = c
        .put(
            "/v1/desired_lrps/web",
            r#"{"instances":3,"annotation":"hello","routes":{"x":1}}"#,
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let d = c.get("/v1/desired_lrps/web").await.json();
    assert_eq!(d["instances"], 3);
    assert_eq!(d["annotation"], "hello");
    assert_eq!(d["routes"], json!({"x": 1}));
    assert_eq!(d["modification_tag"]["index"], 1);
    assert_eq!(
        c.get("/v1/desired_lrps/web/actual_lrps")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // An update with no keys changes nothing but the tag.
    assert_eq!(c.put("/v1/desired_lrps/web", "{}").await.status, 204);
    assert_eq!(c.get("/v1/desired_lrps/web").await.json()["instances"], 3);

    assert_eq!(c.delete("/v1/desired_lrps/web").await.status, 204);
    assert_error(&c.get("/v1/desired_lrps/web").await, 404, "DesiredLRPNotFound");
    assert_eq!(c.get("/v1/actual_lrps/web").await.json(), json!([]));
    assert_error(&c.delete("/v1/desired_lrps/web").await, 404, "DesiredLRPNotFound");
}

#[tokio::test]
async fn create_errors_change_nothing() {
    let (_d, c) = dev();
    assert_eq!(
        c.post("/v1/desired_lrps", &lrp_json("web", "cf-apps", 1)).await.status,
        201
    );
    let before = everything(&c).await;

    for bad in ["", "{", "[1,2]", r#"{"instances":"two"}"#, r#"{"ports":[70000]}"#] {
        assert_error(&c.post("/v1/desired_lrps", bad).await, 400, "InvalidJSON");
    }
    let r = c
        .post(
            "/v1/desired_lrps",
            r#"{"process_guid":"bad guid","domain":"d","rootfs":""}"#,
        )
        .await;
    assert_error(&r, 400, "InvalidLRP");
    assert_eq!(
        r.json()["message"],
        "Invalid field: process_guid, Invalid field: rootfs, Invalid field: rootfs, invalid action type"
    );
    let mut no_action: Value = serde_json::from_str(&lrp_json("x", "d", 1)).expect("json");
    no_action["action"] = Value::Null;
    let r = c.post("/v1/desired_lrps", &no_action.to_string()).await;
    assert_error(&r, 400, "InvalidLRP");
    assert_eq!(r.json()["message"], "invalid action type");
    let mut big: Value = serde_json::from_str(&lrp_json("x", "d", -1)).expect("json");
    big["annotation"] = json!("a".repeat(10 * 1024 + 1));
    big["cpu_weight"] = json!(101);
    assert_eq!(
        c.post("/v1/desired_lrps", &big.to_string()).await.json()["message"],
        "Invalid field: instances, Invalid field: cpu_weight, Invalid field: annotation"
    );

    // Same guid, a field outside the update request differs: 409 naming it.
    let mut changed: Value = serde_json::from_str(&lrp_json("web", "cf-apps", 1)).expect("json");
    changed["rootfs"] = json!("preloaded:other");
    let r = c.post("/v1/desired_lrps", &changed.to_string()).await;
    assert_error(&r, 409, "DesiredLRPAlreadyExists");
    assert!(
        r.json()["message"].as_str().is_some_and(|m| m.contains("rootfs")),
        "{r:?}"
    );

    assert_eq!(everything(&c).await, before, "refused requests changed nothing");

    // Same guid, only update fields differ: applied as an update, 200.
    let r = c.post("/v1/desired_lrps", &lrp_json("web", "cf-apps", 4)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let d = c.get("/v1/desired_lrps/web").await.json();
    assert_eq!(
        (d["instances"].clone(), d["modification_tag"]["index"].clone()),
        (json!(4), json!(1))
    );
}

#[tokio::test]
async fn update_errors_change_nothing() {
    let (_d, c) = dev();
    assert_eq!(
        c.post("/v1/desired_lrps", &lrp_json("web", "cf-apps", 1)).await.status,
        201
    );
    let before = everything(&c).await;
    assert_error(&c.put("/v1/desired_lrps/web", "{").await, 400, "InvalidJSON");
    assert_error(
        &c.put("/v1/desired_lrps/web", r#"{"instances":-1}"#).await,
        400,
        "InvalidRequest",
    );
    let long = json!({"annotation": "a".repeat(10 * 1024 + 1)}).to_string();
    assert_error(&c.put("/v1/desired_lrps/web", &long).await, 400, "InvalidRequest");
    let routes = json!({"routes": {"r": "x".repeat(4 * 1024)}}).to_string();
    let r = c.put("/v1/desired_lrps/web", &routes).await;
    assert_error(&r, 400, "InvalidRequest");
    assert_eq!(r.json()["message"], "Invalid field: routes");
    assert_error(
        &c.put("/v1/desired_lrps/nope", r#"{"instances":1}"#).await,
        404,
        "DesiredLRPNotFound",
    );
    assert_eq!(everything(&c).await, before);
}

#[tokio::test]
async fn actual_lrps_are_unclaimed_and_follow_desired_state() {
    let (_d, c) = dev();
    assert_eq!(
        c.post("/v1/desired_lrps", &lrp_json("web", "cf-apps", 3)).await.status,
        201
    );
    assert_eq!(c.post("/v1/desired_lrps", &lrp_json("db", "data", 1)).await.status, 201);
    let all = c.get("/v1/actual_lrps").await.json();
    assert_eq!(all.as_array().map(Vec::len), Some(4));
    let web = c.get("/v1/actual_lrps/web").await.json();
    let indices: Vec<i64> = web
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["index"].as_i64())
        .collect();
    assert_eq!(indices, vec![0, 1, 2]);
    let a = &web[1];
    assert_eq!(a["state"], "UNCLAIMED");
    assert_eq!(a["instance_guid"], "");
    assert_eq!(a["cell_id"], "");
    assert_eq!(a["domain"], "cf-apps");
    assert_eq!(a["ports"], json!([]));
    assert_eq!(a["evacuating"], false);
    assert!(
        a["since"].as_i64().is_some_and(|s| s > 1_600_000_000_000_000_000),
        "since is Unix ns: {a}"
    );
    // With no cell at all the scheduler records why it cannot place the instance.
    let placed = wait_for("a placement error on the instance", Duration::from_secs(10), || async {
        let a = c.get("/v1/actual_lrps/web/index/1").await.json();
        (a["placement_error"] == "found no compatible cells").then_some(a)
    })
    .await;
    assert_eq!(placed["state"], "UNCLAIMED");
    assert_eq!(placed["modification_tag"]["index"], 1);
    assert_eq!(placed["modification_tag"]["epoch"], a["modification_tag"]["epoch"]);

    for path in ["/v1/actual_lrps?domain=data", "/v1/domains/data/actual_lrps"] {
        let l = c.get(path).await.json();
        assert_eq!(l.as_array().map(Vec::len), Some(1), "{path}");
        assert_eq!(l[0]["process_guid"], "db");
    }
    let one = c.get("/v1/actual_lrps/web/index/2").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["index"], 2);
    let at = c.get("/v1/desired_lrps/web/actual_lrps?index=1").await.json();
    assert_eq!(
        (at.as_array().map(Vec::len), at[0]["index"].clone()),
        (Some(1), json!(1))
    );
    assert_eq!(
        c.get("/v1/desired_lrps/web/actual_lrps?index=9").await.json(),
        json!([])
    );
    assert_eq!(c.get("/v1/actual_lrps/unknown").await.json(), json!([]));
    assert_error(
        &c.get("/v1/actual_lrps/web/index/9").await,
        404,
        "ActualLRPIndexNotFound",
    );
    assert_error(&c.get("/v1/actual_lrps/web/index/x").await, 400, "InvalidRequest");
    assert_error(
        &c.get("/v1/desired_lrps/web/actual_lrps?index=x").await,
        400,
        "InvalidRequest",
    );

    // Scale down removes indices ≥ N; scale up adds them back with new epochs.
    assert_eq!(c.put("/v1/desired_lrps/web", r#"{"instances":1}"#).await.status, 204);
    assert_eq!(
        c.get("/v1/actual_lrps/web").await.json().as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(c.put("/v1/desired_lrps/web", r#"{"instances":2}"#).await.status, 204);
    let web = c.get("/v1/actual_lrps/web").await.json();
    assert_eq!(web.as_array().map(Vec::len), Some(2));
    assert_ne!(web[1]["modification_tag"]["epoch"], a["modification_tag"]["epoch"]);
}

#[tokio::test]
async fn kill_an_instance_brings_the_index_back_with_a_new_epoch() {
    let (_d, c) = dev();
    assert_eq!(
        c.post("/v1/desired_lrps", &lrp_json("web", "cf-apps", 2)).await.status,
        201
    );
    let desired_before = c.get("/v1/desired_lrps/web").await.json();
    let before = c.get("/v1/actual_lrps/web/index/1").await.json();

    let r = c.delete("/v1/desired_lrps/web/actual_lrps?index=1").await;
    assert_eq!(r.status, 204, "{r:?}");
    let after = c.get("/v1/actual_lrps/web/index/1").await.json();
    assert_eq!(after["state"], "UNCLAIMED");
    assert_ne!(after["modification_tag"]["epoch"], before["modification_tag"]["epoch"]);
    assert_eq!(
        c.get("/v1/desired_lrps/web").await.json(),
        desired_before,
        "desired state unchanged"
    );

    assert_eq!(c.delete("/v1/actual_lrps/web/index/0").await.status, 204);
    let unchanged = everything(&c).await;
    assert_error(
        &c.delete("/v1/desired_lrps/web/actual_lrps").await,
        400,
        "InvalidRequest",
    );
    assert_error(
        &c.delete("/v1/desired_lrps/web/actual_lrps?index=abc").await,
        400,
        "InvalidRequest",
    );
    assert_error(
        &c.delete("/v1/desired_lrps/web/actual_lrps?index=5").await,
        404,
        "ActualLRPIndexNotFound",
    );
    assert_error(
        &c.delete("/v1/actual_lrps/nope/index/0").await,
        404,
        "ActualLRPIndexNotFound",
    );
    assert_error(&c.delete("/v1/actual_lrps/web/index/-1").await, 400, "InvalidRequest");
    assert_eq!(everything(&c).await, unchanged);
}

#[tokio::test]
async fn fresh_domains_both_route_sets_and_expiry() {
    let (_d, c) = dev();
    assert_eq!(c.get("/v1/fresh_domains").await.json(), json!([]));
    assert_eq!(c.get("/v1/domains").await.json(), json!([]));
    let r = c
        .post("/v1/fresh_domains", r#"{"domain":"cf-apps","ttl_in_seconds":0}"#)
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let r = c.request(reqwest::Method::PUT, "/v1/domains/short", None).await;
    assert_eq!(r.status, 204);
    let r = c
        .client
        .put(c.url("/v1/domains/brief"))
        .header("cache-control", "max-age=1")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(c.get("/v1/domains").await.json(), json!(["brief", "cf-apps", "short"]));
    assert_eq!(
        c.get("/v1/fresh_domains").await.json(),
        json!([{"domain":"brief","ttl_in_seconds":1},{"domain":"cf-apps","ttl_in_seconds":0},{"domain":"short","ttl_in_seconds":0}])
    );
    // The 1-second domain expires; the others never do.
    wait_for("domain 'brief' to expire", Duration::from_secs(10), || async {
        (c.get("/v1/domains").await.json() == json!(["cf-apps", "short"])).then_some(())
    })
    .await;

    let before = everything(&c).await;
    assert_error(
        &c.post("/v1/fresh_domains", r#"{"domain":"x","ttl_in_seconds":-1}"#)
            .await,
        400,
        "InvalidDomain",
    );
    assert_error(
        &c.post("/v1/fresh_domains", r#"{"ttl_in_seconds":5}"#).await,
        400,
        "InvalidDomain",
    );
    assert_error(&c.post("/v1/fresh_domains", "nope").await, 400, "InvalidJSON");
    for (cc, msg) in [
        ("no-cache, max-age=5", "max-age directive missing from request"),
        ("max-age=abc", "invalid-max-age-directive: max-age=abc"),
    ] {
        let r = c
            .client
            .put(c.url("/v1/domains/x"))
            .header("cache-control", cc)
            .send()
            .await
            .expect("put");
        assert_eq!(r.status().as_u16(), 400);
        let v: Value = r.json().await.expect("json");
        assert_eq!(
            (v["name"].as_str(), v["message"].as_str()),
            (Some("InvalidRequest"), Some(msg))
        );
    }
    let r = c
        .client
        .put(c.url("/v1/domains/x"))
        .header("cache-control", "max-age=-3")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(everything(&c).await, before);
}

#[tokio::test]
async fn routing_methods_paths_and_limits() {
    let (_d, c) = dev();
    let r = c.request(reqwest::Method::PATCH, "/v1/desired_lrps", None).await;
    assert_eq!(r.status, 405);
    let allow = r.header("allow").unwrap_or_default().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(
        c.request(reqwest::Method::POST, "/v1/actual_lrps", None).await.status,
        405
    );
    assert_eq!(
        r.json()["name"],
        "InvalidRequest",
        "405 in Receptor's shape: {}",
        r.body
    );
    let r = c.get("/v1/nothing-here").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["name"], "ResourceNotFound");
    let r = c.get("/elsewhere").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "404 page not found\n"),
        "outside every family"
    );
    assert_eq!(c.get("/v1/desired_lrps/").await.status, 404, "trailing slash");
    let head = c.request(reqwest::Method::HEAD, "/v1/desired_lrps", None).await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));

    let huge = format!(r#"{{"annotation":"{}"}}"#, "a".repeat(1024 * 1024));
    let r = c.post("/v1/desired_lrps", &huge).await;
    assert_error(&r, 413, "InvalidRequest");
    assert_eq!(c.get("/v1/desired_lrps").await.json(), json!([]));

    // Unknown fields are ignored.
    let mut extra: Value = serde_json::from_str(&lrp_json("x", "d", 0)).expect("json");
    extra["surprise"] = json!({"deep": [1, 2]});
    assert_eq!(c.post("/v1/desired_lrps", &extra.to_string()).await.status, 201);
}

#[tokio::test]
async fn stale_reads_are_served_on_request() {
    let (_d, c) = dev();
    assert_eq!(
        c.post("/v1/desired_lrps", &lrp_json("web", "cf-apps", 1)).await.status,
        201
    );
    let r = c
        .client
        .get(c.url("/v1/desired_lrps/web"))
        .header("x-capstan-consistency", "stale")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
}
