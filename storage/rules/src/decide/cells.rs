//! Cell commands: register (or re-register) a cell, remove a lost or departed one.

use super::events::ev;
use super::runs;
use super::{reject, Ctx, Decision, ViewRead};
use crate::limits;
use crate::pb;
use pb::{event::Kind as Ev, RejectionKind};

pub fn register(c: &pb::RegisterCell, cx: &Ctx) -> Decision {
    match &c.cell {
        Some(cell) if !cell.cell_id.is_empty() && cell.cell_id.len() <= limits::NAME_BYTES_MAX => {
            let mut cell = cell.clone();
            cell.registered_at = cx.now;
            Ok(vec![ev(Ev::CellRegistered(pb::CellRegistered { cell: Some(cell) }))])
        }
        _ => Err(reject(RejectionKind::InvalidCell, "Invalid field: cell_id")),
    }
}

/// Removing an unknown cell is not an error: presence and a departing agent may both ask. The
/// task runs on a removed cell are retried elsewhere in the same entry (its instances are
/// replaced by convergence, which the removal triggers).
pub fn remove<V: ViewRead>(view: &V, c: &pb::RemoveCell, cx: &Ctx) -> Result<Decision, V::Error> {
    let Some(cell) = view.cell(&c.cell_id)? else {
        return Ok(Ok(vec![]));
    };
    let mut events = vec![ev(Ev::CellRemoved(pb::CellRemoved {
        cell: Some(cell),
        reason: c.reason.clone(),
    }))];
    events.extend(runs::lost_with_cell(view, &c.cell_id, cx)?);
    Ok(Ok(events))
}
