//! Fail-over as a client of a follower sees it: when the leader stops answering (SIGSTOP: its
//! connections stay open and silent), a write the follower had already forwarded to it is given up
//! as soon as the follower learns of a new leader — answered "unavailable, the leader changed" —
//! instead of waiting out the forwarding deadline behind a leader that will not answer; and the
//! next writes through the same follower reach the new leader. Waits are conditions with deadlines;
//! the fail-over time itself is a figure (the nemesis, BENCHMARKS.md).

use std::time::Duration;

use capstan_tests::cluster::Cluster;
use capstan_tests::{lrp_json, send_signal, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_gives_up_a_silent_leader_and_forwards_to_the_new_one() {
    let mut cluster = Cluster::start(3, &[]).expect("3 nodes");
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let follower = cluster.nodes.keys().copied().find(|id| *id != leader).unwrap_or(1);
    let via = cluster.node(follower);
    let r = via.post("/v1/desired_lrps", &lrp_json("failover", "tests", 0)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let pid = i32::try_from(cluster.node(leader).pid().expect("leader runs")).unwrap_or(0);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let url = format!("{}/v1/desired_lrps/failover", via.http);
    let put = |n: u32| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .put(&url)
                .header("content-type", "application/json")
                .body(serde_json::json!({ "annotation": format!("a{n}") }).to_string())
                .send()
                .await
                .expect("an answer");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };

    assert_eq!(send_signal(pid, 19), 0, "SIGSTOP the leader");
    // Forwarded at once to the silent leader (the follower does not know yet that it is gone).
    let in_flight = tokio::spawn(put(1));
    let new_leader = cluster
        .leader_among(
            &cluster
                .nodes
                .keys()
                .copied()
                .filter(|id| *id != leader)
                .collect::<Vec<_>>(),
            Duration::from_secs(30),
        )
        .await;
    assert_ne!(new_leader, leader);
    // The forwarded write is answered while the old leader is still stopped: either it reached the
    // new leader, or it was given up when the leader changed (its outcome unknown: 503).
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), in_flight)
        .await
        .expect("the forwarded write is answered while the old leader is stopped")
        .expect("task");
    assert!(
        status == 204 || (status == 503 && body.contains("leader changed")),
        "{status} {body}"
    );
    // Fresh writes through the same follower are acknowledged by the new leader.
    wait_for("a write through the follower", Duration::from_secs(10), || {
        let put = put(2);
        async move { (put.await.0 == 204).then_some(()) }
    })
    .await;
    assert_eq!(send_signal(pid, 18), 0, "SIGCONT the old leader");
    // The old leader rejoins as a follower and serves reads of what was written meanwhile.
    let old = cluster.node(leader);
    wait_for("the old leader to catch up", Duration::from_secs(20), || async {
        (old.get("/v1/desired_lrps/failover").await.json()["annotation"] == "a2").then_some(())
    })
    .await;
    cluster.kill9(leader);
}
