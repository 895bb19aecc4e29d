//! The decide step of apply: a command, read against the current views, becomes the events it
//! causes or a [`pb::Rejection`]. Deterministic: time and ids come from the entry's stamp.

use std::collections::BTreeMap;

use super::{freshness, ids::IdGen, lifecycle, validate};
use crate::pb;
use pb::{event::Kind as Ev, ActualLrpState, ConvergenceOpKind, RejectionKind};

/// What decide reads. Implemented by the sled views and by in-memory fakes in tests.
pub trait ViewRead {
    type Error;
    fn desired(&self, process_guid: &str) -> Result<Option<pb::DesiredLrp>, Self::Error>;
    /// Every actual of the process, in index order.
    fn actuals(&self, process_guid: &str) -> Result<Vec<pb::ActualLrp>, Self::Error>;
    fn actual(&self, process_guid: &str, index: u32) -> Result<Option<pb::ActualLrp>, Self::Error>;
    fn cell(&self, cell_id: &str) -> Result<Option<pb::Cell>, Self::Error>;
}

/// Reads through the changes an entry has already decided, so that a batch (placements,
/// reports, convergence) sees its own earlier items.
struct Overlay<'v, V> {
    view: &'v V,
    actuals: BTreeMap<(String, u32), Option<pb::ActualLrp>>,
    desired: BTreeMap<String, Option<pb::DesiredLrp>>,
    events: Vec<pb::Event>,
}

