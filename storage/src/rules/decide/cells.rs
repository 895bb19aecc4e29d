//! Cell commands: register (or re-register) a cell, remove a lost or departed one.

use super::events::ev;
use super::{reject, Ctx, Decision, ViewRead};
use crate::pb;
use crate::rules::limits;
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

/// Removing an unknown cell is not an error: presence and a departing agent may both ask.
pub fn remove<V: ViewRead>(view: &V, c: &pb::RemoveCell) -> Result<Decision, V::Error> {
    Ok(Ok(match view.cell(&c.cell_id)? {
        None => vec![],
        Some(cell) => vec![ev(Ev::CellRemoved(pb::CellRemoved {
            cell: Some(cell),
            reason: c.reason.clone(),
        }))],
    }))
}
