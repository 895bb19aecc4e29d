//! Issue 14's stale read, reproduced at the cluster level: the leader acknowledges two writes and
//! is killed with -9 at once, while both followers are paused (SIGSTOP) so that nobody can elect
//! another leader; it restarts, and openraft restores it as leader from its vote. A linearizable
//! read sent to it as the followers resume must return the second write (or be refused) — never
//! the first. Before the committed id was made durable, the restarted leader could take its read
//! index from a committed id older than the writes it had acknowledged and answer with the old
//! value. Said plainly: run against the build before the fix on this machine, this scenario did
//! not reproduce the stale read (the restored leader's commit index advanced as the followers
//! answered, before the read was served); it stays as a regression test of the property, and
//! `storage/tests/crash.rs` is the deterministic reproduction of the mechanism (it fails before
//! the fix).

use std::time::{Duration, Instant};

use capstan_tests::cluster::Cluster;
use capstan_tests::{lrp_json, send_signal};

async fn put_annotation(http: &reqwest::Client, base: &str, value: &str) -> u16 {
    http.put(format!("{base}/v1/desired_lrps/reg"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "annotation": value }).to_string())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_never_answers_below_what_it_acknowledged() {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for round in 0..3 {
        let mut c = Cluster::start(3, &[]).expect("cluster");
        let leader = c.leader(Duration::from_secs(30)).await;
        let base = c.node(leader).http.clone();
        assert_eq!(
            c.node(leader)
                .post("/v1/desired_lrps", &lrp_json("reg", "d", 0))
                .await
                .status,
            201
        );
        let followers: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != leader).collect();

        assert_eq!(put_annotation(&http, &base, "first").await, 204);
        assert_eq!(put_annotation(&http, &base, "second").await, 204);
        for f in &followers {
            assert_eq!(
                send_signal(i32::try_from(c.node(*f).pid().expect("pid")).expect("pid"), 19),
                0
            );
        }
        c.kill9(leader);
        c.start_node(leader).expect("restart the old leader");
        let base = c.node(leader).http.clone();
        let read = {
            let (http, url) = (http.clone(), format!("{base}/v1/desired_lrps/reg"));
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if let Ok(r) = http.get(&url).send().await {
                        if r.status().as_u16() == 200 {
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            return v["annotation"].as_str().unwrap_or("").to_owned();
                        }
                    }
                    assert!(Instant::now() < deadline, "no read was ever served");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        for f in &followers {
            assert_eq!(
                send_signal(i32::try_from(c.node(*f).pid().expect("pid")).expect("pid"), 18),
                0
            );
        }
        let seen = read.await.expect("reader");
        assert_eq!(
            seen, "second",
            "round {round}: a linearizable read returned a value older than an acknowledged write"
        );
    }
}
