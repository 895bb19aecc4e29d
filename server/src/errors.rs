//! The one place where Capstan's errors become gRPC statuses (with an `ErrorDetail` attached).

use capstan_proto::pb::{self, ErrorKind, RejectionKind};
use capstan_raft::WriteError;
use prost::Message;
use tonic::Status;

pub fn status(kind: ErrorKind, message: impl Into<String>, retry_after_ms: u32) -> Status {
    let message = message.into();
    let code = capstan_proto::errors::error_row(kind).grpc;
    let detail = pb::ErrorDetail {
        kind: kind as i32,
        message: message.clone(),
        retry_after_ms,
        ..Default::default()
    };
    Status::with_details(code, message, detail.encode_to_vec().into())
}

pub fn rejection(r: &pb::Rejection) -> Status {
    let kind =
        capstan_proto::errors::rejected_as(RejectionKind::try_from(r.kind).unwrap_or(RejectionKind::Unspecified));
    status(kind, r.message.clone(), 0)
}

pub fn write_error(e: &WriteError) -> Status {
    let retry = u32::try_from(capstan_raft::node::RETRY_AFTER.as_millis()).unwrap_or(500);
    match e {
        WriteError::NotLeader { leader_id, leader_addr } => {
            let message = match leader_id {
                Some(id) => format!("this node is not the leader; the leader is node {id}"),
                None => "no leader is elected; retry shortly".to_owned(),
            };
            let detail = pb::ErrorDetail {
                kind: ErrorKind::Unavailable as i32,
                message: message.clone(),
                retry_after_ms: retry,
                leader_id: leader_id.unwrap_or_default(),
                leader_addr: leader_addr.clone().unwrap_or_default(),
            };
            let code = capstan_proto::errors::error_row(ErrorKind::Unavailable).grpc;
            Status::with_details(code, message, detail.encode_to_vec().into())
        }
        WriteError::Unavailable(m) => status(ErrorKind::Unavailable, m.clone(), retry),
        WriteError::Fatal(m) => status(ErrorKind::Internal, m.clone(), 0),
        WriteError::DiskFull { .. } => status(
            ErrorKind::InsufficientStorage,
            e.to_string(),
            u32::try_from(capstan_raft::node::DISK_FULL_RETRY_AFTER.as_millis()).unwrap_or(5000),
        ),
    }
}

pub fn storage(e: impl std::fmt::Display) -> Status {
    status(ErrorKind::Internal, format!("storage: {e}"), 0)
}
