//! Reads the structured error a Capstan node puts in every non-OK gRPC status.

use capstan_proto::pb;
use prost::Message;

/// The node's error: kind, message and retry hint; transport failures become `Unavailable`.
#[derive(Debug, Clone)]
pub struct NodeError {
    pub kind: pb::ErrorKind,
    pub message: String,
    pub retry_after_ms: u32,
}

impl From<tonic::Status> for NodeError {
    fn from(s: tonic::Status) -> Self {
        if let Ok(d) = pb::ErrorDetail::decode(s.details()) {
            if d.kind != pb::ErrorKind::Unspecified as i32 {
                return NodeError {
                    kind: pb::ErrorKind::try_from(d.kind).unwrap_or(pb::ErrorKind::Internal),
                    message: d.message,
                    retry_after_ms: d.retry_after_ms,
                };
            }
        }
        // No detail: the node was not reached (connection refused, timeout) or a proxy answered.
        let kind = match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                pb::ErrorKind::Unavailable
            }
            _ => pb::ErrorKind::Internal,
        };
        NodeError {
            kind,
            message: format!("{}: {}", s.code(), s.message()),
            retry_after_ms: if kind == pb::ErrorKind::Unavailable { 1000 } else { 0 },
        }
    }
}
