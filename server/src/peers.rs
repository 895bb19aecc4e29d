//! Clients of other nodes (the leader, mostly), one gRPC channel per address, kept and re-used.
//! A request forwarded once carries a marker so it is never forwarded again (one hop at most).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use capstan_proto::pb::admin_client::AdminClient;
use capstan_proto::pb::cell_service_client::CellServiceClient;
use capstan_proto::pb::control_plane_client::ControlPlaneClient;
use capstan_proto::pb::ErrorKind;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::errors;

/// Metadata key set on a forwarded request.
pub const FORWARDED: &str = "x-capstan-forwarded";
/// Deadline of a forwarded call, a little over the leader's own quorum wait.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Default)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    fn channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut map = self
            .channels
            .lock()
            .map_err(|_| errors::status(ErrorKind::Internal, "peer channel table poisoned", 0))?;
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| errors::status(ErrorKind::Internal, format!("leader address {addr}: {e}"), 0))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .timeout(FORWARD_TIMEOUT)
            .connect_lazy();
        map.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    pub fn control_plane(&self, addr: &str) -> Result<ControlPlaneClient<Channel>, Status> {
        Ok(ControlPlaneClient::new(self.channel(addr)?))
    }

    pub fn admin(&self, addr: &str) -> Result<AdminClient<Channel>, Status> {
        Ok(AdminClient::new(self.channel(addr)?))
    }

    pub fn cell(&self, addr: &str) -> Result<CellServiceClient<Channel>, Status> {
        Ok(CellServiceClient::new(self.channel(addr)?))
    }
}

pub fn is_forwarded<T>(req: &tonic::Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED)
}

/// Wraps a message for the one forwarding hop.
pub fn forwarded<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}

/// A transport failure reaching the leader is "unavailable, retry", like no leader at all.
pub fn leader_unreachable(status: Status) -> Status {
    if status.details().is_empty() {
        errors::status(
            ErrorKind::Unavailable,
            format!("the leader could not be reached: {}", status.message()),
            u32::try_from(capstan_raft::node::RETRY_AFTER.as_millis()).unwrap_or(500),
        )
    } else {
        status
    }
}
