//! `capstan events [--from ID] [--kind K]...`: follows the event stream (gRPC `Watch`) and prints
//! one JSON line per event — `{"id", "event", "data"}` with Receptor's payloads — resuming from
//! the last id on another node when a node goes away.

use std::time::Duration;

use anyhow::bail;
use capstan_gateway::receptor::events::{event_id, parse_event_id, sse::payload};
use capstan_proto::pb::{self, control_plane_client::ControlPlaneClient};

#[derive(clap::Args)]
pub struct EventsArgs {
    /// Nodes' gRPC addresses, comma-separated; any node serves the stream.
    #[arg(long, env = "CAPSTAN_CLUSTER", default_value = "127.0.0.1:7070")]
    cluster: String,
    /// Resume right after this event id (N or N.k); without it, from now on.
    #[arg(long)]
    from: Option<String>,
    /// Event names to follow (repeatable); default: all of them.
    #[arg(long = "kind")]
    kinds: Vec<String>,
    #[arg(long)]
    domain: Option<String>,
    /// Stop after this many events (default: follow forever).
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    user: capstan_client::secret::UserArgs,
}

/// Pause before connecting again after a stream ended.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let mut last = match &args.from {
        None => None,
        Some(id) => match parse_event_id(id) {
            Some(p) => Some(p),
            None => bail!("--from {id}: an event id is N or N.k"),
        },
    };
    let nodes: Vec<String> = args
        .cluster
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if nodes.is_empty() {
        bail!("--cluster names no node");
    }
    let ca = args.user.ca_pem()?;
    let authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = args
        .user
        .authorization()
        .map(|a| a.parse())
        .transpose()
        .map_err(|_| anyhow::anyhow!("--token is not a valid header value"))?;
    let mut printed = 0u64;
    for attempt in 0usize.. {
        let addr = &nodes[attempt % nodes.len()];
        let endpoint = match &ca {
            None => tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?,
            Some(pem) => tonic::transport::Endpoint::from_shared(format!("https://{addr}"))?.tls_config(
                tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem)),
            )?,
        };
        let channel = match endpoint.connect_timeout(Duration::from_secs(2)).connect().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("capstan: {addr}: {e}");
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        let req = pb::WatchRequest {
            resume: last.is_some(),
            after_index: last.map_or(0, |l| l.0),
            after_offset: last.and_then(|l| l.1),
            kinds: args.kinds.clone(),
            domain: args.domain.clone().unwrap_or_default(),
            process_guid: String::new(),
        };
        let mut req = tonic::Request::new(req);
        if let Some(v) = &authorization {
            req.metadata_mut().insert("authorization", v.clone());
        }
        let mut stream = match ControlPlaneClient::new(channel).watch(req).await {
            Ok(s) => s.into_inner(),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::OutOfRange
                        | tonic::Code::InvalidArgument
                        | tonic::Code::Unauthenticated
                        | tonic::Code::PermissionDenied
                ) =>
            {
                bail!("{}", s.message())
            }
            Err(s) => {
                eprintln!("capstan: {addr}: {}", s.message());
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(e)) => {
                    let id = event_id(&e);
                    last = Some((e.index, (!e.last_in_record).then_some(e.offset)));
                    let data = payload(e.event.clone().unwrap_or_default());
                    println!(
                        "{{\"id\":{},\"event\":{},\"data\":{data}}}",
                        serde_json::json!(id),
                        serde_json::json!(e.kind)
                    );
                    printed += 1;
                    if args.count.is_some_and(|n| printed >= n) {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(s) if s.code() == tonic::Code::OutOfRange => bail!("{}", s.message()),
                Err(s) => {
                    eprintln!("capstan: {addr}: {}", s.message());
                    break;
                }
            }
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
    Ok(())
}
