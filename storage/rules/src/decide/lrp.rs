//! DesiredLRP commands: desire (create, or update through a re-POST), update, remove.

use super::events::{created, ev, removed, unclaimed};
use super::{reject, Ctx, Decision, ViewRead};
use crate::pb;
use crate::validate;
use pb::{event::Kind as Ev, RejectionKind};

pub fn not_found(process_guid: &str) -> pb::Rejection {
    reject(
        RejectionKind::DesiredLrpNotFound,
        format!("Desired LRP with guid '{process_guid}' not found"),
    )
}

/// The CF process whose DesiredLRP `process_guid` is (`<process guid>-<version>`, or the version a
/// rolling restart is replacing), if any: the
/// CF family owns that LRP and its name, so Receptor's writes to it are refused (the two families
/// must never disagree about one process). Whether the LRP exists right now does not matter.
pub fn cf_owner<V: ViewRead>(view: &V, process_guid: &str) -> Result<Option<pb::CfProcess>, V::Error> {
    // The version is a UUID (36 characters, dashes inside) as CF stamps it; a short one (tests'
    // `v1`) is what follows the last dash.
    const UUID_CHARS: usize = 36;
    let uuid_split = process_guid
        .len()
        .checked_sub(UUID_CHARS + 1)
        .filter(|at| process_guid.get(*at..=*at) == Some("-"))
        .and_then(|at| process_guid.get(..at));
    let last_dash = process_guid.rsplit_once('-').map(|(guid, _)| guid);
    for guid in [uuid_split, last_dash].into_iter().flatten() {
        if let Some(p) = view.cf_process(guid)? {
            let previous = crate::cf::previous_process_guid(&p);
            if crate::cf::process_guid(&p) == process_guid || previous.as_deref() == Some(process_guid) {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}

/// A Receptor write to `process_guid`, decided by `then` unless CF owns that LRP ([`cf_owner`]).
pub fn unless_cf_owned<V: ViewRead>(
    view: &V,
    process_guid: &str,
    then: impl FnOnce() -> Result<Decision, V::Error>,
) -> Result<Decision, V::Error> {
    let Some(p) = cf_owner(view, process_guid)? else {
        return then();
    };
    let app = view.cf_app(&p.app_guid)?.map(|a| a.name).unwrap_or_default();
    Ok(Err(reject(
        RejectionKind::OwnedByCf,
        format!(
            "Desired LRP '{process_guid}' runs the {} process {} of the CF app '{app}' ({}): \
             it is changed through the CF API (/v3), not through Receptor",
            p.r#type, p.guid, p.app_guid
        ),
    )))
}

/// Creates a DesiredLRP with its UNCLAIMED instances; a re-POST with the same immutable fields
/// is an update (DECISIONS: "POST of an existing process_guid").
pub fn desire<V: ViewRead>(view: &V, c: &pb::DesireLrp, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let Some(d) = &c.desired_lrp else {
        return Ok(Err(reject(RejectionKind::InvalidLrp, "invalid action type")));
    };
    if let Err(msg) = validate::desired_lrp(d) {
        return Ok(Err(reject(RejectionKind::InvalidLrp, msg)));
    }
    if let Some(existing) = view.desired(&d.process_guid)? {
        let differing = immutable_differences(&existing, d);
        if !differing.is_empty() {
            return Ok(Err(reject(
                RejectionKind::DesiredLrpAlreadyExists,
                format!(
                    "Desired LRP with guid '{}' already exists; fields that may not change differ: {}",
                    d.process_guid,
                    differing.join(", ")
                ),
            )));
        }
        let update = pb::DesiredLrpUpdate {
            instances: Some(d.instances),
            has_routes: true,
            routes: d.routes.clone(),
            annotation: Some(d.annotation.clone()),
        };
        return update_events(view, existing, &update, cx).map(Ok);
    }
    let mut desired = d.clone();
    desired.modification_tag = Some(pb::ModificationTag {
        epoch: cx.ids.next_uuid(),
        index: 0,
    });
    let mut events = Vec::with_capacity(1 + usize::try_from(desired.instances).unwrap_or(0));
    for index in 0..u32::try_from(desired.instances).unwrap_or(0) {
        events.push(created(unclaimed(&desired, index, cx.now, &mut cx.ids)));
    }
    events.insert(
        0,
        ev(Ev::DesiredLrpCreated(pb::DesiredLrpCreated {
            desired_lrp: Some(desired),
        })),
    );
    Ok(Ok(events))
}

pub fn update<V: ViewRead>(view: &V, c: &pb::UpdateDesiredLrp, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let update = c.update.clone().unwrap_or_default();
    if let Err(msg) = validate::update(&update) {
        return Ok(Err(reject(RejectionKind::InvalidRequest, msg)));
    }
    match view.desired(&c.process_guid)? {
        None => Ok(Err(not_found(&c.process_guid))),
        Some(before) => update_events(view, before, &update, cx).map(Ok),
    }
}

/// Removes the DesiredLRP and every one of its instances, in one entry.
pub fn remove<V: ViewRead>(view: &V, c: &pb::RemoveDesiredLrp) -> Result<Decision, V::Error> {
    let Some(d) = view.desired(&c.process_guid)? else {
        return Ok(Err(not_found(&c.process_guid)));
    };
    let mut events = vec![ev(Ev::DesiredLrpRemoved(pb::DesiredLrpRemoved {
        desired_lrp: Some(d),
    }))];
    for a in view.actuals(&c.process_guid)? {
        events.push(removed(a));
    }
    Ok(Ok(events))
}

fn update_events<V: ViewRead>(
    view: &V,
    before: pb::DesiredLrp,
    update: &pb::DesiredLrpUpdate,
    cx: &mut Ctx,
) -> Result<Vec<pb::Event>, V::Error> {
    let mut after = before.clone();
    if let Some(n) = update.instances {
        after.instances = n;
    }
    if update.has_routes {
        after.routes = update.routes.clone();
    }
    if let Some(a) = &update.annotation {
        after.annotation = a.clone();
    }
    let tag = after.modification_tag.get_or_insert_with(Default::default);
    tag.index = tag.index.saturating_add(1);

    let mut events = vec![ev(Ev::DesiredLrpChanged(pb::DesiredLrpChanged {
        before: Some(before.clone()),
        after: Some(after.clone()),
    }))];
    if after.instances != before.instances {
        let actuals = view.actuals(&after.process_guid)?;
        let wanted = u32::try_from(after.instances).unwrap_or(0);
        // Scale down: retire every index ≥ N, whatever the freshness (an explicit API action).
        for a in actuals.iter().filter(|a| a.index >= wanted) {
            events.push(removed(a.clone()));
        }
        // Scale up: create the missing indices < N.
        for index in 0..wanted {
            if !actuals.iter().any(|a| a.index == index) {
                events.push(created(unclaimed(&after, index, cx.now, &mut cx.ids)));
            }
        }
    }
    Ok(events)
}

/// The names of the fields outside DesiredLRPUpdateRequest that differ.
fn immutable_differences(a: &pb::DesiredLrp, b: &pb::DesiredLrp) -> Vec<&'static str> {
    let checks = [
        ("domain", a.domain == b.domain),
        ("rootfs", a.rootfs == b.rootfs),
        ("env", a.env == b.env),
        ("setup", a.setup == b.setup),
        ("action", a.action == b.action),
        ("monitor", a.monitor == b.monitor),
        ("start_timeout", a.start_timeout == b.start_timeout),
        ("disk_mb", a.disk_mb == b.disk_mb),
        ("memory_mb", a.memory_mb == b.memory_mb),
        ("cpu_weight", a.cpu_weight == b.cpu_weight),
        ("privileged", a.privileged == b.privileged),
        ("ports", a.ports == b.ports),
        ("log_guid", a.log_guid == b.log_guid),
        ("log_source", a.log_source == b.log_source),
        ("metrics_guid", a.metrics_guid == b.metrics_guid),
        ("egress_rules", a.egress_rules == b.egress_rules),
    ];
    checks
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(name, _)| name)
        .collect()
}
