//! Scopes and what each call needs — Capstan's tenancy model (ARCHITECTURE.md, "Tenancy").
//!
//! A scope is a level (`read` ⊂ `write` ⊂ `admin`) in a realm:
//! - **operator** scopes, `capstan.read|write|admin`: every family — Receptor LRPs and tasks,
//!   Flotilla, cells, the event stream, cluster administration — and CF's `/v3` over every tenant;
//! - **CF** scopes, `cloud_controller.read|write|admin`: the CF family only (`/v3`, and UAA's
//!   endpoints, which are open). Within it a user's `cf_roles` decide which orgs and spaces it sees.
//!
//! A user configured with `cf_roles` is a CF user: whatever level its scopes name, they are CF
//! scopes (its tokens say `cloud_controller.*`), so no CF user reaches another tenant's workloads
//! through an operator family.

/// Which families a scope opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Realm {
    /// every family, every tenant
    Operator,
    /// the CF family only
    Cf,
}

/// How much a scope may do within its realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Read,
    Write,
    Admin,
}

/// What a token may do: a level in a realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    pub realm: Realm,
    pub level: Level,
}

impl Scope {
    pub const READ: Scope = Scope::operator(Level::Read);
    pub const WRITE: Scope = Scope::operator(Level::Write);
    pub const ADMIN: Scope = Scope::operator(Level::Admin);
    pub const CF_READ: Scope = Scope::cf(Level::Read);
    pub const CF_WRITE: Scope = Scope::cf(Level::Write);
    pub const CF_ADMIN: Scope = Scope::cf(Level::Admin);
    /// Every operator scope: what a caller gets with auth off.
    pub const ALL: [Scope; 3] = [Scope::READ, Scope::WRITE, Scope::ADMIN];

    const fn operator(level: Level) -> Scope {
        Scope {
            realm: Realm::Operator,
            level,
        }
    }

    const fn cf(level: Level) -> Scope {
        Scope {
            realm: Realm::Cf,
            level,
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        match name {
            "capstan.read" => Some(Scope::READ),
            "capstan.write" => Some(Scope::WRITE),
            "capstan.admin" => Some(Scope::ADMIN),
            "cloud_controller.read" => Some(Scope::CF_READ),
            "cloud_controller.write" => Some(Scope::CF_WRITE),
            "cloud_controller.admin" => Some(Scope::CF_ADMIN),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match (self.realm, self.level) {
            (Realm::Operator, Level::Read) => "capstan.read",
            (Realm::Operator, Level::Write) => "capstan.write",
            (Realm::Operator, Level::Admin) => "capstan.admin",
            (Realm::Cf, Level::Read) => "cloud_controller.read",
            (Realm::Cf, Level::Write) => "cloud_controller.write",
            (Realm::Cf, Level::Admin) => "cloud_controller.admin",
        }
    }

    /// The same level in the CF realm (a CF user's scope).
    pub fn as_cf(self) -> Scope {
        Scope::cf(self.level)
    }

    /// Whether holding this scope allows a call that needs `needed`: its level or a lesser one,
    /// in its own realm — an operator scope also in the CF realm.
    pub fn grants(self, needed: Scope) -> bool {
        self.level >= needed.level && (self.realm == Realm::Operator || self.realm == needed.realm)
    }
}

/// Whether a caller holding `held` may make a call that needs `needed`.
pub fn allows(held: &[Scope], needed: Scope) -> bool {
    held.iter().any(|h| h.grants(needed))
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
    let read = Access::Scoped(Scope::READ);
    let write = Access::Scoped(Scope::WRITE);
    let cf_read = Access::Scoped(Scope::CF_READ);
    let cf_write = Access::Scoped(Scope::CF_WRITE);
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
        ("CfService", "GetResource" | "List" | "GetJob" | "GetProcess" | "ProcessStats" | "GetAppEnvironment") => {
            cf_read
        }
        (
            "CfService",
            "CreateOrganization" | "CreateSpace" | "CreateApp" | "UpdateResource" | "DeleteResource" | "SetAppState"
            | "ApplyManifest" | "UpdateProcess" | "ScaleProcess" | "TerminateInstance",
        ) => cf_write,
        ("Admin", "Readiness") => Access::Public,
        ("Admin", "NodeStatus" | "ClusterStatus" | "AddMember" | "RemoveMember") => Access::Scoped(Scope::ADMIN),
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
        assert!(allows(&[Scope::ADMIN], Scope::READ));
        assert!(allows(&[Scope::WRITE], Scope::READ));
        assert!(!allows(&[Scope::READ], Scope::WRITE));
        assert!(!allows(&[Scope::WRITE], Scope::ADMIN));
        assert!(!allows(&[], Scope::READ));
        assert_eq!(Scope::parse("cloud_controller.write"), Some(Scope::CF_WRITE));
        assert_eq!(Scope::parse("openid"), None);
        for s in [Scope::READ, Scope::CF_ADMIN, Scope::CF_WRITE] {
            assert_eq!(Scope::parse(s.name()), Some(s));
        }
    }

    #[test]
    fn operator_scopes_open_every_family_cf_scopes_only_cfs() {
        // an operator is also a CF user of every tenant
        assert!(allows(&[Scope::WRITE], Scope::CF_WRITE));
        assert!(allows(&[Scope::ADMIN], Scope::CF_ADMIN));
        assert!(!allows(&[Scope::READ], Scope::CF_WRITE));
        // a CF scope never opens an operator family, whatever its level
        assert!(!allows(&[Scope::CF_ADMIN], Scope::READ));
        assert!(allows(&[Scope::CF_WRITE], Scope::CF_READ));
        assert!(!allows(&[Scope::CF_READ], Scope::CF_WRITE));
        assert_eq!(Scope::WRITE.as_cf(), Scope::CF_WRITE);
        // the rules: CF's methods need CF scopes, the others operator scopes
        assert_eq!(access("/capstan.v1.CfService/List"), Access::Scoped(Scope::CF_READ));
        assert_eq!(
            access("/capstan.v1.CfService/ScaleProcess"),
            Access::Scoped(Scope::CF_WRITE)
        );
        assert_eq!(
            access("/capstan.v1.ControlPlane/ListDesiredLrps"),
            Access::Scoped(Scope::READ)
        );
        assert_eq!(access("/capstan.v1.ControlPlane/Watch"), Access::Scoped(Scope::READ));
        assert_eq!(
            access("/capstan.v1.TaskService/ExecuteTask"),
            Access::Scoped(Scope::WRITE)
        );
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
