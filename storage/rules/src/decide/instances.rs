//! ActualLRP commands: retire (kill at index), and the leader's batches — placements, cell reports
//! and convergence operations — each item re-checked against the state it was decided about.

use super::events::{created, removed, unclaimed};
use super::overlay::{epoch_of, Overlay};
use super::{reject, Ctx, Decision, ViewRead};
use crate::lifecycle;
use crate::pb;
use pb::{ActualLrpState, ConvergenceOpKind, RejectionKind};

pub fn index_not_found(process_guid: &str, index: u32) -> pb::Rejection {
    reject(
        RejectionKind::ActualLrpIndexNotFound,
        format!("process-guid '{process_guid}' does not exist or has no instance at index {index}"),
    )
}

/// Kills the instance at an index; the desired state is unchanged, so the index is desired again
/// at once as a new UNCLAIMED instance.
pub fn retire<V: ViewRead>(view: &V, c: &pb::RetireActualLrp, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let actuals = view.actuals(&c.process_guid)?;
    let Some(a) = actuals.into_iter().find(|a| a.index == c.index) else {
        return Ok(Err(index_not_found(&c.process_guid, c.index)));
    };
    let mut events = vec![removed(a)];
    if let Some(d) = view.desired(&c.process_guid)? {
        if i64::from(c.index) < i64::from(d.instances) {
            events.push(created(unclaimed(&d, c.index, cx.now, &mut cx.ids)));
        }
    }
    Ok(Ok(events))
}

/// Claims each placed instance for its cell, if it is still the UNCLAIMED instance the
/// scheduler saw and the cell is still registered; records placement failures.
pub fn place<V: ViewRead>(view: &V, c: &pb::PlaceActualLrps, cx: &mut Ctx) -> Result<Decision, V::Error> {
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
        if let Ok(b) = lifecycle::claim(&a, &p.cell_id, &cx.ids.next_uuid()) {
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
        if let Ok(Some(b)) = lifecycle::fail_placement(&a, &f.error, cx.now) {
            o.changed(a, b);
        }
    }
    Ok(Ok(o.events))
}

/// A cell's reports: started instances become RUNNING, crashed ones follow the crash rules.
/// A report about an instance that has moved on (retired, re-created, re-placed) is skipped.
pub fn report<V: ViewRead>(view: &V, c: &pb::ReportActualLrps, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let now = cx.now;
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
    Ok(Ok(o.events))
}

/// Convergence operations, each re-checked against the current state.
pub fn converge<V: ViewRead>(view: &V, c: &pb::ConvergeLrps, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let mut o = Overlay::new(view);
    for op in &c.ops {
        let current = o.actual(&op.process_guid, op.index)?;
        let kind = ConvergenceOpKind::try_from(op.kind).unwrap_or(ConvergenceOpKind::Unspecified);
        match (kind, current) {
            (ConvergenceOpKind::CreateMissing, None) => {
                if let Some(d) = o.desired(&op.process_guid)? {
                    if i64::from(op.index) < i64::from(d.instances) {
                        o.created(unclaimed(&d, op.index, cx.now, &mut cx.ids));
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
                        o.created(unclaimed(&d, op.index, cx.now, &mut cx.ids));
                    }
                }
            }
            (ConvergenceOpKind::Retire, Some(a)) if epoch_of(&a) == op.epoch => o.removed(a),
            (ConvergenceOpKind::RestartCrashed, Some(a)) if epoch_of(&a) == op.epoch => {
                if let Ok(b) = lifecycle::unclaim_crashed(&a, cx.now) {
                    o.changed(a, b);
                }
            }
            _ => {}
        }
    }
    Ok(Ok(o.events))
}
