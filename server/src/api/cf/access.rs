//! Who a CF call is for and what it may see and change (spec §6): the caller's identity (the
//! guard's, carried to the leader on a forwarded call) and its `Access`, from its scopes and its `cf_roles`.

use std::collections::{BTreeMap, BTreeSet};

use capstan_proto::pb::{CfKind, ErrorKind};
use capstan_storage::Views;
use tonic::{Request, Status};

use crate::auth::config::CfRoleKind;
use crate::auth::guard::Caller;
use crate::auth::scopes::{self, Scope};
use crate::auth::Authenticator;
use crate::errors;

/// The CF caller: a user (with roles, maybe) and its scopes.
#[derive(Clone, Debug)]
pub(super) struct Identity {
    pub(super) user: Option<String>,
    pub(super) scopes: Vec<Scope>,
}

/// The caller the guard found (on a forwarded call, the first member's caller); every scope when
/// there is none (auth off).
pub(super) fn identity<T>(req: &Request<T>) -> Identity {
    match req.extensions().get::<Caller>() {
        None => Identity {
            user: None,
            scopes: Scope::ALL.to_vec(),
        },
        Some(c) => Identity {
            user: c.user.clone(),
            scopes: c.scopes.clone(),
        },
    }
}

/// What one space is to a caller with CF roles.
pub(super) struct SpaceAccess {
    pub(super) org: String,
    pub(super) write: bool,
    pub(super) secrets: bool,
}

/// Which CF resources a caller sees and may change (spec §6): everything within its scopes for a
/// user without CF roles (and an admin); the spaces of its roles otherwise.
pub(super) struct Access {
    pub(super) write_scope: bool,
    pub(super) all: bool,
    pub(super) write_all: bool,
    pub(super) secrets_all: bool,
    pub(super) spaces: BTreeMap<String, SpaceAccess>,
    /// orgs the caller manages (org_manager)
    pub(super) orgs: BTreeSet<String>,
}

impl Access {
    pub(super) fn of(id: &Identity, auth: &Authenticator, views: &Views) -> Result<Access, Status> {
        use capstan_storage::rules::decide::ViewRead;
        let write = scopes::allows(&id.scopes, Scope::CF_WRITE);
        let mut a = Access {
            write_scope: write,
            all: true,
            write_all: write,
            secrets_all: write,
            spaces: BTreeMap::new(),
            orgs: BTreeSet::new(),
        };
        let roles = id.user.as_deref().and_then(|u| auth.cf_roles(u));
        let (Some(roles), false) = (roles, scopes::allows(&id.scopes, Scope::CF_ADMIN)) else {
            return Ok(a);
        };
        (a.all, a.write_all, a.secrets_all) = (false, false, false);
        for role in roles {
            let Some(org) = views
                .cf_named(CfKind::Organization, "", &role.org)
                .map_err(errors::storage)?
            else {
                continue;
            };
            let spaces: Vec<String> = match &role.space {
                Some(name) => views
                    .cf_named(CfKind::Space, &org, name)
                    .map_err(errors::storage)?
                    .into_iter()
                    .collect(),
                None => {
                    a.orgs.insert(org.clone());
                    views
                        .cf_children(&org)
                        .map_err(errors::storage)?
                        .into_iter()
                        .filter(|(k, _)| *k == CfKind::Space)
                        .map(|(_, g)| g)
                        .collect()
                }
            };
            let developer = role.kind == CfRoleKind::SpaceDeveloper;
            let writes = write && matches!(role.kind, CfRoleKind::SpaceDeveloper | CfRoleKind::SpaceSupporter);
            for space in spaces {
                let e = a.spaces.entry(space).or_insert(SpaceAccess {
                    org: org.clone(),
                    write: false,
                    secrets: false,
                });
                e.write |= writes;
                e.secrets |= developer;
            }
        }
        Ok(a)
    }

    pub(super) fn sees_space(&self, space: &str) -> bool {
        self.all || self.spaces.contains_key(space)
    }

    pub(super) fn sees_org(&self, org: &str) -> bool {
        self.all || self.orgs.contains(org) || self.spaces.values().any(|s| s.org == org)
    }

    pub(super) fn writes_in(&self, space: &str) -> bool {
        self.write_all || self.spaces.get(space).is_some_and(|s| s.write)
    }

    pub(super) fn secrets_in(&self, space: &str) -> bool {
        self.secrets_all || self.spaces.get(space).is_some_and(|s| s.secrets)
    }

    /// Creating spaces in an org, renaming or deleting it and its spaces: an org manager's.
    pub(super) fn manages_org(&self, org: &str) -> bool {
        self.write_all || (self.write_scope && self.orgs.contains(org))
    }
}

pub(super) fn forbidden() -> Status {
    errors::status(
        ErrorKind::Forbidden,
        "You are not authorized to perform the requested action",
        0,
    )
}
