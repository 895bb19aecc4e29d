//! Flotilla's runs (seed 002) on a real `capstan dev` with its cell: the seed's walk (define,
//! execute with an env override, follow to STOPPED, read the logs, resume with `last_seen`), exit
//! codes, stop of a running and of a queued run, runs waiting QUEUED while the cell is full, exact
//! log resumption while a run writes, bad requests answered in `{"error"}` with nothing changed,
//! a run on a lost cell retried on another, and logs read through every node of a 3-node cluster.

use std::time::Duration;

use capstan_tests::cluster::Cluster;
use capstan_tests::flotilla::{define, execute, read_log, run_of, status_is, RUN_DEADLINE};
use capstan_tests::{wait_for, Capstan, CellAgent};
use serde_json::{json, Value};

fn dev(extra: &[&str]) -> (tempfile::TempDir, Capstan) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev_with(&dir.path().join("data"), extra).expect("start");
    (dir, c)
}

#[tokio::test]
async fn the_seed_walk_define_execute_follow_to_stopped_and_read_the_logs() {
    let (_d, c) = dev(&[]);
    let id = define(&c, "hello_world", "echo \"hello ${USERNAME}\"; echo to-stderr >&2", 512).await;
    let queued = execute(
        &c,
        &id,
        json!({"cluster": "default", "env": [{"name": "USERNAME", "value": "override"}]}),
    )
    .await;
    assert_eq!(queued["status"], "QUEUED", "{queued}");
    assert_eq!(queued["definition_id"], id.as_str());
    assert!(
        queued["queued_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{queued}"
    );
    assert_eq!(
        (&queued["alias"], &queued["image"]),
        (&json!("hello_world"), &json!("library/ubuntu:latest"))
    );
    let run_id = queued["run_id"].as_str().unwrap_or_default().to_owned();
    let env = queued["env"].as_array().cloned().unwrap_or_default();
    assert!(
        env.contains(&json!({"name": "USERNAME", "value": "override"})),
        "{env:?}"
    );
    assert!(
        env.contains(&json!({"name": "FLOTILLA_RUN_ID", "value": run_id})),
        "{env:?}"
    );

    let done = status_is(&c, &run_id, "STOPPED").await;
    assert_eq!(done["exit_code"], 0, "{done}");
    assert_eq!(done["instance"]["instance_id"], "cell-1");
    for t in ["queued_at", "started_at", "finished_at"] {
        assert!(done[t].as_str().is_some(), "{t} in {done}");
    }
    // stdout and stderr are two pipes: their lines are both kept, in the order they arrived.
    let lines = |log: &str| {
        let mut l: Vec<String> = log.lines().map(str::to_owned).collect();
        l.sort();
        l
    };
    let (log, token) = read_log(&c, &run_id, String::new()).await;
    assert_eq!(lines(&log), ["hello override", "to-stderr"], "{log:?}");
    // Resuming from the last token adds nothing new, and stays exact.
    let (more, same) = read_log(&c, &run_id, token.clone()).await;
    assert_eq!((more.as_str(), same), ("", token));

    // The history routes, under both prefixes.
    for prefix in ["/api/v1", "/api/v6"] {
        let h = c.get(&format!("{prefix}/task/{id}/history")).await.json();
        assert_eq!(
            (&h["definition_id"], &h["total"], &h["offset"]),
            (&json!(id), &json!(1), &json!(0)),
            "{h}"
        );
        assert_eq!(h["history"][0]["run_id"], run_id.as_str());
        assert_eq!(h["history"][0]["tags"], json!(["applesauce"]));
        let one = c.get(&format!("{prefix}/task/{id}/history/{run_id}")).await.json();
        assert_eq!(one, done);
        assert_eq!(c.get(&format!("{prefix}/task/history/{run_id}")).await.json(), done);
        let logs = c.get(&format!("{prefix}/{run_id}/logs")).await.json();
        assert_eq!(logs["log"], log.as_str());
    }
    let all = c
        .get("/api/v1/history?status=STOPPED&cluster_name=default")
        .await
        .json();
    assert_eq!(
        (&all["total"], &all["status"]),
        (&json!(1), &json!(["STOPPED"])),
        "{all}"
    );
    // Execute by alias; a deleted definition's runs stay readable.
    let by_alias = c.put("/api/v1/task/alias/hello_world/execute", "{}").await;
    assert_eq!(by_alias.status, 200, "{}", by_alias.body);
    let second = by_alias.json()["run_id"].as_str().unwrap_or_default().to_owned();
    status_is(&c, &second, "STOPPED").await;
    assert_eq!(c.delete(&format!("/api/v1/task/{id}")).await.status, 200);
    assert_eq!(run_of(&c, &run_id).await, done);
    assert_eq!(c.get("/api/v1/history").await.json()["total"], 2);
    assert_eq!(read_log(&c, &run_id, String::new()).await.0, log);
}

#[tokio::test]
async fn a_failing_command_reports_its_exit_code() {
    let (_d, c) = dev(&[]);
    let id = define(&c, "fails", "echo about to fail; exit 3", 64).await;
    let run_id = execute(&c, &id, json!({})).await["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let done = status_is(&c, &run_id, "STOPPED").await;
    assert_eq!(
        (&done["exit_code"], &done["exit_reason"]),
        (&json!(3), &json!("Exited with status 3")),
        "{done}"
    );
    assert_eq!(read_log(&c, &run_id, String::new()).await.0, "about to fail\n");
}

#[tokio::test]
async fn stop_kills_a_running_run_and_is_a_no_op_once_stopped() {
    let (_d, c) = dev(&[]);
    let id = define(&c, "sleeper", "echo started; sleep 300", 64).await;
    let run_id = execute(&c, &id, json!({})).await["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    status_is(&c, &run_id, "RUNNING").await;
    let path = format!("/api/v1/task/{id}/history/{run_id}");
    let r = c.delete(&path).await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"definition_id": id, "stopped": true}))
    );
    let done = status_is(&c, &run_id, "STOPPED").await;
    assert_eq!(
        (&done["exit_code"], &done["exit_reason"]),
        (&json!(143), &json!("Task was stopped")),
        "{done}"
    );
    let again = c.delete(&path).await;
    assert_eq!(
        (again.status, again.json()),
        (200, json!({"definition_id": id, "stopped": true}))
    );
    assert_eq!(run_of(&c, &run_id).await, done, "a second stop changes nothing");
    assert!(read_log(&c, &run_id, String::new()).await.0.starts_with("started\n"));
}

