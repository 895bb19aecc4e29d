//! Auth against a real `capstan dev` with auth on: the matrix of every REST route of every family
//! × every kind of caller (the route list is checked against the gateway's source, so a new route
//! cannot skip it), the CF login flow, refresh, and the internal gRPC services refusing anonymous
//! cells, peers and admins.

use std::collections::BTreeSet;

use capstan_proto::pb;
use capstan_tests::auth::{cell_record, AuthFixture, USERS};
use capstan_tests::Capstan;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Needs {
    Read,
    Write,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Receptor,
    Flotilla,
    Cf,
}

/// Every REST route that reaches a node, with the scope it needs: (method, path template).
/// Templates are written as in the gateway's routers, under their family's prefix.
const ROUTES: &[(&str, &str, Needs)] = &[
    // Receptor (/v1)
    ("GET", "/v1/desired_lrps", Needs::Read),
    ("POST", "/v1/desired_lrps", Needs::Write),
    ("GET", "/v1/desired_lrps/{process_guid}", Needs::Read),
    ("PUT", "/v1/desired_lrps/{process_guid}", Needs::Write),
    ("DELETE", "/v1/desired_lrps/{process_guid}", Needs::Write),
    ("GET", "/v1/domain/{domain}/desired_lrps", Needs::Read),
    ("GET", "/v1/domains/{domain}/desired_lrps", Needs::Read),
    ("GET", "/v1/actual_lrps", Needs::Read),
    ("GET", "/v1/domains/{domain}/actual_lrps", Needs::Read),
    ("GET", "/v1/actual_lrps/{process_guid}", Needs::Read),
    ("GET", "/v1/actual_lrps/{process_guid}/index/{index}", Needs::Read),
    ("DELETE", "/v1/actual_lrps/{process_guid}/index/{index}", Needs::Write),
    ("GET", "/v1/desired_lrps/{process_guid}/actual_lrps", Needs::Read),
    ("DELETE", "/v1/desired_lrps/{process_guid}/actual_lrps", Needs::Write),
    ("GET", "/v1/fresh_domains", Needs::Read),
    ("POST", "/v1/fresh_domains", Needs::Write),
    ("GET", "/v1/domains", Needs::Read),
    ("PUT", "/v1/domains/{domain}", Needs::Write),
    ("GET", "/v1/cells", Needs::Read),
    ("GET", "/v1/tasks", Needs::Read),
    ("POST", "/v1/tasks", Needs::Write),
    ("GET", "/v1/tasks/{task_guid}", Needs::Read),
    ("DELETE", "/v1/tasks/{task_guid}", Needs::Write),
    ("POST", "/v1/tasks/{task_guid}/cancel", Needs::Write),
    ("GET", "/v1/events", Needs::Read),
    // Flotilla (/api/v1; the same routes are served under /api/v6)
    ("GET", "/api/v1/task", Needs::Read),
    ("POST", "/api/v1/task", Needs::Write),
    ("GET", "/api/v1/task/{definition_id}", Needs::Read),
    ("PUT", "/api/v1/task/{definition_id}", Needs::Write),
    ("DELETE", "/api/v1/task/{definition_id}", Needs::Write),
    ("GET", "/api/v1/task/alias/{alias}", Needs::Read),
    ("PUT", "/api/v1/task/{definition_id}/execute", Needs::Write),
    ("PUT", "/api/v1/task/alias/{alias}/execute", Needs::Write),
    ("GET", "/api/v1/task/{definition_id}/history", Needs::Read),
    ("GET", "/api/v1/task/{definition_id}/history/{run_id}", Needs::Read),
    ("DELETE", "/api/v1/task/{definition_id}/history/{run_id}", Needs::Write),
    ("GET", "/api/v1/task/history/{run_id}", Needs::Read),
    ("GET", "/api/v1/history", Needs::Read),
    ("GET", "/api/v1/history/{run_id}", Needs::Read),
    ("GET", "/api/v1/{run_id}/logs", Needs::Read),
    ("GET", "/api/v1/groups", Needs::Read),
    ("GET", "/api/v1/tags", Needs::Read),
    ("GET", "/api/v1/clusters", Needs::Read),
    // Cloud Foundry V3 (/v3)
    ("GET", "/v3/organizations", Needs::Read),
    ("POST", "/v3/organizations", Needs::Write),
    ("GET", "/v3/organizations/{guid}", Needs::Read),
    ("PATCH", "/v3/organizations/{guid}", Needs::Write),
    ("DELETE", "/v3/organizations/{guid}", Needs::Write),
    ("GET", "/v3/spaces", Needs::Read),
    ("POST", "/v3/spaces", Needs::Write),
    ("GET", "/v3/spaces/{guid}", Needs::Read),
    ("PATCH", "/v3/spaces/{guid}", Needs::Write),
    ("DELETE", "/v3/spaces/{guid}", Needs::Write),
    ("POST", "/v3/spaces/{guid}/actions/apply_manifest", Needs::Write),
    ("GET", "/v3/apps", Needs::Read),
    ("POST", "/v3/apps", Needs::Write),
    ("GET", "/v3/apps/{guid}", Needs::Read),
    ("PATCH", "/v3/apps/{guid}", Needs::Write),
    ("DELETE", "/v3/apps/{guid}", Needs::Write),
    ("POST", "/v3/apps/{guid}/actions/start", Needs::Write),
    ("POST", "/v3/apps/{guid}/actions/stop", Needs::Write),
    ("GET", "/v3/apps/{guid}/processes", Needs::Read),
    ("GET", "/v3/apps/{guid}/processes/{type}", Needs::Read),
    ("PATCH", "/v3/apps/{guid}/processes/{type}", Needs::Write),
    ("GET", "/v3/apps/{guid}/processes/{type}/stats", Needs::Read),
    ("POST", "/v3/apps/{guid}/processes/{type}/actions/scale", Needs::Write),
    (
        "DELETE",
        "/v3/apps/{guid}/processes/{type}/instances/{index}",
        Needs::Write,
    ),
    ("GET", "/v3/jobs/{guid}", Needs::Read),
    ("GET", "/v3/processes", Needs::Read),
    ("GET", "/v3/processes/{guid}", Needs::Read),
    ("PATCH", "/v3/processes/{guid}", Needs::Write),
    ("GET", "/v3/processes/{guid}/stats", Needs::Read),
    ("GET", "/v3/processes/{guid}/process_instances", Needs::Read),
    ("POST", "/v3/processes/{guid}/actions/scale", Needs::Write),
    ("DELETE", "/v3/processes/{guid}/instances/{index}", Needs::Write),
];

