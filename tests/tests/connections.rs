//! Issue 9, defect 3: no client can starve a node. Idle, slow-header and slow-body connections are
//! closed within the configured limits while other clients are served; a declared oversize body
//! gets 413 at once; at the connection cap, a new connection is closed at once (counted in
//! /metrics and logged, never left to hang in the backlog), and clients are served as soon as a
//! slot frees up.

use std::time::{Duration, Instant};

use capstan_tests::{lrp_json, Capstan};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT_MS: u64 = 600;
const BODY_IDLE_TIMEOUT_MS: u64 = 600;
const CONNECTIONS_MAX: usize = 16;

fn start(dir: &std::path::Path) -> Capstan {
    let (header, body, cap) = (
        HEADER_TIMEOUT_MS.to_string(),
        BODY_IDLE_TIMEOUT_MS.to_string(),
        CONNECTIONS_MAX.to_string(),
    );
    let extra = [
        "--no-cell",
        "--http-header-timeout-ms",
        header.as_str(),
        "--http-body-idle-timeout-ms",
        body.as_str(),
        "--http-connections-max",
        cap.as_str(),
        "--grpc-connections-max",
        cap.as_str(),
    ];
    Capstan::dev_with(dir, &extra).expect("start")
}

fn addr(c: &Capstan) -> String {
    c.http.trim_start_matches("http://").to_owned()
}

/// Reads until the peer closes (or `deadline`); returns what arrived and whether it closed.
async fn read_until_closed(s: &mut TcpStream, deadline: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let end = Instant::now() + deadline;
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads until `needle` has arrived (or the peer closes, or `deadline`); returns what arrived.
async fn read_until(s: &mut TcpStream, needle: &str, deadline: Duration) -> String {
    let mut got = Vec::new();
    let end = Instant::now() + deadline;
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn idle_slow_and_oversize_connections_are_cut_while_others_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(&dir.path().join("data"));
    let a = addr(&c);
    let limit = Duration::from_millis(HEADER_TIMEOUT_MS * 5);

    // Idle: connects, says nothing.
    let mut idle = TcpStream::connect(&a).await.expect("connect");
    // Slow header: a request line and one header, then silence.
    let mut slow_head = TcpStream::connect(&a).await.expect("connect");
    slow_head
        .write_all(b"GET /v1/desired_lrps HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Slow body: declares 100 bytes, sends 10, then silence.
    let mut slow_body = TcpStream::connect(&a).await.expect("connect");
    slow_body
        .write_all(b"POST /v1/desired_lrps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"process_")
        .await
        .expect("write");

    // Meanwhile other clients are served.
    assert_eq!(
        c.post("/v1/desired_lrps", &lrp_json("served", "d", 1)).await.status,
        201
    );

    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut idle, limit).await;
    assert!(closed, "an idle connection stayed open past {limit:?}");
    let (_, closed) = read_until_closed(&mut slow_head, limit).await;
    assert!(closed, "a slow-header connection stayed open past {limit:?}");
    let (answer, _) = read_until_closed(&mut slow_body, limit).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "slow body answered: {answer:?}");
    assert!(answer.contains("\"name\":\"InvalidRequest\""), "{answer}");
    assert!(started.elapsed() < limit * 2);
    assert_eq!(
        c.get("/v1/desired_lrps/process_").await.status,
        404,
        "nothing of the slow body was written"
    );

    // A declared 10 MiB body with no body at all: 413 at once, in Receptor's shape.
    let mut big = TcpStream::connect(&a).await.expect("connect");
    big.write_all(b"POST /v1/desired_lrps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n")
        .await
        .expect("write");
    let t = Instant::now();
    let answer = read_until(&mut big, "}", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "oversize answered: {answer:?}");
    assert!(answer.contains("\"name\":\"InvalidRequest\""), "{answer}");
    assert!(
        t.elapsed() < Duration::from_millis(HEADER_TIMEOUT_MS),
        "413 came only after {:?}",
        t.elapsed()
    );
}

/// Open sockets of a process.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn at_the_connection_cap_new_clients_are_refused_at_once_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Default timeouts (30 s): the connections that fill the caps stay open for the whole test.
    let cap = CONNECTIONS_MAX.to_string();
    let extra = [
        "--no-cell",
        "--http-connections-max",
        cap.as_str(),
        "--grpc-connections-max",
        cap.as_str(),
    ];
    let c = Capstan::dev_with(&dir.path().join("data"), &extra).expect("start");
    let a = addr(&c);
    let mut http_held = Vec::new();
    let mut grpc_held = Vec::new();
    for _ in 0..CONNECTIONS_MAX {
        http_held.push(TcpStream::connect(&a).await.expect("connect"));
        grpc_held.push(TcpStream::connect(&c.grpc).await.expect("connect gRPC"));
    }
    // Every connection over a cap is closed at once: never left waiting in the backlog.
    let refused_each = 3;
    for target in [a.as_str(), c.grpc.as_str()] {
        for _ in 0..refused_each {
            let mut s = TcpStream::connect(target).await.expect("connect over the cap");
            let (_, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
            assert!(closed, "a connection over the cap of {target} is closed by the node");
        }
    }
    // The process holds at most the caps (plus its own listeners and the gateway's channel).
    let pid = c.pid().expect("running");
    let held = sockets(pid);
    assert!(
        held <= 2 * CONNECTIONS_MAX + 12,
        "{held} sockets open with caps of {CONNECTIONS_MAX} per listener"
    );
    // Once the holders go, clients are served, and the refusals are in /metrics, by listener.
    drop(http_held);
    drop(grpc_held);
    let metrics = capstan_tests::wait_for("REST served again", Duration::from_secs(20), || {
        let c = &c;
        async move {
            // until the node has noticed the holders go, a new connection may still be refused
            let r = c.client.get(c.url("/metrics")).send().await.ok()?;
            if r.status().as_u16() != 200 {
                return None;
            }
            r.text().await.ok()
        }
    })
    .await;
    for listener in ["http", "grpc"] {
        let line = format!("capstan_listener_connections_refused_total{{listener=\"{listener}\"}} ");
        let count: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line} in /metrics"));
        assert!(count >= f64::from(refused_each), "{line}{count}");
    }
    let r = c.post("/v1/desired_lrps", &lrp_json("after-the-cap", "d", 1)).await;
    assert_eq!(r.status, 201);
}
