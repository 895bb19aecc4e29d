//! The public `CfService` (Cloud Foundry V3: organizations, spaces, apps, processes, jobs). Writes
//! are validated at the edge with `storage::rules::cf` and proposed as the log's CF commands;
//! lists parse CF's query parameters and stream from the views' time indexes, counting every
//! match and keeping only the page; stats read the process's ActualLRPs and ask each cell that
//! runs one of its instances what it measured (`CellApi.InstanceUsage`). `access.rs` decides who
//! sees and changes what, `checks.rs` holds the edge checks of writes, `list.rs` the reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb::{self, cell_api_client::CellApiClient, cf_service_server::CfService, CfKind, ErrorKind};
use capstan_storage::rules::cf::{self as rules, labels, query};
use capstan_storage::Views;
use tonic::{Request, Response, Status};

mod access;
mod checks;
mod list;

use access::{forbidden, identity, Access, Identity};
use checks::{check_env, check_manifest, check_metadata, check_update};
use list::{instance_stats, list, resolve_seen};

use super::forward::Forwarder;
use crate::auth::Authenticator;
use crate::errors;

/// How long stats wait for a cell's usage figures before reporting them unavailable.
const USAGE_TIMEOUT: Duration = Duration::from_secs(2);
/// What a caller without a write role sees of a single process's command (spec §1.4).
pub const COMMAND_HIDDEN: &str = rules::PRIVATE_DATA_HIDDEN;
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

pub(super) fn not_found(kind: CfKind) -> Status {
    errors::status(
        ErrorKind::CfNotFound,
        format!("{} not found", rules::kind_title(kind)),
        0,
    )
}

pub(super) fn unprocessable(message: impl Into<String>) -> Status {
    errors::status(ErrorKind::CfUnprocessable, message, 0)
}

pub(super) fn bad_query(message: String) -> Status {
    errors::status(
        ErrorKind::CfBadQuery,
        format!("The query parameter is invalid: {message}"),
        0,
    )
}

fn internal(what: &str) -> Status {
    errors::status(ErrorKind::Internal, format!("the entry applied without {what}"), 0)
}

