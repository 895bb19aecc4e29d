//! The in-memory view the decide tests run against: it folds events the way the sled views do.

use super::*;
use pb::event::Kind as Ev;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::convert::Infallible;

/// An in-memory view that folds events the way the sled views do.
#[derive(Default)]
pub(super) struct Mem {
    pub(super) desired: RefCell<BTreeMap<String, pb::DesiredLrp>>,
    pub(super) actual: RefCell<BTreeMap<(String, u32), pb::ActualLrp>>,
    pub(super) cells: RefCell<BTreeMap<String, pb::Cell>>,
    pub(super) defs: RefCell<BTreeMap<String, pb::TaskDefinition>>,
    pub(super) runs: RefCell<BTreeMap<String, pb::TaskRun>>,
    pub(super) revoked: RefCell<BTreeMap<String, pb::TokenRevocation>>,
    pub(super) cf: RefCell<BTreeMap<String, pb::cf_resource::Kind>>,
}

/// The (kind, parent, name) of a stored CF resource.
pub(super) fn cf_key(r: &pb::cf_resource::Kind) -> (pb::CfKind, String, String) {
    use pb::cf_resource::Kind as R;
    match r {
        R::Organization(o) => (pb::CfKind::Organization, String::new(), o.name.clone()),
        R::Space(s) => (pb::CfKind::Space, s.organization_guid.clone(), s.name.clone()),
        R::App(a) => (pb::CfKind::App, a.space_guid.clone(), a.name.clone()),
        R::Process(p) => (pb::CfKind::Process, p.app_guid.clone(), p.r#type.clone()),
    }
}

impl ViewRead for Mem {
    type Error = Infallible;
    fn cf_organization(&self, g: &str) -> Result<Option<pb::CfOrganization>, Infallible> {
        Ok(match self.cf.borrow().get(g) {
            Some(pb::cf_resource::Kind::Organization(o)) => Some(o.clone()),
            _ => None,
        })
    }
    fn cf_space(&self, g: &str) -> Result<Option<pb::CfSpace>, Infallible> {
        Ok(match self.cf.borrow().get(g) {
            Some(pb::cf_resource::Kind::Space(o)) => Some(o.clone()),
            _ => None,
        })
    }
    fn cf_app(&self, g: &str) -> Result<Option<pb::CfApp>, Infallible> {
        Ok(match self.cf.borrow().get(g) {
            Some(pb::cf_resource::Kind::App(o)) => Some(o.clone()),
            _ => None,
        })
    }
    fn cf_process(&self, g: &str) -> Result<Option<pb::CfProcess>, Infallible> {
        Ok(match self.cf.borrow().get(g) {
            Some(pb::cf_resource::Kind::Process(o)) => Some(o.clone()),
            _ => None,
        })
    }
    fn cf_named(&self, kind: pb::CfKind, parent: &str, name: &str) -> Result<Option<String>, Infallible> {
        Ok(self
            .cf
            .borrow()
            .iter()
            .find(|(_, r)| cf_key(r) == (kind, parent.to_string(), name.to_string()))
            .map(|(g, _)| g.clone()))
    }
    fn cf_children(&self, parent: &str) -> Result<Vec<(pb::CfKind, String)>, Infallible> {
        Ok(self
            .cf
            .borrow()
            .iter()
            .filter(|(_, r)| cf_key(r).1 == parent && !parent.is_empty())
            .map(|(g, r)| (cf_key(r).0, g.clone()))
            .collect())
    }
    fn token_revocation(&self, jti: &str) -> Result<Option<pb::TokenRevocation>, Infallible> {
        Ok(self.revoked.borrow().get(jti).cloned())
    }
    fn token_revocations_expired(&self, now_ns: i64, max: usize) -> Result<Vec<pb::TokenRevocation>, Infallible> {
        let mut v: Vec<pb::TokenRevocation> = self
            .revoked
            .borrow()
            .values()
            .filter(|r| r.expires_at_ns <= now_ns)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.expires_at_ns, &a.jti).cmp(&(b.expires_at_ns, &b.jti)));
        v.truncate(max);
        Ok(v)
    }
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
    fn task_definition(&self, id: &str) -> Result<Option<pb::TaskDefinition>, Infallible> {
        Ok(self.defs.borrow().get(id).cloned())
    }
    fn task_definition_by_alias(&self, alias: &str) -> Result<Option<String>, Infallible> {
        Ok(self
            .defs
            .borrow()
            .values()
            .find(|d| d.alias == alias)
            .map(|d| d.definition_id.clone()))
    }
    fn cells(&self) -> Result<Vec<pb::Cell>, Infallible> {
        Ok(self.cells.borrow().values().cloned().collect())
    }
    fn task_run(&self, run_id: &str) -> Result<Option<pb::TaskRun>, Infallible> {
        Ok(self.runs.borrow().get(run_id).cloned())
    }
    fn task_runs_on_cell(&self, cell_id: &str) -> Result<Vec<pb::TaskRun>, Infallible> {
        let on = |r: &pb::TaskRun| {
            r.cell_id == cell_id
                && matches!(
                    pb::TaskRunStatus::try_from(r.status),
                    Ok(pb::TaskRunStatus::Pending | pb::TaskRunStatus::Running)
                )
        };
        Ok(self.runs.borrow().values().filter(|r| on(r)).cloned().collect())
    }
}