/// Routes that are open by design: what a client reads to log in, and what probes and scrapers read.
const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/v3"),
    ("GET", "/login"),
    ("POST", "/oauth/token"),
    ("POST", "/oauth/revoke"),
    ("GET", "/token_keys"),
    ("GET", "/token_key"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

#[test]
fn the_matrix_covers_every_route_the_gateway_serves() {
    // Flotilla's /api/v6 serves the same handlers as /api/v1 (listed once here).
    let served: BTreeSet<(String, String)> = capstan_tests::routes::served()
        .into_iter()
        .filter(|(_, p)| !p.starts_with("/api/v6"))
        .collect();
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .chain(PUBLIC.iter().map(|(m, p)| (m.to_string(), p.to_string())))
        .collect();
    assert!(served.len() > 40, "the gateway's routes were read: {served:?}");
    let missing: Vec<_> = served.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&served).collect();
    assert!(missing.is_empty(), "served but not in the auth matrix: {missing:?}");
    assert!(stale.is_empty(), "in the auth matrix but not served: {stale:?}");
}

/// `capstan dev` with the auth fixture's config (auth on); keep the folder for the node's life.
fn dev_with_auth() -> (AuthFixture, tempfile::TempDir, Capstan) {
    let fx = AuthFixture::new("").expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fx.dev(&dir.path().join("data")).expect("capstan dev with auth");
    (fx, dir, c)
}

