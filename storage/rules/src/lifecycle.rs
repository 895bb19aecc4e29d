//! The ActualLRP lifecycle (spec/receptor.md §5): the transition guards of claim, start and
//! crash, and Diego's restart calculator, as the upstream code has them.

use crate::pb::{self, ActualLrpState as S};

const SECOND_NS: i64 = 1_000_000_000;
/// Crashes 1 and 2 restart at once; the 3rd is the first to stay CRASHED.
pub const IMMEDIATE_RESTARTS: i32 = 3;
/// First backoff after the immediate restarts.
pub const CRASH_BACKOFF_MIN_NS: i64 = 30 * SECOND_NS;
/// Longest backoff.
pub const CRASH_BACKOFF_MAX_NS: i64 = 16 * 60 * SECOND_NS;
/// At or past this many crashes an instance is never restarted.
pub const MAX_RESTARTS: i32 = 200;
/// A crash after this long RUNNING resets the crash count to 1.
pub const CRASH_RESET_TIMEOUT_NS: i64 = 5 * 60 * SECOND_NS;
/// floor(log2(ceil(16 min / 30 s))) = 5
const MAX_BACKOFF_COUNT: i32 = 5;

/// How long after the crash (`since`) a CRASHED instance with `crash_count` may restart;
/// `None` = never.
pub fn restart_delay_ns(crash_count: i32) -> Option<i64> {
    if crash_count < IMMEDIATE_RESTARTS {
        return Some(0);
    }
    if crash_count >= MAX_RESTARTS {
        return None;
    }
    let exp = (crash_count - IMMEDIATE_RESTARTS).min(MAX_BACKOFF_COUNT);
    Some((CRASH_BACKOFF_MIN_NS << exp).min(CRASH_BACKOFF_MAX_NS))
}

/// Diego's `ShouldRestart(now, since, crashCount)`.
pub fn should_restart(now_ns: i64, since_ns: i64, crash_count: i32) -> bool {
    match restart_delay_ns(crash_count) {
        None => false,
        Some(wait) => since_ns.saturating_add(wait) <= now_ns,
    }
}

fn state(a: &pb::ActualLrp) -> S {
    S::try_from(a.state).unwrap_or(S::Unspecified)
}

fn bump(a: &mut pb::ActualLrp) {
    let tag = a.modification_tag.get_or_insert_with(Default::default);
    tag.index = tag.index.saturating_add(1);
}

fn same_instance(a: &pb::ActualLrp, key: &pb::ActualLrpKey) -> bool {
    a.instance_guid == key.instance_guid && a.cell_id == key.cell_id
}

/// Why a transition is refused.
pub type Refusal = &'static str;

/// Claim for a cell: from UNCLAIMED or CRASHED, or CLAIMED/RUNNING with the same instance key.
/// Sets CLAIMED and the key, clears net info and placement_error; `since` is unchanged.
pub fn claim(a: &pb::ActualLrp, cell_id: &str, instance_guid: &str) -> Result<pb::ActualLrp, Refusal> {
    let key = pb::ActualLrpKey {
        process_guid: a.process_guid.clone(),
        index: a.index,
        instance_guid: instance_guid.to_owned(),
        cell_id: cell_id.to_owned(),
    };
    match state(a) {
        S::Unclaimed | S::Crashed => {}
        S::Claimed | S::Running if same_instance(a, &key) => {}
        _ => return Err("ActualLRPCannotBeClaimed"),
    }
    let mut b = a.clone();
    b.state = S::Claimed as i32;
    b.instance_guid = key.instance_guid;
    b.cell_id = key.cell_id;
    b.address.clear();
    b.ports.clear();
    b.placement_error.clear();
    bump(&mut b);
    Ok(b)
}

/// Start (the instance is healthy): from CLAIMED (any key), UNCLAIMED, CRASHED, or RUNNING with
/// the same key. `Ok(None)`: already RUNNING exactly so, nothing to do.
pub fn start(
    a: &pb::ActualLrp,
    key: &pb::ActualLrpKey,
    address: &str,
    ports: &[pb::PortMapping],
    now_ns: i64,
) -> Result<Option<pb::ActualLrp>, Refusal> {
    match state(a) {
        S::Running if same_instance(a, key) => {
            if a.address == address && a.ports == ports {
                return Ok(None);
            }
        }
        S::Running => return Err("ActualLRPCannotBeStarted"),
        S::Claimed | S::Unclaimed | S::Crashed => {}
        S::Unspecified => return Err("ActualLRPCannotBeStarted"),
    }
    let mut b = a.clone();
    b.state = S::Running as i32;
    b.instance_guid = key.instance_guid.clone();
    b.cell_id = key.cell_id.clone();
    b.address = address.to_owned();
    b.ports = ports.to_vec();
    b.placement_error.clear();
    b.since = now_ns;
    bump(&mut b);
    Ok(Some(b))
}