pub(super) fn kind_of(k: i32) -> CfKind {
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

/// An app as every answer but `GetAppEnvironment` shows it: without its environment variables.
fn without_env(mut app: pb::CfApp) -> pb::CfApp {
    app.environment_variables.clear();
    app
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
        let id = identity(&req);
        let r = req.into_inner();
        rules::name(&r.name).map_err(unprocessable)?;
        check_metadata(r.metadata.as_ref())?;
        if !self.access(&id)?.write_all {
            return Err(forbidden());
        }
        let e = self
            .fwd
            .propose(pb::command::Kind::CreateCfOrganization(r.clone()))
            .await?;
        changed!(e, CfOrganizationChanged)
            .map(Response::new)
            .ok_or_else(|| internal("an organization"))
    }

    async fn create_space(&self, req: Request<pb::CreateCfSpace>) -> Result<Response<pb::CfSpace>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
        rules::name(&r.name).map_err(unprocessable)?;
        check_metadata(r.metadata.as_ref())?;
        let access = self.access(&id)?;
        if access.sees_org(&r.organization_guid) && !access.manages_org(&r.organization_guid) {
            return Err(forbidden());
        }
        let e = self.fwd.propose(pb::command::Kind::CreateCfSpace(r.clone())).await?;
        changed!(e, CfSpaceChanged)
            .map(Response::new)
            .ok_or_else(|| internal("a space"))
    }

    async fn create_app(&self, req: Request<pb::CreateCfApp>) -> Result<Response<pb::CfApp>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
        rules::name(&r.name).map_err(unprocessable)?;
        check_metadata(r.metadata.as_ref())?;
        let access = self.access(&id)?;
        if access.sees_space(&r.space_guid) && !access.writes_in(&r.space_guid) {
            return Err(forbidden());
        }
        let e = self.fwd.propose(pb::command::Kind::CreateCfApp(r.clone())).await?;
        changed!(e, CfAppChanged)
            .map(Response::new)
            .ok_or_else(|| internal("an app"))
    }

    async fn update_resource(&self, req: Request<pb::UpdateCfResource>) -> Result<Response<pb::CfResource>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
        if let Some(n) = &r.name {
            rules::name(n).map_err(unprocessable)?;
        }
        if let Some(m) = &r.metadata {
            labels::patch(m).map_err(unprocessable)?;
        }
        check_env(r.environment_variables.as_ref())?;
        match kind_of(r.kind) {
            CfKind::Organization => self.may_manage(&id, &r.guid)?,
            CfKind::Space => self.may_manage(&id, &self.org_of_space(&r.guid)?)?,
            _ => {
                let space = self.space_of_app(&r.guid)?;
                self.may_write_in(&id, &space)?;
                // environment variables are secrets: a developer's (or an admin's) to change
                if r.environment_variables.is_some() && !self.access(&id)?.secrets_in(&space) {
                    return Err(forbidden());
                }
            }
        }
        let with_env = r.environment_variables.is_some();
        let e = self.fwd.propose(pb::command::Kind::UpdateCfResource(r.clone())).await?;
        use pb::cf_resource::Kind as R;
        let kind = match kind_of(r.kind) {
            CfKind::Organization => changed!(e, CfOrganizationChanged).map(R::Organization),
            CfKind::Space => changed!(e, CfSpaceChanged).map(R::Space),
            _ => changed!(e, CfAppChanged).map(|a| R::App(if with_env { a } else { without_env(a) })),
        };
        kind.map(|k| Response::new(pb::CfResource { kind: Some(k) }))
            .ok_or_else(|| internal("the resource"))
    }

    async fn delete_resource(&self, req: Request<pb::DeleteCfResource>) -> Result<Response<pb::CfJob>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
        match kind_of(r.kind) {
            CfKind::Organization => {
                if !self.access(&id)?.write_all {
                    return Err(forbidden());
                }
            }
            CfKind::Space => self.may_manage(&id, &self.org_of_space(&r.guid)?)?,
            _ => self.may_write_in(&id, &self.space_of_app(&r.guid)?)?,
        }
        let e = self.fwd.propose(pb::command::Kind::DeleteCfResource(r)).await?;
        job_of(&e).map(Response::new)
    }

    async fn set_app_state(&self, req: Request<pb::SetCfAppState>) -> Result<Response<pb::CfApp>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
        self.may_write_in(&id, &self.space_of_app(&r.app_guid)?).map_err(|e| {
            if e.code() == tonic::Code::NotFound {
                not_found(CfKind::App)
            } else {
                e
            }
        })?;
        let e = self.fwd.propose(pb::command::Kind::SetCfAppState(r.clone())).await?;
        changed!(e, CfAppChanged)
            .map(without_env)
            .map(Response::new)
            .ok_or_else(|| internal("an app"))
    }

    async fn apply_manifest(&self, req: Request<pb::ApplyCfManifest>) -> Result<Response<pb::CfJob>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
        check_manifest(&r)?;
        self.may_write_in(&id, &r.space_guid)?;
        let e = self.fwd.propose(pb::command::Kind::ApplyCfManifest(r.clone())).await?;
        job_of(&e).map(Response::new)
    }

    async fn get_resource(&self, req: Request<pb::CfGetRequest>) -> Result<Response<pb::CfResource>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
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
            CfKind::App => v.get_cf(&r.guid).map(|o: Option<pb::CfApp>| {
                o.filter(|a| access.sees_space(&a.space_guid))
                    .map(without_env)
                    .map(R::App)
            }),
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
        let id = identity(&req);
        let r = req.into_inner();
        let access = self.access(&id)?;
        let views = self.views().clone();
        tokio::task::spawn_blocking(move || list(&views, &r, &access))
            .await
            .map_err(|e| errors::status(ErrorKind::Internal, e.to_string(), 0))?
            .map(Response::new)
    }

    async fn get_app_environment(&self, req: Request<pb::CfGetRequest>) -> Result<Response<pb::CfApp>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
        let access = self.access(&id)?;
        let app = self.views().get_cf::<pb::CfApp>(&r.guid).map_err(errors::storage)?;
        let app = app
            .filter(|a| access.sees_space(&a.space_guid))
            .ok_or_else(|| not_found(CfKind::App))?;
        if !access.secrets_in(&app.space_guid) {
            return Err(forbidden());
        }
        Ok(Response::new(app))
    }

    async fn get_job(&self, req: Request<pb::CfJobRequest>) -> Result<Response<pb::CfJob>, Status> {
        let r = req.into_inner();
        self.views()
            .get_cf_job(&r.guid)
            .map_err(errors::storage)?
            .map(Response::new)
            .ok_or_else(|| errors::status(ErrorKind::CfNotFound, "Job not found", 0))
    }

    async fn get_process(&self, req: Request<pb::CfProcessRef>) -> Result<Response<pb::CfProcessView>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
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
        let id = identity(&req);
        let r = req.into_inner();
        let p = self.writable_process(&id, r.process.as_ref())?;
        let mut update = r.update.clone().unwrap_or_default();
        update.process_guid = p.guid.clone();
        check_update(&update)?;
        let e = self.fwd.propose(pb::command::Kind::UpdateCfProcess(update)).await?;
        process_after(&e, &p.guid)
            .map(Response::new)
            .ok_or_else(|| internal("the process"))
    }

    async fn scale_process(&self, req: Request<pb::ScaleCfProcessRequest>) -> Result<Response<pb::CfProcess>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
        let p = self.writable_process(&id, r.process.as_ref())?;
        let mut scale = r.scale.clone().unwrap_or_default();
        scale.process_guid = p.guid.clone();
        rules::scale(&scale).map_err(unprocessable)?;
        let e = self.fwd.propose(pb::command::Kind::ScaleCfProcess(scale)).await?;
        process_after(&e, &p.guid)
            .map(Response::new)
            .ok_or_else(|| internal("the process"))
    }

    async fn terminate_instance(
        &self,
        req: Request<pb::TerminateCfInstanceRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
        let p = self.writable_process(&id, r.process.as_ref())?;
        let instance_not_found = || errors::status(ErrorKind::CfNotFound, "Instance not found", 0);
        // A non-numeric index is "Instance not found" (DECISIONS), not index 0 as upstream.
        let index: u32 = r.index.parse().map_err(|_| instance_not_found())?;
        let command = pb::command::Kind::TerminateCfInstance(pb::TerminateCfInstance {
            process_guid: p.guid,
            index,
        });
        let _ = self.fwd.propose(command).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn process_stats(&self, req: Request<pb::CfProcessRef>) -> Result<Response<pb::CfProcessStats>, Status> {
        let id = identity(&req);
        let r = req.into_inner();
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
