//! An overlay over the views: reads through the changes an entry has already decided, so that a
//! batch (placements, reports, convergence) sees its own earlier items.

use std::collections::BTreeMap;

use super::events::{created, ev, removed};
use super::ViewRead;
use crate::pb;
use pb::event::Kind as Ev;

/// The views as an entry has changed them so far, and the events of those changes.
pub struct Overlay<'v, V> {
    view: &'v V,
    actuals: BTreeMap<(String, u32), Option<pb::ActualLrp>>,
    desired: BTreeMap<String, Option<pb::DesiredLrp>>,
    pub events: Vec<pb::Event>,
}

impl<'v, V: ViewRead> Overlay<'v, V> {
    pub fn new(view: &'v V) -> Self {
        Self {
            view,
            actuals: BTreeMap::new(),
            desired: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    pub fn actual(&self, guid: &str, index: u32) -> Result<Option<pb::ActualLrp>, V::Error> {
        match self.actuals.get(&(guid.to_owned(), index)) {
            Some(a) => Ok(a.clone()),
            None => self.view.actual(guid, index),
        }
    }

    pub fn desired(&mut self, guid: &str) -> Result<Option<pb::DesiredLrp>, V::Error> {
        if let Some(d) = self.desired.get(guid) {
            return Ok(d.clone());
        }
        let d = self.view.desired(guid)?;
        self.desired.insert(guid.to_owned(), d.clone());
        Ok(d)
    }

    pub fn changed(&mut self, before: pb::ActualLrp, after: pb::ActualLrp) {
        self.actuals
            .insert((after.process_guid.clone(), after.index), Some(after.clone()));
        self.events.push(ev(Ev::ActualLrpChanged(pb::ActualLrpChanged {
            before: Some(before),
            after: Some(after),
        })));
    }

    pub fn created(&mut self, a: pb::ActualLrp) {
        self.actuals.insert((a.process_guid.clone(), a.index), Some(a.clone()));
        self.events.push(created(a));
    }

    pub fn removed(&mut self, a: pb::ActualLrp) {
        self.actuals.insert((a.process_guid.clone(), a.index), None);
        self.events.push(removed(a));
    }
}

pub fn epoch_of(a: &pb::ActualLrp) -> &str {
    a.modification_tag.as_ref().map(|t| t.epoch.as_str()).unwrap_or("")
}
