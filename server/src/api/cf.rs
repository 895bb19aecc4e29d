//! The public `CfService` (Cloud Foundry V3: organizations, spaces, apps, processes, jobs). Writes
//! are validated at the edge with `storage::rules::cf` and proposed as the log's CF commands;
//! lists parse CF's query parameters and stream from the views' time indexes, counting every
//! match and keeping only the page; stats read the process's ActualLRPs and ask each cell that
//! runs one of its instances what it measured (`CellApi.InstanceUsage`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb::{
    self, cell_api_client::CellApiClient, cf_service_client::CfServiceClient, cf_service_server::CfService, CfKind,
    ErrorKind,
};
use capstan_storage::rules::cf::{
    self as rules, labels,
    query::{self, ListKind, ListQuery, OrderBy, Row},
};
use capstan_storage::views::CfRow;
use capstan_storage::Views;
use tonic::{Request, Response, Status};

use super::forward::{forwarded, is_forwarded, Forwarder, Served};
use crate::auth::config::CfRoleKind;
use crate::auth::guard::Caller;
use crate::auth::scopes::{self, Scope};
use crate::auth::Authenticator;
use crate::errors;

/// How long stats wait for a cell's usage figures before reporting them unavailable.
const USAGE_TIMEOUT: Duration = Duration::from_secs(2);
/// What a caller without a write role sees of a single process's command (spec §1.4).
pub const COMMAND_HIDDEN: &str = "[PRIVATE DATA HIDDEN]";
/// What every list shows of a command (spec §1.2).
pub const COMMAND_HIDDEN_IN_LISTS: &str = "[PRIVATE DATA HIDDEN IN LISTS]";

pub struct CfServiceImpl {
    fwd: Forwarder,
    auth: Arc<Authenticator>,
}

impl CfServiceImpl {
    pub fn new(fwd: Forwarder, auth: Arc<Authenticator>) -> Self {
        Self { fwd, auth }
    }

    fn views(&self) -> &Views {
        self.fwd.node().views()
    }
}

fn not_found(kind: CfKind) -> Status {
    errors::status(
        ErrorKind::CfNotFound,
        format!("{} not found", rules::kind_title(kind)),
        0,
    )
}

fn unprocessable(message: impl Into<String>) -> Status {
    errors::status(ErrorKind::CfUnprocessable, message, 0)
}

fn bad_query(message: String) -> Status {
    errors::status(
        ErrorKind::CfBadQuery,
        format!("The query parameter is invalid: {message}"),
        0,
    )
}

fn internal(what: &str) -> Status {
    errors::status(ErrorKind::Internal, format!("the entry applied without {what}"), 0)
}

/// Who a forwarded CF call is for: the first node's caller, since the leader sees only the
/// cluster credential of the hop. Trusted only from internal callers.
const ON_BEHALF_USER: &str = "x-capstan-cf-user";
const ON_BEHALF_SCOPE: &str = "x-capstan-cf-scope";

/// The CF caller: a user (with roles, maybe) and its scopes.
#[derive(Clone, Debug)]
struct Identity {
    user: Option<String>,
    scopes: Vec<Scope>,
}

fn identity<T>(req: &Request<T>) -> Identity {
    let everything = Identity {
        user: None,
        scopes: Scope::ALL.to_vec(),
    };
    match req.extensions().get::<Caller>() {
        None => everything,
        Some(c) if c.internal => {
            let header = |k: &str| req.metadata().get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
            match header(ON_BEHALF_SCOPE) {
                Some(scope) => Identity {
                    user: header(ON_BEHALF_USER),
                    scopes: Scope::parse(&scope).into_iter().collect(),
                },
                None => everything,
            }
        }
        Some(c) => Identity {
            user: c.user.clone(),
            scopes: c.scopes.clone(),
        },
    }
}

impl Identity {
    /// Marks a forwarded request with this identity.
    fn stamp<T>(&self, req: &mut Request<T>) {
        let top = self.scopes.iter().max().copied();
        if let Some(v) = top.and_then(|s| s.name().parse().ok()) {
            req.metadata_mut().insert(ON_BEHALF_SCOPE, v);
        }
        if let Some(v) = self.user.as_deref().and_then(|u| u.parse().ok()) {
            req.metadata_mut().insert(ON_BEHALF_USER, v);
        }
    }
}

/// What one space is to a caller with CF roles.
struct SpaceAccess {
    org: String,
    write: bool,
    secrets: bool,
}

/// Which CF resources a caller sees and may change (spec §6): everything within its scopes for a
/// user without CF roles (and an admin); the spaces of its roles otherwise.
struct Access {
    write_scope: bool,
    all: bool,
    write_all: bool,
    secrets_all: bool,
    spaces: BTreeMap<String, SpaceAccess>,
    /// orgs the caller manages (org_manager)
    orgs: BTreeSet<String>,
}

