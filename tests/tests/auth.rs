//! Auth against a real `capstan dev` with auth on: the CF login flow and refresh, the internal
//! gRPC services refusing anonymous cells, peers and admins, auth off, the CLIs' tokens, and a
//! cell bound to its own secret. (The route × caller matrix is `auth_matrix.rs`.)

use capstan_proto::pb;
use capstan_tests::auth::{call, cell_record, dev_with_auth};
use capstan_tests::Capstan;
use serde_json::Value;

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
                deltas: true,
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
