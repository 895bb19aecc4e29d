//! The API document: `GET /openapi.json` is OpenAPI 3.1 and names exactly the routes the gateway
//! serves (read from its sources) — a route served but not documented, or documented but not
//! served, fails here — with every schema reference resolved and operation ids unique; `/docs`
//! renders it with no network.

use std::collections::{BTreeSet, HashSet};

use capstan_tests::Capstan;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Every `$ref` in the document.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_names_exactly_the_served_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev(&dir.path().join("data")).expect("start");
    let r = c.get("/openapi.json").await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );

    let mut documented = BTreeSet::new();
    let mut ids = HashSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                documented.insert((m.to_uppercase(), path.clone()));
                let id = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{m} {path}: no operationId"));
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{m} {path}: no responses"
                );
            }
        }
    }
    let served = capstan_tests::routes::served();
    assert!(served.len() > 90, "the gateway's routes were read: {}", served.len());
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in /openapi.json: {undocumented:?}"
    );
    assert!(unserved.is_empty(), "in /openapi.json but not served: {unserved:?}");

    let mut all = Vec::new();
    refs(&doc, &mut all);
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "$ref {r} does not resolve");
    }
    // The error shapes of the families are named schemas.
    for name in ["ReceptorError", "FlotillaError", "CfErrors"] {
        assert!(schemas.contains_key(name), "{name}");
    }

    let docs = c.get("/docs/").await;
    assert_eq!(docs.status, 200);
    assert!(docs.body.contains("swagger-ui"), "{}", docs.body);
    let init = c.get("/docs/swagger-initializer.js").await;
    assert_eq!(init.status, 200);
    assert!(
        init.body.contains("/openapi.json"),
        "the page reads this server's document: {}",
        init.body
    );
}
