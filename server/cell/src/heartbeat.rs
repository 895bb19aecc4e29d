//! Heartbeats for the cells of this process, within the presence TTL the leader enforces; tells
//! each agent (by its watch) when the leader no longer knows its cell, so it registers again.

use std::collections::HashMap;
use std::time::Duration;

use capstan_client::credential::Authed;
use capstan_proto::pb::{self, cell_service_client::CellServiceClient};
use tokio::sync::watch;

use super::reporter::{connect, Uplink};

/// Heartbeats for a set of cells; tells each agent (by its watch) when the leader forgot it.
pub async fn run_heartbeats(
    cluster: Uplink,
    cells: HashMap<String, watch::Sender<u64>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut client: Option<CellServiceClient<Authed>> = None;
    let mut interval = Duration::from_millis(1000);
    let ids: Vec<String> = cells.keys().cloned().collect();
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if client.is_none() {
            client = connect(&cluster).await;
        }
        let Some(c) = client.as_mut() else { continue };
        match c.heartbeat(pb::HeartbeatRequest { cell_ids: ids.clone() }).await {
            Ok(r) => {
                n += 1;
                for id in r.into_inner().unknown_cell_ids {
                    if let Some(tx) = cells.get(&id) {
                        tx.send_replace(n);
                    }
                }
                interval = Duration::from_millis(1000);
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed");
                client = None;
                interval = Duration::from_millis(300);
            }
        }
    }
}
