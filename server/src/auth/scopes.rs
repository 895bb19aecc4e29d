//! Scopes and what each call needs. A scope grants its own calls and every lesser one:
//! `capstan.admin` ⊇ `capstan.write` ⊇ `capstan.read`. CF's `cloud_controller.read|write|admin`
//! are accepted as the same scopes.

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn parse(name: &str) -> Option<Scope> {
        match name {
            "capstan.read" | "cloud_controller.read" => Some(Scope::Read),
            "capstan.write" | "cloud_controller.write" => Some(Scope::Write),
            "capstan.admin" | "cloud_controller.admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "capstan.read",
            Scope::Write => "capstan.write",
            Scope::Admin => "capstan.admin",
        }
    }
}

/// Whether a caller holding `held` may make a call that needs `needed`.
pub fn allows(held: &[Scope], needed: Scope) -> bool {
    held.iter().any(|h| *h >= needed)
}

/// Who may call a gRPC method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the token endpoint itself).
    Public,
    /// A caller with at least this scope, or an internal caller.
    Scoped(Scope),
    /// Cells and peers only: the cluster secret.
    Internal,
}

/// The access rule of every gRPC method a node serves, by its path. A method not listed is
/// internal: a new RPC is closed until it is given a rule here (a test walks the .proto files).
pub fn access(path: &str) -> Access {
    let Some((service, method)) = path.strip_prefix("/capstan.v1.").and_then(|p| p.split_once('/')) else {
        return Access::Internal;
    };
    let read = Access::Scoped(Scope::Read);
    let write = Access::Scoped(Scope::Write);
    match (service, method) {
        ("Auth", "IssueToken" | "TokenKeys" | "Authorize" | "RevokeToken") => Access::Public,
        (
            "ControlPlane",
            "GetDesiredLrp" | "ListDesiredLrps" | "GetActualLrp" | "ListActualLrps" | "ListFreshDomains" | "ListCells"
            | "GetTask" | "ListTasks" | "Watch",
        ) => read,
        (
            "ControlPlane",
            "DesireLrp" | "UpdateDesiredLrp" | "RemoveDesiredLrp" | "RetireActualLrp" | "BumpFreshDomain"
            | "CreateTask" | "DeleteTask" | "CancelTask",
        ) => write,
        (
            "TaskService",
            "GetTaskDefinition"
            | "GetTaskDefinitionByAlias"
            | "ListTaskDefinitions"
            | "ListGroups"
            | "ListTags"
            | "ListClusters"
            | "GetTaskRun"
            | "ListTaskRuns"
            | "GetRunLogs",
        ) => read,
        (
            "TaskService",
            "CreateTaskDefinition" | "UpdateTaskDefinition" | "DeleteTaskDefinition" | "ExecuteTask" | "StopTaskRun",
        ) => write,
        ("CfService", "GetResource" | "List" | "GetJob" | "GetProcess" | "ProcessStats") => read,
        (
            "CfService",
            "CreateOrganization" | "CreateSpace" | "CreateApp" | "UpdateResource" | "DeleteResource" | "SetAppState"
            | "ApplyManifest" | "UpdateProcess" | "ScaleProcess" | "TerminateInstance",
        ) => write,
        ("Admin", "Readiness") => Access::Public,
        ("Admin", "NodeStatus" | "ClusterStatus" | "AddMember" | "RemoveMember") => Access::Scoped(Scope::Admin),
        ("CellService", _) | ("RaftPeer", _) | ("CellApi", _) => Access::Internal,
        _ => Access::Internal,
    }
}

/// Whether HTTP basic auth (users in config) is accepted on the method: Receptor's family only,
/// as Receptor did.
pub fn basic_auth_accepted(path: &str) -> bool {
    path.starts_with("/capstan.v1.ControlPlane/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_grants_itself_and_every_lesser_one() {
        assert!(allows(&[Scope::Admin], Scope::Read));
        assert!(allows(&[Scope::Write], Scope::Read));
        assert!(!allows(&[Scope::Read], Scope::Write));
        assert!(!allows(&[Scope::Write], Scope::Admin));
        assert!(!allows(&[], Scope::Read));
        assert_eq!(Scope::parse("cloud_controller.write"), Some(Scope::Write));
        assert_eq!(Scope::parse("openid"), None);
    }

    /// Every RPC in the contract has a rule that is not the internal default — unless it is one of
    /// the internal services. A new RPC fails this test until it is given one.
    #[test]
    fn every_rpc_of_the_public_services_has_a_rule() {
        let protos = [
            include_str!("../../../proto/proto/capstan/v1/control_plane.proto"),
            include_str!("../../../proto/proto/capstan/v1/task.proto"),
            include_str!("../../../proto/proto/capstan/v1/admin.proto"),
            include_str!("../../../proto/proto/capstan/v1/auth.proto"),
            include_str!("../../../proto/proto/capstan/v1/cf.proto"),
            include_str!("../../../proto/proto/capstan/v1/cell.proto"),
            include_str!("../../../proto/proto/capstan/v1/raft.proto"),
        ];
        let mut seen = 0;
        for text in protos {
            let mut service = "";
            for line in text.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.trim_end_matches('{').trim();
                } else if let Some(rest) = line.strip_prefix("rpc ") {
                    let method = rest.split('(').next().unwrap_or_default().trim();
                    let rule = access(&format!("/capstan.v1.{service}/{method}"));
                    let internal = matches!(service, "CellService" | "RaftPeer" | "CellApi");
                    assert_eq!(rule == Access::Internal, internal, "{service}/{method}: {rule:?}");
                    seen += 1;
                }
            }
        }
        assert!(seen > 40, "the .proto files were read ({seen} rpcs)");
        assert_eq!(access("/capstan.v1.ControlPlane/NoSuchCall"), Access::Internal);
        assert_eq!(access("/grpc.reflection.v1.ServerReflection/X"), Access::Internal);
    }
}
