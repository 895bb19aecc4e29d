//! Reports from a cell's instances (started, crashed) to the cluster, in batches. A batch is kept
//! and retried until a node takes it; stale reports are harmless (apply skips them).

use std::time::Duration;

use capstan_proto::pb::{self, cell_service_client::CellServiceClient};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

/// Reports buffered before a batch is sent.
pub const REPORT_BUFFER: usize = 4096;
/// How long reports gather before a batch goes out.
const REPORT_BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Backoff between reconnect attempts.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// What an instance tells its cell.
pub enum Report {
    Started(pb::StartedActualLrp),
    Crashed(pb::CrashedActualLrp),
}

/// A client of the first cluster node that answers.
pub async fn connect(cluster: &[String]) -> Option<CellServiceClient<Channel>> {
    for addr in cluster {
        let Ok(ep) = Endpoint::from_shared(format!("http://{addr}")) else {
            continue;
        };
        if let Ok(ch) = ep
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect()
            .await
        {
            return Some(CellServiceClient::new(ch));
        }
    }
    None
}

/// Sends reports in batches; keeps a batch and retries while no node takes it.
pub async fn run_reporter(cluster: Vec<String>, mut rx: mpsc::Receiver<Report>) {
    let mut client: Option<CellServiceClient<Channel>> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = pb::ReportActualLrps::default();
        let add = |r: Report, b: &mut pb::ReportActualLrps| match r {
            Report::Started(s) => b.started.push(s),
            Report::Crashed(c) => b.crashed.push(c),
        };
        add(first, &mut batch);
        let window = tokio::time::sleep(REPORT_BATCH_WINDOW);
        tokio::pin!(window);
        loop {
            tokio::select! {
                r = rx.recv() => match r { Some(r) => add(r, &mut batch), None => break },
                _ = &mut window => break,
            }
        }
        // Keep the batch until a node takes it (stale reports are harmless: apply skips them).
        for attempt in 0u32.. {
            if client.is_none() {
                client = connect(&cluster).await;
            }
            if let Some(c) = client.as_mut() {
                match c.report_actual_lrps(batch.clone()).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, attempt, "report not taken");
                        if e.code() == tonic::Code::Unavailable {
                            client = None;
                        }
                    }
                }
            }
            tokio::time::sleep(RECONNECT_BACKOFF * attempt.min(4)).await;
        }
    }
}