fn family(path: &str) -> Family {
    if path.starts_with("/v1") {
        Family::Receptor
    } else if path.starts_with("/v3") {
        Family::Cf
    } else {
        Family::Flotilla
    }
}

fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{index}" => "0",
            s if s.starts_with('{') => "nothing-here",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// One request with an optional Authorization header; (status, body). The event stream's body is
/// not read (it does not end).
async fn call(c: &Capstan, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = c
        .client
        .request(m, c.url(path))
        .header("content-type", "application/json");
    if method != "GET" && method != "DELETE" {
        req = req.body("{}");
    }
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    if path.ends_with("/events") && status == 200 {
        return (status, String::new());
    }
    (status, resp.text().await.unwrap_or_default())
}

fn assert_shape(fam: Family, status: u16, body: &str, what: &str) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {body}"));
    match fam {
        Family::Receptor => {
            let name = if status == 401 { "Unauthorized" } else { "Forbidden" };
            assert_eq!(v["name"], name, "{what}: {body}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
        }
        Family::Flotilla => {
            assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
            assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{what}: only 'error': {body}");
        }
        Family::Cf => {
            let titles: &[&str] = if status == 401 {
                &["CF-NotAuthenticated", "CF-InvalidAuthToken"]
            } else {
                &["CF-NotAuthorized"]
            };
            let title = v["errors"][0]["title"].as_str().unwrap_or_default();
            assert!(titles.contains(&title), "{what}: {body}");
            assert!(v["errors"][0]["code"].is_number(), "{what}: {body}");
        }
    }
}

#[tokio::test]
async fn every_route_of_every_family_answers_each_kind_of_caller_as_documented() {
    let fx = AuthFixture::new("").expect("fixture");
    // CF users (the tenancy model): one with roles in one space — configured with an operator
    // scope, as the example file once showed — and one with only `cloud_controller.read`.
    fx.add_user("cfdev", "cfdev-pw", "capstan.write", &["space_developer:acme/dev"])
        .expect("cfdev");
    fx.add_user("cfread", "cfread-pw", "cloud_controller.read", &[])
        .expect("cfread");
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fx.dev(&dir.path().join("data")).expect("capstan dev with auth");
    let mut tokens = Vec::new();
    for (user, password, _) in USERS {
        let t = fx.login(&c, user, password).await;
        tokens.push(format!("bearer {}", t["access_token"].as_str().expect("access_token")));
    }
    let [read, write, admin] = [tokens[0].clone(), tokens[1].clone(), tokens[2].clone()];
    let bearer = |t: Value| format!("bearer {}", t["access_token"].as_str().unwrap_or_default());
    let cf_dev = bearer(fx.login(&c, "cfdev", "cfdev-pw").await);
    let cf_read = bearer(fx.login(&c, "cfread", "cfread-pw").await);
    let expired = format!("bearer {}", AuthFixture::forge(&fx.key_pem, "capstan.admin", -60));
    let foreign = format!("bearer {}", AuthFixture::forge(&fx.foreign_pem, "capstan.admin", 600));
    let refused: [(&str, Option<&str>); 6] = [
        ("no credentials", None),
        ("garbage", Some("bearer not-a-jwt")),
        ("not bearer", Some("Token abc")),
        ("expired", Some(&expired)),
        ("another key", Some(&foreign)),
        ("refresh token as access", None),
    ];
    let refresh = format!(
        "bearer {}",
        fx.login(&c, "admin", "admin-pw").await["refresh_token"]
            .as_str()
            .expect("refresh_token")
    );
    for (method, template, needs) in ROUTES {
        for prefix_swap in [false, true] {
            let mut path = concrete(template);
            if prefix_swap {
                if !path.starts_with("/api/v1") {
                    continue;
                }
                path = path.replacen("/api/v1", "/api/v6", 1);
            }
            let fam = family(&path);
            for (what, auth) in refused {
                let auth = if what == "refresh token as access" {
                    Some(refresh.as_str())
                } else {
                    auth
                };
                let (status, body) = call(&c, method, &path, auth).await;
                let ctx = format!("{method} {path} with {what}");
                assert_eq!(status, 401, "{ctx}: {body}");
                assert_shape(fam, status, &body, &ctx);
            }
            for (who, token) in [("CF developer", &cf_dev), ("CF reader", &cf_read)] {
                let (status, body) = call(&c, method, &path, Some(token)).await;
                let ctx = format!("{method} {path} as {who}");
                match fam {
                    // the operator families are closed to CF users, whatever their roles
                    Family::Receptor | Family::Flotilla => {
                        assert_eq!(status, 403, "{ctx}: {body}");
                        assert_shape(fam, status, &body, &ctx);
                    }
                    Family::Cf if who == "CF reader" && *needs == Needs::Write => {
                        assert_eq!(status, 403, "{ctx}: {body}");
                        assert_shape(fam, status, &body, &ctx);
                    }
                    Family::Cf if *needs == Needs::Read => {
                        assert!(status != 401 && status != 403, "{ctx}: {status} {body}")
                    }
                    Family::Cf => assert_ne!(status, 401, "{ctx}: {body}"),
                }
            }
            for (who, token) in [("reader", &read), ("writer", &write), ("admin", &admin)] {
                let (status, body) = call(&c, method, &path, Some(token)).await;
                let ctx = format!("{method} {path} as {who}");
                if who == "reader" && *needs == Needs::Write {
                    assert_eq!(status, 403, "{ctx}: {body}");
                    assert_shape(fam, status, &body, &ctx);
                } else {
                    assert!(status != 401 && status != 403, "{ctx}: {status} {body}");
                }
            }
        }
    }
    for (method, path) in PUBLIC {
        let (status, body) = call(&c, method, path, None).await;
        assert!(
            status != 401 && status != 403,
            "{method} {path} is public: {status} {body}"
        );
    }
}

