//! Cloud Foundry V3 commands: organizations, spaces and apps (create, update, delete with their
//! children), start/stop, apply_manifest, and a process's update, scale and terminate. A started
//! app's processes with instances are DesiredLRPs in domain `cf-apps` (spec §7): their events are
//! decided here together with the CF resource's, in the same entry, by the LRP transitions of
//! `lrp.rs` and `instances.rs`.

use super::events::ev;
use super::{instances, lrp, reject, Ctx, Decision, ViewRead};
use crate::cf::{self, labels, CfRecord};
use crate::pb;
use pb::{event::Kind as Ev, CfKind, RejectionKind};

pub fn not_found(kind: CfKind) -> pb::Rejection {
    reject(RejectionKind::CfNotFound, format!("{} not found", cf::kind_title(kind)))
}

pub(super) fn unprocessable(message: impl Into<String>) -> pb::Rejection {
    reject(RejectionKind::CfUnprocessable, message)
}

/// Labels and annotations as a create carries them.
fn metadata(m: Option<&pb::CfMetadata>) -> Result<pb::CfMetadata, pb::Rejection> {
    let m = m.cloned().unwrap_or_default();
    let patch = pb::CfMetadataPatch {
        labels: m.labels.clone(),
        annotations: m.annotations.clone(),
        ..Default::default()
    };
    labels::patch(&patch).map_err(unprocessable)?;
    labels::merged(None, Some(&patch)).map_err(unprocessable)
}

fn org_event(before: Option<pb::CfOrganization>, after: Option<pb::CfOrganization>) -> pb::Event {
    ev(Ev::CfOrganizationChanged(pb::CfOrganizationChanged { before, after }))
}
fn space_event(before: Option<pb::CfSpace>, after: Option<pb::CfSpace>) -> pb::Event {
    ev(Ev::CfSpaceChanged(pb::CfSpaceChanged { before, after }))
}
pub(super) fn app_event(before: Option<pb::CfApp>, after: Option<pb::CfApp>) -> pb::Event {
    ev(Ev::CfAppChanged(pb::CfAppChanged { before, after }))
}
pub(super) fn process_event(before: Option<pb::CfProcess>, after: Option<pb::CfProcess>) -> pb::Event {
    ev(Ev::CfProcessChanged(pb::CfProcessChanged { before, after }))
}

pub(super) fn job(cx: &mut Ctx, operation: &str, kind: &str, resource_guid: &str) -> pb::Event {
    ev(Ev::CfJobRecorded(pb::CfJobRecorded {
        job: Some(pb::CfJob {
            guid: cx.ids.next_uuid(),
            operation: operation.into(),
            state: "COMPLETE".into(),
            errors: vec![],
            created_at: cx.now,
            updated_at: cx.now,
            resource_guid: resource_guid.into(),
            resource_kind: kind.into(),
        }),
    }))
}

/// Refuses a name its parent already holds (another resource than `guid`).
fn name_free<V: ViewRead>(
    view: &V,
    kind: CfKind,
    parent: &str,
    name: &str,
    guid: &str,
) -> Result<Result<(), pb::Rejection>, V::Error> {
    if let Err(m) = cf::name(name) {
        return Ok(Err(unprocessable(m)));
    }
    Ok(match view.cf_named(kind, parent, name)? {
        Some(holder) if holder != guid => Err(unprocessable(match kind {
            CfKind::Organization => format!("Organization '{name}' already exists."),
            CfKind::Space => "Name must be unique per organization".to_string(),
            _ => format!("App with the name '{name}' already exists."),
        })),
        _ => Ok(()),
    })
}

/// `check!(result)`: the rejection of a business refusal ends the decision.
macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return Ok(Err(r)),
        }
    };
}
pub(super) use check;

pub fn create_organization<V: ViewRead>(
    view: &V,
    c: &pb::CreateCfOrganization,
    cx: &mut Ctx,
) -> Result<Decision, V::Error> {
    check!(name_free(view, CfKind::Organization, "", &c.name, "")?);
    let metadata = check!(metadata(c.metadata.as_ref()));
    let org = pb::CfOrganization {
        guid: cx.ids.next_uuid(),
        name: c.name.clone(),
        created_at: cx.now,
        updated_at: cx.now,
        metadata: Some(metadata),
    };
    Ok(Ok(vec![org_event(None, Some(org))]))
}

