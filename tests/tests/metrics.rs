//! `GET /metrics`: after a known sequence of requests, the counters and histograms moved by what
//! the requests did — REST by family/route/status, gRPC by method/code, the Raft indexes, the
//! counts over the state (instances, the scheduler's queue) and the auth guard's refusals.

use std::collections::HashMap;
use std::time::Duration;

use capstan_tests::auth::AuthFixture;
use capstan_tests::{lrp_json, wait_for, Capstan};

const DEADLINE: Duration = Duration::from_secs(30);

/// A scrape: every sample line's `name{labels}` to its value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    async fn of(c: &Capstan) -> Scrape {
        let r = c.get("/metrics").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.header("content-type").is_some_and(|t| t.starts_with("text/plain")));
        let mut samples = HashMap::new();
        for line in r.body.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (key, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            samples.insert(key.to_owned(), value);
        }
        Scrape(samples)
    }

    /// The sample with this name and these labels (in any order, and possibly more of them).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .filter(|(k, _)| labels.iter().all(|(l, v)| k.contains(&format!("{l}=\"{v}\""))))
            .map(|(_, v)| *v)
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_move_the_counters_and_histograms_they_should() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev(&dir.path().join("data")).expect("start");
    let before = Scrape::of(&c).await;
    assert!(
        before.0.keys().any(|k| k.starts_with("capstan_raft_term")),
        "raft gauges published"
    );

    let create = [("route", "/v1/desired_lrps"), ("method", "POST")];
    for guid in ["m1", "m2", "m3"] {
        let r = c.post("/v1/desired_lrps", &lrp_json(guid, "metrics", 2)).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(
        c.post("/v1/desired_lrps", r#"{"process_guid":"bad guid"}"#)
            .await
            .status,
        400
    );
    for _ in 0..2 {
        assert_eq!(c.get("/v1/desired_lrps/absent").await.status, 404);
    }
    assert_eq!(c.get("/no/such/path").await.status, 404);

    // The scheduler counts its placement failures once its entry is applied: wait for both.
    let after = wait_for(
        "the six instances counted and their placements failed",
        DEADLINE,
        || async {
            let s = Scrape::of(&c).await;
            let failed = s.value("capstan_scheduler_placement_failures_total", &[("kind", "instance")]);
            (s.value("capstan_instances", &[("state", "unclaimed")]) == 6.0 && failed >= 6.0).then_some(s)
        },
    )
    .await;
    let delta = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);

    // REST: by family, route template, method and status; the latency histogram counts each.
    let rest = "capstan_http_requests_total";
    assert_eq!(
        delta(rest, &[("family", "receptor"), create[0], create[1], ("status", "201")]),
        3.0
    );
    assert_eq!(
        delta(rest, &[("family", "receptor"), create[0], create[1], ("status", "400")]),
        1.0
    );
    let get_one = [("route", "/v1/desired_lrps/{process_guid}"), ("status", "404")];
    assert_eq!(delta(rest, &get_one), 2.0);
    assert_eq!(delta(rest, &[("family", "other"), ("route", "unmatched")]), 1.0);
    assert_eq!(delta("capstan_http_request_duration_seconds_count", &create), 4.0);
    assert_eq!(
        delta(
            "capstan_http_request_duration_seconds_bucket",
            &[create[0], create[1], ("le", "+Inf")]
        ),
        4.0
    );
    assert!(delta("capstan_http_request_duration_seconds_sum", &create) > 0.0);

    // gRPC: the gateway's calls, by method and code.
    let grpc = "capstan_grpc_requests_total";
    assert_eq!(delta(grpc, &[("method", "DesireLrp"), ("code", "Ok")]), 3.0);
    assert_eq!(
        delta(grpc, &[("method", "DesireLrp"), ("code", "InvalidArgument")]),
        1.0
    );
    assert_eq!(delta(grpc, &[("method", "GetDesiredLrp"), ("code", "NotFound")]), 2.0);
    assert_eq!(
        delta(
            "capstan_grpc_request_duration_seconds_count",
            &[("method", "DesireLrp")]
        ),
        4.0
    );

    // Raft: three entries applied at least (no cell: the scheduler adds its failures), durable
    // appends and flushes recorded, the committed index at least the applied one.
    assert!(delta("capstan_raft_applied_index", &[]) >= 3.0);
    assert!(after.value("capstan_raft_committed_index", &[]) >= after.value("capstan_raft_applied_index", &[]));
    assert!(delta("capstan_raft_append_duration_seconds_count", &[]) >= 3.0);
    assert!(delta("capstan_raft_apply_batch_entries_sum", &[]) >= 3.0);
    assert!(delta("capstan_storage_flush_duration_seconds_count", &[]) >= 3.0);
    assert_eq!(after.value("capstan_raft_is_leader", &[]), 1.0);
    assert_eq!(after.value("capstan_raft_members", &[]), 1.0);

    // State: no cell, so all six wait, and the scheduler said it found no cell for them.
    assert_eq!(after.value("capstan_cells", &[("state", "registered")]), 0.0);
    assert_eq!(after.value("capstan_instances", &[("state", "running")]), 0.0);
    assert_eq!(
        after.value("capstan_scheduler_queue_length", &[("kind", "instance")]),
        6.0
    );
    assert!(after.value("capstan_scheduler_placement_failures_total", &[("kind", "instance")]) >= 6.0);

    // Deleting empties the count: a state with nothing in it reads 0, not its last figure.
    for guid in ["m1", "m2", "m3"] {
        assert_eq!(c.delete(&format!("/v1/desired_lrps/{guid}")).await.status, 204);
    }
    wait_for("no instance counted", DEADLINE, || async {
        let s = Scrape::of(&c).await;
        (s.value("capstan_instances", &[]) == 0.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_counted_by_kind_and_metrics_need_no_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = AuthFixture::new("").expect("fixture");
    let c = fixture.dev(&dir.path().join("data")).expect("start");
    let before = Scrape::of(&c).await;
    assert_eq!(c.get("/v1/desired_lrps").await.status, 401);
    let r = c.request(reqwest::Method::GET, "/v1/desired_lrps", None).await;
    assert_eq!(r.status, 401);
    let forged = c
        .client
        .get(c.url("/v1/desired_lrps"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("send");
    assert_eq!(forged.status().as_u16(), 401);
    let after = Scrape::of(&c).await;
    let refusals = "capstan_auth_refusals_total";
    let delta = |kind: &str| after.value(refusals, &[("kind", kind)]) - before.value(refusals, &[("kind", kind)]);
    assert_eq!(delta("missing"), 2.0);
    assert_eq!(delta("malformed") + delta("invalid_token"), 1.0);
    let unauthenticated = [("route", "/v1/desired_lrps"), ("status", "401")];
    assert_eq!(
        after.value("capstan_http_requests_total", &unauthenticated)
            - before.value("capstan_http_requests_total", &unauthenticated),
        3.0
    );
}
