//! Builders of the events decide emits.

use super::super::ids::IdGen;
use crate::pb;
use pb::{event::Kind as Ev, ActualLrpState};

pub fn ev(kind: Ev) -> pb::Event {
    pb::Event { kind: Some(kind) }
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

pub fn created(a: pb::ActualLrp) -> pb::Event {
    ev(Ev::ActualLrpCreated(pb::ActualLrpCreated { actual_lrp: Some(a) }))
}

pub fn removed(a: pb::ActualLrp) -> pb::Event {
    ev(Ev::ActualLrpRemoved(pb::ActualLrpRemoved { actual_lrp: Some(a) }))
}
