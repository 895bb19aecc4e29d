//! The cell's own gRPC listener (`CellApi`): what only the cell has — the logs of the runs it ran.
//! Nodes call it when a client reads a run's log; the bound address is registered as the cell's
//! `api_addr` and recorded in each run placed on it, so a log stays readable after its run ends.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use capstan_client::credential::ClusterCredential;
use capstan_proto::pb::{self, cell_api_server::CellApi, cell_api_server::CellApiServer};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::drivers::run::{is_run_id, log_path};
use super::logs;
use super::usage::UsageBook;

struct CellApiImpl {
    work_dir: PathBuf,
    usage: UsageBook,
}

/// Instances one usage request may name (a process's instances; Diego's limit).
const USAGE_INSTANCES_MAX: usize = 10_000;

#[tonic::async_trait]
impl CellApi for CellApiImpl {
    async fn read_run_log(&self, req: Request<pb::ReadRunLogRequest>) -> Result<Response<pb::RunLogChunk>, Status> {
        let r = req.into_inner();
        if !is_run_id(&r.run_id) {
            return Err(Status::invalid_argument("not a run id"));
        }
        let path = log_path(&self.work_dir, &r.run_id, r.attempt);
        let chunk = tokio::task::spawn_blocking(move || logs::read(&path, r.offset))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("reading the log: {e}")))?;
        Ok(Response::new(pb::RunLogChunk {
            data: chunk.data,
            next_offset: chunk.next_offset,
            dropped_bytes: chunk.dropped_bytes,
        }))
    }

    async fn instance_usage(
        &self,
        req: Request<pb::InstanceUsageRequest>,
    ) -> Result<Response<pb::InstanceUsageResponse>, Status> {
        let guids = req.into_inner().instance_guids;
        if guids.len() > USAGE_INSTANCES_MAX {
            return Err(Status::invalid_argument("too many instances in one usage request"));
        }
        let book = self.usage.clone();
        let now = capstan_client::clock::unix_now_ns();
        let usages = tokio::task::spawn_blocking(move || book.sample(&guids, now))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::InstanceUsageResponse { usages }))
    }
}

/// Binds `listen` and serves until `stop` changes; the bound address and the server's task. With
/// a cluster secret, only callers presenting it (the nodes) are served.
pub async fn serve(
    listen: &str,
    work_dir: PathBuf,
    usage: UsageBook,
    credential: ClusterCredential,
    tls: Option<&capstan_client::tls::Tls>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("--api-listen {listen}: not an address"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the cell API on {listen}"))?;
    let bound = listener.local_addr()?.to_string();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls.grpc_server(true)?).context("cell API TLS")?;
    }
    let task = tokio::spawn(async move {
        let served = server
            .add_service(CellApiServer::with_interceptor(
                CellApiImpl { work_dir, usage },
                credential.require(),
            ))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.changed().await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the cell API stopped");
        }
    });
    Ok((bound, task))
}