impl<'v, V: ViewRead> Overlay<'v, V> {
    fn new(view: &'v V) -> Self {
        Self {
            view,
            actuals: BTreeMap::new(),
            desired: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    fn actual(&self, guid: &str, index: u32) -> Result<Option<pb::ActualLrp>, V::Error> {
        match self.actuals.get(&(guid.to_owned(), index)) {
            Some(a) => Ok(a.clone()),
            None => self.view.actual(guid, index),
        }
    }

    fn desired(&mut self, guid: &str) -> Result<Option<pb::DesiredLrp>, V::Error> {
        if let Some(d) = self.desired.get(guid) {
            return Ok(d.clone());
        }
        let d = self.view.desired(guid)?;
        self.desired.insert(guid.to_owned(), d.clone());
        Ok(d)
    }

    fn changed(&mut self, before: pb::ActualLrp, after: pb::ActualLrp) {
        self.actuals
            .insert((after.process_guid.clone(), after.index), Some(after.clone()));
        self.events.push(ev(Ev::ActualLrpChanged(pb::ActualLrpChanged {
            before: Some(before),
            after: Some(after),
        })));
    }

    fn created(&mut self, a: pb::ActualLrp) {
        self.actuals.insert((a.process_guid.clone(), a.index), Some(a.clone()));
        self.events.push(created(a));
    }

    fn removed(&mut self, a: pb::ActualLrp) {
        self.actuals.insert((a.process_guid.clone(), a.index), None);
        self.events.push(removed(a));
    }
}

fn epoch_of(a: &pb::ActualLrp) -> &str {
    a.modification_tag.as_ref().map(|t| t.epoch.as_str()).unwrap_or("")
}

/// The events a command causes, or why it was refused.
pub type Decision = Result<Vec<pb::Event>, pb::Rejection>;

pub fn reject(kind: RejectionKind, message: impl Into<String>) -> pb::Rejection {
    pb::Rejection {
        kind: kind as i32,
        message: message.into(),
    }
}

fn ev(kind: Ev) -> pb::Event {
    pb::Event { kind: Some(kind) }
}

pub fn not_found(process_guid: &str) -> pb::Rejection {
    reject(
        RejectionKind::DesiredLrpNotFound,
        format!("Desired LRP with guid '{process_guid}' not found"),
    )
}

pub fn index_not_found(process_guid: &str, index: u32) -> pb::Rejection {
    reject(
        RejectionKind::ActualLrpIndexNotFound,
        format!("process-guid '{process_guid}' does not exist or has no instance at index {index}"),
    )
}

/// Decides one command. The outer `Result` is a read failure of the views (fatal); the inner
/// one is the business outcome.
pub fn decide<V: ViewRead>(view: &V, stamp: &pb::Stamp, command: &pb::Command) -> Result<Decision, V::Error> {
    use pb::command::Kind;
    let mut ids = IdGen::new(stamp);
    let now = stamp.time_unix_ns;
    Ok(match &command.kind {
        None => Err(reject(
            RejectionKind::UnknownCommand,
            "the entry carries no command this version knows",
        )),
        Some(Kind::DesireLrp(c)) => match &c.desired_lrp {
            None => Err(reject(RejectionKind::InvalidLrp, "invalid action type")),
            Some(d) => desire(view, d, now, &mut ids)?,
        },
        Some(Kind::UpdateDesiredLrp(c)) => {
            let update = c.update.clone().unwrap_or_default();
            match validate::update(&update) {
                Err(msg) => Err(reject(RejectionKind::InvalidRequest, msg)),
                Ok(()) => match view.desired(&c.process_guid)? {
                    None => Err(not_found(&c.process_guid)),
                    Some(before) => Ok(update_events(view, before, &update, now, &mut ids)?),
                },
            }
        }
        Some(Kind::RemoveDesiredLrp(c)) => match view.desired(&c.process_guid)? {
            None => Err(not_found(&c.process_guid)),
            Some(d) => {
                let mut events = vec![ev(Ev::DesiredLrpRemoved(pb::DesiredLrpRemoved {
                    desired_lrp: Some(d),
                }))];
                for a in view.actuals(&c.process_guid)? {
                    events.push(removed(a));
                }
                Ok(events)
            }
        },
        Some(Kind::RetireActualLrp(c)) => {
            let actuals = view.actuals(&c.process_guid)?;
            match actuals.into_iter().find(|a| a.index == c.index) {
                None => Err(index_not_found(&c.process_guid, c.index)),
                Some(a) => {
                    let mut events = vec![removed(a)];
                    // Desired state is unchanged, so the index is desired again at once.
                    if let Some(d) = view.desired(&c.process_guid)? {
                        if i64::from(c.index) < i64::from(d.instances) {
                            events.push(created(unclaimed(&d, c.index, now, &mut ids)));
                        }
                    }
                    Ok(events)
                }
            }
        }
        Some(Kind::RegisterCell(c)) => match &c.cell {
            Some(cell) if !cell.cell_id.is_empty() && cell.cell_id.len() <= super::limits::NAME_BYTES_MAX => {
                let mut cell = cell.clone();
                cell.registered_at = now;
                Ok(vec![ev(Ev::CellRegistered(pb::CellRegistered { cell: Some(cell) }))])
            }
            _ => Err(reject(RejectionKind::InvalidCell, "Invalid field: cell_id")),
        },
        Some(Kind::RemoveCell(c)) => Ok(match view.cell(&c.cell_id)? {
            None => vec![],
            Some(cell) => vec![ev(Ev::CellRemoved(pb::CellRemoved {
                cell: Some(cell),
                reason: c.reason.clone(),
            }))],
        }),
        Some(Kind::PlaceActualLrps(c)) => Ok(place(view, c, now, &mut ids)?),
        Some(Kind::ReportActualLrps(c)) => Ok(report(view, c, now)?),
        Some(Kind::ConvergeLrps(c)) => Ok(converge(view, c, now, &mut ids)?),
        Some(Kind::BumpFreshDomain(c)) => {
            if c.domain.is_empty() || c.domain.len() > super::limits::NAME_BYTES_MAX {
                Err(reject(RejectionKind::InvalidDomain, "Invalid field: domain"))
            } else {
                Ok(vec![ev(Ev::FreshDomainBumped(pb::FreshDomainBumped {
                    fresh_domain: Some(freshness::bumped(&c.domain, c.ttl_in_seconds, now)),
                }))])
            }
        }
    })
}

fn desire<V: ViewRead>(view: &V, d: &pb::DesiredLrp, now: i64, ids: &mut IdGen) -> Result<Decision, V::Error> {
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
        return update_events(view, existing, &update, now, ids).map(Ok);
    }
    let mut desired = d.clone();
    desired.modification_tag = Some(pb::ModificationTag {
        epoch: ids.next_uuid(),
        index: 0,
    });
    let mut events = Vec::with_capacity(1 + usize::try_from(desired.instances).unwrap_or(0));
    for index in 0..u32::try_from(desired.instances).unwrap_or(0) {
        events.push(created(unclaimed(&desired, index, now, ids)));
    }
    events.insert(
        0,
        ev(Ev::DesiredLrpCreated(pb::DesiredLrpCreated {
            desired_lrp: Some(desired),
        })),
    );
    Ok(Ok(events))
}

fn update_events<V: ViewRead>(
    view: &V,
    before: pb::DesiredLrp,
    update: &pb::DesiredLrpUpdate,
    now: i64,
    ids: &mut IdGen,
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
                events.push(created(unclaimed(&after, index, now, ids)));
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

/// Claims each placed instance for its cell, if it is still the UNCLAIMED instance the
/// scheduler saw and the cell is still registered; records placement failures.
fn place<V: ViewRead>(
    view: &V,
    c: &pb::PlaceActualLrps,
    now: i64,
    ids: &mut IdGen,
) -> Result<Vec<pb::Event>, V::Error> {
    let mut o = Overlay::new(view);
    for p in &c.placements {
        let Some(a) = o.actual(&p.process_guid, p.index)? else {
            continue;
        };
        if epoch_of(&a) != p.epoch || view.cell(&p.cell_id)?.is_none() {
            continue;
        }
        if a.state != ActualLrpState::Unclaimed as i32 {
            continue;
        }
        if let Ok(b) = lifecycle::claim(&a, &p.cell_id, &ids.next_uuid()) {
            o.changed(a, b);
        }
    }
    for f in &c.failures {
        let Some(a) = o.actual(&f.process_guid, f.index)? else {
            continue;
        };
        if epoch_of(&a) != f.epoch {
            continue;
        }
        if let Ok(Some(b)) = lifecycle::fail_placement(&a, &f.error, now) {
            o.changed(a, b);
        }
    }
    Ok(o.events)
}

/// A cell's reports: started instances become RUNNING, crashed ones follow the crash rules.
/// A report about an instance that has moved on (retired, re-created, re-placed) is skipped.
fn report<V: ViewRead>(view: &V, c: &pb::ReportActualLrps, now: i64) -> Result<Vec<pb::Event>, V::Error> {
    let mut o = Overlay::new(view);
    for s in &c.started {
        let Some(key) = &s.key else { continue };
        let Some(a) = o.actual(&key.process_guid, key.index)? else {
            continue;
        };
        // Only the instance the cell was given: a stale report must not revive a re-placed one.
        if a.instance_guid != key.instance_guid || a.cell_id != key.cell_id {
            continue;
        }
        if let Ok(Some(b)) = lifecycle::start(&a, key, &s.address, &s.ports, now) {
            o.changed(a, b);
        }
    }
    for cr in &c.crashed {
        let Some(key) = &cr.key else { continue };
        let Some(a) = o.actual(&key.process_guid, key.index)? else {
            continue;
        };
        let Ok(b) = lifecycle::crash(&a, key, &cr.reason, now) else {
            continue;
        };
        match o.desired(&key.process_guid)? {
            Some(d) if i64::from(a.index) < i64::from(d.instances) => o.changed(a, b),
            // No longer desired at this index: the crashed instance is simply gone.
            _ => o.removed(a),
        }
    }
    Ok(o.events)
}

/// Convergence operations, each re-checked against the current state.
fn converge<V: ViewRead>(
    view: &V,
    c: &pb::ConvergeLrps,
    now: i64,
    ids: &mut IdGen,
) -> Result<Vec<pb::Event>, V::Error> {
    let mut o = Overlay::new(view);
    for op in &c.ops {
        let current = o.actual(&op.process_guid, op.index)?;
        let kind = ConvergenceOpKind::try_from(op.kind).unwrap_or(ConvergenceOpKind::Unspecified);
        match (kind, current) {
            (ConvergenceOpKind::CreateMissing, None) => {
                if let Some(d) = o.desired(&op.process_guid)? {
                    if i64::from(op.index) < i64::from(d.instances) {
                        o.created(unclaimed(&d, op.index, now, ids));
                    }
                }
            }
            (ConvergenceOpKind::ReplaceLost, Some(a)) if epoch_of(&a) == op.epoch => {
                let on_cell = matches!(
                    ActualLrpState::try_from(a.state),
                    Ok(ActualLrpState::Claimed | ActualLrpState::Running)
                );
                if !on_cell || view.cell(&a.cell_id)?.is_some() {
                    continue;
                }
                o.removed(a);
                if let Some(d) = o.desired(&op.process_guid)? {
                    if i64::from(op.index) < i64::from(d.instances) {
                        o.created(unclaimed(&d, op.index, now, ids));
                    }
                }
            }
            (ConvergenceOpKind::Retire, Some(a)) if epoch_of(&a) == op.epoch => o.removed(a),
            (ConvergenceOpKind::RestartCrashed, Some(a)) if epoch_of(&a) == op.epoch => {
                if let Ok(b) = lifecycle::unclaim_crashed(&a, now) {
                    o.changed(a, b);
                }
            }
            _ => {}
        }
    }
    Ok(o.events)
}

/// A new UNCLAIMED instance at `index`: no instance key, no net info, a fresh epoch.
pub fn unclaimed(d: &pb::DesiredLrp, index: u32, now: i64, ids: &mut IdGen) -> pb::ActualLrp {
    pb::ActualLrp {
        process_guid: d.process_guid.clone(),
        index,
        domain: d.domain.clone(),
        state: ActualLrpState::Unclaimed as i32,
        since: now,
        modification_tag: Some(pb::ModificationTag {
            epoch: ids.next_uuid(),
            index: 0,
        }),
        ..Default::default()
    }
}

fn created(a: pb::ActualLrp) -> pb::Event {
    ev(Ev::ActualLrpCreated(pb::ActualLrpCreated { actual_lrp: Some(a) }))
}

fn removed(a: pb::ActualLrp) -> pb::Event {
    ev(Ev::ActualLrpRemoved(pb::ActualLrpRemoved { actual_lrp: Some(a) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    /// An in-memory view that folds events the way the sled views do.
    #[derive(Default)]
    struct Mem {
        desired: RefCell<BTreeMap<String, pb::DesiredLrp>>,
        actual: RefCell<BTreeMap<(String, u32), pb::ActualLrp>>,
        cells: RefCell<BTreeMap<String, pb::Cell>>,
    }

    impl ViewRead for Mem {
        type Error = Infallible;
        fn desired(&self, g: &str) -> Result<Option<pb::DesiredLrp>, Infallible> {
            Ok(self.desired.borrow().get(g).cloned())
        }
        fn actuals(&self, g: &str) -> Result<Vec<pb::ActualLrp>, Infallible> {
            Ok(self
                .actual
                .borrow()
                .values()
                .filter(|a| a.process_guid == g)
                .cloned()
                .collect())
        }
        fn actual(&self, g: &str, i: u32) -> Result<Option<pb::ActualLrp>, Infallible> {
            Ok(self.actual.borrow().get(&(g.to_string(), i)).cloned())
        }
        fn cell(&self, id: &str) -> Result<Option<pb::Cell>, Infallible> {
            Ok(self.cells.borrow().get(id).cloned())
        }
    }

    impl Mem {
        fn run(&self, seed: u64, cmd: pb::command::Kind) -> Decision {
            let stamp = pb::Stamp {
                time_unix_ns: i64::try_from(seed).unwrap_or(0) * 1000,
                id_seed_hi: seed,
                id_seed_lo: seed,
            };
            let Ok(d) = decide(self, &stamp, &pb::Command { kind: Some(cmd) });
            if let Ok(events) = &d {
                for e in events {
                    match e.kind.clone() {
                        Some(Ev::DesiredLrpCreated(c)) => {
                            let d = c.desired_lrp.unwrap_or_default();
                            self.desired.borrow_mut().insert(d.process_guid.clone(), d);
                        }
                        Some(Ev::DesiredLrpChanged(c)) => {
                            let d = c.after.unwrap_or_default();
                            self.desired.borrow_mut().insert(d.process_guid.clone(), d);
                        }
                        Some(Ev::DesiredLrpRemoved(c)) => {
                            self.desired
                                .borrow_mut()
                                .remove(&c.desired_lrp.unwrap_or_default().process_guid);
                        }
                        Some(Ev::ActualLrpCreated(c)) => {
                            let a = c.actual_lrp.unwrap_or_default();
                            self.actual.borrow_mut().insert((a.process_guid.clone(), a.index), a);
                        }
                        Some(Ev::ActualLrpRemoved(c)) => {
                            let a = c.actual_lrp.unwrap_or_default();
                            self.actual.borrow_mut().remove(&(a.process_guid.clone(), a.index));
                        }
                        Some(Ev::ActualLrpChanged(c)) => {
                            let a = c.after.unwrap_or_default();
                            self.actual.borrow_mut().insert((a.process_guid.clone(), a.index), a);
                        }
                        Some(Ev::CellRegistered(c)) => {
                            let cell = c.cell.unwrap_or_default();
                            self.cells.borrow_mut().insert(cell.cell_id.clone(), cell);
                        }
                        Some(Ev::CellRemoved(c)) => {
                            self.cells.borrow_mut().remove(&c.cell.unwrap_or_default().cell_id);
                        }
                        _ => {}
                    }
                }
            }
            d
        }
        fn indices(&self) -> Vec<u32> {
            self.actual.borrow().values().map(|a| a.index).collect()
        }
    }

    fn lrp(instances: i32) -> pb::DesiredLrp {
        pb::DesiredLrp {
            process_guid: "pg".into(),
            domain: "d".into(),
            rootfs: "preloaded:cflinuxfs4".into(),
            instances,
            action: Some(pb::Action {
                kind: Some(pb::action::Kind::Run(pb::RunAction {
                    path: "sleep".into(),
                    user: "vcap".into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }
    }

    fn desire_cmd(d: pb::DesiredLrp) -> pb::command::Kind {
        pb::command::Kind::DesireLrp(pb::DesireLrp { desired_lrp: Some(d) })
    }

    fn scale(n: i32) -> pb::command::Kind {
        pb::command::Kind::UpdateDesiredLrp(pb::UpdateDesiredLrp {
            process_guid: "pg".into(),
            update: Some(pb::DesiredLrpUpdate {
                instances: Some(n),
                ..Default::default()
            }),
        })
    }

    fn kind(d: &Decision) -> i32 {
        d.as_ref().err().map(|r| r.kind).unwrap_or(0)
    }

    #[test]
    fn desire_creates_unclaimed_instances() {
        let m = Mem::default();
        assert!(m.run(1, desire_cmd(lrp(3))).is_ok());
        assert_eq!(m.indices(), vec![0, 1, 2]);
        let a = m
            .actual
            .borrow()
            .get(&("pg".to_string(), 1))
            .cloned()
            .unwrap_or_default();
        assert_eq!(a.state, ActualLrpState::Unclaimed as i32);
        assert_eq!(a.since, 1000);
        assert!(a.instance_guid.is_empty() && a.cell_id.is_empty());
        assert_eq!(a.modification_tag.map(|t| t.index), Some(0));
        let epochs: std::collections::BTreeSet<String> = m
            .actual
            .borrow()
            .values()
            .filter_map(|a| a.modification_tag.clone().map(|t| t.epoch))
            .collect();
        assert_eq!(epochs.len(), 3, "each instance has its own epoch");
    }

    #[test]
    fn scale_up_and_down() {
        let m = Mem::default();
        let _ = m.run(1, desire_cmd(lrp(2)));
        assert!(m.run(2, scale(4)).is_ok());
        assert_eq!(m.indices(), vec![0, 1, 2, 3]);
        assert!(m.run(3, scale(1)).is_ok());
        assert_eq!(m.indices(), vec![0]);
        let tag = m
            .desired
            .borrow()
            .get("pg")
            .and_then(|d| d.modification_tag.clone())
            .unwrap_or_default();
        assert_eq!(tag.index, 2);
    }

    #[test]
    fn duplicate_create_with_same_immutables_updates_else_conflicts() {
        let m = Mem::default();
        let _ = m.run(1, desire_cmd(lrp(1)));
        assert!(m.run(2, desire_cmd(lrp(2))).is_ok());
        assert_eq!(m.indices(), vec![0, 1]);
        let mut other = lrp(2);
        other.rootfs = "preloaded:other".into();
        other.memory_mb = 5;
        let d = m.run(3, desire_cmd(other));
        assert_eq!(kind(&d), RejectionKind::DesiredLrpAlreadyExists as i32);
        assert!(d
            .err()
            .map(|r| r.message)
            .unwrap_or_default()
            .ends_with("differ: rootfs, memory_mb"));
    }

    #[test]
    fn kill_replaces_the_instance_with_a_new_epoch() {
        let m = Mem::default();
        let _ = m.run(1, desire_cmd(lrp(2)));
        let before = m
            .actual
            .borrow()
            .get(&("pg".to_string(), 1))
            .cloned()
            .unwrap_or_default();
        let kill = pb::command::Kind::RetireActualLrp(pb::RetireActualLrp {
            process_guid: "pg".into(),
            index: 1,
        });
        assert!(m.run(2, kill.clone()).is_ok());
        let after = m
            .actual
            .borrow()
            .get(&("pg".to_string(), 1))
            .cloned()
            .unwrap_or_default();
        assert_ne!(before.modification_tag, after.modification_tag);
        assert_eq!(after.since, 2000);
        let missing = pb::command::Kind::RetireActualLrp(pb::RetireActualLrp {
            process_guid: "pg".into(),
            index: 9,
        });
        assert_eq!(kind(&m.run(3, missing)), RejectionKind::ActualLrpIndexNotFound as i32);
    }

    #[test]
    fn delete_removes_everything_and_unknown_is_not_found() {
        let m = Mem::default();
        let _ = m.run(1, desire_cmd(lrp(3)));
        let rm = pb::command::Kind::RemoveDesiredLrp(pb::RemoveDesiredLrp {
            process_guid: "pg".into(),
        });
        assert!(m.run(2, rm.clone()).is_ok());
        assert!(m.indices().is_empty());
        assert_eq!(kind(&m.run(3, rm)), RejectionKind::DesiredLrpNotFound as i32);
        assert_eq!(kind(&m.run(4, scale(1))), RejectionKind::DesiredLrpNotFound as i32);
    }

    #[test]
    fn invalid_input_is_rejected_without_events() {
        let m = Mem::default();
        let mut bad = lrp(1);
        bad.rootfs = String::new();
        assert_eq!(kind(&m.run(1, desire_cmd(bad))), RejectionKind::InvalidLrp as i32);
        let _ = m.run(2, desire_cmd(lrp(1)));
        assert_eq!(kind(&m.run(3, scale(-1))), RejectionKind::InvalidRequest as i32);
        assert_eq!(m.indices(), vec![0]);
    }

    fn at(m: &Mem, i: u32) -> pb::ActualLrp {
        m.actual
            .borrow()
            .get(&("pg".to_string(), i))
            .cloned()
            .unwrap_or_default()
    }

    fn register(m: &Mem, id: &str) {
        let cell = pb::Cell {
            cell_id: id.into(),
            ..Default::default()
        };
        assert!(m
            .run(
                100,
                pb::command::Kind::RegisterCell(pb::RegisterCell { cell: Some(cell) })
            )
            .is_ok());
    }

    fn placement(m: &Mem, i: u32, cell: &str) -> pb::Placement {
        pb::Placement {
            process_guid: "pg".into(),
            index: i,
            epoch: at(m, i).modification_tag.map(|t| t.epoch).unwrap_or_default(),
            cell_id: cell.into(),
        }
    }

    fn key_of(a: &pb::ActualLrp) -> pb::ActualLrpKey {
        pb::ActualLrpKey {
            process_guid: a.process_guid.clone(),
            index: a.index,
            instance_guid: a.instance_guid.clone(),
            cell_id: a.cell_id.clone(),
        }
    }

    #[test]
    fn placement_claims_only_the_instance_seen_on_a_registered_cell() {
        let m = Mem::default();
        let _ = m.run(1, desire_cmd(lrp(2)));
        register(&m, "c1");
        let stale = pb::Placement {
            epoch: "not-the-epoch".into(),
            ..placement(&m, 1, "c1")
        };
        let place = pb::PlaceActualLrps {
            placements: vec![placement(&m, 0, "c1"), stale, placement(&m, 1, "nope")],
            failures: vec![],
        };
        assert!(m.run(2, pb::command::Kind::PlaceActualLrps(place)).is_ok());
        let a0 = at(&m, 0);
        assert_eq!((a0.state, a0.cell_id.as_str()), (ActualLrpState::Claimed as i32, "c1"));
        assert!(!a0.instance_guid.is_empty());
        assert_eq!(at(&m, 1).state, ActualLrpState::Unclaimed as i32);
    }

    #[test]
    fn reports_start_and_crash_through_the_lifecycle() {
        let m = Mem::default();
        let _ = m.run(1, desire_cmd(lrp(1)));
        register(&m, "c1");
        let place = pb::PlaceActualLrps {
            placements: vec![placement(&m, 0, "c1")],
            failures: vec![],
        };
        let _ = m.run(2, pb::command::Kind::PlaceActualLrps(place));
        let claimed = at(&m, 0);
        let started = pb::ReportActualLrps {
            started: vec![pb::StartedActualLrp {
                key: Some(key_of(&claimed)),
                address: "127.0.0.1".into(),
                ports: vec![pb::PortMapping {
                    container_port: 8080,
                    host_port: 61000,
                }],
            }],
            crashed: vec![],
        };
        let _ = m.run(3, pb::command::Kind::ReportActualLrps(started.clone()));
        let running = at(&m, 0);
        assert_eq!((running.state, running.since), (ActualLrpState::Running as i32, 3000));
        let crashed = pb::ReportActualLrps {
            started: vec![],
            crashed: vec![pb::CrashedActualLrp {
                key: Some(key_of(&running)),
                reason: "exit status 1".into(),
            }],
        };
        let _ = m.run(4, pb::command::Kind::ReportActualLrps(crashed));
        let restarted = at(&m, 0);
        assert_eq!(
            (restarted.state, restarted.crash_count),
            (ActualLrpState::Unclaimed as i32, 1)
        );
        // A late "started" for the old instance does not revive it.
        let _ = m.run(5, pb::command::Kind::ReportActualLrps(started));
        assert_eq!(at(&m, 0).state, ActualLrpState::Unclaimed as i32);
    }

    #[test]
    fn convergence_ops_are_rechecked() {
        let m = Mem::default();
        let _ = m.run(1, desire_cmd(lrp(2)));
        register(&m, "c1");
        let place = pb::PlaceActualLrps {
            placements: vec![placement(&m, 0, "c1")],
            failures: vec![],
        };
        let _ = m.run(2, pb::command::Kind::PlaceActualLrps(place));
        let a0 = at(&m, 0);
        let epoch = a0.modification_tag.clone().map(|t| t.epoch).unwrap_or_default();
        let lost = |e: &str| pb::ConvergenceOp {
            kind: ConvergenceOpKind::ReplaceLost as i32,
            process_guid: "pg".into(),
            index: 0,
            epoch: e.into(),
        };
        // The cell is still registered: not lost, nothing happens.
        let _ = m.run(
            3,
            pb::command::Kind::ConvergeLrps(pb::ConvergeLrps {
                ops: vec![lost(&epoch)],
            }),
        );
        assert_eq!(at(&m, 0), a0);
        let _ = m.run(
            4,
            pb::command::Kind::RemoveCell(pb::RemoveCell {
                cell_id: "c1".into(),
                reason: "ttl".into(),
            }),
        );
        let _ = m.run(
            5,
            pb::command::Kind::ConvergeLrps(pb::ConvergeLrps {
                ops: vec![lost(&epoch)],
            }),
        );
        let replaced = at(&m, 0);
        assert_eq!(replaced.state, ActualLrpState::Unclaimed as i32);
        assert_ne!(replaced.modification_tag.map(|t| t.epoch), Some(epoch));
    }
}