impl Access {
    fn of(id: &Identity, auth: &Authenticator, views: &Views) -> Result<Access, Status> {
        use capstan_storage::rules::decide::ViewRead;
        let write = scopes::allows(&id.scopes, Scope::Write);
        let mut a = Access {
            write_scope: write,
            all: true,
            write_all: write,
            secrets_all: write,
            spaces: BTreeMap::new(),
            orgs: BTreeSet::new(),
        };
        let roles = id.user.as_deref().and_then(|u| auth.cf_roles(u));
        let (Some(roles), false) = (roles, scopes::allows(&id.scopes, Scope::Admin)) else {
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

    fn sees_space(&self, space: &str) -> bool {
        self.all || self.spaces.contains_key(space)
    }

    fn sees_org(&self, org: &str) -> bool {
        self.all || self.orgs.contains(org) || self.spaces.values().any(|s| s.org == org)
    }

    fn writes_in(&self, space: &str) -> bool {
        self.write_all || self.spaces.get(space).is_some_and(|s| s.write)
    }

    fn secrets_in(&self, space: &str) -> bool {
        self.secrets_all || self.spaces.get(space).is_some_and(|s| s.secrets)
    }

    /// Creating spaces in an org, renaming or deleting it and its spaces: an org manager's.
    fn manages_org(&self, org: &str) -> bool {
        self.write_all || (self.write_scope && self.orgs.contains(org))
    }
}

fn forbidden() -> Status {
    errors::status(
        ErrorKind::Forbidden,
        "You are not authorized to perform the requested action",
        0,
    )
}

fn kind_of(k: i32) -> CfKind {
    CfKind::try_from(k).unwrap_or(CfKind::Unspecified)
}

/// The `after` of the first change of this kind an outcome carries.
macro_rules! changed {
    ($events:expr, $variant:ident) => {
        $events.iter().find_map(|e| match &e.kind {
            Some(pb::event::Kind::$variant(c)) => c.after.clone(),
            _ => None,
        })
    };
}

fn process_after(events: &[pb::Event], guid: &str) -> Option<pb::CfProcess> {
    events.iter().find_map(|e| match &e.kind {
        Some(pb::event::Kind::CfProcessChanged(pb::CfProcessChanged { after: Some(p), .. })) if p.guid == guid => {
            Some(p.clone())
        }
        _ => None,
    })
}

fn job_of(events: &[pb::Event]) -> Result<pb::CfJob, Status> {
    events
        .iter()
        .find_map(|e| match &e.kind {
            Some(pb::event::Kind::CfJobRecorded(j)) => j.job.clone(),
            _ => None,
        })
        .ok_or_else(|| internal("a job"))
}

fn check_metadata(m: Option<&pb::CfMetadata>) -> Result<(), Status> {
    let Some(m) = m else { return Ok(()) };
    labels::patch(&pb::CfMetadataPatch {
        labels: m.labels.clone(),
        annotations: m.annotations.clone(),
        ..Default::default()
    })
    .map_err(unprocessable)
}

fn check_manifest(m: &pb::ApplyCfManifest) -> Result<(), Status> {
    if m.applications.is_empty() {
        return Err(unprocessable("Applications must have at least 1 application"));
    }
    if m.applications.len() > rules::MANIFEST_APPS_MAX {
        return Err(unprocessable(format!(
            "a manifest may hold at most {} applications",
            rules::MANIFEST_APPS_MAX
        )));
    }
    let mut names = std::collections::BTreeSet::new();
    for a in &m.applications {
        rules::name(&a.name).map_err(|e| unprocessable(format!("For application '{}': {e}", a.name)))?;
        if !names.insert(a.name.as_str()) {
            return Err(unprocessable(format!(
                "Application '{}' appears more than once",
                a.name
            )));
        }
        if a.processes.len() > rules::MANIFEST_PROCESSES_MAX {
            return Err(unprocessable(format!(
                "For application '{}': too many processes",
                a.name
            )));
        }
        let mut types = std::collections::BTreeSet::new();
        for p in &a.processes {
            let fail =
                |e: String| unprocessable(format!("For application '{}': Process \"{}\": {e}", a.name, p.r#type));
            if p.r#type.is_empty() {
                return Err(unprocessable(format!(
                    "For application '{}': Type must not be empty",
                    a.name
                )));
            }
            if !types.insert(p.r#type.as_str()) {
                return Err(fail("appears more than once".into()));
            }
            if let Some(c) = &p.command {
                if c.chars().count() > rules::COMMAND_CHARS_MAX {
                    return Err(fail("Command must be between 1 and 4096 characters".into()));
                }
            }
            if p.instances.is_some_and(|n| n < 0) {
                return Err(fail("Instances must be greater than or equal to 0".into()));
            }
            if p.memory_in_mb.is_some_and(|n| n < 1) || p.disk_in_mb.is_some_and(|n| n < 1) {
                return Err(fail("Memory and disk must be greater than 0".into()));
            }
            if let Some(t) = &p.health_check_type {
                if t != "none" {
                    rules::health_check_type(t, false).map_err(fail)?;
                }
            }
            if let Some(e) = &p.health_check_http_endpoint {
                rules::endpoint(e).map_err(fail)?;
            }
            if p.timeout.is_some_and(|t| t < 1) {
                return Err(fail("Timeout must be greater than or equal to 1".into()));
            }
        }
    }
    Ok(())
}

fn check_check_patch(p: Option<&pb::CfHealthCheckPatch>, readiness: bool) -> Result<(), Status> {
    let Some(p) = p else { return Ok(()) };
    if let Some(t) = &p.r#type {
        rules::health_check_type(t, readiness).map_err(unprocessable)?;
    }
    for (has, v, name) in [
        (p.has_timeout, p.timeout, "Timeout"),
        (p.has_invocation_timeout, p.invocation_timeout, "Invocation timeout"),
        (p.has_interval, p.interval, "Interval"),
    ] {
        if has && v.is_some_and(|n| n < 1) {
            return Err(unprocessable(format!("{name} must be greater than or equal to 1")));
        }
    }
    if let Some(e) = &p.endpoint {
        rules::endpoint(e).map_err(unprocessable)?;
    }
    Ok(())
}

fn check_update(u: &pb::UpdateCfProcess) -> Result<(), Status> {
    if let Some(c) = &u.command {
        if c.is_empty() || c.chars().count() > rules::COMMAND_CHARS_MAX {
            return Err(unprocessable("Command must be between 1 and 4096 characters"));
        }
    }
    if let Some(user) = &u.user {
        if user.is_empty() || user.chars().count() > 255 {
            return Err(unprocessable("User must be between 1 and 255 characters"));
        }
    }
    check_check_patch(u.health_check.as_ref(), false)?;
    check_check_patch(u.readiness_health_check.as_ref(), true)?;
    if let Some(m) = &u.metadata {
        labels::patch(m).map_err(unprocessable)?;
    }
    Ok(())
}

/// One page of rows of a kind: every match is counted, only the page is kept.
fn page_of<T: CfRow + Clone + 'static>(
    views: &Views,
    q: &ListQuery,
    rows: Option<Vec<T>>,
    row: impl Fn(&T) -> Row<'_>,
    visible: impl Fn(&T) -> bool,
) -> Result<(u64, Vec<T>), Status> {
    let (offset, per_page) = (q.offset(), usize::try_from(q.per_page).unwrap_or(usize::MAX));
    let iter: Box<dyn Iterator<Item = Result<T, capstan_storage::StoreError>>> = match rows {
        Some(mut v) => {
            v.sort_by(|a, b| {
                let key = |r: &T| match q.order_by {
                    OrderBy::Updated => (r.updated_at(), r.guid().to_owned()),
                    _ => (r.created_at(), r.guid().to_owned()),
                };
                key(a).cmp(&key(b))
            });
            if q.descending {
                v.reverse();
            }
            Box::new(v.into_iter().map(Ok))
        }
        None => views.cf_rows::<T>(
            q.order_by == OrderBy::Updated,
            q.descending && q.order_by != OrderBy::Name,
        ),
    };
    if q.order_by == OrderBy::Name {
        // By name: only the (name, guid) of the matches are held; the page is read again.
        let mut keys = Vec::new();
        for r in iter {
            let r = r.map_err(errors::storage)?;
            if visible(&r) && q.matches(&row(&r)) {
                keys.push((r.name().to_owned(), r.guid().to_owned()));
            }
        }
        keys.sort();
        if q.descending {
            keys.reverse();
        }
        let mut page = Vec::new();
        for (_, guid) in keys
            .iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(per_page)
        {
            if let Some(r) = views.get_cf::<T>(guid).map_err(errors::storage)? {
                page.push(r);
            }
        }
        return Ok((keys.len() as u64, page));
    }
    let (mut total, mut page) = (0u64, Vec::new());
    for r in iter {
        let r = r.map_err(errors::storage)?;
        if visible(&r) && q.matches(&row(&r)) {
            if total >= offset && page.len() < per_page {
                page.push(r);
            }
            total += 1;
        }
    }
    Ok((total, page))
}

fn labels_of(m: &Option<pb::CfMetadata>) -> Option<&BTreeMap<String, String>> {
    m.as_ref().map(|m| &m.labels)
}

fn list(views: &Views, r: &pb::ListCfRequest, access: &Access) -> Result<pb::CfListPage, Status> {
    let kind = kind_of(r.kind);
    let list_kind = match kind {
        CfKind::Organization => ListKind::Organizations,
        CfKind::Space => ListKind::Spaces,
        CfKind::App => ListKind::Apps,
        CfKind::Process if r.app_guid.is_empty() => ListKind::Processes,
        CfKind::Process => ListKind::AppProcesses,
        CfKind::Unspecified => return Err(unprocessable("a list names the kind of resource")),
    };
    let q = query::parse(list_kind, &r.query).map_err(bad_query)?;
    let mut page = pb::CfListPage {
        page: q.page,
        per_page: q.per_page,
        ..Default::default()
    };
    let row = Row {
        guid: "",
        name: "",
        kind_type: "",
        app_guid: "",
        space_guid: "",
        organization_guid: "",
        created_at: 0,
        updated_at: 0,
        labels: None,
    };
    match kind {
        CfKind::Organization => {
            (page.total_results, page.organizations) = page_of(
                views,
                &q,
                None,
                |o: &pb::CfOrganization| Row {
                    guid: &o.guid,
                    name: &o.name,
                    created_at: o.created_at,
                    updated_at: o.updated_at,
                    labels: labels_of(&o.metadata),
                    ..row
                },
                |o| access.sees_org(&o.guid),
            )?
        }
        CfKind::Space => {
            (page.total_results, page.spaces) = page_of(
                views,
                &q,
                None,
                |s: &pb::CfSpace| Row {
                    guid: &s.guid,
                    name: &s.name,
                    organization_guid: &s.organization_guid,
                    created_at: s.created_at,
                    updated_at: s.updated_at,
                    labels: labels_of(&s.metadata),
                    ..row
                },
                |s| access.sees_space(&s.guid),
            )?
        }
        CfKind::App => {
            (page.total_results, page.apps) = page_of(
                views,
                &q,
                None,
                |a: &pb::CfApp| Row {
                    guid: &a.guid,
                    name: &a.name,
                    space_guid: &a.space_guid,
                    organization_guid: &a.organization_guid,
                    created_at: a.created_at,
                    updated_at: a.updated_at,
                    labels: labels_of(&a.metadata),
                    ..row
                },
                |a| access.sees_space(&a.space_guid),
            )?
        }
        _ => {
            let of_app = if r.app_guid.is_empty() {
                None
            } else {
                if views
                    .get_cf::<pb::CfApp>(&r.app_guid)
                    .map_err(errors::storage)?
                    .is_none()
                {
                    return Err(not_found(CfKind::App));
                }
                Some(views.cf_processes_of_app(&r.app_guid).map_err(errors::storage)?)
            };
            (page.total_results, page.processes) = page_of(
                views,
                &q,
                of_app,
                |p: &pb::CfProcess| Row {
                    guid: &p.guid,
                    kind_type: &p.r#type,
                    app_guid: &p.app_guid,
                    space_guid: &p.space_guid,
                    organization_guid: &p.organization_guid,
                    created_at: p.created_at,
                    updated_at: p.updated_at,
                    labels: labels_of(&p.metadata),
                    ..row
                },
                |p| access.sees_space(&p.space_guid),
            )?;
            for p in &mut page.processes {
                p.command = COMMAND_HIDDEN_IN_LISTS.into();
            }
            if q.embed_instances {
                let now = capstan_raft::node::unix_now_ns();
                for p in &page.processes {
                    let (instances, _) = instance_stats(views, p, now)?;
                    page.process_instances.push(pb::CfProcessInstances {
                        process_guid: p.guid.clone(),
                        instances,
                    });
                }
            }
        }
    }
    Ok(page)
}

/// A process's instances as stats report them, without usage (§3.1), and the ActualLRPs behind
/// them.
fn instance_stats(
    views: &Views,
    p: &pb::CfProcess,
    now: i64,
) -> Result<(Vec<pb::CfInstanceStats>, Vec<pb::ActualLrp>), Status> {
    let lrp = rules::process_guid(p);
    let desired = views.get_desired(&lrp).map_err(errors::storage)?;
    let actuals: Vec<pb::ActualLrp> = views
        .actual_lrps(None, Some(&lrp))
        .collect::<Result<_, _>>()
        .map_err(errors::storage)?;
    let states = rules::instance_states(p.instances, desired.is_some(), &actuals);
    let found: Vec<pb::ActualLrp> = states.iter().filter_map(|s| s.actual.clone()).collect();
    let instances = states
        .into_iter()
        .map(|s| match s.actual {
            Some(a) => pb::CfInstanceStats {
                index: s.index,
                instance_guid: a.instance_guid.clone(),
                state: s.state.into(),
                host: a.address.clone(),
                ports: a.ports.clone(),
                uptime: (now - a.since).max(0) / 1_000_000_000,
                details: a.placement_error.clone(),
                usage: None,
                found: true,
            },
            None => pb::CfInstanceStats {
                index: s.index,
                state: s.state.into(),
                ..Default::default()
            },
        })
        .collect();
    Ok((instances, found))
}

/// A process by guid, or by app and type (404 `App not found` / `Process not found`).
fn resolve(views: &Views, r: &pb::CfProcessRef) -> Result<pb::CfProcess, Status> {
    if !r.guid.is_empty() || r.app_guid.is_empty() {
        return views
            .get_cf::<pb::CfProcess>(&r.guid)
            .map_err(errors::storage)?
            .ok_or_else(|| not_found(CfKind::Process));
    }
    if views
        .get_cf::<pb::CfApp>(&r.app_guid)
        .map_err(errors::storage)?
        .is_none()
    {
        return Err(not_found(CfKind::App));
    }
    use capstan_storage::rules::decide::ViewRead;
    let guid = views
        .cf_named(CfKind::Process, &r.app_guid, &r.r#type)
        .map_err(errors::storage)?
        .ok_or_else(|| not_found(CfKind::Process))?;
    views
        .get_cf::<pb::CfProcess>(&guid)
        .map_err(errors::storage)?
        .ok_or_else(|| not_found(CfKind::Process))
}

impl CfServiceImpl {
    /// What the cells running `actuals` measured of them, by instance guid; `false` when a cell
    /// could not be asked.
    async fn usage(&self, actuals: &[pb::ActualLrp]) -> (BTreeMap<String, pb::InstanceUsage>, bool) {
        let mut by_cell: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for a in actuals.iter().filter(|a| a.state == pb::ActualLrpState::Running as i32) {
            by_cell
                .entry(a.cell_id.as_str())
                .or_default()
                .push(a.instance_guid.clone());
        }
        let (mut out, mut complete) = (BTreeMap::new(), true);
        for (cell_id, guids) in by_cell {
            let addr = match self.views().get_cell(cell_id) {
                Ok(Some(c)) if !c.api_addr.is_empty() => c.api_addr,
                _ => {
                    complete = false;
                    continue;
                }
            };
            let Ok(channel) = self.fwd.peers().channel(&addr) else {
                complete = false;
                continue;
            };
            let mut client = CellApiClient::new(channel);
            let call = client.instance_usage(pb::InstanceUsageRequest { instance_guids: guids });
            match tokio::time::timeout(USAGE_TIMEOUT, call).await {
                Ok(Ok(r)) => {
                    for u in r.into_inner().usages {
                        out.insert(u.instance_guid.clone(), u);
                    }
                }
                _ => complete = false,
            }
        }
        (out, complete)
    }
}

/// Forwards a CF request to the leader with the caller's identity: `cf_leader!(self, id, addr, method, req)`.
macro_rules! cf_leader {
    ($svc:expr, $id:expr, $addr:expr, $method:ident, $req:expr) => {{
        let mut req = forwarded($req);
        $id.stamp(&mut req);
        $svc.fwd
            .call_leader(&$addr, move |channel| async move {
                CfServiceClient::new(channel).$method(req).await
            })
            .await
    }};
}

/// A process the caller sees (404 as CF answers for one it does not).
fn resolve_seen(views: &Views, r: &pb::CfProcessRef, access: &Access) -> Result<pb::CfProcess, Status> {
    let p = resolve(views, r)?;
    if access.sees_space(&p.space_guid) {
        Ok(p)
    } else if r.guid.is_empty() && !r.app_guid.is_empty() {
        Err(not_found(CfKind::App))
    } else {
        Err(not_found(CfKind::Process))
    }
}

impl CfServiceImpl {
    fn access(&self, id: &Identity) -> Result<Access, Status> {
        Access::of(id, &self.auth, self.views())
    }

    /// A write's target space (or org) checked on the leader: 404 if the caller does not see it,
    /// 403 if it may not write there.
    fn may_write_in(&self, id: &Identity, space: &str) -> Result<(), Status> {
        let access = self.access(id)?;
        if !access.sees_space(space) {
            return Err(not_found(CfKind::Space));
        }
        if !access.writes_in(space) {
            return Err(forbidden());
        }
        Ok(())
    }

    fn space_of_app(&self, app_guid: &str) -> Result<String, Status> {
        self.views()
            .get_cf::<pb::CfApp>(app_guid)
            .map_err(errors::storage)?
            .map(|a| a.space_guid)
            .ok_or_else(|| not_found(CfKind::App))
    }

    /// The org a space belongs to (404 if unknown).
    fn org_of_space(&self, space_guid: &str) -> Result<String, Status> {
        self.views()
            .get_cf::<pb::CfSpace>(space_guid)
            .map_err(errors::storage)?
            .map(|s| s.organization_guid)
            .ok_or_else(|| not_found(CfKind::Space))
    }

    /// An org-level write: an org manager's, or a writer's without CF roles.
    fn may_manage(&self, id: &Identity, org: &str) -> Result<(), Status> {
        let access = self.access(id)?;
        if !access.sees_org(org) {
            return Err(not_found(CfKind::Organization));
        }
        if !access.manages_org(org) {
            return Err(forbidden());
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl CfService for CfServiceImpl {
    async fn create_organization(
        &self,
        req: Request<pb::CreateCfOrganization>,
    ) -> Result<Response<pb::CfOrganization>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        rules::name(&r.name).map_err(unprocessable)?;
        check_metadata(r.metadata.as_ref())?;
        if let Served::Leader(addr) = self.fwd.route(fwd)? {
            return cf_leader!(self, id, addr, create_organization, r);
        }
        if !self.access(&id)?.write_all {
            return Err(forbidden());
        }
        match self
            .fwd
            .propose(pb::command::Kind::CreateCfOrganization(r.clone()), fwd)
            .await?
        {
            Served::Here(e) => changed!(e, CfOrganizationChanged)
                .map(Response::new)
                .ok_or_else(|| internal("an organization")),
            Served::Leader(addr) => cf_leader!(self, id, addr, create_organization, r),
        }
    }

    async fn create_space(&self, req: Request<pb::CreateCfSpace>) -> Result<Response<pb::CfSpace>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        rules::name(&r.name).map_err(unprocessable)?;
        check_metadata(r.metadata.as_ref())?;
        if let Served::Leader(addr) = self.fwd.route(fwd)? {
            return cf_leader!(self, id, addr, create_space, r);
        }
        let access = self.access(&id)?;
        if access.sees_org(&r.organization_guid) && !access.manages_org(&r.organization_guid) {
            return Err(forbidden());
        }
        match self
            .fwd
            .propose(pb::command::Kind::CreateCfSpace(r.clone()), fwd)
            .await?
        {
            Served::Here(e) => changed!(e, CfSpaceChanged)
                .map(Response::new)
                .ok_or_else(|| internal("a space")),
            Served::Leader(addr) => cf_leader!(self, id, addr, create_space, r),
        }
    }

    async fn create_app(&self, req: Request<pb::CreateCfApp>) -> Result<Response<pb::CfApp>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        rules::name(&r.name).map_err(unprocessable)?;
        check_metadata(r.metadata.as_ref())?;
        if let Served::Leader(addr) = self.fwd.route(fwd)? {
            return cf_leader!(self, id, addr, create_app, r);
        }
        let access = self.access(&id)?;
        if access.sees_space(&r.space_guid) && !access.writes_in(&r.space_guid) {
            return Err(forbidden());
        }
        match self.fwd.propose(pb::command::Kind::CreateCfApp(r.clone()), fwd).await? {
            Served::Here(e) => changed!(e, CfAppChanged)
                .map(Response::new)
                .ok_or_else(|| internal("an app")),
            Served::Leader(addr) => cf_leader!(self, id, addr, create_app, r),
        }
    }

    async fn update_resource(&self, req: Request<pb::UpdateCfResource>) -> Result<Response<pb::CfResource>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        if let Some(n) = &r.name {
            rules::name(n).map_err(unprocessable)?;
        }
        if let Some(m) = &r.metadata {
            labels::patch(m).map_err(unprocessable)?;
        }
        if let Served::Leader(addr) = self.fwd.route(fwd)? {
            return cf_leader!(self, id, addr, update_resource, r);
        }
        match kind_of(r.kind) {
            CfKind::Organization => self.may_manage(&id, &r.guid)?,
            CfKind::Space => self.may_manage(&id, &self.org_of_space(&r.guid)?)?,
            _ => self.may_write_in(&id, &self.space_of_app(&r.guid)?)?,
        }
        match self
            .fwd
            .propose(pb::command::Kind::UpdateCfResource(r.clone()), fwd)
            .await?
        {
            Served::Here(e) => {
                use pb::cf_resource::Kind as R;
                let kind = match kind_of(r.kind) {
                    CfKind::Organization => changed!(e, CfOrganizationChanged).map(R::Organization),
                    CfKind::Space => changed!(e, CfSpaceChanged).map(R::Space),
                    _ => changed!(e, CfAppChanged).map(R::App),
                };
                kind.map(|k| Response::new(pb::CfResource { kind: Some(k) }))
                    .ok_or_else(|| internal("the resource"))
            }
            Served::Leader(addr) => cf_leader!(self, id, addr, update_resource, r),
        }
    }

    async fn delete_resource(&self, req: Request<pb::DeleteCfResource>) -> Result<Response<pb::CfJob>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.route(fwd)? {
            return cf_leader!(self, id, addr, delete_resource, r);
        }
        match kind_of(r.kind) {
            CfKind::Organization => {
                if !self.access(&id)?.write_all {
                    return Err(forbidden());
                }
            }
            CfKind::Space => self.may_manage(&id, &self.org_of_space(&r.guid)?)?,
            _ => self.may_write_in(&id, &self.space_of_app(&r.guid)?)?,
        }
        match self
            .fwd
            .propose(pb::command::Kind::DeleteCfResource(r.clone()), fwd)
            .await?
        {
            Served::Here(e) => job_of(&e).map(Response::new),
            Served::Leader(addr) => cf_leader!(self, id, addr, delete_resource, r),
        }
    }

