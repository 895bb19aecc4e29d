//! Convergence, on the leader only: every interval, and at once when a cell is lost, compare
//! desired and actual state (spec/receptor.md §6) and propose the operations that close the gap.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb;
use capstan_raft::RaftNode;
use capstan_storage::rules::convergence::{self, Context};

use super::hub::Hub;

/// Most convergence operations in one log entry.
const OPS_PER_ENTRY_MAX: usize = 1_000;

/// Plans one pass over the views: desired and actual rows are merged by process_guid.
pub fn plan(node: &RaftNode) -> Result<Vec<pb::ConvergenceOp>, capstan_storage::StoreError> {
    let views = node.views();
    let now = capstan_raft::node::unix_now_ns();
    // `fresh_domains` lists only the domains still fresh at `now`.
    let fresh: BTreeSet<String> = views.fresh_domains(now)?.into_iter().map(|d| d.domain).collect();
    let cells: BTreeSet<String> = views.cells()?.into_iter().map(|c| c.cell_id).collect();
    let ctx = Context {
        now_ns: now,
        fresh_domains: &fresh,
        cells: &cells,
    };
    let mut ops = Vec::new();
    let mut guids: BTreeSet<String> = BTreeSet::new();
    for d in views.desired_lrps(None) {
        guids.insert(d?.process_guid);
    }
    let mut current: Option<(String, Vec<pb::ActualLrp>)> = None;
    let mut with_actuals: BTreeSet<String> = BTreeSet::new();
    let flush = |guid: String, actuals: Vec<pb::ActualLrp>, ops: &mut Vec<pb::ConvergenceOp>| {
        let desired = views.get_desired(&guid).ok().flatten();
        ops.extend(convergence::plan(&guid, desired.as_ref(), &actuals, &ctx));
    };
    for a in views.actual_lrps(None, None) {
        let a = a?;
        match &mut current {
            Some((g, list)) if *g == a.process_guid => list.push(a),
            _ => {
                if let Some((g, list)) = current.take() {
                    flush(g, list, &mut ops);
                }
                with_actuals.insert(a.process_guid.clone());
                current = Some((a.process_guid.clone(), vec![a]));
            }
        }
    }
    if let Some((g, list)) = current.take() {
        flush(g, list, &mut ops);
    }
    for g in guids.difference(&with_actuals) {
        flush(g.clone(), Vec::new(), &mut ops);
    }
    Ok(ops)
}

pub async fn run(node: RaftNode, hub: Arc<Hub>, interval: Duration) {
    loop {
        hub.next_pass(&hub.converge, interval).await;
        let ops = match plan(&node) {
            Ok(ops) => ops,
            Err(e) => {
                tracing::error!(error = %e, "convergence pass failed");
                continue;
            }
        };
        if ops.is_empty() {
            continue;
        }
        tracing::info!(ops = ops.len(), "converging");
        for chunk in ops.chunks(OPS_PER_ENTRY_MAX) {
            let cmd = pb::Command {
                kind: Some(pb::command::Kind::ConvergeLrps(pb::ConvergeLrps {
                    ops: chunk.to_vec(),
                })),
            };
            if let Err(e) = node.write(cmd).await {
                tracing::debug!(error = %e, "convergence not proposed");
                break;
            }
        }
    }
}