pub fn create_space<V: ViewRead>(view: &V, c: &pb::CreateCfSpace, cx: &mut Ctx) -> Result<Decision, V::Error> {
    if view.cf_organization(&c.organization_guid)?.is_none() {
        return Ok(Err(unprocessable(
            "Invalid organization. Ensure the organization exists and you have access to it.",
        )));
    }
    check!(name_free(view, CfKind::Space, &c.organization_guid, &c.name, "")?);
    let metadata = check!(metadata(c.metadata.as_ref()));
    let space = pb::CfSpace {
        guid: cx.ids.next_uuid(),
        name: c.name.clone(),
        organization_guid: c.organization_guid.clone(),
        created_at: cx.now,
        updated_at: cx.now,
        metadata: Some(metadata),
    };
    Ok(Ok(vec![space_event(None, Some(space))]))
}

/// A new process of an app with CF's defaults for its type (web: one instance, port check).
pub(super) fn new_process(app: &pb::CfApp, process_type: &str, cx: &mut Ctx) -> pb::CfProcess {
    pb::CfProcess {
        guid: cx.ids.next_uuid(),
        app_guid: app.guid.clone(),
        space_guid: app.space_guid.clone(),
        organization_guid: app.organization_guid.clone(),
        r#type: process_type.into(),
        instances: i32::from(process_type == "web"),
        memory_in_mb: cf::MEMORY_MB_DEFAULT,
        disk_in_mb: cf::DISK_MB_DEFAULT,
        log_rate_limit_in_bytes_per_second: cf::LOG_RATE_DEFAULT,
        health_check: Some(cf::default_health_check(process_type)),
        readiness_health_check: Some(cf::default_readiness_check()),
        version: cx.ids.next_uuid(),
        created_at: cx.now,
        updated_at: cx.now,
        metadata: Some(pb::CfMetadata::default()),
        ..Default::default()
    }
}

/// A new app of a space, STOPPED, with its `web` process.
pub(super) fn new_app<V: ViewRead>(
    view: &V,
    space_guid: &str,
    name: &str,
    docker_image: &str,
    md: Option<&pb::CfMetadata>,
    cx: &mut Ctx,
) -> Result<Result<(pb::CfApp, pb::CfProcess), pb::Rejection>, V::Error> {
    let Some(space) = view.cf_space(space_guid)? else {
        return Ok(Err(unprocessable(
            "Invalid space. Ensure that the space exists and you have access to it.",
        )));
    };
    check!(name_free(view, CfKind::App, space_guid, name, "")?);
    let metadata = check!(metadata(md));
    let app = pb::CfApp {
        guid: cx.ids.next_uuid(),
        name: name.into(),
        space_guid: space.guid.clone(),
        organization_guid: space.organization_guid.clone(),
        state: pb::CfAppState::Stopped as i32,
        docker_image: docker_image.into(),
        created_at: cx.now,
        updated_at: cx.now,
        metadata: Some(metadata),
        environment_variables: Default::default(),
    };
    let web = new_process(&app, "web", cx);
    Ok(Ok((app, web)))
}

pub fn create_app<V: ViewRead>(view: &V, c: &pb::CreateCfApp, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let (app, web) = check!(new_app(
        view,
        &c.space_guid,
        &c.name,
        &c.docker_image,
        c.metadata.as_ref(),
        cx
    )?);
    Ok(Ok(vec![app_event(None, Some(app)), process_event(None, Some(web))]))
}

/// What an update does to a record's environment variables: an app's take the patch; an
/// organization or a space has none (a patch for one is refused before this).
trait WithEnv {
    fn set_env(&mut self, _patch: Option<&pb::CfEnvPatch>) {}
}
impl WithEnv for pb::CfOrganization {}
impl WithEnv for pb::CfSpace {}
impl WithEnv for pb::CfApp {
    fn set_env(&mut self, patch: Option<&pb::CfEnvPatch>) {
        if let Some(p) = patch {
            self.environment_variables = cf::env_merged(&self.environment_variables, &p.set, &p.removed);
        }
    }
}

