//! Convergence (spec/receptor.md §6): for one process_guid, given its DesiredLRP (if any) and
//! its actual instances, the operations that bring them together. Destructive operations on
//! running instances (extra indices, undesired instances) are gated on domain freshness; the
//! rest are not. The leader runs this with its clock; apply re-checks every operation.

use std::collections::BTreeSet;

use super::lifecycle;
use crate::pb::{self, ActualLrpState as S, ConvergenceOpKind as K};

/// What convergence knows besides the LRP itself.
pub struct Context<'a> {
    pub now_ns: i64,
    pub fresh_domains: &'a BTreeSet<String>,
    pub cells: &'a BTreeSet<String>,
}

fn op(kind: K, a: &pb::ActualLrp) -> pb::ConvergenceOp {
    pb::ConvergenceOp {
        kind: kind as i32,
        process_guid: a.process_guid.clone(),
        index: a.index,
        epoch: a.modification_tag.as_ref().map(|t| t.epoch.clone()).unwrap_or_default(),
    }
}

fn on_missing_cell(a: &pb::ActualLrp, ctx: &Context<'_>) -> bool {
    let s = S::try_from(a.state).unwrap_or(S::Unspecified);
    matches!(s, S::Claimed | S::Running) && !ctx.cells.contains(&a.cell_id)
}

/// The operations for one process. `actuals` are all instances of `process_guid`.
pub fn plan(
    process_guid: &str,
    desired: Option<&pb::DesiredLrp>,
    actuals: &[pb::ActualLrp],
    ctx: &Context<'_>,
) -> Vec<pb::ConvergenceOp> {
    let mut ops = Vec::new();
    match desired {
        Some(d) => {
            let wanted = u32::try_from(d.instances).unwrap_or(0);
            let fresh = ctx.fresh_domains.contains(&d.domain);
            for index in 0..wanted {
                if !actuals.iter().any(|a| a.index == index) {
                    ops.push(pb::ConvergenceOp {
                        kind: K::CreateMissing as i32,
                        process_guid: process_guid.to_owned(),
                        index,
                        epoch: String::new(),
                    });
                }
            }
            for a in actuals {
                let s = S::try_from(a.state).unwrap_or(S::Unspecified);
                if on_missing_cell(a, ctx) {
                    ops.push(op(K::ReplaceLost, a));
                } else if a.index >= wanted {
                    if fresh {
                        ops.push(op(K::Retire, a));
                    }
                } else if s == S::Crashed && lifecycle::should_restart(ctx.now_ns, a.since, a.crash_count) {
                    ops.push(op(K::RestartCrashed, a));
                }
                // Stale UNCLAIMED needs no state change: the scheduler retries every pass.
            }
        }
        None => {
            for a in actuals {
                if on_missing_cell(a, ctx) {
                    ops.push(op(K::ReplaceLost, a));
                } else if ctx.fresh_domains.contains(&a.domain) {
                    ops.push(op(K::Retire, a));
                }
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(n: i32) -> pb::DesiredLrp {
        pb::DesiredLrp {
            process_guid: "pg".into(),
            domain: "d".into(),
            instances: n,
            ..Default::default()
        }
    }

    fn actual(index: u32, state: S, cell: &str) -> pb::ActualLrp {
        pb::ActualLrp {
            process_guid: "pg".into(),
            index,
            domain: "d".into(),
            state: state as i32,
            cell_id: cell.into(),
            modification_tag: Some(pb::ModificationTag {
                epoch: format!("e{index}"),
                index: 0,
            }),
            ..Default::default()
        }
    }

    fn kinds(ops: &[pb::ConvergenceOp]) -> Vec<(i32, u32)> {
        ops.iter().map(|o| (o.kind, o.index)).collect()
    }

    fn ctx<'a>(fresh: &'a BTreeSet<String>, cells: &'a BTreeSet<String>, now: i64) -> Context<'a> {
        Context {
            now_ns: now,
            fresh_domains: fresh,
            cells,
        }
    }

    #[test]
    fn missing_indices_and_lost_cells_are_not_gated_on_freshness() {
        let (fresh, cells) = (BTreeSet::new(), BTreeSet::from(["c1".to_string()]));
        let actuals = vec![actual(0, S::Running, "c1"), actual(2, S::Running, "gone")];
        let ops = plan("pg", Some(&desired(3)), &actuals, &ctx(&fresh, &cells, 0));
        assert_eq!(
            kinds(&ops),
            vec![(K::CreateMissing as i32, 1), (K::ReplaceLost as i32, 2)]
        );
        assert_eq!(ops[1].epoch, "e2");
    }

    #[test]
    fn extra_indices_only_when_fresh() {
        let cells = BTreeSet::from(["c1".to_string()]);
        let actuals = vec![actual(0, S::Running, "c1"), actual(1, S::Running, "c1")];
        let stale = BTreeSet::new();
        assert!(plan("pg", Some(&desired(1)), &actuals, &ctx(&stale, &cells, 0)).is_empty());
        let fresh = BTreeSet::from(["d".to_string()]);
        assert_eq!(
            kinds(&plan("pg", Some(&desired(1)), &actuals, &ctx(&fresh, &cells, 0))),
            vec![(K::Retire as i32, 1)]
        );
    }

    #[test]
    fn orphans_retired_only_when_fresh_but_lost_cells_always_cleaned() {
        let cells = BTreeSet::from(["c1".to_string()]);
        let actuals = vec![actual(0, S::Running, "c1"), actual(1, S::Claimed, "gone")];
        let stale = BTreeSet::new();
        assert_eq!(
            kinds(&plan("pg", None, &actuals, &ctx(&stale, &cells, 0))),
            vec![(K::ReplaceLost as i32, 1)]
        );
        let fresh = BTreeSet::from(["d".to_string()]);
        assert_eq!(
            kinds(&plan("pg", None, &actuals, &ctx(&fresh, &cells, 0))),
            vec![(K::Retire as i32, 0), (K::ReplaceLost as i32, 1)]
        );
    }

    #[test]
    fn crashed_restart_follows_the_calculator() {
        let (fresh, cells) = (BTreeSet::new(), BTreeSet::new());
        let mut a = actual(0, S::Crashed, "");
        a.crash_count = 3;
        a.since = 0;
        let second = 1_000_000_000;
        assert!(plan("pg", Some(&desired(1)), &[a.clone()], &ctx(&fresh, &cells, 29 * second)).is_empty());
        assert_eq!(
            kinds(&plan(
                "pg",
                Some(&desired(1)),
                &[a.clone()],
                &ctx(&fresh, &cells, 30 * second)
            )),
            vec![(K::RestartCrashed as i32, 0)]
        );
        a.crash_count = 200;
        assert!(plan("pg", Some(&desired(1)), &[a], &ctx(&fresh, &cells, i64::MAX)).is_empty());
    }
}
