//! Durability: every write acknowledged with a 2xx survives `kill -9` of the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use capstan_tests::{lrp_json, Capstan};

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut c = Capstan::dev(&data).expect("start");

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, url) = (c.client.clone(), c.url("/v1/desired_lrps"));
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let guid = format!("w{w}-{i}");
                i += 1;
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(lrp_json(&guid, "durable", 2))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => acked.lock().expect("lock").push(guid),
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    // The process was killed under us: this write was never acknowledged.
                    Err(_) => break,
                }
            }
        }));
    }
    // Kill while writes are in flight, right after the 300th acknowledgement.
    capstan_tests::wait_for("300 acknowledged creates", std::time::Duration::from_secs(60), || {
        let n = acked.lock().expect("lock").len();
        async move { (n >= 300).then_some(()) }
    })
    .await;
    c.kill9();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 300);

    let c = Capstan::dev(&data).expect("restart");
    for guid in &acked {
        let r = c.get(&format!("/v1/desired_lrps/{guid}")).await;
        assert_eq!(r.status, 200, "acknowledged {guid} lost after kill -9");
        let actual = c.get(&format!("/v1/actual_lrps/{guid}")).await.json();
        assert_eq!(actual.as_array().map(Vec::len), Some(2), "{guid}");
    }
}

#[tokio::test]
async fn orderly_restart_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut c = Capstan::dev(&data).expect("start");
    assert_eq!(c.post("/v1/desired_lrps", &lrp_json("web", "d", 3)).await.status, 201);
    assert_eq!(
        c.post("/v1/fresh_domains", r#"{"domain":"d","ttl_in_seconds":0}"#)
            .await
            .status,
        204
    );
    let before = (
        c.get("/v1/desired_lrps").await.json(),
        c.get("/v1/actual_lrps").await.json(),
    );
    let status = c.terminate().expect("terminate");
    assert!(status.success(), "capstan dev exits cleanly on SIGTERM: {status}");
    let c = Capstan::dev(&data).expect("restart");
    let after = (
        c.get("/v1/desired_lrps").await.json(),
        c.get("/v1/actual_lrps").await.json(),
    );
    assert_eq!(before, after);
    assert_eq!(c.get("/v1/domains").await.json(), serde_json::json!(["d"]));
}
