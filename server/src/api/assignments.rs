//! One cell's assignment stream. It first sends the cell's whole set (every instance and task run
//! placed there, read from the views), then — to a cell that asked for deltas — only what changed:
//! the newest state of each instance and run its feed received (see `leader::cell_feed`), and
//! what left. Work per change is in proportion to the change, not to what the cell holds. An
//! older agent, which does not ask for deltas, is sent the whole set on every change, as before.
//!
//! The whole set and the feed agree without a lock on apply: the feed exists before the read
//! starts; the read sees every entry up to `before` (published as applied, indexes included) and
//! nothing past `after` (the views' own last-applied, read after it); once the hub has pushed
//! everything up to `after`, the feed's changes past `before` are laid over the read in log order.
//! An instance's change carries its whole new state, so laying one over a read that already saw it
//! changes nothing, and the result is the set as of the last change laid.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb;
use capstan_raft::RaftNode;
use tokio::sync::mpsc;
use tonic::Status;

use crate::errors;
use crate::leader::cell_feed::{CellChange, CellFeed, Drained};
use crate::leader::hub::Hub;

/// How long a stream gathers further changes before it sends them.
const ASSIGNMENT_COALESCE: Duration = Duration::from_millis(50);

/// What a cell acts on in a whole set: each instance's key and state, each run's placement,
/// status and stop flag. A whole set with the same signature is not sent again.
type Signature = (Vec<(String, u32, String, i32)>, Vec<(String, u32, i32, bool)>);

fn signature(a: &pb::Assignments) -> Signature {
    (
        a.assignments
            .iter()
            .filter_map(|a| a.actual.as_ref())
            .map(|a| (a.process_guid.clone(), a.index, a.instance_guid.clone(), a.state))
            .collect(),
        a.task_runs
            .iter()
            .map(|r| (r.run_id.clone(), r.attempt, r.status, r.stop_requested))
            .collect(),
    )
}

/// The DesiredLRPs a message needs, each read once per message.
struct DesiredCache<'a> {
    views: &'a capstan_storage::views::Views,
    by_guid: HashMap<String, Option<pb::DesiredLrp>>,
}

impl<'a> DesiredCache<'a> {
    fn new(views: &'a capstan_storage::views::Views) -> Self {
        Self {
            views,
            by_guid: HashMap::new(),
        }
    }

    fn get(&mut self, process_guid: &str) -> Result<Option<pb::DesiredLrp>, Status> {
        if let Some(d) = self.by_guid.get(process_guid) {
            return Ok(d.clone());
        }
        let d = self.views.get_desired(process_guid).map_err(errors::storage)?;
        self.by_guid.insert(process_guid.to_owned(), d.clone());
        Ok(d)
    }
}

/// The whole set on `cell_id` as the views hold it now.
fn read_whole(node: &RaftNode, cell_id: &str) -> Result<pb::Assignments, Status> {
    let views = node.views();
    let mut desired = DesiredCache::new(views);
    let mut out = pb::Assignments {
        task_runs: views
            .task_runs_on_cell(cell_id)
            .collect::<Result<_, _>>()
            .map_err(errors::storage)?,
        ..Default::default()
    };
    for a in views.actuals_on_cell(cell_id) {
        let a = a.map_err(errors::storage)?;
        out.assignments.push(pb::Assignment {
            desired: desired.get(&a.process_guid)?,
            actual: Some(a),
        });
    }
    Ok(out)
}

/// A run of a feed's changes reduced to the newest state of each instance and run (`None`: it
/// left), in key order, and the log index of the last change.
struct Coalesced {
    last: u64,
    instances: BTreeMap<(String, u32), (pb::ActualLrpKey, Option<pb::ActualLrp>)>,
    runs: BTreeMap<String, Option<pb::TaskRun>>,
}

fn coalesce(changes: Vec<(u64, CellChange)>) -> Coalesced {
    let mut c = Coalesced {
        last: 0,
        instances: BTreeMap::new(),
        runs: BTreeMap::new(),
    };
    for (index, change) in changes {
        c.last = index;
        match change {
            CellChange::Instance(key, after) => {
                c.instances
                    .insert((key.process_guid.clone(), key.index), (key, after.map(|a| *a)));
            }
            CellChange::Run(run_id, after) => {
                c.runs.insert(run_id, after.map(|r| *r));
            }
        }
    }
    c
}

