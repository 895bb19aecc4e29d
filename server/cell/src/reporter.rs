//! Reports from a cell's instances (started, crashed) and task runs (started, exited, could not
//! start) to the cluster, in batches. A batch is kept and retried until a node takes it; stale
//! reports are harmless (apply skips them).

use std::time::Duration;

use capstan_client::credential::{Authed, ClusterCredential};
use capstan_proto::pb::{self, cell_service_client::CellServiceClient};
use tokio::sync::mpsc;

/// Reports buffered before a batch is sent.
pub const REPORT_BUFFER: usize = 4096;
/// How long reports gather before a batch goes out.
const REPORT_BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Backoff between reconnect attempts.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// What an instance or a run tells its cell.
pub enum Report {
    Started(pb::StartedActualLrp),
    Crashed(pb::CrashedActualLrp),
    Run(pb::TaskRunReport),
}

/// One batch: the instance reports and the run reports gathered in one window.
#[derive(Default)]
struct Batch {
    instances: pb::ReportActualLrps,
    runs: pb::ReportTaskRuns,
}

impl Batch {
    fn add(&mut self, r: Report) {
        match r {
            Report::Started(s) => self.instances.started.push(s),
            Report::Crashed(c) => self.instances.crashed.push(c),
            Report::Run(r) => self.runs.reports.push(r),
        }
    }

    /// Sends what is left of the batch; each part is dropped from it once a node took it.
    async fn send(&mut self, c: &mut CellServiceClient<Authed>) -> Result<(), tonic::Status> {
        if !self.instances.started.is_empty() || !self.instances.crashed.is_empty() {
            c.report_actual_lrps(self.instances.clone()).await?;
            self.instances = Default::default();
        }
        if !self.runs.reports.is_empty() {
            c.report_task_runs(self.runs.clone()).await?;
            self.runs = Default::default();
        }
        Ok(())
    }
}

/// How a cell reaches the cluster: the nodes' addresses and the credential it presents.
#[derive(Clone, Debug, Default)]
pub struct Uplink {
    pub addrs: Vec<String>,
    pub credential: ClusterCredential,
}

/// A client of the first cluster node that answers.
pub async fn connect(cluster: &Uplink) -> Option<CellServiceClient<Authed>> {
    for addr in &cluster.addrs {
        let Ok(ep) = cluster.credential.endpoint(addr) else {
            continue;
        };
        if let Ok(ch) = ep
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect()
            .await
        {
            return Some(CellServiceClient::new(cluster.credential.wrap(ch)));
        }
    }
    None
}

/// Sends reports in batches; keeps a batch and retries while no node takes it.
pub async fn run_reporter(cluster: Uplink, mut rx: mpsc::Receiver<Report>) {
    let mut client: Option<CellServiceClient<Authed>> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = Batch::default();
        batch.add(first);
        let window = tokio::time::sleep(REPORT_BATCH_WINDOW);
        tokio::pin!(window);
        loop {
            tokio::select! {
                r = rx.recv() => match r { Some(r) => batch.add(r), None => break },
                _ = &mut window => break,
            }
        }
        // Keep the batch until a node takes it (stale reports are harmless: apply skips them).
        for attempt in 0u32.. {
            if client.is_none() {
                client = connect(&cluster).await;
            }
            if let Some(c) = client.as_mut() {
                match batch.send(c).await {
                    Ok(()) => break,
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