    async fn set_app_state(&self, req: Request<pb::SetCfAppState>) -> Result<Response<pb::CfApp>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.route(fwd)? {
            return cf_leader!(self, id, addr, set_app_state, r);
        }
        self.may_write_in(&id, &self.space_of_app(&r.app_guid)?).map_err(|e| {
            if e.code() == tonic::Code::NotFound {
                not_found(CfKind::App)
            } else {
                e
            }
        })?;
        match self
            .fwd
            .propose(pb::command::Kind::SetCfAppState(r.clone()), fwd)
            .await?
        {
            Served::Here(e) => changed!(e, CfAppChanged)
                .map(Response::new)
                .ok_or_else(|| internal("an app")),
            Served::Leader(addr) => cf_leader!(self, id, addr, set_app_state, r),
        }
    }

    async fn apply_manifest(&self, req: Request<pb::ApplyCfManifest>) -> Result<Response<pb::CfJob>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        check_manifest(&r)?;
        if let Served::Leader(addr) = self.fwd.route(fwd)? {
            return cf_leader!(self, id, addr, apply_manifest, r);
        }
        self.may_write_in(&id, &r.space_guid)?;
        match self
            .fwd
            .propose(pb::command::Kind::ApplyCfManifest(r.clone()), fwd)
            .await?
        {
            Served::Here(e) => job_of(&e).map(Response::new),
            Served::Leader(addr) => cf_leader!(self, id, addr, apply_manifest, r),
        }
    }

    async fn get_resource(&self, req: Request<pb::CfGetRequest>) -> Result<Response<pb::CfResource>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.read_barrier(r.consistency, fwd).await? {
            return cf_leader!(self, id, addr, get_resource, r);
        }
        use pb::cf_resource::Kind as R;
        let v = self.views();
        let access = self.access(&id)?;
        let kind = kind_of(r.kind);
        let found = match kind {
            CfKind::Organization => v
                .get_cf(&r.guid)
                .map(|o: Option<pb::CfOrganization>| o.filter(|o| access.sees_org(&o.guid)).map(R::Organization)),
            CfKind::Space => v
                .get_cf(&r.guid)
                .map(|o: Option<pb::CfSpace>| o.filter(|s| access.sees_space(&s.guid)).map(R::Space)),
            CfKind::App => v
                .get_cf(&r.guid)
                .map(|o: Option<pb::CfApp>| o.filter(|a| access.sees_space(&a.space_guid)).map(R::App)),
            _ => v.get_cf(&r.guid).map(|o: Option<pb::CfProcess>| {
                o.filter(|p| access.sees_space(&p.space_guid)).map(|mut p| {
                    if !access.secrets_in(&p.space_guid) {
                        p.command = COMMAND_HIDDEN.into();
                    }
                    R::Process(p)
                })
            }),
        }
        .map_err(errors::storage)?;
        found
            .map(|k| Response::new(pb::CfResource { kind: Some(k) }))
            .ok_or_else(|| not_found(kind))
    }

    async fn list(&self, req: Request<pb::ListCfRequest>) -> Result<Response<pb::CfListPage>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.read_barrier(r.consistency, fwd).await? {
            return cf_leader!(self, id, addr, list, r);
        }
        let access = self.access(&id)?;
        let views = self.views().clone();
        tokio::task::spawn_blocking(move || list(&views, &r, &access))
            .await
            .map_err(|e| errors::status(ErrorKind::Internal, e.to_string(), 0))?
            .map(Response::new)
    }

    async fn get_job(&self, req: Request<pb::CfJobRequest>) -> Result<Response<pb::CfJob>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.read_barrier(r.consistency, fwd).await? {
            return cf_leader!(self, id, addr, get_job, r);
        }
        self.views()
            .get_cf_job(&r.guid)
            .map_err(errors::storage)?
            .map(Response::new)
            .ok_or_else(|| errors::status(ErrorKind::CfNotFound, "Job not found", 0))
    }

    async fn get_process(&self, req: Request<pb::CfProcessRef>) -> Result<Response<pb::CfProcessView>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.read_barrier(r.consistency, fwd).await? {
            return cf_leader!(self, id, addr, get_process, r);
        }
        let views = self.views();
        let access = self.access(&id)?;
        let mut p = resolve_seen(views, &r, &access)?;
        // The lookup (404) comes before the query's validation (400), as CF's before_action.
        let embedded = query::single(&r.query).map_err(bad_query)?;
        let instances = if embedded {
            instance_stats(views, &p, capstan_raft::node::unix_now_ns())?.0
        } else {
            Vec::new()
        };
        if !access.secrets_in(&p.space_guid) {
            p.command = COMMAND_HIDDEN.into();
        }
        Ok(Response::new(pb::CfProcessView {
            process: Some(p),
            embedded,
            instances,
        }))
    }

    async fn update_process(
        &self,
        req: Request<pb::UpdateCfProcessRequest>,
    ) -> Result<Response<pb::CfProcess>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.route(fwd)? {
            return cf_leader!(self, id, addr, update_process, r);
        }
        let p = self.writable_process(&id, r.process.as_ref())?;
        let mut update = r.update.clone().unwrap_or_default();
        update.process_guid = p.guid.clone();
        check_update(&update)?;
        match self
            .fwd
            .propose(pb::command::Kind::UpdateCfProcess(update), fwd)
            .await?
        {
            Served::Here(e) => process_after(&e, &p.guid)
                .map(Response::new)
                .ok_or_else(|| internal("the process")),
            Served::Leader(addr) => cf_leader!(self, id, addr, update_process, r),
        }
    }

    async fn scale_process(&self, req: Request<pb::ScaleCfProcessRequest>) -> Result<Response<pb::CfProcess>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.route(fwd)? {
            return cf_leader!(self, id, addr, scale_process, r);
        }
        let p = self.writable_process(&id, r.process.as_ref())?;
        let mut scale = r.scale.clone().unwrap_or_default();
        scale.process_guid = p.guid.clone();
        rules::scale(&scale).map_err(unprocessable)?;
        match self.fwd.propose(pb::command::Kind::ScaleCfProcess(scale), fwd).await? {
            Served::Here(e) => process_after(&e, &p.guid)
                .map(Response::new)
                .ok_or_else(|| internal("the process")),
            Served::Leader(addr) => cf_leader!(self, id, addr, scale_process, r),
        }
    }

    async fn terminate_instance(
        &self,
        req: Request<pb::TerminateCfInstanceRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.route(fwd)? {
            return cf_leader!(self, id, addr, terminate_instance, r);
        }
        let p = self.writable_process(&id, r.process.as_ref())?;
        let instance_not_found = || errors::status(ErrorKind::CfNotFound, "Instance not found", 0);
        // A non-numeric index is "Instance not found" (DECISIONS), not index 0 as upstream.
        let index: u32 = r.index.parse().map_err(|_| instance_not_found())?;
        let command = pb::command::Kind::TerminateCfInstance(pb::TerminateCfInstance {
            process_guid: p.guid,
            index,
        });
        match self.fwd.propose(command, fwd).await? {
            Served::Here(_) => Ok(Response::new(pb::Empty {})),
            Served::Leader(addr) => cf_leader!(self, id, addr, terminate_instance, r),
        }
    }

    async fn process_stats(&self, req: Request<pb::CfProcessRef>) -> Result<Response<pb::CfProcessStats>, Status> {
        let (fwd, id) = (is_forwarded(&req), identity(&req));
        let r = req.into_inner();
        if let Served::Leader(addr) = self.fwd.read_barrier(r.consistency, fwd).await? {
            return cf_leader!(self, id, addr, process_stats, r);
        }
        let views = self.views();
        let access = self.access(&id)?;
        let mut p = resolve_seen(views, &r, &access)?;
        let now = capstan_raft::node::unix_now_ns();
        let (mut instances, found) = instance_stats(views, &p, now)?;
        let (usage, complete) = self.usage(&found).await;
        for i in &mut instances {
            i.usage = usage.get(&i.instance_guid).map(|u| pb::CfUsage {
                time_unix_ns: u.time_unix_ns,
                cpu: u.cpu,
                mem_bytes: u.mem_bytes,
                disk_bytes: u.disk_bytes,
            });
        }
        if !access.secrets_in(&p.space_guid) {
            p.command = COMMAND_HIDDEN.into();
        }
        Ok(Response::new(pb::CfProcessStats {
            process: Some(p),
            instances,
            usage_unavailable: !complete,
        }))
    }
}

impl CfServiceImpl {
    /// The process a write names, if the caller sees it (404) and may write in its space (403).
    fn writable_process(&self, id: &Identity, r: Option<&pb::CfProcessRef>) -> Result<pb::CfProcess, Status> {
        let access = self.access(id)?;
        let p = resolve_seen(self.views(), &r.cloned().unwrap_or_default(), &access)?;
        if !access.writes_in(&p.space_guid) {
            return Err(forbidden());
        }
        Ok(p)
    }
}
