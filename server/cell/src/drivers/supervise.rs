//! The supervision loop both drivers run once an instance is launched: health checks every
//! [`CHECK_UNHEALTHY`] until the first one passes (then the instance is reported RUNNING), within
//! the start timeout; afterwards every `healthy_recheck` (when the driver re-checks at all). The
//! driver's main future ends the loop with a crash reason, or lets it go on (a `run` action that
//! exited 0 is a daemon in Diego: monitoring continues). Cancellation is a stop, not a crash.

use std::future::Future;
use std::time::Duration;

use capstan_proto::pb;
use tokio::sync::{mpsc, oneshot};

use super::DriverCtx;
use crate::reporter::Report;

/// How often an unhealthy instance is checked (Diego: 0.5 s).
pub const CHECK_UNHEALTHY: Duration = Duration::from_millis(500);
/// How often a healthy instance is checked (Diego: 30 s).
pub const CHECK_HEALTHY: Duration = Duration::from_secs(30);
/// `start_timeout` when the DesiredLRP gives none.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a port check may wait for a connection.
const PORT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// How the main future of an instance ended.
pub enum MainEnded {
    /// The instance is over: this is the crash reason.
    Crashed(String),
    /// It exited successfully; supervision goes on with the health checks alone.
    Continue,
}

/// The instance being supervised and where its reports go.
pub struct Supervised<'a> {
    pub desired: &'a pb::DesiredLrp,
    pub ctx: &'a DriverCtx,
    pub mappings: &'a [pb::PortMapping],
    pub key: &'a pb::ActualLrpKey,
    pub reports: &'a mpsc::Sender<Report>,
    /// The check period once healthy; `None` = no checks after the first success.
    pub healthy_recheck: Option<Duration>,
}

impl Supervised<'_> {
    fn start_timeout(&self) -> Duration {
        match self.desired.start_timeout {
            0 => DEFAULT_START_TIMEOUT,
            s => Duration::from_secs(u64::from(s)),
        }
    }

    /// Supervises until the instance crashes (`Some(reason)`) or is cancelled (`None`).
    pub async fn run<M, C, F>(&self, main: M, mut check: C, cancel: &mut oneshot::Receiver<()>) -> Option<String>
    where
        M: Future<Output = MainEnded>,
        C: FnMut() -> F,
        F: Future<Output = bool>,
    {
        tokio::pin!(main);
        let start_timeout = self.start_timeout();
        let started_at = tokio::time::Instant::now();
        let mut healthy = false;
        let mut main_done = false;
        loop {
            let wait = if healthy {
                self.healthy_recheck
            } else {
                Some(CHECK_UNHEALTHY)
            };
            tokio::select! {
                ended = &mut main, if !main_done => match ended {
                    MainEnded::Crashed(reason) => return Some(reason),
                    MainEnded::Continue => main_done = true,
                },
                _ = &mut *cancel => return None,
                _ = tokio::time::sleep(wait.unwrap_or(CHECK_HEALTHY)), if wait.is_some() => {
                    match (healthy, check().await) {
                        (false, true) => {
                            healthy = true;
                            self.report_started().await;
                        }
                        (true, false) => return Some("the health check failed".into()),
                        (false, false) if started_at.elapsed() > start_timeout => {
                            return Some(format!("Instance never healthy after {}s", start_timeout.as_secs()));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    async fn report_started(&self) {
        let _ = self
            .reports
            .send(Report::Started(pb::StartedActualLrp {
                key: Some(self.key.clone()),
                address: self.ctx.address.clone(),
                ports: self.mappings.to_vec(),
            }))
            .await;
    }

    /// The default check: a TCP connect to the first host port; no port = healthy.
    pub async fn port_check(&self) -> bool {
        let Some(m) = self.mappings.first() else {
            return true;
        };
        let port = u16::try_from(m.host_port).unwrap_or(0);
        let connect = tokio::net::TcpStream::connect((self.ctx.address.as_str(), port));
        matches!(tokio::time::timeout(PORT_CHECK_TIMEOUT, connect).await, Ok(Ok(_)))
    }
}
