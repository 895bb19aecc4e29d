//! What changed on each cell, as the hub reads it from the journal: every assignment stream holds
//! a feed of its cell, and the hub pushes each instance's and run's new state (or its leaving)
//! into the feeds of the cells it left and reached. A stream then sends those changes — work in
//! proportion to what changed, not to what the cell holds. A feed that falls too far behind, or a
//! hub that rebuilt from the views, asks its stream for the whole set again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use capstan_proto::pb;
use capstan_storage::rules::run_lifecycle::on_cell;
use tokio::sync::Notify;

/// Changes a feed holds before its stream must read the whole set again instead: a stream drains
/// its feed every coalescing window, so only a stalled stream (a cell not reading) gets there.
pub const FEED_CHANGES_MAX: usize = 16_384;

/// One instance's or run's newest state on a cell, or `None`: it left the cell.
#[derive(Clone, Debug)]
pub enum CellChange {
    Instance(pb::ActualLrpKey, Option<Box<pb::ActualLrp>>),
    Run(String, Option<Box<pb::TaskRun>>),
}

#[derive(Default)]
struct Queue {
    /// (log index, change), in log order.
    changes: Vec<(u64, CellChange)>,
    /// Changes were dropped (over the bound, or the hub rebuilt): the stream must resync.
    resync: bool,
}

/// The changes waiting for one assignment stream.
#[derive(Default)]
pub struct CellFeed {
    queue: Mutex<Queue>,
    /// Woken whenever a change or a resync arrives.
    pub wake: Notify,
}

/// What a stream takes from its feed: the changes in log order, or a resync.
pub enum Drained {
    Changes(Vec<(u64, CellChange)>),
    Resync,
}

impl CellFeed {
    fn push(&self, index: u64, change: CellChange) {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if q.resync {
            return;
        }
        if q.changes.len() >= FEED_CHANGES_MAX {
            q.changes = Vec::new();
            q.resync = true;
        } else {
            q.changes.push((index, change));
        }
        drop(q);
        self.wake.notify_one();
    }

    fn resync(&self) {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.changes = Vec::new();
        q.resync = true;
        drop(q);
        self.wake.notify_one();
    }

    /// Takes everything waiting.
    pub fn drain(&self) -> Drained {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::take(&mut q.resync) {
            return Drained::Resync;
        }
        Drained::Changes(std::mem::take(&mut q.changes))
    }
}

/// The feeds of every stream, by cell. A stream owns its feed; the table keeps weak references
/// and forgets a feed once its stream has ended.
#[derive(Default)]
pub struct Feeds {
    by_cell: Mutex<HashMap<String, Vec<Weak<CellFeed>>>>,
}

impl Feeds {
    /// A new feed of `cell_id`'s changes from now on.
    pub fn subscribe(&self, cell_id: &str) -> Arc<CellFeed> {
        let feed = Arc::new(CellFeed::default());
        let mut by_cell = self.by_cell.lock().unwrap_or_else(PoisonError::into_inner);
        let feeds = by_cell.entry(cell_id.to_owned()).or_default();
        feeds.retain(|f| f.strong_count() > 0);
        feeds.push(Arc::downgrade(&feed));
        feed
    }

    /// Pushes one entry's changes, `(cell, change)`, into the feeds of their cells.
    pub fn push(&self, index: u64, changes: Vec<(String, CellChange)>) {
        if changes.is_empty() {
            return;
        }
        let mut by_cell = self.by_cell.lock().unwrap_or_else(PoisonError::into_inner);
        for (cell, change) in changes {
            let Some(feeds) = by_cell.get_mut(&cell) else { continue };
            feeds.retain(|f| f.strong_count() > 0);
            if feeds.is_empty() {
                by_cell.remove(&cell);
                continue;
            }
            for f in feeds.iter().filter_map(Weak::upgrade) {
                f.push(index, change.clone());
            }
        }
    }

    /// Every stream must read its whole set again (the hub rebuilt from the views).
    pub fn resync_all(&self) {
        let by_cell = self.by_cell.lock().unwrap_or_else(PoisonError::into_inner);
        for f in by_cell.values().flatten().filter_map(Weak::upgrade) {
            f.resync();
        }
    }
}

