//! A fleet of a thousand cells against a node started with default flags: every cell registers
//! (each keeps its own gRPC connection to the leader, so the connection caps must be sized from
//! the file limit, not a constant of 256) and the scheduler places instances on them until all are
//! RUNNING. Bounded waits on conditions; speed is BENCHMARKS.md's business (`bench-cells`).

use std::time::Duration;

use capstan_tests::{lrp_json, wait_for, Capstan, CellAgent};

const CELLS: usize = 1_000;
const INSTANCES: usize = 2_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_cells_register_and_run_instances_with_default_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev_with(&dir.path().join("data"), &["--no-cell"]).expect("capstan dev");
    let _cells = CellAgent::simulated(&c.grpc, CELLS, &[]).expect("simulated cells");
    c.wait_for_cells(CELLS, Duration::from_secs(120)).await;

    let r = c
        .post(
            "/v1/desired_lrps",
            &lrp_json("fleet", "fleet", i32::try_from(INSTANCES).unwrap_or(0)),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let spread = wait_for("every instance RUNNING", Duration::from_secs(180), || {
        let c = &c;
        async move {
            let all = c.get("/v1/domains/fleet/actual_lrps").await.json();
            let rows = all.as_array()?;
            let running: Vec<&str> = rows
                .iter()
                .filter(|a| a["state"] == "RUNNING")
                .filter_map(|a| a["cell_id"].as_str())
                .collect();
            (running.len() == INSTANCES).then(|| running.iter().collect::<std::collections::BTreeSet<_>>().len())
        }
    })
    .await;
    assert!(
        spread > CELLS / 2,
        "instances spread over the fleet: {spread} cells of {CELLS}"
    );
    // The cells stay registered (heartbeats kept within the TTL the whole time).
    let cells = c.get("/v1/cells").await.json();
    assert_eq!(cells.as_array().map(Vec::len), Some(CELLS));
}