pub fn update_resource<V: ViewRead>(view: &V, c: &pb::UpdateCfResource, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let kind = CfKind::try_from(c.kind).unwrap_or(CfKind::Unspecified);
    if let Some(p) = &c.metadata {
        check!(labels::patch(p).map_err(unprocessable));
    }
    if let Some(env) = &c.environment_variables {
        if kind != CfKind::App {
            return Ok(Err(unprocessable("only an app has environment variables")));
        }
        let names = env.set.keys().chain(&env.removed).map(String::as_str);
        let broken = cf::env_names("Var", names);
        if !broken.is_empty() {
            return Ok(Err(unprocessable(broken.join(", "))));
        }
    }
    macro_rules! update {
        ($read:ident, $event:ident) => {{
            let Some(before) = view.$read(&c.guid)? else {
                return Ok(Err(not_found(kind)));
            };
            let mut after = before.clone();
            if let Some(name) = &c.name {
                check!(name_free(view, kind, before.parent(), name, &before.guid)?);
                after.name = name.clone();
            }
            after.metadata = Some(check!(
                labels::merged(before.metadata.as_ref(), c.metadata.as_ref()).map_err(unprocessable)
            ));
            after.updated_at = cx.now;
            after.set_env(c.environment_variables.as_ref());
            Ok(Ok(vec![$event(Some(before), Some(after))]))
        }};
    }
    match kind {
        CfKind::Organization => update!(cf_organization, org_event),
        CfKind::Space => update!(cf_space, space_event),
        CfKind::App => update!(cf_app, app_event),
        _ => Ok(Err(unprocessable(
            "only organizations, spaces and apps are updated this way",
        ))),
    }
}

/// The events that remove a process: its DesiredLRP (and instances) if it runs, then the process.
fn remove_process<V: ViewRead>(view: &V, p: pb::CfProcess, events: &mut Vec<pb::Event>) -> Result<(), V::Error> {
    stop_process(view, &p, events)?;
    events.push(process_event(Some(p), None));
    Ok(())
}

/// Removes a process's DesiredLRP and its instances, if it has one.
pub(super) fn stop_process<V: ViewRead>(
    view: &V,
    p: &pb::CfProcess,
    events: &mut Vec<pb::Event>,
) -> Result<(), V::Error> {
    // and the version a rolling restart was replacing, if one was under way
    for guid in [Some(cf::process_guid(p)), cf::previous_process_guid(p)]
        .into_iter()
        .flatten()
    {
        if let Ok(mut e) = lrp::remove(view, &pb::RemoveDesiredLrp { process_guid: guid })? {
            events.append(&mut e);
        }
    }
    Ok(())
}

fn remove_app<V: ViewRead>(view: &V, app: pb::CfApp, events: &mut Vec<pb::Event>) -> Result<(), V::Error> {
    for (_, guid) in view.cf_children(&app.guid)? {
        if let Some(p) = view.cf_process(&guid)? {
            remove_process(view, p, events)?;
        }
    }
    events.push(app_event(Some(app), None));
    Ok(())
}

fn remove_space<V: ViewRead>(view: &V, space: pb::CfSpace, events: &mut Vec<pb::Event>) -> Result<(), V::Error> {
    for (_, guid) in view.cf_children(&space.guid)? {
        if let Some(app) = view.cf_app(&guid)? {
            remove_app(view, app, events)?;
        }
    }
    events.push(space_event(Some(space), None));
    Ok(())
}

pub fn delete_resource<V: ViewRead>(view: &V, c: &pb::DeleteCfResource, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let kind = CfKind::try_from(c.kind).unwrap_or(CfKind::Unspecified);
    let mut events = Vec::new();
    let (operation, kind_name) = match kind {
        CfKind::Organization => {
            let Some(org) = view.cf_organization(&c.guid)? else {
                return Ok(Err(not_found(kind)));
            };
            for (_, guid) in view.cf_children(&org.guid)? {
                if let Some(space) = view.cf_space(&guid)? {
                    remove_space(view, space, &mut events)?;
                }
            }
            events.push(org_event(Some(org), None));
            ("organization.delete", "organizations")
        }
        CfKind::Space => {
            let Some(space) = view.cf_space(&c.guid)? else {
                return Ok(Err(not_found(kind)));
            };
            remove_space(view, space, &mut events)?;
            ("space.delete", "spaces")
        }
        CfKind::App => {
            let Some(app) = view.cf_app(&c.guid)? else {
                return Ok(Err(not_found(kind)));
            };
            remove_app(view, app, &mut events)?;
            ("app.delete", "apps")
        }
        _ => {
            return Ok(Err(unprocessable(
                "only organizations, spaces and apps are deleted this way",
            )))
        }
    };
    events.push(job(cx, operation, kind_name, &c.guid));
    Ok(Ok(events))
}