impl Mem {
    pub(super) fn run(&self, seed: u64, cmd: pb::command::Kind) -> Decision {
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
                    Some(Ev::TaskDefinitionCreated(pb::TaskDefinitionCreated { definition: Some(d) }))
                    | Some(Ev::TaskDefinitionChanged(pb::TaskDefinitionChanged { after: Some(d), .. })) => {
                        self.defs.borrow_mut().insert(d.definition_id.clone(), d);
                    }
                    Some(Ev::TaskDefinitionDeleted(pb::TaskDefinitionDeleted { definition: Some(d) })) => {
                        self.defs.borrow_mut().remove(&d.definition_id);
                    }
                    Some(Ev::CellRemoved(c)) => {
                        self.cells.borrow_mut().remove(&c.cell.unwrap_or_default().cell_id);
                    }
                    Some(Ev::TaskRunQueued(pb::TaskRunQueued { run: Some(r) }))
                    | Some(Ev::TaskRunChanged(pb::TaskRunChanged { after: Some(r), .. })) => {
                        self.runs.borrow_mut().insert(r.run_id.clone(), r);
                    }
                    Some(Ev::TaskRunRemoved(pb::TaskRunRemoved { run: Some(r) })) => {
                        self.runs.borrow_mut().remove(&r.run_id);
                    }
                    Some(Ev::CfOrganizationChanged(c)) => self.cf_fold(
                        c.before.map(|r| r.guid),
                        c.after
                            .map(|r| (r.guid.clone(), pb::cf_resource::Kind::Organization(r))),
                    ),
                    Some(Ev::CfSpaceChanged(c)) => self.cf_fold(
                        c.before.map(|r| r.guid),
                        c.after.map(|r| (r.guid.clone(), pb::cf_resource::Kind::Space(r))),
                    ),
                    Some(Ev::CfAppChanged(c)) => self.cf_fold(
                        c.before.map(|r| r.guid),
                        c.after.map(|r| (r.guid.clone(), pb::cf_resource::Kind::App(r))),
                    ),
                    Some(Ev::CfProcessChanged(c)) => self.cf_fold(
                        c.before.map(|r| r.guid),
                        c.after.map(|r| (r.guid.clone(), pb::cf_resource::Kind::Process(r))),
                    ),
                    Some(Ev::TokensRevoked(t)) => {
                        for r in t.expired {
                            self.revoked.borrow_mut().remove(&r.jti);
                        }
                        for r in t.revoked {
                            self.revoked.borrow_mut().insert(r.jti.clone(), r);
                        }
                    }
                    _ => {}
                }
            }
        }
        d
    }
    pub(super) fn cf_fold(&self, before: Option<String>, after: Option<(String, pb::cf_resource::Kind)>) {
        let mut cf = self.cf.borrow_mut();
        if let Some(g) = before {
            cf.remove(&g);
        }
        if let Some((g, r)) = after {
            cf.insert(g, r);
        }
    }
    pub(super) fn indices(&self) -> Vec<u32> {
        self.actual.borrow().values().map(|a| a.index).collect()
    }
}
