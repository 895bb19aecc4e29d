//! A node started in-process through the library, with a shutdown future of the test's own:
//! it serves a write and a read, then stops in order when the future resolves and `run` returns.

use std::time::Duration;

use capstan::node::{self, NodeOptions};
use capstan_proto::pb::{self, control_plane_client::ControlPlaneClient};

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn lrp(guid: &str) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "d".into(),
        rootfs: "preloaded:cflinuxfs4".into(),
        instances: 1,
        action: Some(pb::Action {
            kind: Some(pb::action::Kind::Run(pb::RunAction {
                path: "true".into(),
                user: "vcap".into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_runs_in_process_and_stops_on_its_shutdown_future() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grpc = free_port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let opts = NodeOptions {
        id: 1,
        data_dir: dir.path().to_owned(),
        grpc,
        advertise: None,
        http: None,
        initial_members: None,
        tuning: node::Tuning {
            snapshot_every_entries: None,
            logs_kept_behind_snapshot: None,
            disk_free_floor_bytes: 0,
            journal_records_max: 1000,
            journal_bytes_max: 1 << 20,
            sled_cache_bytes: capstan_storage::disk::SLED_CACHE_BYTES_DEFAULT,
            limits: Default::default(),
            cell_ttl: Duration::from_secs(10),
            converge_interval: Duration::from_secs(30),
        },
        embedded_cell: None,
        auth: capstan::auth::Authenticator::off().expect("auth off"),
        tls: None,
    };
    let running = tokio::spawn(node::run(opts, async move {
        let _ = stop_rx.await;
    }));

    // Wait (with a deadline) until the node answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        if let Ok(c) = ControlPlaneClient::connect(format!("http://{grpc}")).await {
            break c;
        }
        assert!(tokio::time::Instant::now() < deadline, "the node never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Answering comes before electing itself leader: retry the documented "unavailable, retry".
    let created = loop {
        let answer = client
            .desire_lrp(pb::DesireLrp {
                desired_lrp: Some(lrp("in-process")),
            })
            .await;
        match answer {
            Err(s) if s.code() == tonic::Code::Unavailable && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other.expect("create").into_inner(),
        }
    };
    assert!(created.created);
    let got = client
        .get_desired_lrp(pb::GetDesiredLrpRequest {
            process_guid: "in-process".into(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.instances, 1);

    stop_tx.send(()).expect("node still running");
    let result = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the node stopped within 20 s")
        .expect("join");
    assert!(result.is_ok(), "run returned {result:?}");
    assert!(
        ControlPlaneClient::connect(format!("http://{grpc}")).await.is_err(),
        "the listener is closed after shutdown"
    );
}