#[tokio::test]
async fn runs_wait_queued_while_the_cell_is_full_and_start_when_room_frees() {
    let (_d, c) = dev(&["--cell-memory-mb", "1000"]);
    let id = define(&c, "big", "sleep 300", 600).await;
    let first = execute(&c, &id, json!({})).await["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    status_is(&c, &first, "RUNNING").await;
    let second = execute(&c, &id, json!({})).await["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let third = execute(&c, &id, json!({})).await["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Over a window of several scheduler ticks the cell has no room: both stay QUEUED.
    let window = std::time::Instant::now();
    while window.elapsed() < Duration::from_secs(2) {
        for r in [&second, &third] {
            assert_eq!(run_of(&c, r).await["status"], "QUEUED");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A queued run is stopped at once, and never runs.
    let r = c.delete(&format!("/api/v1/task/{id}/history/{third}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stopped = run_of(&c, &third).await;
    assert_eq!(stopped["status"], "STOPPED", "{stopped}");
    assert!(
        stopped.get("exit_code").is_none() && stopped.get("started_at").is_none(),
        "{stopped}"
    );
    // Room frees: the next queued run starts.
    assert_eq!(
        c.delete(&format!("/api/v1/task/{id}/history/{first}")).await.status,
        200
    );
    status_is(&c, &second, "RUNNING").await;
    assert_eq!(run_of(&c, &third).await, stopped, "the stopped one stays stopped");
    let active = c
        .get("/api/v1/history?status=RUNNING&status=QUEUED&status=PENDING")
        .await
        .json();
    assert_eq!(active["total"], 1, "{active}");
    assert_eq!(
        c.delete(&format!("/api/v1/task/{id}/history/{second}")).await.status,
        200
    );
    status_is(&c, &second, "STOPPED").await;
}

#[tokio::test]
async fn logs_resume_exactly_while_a_run_is_writing() {
    let (_d, c) = dev(&[]);
    let id = define(
        &c,
        "writer",
        "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line $i; sleep 0.005; done",
        64,
    )
    .await;
    let run_id = execute(&c, &id, json!({})).await["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut log = String::new();
    let mut token = String::new();
    let mut reads_while_running = 0;
    loop {
        let stopped = run_of(&c, &run_id).await["status"] == "STOPPED";
        let v = c.get(&format!("/api/v1/{run_id}/logs?last_seen={token}")).await.json();
        log.push_str(v["log"].as_str().unwrap_or_default());
        token = v["last_seen"].as_str().unwrap_or_default().to_owned();
        if stopped {
            break;
        }
        reads_while_running += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (rest, _) = read_log(&c, &run_id, token).await;
    log.push_str(&rest);
    let expected: String = (1..=300).map(|i| format!("line {i}\n")).collect();
    assert!(reads_while_running > 1, "the log was read while the run wrote it");
    assert_eq!(
        log, expected,
        "no line lost or repeated across {reads_while_running} resumed reads"
    );
}

#[tokio::test]
async fn bad_requests_get_flotillas_error_shape_and_change_nothing() {
    let (_d, c) = dev(&[]);
    let id = define(&c, "guarded", "true", 64).await;
    let cases: Vec<(reqwest::Method, String, Option<&str>, u16, &str)> = vec![
        (
            reqwest::Method::PUT,
            format!("/api/v1/task/{id}/execute"),
            Some(r#"{"env": [{"name": "FLOTILLA_RUN_ID", "value": "x"}]}"#),
            409,
            "environment variable FLOTILLA_RUN_ID is reserved",
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/task/{id}/execute"),
            Some(r#"{"cluster": "nope"}"#),
            400,
            "cannot be run on cluster [nope]",
        ),
        (
            reqwest::Method::PUT,
            "/api/v1/task/nope/execute".into(),
            Some("{}"),
            404,
            "Definition with ID nope not found",
        ),
        (
            reqwest::Method::PUT,
            "/api/v1/task/alias/nope/execute".into(),
            Some("{}"),
            404,
            "Definition with alias nope not found",
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/task/{id}/execute"),
            Some("{not json"),
            400,
            "key must be a string",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/history?status=running".into(),
            None,
            400,
            "invalid status [running]",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/history?sort_by=memory".into(),
            None,
            400,
            "Invalid field to order by [memory]",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/history?env=A|B".into(),
            None,
            400,
            "unknown filter [env]",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/history?limit=x".into(),
            None,
            400,
            "limit must be a non-negative integer",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/task/nope/history".into(),
            None,
            404,
            "Definition with ID nope not found",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/history/nope".into(),
            None,
            404,
            "Run with id nope not found",
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/task/x/history/nope".into(),
            None,
            404,
            "Run with id nope not found",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/nope/logs".into(),
            None,
            404,
            "Run with id nope not found",
        ),
        (reqwest::Method::POST, "/api/v1/history".into(), Some("{}"), 405, ""),
    ];
    for (method, path, body, status, message) in cases {
        let r = c.request(method.clone(), &path, body.map(str::to_owned)).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        if status == 405 {
            assert!(r.header("allow").is_some(), "405 names what is allowed");
            continue;
        }
        let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(message), "{method} {path}: {error}");
    }
    assert_eq!(c.get("/api/v1/history").await.json()["total"], 0, "nothing was queued");
    let run_id = execute(&c, &id, json!({})).await["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let bad = c.get(&format!("/api/v1/{run_id}/logs?last_seen=f/123")).await;
    assert_eq!(
        (bad.status, bad.json()["error"].clone()),
        (400, json!("invalid last_seen token [f/123]"))
    );
}

#[tokio::test]
async fn a_run_on_a_lost_cell_is_retried_on_another_and_never_stuck_running() {
    let (d, c) = dev(&["--no-cell", "--cell-ttl-ms", "2000"]);
    let mut a = CellAgent::start(&c.grpc, "cell-a", &d.path().join("a"), &[]).expect("cell a");
    let id = define(&c, "long", "echo attempt $FLOTILLA_RUN_ID; sleep 300", 64).await;
    wait_for("cell-a to register", RUN_DEADLINE, || async {
        (c.get("/api/v1/clusters").await.json()["clusters"] == json!(["default"])).then_some(())
    })
    .await;
    let run_id = execute(&c, &id, json!({})).await["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let first = status_is(&c, &run_id, "RUNNING").await;
    assert_eq!(first["instance"]["instance_id"], "cell-a");
    let _b = CellAgent::start(&c.grpc, "cell-b", &d.path().join("b"), &[]).expect("cell b");
    a.kill9();
    let again = wait_for("the run to run on cell-b", RUN_DEADLINE, || async {
        let r = run_of(&c, &run_id).await;
        (r["status"] == "RUNNING" && r["instance"]["instance_id"] == "cell-b").then_some(r)
    })
    .await;
    assert!(again.get("exit_code").is_none(), "{again}");
    // The retried attempt writes its own log, read from the new cell.
    let (log, _) = read_log(&c, &run_id, String::new()).await;
    assert_eq!(log, format!("attempt {run_id}\n"));
    assert_eq!(
        c.delete(&format!("/api/v1/task/{id}/history/{run_id}")).await.status,
        200
    );
    status_is(&c, &run_id, "STOPPED").await;
}

#[tokio::test]
async fn logs_are_read_through_every_node_of_a_three_node_cluster() {
    let c = Cluster::start(3, &[]).expect("cluster");
    let leader = c.leader(Duration::from_secs(20)).await;
    let follower = *c.nodes.keys().find(|n| **n != leader).expect("a follower");
    let grpcs: Vec<String> = c.specs.values().map(|s| s.grpc.clone()).collect();
    let work = tempfile::tempdir().expect("tempdir");
    let _cell = CellAgent::start(&grpcs.join(","), "cell-1", work.path(), &[]).expect("cell");
    let via = c.node(follower);
    wait_for("the cell to register", RUN_DEADLINE, || async {
        (via.get("/api/v1/clusters").await.json()["clusters"] == json!(["default"])).then_some(())
    })
    .await;
    let id = define(via, "clustered", "echo from the cell; echo $GREETING", 64).await;
    let run_id = execute(via, &id, json!({"env": [{"name": "GREETING", "value": "hi"}]})).await["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    status_is(via, &run_id, "STOPPED").await;
    for (n, node) in &c.nodes {
        let (log, _) = read_log(node, &run_id, String::new()).await;
        assert_eq!(log, "from the cell\nhi\n", "through node {n}");
    }
}

/// `capstan task …` against the REST API, as a person would type it: (exit code, stdout).
fn task_cli(c: &Capstan, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(capstan_tests::capstan_bin().expect("bin"))
        .arg("task")
        .args(["--api", &c.http])
        .args(args)
        .output()
        .expect("capstan task");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_task_cli_walks_the_seed_without_curl() {
    let (_d, c) = dev(&[]);
    let (code, id) = task_cli(
        &c,
        &[
            "define",
            "--alias",
            "cli",
            "--group",
            "examples",
            "--image",
            "ubuntu:latest",
            "--command",
            "echo hello $WHO; exit 5",
            "--memory",
            "64",
            "--env",
            "WHO=definition",
        ],
    );
    let id = id.trim().to_owned();
    assert_eq!(code, 0);
    assert!(id.starts_with("examples-"), "{id}");
    let (code, listed) = task_cli(&c, &["list", "--alias", "cl"]);
    assert!(code == 0 && listed.contains(&id), "{listed}");
    // run -f follows the log to the end and exits with the run's exit code.
    let (code, log) = task_cli(&c, &["run", "--alias", "cli", "--env", "WHO=override", "-f"]);
    assert_eq!((code, log.as_str()), (5, "hello override\n"));
    let (code, run_id) = task_cli(&c, &["run", &id]);
    let run_id = run_id.trim().to_owned();
    assert_eq!(code, 0);
    let (_, log) = task_cli(&c, &["logs", "-f", &run_id]);
    assert_eq!(log, "hello definition\n");
    let (code, status) = task_cli(&c, &["status", &run_id]);
    assert!(code == 0 && status.contains("status STOPPED  exit 5"), "{status}");
    let (code, json) = task_cli(&c, &["--json", "status", &run_id]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&json).expect("json")["exit_code"], 5);
    let (code, _) = task_cli(&c, &["run", &id, "--cluster", "nope"]);
    assert_ne!(code, 0, "an error is a failing exit");
    let (_, sleeper) = task_cli(
        &c,
        &[
            "define",
            "--alias",
            "cli-sleep",
            "--group",
            "examples",
            "--image",
            "x",
            "--command",
            "sleep 300",
        ],
    );
    let (_, run_id) = task_cli(&c, &["run", sleeper.trim()]);
    status_is(&c, run_id.trim(), "RUNNING").await;
    assert_eq!(task_cli(&c, &["stop", run_id.trim()]).0, 0);
    status_is(&c, run_id.trim(), "STOPPED").await;
}

#[tokio::test]
async fn a_leader_change_loses_no_queued_run_and_runs_none_twice() {
    let mut c = Cluster::start(3, &[]).expect("cluster");
    let leader = c.leader(Duration::from_secs(20)).await;
    let grpcs: Vec<String> = c.specs.values().map(|s| s.grpc.clone()).collect();
    let work = tempfile::tempdir().expect("tempdir");
    let _cell = CellAgent::start(&grpcs.join(","), "cell-1", work.path(), &["--memory-mb", "1000"]).expect("cell");
    let via = *c.nodes.keys().find(|n| **n != leader).expect("a follower");
    wait_for("the cell to register", RUN_DEADLINE, || async {
        (c.node(via).get("/api/v1/clusters").await.json()["clusters"] == json!(["default"])).then_some(())
    })
    .await;
    // Each run takes the whole cell: one runs, the others wait QUEUED.
    let id = define(
        c.node(via),
        "one-at-a-time",
        "echo run $FLOTILLA_RUN_ID; sleep 300",
        600,
    )
    .await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let r = execute(c.node(via), &id, json!({})).await;
        runs.push(r["run_id"].as_str().unwrap_or_default().to_owned());
    }
    status_is(c.node(via), &runs[0], "RUNNING").await;

    c.kill9(leader);
    let new_leader = c.leader(Duration::from_secs(30)).await;
    let n = c.node(new_leader);
    for r in &runs[1..] {
        assert_eq!(
            run_of(n, r).await["status"],
            "QUEUED",
            "still queued after the leader change"
        );
    }
    assert_eq!(
        run_of(n, &runs[0]).await["status"],
        "RUNNING",
        "the running one runs on"
    );
    // Stopping each in turn lets the next one run, one at a time, each once.
    for (i, r) in runs.iter().enumerate() {
        status_is(n, r, "RUNNING").await;
        let active = n.get("/api/v1/history?status=RUNNING&status=PENDING").await.json();
        assert_eq!(active["total"], 1, "never two at once: {active}");
        let stop = n.delete(&format!("/api/v1/task/{id}/history/{r}")).await;
        assert_eq!(stop.status, 200, "{}", stop.body);
        let done = status_is(n, r, "STOPPED").await;
        assert_eq!(done["exit_code"], 143, "run {i}: {done}");
        let (log, _) = read_log(n, r, String::new()).await;
        assert!(log.starts_with(&format!("run {r}\n")), "{log}");
        assert_eq!(log.matches("run ").count(), 1, "run {i} ran exactly once: {log}");
    }
}
