//! An app's environment variables (manifest `env`, the environment_variables PATCH) and the
//! rolling restart that takes them to the instances, one index at a time.

use super::cf::{manifest_app, process, set_state};
use super::*;
use pb::command::Kind as C;

fn env_patch(app: &str, set: &[(&str, &str)], removed: &[&str]) -> C {
    C::UpdateCfResource(pb::UpdateCfResource {
        kind: pb::CfKind::App as i32,
        guid: app.to_owned(),
        environment_variables: Some(pb::CfEnvPatch {
            set: set.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            removed: removed.iter().map(|k| (*k).to_owned()).collect(),
        }),
        ..Default::default()
    })
}

fn restart(app: &str) -> C {
    C::SetCfAppState(pb::SetCfAppState {
        app_guid: app.to_owned(),
        started: true,
        restart: true,
    })
}

/// The value of `name` in a DesiredLRP's env.
fn env_of(d: &pb::DesiredLrp, name: &str) -> Option<String> {
    d.env.iter().find(|e| e.name == name).map(|e| e.value.clone())
}

/// Marks every instance of `lrp` RUNNING (as the cells' reports would).
fn all_running(m: &Mem, lrp: &str) {
    for ((g, _), a) in m.actual.borrow_mut().iter_mut() {
        if g == lrp {
            a.state = ActualLrpState::Running as i32;
        }
    }
}

fn lrp_of(p: &pb::CfProcess) -> String {
    format!("{}-{}", p.guid, p.version)
}

#[test]
fn env_names_cc_refuses_are_refused_and_a_patch_merges() {
    let m = Mem::default();
    let (_, app) = manifest_app(&m);
    for (bad, message) in [
        ("VCAP_SERVICES", "Var cannot start with VCAP_"),
        ("vcap_x", "Var cannot start with VCAP_"),
        ("VMC_X", "Var cannot start with VMC_"),
        ("PORT", "Var cannot set PORT"),
        ("", "Var key must be a minimum length of 1"),
    ] {
        let r = m.run(10, env_patch(&app, &[(bad, "x")], &[])).expect_err(bad);
        assert_eq!(
            (r.kind, r.message.as_str()),
            (RejectionKind::CfUnprocessable as i32, message)
        );
    }
    m.run(11, env_patch(&app, &[("A", "1"), ("B", "2")], &[])).expect("set");
    m.run(12, env_patch(&app, &[("C", "3")], &["A"])).expect("merge");
    let a = m.cf_app(&app).unwrap().expect("app");
    let env: Vec<(&str, &str)> = a
        .environment_variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("B", "2"), ("C", "3")]);
}

