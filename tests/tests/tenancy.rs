//! The tenancy model against a real `capstan dev` with auth on (ARCHITECTURE.md, "Tenancy"): a CF
//! user — one with `cf_roles`, or one holding only `cloud_controller.*` scopes — reaches the CF
//! family and nothing else, so another org's app cannot be listed, scaled or deleted through
//! Receptor; and the DesiredLRP behind a CF process belongs to the CF family: Receptor writes to
//! it are refused (an instance kill: for all but an admin), so `/v1` and `/v3` never disagree.

use capstan_tests::auth::AuthFixture;
use capstan_tests::Capstan;
use serde_json::{json, Value};

async fn send(c: &Capstan, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = c
        .client
        .request(m, c.url(path))
        .header("authorization", format!("bearer {token}"))
        .header("content-type", "application/json");
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = r.status().as_u16();
    if path.starts_with("/v1/events") && status == 200 {
        return (status, Value::Null);
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

fn token(v: &Value) -> String {
    v["access_token"].as_str().unwrap_or_default().to_owned()
}

fn guid(v: &Value) -> String {
    v["guid"].as_str().unwrap_or_default().to_owned()
}

/// An org with a space and a started app (its web process: one instance); the app's web process
/// and the process_guid of the DesiredLRP that runs it.
async fn started_app(c: &Capstan, admin: &str, org: &str, space: &str, app: &str) -> (String, String) {
    let (s, o) = send(c, "POST", "/v3/organizations", admin, Some(json!({"name": org}))).await;
    assert_eq!(s, 201, "{o}");
    let body = json!({"name": space, "relationships": {"organization": {"data": {"guid": guid(&o)}}}});
    let (s, sp) = send(c, "POST", "/v3/spaces", admin, Some(body)).await;
    assert_eq!(s, 201, "{sp}");
    let body = json!({"name": app, "relationships": {"space": {"data": {"guid": guid(&sp)}}}});
    let (s, a) = send(c, "POST", "/v3/apps", admin, Some(body)).await;
    assert_eq!(s, 201, "{a}");
    let web = format!("/v3/apps/{}/processes/web", guid(&a));
    let (s, p) = send(c, "PATCH", &web, admin, Some(json!({"command": "sleep 1000"}))).await;
    assert_eq!(s, 200, "{p}");
    let start = format!("/v3/apps/{}/actions/start", guid(&a));
    let (s, started) = send(c, "POST", &start, admin, Some(json!({}))).await;
    assert_eq!(s, 200, "{started}");
    let (s, lrps) = send(c, "GET", "/v1/domains/cf-apps/desired_lrps", admin, None).await;
    assert_eq!(s, 200, "{lrps}");
    let process_guid = lrps
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["process_guid"].as_str())
        .find(|g| g.starts_with(&guid(&p)))
        .unwrap_or_else(|| panic!("no DesiredLRP for process {}: {lrps}", guid(&p)))
        .to_owned();
    (guid(&p), process_guid)
}

/// The auth fixture with alice, a CF developer (the configuration the example file shows for one:
/// capstan.write + roles) in acme/dev, and carl, who holds only `cloud_controller.read`.
fn tenants() -> AuthFixture {
    let fx = AuthFixture::new("").expect("fixture");
    fx.add_user("alice", "alice-pw", "capstan.write", &["space_developer:acme/dev"])
        .expect("alice");
    fx.add_user("carl", "carl-pw", "cloud_controller.read", &[])
        .expect("carl");
    fx
}

#[tokio::test]
async fn a_cf_user_cannot_reach_another_tenants_app_through_receptor() {
    let fx = tenants();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fx.dev(&dir.path().join("data")).expect("capstan dev with auth");
    let admin = fx.token(&c, "admin", "admin-pw").await;
    let writer = fx.token(&c, "writer", "writer-pw").await;
    let alice_login = fx.login(&c, "alice", "alice-pw").await;
    assert_eq!(
        alice_login["scope"], "cloud_controller.write",
        "a user with CF roles is a CF user: {alice_login}"
    );
    let alice = token(&alice_login);
    let carl = fx.token(&c, "carl", "carl-pw").await;

    let (_own, _own_lrp) = started_app(&c, &admin, "acme", "dev", "shop").await;
    let (payroll, payroll_lrp) = started_app(&c, &admin, "other", "x", "payroll").await;
    let lrp_path = format!("/v1/desired_lrps/{payroll_lrp}");

    // The exact sequence of the report, as alice: every Receptor door is shut, in Receptor's shape.
    for (who, t) in [("alice", &alice), ("carl", &carl)] {
        for (method, path, body) in [
            ("GET", "/v1/desired_lrps".to_owned(), None),
            ("GET", lrp_path.clone(), None),
            ("PUT", lrp_path.clone(), Some(json!({"instances": 0}))),
            ("DELETE", lrp_path.clone(), None),
            ("DELETE", format!("/v1/actual_lrps/{payroll_lrp}/index/0"), None),
            ("GET", "/v1/actual_lrps".to_owned(), None),
            ("GET", "/v1/events".to_owned(), None),
            ("GET", "/v1/cells".to_owned(), None),
            ("GET", "/api/v1/task".to_owned(), None),
        ] {
            let (s, e) = send(&c, method, &path, t, body).await;
            assert_eq!(s, 403, "{who}: {method} {path}: {e}");
            let shape = if path.starts_with("/api") {
                e["error"].as_str().is_some()
            } else {
                e["name"] == "Forbidden" && e["message"].as_str().is_some()
            };
            assert!(shape, "{who}: {method} {path}: the family's error shape: {e}");
        }
    }
    // Inside /v3 the roles decide: alice sees her space's app and not the other org's.
    let (s, apps) = send(&c, "GET", "/v3/apps", &alice, None).await;
    assert_eq!(s, 200, "{apps}");
    assert_eq!(capstan_tests::cf_names(&apps), ["shop"]);
    let (s, _) = send(&c, "GET", &format!("/v3/processes/{payroll}"), &alice, None).await;
    assert_eq!(s, 404, "another org's process does not exist for alice");
    // carl (cloud_controller.read, no roles) reads CF and writes nothing
    let (s, _) = send(&c, "GET", "/v3/apps", &carl, None).await;
    assert_eq!(s, 200);
    let scale = format!("/v3/processes/{payroll}/actions/scale");
    let (s, e) = send(&c, "POST", &scale, &carl, Some(json!({"instances": 0}))).await;
    assert_eq!((s, e["errors"][0]["title"].clone()), (403, json!("CF-NotAuthorized")));

    // An operator cannot change a CF process's LRP behind CF's back either: refused, naming it.
    for t in [&writer, &admin] {
        for (method, body) in [("PUT", Some(json!({"instances": 0}))), ("DELETE", None)] {
            let (s, e) = send(&c, method, &lrp_path, t, body).await;
            assert_eq!((s, e["name"].clone()), (403, json!("Forbidden")), "{method}: {e}");
            let m = e["message"].as_str().unwrap_or_default();
            assert!(
                m.contains(&payroll) && m.contains("payroll") && m.contains("/v3"),
                "{m}"
            );
        }
        // a re-POST (Receptor's update by create) of that guid is the same write
        let (s, lrp) = send(&c, "GET", &lrp_path, t, None).await;
        assert_eq!(s, 200, "operators read it: {lrp}");
        let (s, e) = send(&c, "POST", "/v1/desired_lrps", t, Some(lrp)).await;
        assert_eq!((s, e["name"].clone()), (403, json!("Forbidden")), "{e}");
    }
    // Killing one instance: an admin may (it changes no desired state), a writer may not.
    let kill = format!("/v1/actual_lrps/{payroll_lrp}/index/0");
    let (s, e) = send(&c, "DELETE", &kill, &writer, None).await;
    assert_eq!((s, e["name"].clone()), (403, json!("Forbidden")), "{e}");
    assert!(
        e["message"].as_str().unwrap_or_default().contains("/v3/processes/"),
        "{e}"
    );
    let (s, e) = send(&c, "DELETE", &kill, &admin, None).await;
    assert_eq!(s, 204, "{e}");

    // The two families still agree about payroll's web process: started, one instance.
    let (s, p) = send(&c, "GET", &format!("/v3/processes/{payroll}"), &admin, None).await;
    assert_eq!((s, p["instances"].clone()), (200, json!(1)), "{p}");
    let (s, d) = send(&c, "GET", &lrp_path, &admin, None).await;
    assert_eq!((s, d["instances"].clone()), (200, json!(1)), "{d}");

    // Every refusal is counted: the guard's (alice, carl) and the CF-owned writes.
    let metrics = c.get("/metrics").await.body;
    for kind in ["forbidden", "cf_owned"] {
        let line = format!("capstan_auth_refusals_total{{kind=\"{kind}\"}}");
        assert!(metrics.contains(&line), "{line} in /metrics");
    }

    // Receptor's own LRPs stay Receptor's: an operator writes them as before.
    let lrp = capstan_tests::lrp_json("receptor-own", "tests", 1);
    let (s, e) = send(&c, "POST", "/v1/desired_lrps", &writer, serde_json::from_str(&lrp).ok()).await;
    assert_eq!(s, 201, "{e}");
    let (s, e) = send(
        &c,
        "PUT",
        "/v1/desired_lrps/receptor-own",
        &writer,
        Some(json!({"instances": 2})),
    )
    .await;
    assert_eq!(s, 204, "{e}");
    let (s, e) = send(&c, "DELETE", "/v1/desired_lrps/receptor-own", &writer, None).await;
    assert_eq!(s, 204, "{e}");
}

/// A call a follower sends on to the leader is the caller's own there: its user, scopes and roles
/// travel with it (ARCHITECTURE.md, `api/leader.rs`), so a CF user's linearizable list through a
/// follower shows her space only, her writes land in her space only, and a reader writes nothing.
#[tokio::test]
async fn through_a_follower_a_caller_is_the_one_the_first_node_saw() {
    use capstan_tests::cluster::Cluster;
    use std::time::Duration;

    let fx = tenants();
    let cfg = fx.config.to_str().expect("utf-8").to_owned();
    let mut c = Cluster::start(3, &["--config", &cfg]).expect("cluster");
    let secret_file = fx.dir.path().join("cluster-secret").display().to_string();
    c.cli_args = vec!["--cluster-secret-file".into(), secret_file];
    let leader = c.leader(Duration::from_secs(30)).await;
    let f = c.node(if leader == 1 { 2 } else { 1 });
    let admin = fx.token(f, "admin", "admin-pw").await;
    let alice = fx.token(f, "alice", "alice-pw").await;
    let carl = fx.token(f, "carl", "carl-pw").await;
    // every write of the set-up goes through the follower too, as the admin
    let (own, _) = started_app(f, &admin, "acme", "dev", "shop").await;
    let (payroll, payroll_lrp) = started_app(f, &admin, "other", "x", "payroll").await;

    for consistency in ["linearizable", "stale"] {
        let r = f
            .client
            .get(f.url("/v3/apps"))
            .header("authorization", format!("bearer {alice}"))
            .header("x-capstan-consistency", consistency)
            .send()
            .await
            .expect("list apps");
        assert_eq!(r.status().as_u16(), 200);
        let apps: Value = r.json().await.expect("json");
        let names = capstan_tests::cf_names(&apps);
        assert!(
            names == ["shop"] || (consistency == "stale" && names.is_empty()),
            "{consistency}: alice sees her space's app only: {names:?}"
        );
    }
    let scale = |p: &str| format!("/v3/processes/{p}/actions/scale");
    let (s, e) = send(f, "POST", &scale(&own), &alice, Some(json!({"instances": 2}))).await;
    assert_eq!(s, 202, "alice scales her own process through the follower: {e}");
    let (s, e) = send(f, "POST", &scale(&payroll), &alice, Some(json!({"instances": 0}))).await;
    assert_eq!(
        s, 404,
        "another org's process does not exist for alice on the leader either: {e}"
    );
    let (s, e) = send(f, "POST", &scale(&own), &carl, Some(json!({"instances": 0}))).await;
    assert_eq!(
        (s, e["errors"][0]["title"].clone()),
        (403, json!("CF-NotAuthorized")),
        "{e}"
    );
    let (s, e) = send(f, "DELETE", &format!("/v1/desired_lrps/{payroll_lrp}"), &alice, None).await;
    assert_eq!(s, 403, "{e}");
    // and what the leader wrote is what alice asked for, read back through the leader
    let (s, p) = send(c.node(leader), "GET", &format!("/v3/processes/{own}"), &admin, None).await;
    assert_eq!((s, p["instances"].clone()), (200, json!(2)), "{p}");
}
