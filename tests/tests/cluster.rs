//! Multi-node clusters of real `capstan server` processes on loopback: replication, failover
//! under load, membership change under load, catch-up by snapshot. Waits are on conditions.

use std::collections::BTreeSet;
use std::time::Duration;

use capstan_tests::cluster::Cluster;
use capstan_tests::load::Load;
use capstan_tests::{lrp_json, wait_for, Capstan};
use serde_json::Value;

const ELECTION: Duration = Duration::from_secs(20);

async fn guids_on(node: &Capstan, stale: bool) -> BTreeSet<String> {
    let mut req = node.client.get(node.url("/v1/desired_lrps"));
    if stale {
        req = req.header("x-capstan-consistency", "stale");
    }
    let Ok(resp) = req.send().await else {
        return BTreeSet::new();
    };
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["process_guid"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until `node`'s own view (stale read) holds every guid in `want`.
async fn converged(node: &Capstan, want: &BTreeSet<String>, what: &str) {
    wait_for(what, Duration::from_secs(60), || async {
        let have = guids_on(node, true).await;
        want.is_subset(&have).then_some(())
    })
    .await;
}

fn http_urls(c: &Cluster) -> Vec<String> {
    c.alive().map(|(_, n)| n.http.clone()).collect()
}

#[tokio::test]
async fn three_nodes_a_write_through_any_node_is_read_through_every_node() {
    let c = Cluster::start(3, &[]).expect("cluster");
    c.leader(ELECTION).await;
    let mut want = BTreeSet::new();
    for (id, n) in c.alive() {
        let guid = format!("via-{id}");
        let r = n.post("/v1/desired_lrps", &lrp_json(&guid, "d", 2)).await;
        assert_eq!(r.status, 201, "write through node {id}: {r:?}");
        want.insert(guid);
    }
    for (id, n) in c.alive() {
        // Linearizable reads (the default) see every acknowledged write at once.
        assert_eq!(guids_on(n, false).await, want, "linearizable read on node {id}");
        let r = n.get("/v1/actual_lrps/via-1").await;
        assert_eq!(r.json().as_array().map(Vec::len), Some(2), "node {id}");
        // Errors keep their shape through forwarding.
        let r = n.get("/v1/desired_lrps/missing").await;
        assert_eq!(
            (r.status, r.json()["name"].clone()),
            (404, Value::from("DesiredLRPNotFound"))
        );
        let r = n.post("/v1/desired_lrps", &lrp_json("via-1", "other-domain", 1)).await;
        assert_eq!(r.status, 409, "node {id}: {r:?}");
    }
    // Flotilla's family goes through the same forwarding: define through every node, read through every node.
    let mut defined = Vec::new();
    for (id, n) in c.alive() {
        let body = serde_json::json!({"alias": format!("def-{id}"), "group_name": "g", "image": "i",
                                      "command": "true", "memory": 64});
        let r = n.post("/api/v1/task", &body.to_string()).await;
        assert_eq!(r.status, 200, "define through node {id}: {r:?}");
        defined.push(r.json()["definition_id"].as_str().unwrap_or("").to_owned());
        let r = n.post("/api/v1/task", &body.to_string()).await;
        assert_eq!(
            (r.status, r.json()["error"].is_string()),
            (409, true),
            "node {id}: {r:?}"
        );
    }
    for (id, n) in c.alive() {
        assert_eq!(n.get("/api/v1/task").await.json()["total"], 3, "node {id}");
        for d in &defined {
            assert_eq!(n.get(&format!("/api/v1/task/{d}")).await.status, 200, "node {id}: {d}");
        }
    }
    for (id, n) in c.alive() {
        converged(n, &want, &format!("node {id}'s own view")).await;
    }
    let status = c.cli(&["status"]).expect("status");
    let members = status["members"].as_array().cloned().unwrap_or_default();
    assert_eq!(members.len(), 3);
    assert!(
        members
            .iter()
            .all(|m| m["voter"] == true && m["status"]["state"].is_string()),
        "{status}"
    );
}

#[tokio::test]
async fn leader_kill_9_under_load_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3, &[]).expect("cluster");
    let leader = c.leader(ELECTION).await;
    let load = Load::start(http_urls(&c), 6, "fo");
    load.wait_for_more(100, Duration::from_secs(60)).await;
    kill_the_leader_and_check_every_acknowledged_write(&mut c, leader, load, 100).await;
}

/// Kills `leader` with -9 under `load`; once a new leader has acknowledged `more` further writes,
/// every acknowledged write must be on every live node (linearizable read, then its own view),
/// and on the old leader once it restarts from its own data.
async fn kill_the_leader_and_check_every_acknowledged_write(c: &mut Cluster, leader: u64, load: Load, more: usize) {
    c.kill9(leader);
    let new_leader = c.leader(ELECTION).await;
    assert_ne!(new_leader, leader);
    load.wait_for_more(more, Duration::from_secs(60)).await;
    let acked: BTreeSet<String> = load.stop().await.into_iter().collect();

    for (id, n) in c.alive() {
        let have = guids_on(n, false).await;
        let lost: Vec<_> = acked.difference(&have).collect();
        assert!(lost.is_empty(), "node {id} lost acknowledged writes: {lost:?}");
        converged(
            n,
            &acked,
            &format!("node {id}'s own view to hold every acknowledged write"),
        )
        .await;
    }
    c.start_node(leader).expect("restart");
    converged(c.node(leader), &acked, "the restarted old leader to catch up").await;
}

