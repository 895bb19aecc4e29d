//! A cell's assignment stream, as a cell sees it over gRPC: the first message is the whole set,
//! later ones (for a cell that asks for deltas) only what changed. The set a cell builds from the
//! deltas must always come to what the views say is on the cell, and to what an older agent's
//! stream (the whole set every time) says — through creates, placements, reports, scale-down,
//! instance kills, deletes and task runs that start and finish.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_proto::pb::{self, cell_service_client::CellServiceClient};
use capstan_tests::auth::cell_record;
use capstan_tests::flotilla::{define, execute, status_is};
use capstan_tests::{lrp_json, wait_for, Capstan};
use serde_json::json;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(30);
const CELL: &str = "watcher";

/// What a cell knows: each instance slot's (instance guid, state), each run's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Known {
    instances: BTreeMap<(String, u32), (String, i32)>,
    runs: BTreeMap<String, i32>,
}

/// What one stream's messages have told a cell.
#[derive(Default)]
struct Seen {
    known: Known,
    messages: usize,
    deltas: usize,
    /// A CLAIMED instance came without the DesiredLRP the cell needs to start it.
    claimed_without_desired: Vec<(String, u32)>,
}

impl Seen {
    fn apply(&mut self, m: pb::Assignments) {
        self.messages += 1;
        if !m.delta {
            self.known = Known::default();
        } else {
            self.deltas += 1;
        }
        for k in m.removed {
            self.known.instances.remove(&(k.process_guid, k.index));
        }
        for r in m.removed_runs {
            self.known.runs.remove(&r);
        }
        for a in m.assignments {
            let Some(x) = a.actual else { continue };
            if x.state == pb::ActualLrpState::Claimed as i32 && a.desired.is_none() {
                self.claimed_without_desired.push((x.process_guid.clone(), x.index));
            }
            self.known
                .instances
                .insert((x.process_guid, x.index), (x.instance_guid, x.state));
        }
        for r in m.task_runs {
            self.known.runs.insert(r.run_id, r.status);
        }
    }
}

/// Follows a stream in the background.
async fn follow(ch: Channel, deltas: bool) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut stream = CellServiceClient::new(ch)
        .watch_assignments(pb::WatchAssignmentsRequest {
            cell_id: CELL.into(),
            deltas,
        })
        .await
        .expect("watch")
        .into_inner();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(m)) = stream.message().await {
            s.lock().expect("lock").apply(m);
        }
    });
    seen
}

/// What the views say is on the cell.
async fn on_cell(c: &Capstan) -> Known {
    let mut k = Known::default();
    for a in c
        .get("/v1/actual_lrps")
        .await
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if a["cell_id"] != CELL {
            continue;
        }
        let state = match a["state"].as_str() {
            Some("CLAIMED") => pb::ActualLrpState::Claimed,
            Some("RUNNING") => pb::ActualLrpState::Running,
            Some("CRASHED") => pb::ActualLrpState::Crashed,
            _ => pb::ActualLrpState::Unclaimed,
        };
        let key = (
            a["process_guid"].as_str().unwrap_or_default().to_owned(),
            u32::try_from(a["index"].as_u64().unwrap_or(0)).unwrap_or(0),
        );
        k.instances.insert(
            key,
            (a["instance_guid"].as_str().unwrap_or_default().to_owned(), state as i32),
        );
    }
    k
}

/// Waits until every stream has told its cell exactly what the views say (the runs compared by
/// `runs`), and the views have `instances` on the cell.
async fn agree(c: &Capstan, streams: &[&Arc<Mutex<Seen>>], instances: usize, runs: &[&str]) -> Known {
    wait_for(
        &format!("{instances} instances on the cell, every stream agreeing"),
        DEADLINE,
        || async {
            let want = on_cell(c).await;
            if want.instances.len() != instances {
                return None;
            }
            for s in streams {
                let k = s.lock().ok()?.known.clone();
                let run_ids: Vec<&str> = k.runs.keys().map(String::as_str).collect();
                if k.instances != want.instances || run_ids != runs {
                    return None;
                }
            }
            Some(want)
        },
    )
    .await
}