/// The processes of an app, in creation order.
pub fn processes_of<V: ViewRead>(view: &V, app_guid: &str) -> Result<Vec<pb::CfProcess>, V::Error> {
    let mut out = Vec::new();
    for (kind, guid) in view.cf_children(app_guid)? {
        if kind == CfKind::Process {
            if let Some(p) = view.cf_process(&guid)? {
                out.push(p);
            }
        }
    }
    out.sort_by(|a, b| (a.created_at, &a.guid).cmp(&(b.created_at, &b.guid)));
    Ok(out)
}

/// A process that would run must have a command (there is no droplet to detect one from), unless
/// its app runs a docker image with a default command of its own.
fn runnable(app: &pb::CfApp, p: &pb::CfProcess) -> Result<(), pb::Rejection> {
    if p.instances > 0 && p.command.is_empty() && app.docker_image.is_empty() {
        return Err(unprocessable(format!(
            "process '{}' has no command: set one in the manifest or with PATCH /v3/processes/{}",
            p.r#type, p.guid
        )));
    }
    Ok(())
}

/// Desires the DesiredLRP of a started process (instances may be 0).
pub(super) fn desire_process<V: ViewRead>(
    view: &V,
    app: &pb::CfApp,
    p: &pb::CfProcess,
    cx: &mut Ctx,
    events: &mut Vec<pb::Event>,
) -> Result<Result<(), pb::Rejection>, V::Error> {
    check!(runnable(app, p));
    let desired = cf::desired_lrp(app, p);
    match lrp::desire(
        view,
        &pb::DesireLrp {
            desired_lrp: Some(desired),
        },
        cx,
    )? {
        Ok(mut e) => events.append(&mut e),
        Err(r) => return Ok(Err(unprocessable(r.message))),
    }
    Ok(Ok(()))
}

/// Starts every process of a STOPPED app: a new version each (new containers), their DesiredLRPs.
fn start_app<V: ViewRead>(
    view: &V,
    before: &pb::CfApp,
    after: &pb::CfApp,
    cx: &mut Ctx,
    events: &mut Vec<pb::Event>,
) -> Result<Result<(), pb::Rejection>, V::Error> {
    for p in processes_of(view, &before.guid)? {
        let mut q = p.clone();
        q.version = cx.ids.next_uuid();
        q.updated_at = cx.now;
        check!(desire_process(view, after, &q, cx, events)?);
        events.push(process_event(Some(p), Some(q)));
    }
    Ok(Ok(()))
}

pub fn set_app_state<V: ViewRead>(view: &V, c: &pb::SetCfAppState, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let Some(before) = view.cf_app(&c.app_guid)? else {
        return Ok(Err(not_found(CfKind::App)));
    };
    let started = before.state == pb::CfAppState::Started as i32;
    if started == c.started {
        return Ok(Ok(vec![app_event(Some(before.clone()), Some(before))]));
    }
    let mut after = before.clone();
    after.updated_at = cx.now;
    let mut events = Vec::new();
    if c.started {
        after.state = pb::CfAppState::Started as i32;
        check!(start_app(view, &before, &after, cx, &mut events)?);
    } else {
        after.state = pb::CfAppState::Stopped as i32;
        for p in processes_of(view, &before.guid)? {
            stop_process(view, &p, &mut events)?;
        }
    }
    events.insert(0, app_event(Some(before), Some(after)));
    Ok(Ok(events))
}

/// A started process's instance count reaches its DesiredLRP (desired now if it had none).
pub(super) fn scale_lrp<V: ViewRead>(
    view: &V,
    app: &pb::CfApp,
    p: &pb::CfProcess,
    cx: &mut Ctx,
    events: &mut Vec<pb::Event>,
) -> Result<Result<(), pb::Rejection>, V::Error> {
    let update = pb::UpdateDesiredLrp {
        process_guid: cf::process_guid(p),
        update: Some(pb::DesiredLrpUpdate {
            instances: Some(p.instances),
            ..Default::default()
        }),
    };
    match lrp::update(view, &update, cx)? {
        Ok(mut e) => {
            events.append(&mut e);
            Ok(Ok(()))
        }
        Err(_) => desire_process(view, app, p, cx, events),
    }
}