/// Crash: only from CLAIMED or RUNNING with the same key. The 1st and 2nd crash come back as
/// UNCLAIMED (restart at once); from the 3rd the instance is CRASHED.
pub fn crash(a: &pb::ActualLrp, key: &pb::ActualLrpKey, reason: &str, now_ns: i64) -> Result<pb::ActualLrp, Refusal> {
    let s = state(a);
    if !matches!(s, S::Claimed | S::Running) || !same_instance(a, key) {
        return Err("ActualLRPCannotBeCrashed");
    }
    let count = if s == S::Running && now_ns.saturating_sub(a.since) > CRASH_RESET_TIMEOUT_NS {
        1
    } else {
        a.crash_count.saturating_add(1)
    };
    let mut b = a.clone();
    b.crash_count = count;
    b.crash_reason = reason.to_owned();
    b.since = now_ns;
    b.instance_guid.clear();
    b.cell_id.clear();
    b.address.clear();
    b.ports.clear();
    b.placement_error.clear();
    b.state = if count < IMMEDIATE_RESTARTS {
        S::Unclaimed as i32
    } else {
        S::Crashed as i32
    };
    bump(&mut b);
    Ok(b)
}

/// Convergence's restart of a CRASHED instance: back to UNCLAIMED for the scheduler.
pub fn unclaim_crashed(a: &pb::ActualLrp, now_ns: i64) -> Result<pb::ActualLrp, Refusal> {
    if state(a) != S::Crashed {
        return Err("ActualLRPCannotBeUnclaimed");
    }
    let mut b = a.clone();
    b.state = S::Unclaimed as i32;
    b.since = now_ns;
    bump(&mut b);
    Ok(b)
}

