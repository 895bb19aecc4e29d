//! Cloud Foundry V3 with auth on, as CF users meet it: the unmodified Python `cloudfoundry-client`
//! library (PyPI, pinned in `tests/cf-client/requirements.txt`, installed by
//! `tests/cf-client/setup.sh`) reads the root document, logs in with the password grant and lists
//! organizations, spaces, apps and processes; a read-only user sees commands redacted and is
//! refused every write before any lookup (403 even for an unknown guid); CF roles from config
//! decide which spaces a user sees and changes, also through a follower of a 3-node cluster.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use capstan_tests::auth::AuthFixture;
use capstan_tests::cluster::Cluster;
use capstan_tests::Capstan;
use serde_json::{json, Value};

async fn send(c: &Capstan, method: reqwest::Method, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = c
        .client
        .request(method, c.url(path))
        .header("authorization", format!("bearer {token}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn cf_users_log_in_list_and_see_what_their_scope_allows() {
    let fx = AuthFixture::new("").expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fx.dev(&dir.path().join("data")).expect("capstan dev with auth");
    let writer = fx.login(&c, "writer", "writer-pw").await["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let reader = fx.login(&c, "reader", "reader-pw").await["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let (s, org) = send(
        &c,
        reqwest::Method::POST,
        "/v3/organizations",
        &writer,
        json!({"name": "acme"}),
    )
    .await;
    assert_eq!(s, 201, "{org}");
    let body = json!({"name": "dev", "relationships": {"organization": {"data": {"guid": org["guid"]}}}});
    let (s, space) = send(&c, reqwest::Method::POST, "/v3/spaces", &writer, body).await;
    assert_eq!(s, 201, "{space}");
    let body = json!({"name": "shop", "relationships": {"space": {"data": {"guid": space["guid"]}}}});
    let (s, app) = send(&c, reqwest::Method::POST, "/v3/apps", &writer, body).await;
    assert_eq!(s, 201, "{app}");
    let web_path = format!("/v3/apps/{}/processes/web", app["guid"].as_str().unwrap_or_default());
    let (s, web) = send(
        &c,
        reqwest::Method::PATCH,
        &web_path,
        &writer,
        json!({"command": "sleep 100"}),
    )
    .await;
    assert_eq!((s, web["command"].clone()), (200, json!("sleep 100")), "{web}");
    let web_guid = web["guid"].as_str().unwrap_or_default().to_owned();

    // A read-only user: the command is hidden, writes are refused before any lookup.
    let (s, seen) = send(&c, reqwest::Method::GET, &web_path, &reader, Value::Null).await;
    assert_eq!((s, seen["command"].clone()), (200, json!("[PRIVATE DATA HIDDEN]")));
    for path in [
        format!("/v3/processes/{web_guid}/actions/scale"),
        "/v3/processes/no-such-guid/actions/scale".to_owned(),
    ] {
        let (s, e) = send(&c, reqwest::Method::POST, &path, &reader, json!({"instances": 2})).await;
        assert_eq!(s, 403, "{path}: {e}");
        assert_eq!(e["errors"][0]["title"], "CF-NotAuthorized");
        assert_eq!(e["errors"][0]["code"], 10003);
    }
    let r = c.client.get(c.url("/v3/processes")).send().await.expect("no token");
    assert_eq!(r.status().as_u16(), 401);
    let e: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(e["errors"][0]["title"], "CF-NotAuthenticated");

    let Some(python) = capstan_tests::cf_client_python() else {
        eprintln!("SKIPPED the cloudfoundry-client part: the library could not be installed here (reason above)");
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/cf-client/list.py");
    for (user, password, command) in [
        ("writer", "writer-pw", "sleep 100"),
        ("reader", "reader-pw", "[PRIVATE DATA HIDDEN]"),
    ] {
        let out = Command::new(&python)
            .args([script, &c.http, user, password, &web_guid])
            .output()
            .expect("run the CF client");
        assert!(
            out.status.success(),
            "cloudfoundry-client as {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
        assert_eq!(v["organizations"], json!(["acme"]), "{v}");
        assert_eq!(v["spaces"], json!(["dev"]));
        assert_eq!(v["apps"], json!([["shop", "STOPPED"]]));
        assert_eq!(v["processes"], json!([["web", 1]]));
        assert_eq!(v["filtered"], json!([["web", 1]]), "types=web%2Cworker is two types");
        assert_eq!(
            v["apps_by_name"],
            json!(["shop"]),
            "names=shop%2Cno-such-app is two names"
        );
        assert_eq!(v["web"], command, "{user}");
    }
}

/// `POST /v3/processes/:guid/actions/scale` to `instances` as the holder of `token`.
async fn scale_as(c: &Capstan, guid: &str, token: &str, instances: i32) -> (u16, Value) {
    let path = format!("/v3/processes/{guid}/actions/scale");
    send(
        c,
        reqwest::Method::POST,
        &path,
        token,
        json!({ "instances": instances }),
    )
    .await
}

/// GET with a bearer token; (status, body).
async fn get(c: &Capstan, path: &str, token: &str) -> (u16, Value) {
    send(c, reqwest::Method::GET, path, token, Value::Null).await
}

#[tokio::test(flavor = "multi_thread")]
async fn space_roles_from_config_decide_what_a_user_sees_and_changes() {
    let fx = AuthFixture::new("").expect("fixture");
    fx.add_user("alice", "alice-pw", "capstan.write", &["space_developer:acme/dev"])
        .expect("alice");
    fx.add_user("bob", "bob-pw", "capstan.write", &["space_auditor:acme/dev"])
        .expect("bob");
    fx.add_user("carol", "carol-pw", "capstan.write", &["org_manager:acme"])
        .expect("carol");
    fx.add_user("olga", "olga-pw", "capstan.write", &["space_developer:other/x"])
        .expect("olga");
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fx.dev(&dir.path().join("data")).expect("capstan dev with auth");
    let admin = fx.token(&c, "admin", "admin-pw").await;
    let (s, org) = send(
        &c,
        reqwest::Method::POST,
        "/v3/organizations",
        &admin,
        json!({"name": "acme"}),
    )
    .await;
    assert_eq!(s, 201, "{org}");
    let mut web = Vec::new();
    for (space, app) in [("dev", "a"), ("prod", "b")] {
        let body = json!({"name": space, "relationships": {"organization": {"data": {"guid": org["guid"]}}}});
        let (_, sp) = send(&c, reqwest::Method::POST, "/v3/spaces", &admin, body).await;
        let body = json!({"name": app, "relationships": {"space": {"data": {"guid": sp["guid"]}}}});
        let (s, a) = send(&c, reqwest::Method::POST, "/v3/apps", &admin, body).await;
        assert_eq!(s, 201, "{a}");
        let path = format!("/v3/apps/{}/processes/web", a["guid"].as_str().unwrap_or_default());
        let (s, p) = send(
            &c,
            reqwest::Method::PATCH,
            &path,
            &admin,
            json!({"command": "sleep 100"}),
        )
        .await;
        assert_eq!(s, 200, "{p}");
        web.push(p["guid"].as_str().unwrap_or_default().to_owned());
    }
    let (dev_web, prod_web) = (&web[0], &web[1]);

    // A space developer: their space only; commands visible; writes there.
    let alice = fx.token(&c, "alice", "alice-pw").await;
    assert_eq!(capstan_tests::cf_names(&get(&c, "/v3/apps", &alice).await.1), ["a"]);
    assert_eq!(
        get(&c, "/v3/processes", &alice).await.1["pagination"]["total_results"],
        1
    );
    assert_eq!(get(&c, "/v3/spaces", &alice).await.1["pagination"]["total_results"], 1);
    let (s, p) = get(&c, &format!("/v3/processes/{dev_web}"), &alice).await;
    assert_eq!((s, p["command"].clone()), (200, json!("sleep 100")));
    assert_eq!(get(&c, &format!("/v3/processes/{prod_web}"), &alice).await.0, 404);
    let (s, e) = scale_as(&c, dev_web, &alice, 2).await;
    assert_eq!(s, 202, "{e}");
    let (s, e) = scale_as(&c, prod_web, &alice, 2).await;
    assert_eq!((s, e["errors"][0]["detail"].clone()), (404, json!("Process not found")));

    // A space auditor: sees the space, not the commands; no writes (403 after the lookup).
    let bob = fx.token(&c, "bob", "bob-pw").await;
    assert_eq!(capstan_tests::cf_names(&get(&c, "/v3/apps", &bob).await.1), ["a"]);
    let (s, p) = get(&c, &format!("/v3/processes/{dev_web}"), &bob).await;
    assert_eq!((s, p["command"].clone()), (200, json!("[PRIVATE DATA HIDDEN]")));
    let (s, e) = scale_as(&c, dev_web, &bob, 3).await;
    assert_eq!((s, e["errors"][0]["title"].clone()), (403, json!("CF-NotAuthorized")));

    // An org manager: every space of the org, no commands, no process writes; may add spaces.
    let carol = fx.token(&c, "carol", "carol-pw").await;
    let mut apps = capstan_tests::cf_names(&get(&c, "/v3/apps", &carol).await.1);
    apps.sort();
    assert_eq!(apps, ["a", "b"]);
    let (_, p) = get(&c, &format!("/v3/processes/{prod_web}"), &carol).await;
    assert_eq!(p["command"], "[PRIVATE DATA HIDDEN]");
    let (s, _) = scale_as(&c, prod_web, &carol, 3).await;
    assert_eq!(s, 403);
    let body = json!({"name": "qa", "relationships": {"organization": {"data": {"guid": org["guid"]}}}});
    let (s, e) = send(&c, reqwest::Method::POST, "/v3/spaces", &carol, body).await;
    assert_eq!(s, 201, "{e}");

    // A user whose roles name nothing that exists: empty lists, 404 for the rest.
    let olga = fx.token(&c, "olga", "olga-pw").await;
    let (s, l) = get(&c, "/v3/processes", &olga).await;
    assert_eq!((s, l["pagination"]["total_results"].clone()), (200, json!(0)));
    assert_eq!(get(&c, &format!("/v3/processes/{dev_web}/stats"), &olga).await.0, 404);
    assert_eq!(
        get(
            &c,
            &format!("/v3/organizations/{}", org["guid"].as_str().unwrap_or_default()),
            &olga
        )
        .await
        .0,
        404
    );

    // Nothing a refused call asked for happened.
    let (_, p) = get(&c, &format!("/v3/processes/{prod_web}"), &admin).await;
    assert_eq!(p["instances"], 1);
    let (_, p) = get(&c, &format!("/v3/processes/{dev_web}"), &admin).await;
    assert_eq!(p["instances"], 2);
}

/// Through a follower of a 3-node cluster with auth on, a CF call is served by the leader for the
/// caller who made it: the roles of the user apply there, not the forwarding node's credential.
#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_cf_call_keeps_its_callers_roles() {
    let fx = AuthFixture::new("").expect("fixture");
    fx.add_user("bob", "bob-pw", "capstan.write", &["space_auditor:acme/dev"])
        .expect("bob");
    let config = fx.config.display().to_string();
    let mut cluster = Cluster::start(3, &["--config", &config]).expect("cluster");
    let secret_file = fx.dir.path().join("cluster-secret").display().to_string();
    cluster.cli_args = vec!["--cluster-secret-file".into(), secret_file];
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let follower = *cluster.nodes.keys().find(|id| **id != leader).expect("a follower");
    let c = cluster.node(follower);
    let admin = fx.token(c, "admin", "admin-pw").await;
    let (s, org) = send(
        c,
        reqwest::Method::POST,
        "/v3/organizations",
        &admin,
        json!({"name": "acme"}),
    )
    .await;
    assert_eq!(s, 201, "{org}");
    for space in ["dev", "prod"] {
        let body = json!({"name": space, "relationships": {"organization": {"data": {"guid": org["guid"]}}}});
        let (s, sp) = send(c, reqwest::Method::POST, "/v3/spaces", &admin, body).await;
        assert_eq!(s, 201, "{sp}");
        let body = json!({"name": format!("app-{space}"), "relationships": {"space": {"data": {"guid": sp["guid"]}}}});
        let (s, a) = send(c, reqwest::Method::POST, "/v3/apps", &admin, body).await;
        assert_eq!(s, 201, "{a}");
    }
    let bob = fx.token(c, "bob", "bob-pw").await;
    let (s, apps) = send(c, reqwest::Method::GET, "/v3/apps", &bob, Value::Null).await;
    assert_eq!(s, 200, "{apps}");
    assert_eq!(
        capstan_tests::cf_names(&apps),
        ["app-dev"],
        "the follower forwarded the read with bob's identity"
    );
    let web = send(c, reqwest::Method::GET, "/v3/processes", &bob, Value::Null)
        .await
        .1;
    let g = web["resources"][0]["guid"].as_str().unwrap_or_default().to_owned();
    let path = format!("/v3/processes/{g}/actions/scale");
    let (s, e) = send(c, reqwest::Method::POST, &path, &bob, json!({"instances": 2})).await;
    assert_eq!((s, e["errors"][0]["title"].clone()), (403, json!("CF-NotAuthorized")));
    let (s, p) = send(
        c,
        reqwest::Method::GET,
        &format!("/v3/processes/{g}"),
        &bob,
        Value::Null,
    )
    .await;
    assert_eq!((s, p["command"].clone()), (200, json!("[PRIVATE DATA HIDDEN]")));
}

/// `tests/pyvenv.sh` on a python3 without its venv module (Debian without python3-venv): the skip
/// code 3 with the reason, never a failure — every Python-driven test then skips, saying why.
#[test]
fn a_python_without_venv_skips_the_python_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shim = dir.path().join("python3");
    std::fs::write(
        &shim,
        "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'ensurepip'\" >&2\nexit 1\n",
    )
    .expect("write shim");
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg(root.join("tests/pyvenv.sh"))
        .arg(dir.path().join("venv"))
        .arg(root.join("tests/cf-client/requirements.txt"))
        .env("PATH", path)
        .env("PYVENV_NO_INSTALL", "1")
        .output()
        .expect("run pyvenv.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("SKIPPED") && stderr.contains("python3-venv"),
        "{stderr}"
    );
}
