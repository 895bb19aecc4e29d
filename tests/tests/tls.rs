//! TLS end to end with certificates made here (rcgen): REST over https, a 3-node cluster whose
//! peers, cells and admin CLI authenticate by mutual TLS alone (auth on, no cluster secret), and
//! a cell whose certificate another CA signed refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_proto::pb;
use capstan_tests::auth::{cell_record, AuthFixture};
use capstan_tests::cluster::Cluster;
use capstan_tests::{wait_for, CellAgent};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use serde_json::{json, Value};

/// A CA and a certificate it signed (for 127.0.0.1 and localhost, server and client use), as PEM
/// files in `dir` named `<name>-ca.pem`, `<name>.pem`, `<name>-key.pem`.
fn pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} node"));
    let cert = params.signed_by(&key, &ca).expect("signed");
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    paths
}

fn tls_flags(ca: &Path, cert: &Path, key: &Path) -> Vec<String> {
    vec![
        "--tls-ca-file".into(),
        ca.display().to_string(),
        "--tls-cert-file".into(),
        cert.display().to_string(),
        "--tls-key-file".into(),
        key.display().to_string(),
    ]
}

async fn tonic_channel(
    addr: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<tonic::transport::Channel, String> {
    let read = |p: &Path| std::fs::read(p).expect("pem");
    let mut tls =
        tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(read(ca)));
    if let Some((c, k)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(read(c), read(k)));
    }
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_three_node_cluster_runs_on_mutual_tls_and_serves_rest_over_https() {
    let fx = AuthFixture::without_secret("").expect("fixture");
    let dir = fx.dir.path();
    let (ca, cert, key) = pki(dir, "cluster");
    let (_rogue_ca, rogue_cert, rogue_key) = pki(dir, "rogue");
    let flags = tls_flags(&ca, &cert, &key);
    let mut node_args: Vec<&str> = vec!["--config", fx.config.to_str().expect("utf-8")];
    node_args.extend(flags.iter().map(String::as_str));
    let mut c = Cluster::start(3, &node_args).expect("cluster");
    c.cli_args = flags.clone();
    // Peers elect a leader over mutual TLS, and the admin CLI gets in by its certificate.
    let leader = c.leader(Duration::from_secs(30)).await;
    let follower = *c.nodes.keys().find(|id| **id != leader).expect("a follower");
    let https = |id: u64| c.node(id).http.replacen("http://", "https://", 1);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("ca")).expect("ca pem"))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    // REST is https only.
    assert!(
        c.node(follower)
            .client
            .get(c.node(follower).url("/v1/desired_lrps"))
            .send()
            .await
            .is_err()
            || c.node(follower).get("/v1/desired_lrps").await.status != 200,
        "plain http is not served"
    );
    let token = AuthFixture::login_at(&client, &https(follower), "writer", "writer-pw").await;
    let bearer = format!("bearer {}", token["access_token"].as_str().expect("token"));
    // A write through a follower is forwarded to the leader over mutual TLS.
    let create = client
        .post(format!("{}/api/v1/task", https(follower)))
        .header("authorization", &bearer)
        .json(&json!({"group_name": "g", "image": "busybox", "alias": "tls-1", "memory": 64, "command": "true"}))
        .send()
        .await
        .expect("create");
    assert_eq!(create.status().as_u16(), 200, "{:?}", create.text().await);
    let other = *c.nodes.keys().find(|id| **id != follower).expect("another node");
    let got: Value = wait_for("the definition through another node", Duration::from_secs(20), || {
        let (client, base, bearer) = (client.clone(), https(other), bearer.clone());
        async move {
            let r = client
                .get(format!("{base}/api/v1/task/alias/tls-1"))
                .header("authorization", bearer)
                .send()
                .await
                .ok()?;
            (r.status().as_u16() == 200).then_some(())?;
            r.json().await.ok()
        }
    })
    .await;
    assert_eq!(got["alias"], "tls-1");
    // The task CLI over https with the user's token.
    let out = std::process::Command::new(capstan_tests::capstan_bin().expect("bin"))
        .args([
            "task",
            "--api",
            &https(other),
            "--tls-ca-file",
            ca.to_str().expect("utf-8"),
        ])
        .args(["--token", token["access_token"].as_str().expect("token"), "list"])
        .output()
        .expect("capstan task");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tls-1"));

    // A cell with the cluster's certificate registers; no secret anywhere.
    let work = tempfile::tempdir().expect("work");
    let grpcs: Vec<String> = c.specs.values().map(|s| s.grpc.clone()).collect();
    let mut cell_args: Vec<&str> = flags.iter().map(String::as_str).collect();
    cell_args.extend(["--driver", "process"]);
    let _cell = CellAgent::start(&grpcs.join(","), "tls-cell", work.path(), &cell_args).expect("cell");
    wait_for("the TLS cell to register", Duration::from_secs(20), || {
        let (client, base, bearer) = (client.clone(), https(leader), bearer.clone());
        async move {
            let r = client
                .get(format!("{base}/v1/cells"))
                .header("authorization", bearer)
                .send()
                .await
                .ok()?;
            r.text().await.ok()?.contains("\"tls-cell\"").then_some(())
        }
    })
    .await;

    // A certificate from another CA is refused at the handshake; none at all, by the guard.
    let addr = c.specs[&leader].grpc.clone();
    if let Ok(ch) = tonic_channel(&addr, &ca, Some((&rogue_cert, &rogue_key))).await {
        let r = pb::cell_service_client::CellServiceClient::new(ch)
            .register_cell(cell_record("rogue"))
            .await;
        assert!(r.is_err(), "a rogue certificate registers nothing");
    }
    let ch = tonic_channel(&addr, &ca, None)
        .await
        .expect("TLS without a client certificate");
    let e = pb::cell_service_client::CellServiceClient::new(ch)
        .register_cell(cell_record("anonymous"))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let cells = client
        .get(format!("{}/v1/cells", https(leader)))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("cells")
        .text()
        .await
        .expect("body");
    assert!(!cells.contains("rogue") && !cells.contains("anonymous"), "{cells}");
}