fn started(process_guid: &str, index: u32, instance_guid: &str) -> pb::StartedActualLrp {
    pb::StartedActualLrp {
        key: Some(pb::ActualLrpKey {
            process_guid: process_guid.into(),
            index,
            instance_guid: instance_guid.into(),
            cell_id: CELL.into(),
        }),
        address: "127.0.0.1".into(),
        ports: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deltas_keep_a_cell_exactly_where_the_whole_set_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Capstan::dev_with(&dir.path().join("data"), &["--no-cell"]).expect("capstan dev");
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", c.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut cells = CellServiceClient::new(ch.clone());
    let mut record = cell_record(CELL);
    record.capacity = Some(pb::CellCapacity {
        memory_mb: 100_000,
        disk_mb: 100_000,
        containers: 100,
    });
    record.preloaded_stacks = vec!["cflinuxfs4".into()];
    let beat = cells.register_cell(record).await.expect("register").into_inner();
    // Heartbeats within the TTL, as an agent sends them.
    let mut beats = cells.clone();
    tokio::spawn(async move {
        let every = Duration::from_millis(u64::from(beat.heartbeat_interval_ms));
        loop {
            let _ = beats
                .heartbeat(pb::HeartbeatRequest {
                    cell_ids: vec![CELL.into()],
                })
                .await;
            tokio::time::sleep(every).await;
        }
    });
    let deltas = follow(ch.clone(), true).await;
    let whole = follow(ch.clone(), false).await;

    // Placements: every instance arrives CLAIMED, with what the cell needs to start it.
    for (guid, n) in [("alpha", 5), ("beta", 3)] {
        let r = c.post("/v1/desired_lrps", &lrp_json(guid, "assign", n)).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let now = agree(&c, &[&deltas, &whole], 8, &[]).await;

    // Reports: alpha's instances RUNNING.
    let report = pb::ReportActualLrps {
        started: now
            .instances
            .iter()
            .filter(|((g, _), _)| g == "alpha")
            .map(|((g, i), (ig, _))| started(g, *i, ig))
            .collect(),
        crashed: vec![],
    };
    cells.report_actual_lrps(report).await.expect("report");
    let now = agree(&c, &[&deltas, &whole], 8, &[]).await;
    let running = now
        .instances
        .values()
        .filter(|(_, s)| *s == pb::ActualLrpState::Running as i32);
    assert_eq!(running.count(), 5);

    // Scale down, kill an instance (it is replaced by a new one in its slot), delete.
    let r = c.put("/v1/desired_lrps/alpha", r#"{"instances": 2}"#).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = c.delete("/v1/desired_lrps/beta").await;
    assert_eq!(r.status, 204, "{}", r.body);
    let now = agree(&c, &[&deltas, &whole], 2, &[]).await;
    let killed = now.instances[&("alpha".to_owned(), 0)].0.clone();
    let r = c.delete("/v1/actual_lrps/alpha/index/0").await;
    assert_eq!(r.status, 204, "{}", r.body);
    let now = wait_for("alpha/0 placed again under a new instance guid", DEADLINE, || async {
        let now = agree(&c, &[&deltas, &whole], 2, &[]).await;
        let slot = now.instances.get(&("alpha".to_owned(), 0))?;
        (slot.0 != killed && slot.1 == pb::ActualLrpState::Claimed as i32).then_some(now)
    })
    .await;

    // A Flotilla run placed on the cell, started and finished by its reports: on the cell while
    // PENDING and RUNNING, gone once STOPPED.
    let def = define(&c, "assign-run", "true", 64).await;
    let run = execute(&c, &def, json!({})).await;
    let run_id = run["run_id"].as_str().expect("run_id").to_owned();
    agree(&c, &[&deltas, &whole], 2, &[run_id.as_str()]).await;
    let attempt = |kind| pb::TaskRunReport {
        run_id: run_id.clone(),
        cell_id: CELL.into(),
        attempt: 1,
        kind: kind as i32,
        ..Default::default()
    };
    cells
        .report_task_runs(pb::ReportTaskRuns {
            reports: vec![
                attempt(pb::TaskRunReportKind::Started),
                attempt(pb::TaskRunReportKind::Exited),
            ],
        })
        .await
        .expect("run reports");
    status_is(&c, &run_id, "STOPPED").await;
    agree(&c, &[&deltas, &whole], 2, &[]).await;

    // A stream opened now starts from the whole set, which is what the others came to.
    let late = follow(ch.clone(), true).await;
    let again = agree(&c, &[&deltas, &whole, &late], 2, &[]).await;
    assert_eq!(again, now);

    let d = deltas.lock().expect("lock");
    assert!(
        d.deltas > 0 && d.deltas + 1 == d.messages,
        "one whole set, then deltas: {} of {}",
        d.deltas,
        d.messages
    );
    assert!(d.claimed_without_desired.is_empty(), "{:?}", d.claimed_without_desired);
    let w = whole.lock().expect("lock");
    assert_eq!(w.deltas, 0, "an older agent's stream sends whole sets only");
    assert!(w.claimed_without_desired.is_empty(), "{:?}", w.claimed_without_desired);
}