/// Applies the sent fields of one health check.
fn patch_check(hc: &mut pb::CfHealthCheck, p: &pb::CfHealthCheckPatch) {
    if let Some(t) = &p.r#type {
        hc.r#type = t.clone();
        if t != "http" {
            hc.endpoint.clear();
        }
    }
    if p.has_timeout {
        hc.timeout = p.timeout;
    }
    if p.has_invocation_timeout {
        hc.invocation_timeout = p.invocation_timeout;
    }
    if p.has_interval {
        hc.interval = p.interval;
    }
    if p.has_endpoint {
        hc.endpoint = p.endpoint.clone().unwrap_or_default();
    }
}

pub fn update_process<V: ViewRead>(view: &V, c: &pb::UpdateCfProcess, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let Some(before) = view.cf_process(&c.process_guid)? else {
        return Ok(Err(not_found(CfKind::Process)));
    };
    let mut after = before.clone();
    if c.has_command {
        after.command = c.command.clone().unwrap_or_default();
    }
    if c.has_user {
        after.user = c.user.clone().unwrap_or_default();
        if !after.user.is_empty() && !after.user.eq_ignore_ascii_case("vcap") {
            return Ok(Err(unprocessable(format!(
                "user invalid (requested user '{}' not allowed, permitted users are: 'vcap')",
                after.user
            ))));
        }
    }
    if let Some(p) = &c.health_check {
        patch_check(after.health_check.get_or_insert_with(Default::default), p);
    }
    if let Some(p) = &c.readiness_health_check {
        patch_check(after.readiness_health_check.get_or_insert_with(Default::default), p);
    }
    if let Some(p) = &c.metadata {
        check!(labels::patch(p).map_err(unprocessable));
        after.metadata = Some(check!(
            labels::merged(before.metadata.as_ref(), Some(p)).map_err(unprocessable)
        ));
    }
    check!(cf::process_model(&after).map_err(unprocessable));
    after.updated_at = cx.now;
    Ok(Ok(vec![process_event(Some(before), Some(after))]))
}

pub fn scale_process<V: ViewRead>(view: &V, c: &pb::ScaleCfProcess, cx: &mut Ctx) -> Result<Decision, V::Error> {
    check!(cf::scale(c).map_err(unprocessable));
    let Some(before) = view.cf_process(&c.process_guid)? else {
        return Ok(Err(not_found(CfKind::Process)));
    };
    let mut after = before.clone();
    if let Some(n) = c.instances {
        after.instances = n;
    }
    if let Some(n) = c.memory_in_mb {
        after.memory_in_mb = n;
    }
    if let Some(n) = c.disk_in_mb {
        after.disk_in_mb = n;
    }
    if let Some(n) = c.log_rate_limit_in_bytes_per_second {
        after.log_rate_limit_in_bytes_per_second = n;
    }
    check!(cf::process_model(&after).map_err(unprocessable));
    after.updated_at = cx.now;
    let mut events = Vec::new();
    if after.instances != before.instances {
        if let Some(app) = view.cf_app(&after.app_guid)? {
            if app.state == pb::CfAppState::Started as i32 {
                check!(scale_lrp(view, &app, &after, cx, &mut events)?);
            }
        }
    }
    events.insert(0, process_event(Some(before), Some(after)));
    Ok(Ok(events))
}

/// `Instance not found` (404) for an index outside `0..instances`.
pub fn instance_not_found() -> pb::Rejection {
    reject(RejectionKind::CfNotFound, "Instance not found")
}

pub fn terminate_instance<V: ViewRead>(
    view: &V,
    c: &pb::TerminateCfInstance,
    cx: &mut Ctx,
) -> Result<Decision, V::Error> {
    let Some(p) = view.cf_process(&c.process_guid)? else {
        return Ok(Err(not_found(CfKind::Process)));
    };
    if i64::from(c.index) >= i64::from(p.instances) {
        return Ok(Err(instance_not_found()));
    }
    let retire = pb::RetireActualLrp {
        process_guid: cf::process_guid(&p),
        index: c.index,
    };
    // Diego's ResourceNotFound (stopped, or nothing at the index yet) is not an error (§1.8).
    Ok(Ok(instances::retire(view, &retire, cx)?.unwrap_or_default()))
}