#[test]
fn the_env_reaches_new_containers_only_and_a_restart_rolls_one_index_at_a_time() {
    let m = Mem::default();
    let (_, app) = manifest_app(&m);
    m.run(4, env_patch(&app, &[("DB_URL", "one"), ("MEMORY_LIMIT", "9m")], &[]))
        .expect("set");
    set_state(&m, 5, &app, true);
    let web = process(&m, &app, "web");
    m.run(
        6,
        C::ScaleCfProcess(pb::ScaleCfProcess {
            process_guid: web.guid.clone(),
            instances: Some(3),
            ..Default::default()
        }),
    )
    .expect("scale");
    let old = lrp_of(&web);
    {
        let d = m.desired.borrow()[&old].clone();
        assert_eq!(env_of(&d, "DB_URL").as_deref(), Some("one"));
        assert_eq!(
            env_of(&d, "MEMORY_LIMIT").as_deref(),
            Some("128m"),
            "the platform's variable wins"
        );
    }
    // a change restarts nothing by itself
    m.run(7, env_patch(&app, &[("DB_URL", "two")], &[])).expect("change");
    assert_eq!(env_of(&m.desired.borrow()[&old], "DB_URL").as_deref(), Some("one"));

    m.run(8, restart(&app)).expect("restart");
    let web = process(&m, &app, "web");
    let new = lrp_of(&web);
    assert_eq!(format!("{}-{}", web.guid, web.previous_version), old);
    let instances = |g: &str| m.desired.borrow().get(g).map(|d| d.instances);
    assert_eq!((instances(&new), instances(&old)), (Some(1), Some(3)));
    assert_eq!(env_of(&m.desired.borrow()[&new], "DB_URL").as_deref(), Some("two"));
    assert!(
        !crate::decide::cf_rollout_due(&m, &web).unwrap(),
        "nothing new runs yet"
    );

    // each step: the new version runs all it has → one more; the old keeps what is not yet new
    let steps = [(Some(2), Some(2)), (Some(3), Some(1)), (Some(3), None)];
    for (seed, (new_after, old_after)) in (9..).zip(steps) {
        all_running(&m, &new);
        all_running(&m, &old);
        let web = process(&m, &app, "web");
        assert!(crate::decide::cf_rollout_due(&m, &web).unwrap());
        m.run(
            seed,
            C::StepCfRollout(pb::StepCfRollout {
                process_guid: web.guid.clone(),
            }),
        )
        .expect("step");
        assert_eq!((instances(&new), instances(&old)), (new_after, old_after));
        let running_or_desired = instances(&new).unwrap_or(0) + instances(&old).unwrap_or(0);
        assert!(running_or_desired >= 3, "the app never has fewer than its 3 instances");
    }
    let web = process(&m, &app, "web");
    assert!(web.previous_version.is_empty(), "the rollout is over");
    assert!(!crate::decide::cf_rollout_due(&m, &web).unwrap());
    assert!(m
        .actual
        .borrow()
        .keys()
        .all(|(g, _)| !g.starts_with(&web.guid) || *g == new));
}

#[test]
fn stopping_an_app_mid_rollout_removes_both_versions_and_ends_it() {
    let m = Mem::default();
    let (_, app) = manifest_app(&m);
    set_state(&m, 4, &app, true);
    let before = lrp_of(&process(&m, &app, "web"));
    m.run(5, restart(&app)).expect("restart");
    let web = process(&m, &app, "web");
    assert!(m.desired.borrow().contains_key(&before) && m.desired.borrow().contains_key(&lrp_of(&web)));
    // the old version's LRP is CF's too: Receptor may not touch it
    assert!(crate::decide::cf_owner(&m, &before).unwrap().is_some());
    set_state(&m, 6, &app, false);
    assert!(m.desired.borrow().keys().all(|g| !g.starts_with(&web.guid)));
    let web = process(&m, &app, "web");
    assert!(
        crate::decide::cf_rollout_due(&m, &web).unwrap(),
        "a rollout whose versions are gone is due to end"
    );
    m.run(
        7,
        C::StepCfRollout(pb::StepCfRollout {
            process_guid: web.guid.clone(),
        }),
    )
    .expect("step");
    assert!(process(&m, &app, "web").previous_version.is_empty());
}

#[test]
fn secrets_are_hidden_from_who_may_not_read_them() {
    let m = Mem::default();
    let (_, app) = manifest_app(&m);
    m.run(4, env_patch(&app, &[("TOKEN", "s3cret")], &[])).expect("set");
    set_state(&m, 5, &app, true);
    let web = process(&m, &app, "web");
    let mut d = m.desired.borrow()[&lrp_of(&web)].clone();
    crate::cf::hide_app_env(&mut d);
    assert_eq!(env_of(&d, "TOKEN").as_deref(), Some(crate::cf::PRIVATE_DATA_HIDDEN));
    assert!(env_of(&d, "VCAP_APPLICATION").is_some_and(|v| v.contains(&app)));
    let events = m.run(6, env_patch(&app, &[("TOKEN", "n3w")], &[])).expect("change");
    for mut e in events {
        crate::cf::hide_secrets(&mut e);
        assert!(!format!("{e:?}").contains("s3cret") && !format!("{e:?}").contains("n3w"));
    }
}