/// Lays `changes` (in log order) over a whole set; returns the last change's log index.
fn lay_over(node: &RaftNode, set: &mut pb::Assignments, changes: Vec<(u64, CellChange)>) -> Result<u64, Status> {
    let changes = coalesce(changes);
    let mut desired = DesiredCache::new(node.views());
    let mut instances: BTreeMap<(String, u32), pb::Assignment> = std::mem::take(&mut set.assignments)
        .into_iter()
        .filter_map(|a| Some((a.actual.as_ref().map(|x| (x.process_guid.clone(), x.index))?, a)))
        .collect();
    for (k, (_, after)) in changes.instances {
        match after {
            None => {
                instances.remove(&k);
            }
            Some(a) => match instances.get_mut(&k) {
                Some(had) => had.actual = Some(a),
                None => {
                    let d = desired.get(&a.process_guid)?;
                    instances.insert(
                        k,
                        pb::Assignment {
                            desired: d,
                            actual: Some(a),
                        },
                    );
                }
            },
        }
    }
    let mut runs: BTreeMap<String, pb::TaskRun> = std::mem::take(&mut set.task_runs)
        .into_iter()
        .map(|r| (r.run_id.clone(), r))
        .collect();
    for (run_id, after) in changes.runs {
        match after {
            None => runs.remove(&run_id),
            Some(r) => runs.insert(run_id, r),
        };
    }
    set.assignments = instances.into_values().collect();
    set.task_runs = runs.into_values().collect();
    Ok(changes.last)
}

/// The changes as one delta message: the newest state of each instance and run, and what left.
/// A DesiredLRP goes with an instance the cell must start (CLAIMED); the cell has no use for it
/// otherwise.
fn delta(node: &RaftNode, changes: Vec<(u64, CellChange)>) -> Result<Option<pb::Assignments>, Status> {
    if changes.is_empty() {
        return Ok(None);
    }
    let changes = coalesce(changes);
    let mut desired = DesiredCache::new(node.views());
    let mut out = pb::Assignments {
        as_of_log_index: changes.last,
        delta: true,
        ..Default::default()
    };
    for (key, after) in changes.instances.into_values() {
        match after {
            None => out.removed.push(key),
            Some(a) => {
                let d = if a.state == pb::ActualLrpState::Claimed as i32 {
                    desired.get(&a.process_guid)?
                } else {
                    None
                };
                out.assignments.push(pb::Assignment {
                    actual: Some(a),
                    desired: d,
                });
            }
        }
    }
    for (run_id, after) in changes.runs {
        match after {
            None => out.removed_runs.push(run_id),
            Some(r) => out.task_runs.push(r),
        }
    }
    Ok(Some(out))
}

/// One message of a cell's stream, as its channel holds it.
pub type StreamItem = Box<Result<pb::Assignments, Status>>;

/// One cell's stream: its feed, and where its messages go.
pub struct Stream {
    pub feed: Arc<CellFeed>,
    pub hub: Arc<Hub>,
    pub node: RaftNode,
    pub cell_id: String,
    /// boxed: a channel allocates its slots in blocks of 32 whatever it is bounded to, and a
    /// leader holds one channel per cell (5,000 cells: 20 MB of slots unboxed, 1.3 MB boxed)
    pub tx: mpsc::Sender<StreamItem>,
}

impl Stream {
    /// The whole set as of the hub's last pushed change, or `None` when the feed dropped changes
    /// meanwhile (read again).
    async fn whole(&self) -> Result<Option<pb::Assignments>, Status> {
        let before = self.node.applied_index();
        let (mut set, after) = tokio::task::block_in_place(|| {
            let set = read_whole(&self.node, &self.cell_id)?;
            let after = self.node.views().last_applied_index().map_err(errors::storage)?;
            Ok::<_, Status>((set, after))
        })?;
        let mut processed = self.hub.processed();
        if processed.wait_for(|p| *p >= after).await.is_err() {
            return Err(Status::unavailable("the node is shutting down"));
        }
        let changes = match self.feed.drain() {
            Drained::Resync => return Ok(None),
            Drained::Changes(c) => c,
        };
        let newer: Vec<_> = changes.into_iter().filter(|(i, _)| *i > before).collect();
        let last = tokio::task::block_in_place(|| lay_over(&self.node, &mut set, newer))?;
        set.as_of_log_index = after.max(last);
        Ok(Some(set))
    }

    /// Sends the whole set, then changes (`deltas`) or the whole set again on every change, until
    /// the cell goes away.
    pub async fn run(self, deltas: bool) {
        let mut resync = true;
        let mut last: Option<Signature> = None;
        loop {
            let update = if resync || !deltas {
                match self.whole().await {
                    Ok(Some(set)) => {
                        resync = false;
                        if deltas {
                            Some(set)
                        } else {
                            // The whole set again (an older agent): only when something in it changed.
                            let sig = signature(&set);
                            (last.as_ref() != Some(&sig)).then(|| {
                                last = Some(sig);
                                set
                            })
                        }
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        let _ = self.tx.send(Box::new(Err(e))).await;
                        return;
                    }
                }
            } else {
                match self.feed.drain() {
                    Drained::Resync => {
                        resync = true;
                        continue;
                    }
                    Drained::Changes(changes) => match tokio::task::block_in_place(|| delta(&self.node, changes)) {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = self.tx.send(Box::new(Err(e))).await;
                            return;
                        }
                    },
                }
            };
            if let Some(u) = update {
                if self.tx.send(Box::new(Ok(u))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = self.feed.wake.notified() => {}
                _ = self.tx.closed() => return,
            }
            // Gather a burst of entries touching this cell into one message.
            tokio::time::sleep(ASSIGNMENT_COALESCE).await;
        }
    }
}
