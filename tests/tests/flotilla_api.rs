//! Flotilla's task-definition routes (seed 002) against a real `capstan dev`: the seed's walk,
//! Flotilla's decoding (case-insensitive keys), errors in `{"error"}` with nothing changed, lists
//! with filters, sorting and paging, metadata lists, and both `/api/v1` and `/api/v6`.

use capstan_tests::Capstan;
use serde_json::{json, Value};

fn dev() -> (tempfile::TempDir, Capstan) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev(&dir.path().join("data")).expect("start");
    (dir, c)
}

fn def(alias: &str, group: &str, memory: i64) -> String {
    json!({"alias": alias, "group_name": group, "image": "library/ubuntu:latest",
           "command": "echo 'hi'", "memory": memory, "tags": ["a", alias]})
    .to_string()
}

async fn total(c: &Capstan) -> u64 {
    c.get("/api/v1/task").await.json()["total"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn definitions_create_get_update_delete_as_the_seed_shows() {
    let (_d, c) = dev();
    // Keys match case-insensitively, as Go's decoder does; unknown keys are ignored.
    let body = json!({"Alias": "hello_world", "GROUP_NAME": "testing", "image": "library/ubuntu:latest",
                      "Command": "echo 'hi'", "memory": 512, "unknown": 1,
                      "env": [{"NAME": "USERNAME", "value": "me"}]});
    let r = c.post("/api/v1/task", &body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let created = r.json();
    let id = created["definition_id"].as_str().unwrap_or("").to_owned();
    assert!(id.starts_with("testing-") && id.len() == "testing-".len() + 36, "{id}");
    assert_eq!(created["alias"], "hello_world");
    assert_eq!(created["memory"], 512);
    assert_eq!(created["env"], json!([{"name": "USERNAME", "value": "me"}]));
    let first_key = r
        .body
        .trim_start_matches('{')
        .split(':')
        .next()
        .unwrap_or("")
        .to_owned();
    assert_eq!(first_key, "\"env\"", "env is written first: {}", r.body);

    for prefix in ["/api/v1", "/api/v6"] {
        assert_eq!(c.get(&format!("{prefix}/task/{id}")).await.json(), created);
        assert_eq!(c.get(&format!("{prefix}/task/alias/hello_world")).await.json(), created);
    }

    let r = c
        .put(
            &format!("/api/v1/task/{id}"),
            r#"{"command": "echo bye", "tags": ["different", "tags"]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let updated = r.json();
    assert_eq!(
        (updated["command"].clone(), updated["tags"].clone()),
        (json!("echo bye"), json!(["different", "tags"]))
    );
    assert_eq!(
        updated["image"], "library/ubuntu:latest",
        "empty fields keep their value"
    );

    let r = c.put(&format!("/api/v1/task/{id}"), r#"{"group_name": "other"}"#).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap_or("").contains("group_name"),
        "{}",
        r.body
    );
    assert_eq!(
        c.get(&format!("/api/v1/task/{id}")).await.json(),
        updated,
        "a refused update changes nothing"
    );

    let r = c.delete(&format!("/api/v1/task/{id}")).await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"definition_id": id, "deleted": true}))
    );
    let r = c.get(&format!("/api/v1/task/{id}")).await;
    assert_eq!(
        (r.status, r.json()),
        (404, json!({"error": format!("Definition with ID {id} not found")}))
    );
    assert_eq!(c.delete(&format!("/api/v1/task/{id}")).await.status, 404);
    assert_eq!(c.get("/api/v1/task/alias/hello_world").await.status, 404);
}

#[tokio::test]
async fn bad_definitions_are_refused_in_flotillas_shape_and_change_nothing() {
    let (_d, c) = dev();
    assert_eq!(c.post("/api/v1/task", &def("taken", "g", 64)).await.status, 200);
    let r = c.post("/api/v1/task", &def("taken", "g", 64)).await;
    assert_eq!(
        (r.status, r.json()),
        (409, json!({"error": "definition with alias [taken] aleady exists"}))
    );

    let r = c.post("/api/v1/task", "{}").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        "string [image] must be specified\nstring [group_name] must be specified\nstring [alias] must be specified\nint [memory] must be specified\nstring [command] must be specified"
    );
    let r = c.post("/api/v1/task", &def("x", "bad group!", 64)).await;
    assert_eq!(
        r.json()["error"],
        "Group name can only contain letters, numbers, hyphens, and underscores"
    );
    let r = c.post("/api/v1/task", "not json").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].is_string());
    assert_eq!(total(&c).await, 1, "nothing but the first definition exists");

    let r = c.request(reqwest::Method::PATCH, "/api/v1/task", None).await;
    assert_eq!(r.status, 405);
    assert!(r.json()["error"].is_string());
    let r = c.get("/api/v1/nothing").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
}

#[tokio::test]
async fn lists_filter_sort_page_and_refuse_what_they_do_not_know() {
    let (_d, c) = dev();
    for (alias, group, memory) in [("alpha", "g1", 300), ("beta", "g2", 100), ("alphabet", "g2", 200)] {
        assert_eq!(c.post("/api/v1/task", &def(alias, group, memory)).await.status, 200);
    }
    let l = c.get("/api/v1/task?alias=alph&sort_by=memory&order=desc").await.json();
    assert_eq!(l["total"], 2);
    let aliases: Vec<&str> = l["definitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["alias"].as_str())
        .collect();
    assert_eq!(aliases, ["alpha", "alphabet"]);
    assert_eq!(
        (l["sort_by"].clone(), l["order"].clone(), l["alias"].clone()),
        (json!("memory"), json!("desc"), json!(["alph"]))
    );
    let l = c.get("/api/v1/task?sort_by=alias&limit=1&offset=1").await.json();
    assert_eq!(
        (l["total"].clone(), l["definitions"][0]["alias"].clone()),
        (json!(3), json!("alphabet"))
    );
    let l = c.get("/api/v1/task?tag=beta").await.json();
    assert_eq!(l["total"], 1);
    let l = c.get("/api/v1/task?group_name=g1&group_name=g2").await.json();
    assert_eq!(l["total"], 3, "several values: exact match on any");

    for bad in [
        "/api/v1/task?sort_by=command",
        "/api/v1/task?order=DESC",
        "/api/v1/task?limit=abc",
        "/api/v1/task?owner=x",
    ] {
        let r = c.get(bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{bad}");
    }

    let g = c.get("/api/v1/groups").await.json();
    assert_eq!(
        g,
        json!({"total": 2, "groups": ["g1", "g2"], "limit": 1024, "offset": 0})
    );
    let t = c.get("/api/v1/tags?name=alph").await.json();
    assert_eq!(t["tags"], json!(["alpha", "alphabet"]));
    assert!(c.get("/api/v1/clusters").await.json()["clusters"].is_array());
    let v: Value = c.get("/api/v6/task").await.json();
    assert_eq!(v["total"], 3);
}
