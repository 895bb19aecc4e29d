//! The event stream `GET /v1/events` against real `capstan` processes: Receptor's event names and
//! payloads in log order, exact resume with `Last-Event-ID` (nothing missed, nothing twice), two
//! subscribers seeing one sequence, 410 for a position the journal no longer keeps, 400 for a
//! malformed one, a subscriber that never reads not stalling writes, and resume across a leader
//! kill in a 3-node cluster.

use std::io::Write as _;
use std::time::Duration;

use capstan_tests::cluster::Cluster;
use capstan_tests::sse::{subscribe, Event, Subscription};
use capstan_tests::{lrp_json, Capstan};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn dev(extra: &[&str]) -> (tempfile::TempDir, Capstan) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev_with(&dir.path().join("data"), extra).expect("start");
    (dir, c)
}

async fn sub(c: &Capstan, path: &str, last: Option<&str>) -> Subscription {
    subscribe(&c.http, path, last)
        .await
        .expect("connect")
        .unwrap_or_else(|(s, b)| panic!("refused: {s} {b}"))
}

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

#[tokio::test]
async fn lrp_changes_arrive_as_receptor_events_in_order() {
    let (_d, c) = dev(&["--no-cell"]);
    let mut s = sub(&c, "/v1/events?process_guid=web", None).await;
    assert_eq!(
        c.post("/v1/desired_lrps", &lrp_json("web", "cf-apps", 1)).await.status,
        201
    );
    let created = s.take(2, WAIT).await.expect("events");
    assert_eq!(kinds(&created), ["desired_lrp_created", "actual_lrp_created"]);
    assert_eq!(created[0].data["desired_lrp"]["process_guid"], "web");
    assert_eq!(created[1].data["actual_lrp"]["state"], "UNCLAIMED");
    // With no cell, the scheduler records a placement error: an actual_lrp_changed.
    let placement = s.next(WAIT).await.expect("placement error");
    assert_eq!(placement.kind, "actual_lrp_changed");
    assert_eq!(
        placement.data["actual_lrp_after"]["placement_error"],
        "found no compatible cells"
    );
    assert_eq!(
        c.put("/v1/desired_lrps/web", r#"{"annotation": "v2"}"#).await.status,
        204
    );
    let changed = s.next(WAIT).await.expect("changed");
    assert_eq!(changed.kind, "desired_lrp_changed");
    assert_eq!(
        (
            &changed.data["desired_lrp_before"]["annotation"],
            &changed.data["desired_lrp_after"]["annotation"]
        ),
        (&json!(null), &json!("v2"))
    );
    assert_eq!(c.delete("/v1/desired_lrps/web/actual_lrps?index=0").await.status, 204);
    let killed = s.take(2, WAIT).await.expect("kill");
    assert_eq!(kinds(&killed), ["actual_lrp_removed", "actual_lrp_created"]);
    assert_eq!(c.delete("/v1/desired_lrps/web").await.status, 204);
    let mut removed = Vec::new();
    while removed.len() < 2 {
        let e = s.next(WAIT).await.expect("remove");
        if e.kind != "actual_lrp_changed" {
            removed.push(e);
        }
    }
    assert_eq!(kinds(&removed).len(), 2);
    assert!(kinds(&removed).contains(&"desired_lrp_removed") && kinds(&removed).contains(&"actual_lrp_removed"));
    // Ids grow with the log.
    let ids: Vec<f64> = created
        .iter()
        .chain(&killed)
        .map(|e| e.id.parse().unwrap_or(0.0))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "{ids:?}");
}

/// The creates only (the scheduler's placement errors would interleave with them).
const CREATES: &str = "/v1/events?kinds=desired_lrp_created,actual_lrp_created";

#[tokio::test]
async fn resume_with_the_last_id_gives_exactly_the_missed_events_and_two_subscribers_agree() {
    let (_d, c) = dev(&["--no-cell"]);
    let mut whole = sub(&c, CREATES, None).await;
    let mut other = sub(&c, CREATES, None).await;
    // A 3-instance create is one record of 4 events: a cut inside it must resume inside it.
    let mut reader = sub(&c, CREATES, None).await;
    assert_eq!(c.post("/v1/desired_lrps", &lrp_json("a", "d", 3)).await.status, 201);
    let _ = reader.next(WAIT).await.expect("first");
    let second = reader.next(WAIT).await.expect("second");
    assert!(second.id.contains('.'), "an event inside a record: {}", second.id);
    drop(reader);
    for g in ["b", "c"] {
        assert_eq!(c.post("/v1/desired_lrps", &lrp_json(g, "d", 1)).await.status, 201);
    }
    let all = whole.take(4 + 2 + 2, WAIT).await.expect("all");
    assert_eq!(
        kinds(&all)
            .iter()
            .filter(|k| k.starts_with("desired_lrp_created"))
            .count(),
        3
    );
    let others = other.take(all.len(), WAIT).await.expect("other");
    assert_eq!(others, all, "two subscribers see the same sequence");
    let mut resumed = sub(&c, CREATES, Some(&second.id)).await;
    let missed = resumed.take(all.len() - 2, WAIT).await.expect("missed");
    assert_eq!(missed, all[2..].to_vec(), "exactly the events after the last one seen");
    // Via the query parameter too, from a whole record.
    let last = all.last().map(|e| e.id.clone()).unwrap_or_default();
    let mut tail = sub(&c, &format!("{CREATES}&last_event_id={last}"), None).await;
    assert!(
        tail.quiet_for(Duration::from_millis(500)).await,
        "nothing after the last event"
    );
}