/// The refresh grant as the cf CLI sends it.
async fn refresh(c: &Capstan, refresh_token: &str) -> reqwest::Response {
    c.client
        .post(c.url("/oauth/token"))
        .basic_auth("cf", Some(""))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
        .send()
        .await
        .expect("refresh")
}

#[tokio::test]
async fn the_cf_login_flow_and_refresh_work_and_bad_logins_look_alike() {
    let (_fx, _dir, c) = dev_with_auth();
    // GET / → links.login.href → POST <login>/oauth/token as client cf: → bearer on the API.
    let root = c.get("/").await.json();
    let login = root["links"]["login"]["href"].as_str().expect("login link").to_owned();
    assert_eq!(root["links"]["cloud_controller_v3"]["href"], format!("{login}/v3"));
    let r = c
        .client
        .post(format!("{login}/oauth/token"))
        .basic_auth("cf", Some(""))
        .form(&[
            ("grant_type", "password"),
            ("username", "writer"),
            ("password", "writer-pw"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status().as_u16(), 200);
    let t: Value = r.json().await.expect("json");
    assert_eq!(t["token_type"], "bearer");
    assert_eq!(t["scope"], "capstan.write");
    assert!(t["expires_in"].as_u64().is_some_and(|s| s > 0));
    assert!(t["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let bearer = format!("bearer {}", t["access_token"].as_str().expect("access"));
    let (status, _) = call(&c, "GET", "/v1/desired_lrps", Some(&bearer)).await;
    assert_eq!(status, 200);
    // Refresh: a new access token that works.
    let r = refresh(&c, t["refresh_token"].as_str().expect("refresh")).await;
    assert_eq!(r.status().as_u16(), 200);
    let t2: Value = r.json().await.expect("json");
    let (status, _) = call(
        &c,
        "POST",
        "/api/v1/task",
        Some(&format!("bearer {}", t2["access_token"].as_str().expect("access"))),
    )
    .await;
    assert_eq!(status, 400, "a writer's refreshed token reaches validation");
    // Logout (RFC 7009): revoking the refresh token ends it and the access token issued with it;
    // replaying it gets 401 invalid_token.
    let revoke = |token: String| {
        let c = &c;
        async move {
            c.client
                .post(c.url("/oauth/revoke"))
                .basic_auth("cf", Some(""))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .expect("revoke")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        revoke(t2["refresh_token"].as_str().expect("refresh").to_owned()).await,
        200
    );
    let replay = refresh(&c, t2["refresh_token"].as_str().expect("refresh")).await;
    assert_eq!(replay.status().as_u16(), 401);
    let body: Value = replay.json().await.expect("json");
    assert_eq!(body["error"], "invalid_token", "{body}");
    let revoked_access = format!("bearer {}", t2["access_token"].as_str().expect("access"));
    let (status, body) = call(&c, "GET", "/v1/desired_lrps", Some(&revoked_access)).await;
    assert_eq!(status, 401, "the access token issued with it is revoked too: {body}");
    // The first login's tokens were not touched; a garbage token revokes nothing and is 200.
    assert_eq!(call(&c, "GET", "/v1/desired_lrps", Some(&bearer)).await.0, 200);
    assert_eq!(revoke("garbage".into()).await, 200);
    // A wrong password and an unknown user: the same answer.
    let bad = |user: &'static str| {
        let c = &c;
        async move {
            let r = c
                .client
                .post(c.url("/oauth/token"))
                .basic_auth("cf", Some(""))
                .form(&[("grant_type", "password"), ("username", user), ("password", "wrong")])
                .send()
                .await
                .expect("token");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let (a, b) = (bad("writer").await, bad("nobody").await);
    assert_eq!(a, b);
    assert_eq!(a.0, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&a.1).expect("json")["error"],
        "unauthorized"
    );
    // Unsupported grant and garbage forms: 400, never 500.
    let r = c
        .client
        .post(c.url("/oauth/token"))
        .body("grant_type=implicit")
        .send()
        .await
        .expect("token");
    assert_eq!(r.status().as_u16(), 400);
    let keys = c.get("/token_keys").await.json();
    assert_eq!(keys["keys"][0]["kid"], "k1");
    assert_eq!(keys["keys"][0]["alg"], "ES256");
    // A 10 MiB header: refused, the node keeps answering.
    let huge = "x".repeat(10 * 1024 * 1024);
    let _ = c
        .client
        .get(c.url("/v1/desired_lrps"))
        .header("authorization", format!("bearer {huge}"))
        .send()
        .await;
    assert_eq!(call(&c, "GET", "/v1/desired_lrps", Some(&bearer)).await.0, 200);
}

async fn channel(c: &Capstan) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", c.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

fn with_secret<T>(msg: T, secret: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(s) = secret {
        r.metadata_mut()
            .insert("x-capstan-cluster-secret", s.parse().expect("ascii"));
    }
    r
}

#[tokio::test]
async fn anonymous_cells_peers_and_admins_are_refused_on_the_grpc_port() {
    let (fx, _dir, c) = dev_with_auth();
    let ch = channel(&c).await;
    let cell = cell_record("rogue");
    let mut cells = pb::cell_service_client::CellServiceClient::new(ch.clone());
    for secret in [None, Some("wrong-secret-0123456789")] {
        let e = cells
            .register_cell(with_secret(cell.clone(), secret))
            .await
            .expect_err("refused");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{secret:?}: {e}");
        let e = cells
            .report_actual_lrps(with_secret(pb::ReportActualLrps::default(), secret))
            .await
            .expect_err("refused");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }
    let mut admin = pb::admin_client::AdminClient::new(ch.clone());
    let e = admin
        .add_member(pb::AddMemberRequest {
            node_id: 66,
            addr: c.grpc.clone(),
            promote: true,
        })
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut peer = pb::raft_peer_client::RaftPeerClient::new(ch.clone());
    let e = peer.vote(pb::VoteRequest::default()).await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = peer
        .append_entries(pb::AppendEntriesRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // With the cluster secret but not a member: a Raft call is still refused (a node removed from
    // the cluster cannot disturb it).
    let outsider = Some(pb::Vote {
        term: 99,
        node_id: 66,
        committed: false,
    });
    let e = peer
        .vote(with_secret(
            pb::VoteRequest {
                vote: outsider,
                ..Default::default()
            },
            Some(&fx.secret),
        ))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let e = peer
        .append_entries(with_secret(
            pb::AppendEntriesRequest {
                vote: outsider,
                ..Default::default()
            },
            Some(&fx.secret),
        ))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    // The public API over gRPC takes the same bearer tokens; the admin service needs the admin scope.
    let writer = fx.login(&c, "writer", "writer-pw").await;
    let bearer = |t: &Value| -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
        format!("bearer {}", t["access_token"].as_str().expect("token"))
            .parse()
            .expect("ascii")
    };
    let mut req = tonic::Request::new(pb::ClusterStatusRequest {});
    req.metadata_mut().insert("authorization", bearer(&writer));
    assert_eq!(
        admin.cluster_status(req).await.expect_err("writer").code(),
        tonic::Code::PermissionDenied
    );
    let adm = fx.login(&c, "admin", "admin-pw").await;
    let mut req = tonic::Request::new(pb::ClusterStatusRequest {});
    req.metadata_mut().insert("authorization", bearer(&adm));
    let status = admin.cluster_status(req).await.expect("admin may").into_inner();
    assert_eq!(status.members.len(), 1, "no rogue member joined");
    // The cluster secret opens the internal services.
    cells
        .register_cell(with_secret(cell, Some(&fx.secret)))
        .await
        .expect("a cell with the secret registers");
    let (status, body) = call(
        &c,
        "GET",
        "/v1/cells",
        Some(&format!("bearer {}", adm["access_token"].as_str().expect("token"))),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("\"rogue\""), "{body}");
}

#[tokio::test]
async fn a_dev_node_with_auth_off_is_open_and_still_issues_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev(&dir.path().join("data")).expect("capstan dev");
    assert_eq!(c.get("/v1/desired_lrps").await.status, 200);
    let r = c
        .client
        .post(c.url("/oauth/token"))
        .basic_auth("cf", Some(""))
        .form(&[("grant_type", "password"), ("username", "anyone"), ("password", "x")])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status().as_u16(), 200);
    let t: Value = r.json().await.expect("json");
    assert_eq!(t["scope"], "capstan.read capstan.write capstan.admin");
    assert!(t["refresh_token"].as_str().is_some_and(|s| !s.is_empty()));
    // A bearer token is accepted but not required; even a bad one changes nothing.
    let (status, _) = call(&c, "GET", "/v1/desired_lrps", Some("bearer whatever")).await;
    assert_eq!(status, 200);
}

/// Runs `capstan <args>` to its end (killed after 20 s: a CLI that hangs fails the test).
fn capstan(args: &[&str]) -> (i32, String, String) {
    let mut child = std::process::Command::new(capstan_tests::capstan_bin().expect("bin"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("capstan");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("capstan {args:?} did not end within 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_clis_send_a_token_and_fail_clearly_without_one() {
    let (fx, _dir, c) = dev_with_auth();
    let writer = fx.login(&c, "writer", "writer-pw").await;
    let token = writer["access_token"].as_str().expect("token").to_owned();
    let define = [
        "task",
        "--api",
        &c.http,
        "define",
        "--alias",
        "cli",
        "--group",
        "g",
        "--image",
        "x",
        "--command",
        "true",
    ];
    let (code, _, err) = capstan(&define);
    assert_ne!(code, 0, "no token: refused");
    assert!(err.contains("log in") || err.contains("Authorization"), "{err}");
    let mut with_token = define.to_vec();
    with_token.splice(1..1, ["--token", token.as_str()]);
    let (code, out, err) = capstan(&with_token);
    assert_eq!(code, 0, "{out} {err}");
    // The event stream: a DesiredLRP's creation is there for a token holder, refused without.
    let r = c
        .client
        .post(c.url("/v1/desired_lrps"))
        .header("authorization", format!("bearer {token}"))
        .body(capstan_tests::lrp_json("cli-web", "d", 1))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 201);
    let events = ["events", "--cluster", &c.grpc, "--from", "1", "--count", "1"];
    let (code, _, err) = capstan(&events);
    assert_ne!(code, 0, "no token: the stream is refused, not retried forever");
    assert!(!err.is_empty());
    let mut with_token = events.to_vec();
    with_token.extend(["--token", token.as_str()]);
    let (code, out, err) = capstan(&with_token);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    // The admin CLI gets in with the cluster secret, not without.
    let (code, _, _) = capstan(&["cluster", "--cluster", &c.grpc, "status"]);
    assert_ne!(code, 0);
    let secret_file = fx.dir.path().join("cluster-secret");
    let (code, out, err) = capstan(&[
        "cluster",
        "--cluster",
        &c.grpc,
        "--cluster-secret-file",
        secret_file.to_str().expect("utf-8"),
        "status",
    ]);
    assert_eq!(code, 0, "{out} {err}");
}

fn with_cell<T>(msg: T, cell: &str, secret: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("x-capstan-cell-id", cell.parse().expect("ascii"));
    r.metadata_mut()
        .insert("x-capstan-cell-secret", secret.parse().expect("ascii"));
    r
}

#[tokio::test]
async fn a_cell_with_its_own_secret_acts_as_itself_and_no_other() {
    let (fx, _dir, c) = dev_with_auth();
    let secret_file = fx.dir.path().join("cluster-secret");
    let (code, out, err) = capstan(&[
        "auth",
        "cell-secret",
        "--cell-id",
        "cell-a",
        "--cluster-secret-file",
        secret_file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let cell_secret = out.trim().to_owned();
    assert_eq!(cell_secret.len(), 64, "hex HMAC-SHA256: {cell_secret}");
    // A real agent with only its own secret registers and stays.
    let cell_secret_file = fx.dir.path().join("cell-a.secret");
    std::fs::write(&cell_secret_file, format!("{cell_secret}\n")).expect("write");
    let work = tempfile::tempdir().expect("work");
    let _agent = capstan_tests::CellAgent::start(
        &c.grpc,
        "cell-a",
        work.path(),
        &[
            "--driver",
            "process",
            "--cell-secret-file",
            cell_secret_file.to_str().expect("utf-8"),
        ],
    )
    .expect("cell agent");
    let admin = fx.login(&c, "admin", "admin-pw").await;
    let bearer = format!("bearer {}", admin["access_token"].as_str().expect("token"));
    capstan_tests::wait_for("cell-a to register", std::time::Duration::from_secs(20), || async {
        let (status, body) = call(&c, "GET", "/v1/cells", Some(&bearer)).await;
        (status == 200 && body.contains("\"cell-a\"")).then_some(())
    })
    .await;
    // With cell-a's secret: not another cell, not the other services, not a wrong secret.
    let ch = channel(&c).await;
    let mut cells = pb::cell_service_client::CellServiceClient::new(ch.clone());
    let e = cells
        .register_cell(with_cell(cell_record("cell-b"), "cell-a", &cell_secret))
        .await
        .expect_err("not cell-b");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let e = cells
        .watch_assignments(with_cell(
            pb::WatchAssignmentsRequest {
                cell_id: "cell-b".into(),
            },
            "cell-a",
            &cell_secret,
        ))
        .await
        .expect_err("not cell-b's assignments");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let e = cells
        .register_cell(with_cell(cell_record("cell-b"), "cell-b", &cell_secret))
        .await
        .expect_err("cell-a's secret is not cell-b's");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let e = pb::admin_client::AdminClient::new(ch.clone())
        .cluster_status(with_cell(pb::ClusterStatusRequest {}, "cell-a", &cell_secret))
        .await
        .expect_err("a cell is no admin");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let e = pb::raft_peer_client::RaftPeerClient::new(ch)
        .vote(with_cell(pb::VoteRequest::default(), "cell-a", &cell_secret))
        .await
        .expect_err("a cell is no peer");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
}
