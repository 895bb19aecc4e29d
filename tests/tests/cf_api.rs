//! Cloud Foundry's V3 family (seed 001) on a real `capstan dev` with its cell: the walk of the
//! issue (apply a manifest with a web and a worker process, start, scale web to 3 with ports that
//! answer and memory the cell measured, terminate an index and see it come back, scale down,
//! stop), lists as CF pages, filters and selects them, CF's errors for the spec's test vectors,
//! and the family through every node of a 3-node cluster.

use std::time::Duration;

use capstan_tests::cluster::Cluster;
use capstan_tests::{wait_for, Capstan, Reply};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(40);

/// `capstan dev`, with its embedded cell when `cell`.
fn dev_cell(cell: bool) -> (tempfile::TempDir, Capstan) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = if cell {
        Capstan::dev_with(&dir.path().join("data"), &[])
    } else {
        Capstan::dev(&dir.path().join("data"))
    };
    (dir, c.expect("start"))
}

fn dev() -> (tempfile::TempDir, Capstan) {
    dev_cell(false)
}

async fn patch(c: &Capstan, path: &str, body: Value) -> Reply {
    c.request(reqwest::Method::PATCH, path, Some(body.to_string())).await
}

/// An organization and a space in it; the space's guid.
async fn space(c: &Capstan) -> String {
    let r = c.post("/v3/organizations", &json!({"name": "acme"}).to_string()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let org = r.json()["guid"].as_str().unwrap_or_default().to_owned();
    let body = json!({"name": "dev", "relationships": {"organization": {"data": {"guid": org}}}});
    let r = c.post("/v3/spaces", &body.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["guid"].as_str().unwrap_or_default().to_owned()
}

/// Applies a manifest (YAML) to a space and follows the job to COMPLETE.
async fn apply(c: &Capstan, space: &str, yaml: &str) {
    let resp = reqwest::Client::new()
        .post(c.url(&format!("/v3/spaces/{space}/actions/apply_manifest")))
        .header("content-type", "application/x-yaml")
        .body(yaml.to_owned())
        .send()
        .await
        .expect("apply_manifest");
    assert_eq!(resp.status().as_u16(), 202);
    let location = resp.headers()["location"].to_str().unwrap_or_default().to_owned();
    let job_path = location
        .split_once("/v3/")
        .map(|(_, p)| format!("/v3/{p}"))
        .unwrap_or_default();
    let job = c.get(&job_path).await;
    assert_eq!(job.status, 200, "{}", job.body);
    assert_eq!(job.json()["state"], "COMPLETE", "{}", job.body);
    assert_eq!(job.json()["operation"], "space.apply_manifest");
}

async fn app_guid(c: &Capstan, name: &str) -> String {
    let r = c.get(&format!("/v3/apps?names={name}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["resources"][0]["guid"].as_str().unwrap_or_default().to_owned()
}

/// The stats of a process once `ok` holds for them.
async fn stats_when(c: &Capstan, path: &str, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    wait_for(what, DEADLINE, || async {
        let r = c.get(path).await;
        let v = r.json();
        let resources = v["resources"].as_array().cloned().unwrap_or_default();
        (r.status == 200 && ok(&resources)).then_some(resources)
    })
    .await
}

fn all_running(n: usize) -> impl Fn(&[Value]) -> bool {
    move |rs| rs.len() == n && rs.iter().all(|r| r["state"] == "RUNNING")
}

const MANIFEST: &str = r#"
applications:
- name: shop
  processes:
  - type: web
    command: python3 -m http.server $PORT
    instances: 1
    memory: 128M
  - type: worker
    command: while true; do sleep 1; done
    instances: 1
    health-check-type: process
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_cf_walk_runs_real_instances() {
    let (_dir, c) = dev_cell(true);
    let space = space(&c).await;
    apply(&c, &space, MANIFEST).await;
    let app = app_guid(&c, "shop").await;

    let r = c.post(&format!("/v3/apps/{app}/actions/start"), "").await;
    assert_eq!(
        (r.status, r.json()["state"].clone()),
        (200, json!("STARTED")),
        "{}",
        r.body
    );
    let r = c
        .post(
            &format!("/v3/apps/{app}/processes/web/actions/scale"),
            r#"{"instances": 3}"#,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["instances"], 3);
    let web = r.json()["guid"].as_str().unwrap_or_default().to_owned();

    let scoped = format!("/v3/apps/{app}/processes/web/stats");
    let stats = stats_when(&c, &scoped, "3 web instances RUNNING", all_running(3)).await;
    let http = reqwest::Client::new();
    for s in &stats {
        assert!(
            s["usage"]["mem"].as_u64().unwrap_or(0) > 0,
            "the cell measured memory: {s}"
        );
        assert!(s["uptime"].as_i64().is_some() && s["instance_guid"].is_string());
        let port = s["instance_ports"][0]["external"].as_u64().unwrap_or(0);
        let url = format!("http://{}:{port}/", s["host"].as_str().unwrap_or_default());
        let answer = http.get(&url).send().await.expect("the instance answers");
        assert_eq!(answer.status().as_u16(), 200, "{url}");
    }
    // The app-scoped and the global forms are the same process.
    let global = c.get(&format!("/v3/processes/{web}/stats")).await.json();
    assert_eq!(global["resources"].as_array().map(Vec::len), Some(3));
    let a = c.get(&format!("/v3/apps/{app}/processes/web")).await.json();
    let b = c.get(&format!("/v3/processes/{web}")).await.json();
    assert_eq!(a, b);
    assert_eq!(a["command"], "python3 -m http.server $PORT");
    let worker = stats_when(
        &c,
        &format!("/v3/apps/{app}/processes/worker/stats"),
        "the worker RUNNING",
        all_running(1),
    )
    .await;
    assert!(worker[0]["instance_ports"].as_array().is_some_and(Vec::is_empty));

    // Terminate index 1: the index is retired and comes back as a new instance.
    let before = stats[1]["instance_guid"].clone();
    let r = c.delete(&format!("/v3/processes/{web}/instances/1")).await;
    assert_eq!(r.status, 204, "{}", r.body);
    stats_when(&c, &scoped, "index 1 back RUNNING as a new instance", |rs| {
        all_running(3)(rs) && rs[1]["instance_guid"] != before
    })
    .await;
    let instances = c.get(&format!("/v3/processes/{web}/process_instances")).await.json();
    assert_eq!(instances["resources"].as_array().map(Vec::len), Some(3));

    let r = c
        .post(&format!("/v3/processes/{web}/actions/scale"), r#"{"instances": 1}"#)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    stats_when(&c, &scoped, "web scaled down to 1", all_running(1)).await;

    let r = c.post(&format!("/v3/apps/{app}/actions/stop"), "").await;
    assert_eq!(r.json()["state"], "STOPPED");
    stats_when(&c, &scoped, "no running web instance", |rs| {
        rs.iter().all(|r| r["state"] == "DOWN")
    })
    .await;
    let lrps = c.get("/v1/desired_lrps?domain=cf-apps").await.json();
    assert_eq!(
        lrps.as_array().map(Vec::len),
        Some(0),
        "stop removes the DesiredLRPs: {lrps}"
    );
    wait_for("no cf-apps instance left", DEADLINE, || async {
        let a = c.get("/v1/actual_lrps?domain=cf-apps").await.json();
        (a.as_array().map(Vec::len) == Some(0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_page_filter_order_and_select_by_label() {
    let (_dir, c) = dev();
    let space = space(&c).await;
    apply(
        &c,
        &space,
        "applications:\n- name: one\n  processes:\n  - {type: web, command: x}\n  - {type: worker, command: y}\n  - {type: clock, command: z}\n- name: two\n  command: w\n",
    )
    .await;
    let one = app_guid(&c, "one").await;

    let page = c.get("/v3/processes?per_page=2").await.json();
    assert_eq!(page["pagination"]["total_results"], 4);
    assert_eq!(page["pagination"]["total_pages"], 2);
    assert!(page["resources"]
        .as_array()
        .is_some_and(|r| r.iter().all(|p| p["command"] == "[PRIVATE DATA HIDDEN IN LISTS]")));
    let next = page["pagination"]["next"]["href"].as_str().unwrap_or_default();
    assert!(next.ends_with("/v3/processes?page=2&per_page=2"), "{next}");
    let second = c.get(&next[next.find("/v3/").unwrap_or(0)..]).await.json();
    assert_eq!(second["resources"].as_array().map(Vec::len), Some(2));
    let mut seen: Vec<Value> = page["resources"].as_array().cloned().unwrap_or_default();
    seen.extend(second["resources"].as_array().cloned().unwrap_or_default());
    let mut guids: Vec<&str> = seen.iter().filter_map(|p| p["guid"].as_str()).collect();
    guids.sort_unstable();
    guids.dedup();
    assert_eq!(guids.len(), 4, "the two pages hold every process once");

    let of_app = c.get(&format!("/v3/apps/{one}/processes")).await.json();
    assert_eq!(of_app["pagination"]["total_results"], 3);
    let types = c.get("/v3/processes?types=worker,clock").await.json();
    assert_eq!(types["pagination"]["total_results"], 2);
    let by_app = c.get(&format!("/v3/processes?app_guids={one}&types=web")).await.json();
    assert_eq!(by_app["pagination"]["total_results"], 1);

    let worker = c.get(&format!("/v3/apps/{one}/processes/worker")).await.json();
    let wguid = worker["guid"].as_str().unwrap_or_default().to_owned();
    let r = patch(
        &c,
        &format!("/v3/processes/{wguid}"),
        json!({"metadata": {"labels": {"fruit": "strawberry", "example.com/tier": "back"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["metadata"]["labels"]["fruit"], "strawberry");
    let sel = c.get("/v3/processes?label_selector=fruit%3Dstrawberry").await.json();
    assert_eq!(sel["pagination"]["total_results"], 1);
    assert!(sel["pagination"]["first"]["href"]
        .as_str()
        .is_some_and(|h| h.ends_with("/v3/processes?label_selector=fruit%3Dstrawberry&page=1&per_page=50")));
    let not = c.get("/v3/processes?label_selector=fruit!%3Dstrawberry").await.json();
    assert_eq!(not["pagination"]["total_results"], 3);
    let exists = c
        .get("/v3/processes?label_selector=example.com/tier,!missing")
        .await
        .json();
    assert_eq!(exists["pagination"]["total_results"], 1);

    // Ordering by updated_at, newest first: the worker just changed.
    let newest = c.get("/v3/processes?order_by=-updated_at&per_page=1").await.json();
    assert_eq!(newest["resources"][0]["guid"], json!(wguid));
    let created = c
        .get("/v3/processes?created_ats[gte]=2000-01-01T00:00:00Z")
        .await
        .json();
    assert_eq!(created["pagination"]["total_results"], 4);
    let none = c.get("/v3/processes?created_ats[lt]=2000-01-01T00:00:00Z").await.json();
    assert_eq!(none["pagination"]["total_results"], 0);
    assert_eq!(none["pagination"]["total_pages"], 1);
}

fn detail(r: &Reply) -> String {
    r.json()["errors"][0]["detail"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_follow_cfs_table() {
    let (_dir, c) = dev();
    let space = space(&c).await;
    apply(&c, &space, "applications:\n- name: shop\n  command: sleep 1000\n").await;
    let app = app_guid(&c, "shop").await;
    let web = c.get(&format!("/v3/apps/{app}/processes/web")).await.json();
    let g = web["guid"].as_str().unwrap_or_default().to_owned();

    let r = c.get("/v3/processes?order_by=^=%25").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["title"], "CF-BadQueryParameter");
    assert_eq!(
        detail(&r),
        "The query parameter is invalid: Order by can only be: 'created_at', 'updated_at'"
    );
    let r = c.get("/v3/processes?per_page=10000").await;
    assert_eq!(
        detail(&r),
        "The query parameter is invalid: Per page must be between 1 and 5000"
    );
    let r = c
        .post(
            &format!("/v3/processes/{g}/actions/scale"),
            r#"{"memory_in_mb":100000000000}"#,
        )
        .await;
    assert_eq!(
        (r.status, detail(&r)),
        (422, "Memory in mb must be less than or equal to 2147483647".into())
    );
    let r = c
        .post(&format!("/v3/processes/{g}/actions/scale"), r#"{"instances":"wrong"}"#)
        .await;
    assert_eq!(detail(&r), "Instances is not a number");
    let r = c
        .post(&format!("/v3/processes/{g}/actions/scale"), r#"{"disk_in_mb":null}"#)
        .await;
    assert_eq!(r.status, 422, "null is refused with a message (DECISIONS)");
    let r = patch(&c, &format!("/v3/processes/{g}"), json!({"command": false})).await;
    assert_eq!((r.status, detail(&r)), (422, "Command must be a string".into()));
    let r = patch(&c, &format!("/v3/processes/{g}"), json!({"ports": [8080]})).await;
    assert_eq!(detail(&r), "Unknown field(s): 'ports'");
    let r = patch(
        &c,
        &format!("/v3/processes/{g}"),
        json!({"metadata": {"labels": {"a b": "x"}}}),
    )
    .await;
    assert_eq!(
        detail(&r),
        "Metadata label key error: 'a b' contains invalid characters"
    );
    let r = c.delete(&format!("/v3/processes/{g}/instances/1")).await;
    assert_eq!((r.status, detail(&r)), (404, "Instance not found".into()));
    let r = c.delete(&format!("/v3/processes/{g}/instances/abc")).await;
    assert_eq!((r.status, detail(&r)), (404, "Instance not found".into()));
    let r = c.get("/v3/processes/no-such-guid").await;
    assert_eq!((r.status, detail(&r)), (404, "Process not found".into()));
    assert_eq!(r.json()["errors"][0]["code"], 10010);
    let r = c.get("/v3/apps/no-such-app/processes/web").await;
    assert_eq!(detail(&r), "App not found");
    let r = c.get(&format!("/v3/processes/{g}?foo=1")).await;
    assert_eq!(
        detail(&r),
        "The query parameter is invalid: Unknown query parameter(s): 'foo'. Valid parameters are: 'embed'"
    );
    let r = c.post(&format!("/v3/processes/{g}/actions/scale"), "{not json").await;
    assert_eq!((r.status, r.json()["errors"][0]["code"].clone()), (400, json!(1001)));
    let r = c.post(&format!("/v3/apps/{app}/actions/start"), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c.post("/v3/organizations", r#"{"name":"acme"}"#).await;
    assert_eq!(
        (r.status, detail(&r)),
        (422, "Organization 'acme' already exists.".into())
    );
    let r = c.get("/v3/no_such_thing").await;
    assert_eq!(
        (r.status, r.json()["errors"][0]["title"].clone()),
        (404, json!("CF-NotFound"))
    );
    // Nothing above changed the process.
    let after = c.get(&format!("/v3/processes/{g}")).await.json();
    assert_eq!(after["instances"], web["instances"]);
    assert_eq!(after["memory_in_mb"], web["memory_in_mb"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_node_of_a_cluster_serves_the_family() {
    let cluster = Cluster::start(3, &[]).expect("cluster");
    cluster.leader(DEADLINE).await;
    let n1 = cluster.node(1);
    let space = space(n1).await;
    apply(
        cluster.node(2),
        &space,
        "applications:\n- name: shop\n  command: sleep 1000\n  instances: 2\n",
    )
    .await;
    let app = app_guid(cluster.node(3), "shop").await;
    let r = cluster
        .node(3)
        .post(
            &format!("/v3/apps/{app}/processes/web/actions/scale"),
            r#"{"instances": 4}"#,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    for id in [1, 2, 3] {
        let p = cluster
            .node(id)
            .get(&format!("/v3/apps/{app}/processes/web"))
            .await
            .json();
        assert_eq!(p["instances"], 4, "node {id}: {p}");
    }
    let r = cluster.node(2).post(&format!("/v3/apps/{app}/actions/start"), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // No cell in this cluster: four instances, DOWN with the placement error or STARTING.
    let stats = stats_when(
        cluster.node(1),
        &format!("/v3/apps/{app}/processes/web/stats"),
        "four instances reported",
        |rs| rs.len() == 4,
    )
    .await;
    assert!(stats.iter().all(|s| s["state"] == "DOWN" || s["state"] == "STARTING"));
}
