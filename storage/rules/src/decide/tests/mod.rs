//! Decide against an in-memory view that folds events the way the sled views do.

use super::*;
use pb::{event::Kind as Ev, ActualLrpState, ConvergenceOpKind};

fn lrp(instances: i32) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: "pg".into(),
        domain: "d".into(),
        rootfs: "preloaded:cflinuxfs4".into(),
        instances,
        action: Some(pb::Action {
            kind: Some(pb::action::Kind::Run(pb::RunAction {
                path: "sleep".into(),
                user: "vcap".into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

fn desire_cmd(d: pb::DesiredLrp) -> pb::command::Kind {
    pb::command::Kind::DesireLrp(pb::DesireLrp { desired_lrp: Some(d) })
}

fn scale(n: i32) -> pb::command::Kind {
    pb::command::Kind::UpdateDesiredLrp(pb::UpdateDesiredLrp {
        process_guid: "pg".into(),
        update: Some(pb::DesiredLrpUpdate {
            instances: Some(n),
            ..Default::default()
        }),
    })
}

fn kind(d: &Decision) -> i32 {
    d.as_ref().err().map(|r| r.kind).unwrap_or(0)
}

#[test]
fn desire_creates_unclaimed_instances() {
    let m = Mem::default();
    assert!(m.run(1, desire_cmd(lrp(3))).is_ok());
    assert_eq!(m.indices(), vec![0, 1, 2]);
    let a = m
        .actual
        .borrow()
        .get(&("pg".to_string(), 1))
        .cloned()
        .unwrap_or_default();
    assert_eq!(a.state, ActualLrpState::Unclaimed as i32);
    assert_eq!(a.since, 1000);
    assert!(a.instance_guid.is_empty() && a.cell_id.is_empty());
    assert_eq!(a.modification_tag.map(|t| t.index), Some(0));
    let epochs: std::collections::BTreeSet<String> = m
        .actual
        .borrow()
        .values()
        .filter_map(|a| a.modification_tag.clone().map(|t| t.epoch))
        .collect();
    assert_eq!(epochs.len(), 3, "each instance has its own epoch");
}

#[test]
fn scale_up_and_down() {
    let m = Mem::default();
    let _ = m.run(1, desire_cmd(lrp(2)));
    assert!(m.run(2, scale(4)).is_ok());
    assert_eq!(m.indices(), vec![0, 1, 2, 3]);
    assert!(m.run(3, scale(1)).is_ok());
    assert_eq!(m.indices(), vec![0]);
    let tag = m
        .desired
        .borrow()
        .get("pg")
        .and_then(|d| d.modification_tag.clone())
        .unwrap_or_default();
    assert_eq!(tag.index, 2);
}

#[test]
fn duplicate_create_with_same_immutables_updates_else_conflicts() {
    let m = Mem::default();
    let _ = m.run(1, desire_cmd(lrp(1)));
    assert!(m.run(2, desire_cmd(lrp(2))).is_ok());
    assert_eq!(m.indices(), vec![0, 1]);
    let mut other = lrp(2);
    other.rootfs = "preloaded:other".into();
    other.memory_mb = 5;
    let d = m.run(3, desire_cmd(other));
    assert_eq!(kind(&d), RejectionKind::DesiredLrpAlreadyExists as i32);
    assert!(d
        .err()
        .map(|r| r.message)
        .unwrap_or_default()
        .ends_with("differ: rootfs, memory_mb"));
}

#[test]
fn kill_replaces_the_instance_with_a_new_epoch() {
    let m = Mem::default();
    let _ = m.run(1, desire_cmd(lrp(2)));
    let before = m
        .actual
        .borrow()
        .get(&("pg".to_string(), 1))
        .cloned()
        .unwrap_or_default();
    let kill = pb::command::Kind::RetireActualLrp(pb::RetireActualLrp {
        process_guid: "pg".into(),
        index: 1,
    });
    assert!(m.run(2, kill.clone()).is_ok());
    let after = m
        .actual
        .borrow()
        .get(&("pg".to_string(), 1))
        .cloned()
        .unwrap_or_default();
    assert_ne!(before.modification_tag, after.modification_tag);
    assert_eq!(after.since, 2000);
    let missing = pb::command::Kind::RetireActualLrp(pb::RetireActualLrp {
        process_guid: "pg".into(),
        index: 9,
    });
    assert_eq!(kind(&m.run(3, missing)), RejectionKind::ActualLrpIndexNotFound as i32);
}

#[test]
fn delete_removes_everything_and_unknown_is_not_found() {
    let m = Mem::default();
    let _ = m.run(1, desire_cmd(lrp(3)));
    let rm = pb::command::Kind::RemoveDesiredLrp(pb::RemoveDesiredLrp {
        process_guid: "pg".into(),
    });
    assert!(m.run(2, rm.clone()).is_ok());
    assert!(m.indices().is_empty());
    assert_eq!(kind(&m.run(3, rm)), RejectionKind::DesiredLrpNotFound as i32);
    assert_eq!(kind(&m.run(4, scale(1))), RejectionKind::DesiredLrpNotFound as i32);
}

#[test]
fn invalid_input_is_rejected_without_events() {
    let m = Mem::default();
    let mut bad = lrp(1);
    bad.rootfs = String::new();
    assert_eq!(kind(&m.run(1, desire_cmd(bad))), RejectionKind::InvalidLrp as i32);
    let _ = m.run(2, desire_cmd(lrp(1)));
    assert_eq!(kind(&m.run(3, scale(-1))), RejectionKind::InvalidRequest as i32);
    assert_eq!(m.indices(), vec![0]);
}

fn at(m: &Mem, i: u32) -> pb::ActualLrp {
    m.actual
        .borrow()
        .get(&("pg".to_string(), i))
        .cloned()
        .unwrap_or_default()
}

fn register(m: &Mem, id: &str) {
    let cell = pb::Cell {
        cell_id: id.into(),
        ..Default::default()
    };
    assert!(m
        .run(
            100,
            pb::command::Kind::RegisterCell(pb::RegisterCell { cell: Some(cell) })
        )
        .is_ok());
}

fn placement(m: &Mem, i: u32, cell: &str) -> pb::Placement {
    pb::Placement {
        process_guid: "pg".into(),
        index: i,
        epoch: at(m, i).modification_tag.map(|t| t.epoch).unwrap_or_default(),
        cell_id: cell.into(),
    }
}

fn key_of(a: &pb::ActualLrp) -> pb::ActualLrpKey {
    pb::ActualLrpKey {
        process_guid: a.process_guid.clone(),
        index: a.index,
        instance_guid: a.instance_guid.clone(),
        cell_id: a.cell_id.clone(),
    }
}

#[test]
fn placement_claims_only_the_instance_seen_on_a_registered_cell() {
    let m = Mem::default();
    let _ = m.run(1, desire_cmd(lrp(2)));
    register(&m, "c1");
    let stale = pb::Placement {
        epoch: "not-the-epoch".into(),
        ..placement(&m, 1, "c1")
    };
    let place = pb::PlaceActualLrps {
        placements: vec![placement(&m, 0, "c1"), stale, placement(&m, 1, "nope")],
        failures: vec![],
    };
    assert!(m.run(2, pb::command::Kind::PlaceActualLrps(place)).is_ok());
    let a0 = at(&m, 0);
    assert_eq!((a0.state, a0.cell_id.as_str()), (ActualLrpState::Claimed as i32, "c1"));
    assert!(!a0.instance_guid.is_empty());
    assert_eq!(at(&m, 1).state, ActualLrpState::Unclaimed as i32);
}

#[test]
fn reports_start_and_crash_through_the_lifecycle() {
    let m = Mem::default();
    let _ = m.run(1, desire_cmd(lrp(1)));
    register(&m, "c1");
    let place = pb::PlaceActualLrps {
        placements: vec![placement(&m, 0, "c1")],
        failures: vec![],
    };
    let _ = m.run(2, pb::command::Kind::PlaceActualLrps(place));
    let claimed = at(&m, 0);
    let started = pb::ReportActualLrps {
        started: vec![pb::StartedActualLrp {
            key: Some(key_of(&claimed)),
            address: "127.0.0.1".into(),
            ports: vec![pb::PortMapping {
                container_port: 8080,
                host_port: 61000,
            }],
        }],
        crashed: vec![],
    };
    let _ = m.run(3, pb::command::Kind::ReportActualLrps(started.clone()));
    let running = at(&m, 0);
    assert_eq!((running.state, running.since), (ActualLrpState::Running as i32, 3000));
    let crashed = pb::ReportActualLrps {
        started: vec![],
        crashed: vec![pb::CrashedActualLrp {
            key: Some(key_of(&running)),
            reason: "exit status 1".into(),
        }],
    };
    let _ = m.run(4, pb::command::Kind::ReportActualLrps(crashed));
    let restarted = at(&m, 0);
    assert_eq!(
        (restarted.state, restarted.crash_count),
        (ActualLrpState::Unclaimed as i32, 1)
    );
    // A late "started" for the old instance does not revive it.
    let _ = m.run(5, pb::command::Kind::ReportActualLrps(started));
    assert_eq!(at(&m, 0).state, ActualLrpState::Unclaimed as i32);
}

#[test]
fn convergence_ops_are_rechecked() {
    let m = Mem::default();
    let _ = m.run(1, desire_cmd(lrp(2)));
    register(&m, "c1");
    let place = pb::PlaceActualLrps {
        placements: vec![placement(&m, 0, "c1")],
        failures: vec![],
    };
    let _ = m.run(2, pb::command::Kind::PlaceActualLrps(place));
    let a0 = at(&m, 0);
    let epoch = a0.modification_tag.clone().map(|t| t.epoch).unwrap_or_default();
    let lost = |e: &str| pb::ConvergenceOp {
        kind: ConvergenceOpKind::ReplaceLost as i32,
        process_guid: "pg".into(),
        index: 0,
        epoch: e.into(),
    };
    // The cell is still registered: not lost, nothing happens.
    let _ = m.run(
        3,
        pb::command::Kind::ConvergeLrps(pb::ConvergeLrps {
            ops: vec![lost(&epoch)],
        }),
    );
    assert_eq!(at(&m, 0), a0);
    let _ = m.run(
        4,
        pb::command::Kind::RemoveCell(pb::RemoveCell {
            cell_id: "c1".into(),
            reason: "ttl".into(),
        }),
    );
    let _ = m.run(
        5,
        pb::command::Kind::ConvergeLrps(pb::ConvergeLrps {
            ops: vec![lost(&epoch)],
        }),
    );
    let replaced = at(&m, 0);
    assert_eq!(replaced.state, ActualLrpState::Unclaimed as i32);
    assert_ne!(replaced.modification_tag.map(|t| t.epoch), Some(epoch));
}

fn definition(alias: &str) -> pb::command::Kind {
    pb::command::Kind::CreateTaskDefinition(pb::CreateTaskDefinition {
        definition: Some(pb::TaskDefinition {
            alias: alias.into(),
            group_name: "testing".into(),
            image: "ubuntu:latest".into(),
            command: "echo hi".into(),
            memory: 512,
            ..Default::default()
        }),
    })
}

#[test]
fn task_definitions_create_update_delete_with_unique_aliases() {
    let m = Mem::default();
    assert!(m.run(1, definition("a")).is_ok());
    let id = m.defs.borrow().keys().next().cloned().unwrap_or_default();
    assert!(id.starts_with("testing-") && id.len() == "testing-".len() + 36, "{id}");
    assert_eq!(
        kind(&m.run(2, definition("a"))),
        RejectionKind::DefinitionAliasTaken as i32
    );
    assert!(m.run(3, definition("b")).is_ok());
    let rename = |alias: &str| {
        pb::command::Kind::UpdateTaskDefinition(pb::UpdateTaskDefinition {
            definition_id: id.clone(),
            alias: alias.into(),
            ..Default::default()
        })
    };
    assert_eq!(kind(&m.run(4, rename("b"))), RejectionKind::DefinitionAliasTaken as i32);
    assert!(m.run(5, rename("c")).is_ok());
    let d = m.defs.borrow().get(&id).cloned().unwrap_or_default();
    assert_eq!(
        (d.alias.as_str(), d.command.as_str(), d.updated_at),
        ("c", "echo hi", 5000)
    );
    let delete = pb::command::Kind::DeleteTaskDefinition(pb::DeleteTaskDefinition {
        definition_id: id.clone(),
    });
    assert!(m.run(6, delete.clone()).is_ok());
    assert_eq!(kind(&m.run(7, delete)), RejectionKind::DefinitionNotFound as i32);
    let mut invalid = definition("x");
    if let pb::command::Kind::CreateTaskDefinition(c) = &mut invalid {
        if let Some(d) = c.definition.as_mut() {
            d.image.clear();
        }
    }
    assert_eq!(kind(&m.run(8, invalid)), RejectionKind::InvalidDefinition as i32);
}

mod cf;
mod cf_env;
mod mem;
mod runs;

use mem::{cf_key, Mem};

fn revoke(jtis: &[(&str, i64)]) -> pb::command::Kind {
    pb::command::Kind::RevokeTokens(pb::RevokeTokens {
        revocations: jtis
            .iter()
            .map(|(j, e)| pb::TokenRevocation {
                jti: (*j).into(),
                expires_at_ns: *e,
            })
            .collect(),
    })
}

#[test]
fn a_revocation_lasts_until_its_token_expires_then_is_pruned() {
    let m = Mem::default();
    // seed 1 → now = 1,000 ns.
    let d = m.run(1, revoke(&[("a", 5_000), ("a", 5_000), ("old", 500)]));
    assert_eq!(d.as_ref().map(Vec::len), Ok(1), "{d:?}");
    assert!(m.revoked.borrow().contains_key("a"));
    assert!(
        !m.revoked.borrow().contains_key("old"),
        "already expired: nothing to revoke"
    );
    assert_eq!(
        m.run(2, revoke(&[("a", 5_000)])),
        Ok(vec![]),
        "revoking twice changes nothing"
    );
    assert!(m.run(3, revoke(&[("b", 9_000)])).is_ok());
    // seed 6 → now = 6,000 ns: "a" has expired and goes with the next revocation.
    let d = m.run(6, revoke(&[("c", 9_000)]));
    let Ok(events) = d else { panic!("{d:?}") };
    let Some(Ev::TokensRevoked(t)) = &events[0].kind else {
        panic!("{events:?}")
    };
    assert_eq!(t.expired.iter().map(|r| r.jti.as_str()).collect::<Vec<_>>(), ["a"]);
    assert_eq!(m.revoked.borrow().keys().cloned().collect::<Vec<_>>(), ["b", "c"]);
    assert_ne!(kind(&m.run(7, revoke(&[]))), 0, "an empty revocation is refused");
    assert_ne!(kind(&m.run(8, revoke(&[("", 9_000)]))), 0, "an empty id is refused");
}
