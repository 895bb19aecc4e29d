//! CF reads from the views: lists (CF's query parsed, the kind's time index walked, every match
//! counted and only the page kept), a process by guid or app + type, and its instances as stats
//! report them.

use std::collections::BTreeMap;

use capstan_proto::pb::{self, CfKind};
use capstan_storage::rules::cf::{
    self as rules,
    query::{self, ListKind, ListQuery, OrderBy, Row},
};
use capstan_storage::views::CfRow;
use capstan_storage::Views;
use tonic::Status;

use super::access::Access;
use super::{bad_query, kind_of, not_found, unprocessable, COMMAND_HIDDEN_IN_LISTS};
use crate::errors;

/// One page of rows of a kind: every match is counted, only the page is kept.
pub(super) fn page_of<T: CfRow + Clone + 'static>(
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

pub(super) fn labels_of(m: &Option<pb::CfMetadata>) -> Option<&BTreeMap<String, String>> {
    m.as_ref().map(|m| &m.labels)
}

pub(super) fn list(views: &Views, r: &pb::ListCfRequest, access: &Access) -> Result<pb::CfListPage, Status> {
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
            )?;
            // environment variables are never listed (secrets: `GetAppEnvironment` only)
            for a in &mut page.apps {
                a.environment_variables.clear();
            }
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
pub(super) fn instance_stats(
    views: &Views,
    p: &pb::CfProcess,
    now: i64,
) -> Result<(Vec<pb::CfInstanceStats>, Vec<pb::ActualLrp>), Status> {
    let lrp = rules::process_guid(p);
    let desired = views.get_desired(&lrp).map_err(errors::storage)?;
    let of = |guid: &str| -> Result<Vec<pb::ActualLrp>, Status> {
        views
            .actual_lrps(None, Some(guid))
            .collect::<Result<_, _>>()
            .map_err(errors::storage)
    };
    let mut actuals = of(&lrp)?;
    // During a rolling restart the old version still serves: each index the new version does
    // not run yet shows one of the old version's RUNNING instances, so the process reads as the
    // instances that answer.
    if let Some(previous) = rules::previous_process_guid(p) {
        let running = |a: &pb::ActualLrp| a.state == pb::ActualLrpState::Running as i32;
        let mut old = of(&previous)?.into_iter().filter(running);
        for index in 0..u32::try_from(p.instances).unwrap_or(0) {
            let slot = actuals.iter().position(|a| a.index == index);
            if slot.is_some_and(|i| running(&actuals[i])) {
                continue;
            }
            let Some(serving) = old.next() else { break };
            let shown = pb::ActualLrp { index, ..serving };
            match slot {
                Some(i) => actuals[i] = shown,
                None => actuals.push(shown),
            }
        }
    }
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
pub(super) fn resolve(views: &Views, r: &pb::CfProcessRef) -> Result<pb::CfProcess, Status> {
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

/// A process the caller sees (404 as CF answers for one it does not).
pub(super) fn resolve_seen(views: &Views, r: &pb::CfProcessRef, access: &Access) -> Result<pb::CfProcess, Status> {
    let p = resolve(views, r)?;
    if access.sees_space(&p.space_guid) {
        Ok(p)
    } else if r.guid.is_empty() && !r.app_guid.is_empty() {
        Err(not_found(CfKind::App))
    } else {
        Err(not_found(CfKind::Process))
    }
}
