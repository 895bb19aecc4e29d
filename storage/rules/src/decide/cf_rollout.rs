//! A rolling restart of a started app's processes (`POST /v3/apps/:guid/actions/restart`): each
//! process gets a new version — new containers, with the app's current environment variables —
//! started one index at a time while the old version gives one up, so the app keeps as many
//! instances as it had (CC's rolling deployment with `max_in_flight` 1):
//!
//! 1. `restart`: the process's `previous_version` is the version that runs; the new version's
//!    DesiredLRP starts with one instance (a process with none is replaced at once).
//! 2. `step` (proposed by the leader when [`due`] says so): when every instance the new version
//!    has is RUNNING, it gets one more and the old version keeps `instances - running`; when the
//!    new version runs them all, the old DesiredLRP goes and `previous_version` is cleared.
//!
//! A rollout whose new instances never run leaves the old version running (CC: a deployment that
//! does not become healthy does not take the old instances down). Stopping or deleting the app
//! removes both versions; a restart during a rollout replaces the new version again and gives the
//! old one back its instances.

use super::cf::{app_event, check, desire_process, not_found, process_event, processes_of, stop_process};
use super::{lrp, Ctx, Decision, ViewRead};
use crate::cf;
use crate::pb;
use pb::CfKind;

/// Sets a DesiredLRP's instance count (a CF-owned one: not through Receptor's rules).
fn scale<V: ViewRead>(
    view: &V,
    process_guid: String,
    instances: i32,
    cx: &mut Ctx,
    events: &mut Vec<pb::Event>,
) -> Result<(), V::Error> {
    let update = pb::UpdateDesiredLrp {
        process_guid,
        update: Some(pb::DesiredLrpUpdate {
            instances: Some(instances),
            ..Default::default()
        }),
    };
    if let Ok(mut e) = lrp::update(view, &update, cx)? {
        events.append(&mut e);
    }
    Ok(())
}

/// `SetCfAppState` with `restart`: a started app's processes each start a rolling restart; a
/// stopped app just starts (`cf::set_app_state`).
pub fn restart_app<V: ViewRead>(view: &V, c: &pb::SetCfAppState, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let app = match view.cf_app(&c.app_guid)? {
        Some(app) if c.started && app.state == pb::CfAppState::Started as i32 => app,
        _ => return super::cf::set_app_state(view, c, cx),
    };
    let mut events = Vec::new();
    for p in processes_of(view, &app.guid)? {
        check!(restart(view, &app, p, cx, &mut events)?);
    }
    events.insert(0, app_event(Some(app.clone()), Some(app)));
    Ok(Ok(events))
}

/// Starts a rolling restart of one process of a started app.
fn restart<V: ViewRead>(
    view: &V,
    app: &pb::CfApp,
    p: pb::CfProcess,
    cx: &mut Ctx,
    events: &mut Vec<pb::Event>,
) -> Result<Result<(), pb::Rejection>, V::Error> {
    let mut q = p.clone();
    match cf::previous_process_guid(&p) {
        // A rollout under way: its new version goes, the old one runs every instance again.
        Some(old) => {
            if let Ok(mut e) = lrp::remove(
                view,
                &pb::RemoveDesiredLrp {
                    process_guid: cf::process_guid(&p),
                },
            )? {
                events.append(&mut e);
            }
            scale(view, old, p.instances, cx, events)?;
        }
        None => q.previous_version = p.version.clone(),
    }
    q.version = cx.ids.next_uuid();
    q.updated_at = cx.now;
    if q.instances == 0 {
        // nothing runs, nothing to roll: the new version replaces the old at once
        stop_process(view, &p, events)?;
        q.previous_version.clear();
        check!(desire_process(view, app, &q, cx, events)?);
    } else {
        let first = pb::CfProcess {
            instances: 1,
            ..q.clone()
        };
        check!(desire_process(view, app, &first, cx, events)?);
    }
    events.push(process_event(Some(p), Some(q)));
    Ok(Ok(()))
}

/// Whether a step of `p`'s rollout is due: one of its two versions is gone (the app stopped), or
/// every instance the new version has is RUNNING.
pub fn due<V: ViewRead>(view: &V, p: &pb::CfProcess) -> Result<bool, V::Error> {
    let Some(old) = cf::previous_process_guid(p) else {
        return Ok(false);
    };
    let new = cf::process_guid(p);
    let (Some(desired), Some(_)) = (view.desired(&new)?, view.desired(&old)?) else {
        return Ok(true);
    };
    Ok(running(view, &new, desired.instances)? >= desired.instances)
}

/// The RUNNING instances of a DesiredLRP below `instances`.
fn running<V: ViewRead>(view: &V, process_guid: &str, instances: i32) -> Result<i32, V::Error> {
    let n = view
        .actuals(process_guid)?
        .iter()
        .filter(|a| a.state == pb::ActualLrpState::Running as i32 && i64::from(a.index) < i64::from(instances))
        .count();
    Ok(i32::try_from(n).unwrap_or(i32::MAX))
}

pub fn step<V: ViewRead>(view: &V, c: &pb::StepCfRollout, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let Some(p) = view.cf_process(&c.process_guid)? else {
        return Ok(Err(not_found(CfKind::Process)));
    };
    let Some(old) = cf::previous_process_guid(&p) else {
        return Ok(Ok(vec![]));
    };
    if !due(view, &p)? {
        return Ok(Ok(vec![]));
    }
    let new = cf::process_guid(&p);
    let mut events = Vec::new();
    let both = (view.desired(&new)?, view.desired(&old)?);
    if let (Some(desired), Some(previous)) = both {
        let running = running(view, &new, desired.instances)?;
        if running < p.instances {
            // one more new instance; the old version keeps what the new one does not run yet
            scale(view, new, (desired.instances + 1).min(p.instances), cx, &mut events)?;
            let keep = (p.instances - running).max(0);
            if keep < previous.instances {
                scale(view, old, keep, cx, &mut events)?;
            }
            return Ok(Ok(events));
        }
    }
    // done (or one version is gone): the old version goes, the process is whole again
    if let Ok(mut e) = lrp::remove(view, &pb::RemoveDesiredLrp { process_guid: old })? {
        events.append(&mut e);
    }
    let mut q = p.clone();
    q.previous_version.clear();
    q.updated_at = cx.now;
    events.push(process_event(Some(p), Some(q)));
    Ok(Ok(events))
}
