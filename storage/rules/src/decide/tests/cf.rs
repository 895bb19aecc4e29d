//! Decide for the CF V3 commands against the in-memory view of `mod.rs`: the resources, the
//! manifest, and the mapping of a started app's processes onto DesiredLRPs in `cf-apps`.

use super::*;
use pb::command::Kind as C;

fn guid_of<T>(events: &[pb::Event], pick: impl Fn(&Ev) -> Option<T>) -> T {
    events
        .iter()
        .find_map(|e| e.kind.as_ref().and_then(&pick))
        .expect("the event")
}

/// An org, a space, and an applied manifest with a web and a worker process: (space, app guid).
pub(super) fn manifest_app(m: &Mem) -> (String, String) {
    let e = m
        .run(
            1,
            C::CreateCfOrganization(pb::CreateCfOrganization {
                name: "org".into(),
                metadata: None,
            }),
        )
        .unwrap();
    let org = guid_of(&e, |k| match k {
        Ev::CfOrganizationChanged(c) => c.after.as_ref().map(|o| o.guid.clone()),
        _ => None,
    });
    let e = m
        .run(
            2,
            C::CreateCfSpace(pb::CreateCfSpace {
                name: "dev".into(),
                organization_guid: org,
                metadata: None,
            }),
        )
        .unwrap();
    let space = guid_of(&e, |k| match k {
        Ev::CfSpaceChanged(c) => c.after.as_ref().map(|o| o.guid.clone()),
        _ => None,
    });
    let manifest = pb::ApplyCfManifest {
        space_guid: space.clone(),
        applications: vec![pb::CfManifestApp {
            name: "shop".into(),
            docker_image: None,
            processes: vec![
                pb::CfManifestProcess {
                    r#type: "web".into(),
                    command: Some("serve".into()),
                    instances: Some(1),
                    memory_in_mb: Some(128),
                    ..Default::default()
                },
                pb::CfManifestProcess {
                    r#type: "worker".into(),
                    command: Some("work".into()),
                    instances: Some(2),
                    health_check_type: Some("process".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
    };
    let e = m.run(3, C::ApplyCfManifest(manifest)).unwrap();
    assert!(e.iter().any(
        |e| matches!(&e.kind, Some(Ev::CfJobRecorded(j)) if j.job.as_ref().is_some_and(|j| j.state == "COMPLETE"))
    ));
    let app = m.cf_named(pb::CfKind::App, &space, "shop").unwrap().expect("the app");
    (space, app)
}

/// Starts or stops an app (entry `seed`).
pub(super) fn set_state(m: &Mem, seed: u64, app: &str, started: bool) {
    m.run(
        seed,
        C::SetCfAppState(pb::SetCfAppState {
            app_guid: app.to_owned(),
            started,
            restart: false,
        }),
    )
    .unwrap();
}

pub(super) fn process(m: &Mem, app: &str, t: &str) -> pb::CfProcess {
    let g = m.cf_named(pb::CfKind::Process, app, t).unwrap().expect("the process");
    m.cf_process(&g).unwrap().expect("the process")
}

#[test]
fn a_started_app_runs_its_processes_as_cf_apps_lrps_and_stop_removes_them() {
    let m = Mem::default();
    let (_, app) = manifest_app(&m);
    assert!(m.desired.borrow().is_empty(), "a STOPPED app desires nothing");
    set_state(&m, 4, &app, true);
    let web = process(&m, &app, "web");
    let worker = process(&m, &app, "worker");
    {
        let desired = m.desired.borrow();
        let d = desired
            .get(&format!("{}-{}", web.guid, web.version))
            .expect("web's LRP");
        assert_eq!((d.domain.as_str(), d.instances, d.memory_mb), ("cf-apps", 1, 128));
        assert_eq!(
            desired
                .get(&format!("{}-{}", worker.guid, worker.version))
                .map(|d| d.instances),
            Some(2)
        );
    }
    assert_eq!(m.actual.borrow().len(), 3);

    m.run(
        5,
        C::ScaleCfProcess(pb::ScaleCfProcess {
            process_guid: web.guid.clone(),
            instances: Some(3),
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(m.actual.borrow().len(), 5);
    let lrp = format!("{}-{}", web.guid, web.version);
    assert_eq!(m.desired.borrow().get(&lrp).map(|d| d.instances), Some(3));

    let before = m.actual(&lrp, 1).unwrap().expect("index 1").modification_tag;
    m.run(
        6,
        C::TerminateCfInstance(pb::TerminateCfInstance {
            process_guid: web.guid.clone(),
            index: 1,
        }),
    )
    .unwrap();
    let after = m.actual(&lrp, 1).unwrap().expect("index 1 again");
    assert_ne!(
        after.modification_tag, before,
        "terminate retires the instance; the index is desired again"
    );
    assert_eq!(
        kind(&m.run(
            7,
            C::TerminateCfInstance(pb::TerminateCfInstance {
                process_guid: web.guid.clone(),
                index: 3
            })
        )),
        RejectionKind::CfNotFound as i32
    );

    set_state(&m, 8, &app, false);
    assert!(m.desired.borrow().is_empty() && m.actual.borrow().is_empty());
    assert_eq!(process(&m, &app, "web").instances, 3, "stop keeps the process's scale");
}

#[test]
fn memory_changes_wait_for_a_restart_and_a_restart_is_a_new_version() {
    let m = Mem::default();
    let (_, app) = manifest_app(&m);
    set_state(&m, 4, &app, true);
    let web = process(&m, &app, "web");
    m.run(
        5,
        C::ScaleCfProcess(pb::ScaleCfProcess {
            process_guid: web.guid.clone(),
            memory_in_mb: Some(512),
            ..Default::default()
        }),
    )
    .unwrap();
    let lrp = format!("{}-{}", web.guid, web.version);
    assert_eq!(m.desired.borrow().get(&lrp).map(|d| d.memory_mb), Some(128));
    set_state(&m, 6, &app, false);
    set_state(&m, 7, &app, true);
    let again = process(&m, &app, "web");
    assert_ne!(again.version, web.version);
    let lrp = format!("{}-{}", again.guid, again.version);
    assert_eq!(m.desired.borrow().get(&lrp).map(|d| d.memory_mb), Some(512));
}

#[test]
fn names_are_unique_per_parent_and_deletes_cascade() {
    let m = Mem::default();
    let (space, app) = manifest_app(&m);
    let dup = m.run(
        4,
        C::CreateCfApp(pb::CreateCfApp {
            name: "shop".into(),
            space_guid: space.clone(),
            docker_image: String::new(),
            metadata: None,
        }),
    );
    assert_eq!(kind(&dup), RejectionKind::CfUnprocessable as i32);
    assert!(matches!(&dup, Err(r) if r.message == "App with the name 'shop' already exists."));
    set_state(&m, 5, &app, true);
    let e = m
        .run(
            6,
            C::DeleteCfResource(pb::DeleteCfResource {
                kind: pb::CfKind::Space as i32,
                guid: space.clone(),
            }),
        )
        .unwrap();
    assert!(e.iter().any(|e| matches!(&e.kind, Some(Ev::CfJobRecorded(_)))));
    assert!(m.desired.borrow().is_empty() && m.actual.borrow().is_empty());
    let left: Vec<_> = m.cf.borrow().values().map(|r| cf_key(r).0).collect();
    assert_eq!(left, [pb::CfKind::Organization]);
}

#[test]
fn a_process_without_a_command_cannot_start_and_bad_values_are_refused() {
    let m = Mem::default();
    let (space, _) = manifest_app(&m);
    let e = m
        .run(
            4,
            C::CreateCfApp(pb::CreateCfApp {
                name: "bare".into(),
                space_guid: space,
                docker_image: String::new(),
                metadata: None,
            }),
        )
        .unwrap();
    let app = guid_of(&e, |k| match k {
        Ev::CfAppChanged(c) => c.after.as_ref().map(|a| a.guid.clone()),
        _ => None,
    });
    let start = m.run(
        5,
        C::SetCfAppState(pb::SetCfAppState {
            app_guid: app.clone(),
            started: true,
            restart: false,
        }),
    );
    assert_eq!(kind(&start), RejectionKind::CfUnprocessable as i32);
    let web = process(&m, &app, "web");
    let big = m.run(
        6,
        C::UpdateCfProcess(pb::UpdateCfProcess {
            process_guid: web.guid.clone(),
            health_check: Some(pb::CfHealthCheckPatch {
                has_timeout: true,
                timeout: Some(181),
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    assert!(matches!(&big, Err(r) if r.message == "health_check_timeout Maximum exceeded: max 180s"));
    let http = m.run(
        7,
        C::UpdateCfProcess(pb::UpdateCfProcess {
            process_guid: web.guid.clone(),
            health_check: Some(pb::CfHealthCheckPatch {
                r#type: Some("http".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    assert_eq!(kind(&http), RejectionKind::CfUnprocessable as i32);
    let scale = m.run(
        8,
        C::ScaleCfProcess(pb::ScaleCfProcess {
            process_guid: web.guid,
            instances: Some(-1),
            ..Default::default()
        }),
    );
    assert!(matches!(&scale, Err(r) if r.message == "Instances must be greater than or equal to 0"));
}

#[test]
fn receptor_writes_to_a_cf_process_lrp_are_refused_and_cf_keeps_writing_it() {
    let m = Mem::default();
    let (_, app) = manifest_app(&m);
    set_state(&m, 4, &app, true);
    let web = process(&m, &app, "web");
    let lrp = format!("{}-{}", web.guid, web.version);
    let existing = m.desired.borrow().get(&lrp).cloned().expect("web's LRP");
    let owned = RejectionKind::OwnedByCf as i32;
    let update = C::UpdateDesiredLrp(pb::UpdateDesiredLrp {
        process_guid: lrp.clone(),
        update: Some(pb::DesiredLrpUpdate {
            instances: Some(0),
            ..Default::default()
        }),
    });
    let remove = C::RemoveDesiredLrp(pb::RemoveDesiredLrp {
        process_guid: lrp.clone(),
    });
    for (n, command) in [(5, update), (6, remove), (7, desire_cmd(existing))] {
        let decided = m.run(n, command);
        assert_eq!(kind(&decided), owned, "{decided:?}");
        let message = decided.err().map(|r| r.message).unwrap_or_default();
        assert!(message.contains(&web.guid) && message.contains("shop"), "{message}");
    }
    assert_eq!(m.desired.borrow().get(&lrp).map(|d| d.instances), Some(1), "unchanged");
    // CF's own commands still change it
    m.run(
        8,
        C::ScaleCfProcess(pb::ScaleCfProcess {
            process_guid: web.guid.clone(),
            instances: Some(2),
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(m.desired.borrow().get(&lrp).map(|d| d.instances), Some(2));
    // a name CF will use when the app restarts is CF's too, before its LRP exists
    assert!(lrp::cf_owner(&m, &lrp).unwrap().is_some());
    assert!(lrp::cf_owner(&m, "not-a-cf-process").unwrap().is_none());
    assert!(lrp::cf_owner(&m, &format!("{}-other-version", web.guid))
        .unwrap()
        .is_none());
}
