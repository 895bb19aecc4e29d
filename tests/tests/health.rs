//! The probes: `/healthz` answers while the process runs; `/readyz` says whether the node can
//! serve — ready on a `capstan dev` and on every member of a healthy 3-node cluster, not ready
//! (503, with the reason) on a member that lost its quorum, and ready again once it is back.

use std::time::Duration;

use capstan_tests::cluster::Cluster;
use capstan_tests::{wait_for, Capstan};

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_dev_node_is_healthy_and_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev(&dir.path().join("data")).expect("start");
    let h = c.get("/healthz").await;
    assert_eq!((h.status, h.json()["status"].clone()), (200, serde_json::json!("ok")));
    let r = wait_for("the dev node ready", DEADLINE, || async {
        let r = c.get("/readyz").await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(r.json()["ready"], true, "{}", r.body);
    assert_eq!(r.json()["leader_id"], 1);

    // `capstan probe`, the health check of images without curl: 0 on a 2xx, 1 otherwise.
    let probe = |path: &str| {
        std::process::Command::new(capstan_tests::capstan_bin().expect("bin"))
            .args(["probe", "--timeout-ms", "3000", &c.url(path)])
            .output()
            .expect("probe runs")
    };
    assert!(probe("/readyz").status.success());
    let refused = probe("/no/such/probe");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("404"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_without_its_quorum_is_not_ready_until_it_is_back() {
    let mut cluster = Cluster::start(3, &[]).expect("cluster");
    cluster.leader(DEADLINE).await;
    for id in [1, 2, 3] {
        let node = cluster.node(id);
        wait_for(&format!("node {id} ready"), DEADLINE, || async {
            (node.get("/readyz").await.status == 200).then_some(())
        })
        .await;
    }
    cluster.kill9(2);
    cluster.kill9(3);
    let alone = cluster.node(1);
    let r = wait_for("node 1 not ready without a quorum", DEADLINE, || async {
        let r = alone.get("/readyz").await;
        (r.status == 503).then_some(r)
    })
    .await;
    let v = r.json();
    assert_eq!(v["ready"], false);
    assert!(v["reasons"].as_array().is_some_and(|r| !r.is_empty()), "{v}");
    assert_eq!(alone.get("/healthz").await.status, 200, "alive all the same");
    cluster.start_node(2).expect("restart 2");
    cluster.start_node(3).expect("restart 3");
    for id in [1, 2, 3] {
        let node = cluster.node(id);
        wait_for(&format!("node {id} ready again"), DEADLINE, || async {
            (node.get("/readyz").await.status == 200).then_some(())
        })
        .await;
    }
}