/// The changes one journal event makes to cells: an instance or run is pushed with its new state
/// to the cell it is on, and as gone to the cell it left — "on" as the views' cell indexes have it
/// (an instance with a cell id; a run PENDING or RUNNING there), so that a stream's whole set and
/// its changes agree.
pub fn changes_of(kind: &pb::event::Kind, out: &mut Vec<(String, CellChange)>) {
    use pb::event::Kind as Ev;
    fn key(a: &pb::ActualLrp) -> pb::ActualLrpKey {
        pb::ActualLrpKey {
            process_guid: a.process_guid.clone(),
            index: a.index,
            instance_guid: a.instance_guid.clone(),
            cell_id: a.cell_id.clone(),
        }
    }
    match kind {
        Ev::ActualLrpChanged(c) => {
            if let Some(b) = c.before.as_ref().filter(|b| !b.cell_id.is_empty()) {
                if c.after.as_ref().is_none_or(|a| a.cell_id != b.cell_id) {
                    out.push((b.cell_id.clone(), CellChange::Instance(key(b), None)));
                }
            }
            if let Some(a) = c.after.as_ref().filter(|a| !a.cell_id.is_empty()) {
                out.push((
                    a.cell_id.clone(),
                    CellChange::Instance(key(a), Some(Box::new(a.clone()))),
                ));
            }
        }
        Ev::ActualLrpRemoved(c) => {
            if let Some(a) = c.actual_lrp.as_ref().filter(|a| !a.cell_id.is_empty()) {
                out.push((a.cell_id.clone(), CellChange::Instance(key(a), None)));
            }
        }
        Ev::TaskRunChanged(c) => {
            let was = c.before.as_ref().and_then(|b| Some((on_cell(b)?, b)));
            let is = c.after.as_ref().and_then(|a| Some((on_cell(a)?, a)));
            if let Some((cell, b)) = was.filter(|(w, _)| is.is_none_or(|(i, _)| i != *w)) {
                out.push((cell.to_owned(), CellChange::Run(b.run_id.clone(), None)));
            }
            if let Some((cell, a)) = is {
                out.push((
                    cell.to_owned(),
                    CellChange::Run(a.run_id.clone(), Some(Box::new(a.clone()))),
                ));
            }
        }
        Ev::TaskRunRemoved(c) => {
            if let Some((cell, r)) = c.run.as_ref().and_then(|r| Some((on_cell(r)?, r))) {
                out.push((cell.to_owned(), CellChange::Run(r.run_id.clone(), None)));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actual(cell: &str, state: pb::ActualLrpState) -> pb::ActualLrp {
        pb::ActualLrp {
            process_guid: "p".into(),
            index: 0,
            instance_guid: "i".into(),
            cell_id: cell.into(),
            state: state as i32,
            ..Default::default()
        }
    }

    fn changed(before: Option<pb::ActualLrp>, after: Option<pb::ActualLrp>) -> pb::event::Kind {
        pb::event::Kind::ActualLrpChanged(pb::ActualLrpChanged { before, after })
    }

    #[test]
    fn an_instance_that_moves_is_gone_from_one_cell_and_new_on_the_other() {
        use pb::ActualLrpState as S;
        let mut out = Vec::new();
        changes_of(
            &changed(Some(actual("a", S::Running)), Some(actual("b", S::Claimed))),
            &mut out,
        );
        let cells: Vec<(&str, bool)> = out
            .iter()
            .map(|(c, ch)| (c.as_str(), matches!(ch, CellChange::Instance(_, Some(_)))))
            .collect();
        assert_eq!(cells, [("a", false), ("b", true)]);
        // claimed -> running on one cell: one change, the new state
        out.clear();
        changes_of(
            &changed(Some(actual("a", S::Claimed)), Some(actual("a", S::Running))),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], (c, CellChange::Instance(_, Some(a))) if c == "a" && a.state == S::Running as i32));
        // unclaimed (no cell) touches no cell
        out.clear();
        changes_of(&changed(None, Some(actual("", S::Unclaimed))), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_stalled_feed_asks_for_a_resync_and_a_dropped_stream_is_forgotten() {
        let feeds = Feeds::default();
        let feed = feeds.subscribe("c");
        let change = || vec![("c".to_owned(), CellChange::Run("r".into(), None))];
        for i in 0..FEED_CHANGES_MAX as u64 {
            feeds.push(i, change());
        }
        assert!(matches!(feed.drain(), Drained::Changes(c) if c.len() == FEED_CHANGES_MAX));
        for i in 0..=FEED_CHANGES_MAX as u64 {
            feeds.push(i, change());
        }
        assert!(matches!(feed.drain(), Drained::Resync));
        assert!(matches!(feed.drain(), Drained::Changes(c) if c.is_empty()));
        feeds.resync_all();
        assert!(matches!(feed.drain(), Drained::Resync));
        drop(feed);
        feeds.push(1, change());
        assert!(feeds.by_cell.lock().unwrap().is_empty());
    }
}
