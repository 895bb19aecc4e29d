//! The one table of errors: for every [`ErrorKind`] a node reports, the gRPC code it travels as
//! and what each REST family answers with — Receptor's status and error name, Flotilla's status,
//! Cloud Foundry's status, title, code and detail. The node's status builder and the gateway's
//! three error shapes all read this row; no family's module names a kind. A new kind is one row
//! here (the `match` has no catch-all, so the compiler asks for it).

use tonic::Code;

use crate::pb::{ErrorKind, RejectionKind};

/// What the CF family's `errors[0].detail` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfDetail {
    /// the node's message
    Message,
    /// CF's own fixed text
    Fixed(&'static str),
}

/// CF's answer for a kind: status, title, code, detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CfAnswer {
    pub status: u16,
    pub title: &'static str,
    pub code: u32,
    pub detail: CfDetail,
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorRow {
    pub grpc: Code,
    /// Receptor: HTTP status and the error's `name`
    pub receptor: (u16, &'static str),
    /// Flotilla: HTTP status (the body is `{"error": message}`)
    pub flotilla: u16,
    pub cf: CfAnswer,
}

const fn cf(status: u16, title: &'static str, code: u32, detail: CfDetail) -> CfAnswer {
    CfAnswer {
        status,
        title,
        code,
        detail,
    }
}

/// CF's answer for what is no CF error: its unknown error.
const CF_UNKNOWN: CfAnswer = cf(
    500,
    "UnknownError",
    10001,
    CfDetail::Fixed("An unknown error occurred."),
);
const CF_UNAUTHENTICATED: CfAnswer = cf(
    401,
    "CF-NotAuthenticated",
    10002,
    CfDetail::Fixed("Authentication error"),
);
const CF_FORBIDDEN: CfAnswer = cf(
    403,
    "CF-NotAuthorized",
    10003,
    CfDetail::Fixed("You are not authorized to perform the requested action"),
);
const CF_UNAVAILABLE: CfAnswer = cf(503, "CF-ServiceUnavailable", 10015, CfDetail::Message);

const fn row(grpc: Code, receptor: (u16, &'static str), flotilla: u16, cf: CfAnswer) -> ErrorRow {
    ErrorRow {
        grpc,
        receptor,
        flotilla,
        cf,
    }
}

/// The row of `kind`.
pub const fn error_row(kind: ErrorKind) -> ErrorRow {
    use CfDetail::Message;
    use ErrorKind as K;
    match kind {
        K::InvalidLrp => row(Code::InvalidArgument, (400, "InvalidLRP"), 400, CF_UNKNOWN),
        K::InvalidRequest => row(Code::InvalidArgument, (400, "InvalidRequest"), 400, CF_UNKNOWN),
        K::InvalidDomain => row(Code::InvalidArgument, (400, "InvalidDomain"), 400, CF_UNKNOWN),
        K::InvalidCell => row(Code::InvalidArgument, (400, "InvalidRequest"), 400, CF_UNKNOWN),
        K::InvalidTask => row(Code::InvalidArgument, (400, "InvalidTask"), 400, CF_UNKNOWN),
        K::InvalidDefinition => row(Code::InvalidArgument, (400, "InvalidRequest"), 400, CF_UNKNOWN),
        K::DesiredLrpNotFound => row(Code::NotFound, (404, "DesiredLRPNotFound"), 404, CF_UNKNOWN),
        K::ActualLrpIndexNotFound => row(Code::NotFound, (404, "ActualLRPIndexNotFound"), 404, CF_UNKNOWN),
        K::DefinitionNotFound => row(Code::NotFound, (404, "ResourceNotFound"), 404, CF_UNKNOWN),
        K::RunNotFound => row(Code::NotFound, (404, "ResourceNotFound"), 404, CF_UNKNOWN),
        K::TaskNotFound => row(Code::NotFound, (404, "TaskNotFound"), 404, CF_UNKNOWN),
        K::DesiredLrpAlreadyExists => row(Code::AlreadyExists, (409, "DesiredLRPAlreadyExists"), 409, CF_UNKNOWN),
        K::DefinitionAliasTaken => row(Code::AlreadyExists, (409, "ResourceConflict"), 409, CF_UNKNOWN),
        K::ReservedEnv => row(Code::AlreadyExists, (409, "ResourceConflict"), 409, CF_UNKNOWN),
        K::TaskGuidAlreadyExists => row(Code::AlreadyExists, (409, "TaskGuidAlreadyExists"), 409, CF_UNKNOWN),
        K::TaskNotDeletable => row(Code::FailedPrecondition, (409, "TaskNotDeletable"), 409, CF_UNKNOWN),
        K::EventsGone => row(Code::OutOfRange, (410, "EventsGone"), 410, CF_UNKNOWN),
        K::CfBadQuery => row(
            Code::InvalidArgument,
            (400, "InvalidRequest"),
            400,
            cf(400, "CF-BadQueryParameter", 10005, Message),
        ),
        K::CfNotFound => row(
            Code::NotFound,
            (404, "ResourceNotFound"),
            404,
            cf(404, "CF-ResourceNotFound", 10010, Message),
        ),
        K::CfUnprocessable => row(
            Code::FailedPrecondition,
            (422, "InvalidRequest"),
            422,
            cf(422, "CF-UnprocessableEntity", 10008, Message),
        ),
        K::Unauthenticated => row(Code::Unauthenticated, (401, "Unauthorized"), 401, CF_UNAUTHENTICATED),
        K::InvalidToken => row(
            Code::Unauthenticated,
            (401, "Unauthorized"),
            401,
            cf(401, "CF-InvalidAuthToken", 1000, CfDetail::Fixed("Invalid Auth Token")),
        ),
        K::Forbidden => row(Code::PermissionDenied, (403, "Forbidden"), 403, CF_FORBIDDEN),
        K::Unavailable => row(Code::Unavailable, (503, "ServiceUnavailable"), 503, CF_UNAVAILABLE),
        K::InsufficientStorage => row(
            Code::ResourceExhausted,
            (507, "InsufficientStorage"),
            507,
            cf(507, "CF-ServiceUnavailable", 10015, Message),
        ),
        K::Internal | K::Unspecified => row(Code::Internal, (500, "UnknownError"), 500, CF_UNKNOWN),
    }
}

/// The error kind a business refusal of the log is reported as.
pub const fn rejected_as(rejection: RejectionKind) -> ErrorKind {
    use ErrorKind as K;
    use RejectionKind as R;
    match rejection {
        R::InvalidLrp => K::InvalidLrp,
        R::InvalidRequest => K::InvalidRequest,
        R::InvalidDomain => K::InvalidDomain,
        R::InvalidCell => K::InvalidCell,
        R::DesiredLrpNotFound => K::DesiredLrpNotFound,
        R::DesiredLrpAlreadyExists => K::DesiredLrpAlreadyExists,
        R::ActualLrpIndexNotFound => K::ActualLrpIndexNotFound,
        R::InvalidDefinition => K::InvalidDefinition,
        R::DefinitionNotFound => K::DefinitionNotFound,
        R::DefinitionAliasTaken => K::DefinitionAliasTaken,
        R::ReservedEnv => K::ReservedEnv,
        R::RunNotFound => K::RunNotFound,
        R::ClusterCannotRun => K::InvalidRequest,
        R::InvalidTask => K::InvalidTask,
        R::TaskGuidAlreadyExists => K::TaskGuidAlreadyExists,
        R::TaskNotFound => K::TaskNotFound,
        R::TaskNotDeletable => K::TaskNotDeletable,
        R::InvalidTokenRevocation => K::InvalidRequest,
        R::CfNotFound => K::CfNotFound,
        R::CfUnprocessable => K::CfUnprocessable,
        R::OwnedByCf => K::Forbidden,
        R::UnknownCommand | R::Unspecified => K::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_row_whose_statuses_agree_in_class() {
        for value in 0..64 {
            let Ok(kind) = ErrorKind::try_from(value) else { continue };
            let r = error_row(kind);
            // Receptor and Flotilla answer the same status for every kind
            assert_eq!(r.receptor.0, r.flotilla, "{kind:?}");
            assert!(!r.receptor.1.is_empty());
            // a CF answer is either CF's own for the kind or its unknown error
            assert!(r.cf == CF_UNKNOWN || r.cf.status == r.flotilla, "{kind:?}");
        }
        assert_eq!(error_row(ErrorKind::Forbidden).grpc, Code::PermissionDenied);
        assert_eq!(error_row(ErrorKind::CfNotFound).cf.title, "CF-ResourceNotFound");
    }
}
