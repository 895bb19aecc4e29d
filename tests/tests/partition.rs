//! A network partition between real `capstan server` processes, each in its own network
//! namespace: the isolated old leader refuses writes with a clear 503, the majority elects a
//! leader and goes on, and after healing there is one history that the old leader holds too.
//! Needs root (network namespaces, iptables); skips with a message where that is missing.

use std::collections::BTreeSet;
use std::time::Duration;

use capstan_tests::cluster::Cluster;
use capstan_tests::load::Load;
use capstan_tests::netns::NetLab;
use capstan_tests::{lrp_json, wait_for, Capstan};
use serde_json::Value;

async fn stale_view(n: &Capstan) -> Option<Value> {
    let r = n
        .client
        .get(n.url("/v1/desired_lrps"))
        .header("x-capstan-consistency", "stale")
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

fn guids(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["process_guid"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn partitioned_leader_refuses_writes_majority_goes_on_and_history_heals() {
    let lab = match NetLab::create(3) {
        Ok(l) => l,
        Err(why) => {
            eprintln!("SKIPPED partition test: {why}");
            return;
        }
    };
    let c = Cluster::start_in_lab(&lab, &[]).expect("cluster in namespaces");
    let old = c.leader(Duration::from_secs(20)).await;
    let majority: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != old).collect();

    let load = Load::start(majority.iter().map(|id| c.node(*id).http.clone()).collect(), 4, "pt");
    load.wait_for_more(50, Duration::from_secs(60)).await;

    lab.isolate(usize::try_from(old - 1).expect("index")).expect("isolate");

    // The isolated old leader refuses writes with the family's error, quickly, never hanging.
    let isolated = c.node(old);
    let refusal = wait_for(
        "the isolated node to refuse a write",
        Duration::from_secs(30),
        || async {
            let r = isolated
                .post("/v1/desired_lrps", &lrp_json("minority-write", "d", 1))
                .await;
            (r.status == 503).then_some(r)
        },
    )
    .await;
    assert_eq!(refusal.json()["name"], "ServiceUnavailable", "{refusal:?}");
    assert!(refusal.header("retry-after").is_some(), "{refusal:?}");
    let read = isolated.get("/v1/desired_lrps").await;
    assert_eq!(
        read.status, 503,
        "a linearizable read on the minority side is refused: {read:?}"
    );

    // The majority elects a leader among itself and goes on.
    let new = c.leader_among(&majority, Duration::from_secs(30)).await;
    assert_ne!(new, old);
    load.wait_for_more(100, Duration::from_secs(60)).await;

    lab.heal(usize::try_from(old - 1).expect("index")).expect("heal");
    let acked: BTreeSet<String> = load.stop().await.into_iter().collect();

    // One history: every node's own view is the same and holds every acknowledged write.
    let reference = wait_for("the three views to agree", Duration::from_secs(60), || async {
        let mut views = Vec::new();
        for n in c.nodes.values() {
            views.push(stale_view(n).await?);
        }
        let agree = views.windows(2).all(|w| w[0] == w[1]);
        (agree && acked.is_subset(&guids(&views[0]))).then(|| views[0].clone())
    })
    .await;
    assert!(
        !guids(&reference).contains("minority-write"),
        "a refused write never entered the history"
    );
    let r = c
        .node(old)
        .post("/v1/desired_lrps", &lrp_json("after-heal", "d", 1))
        .await;
    assert_eq!(r.status, 201, "the healed node serves writes again: {r:?}");
}
