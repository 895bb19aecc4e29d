//! Auth against a real `capstan dev` with auth on: the matrix of every REST route of every family
//! × every kind of caller — operators (read, write, admin), CF users (roles in one space; only
//! `cloud_controller.read`) and refused credentials — with the route list checked against the
//! gateway's source, so a new route cannot skip it.

use std::collections::BTreeSet;

use capstan_tests::auth::{call, AuthFixture, USERS};
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
    ("POST", "/v3/apps/{guid}/actions/restart", Needs::Write),
    // read-scoped at the door; the variables themselves only to who may read the space's secrets
    ("GET", "/v3/apps/{guid}/environment_variables", Needs::Read),
    ("PATCH", "/v3/apps/{guid}/environment_variables", Needs::Write),
    ("GET", "/v3/apps/{guid}/env", Needs::Read),
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