/// Placement failure on an UNCLAIMED instance.
pub fn fail_placement(a: &pb::ActualLrp, error: &str, now_ns: i64) -> Result<Option<pb::ActualLrp>, Refusal> {
    if state(a) != S::Unclaimed {
        return Err("ActualLRPCannotFailPlacement");
    }
    if a.placement_error == error {
        return Ok(None);
    }
    let mut b = a.clone();
    b.placement_error = error.to_owned();
    b.since = now_ns;
    bump(&mut b);
    Ok(Some(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60 * SECOND_NS;

    fn actual(state: S, count: i32) -> pb::ActualLrp {
        pb::ActualLrp {
            process_guid: "pg".into(),
            index: 0,
            state: state as i32,
            crash_count: count,
            since: 1_000,
            instance_guid: if matches!(state, S::Claimed | S::Running) {
                "ig".into()
            } else {
                String::new()
            },
            cell_id: if matches!(state, S::Claimed | S::Running) {
                "c1".into()
            } else {
                String::new()
            },
            modification_tag: Some(pb::ModificationTag {
                epoch: "e".into(),
                index: 4,
            }),
            ..Default::default()
        }
    }

    fn key(ig: &str) -> pb::ActualLrpKey {
        pb::ActualLrpKey {
            process_guid: "pg".into(),
            index: 0,
            instance_guid: ig.into(),
            cell_id: "c1".into(),
        }
    }

    /// spec/receptor.md §5.2's table.
    #[test]
    fn restart_calculator_matches_the_table() {
        assert_eq!(restart_delay_ns(0), Some(0));
        assert_eq!(restart_delay_ns(1), Some(0));
        assert_eq!(restart_delay_ns(2), Some(0));
        assert_eq!(restart_delay_ns(3), Some(30 * SECOND_NS));
        assert_eq!(restart_delay_ns(4), Some(MIN));
        assert_eq!(restart_delay_ns(5), Some(2 * MIN));
        assert_eq!(restart_delay_ns(6), Some(4 * MIN));
        assert_eq!(restart_delay_ns(7), Some(8 * MIN));
        for n in 8..200 {
            assert_eq!(restart_delay_ns(n), Some(16 * MIN), "count {n}");
        }
        assert_eq!(restart_delay_ns(200), None);
        assert_eq!(restart_delay_ns(1000), None);
        assert!(should_restart(30 * SECOND_NS, 0, 3));
        assert!(!should_restart(30 * SECOND_NS - 1, 0, 3));
        assert!(!should_restart(i64::MAX, 0, 200));
    }

    #[test]
    fn first_two_crashes_restart_at_once_third_is_crashed() {
        let a = actual(S::Running, 0);
        let b = crash(&a, &key("ig"), "exit 1", 2_000).expect("crash");
        assert_eq!((b.state, b.crash_count), (S::Unclaimed as i32, 1));
        assert!(b.instance_guid.is_empty() && b.cell_id.is_empty());
        assert_eq!(b.modification_tag.map(|t| t.index), Some(5));
        let c = crash(&actual(S::Claimed, 1), &key("ig"), "r", 2_000).expect("crash");
        assert_eq!((c.state, c.crash_count), (S::Unclaimed as i32, 2));
        let d = crash(&actual(S::Running, 2), &key("ig"), "r", 2_000).expect("crash");
        assert_eq!(
            (d.state, d.crash_count, d.crash_reason.as_str()),
            (S::Crashed as i32, 3, "r")
        );
        // bbs test: count 4 → 5 and CRASHED
        let e = crash(&actual(S::Running, 4), &key("ig"), "r", 2_000).expect("crash");
        assert_eq!((e.state, e.crash_count), (S::Crashed as i32, 5));
    }

    #[test]
    fn crash_after_five_minutes_running_resets_the_count() {
        let a = actual(S::Running, 7);
        let b = crash(&a, &key("ig"), "r", 1_000 + CRASH_RESET_TIMEOUT_NS + 1).expect("crash");
        assert_eq!((b.crash_count, b.state), (1, S::Unclaimed as i32));
        let c = crash(
            &actual(S::Claimed, 7),
            &key("ig"),
            "r",
            1_000 + CRASH_RESET_TIMEOUT_NS + 1,
        )
        .expect("crash");
        assert_eq!(c.crash_count, 8, "only RUNNING resets");
    }

    #[test]
    fn refused_transitions() {
        assert!(crash(&actual(S::Running, 0), &key("other"), "r", 1).is_err());
        assert!(crash(&actual(S::Unclaimed, 0), &key(""), "r", 1).is_err());
        assert!(crash(&actual(S::Crashed, 3), &key(""), "r", 1).is_err());
        assert!(claim(&actual(S::Running, 0), "c2", "other").is_err());
        assert!(start(&actual(S::Running, 0), &key("other"), "1.2.3.4", &[], 1).is_err());
        assert!(unclaim_crashed(&actual(S::Running, 0), 1).is_err());
        assert!(fail_placement(&actual(S::Claimed, 0), "x", 1).is_err());
    }

    #[test]
    fn allowed_transitions() {
        let c = claim(&actual(S::Unclaimed, 0), "c1", "ig").expect("claim");
        assert_eq!((c.state, c.since), (S::Claimed as i32, 1_000), "claim keeps since");
        assert!(claim(&actual(S::Crashed, 3), "c1", "ig").is_ok());
        assert!(claim(&actual(S::Claimed, 0), "c1", "ig").is_ok(), "same key re-claims");
        let r = start(
            &c,
            &key("ig"),
            "10.0.0.1",
            &[pb::PortMapping {
                container_port: 8080,
                host_port: 61000,
            }],
            5,
        )
        .expect("start")
        .expect("changed");
        assert_eq!(
            (r.state, r.since, r.address.as_str()),
            (S::Running as i32, 5, "10.0.0.1")
        );
        assert_eq!(
            start(&r, &key("ig"), "10.0.0.1", &r.ports.clone(), 9),
            Ok(None),
            "identical start is a no-op"
        );
        assert!(start(&actual(S::Unclaimed, 0), &key("ig"), "a", &[], 1)
            .expect("ok")
            .is_some());
        let u = unclaim_crashed(&actual(S::Crashed, 4), 77).expect("unclaim");
        assert_eq!((u.state, u.crash_count, u.since), (S::Unclaimed as i32, 4, 77));
        let f = fail_placement(&actual(S::Unclaimed, 0), "insufficient resources", 3)
            .expect("ok")
            .expect("changed");
        assert_eq!(f.placement_error, "insufficient resources");
        assert_eq!(fail_placement(&f, "insufficient resources", 4), Ok(None));
    }
}
