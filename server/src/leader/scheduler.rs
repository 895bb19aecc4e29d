//! The scheduler, on the leader only: places UNCLAIMED instances on cells (the pure placement
//! rules over the hub's picture of the fleet) and proposes the decisions in batches. It runs when
//! the hub says there is work, and on a short tick so that waiting instances are retried as soon
//! as capacity appears.

use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb;
use capstan_raft::RaftNode;
use capstan_storage::rules::placement::{self, Need};

use super::hub::{Fleet, Hub, Res};

/// Most placement decisions in one log entry.
pub const PLACEMENTS_PER_ENTRY_MAX: usize = 1_000;
/// Retry period for instances that could not be placed.
const RETRY_TICK: Duration = Duration::from_millis(500);

/// One scheduling pass over the live fleet: the decisions to propose, if any. Placements are
/// counted on their cells at once (tentatively) so the next pass does not overfill them.
pub fn plan(fleet: &mut Fleet) -> Option<pb::PlaceActualLrps> {
    if fleet.unclaimed.is_empty() {
        return None;
    }
    let mut cmd = pb::PlaceActualLrps::default();
    let mut decided: Vec<(String, u32, String)> = Vec::new();
    {
        let Fleet {
            desired,
            loads,
            unclaimed,
            ..
        } = fleet;
        // Instances are in (process_guid, index) order: one placer per process.
        let mut current: Option<(String, placement::ProcessPlacer<'_>)> = None;
        let mut resources: Vec<(String, Res)> = Vec::new();
        for ((guid, _), _) in unclaimed.iter() {
            if resources.last().map(|(g, _)| g) != Some(guid) {
                resources.push((guid.clone(), desired.get(guid).cloned().unwrap_or_default()));
            }
        }
        let mut next_res = resources.iter();
        for ((guid, index), waiting) in unclaimed.iter() {
            if cmd.placements.len() + cmd.failures.len() >= PLACEMENTS_PER_ENTRY_MAX {
                break;
            }
            if current.as_ref().map(|(g, _)| g) != Some(guid) {
                let Some((_, res)) = next_res.next() else { break };
                let need = Need {
                    process_guid: guid,
                    rootfs: &res.rootfs,
                    memory_mb: res.memory_mb,
                    disk_mb: res.disk_mb,
                };
                current = Some((guid.clone(), placement::ProcessPlacer::new(loads, need)));
            }
            let Some((_, placer)) = current.as_mut() else { break };
            match placer.place(loads) {
                Ok(i) => {
                    let cell_id = loads[i].cell.cell_id.clone();
                    decided.push((guid.clone(), *index, cell_id.clone()));
                    cmd.placements.push(pb::Placement {
                        process_guid: guid.clone(),
                        index: *index,
                        epoch: waiting.epoch.clone(),
                        cell_id,
                    });
                }
                // Only a new or different error is worth an entry.
                Err(e) if waiting.placement_error != e => cmd.failures.push(pb::PlacementFailure {
                    process_guid: guid.clone(),
                    index: *index,
                    epoch: waiting.epoch.clone(),
                    error: e.to_owned(),
                }),
                Err(_) => {}
            }
        }
    }
    // The placer already counted them on the loads; record them so the hub can undo that
    // when the real change arrives (or when apply skipped them).
    for (guid, index, cell) in decided {
        fleet.count_tentative_only(&guid, index, &cell);
    }
    (!cmd.placements.is_empty() || !cmd.failures.is_empty()).then_some(cmd)
}

pub async fn run(node: RaftNode, hub: Arc<Hub>) {
    loop {
        tokio::select! {
            _ = hub.schedule.notified() => {}
            _ = tokio::time::sleep(RETRY_TICK) => {}
        }
        if !node.is_leader() {
            continue;
        }
        // Place as long as there is work: each pass waits for its own entry to be reflected.
        loop {
            hub.caught_up().await;
            hub.drop_tentative();
            let Some(cmd) = hub.with_fleet(plan) else { break };
            let n = cmd.placements.len();
            match node
                .write(pb::Command {
                    kind: Some(pb::command::Kind::PlaceActualLrps(cmd)),
                })
                .await
            {
                // Nothing applied: the picture is behind; wait for the next tick, do not spin.
                Ok(outcome) if outcome.events.is_empty() => break,
                Ok(_) => tracing::debug!(placements = n, "placed"),
                Err(e) => {
                    tracing::debug!(error = %e, "placement not proposed");
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
    }
}