#[tokio::test]
async fn old_and_malformed_positions_are_refused_in_receptors_shape() {
    let (_d, c) = dev(&["--no-cell", "--journal-records-max", "5"]);
    for i in 0..12 {
        let body = lrp_json(&format!("p{i}"), "d", 0);
        assert_eq!(c.post("/v1/desired_lrps", &body).await.status, 201);
    }
    let (status, body) = subscribe(&c.http, "/v1/events", Some("1"))
        .await
        .expect("connect")
        .err()
        .expect("410");
    assert_eq!(status, 410, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(e["name"], "EventsGone");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("list the current state"),
        "{e}"
    );
    for bad in ["x", "1.2.3", "-4"] {
        let (status, body) = subscribe(&c.http, "/v1/events", Some(bad))
            .await
            .expect("connect")
            .err()
            .expect("400");
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = subscribe(&c.http, "/v1/events?kinds=nope", None)
        .await
        .expect("connect")
        .err()
        .expect("400");
    assert_eq!(status, 400);
    // A recent position still resumes.
    let mut s = sub(&c, "/v1/events", None).await;
    assert_eq!(c.post("/v1/desired_lrps", &lrp_json("fresh", "d", 0)).await.status, 201);
    let e = s.next(WAIT).await.expect("event");
    let mut again = sub(
        &c,
        "/v1/events",
        Some(&(e.id.parse::<u64>().unwrap_or(1) - 1).to_string()),
    )
    .await;
    assert_eq!(again.next(WAIT).await.expect("again"), e);
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_stall_writes() {
    let (_d, c) = dev(&["--no-cell"]);
    // A raw connection that asks for the stream and then never reads a byte.
    let addr = c.http.trim_start_matches("http://").to_owned();
    let mut stuck = std::net::TcpStream::connect(&addr).expect("connect");
    write!(stuck, "GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let mut reader = sub(&c, "/v1/events?kinds=desired_lrp_created", None).await;
    let rss_before = c.rss_kib().unwrap_or(0);
    let started = std::time::Instant::now();
    for i in 0..1000 {
        let r = c.post("/v1/desired_lrps", &lrp_json(&format!("w{i}"), "d", 1)).await;
        assert_eq!(r.status, 201, "write {i}: {}", r.body);
    }
    let writes = started.elapsed();
    let seen = reader
        .take(1000, WAIT)
        .await
        .expect("a reading subscriber gets every event");
    assert_eq!(
        seen.last().map(|e| e.data["desired_lrp"]["process_guid"].clone()),
        Some(json!("w999"))
    );
    let rss_after = c.rss_kib().unwrap_or(0);
    eprintln!("1000 writes with a stuck subscriber: {writes:?}; RSS {rss_before} → {rss_after} KiB");
    assert!(
        rss_after < rss_before + 200 * 1024,
        "memory stays bounded: {rss_before} → {rss_after} KiB"
    );
    drop(stuck);
}

#[tokio::test]
async fn resume_across_a_leader_kill_loses_nothing() {
    let mut cl = Cluster::start(3, &[]).expect("cluster");
    let leader = cl.leader(Duration::from_secs(20)).await;
    let follower = *cl.nodes.keys().find(|n| **n != leader).expect("a follower");
    let mut s = subscribe(&cl.node(leader).http, "/v1/events?kinds=desired_lrp_created", None)
        .await
        .expect("connect")
        .expect("stream");
    for g in ["x1", "x2"] {
        assert_eq!(
            cl.node(follower)
                .post("/v1/desired_lrps", &lrp_json(g, "d", 0))
                .await
                .status,
            201
        );
    }
    let before = s.take(2, WAIT).await.expect("before");
    cl.kill9(leader);
    // Writes while the stream is down, through the survivors.
    let new_leader = cl.leader(Duration::from_secs(30)).await;
    for g in ["x3", "x4"] {
        let node = cl.node(new_leader);
        let r = node.post("/v1/desired_lrps", &lrp_json(g, "d", 0)).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let other = *cl
        .nodes
        .keys()
        .find(|n| **n != new_leader && **n != leader)
        .expect("the other survivor");
    let last = before.last().map(|e| e.id.clone()).unwrap_or_default();
    let mut resumed = subscribe(
        &cl.node(other).http,
        "/v1/events?kinds=desired_lrp_created",
        Some(&last),
    )
    .await
    .expect("connect")
    .expect("stream");
    let after = resumed.take(2, WAIT).await.expect("after");
    let guids: Vec<_> = before
        .iter()
        .chain(&after)
        .map(|e| e.data["desired_lrp"]["process_guid"].clone())
        .collect();
    assert_eq!(guids, [json!("x1"), json!("x2"), json!("x3"), json!("x4")]);
}

#[tokio::test]
async fn the_events_cli_prints_json_lines_and_resumes_from_an_id() {
    let (_d, c) = dev(&["--no-cell"]);
    let cli = |extra: &[&str]| {
        std::process::Command::new(capstan_tests::capstan_bin().expect("bin"))
            .args(["events", "--cluster", &c.grpc, "--kind", "desired_lrp_created"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("capstan events")
    };
    for g in ["e0", "e1"] {
        assert_eq!(c.post("/v1/desired_lrps", &lrp_json(g, "d", 0)).await.status, 201);
    }
    // From the start of the journal (after position 0).
    let follower = cli(&["--from", "0", "--count", "2"]);
    let out = tokio::task::spawn_blocking(move || follower.wait_with_output().expect("output"))
        .await
        .expect("join");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l["event"] == "desired_lrp_created"));
    assert_eq!(lines[1]["data"]["desired_lrp"]["process_guid"], "e1");
    // --from resumes right after an id.
    let from = lines[0]["id"].as_str().unwrap_or_default().to_owned();
    let out = cli(&["--from", &from, "--count", "1"])
        .wait_with_output()
        .expect("output");
    let line: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("json");
    assert_eq!(line, lines[1]);
}

#[tokio::test]
async fn a_node_that_installed_a_snapshot_knows_its_journal_floor() {
    let mut cl = Cluster::start(
        3,
        &["--snapshot-every-entries", "20", "--logs-kept-behind-snapshot", "5"],
    )
    .expect("cluster");
    let leader = cl.leader(Duration::from_secs(20)).await;
    let down = *cl.nodes.keys().find(|n| **n != leader).expect("a follower");
    cl.kill9(down);
    for i in 0..80 {
        let r = cl
            .node(leader)
            .post("/v1/desired_lrps", &lrp_json(&format!("s{i}"), "d", 0))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    cl.start_node(down).expect("restart");
    // Caught up by snapshot: it has s79, but not the journal records before the snapshot.
    capstan_tests::wait_for("the restarted node to catch up", Duration::from_secs(60), || async {
        let node = cl.node(down);
        let r = node
            .client
            .get(node.url("/v1/desired_lrps/s79"))
            .header("X-Capstan-Consistency", "stale")
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let (status, body) = subscribe(&cl.node(down).http, "/v1/events", Some("1"))
        .await
        .expect("connect")
        .err()
        .expect("the snapshot started its journal over");
    assert_eq!(status, 410, "{body}");
    // The leader, which built its snapshots itself, still has its whole journal.
    let mut s = subscribe(&cl.node(leader).http, "/v1/events?kinds=desired_lrp_created", Some("1"))
        .await
        .expect("connect")
        .expect("the leader still has it");
    let first = s.next(WAIT).await.expect("first");
    assert_eq!(first.data["desired_lrp"]["process_guid"], "s0");
}

#[tokio::test]
async fn the_journal_keeps_at_most_its_bytes_limit() {
    let (_d, c) = dev(&["--no-cell", "--journal-bytes-max", "4096"]);
    let mut ids = Vec::new();
    let mut s = sub(&c, "/v1/events?kinds=desired_lrp_created", None).await;
    for i in 0..40 {
        assert_eq!(
            c.post("/v1/desired_lrps", &lrp_json(&format!("b{i}"), "d", 0))
                .await
                .status,
            201
        );
        ids.push(s.next(WAIT).await.expect("event").id);
    }
    // Each record is several hundred bytes: the first ones are gone, the last ones kept.
    let (status, body) = subscribe(&c.http, "/v1/events", Some(&ids[0]))
        .await
        .expect("connect")
        .err()
        .expect("410");
    assert_eq!(status, 410, "{body}");
    let mut recent = sub(&c, "/v1/events?kinds=desired_lrp_created", Some(&ids[37])).await;
    let tail = recent.take(2, WAIT).await.expect("the newest records are kept");
    assert_eq!(
        tail.iter()
            .map(|e| e.data["desired_lrp"]["process_guid"].clone())
            .collect::<Vec<_>>(),
        [json!("b38"), json!("b39")]
    );
}