/// A value of the node's `/metrics` (the first series of that name), 0 when absent.
async fn metric(node: &Capstan, name: &str) -> f64 {
    let text = node.get("/metrics").await.body;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            (series.split('{').next() == Some(name)).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// Whether `node` has recorded batches of the histogram `name` (`..._sum` and `..._count`)
/// holding more than one command on average.
async fn batches_of_several(node: &Capstan, name: &str) -> bool {
    let commands = metric(node, &format!("{name}_sum")).await;
    let batches = metric(node, &format!("{name}_count")).await;
    batches > 0.0 && commands > batches
}

/// Issue 13: commands batched many to an entry, and forwarded by followers many to a call,
/// survive the leader killed in the middle of a burst; every acknowledged create is on every node.
#[tokio::test]
async fn leader_kill_9_during_a_burst_of_batched_writes_loses_no_acknowledged_create() {
    let mut c = Cluster::start(3, &[]).expect("cluster");
    let leader = c.leader(ELECTION).await;
    // Spread over all three nodes: two thirds of the creates arrive at followers.
    let load = Load::start(http_urls(&c), 64, "burst");
    // Until the leader has proposed entries carrying more than one command: the burst batches.
    wait_for("entries carrying several commands", Duration::from_secs(60), || async {
        batches_of_several(c.node(leader), "capstan_raft_write_batch_commands")
            .await
            .then_some(())
    })
    .await;
    // And a follower has forwarded calls carrying more than one command.
    wait_for(
        "forwarded calls carrying several commands",
        Duration::from_secs(60),
        || async {
            for (_, node) in c.alive().filter(|(id, _)| **id != leader) {
                if batches_of_several(node, "capstan_raft_forward_batch_commands").await {
                    return Some(());
                }
            }
            None
        },
    )
    .await;
    load.wait_for_more(200, Duration::from_secs(60)).await;
    kill_the_leader_and_check_every_acknowledged_write(&mut c, leader, load, 200).await;
}

#[tokio::test]
async fn membership_3_to_5_to_3_under_load_and_new_nodes_catch_up_by_snapshot() {
    // Small snapshot policy so that the log is purged and new members need a snapshot.
    let mut c = Cluster::start(
        3,
        &["--snapshot-every-entries", "50", "--logs-kept-behind-snapshot", "10"],
    )
    .expect("cluster");
    c.leader(ELECTION).await;
    let load = Load::start(http_urls(&c), 4, "mb");
    load.wait_for_more(200, Duration::from_secs(60)).await;

    for id in [4, 5] {
        let spec = c.start_new_node(id).expect("start new node");
        let s = c
            .cli(&["add", "--id", &id.to_string(), "--addr", &spec.grpc])
            .expect("add");
        assert!(
            s["members"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["id"] == id && m["voter"] == true),
            "node {id} is a voter: {s}"
        );
        load.wait_for_more(50, Duration::from_secs(60)).await;
    }
    let s = c.cli(&["status"]).expect("status");
    assert_eq!(s["members"].as_array().map(Vec::len), Some(5), "{s}");
    for id in [4u64, 5] {
        let m = s["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or_default();
        assert!(
            m["status"]["snapshot_index"].as_u64().unwrap_or(0) > 0,
            "node {id} caught up by snapshot: {m}"
        );
    }

    // Shrink back to three: remove two of the founders (one may be the leader).
    for id in [1, 2] {
        let s = c.cli(&["remove", "--id", &id.to_string()]).expect("remove");
        assert!(
            s["members"].as_array().into_iter().flatten().all(|m| m["id"] != id),
            "{s}"
        );
        c.kill9(id);
        c.leader(ELECTION).await;
        load.wait_for_more(50, Duration::from_secs(60)).await;
    }
    let acked: BTreeSet<String> = load.stop().await.into_iter().collect();
    let s = c.cli(&["status"]).expect("status");
    let ids: BTreeSet<u64> = s["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, BTreeSet::from([3, 4, 5]), "{s}");
    for (id, n) in c.alive() {
        converged(n, &acked, &format!("node {id} to hold every acknowledged write")).await;
    }
}

#[tokio::test]
async fn a_long_down_node_catches_up_by_snapshot_after_the_log_was_purged() {
    let mut c = Cluster::start(
        3,
        &["--snapshot-every-entries", "50", "--logs-kept-behind-snapshot", "10"],
    )
    .expect("cluster");
    let leader = c.leader(ELECTION).await;
    let down = if leader == 3 { 2 } else { 3 };
    c.kill9(down);
    let load = Load::start(http_urls(&c), 4, "ld");
    load.wait_for_more(300, Duration::from_secs(60)).await;
    let acked: BTreeSet<String> = load.stop().await.into_iter().collect();
    let s = c.cli(&["status"]).expect("status");
    let leader_purged = s["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"] == s["leader_id"])
        .and_then(|m| m["status"]["purged_index"].as_u64())
        .unwrap_or(0);
    assert!(leader_purged > 10, "the leader purged its log: {s}");

    c.start_node(down).expect("restart");
    converged(c.node(down), &acked, "the long-down node to catch up").await;
    let s = c.cli(&["status"]).expect("status");
    let m = s["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"] == down)
        .cloned()
        .unwrap_or_default();
    assert!(
        m["status"]["snapshot_index"].as_u64().unwrap_or(0) > 0,
        "installed a snapshot: {m}"
    );
}
