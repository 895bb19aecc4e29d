//! Benchmark (prints figures, asserts nothing): the event stream. `capstan dev --no-cell`;
//! first EVENTS creates with no subscriber (the baseline write rate), then SUBSCRIBERS `/v1/events`
//! subscribers (SSE through the gateway) while another EVENTS creates run: the write rate beside
//! the baseline, the delivery rate, each event's lag (acknowledged create → event received by a
//! subscriber), and the node's RSS.
//! Run: `cargo run --release -p capstan-tests --bin bench-events [SUBSCRIBERS] [EVENTS]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capstan_tests::bench::{drive, post_json, report, Stop};
use capstan_tests::sse::subscribe;
use capstan_tests::{lrp_json, Capstan};

const WRITERS: usize = 16;

/// Creates `n` DesiredLRPs named `{prefix}{i}` from WRITERS clients; the ack time of each.
async fn write(c: &Capstan, prefix: &str, n: usize, acks: Arc<Mutex<HashMap<String, Instant>>>) -> Duration {
    let (client, url, prefix) = (c.client.clone(), c.url("/v1/desired_lrps"), prefix.to_owned());
    let run = drive(WRITERS, Stop::AfterOps(n), move |_, i| {
        let (client, url, acks, guid) = (client.clone(), url.clone(), acks.clone(), format!("{prefix}{i}"));
        async move {
            post_json(client, &url, lrp_json(&guid, "bench", 0), &[201]).await?;
            if let Ok(mut a) = acks.lock() {
                a.insert(guid, Instant::now());
            }
            Ok(())
        }
    })
    .await;
    run.report_errors("create");
    run.wall
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let subscribers: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let events: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let c = Capstan::dev_with(&dir.path().join("data"), &["--no-cell"])?;

    let baseline = write(&c, "base-", events, Arc::default()).await;
    println!(
        "{events} creates, no subscriber: {baseline:.2?}, {:.0}/s",
        events as f64 / baseline.as_secs_f64()
    );

    let mut subs = Vec::new();
    for _ in 0..subscribers {
        match subscribe(&c.http, "/v1/events?kinds=desired_lrp_created", None).await? {
            Ok(s) => subs.push(s),
            Err((status, body)) => anyhow::bail!("subscribe: {status} {body}"),
        }
    }
    let rss_before = c.rss_kib().unwrap_or(0);
    let acks: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let mut readers = Vec::new();
    for mut s in subs {
        let acks = acks.clone();
        readers.push(tokio::spawn(async move {
            let mut lags = Vec::with_capacity(events);
            for _ in 0..events {
                let Ok(e) = s.next(Duration::from_secs(60)).await else {
                    break;
                };
                let at = Instant::now();
                let guid = e.data["desired_lrp"]["process_guid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let acked = acks.lock().ok().and_then(|a| a.get(&guid).copied());
                // An event can arrive before its create's answer does: no lag then.
                lags.push(acked.map_or(Duration::ZERO, |t| at.saturating_duration_since(t)));
            }
            (lags, Instant::now())
        }));
    }
    let wrote = write(&c, "ev-", events, acks).await;
    let rss_peak = c.rss_kib().unwrap_or(0);
    println!(
        "{events} creates, {subscribers} subscribers: {wrote:.2?}, {:.0}/s ({:.2}× the baseline)",
        events as f64 / wrote.as_secs_f64(),
        baseline.as_secs_f64() / wrote.as_secs_f64()
    );
    let mut lags = Vec::new();
    let mut last = started;
    for r in readers {
        let (l, done) = r.await?;
        lags.extend(l);
        last = last.max(done);
    }
    let delivered = lags.len();
    report(
        &format!("delivered to {subscribers} subscribers (lag after the ack)"),
        lags,
        last - started,
    );
    println!(
        "events delivered {delivered} of {}; node RSS {rss_before} KiB before, {rss_peak} KiB at the end of the writes",
        subscribers * events
    );
    Ok(())
}
