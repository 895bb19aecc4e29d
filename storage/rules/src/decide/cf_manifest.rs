//! CF's `apply_manifest`: the named apps of a space created or updated with their processes and
//! environment variables (merged; a new value reaches containers when they are next replaced); a
//! started app's processes whose containers changed get a new version (their DesiredLRPs are
//! replaced), instance changes reach the DesiredLRP at once; a job records it.

use super::cf::{
    app_event, check, desire_process, job, new_app, new_process, not_found, process_event, processes_of, scale_lrp,
    stop_process, unprocessable,
};
use super::{Ctx, Decision, ViewRead};
use crate::cf;
use crate::pb;
use pb::CfKind;

/// The process after a manifest's fields: whether its containers must be replaced (a new version).
fn manifest_process(p: &pb::CfProcess, m: &pb::CfManifestProcess, now: i64) -> (pb::CfProcess, bool) {
    let mut q = p.clone();
    if let Some(c) = &m.command {
        q.command = c.clone();
    }
    if let Some(n) = m.instances {
        q.instances = n;
    }
    if let Some(n) = m.memory_in_mb {
        q.memory_in_mb = n;
    }
    if let Some(n) = m.disk_in_mb {
        q.disk_in_mb = n;
    }
    let hc = q
        .health_check
        .get_or_insert_with(|| cf::default_health_check(&p.r#type));
    if let Some(t) = &m.health_check_type {
        hc.r#type = if t == "none" { "process".into() } else { t.clone() };
        if hc.r#type != "http" {
            hc.endpoint.clear();
        }
    }
    if let Some(e) = &m.health_check_http_endpoint {
        hc.endpoint = e.clone();
    }
    if m.timeout.is_some() {
        hc.timeout = m.timeout;
    }
    if m.health_check_invocation_timeout.is_some() {
        hc.invocation_timeout = m.health_check_invocation_timeout;
    }
    let container_changed = q.command != p.command
        || q.memory_in_mb != p.memory_in_mb
        || q.disk_in_mb != p.disk_in_mb
        || q.health_check != p.health_check;
    if q != *p {
        q.updated_at = now;
    }
    (q, container_changed)
}

pub fn apply<V: ViewRead>(view: &V, c: &pb::ApplyCfManifest, cx: &mut Ctx) -> Result<Decision, V::Error> {
    if view.cf_space(&c.space_guid)?.is_none() {
        return Ok(Err(not_found(CfKind::Space)));
    }
    let mut events = Vec::new();
    for m in &c.applications {
        let image = m.docker_image.clone().unwrap_or_default();
        let (app, mut processes, created) = match view.cf_named(CfKind::App, &c.space_guid, &m.name)? {
            Some(guid) => match view.cf_app(&guid)? {
                Some(app) => {
                    let processes = processes_of(view, &app.guid)?;
                    (app, processes, false)
                }
                None => return Ok(Err(not_found(CfKind::App))),
            },
            None => {
                let (app, web) = check!(new_app(view, &c.space_guid, &m.name, &image, None, cx)?);
                (app, vec![web], true)
            }
        };
        let mut after = app.clone();
        let broken = cf::env_names("Env", m.env.keys().chain(&m.env_removed).map(String::as_str));
        if !broken.is_empty() {
            return Ok(Err(unprocessable(format!(
                "For application '{}': {}",
                m.name,
                broken.join(", ")
            ))));
        }
        // A manifest's env merges into the app's; it reaches containers on their next start.
        after.environment_variables = cf::env_merged(&app.environment_variables, &m.env, &m.env_removed);
        if after.environment_variables != app.environment_variables {
            after.updated_at = cx.now;
        }
        if m.docker_image.is_some() && after.docker_image != image {
            after.docker_image = image;
            after.updated_at = cx.now;
        }
        let started = after.state == pb::CfAppState::Started as i32;
        let image_changed = after.docker_image != app.docker_image;
        for mp in &m.processes {
            if !processes.iter().any(|p| p.r#type == mp.r#type) {
                let p = new_process(&after, &mp.r#type, cx);
                processes.push(p);
            }
        }
        events.push(app_event((!created).then(|| app.clone()), Some(after.clone())));
        let known = if created {
            Vec::new()
        } else {
            processes_of(view, &app.guid)?
        };
        for p in processes {
            let before = known.iter().find(|k| k.guid == p.guid).cloned();
            let (mut q, container_changed) = match m.processes.iter().find(|mp| mp.r#type == p.r#type) {
                Some(mp) => manifest_process(&p, mp, cx.now),
                None => (p.clone(), false),
            };
            check!(cf::process_model(&q).map_err(unprocessable));
            if started && (container_changed || image_changed) {
                // New containers: the old DesiredLRP goes, the new version's is desired.
                stop_process(view, &p, &mut events)?;
                q.version = cx.ids.next_uuid();
                check!(desire_process(view, &after, &q, cx, &mut events)?);
            } else if started && q.instances != p.instances {
                check!(scale_lrp(view, &after, &q, cx, &mut events)?);
            }
            if before.as_ref() != Some(&q) {
                events.push(process_event(before, Some(q)));
            }
        }
    }
    events.push(job(cx, "space.apply_manifest", "spaces", &c.space_guid));
    Ok(Ok(events))
}
