//! The commands the replay properties generate: every kind of command, with guids that point at
//! what the state holds when they are applied (`concretize`), so most of them are accepted.

use capstan_storage::{pb, StateMachine};
use proptest::prelude::*;

pub fn lrp(guid: &str, domain: &str, instances: i32) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: domain.into(),
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

pub fn command() -> impl Strategy<Value = pb::command::Kind> {
    use pb::command::Kind;
    let guid = prop::sample::select(vec!["a", "b", "c"]);
    let domain = prop::sample::select(vec!["d1", "d2"]);
    prop_oneof![
        (guid.clone(), domain.clone(), -1i32..6).prop_map(|(g, d, n)| Kind::DesireLrp(pb::DesireLrp {
            desired_lrp: Some(lrp(g, d, n))
        })),
        (guid.clone(), -1i32..6).prop_map(|(g, n)| Kind::UpdateDesiredLrp(pb::UpdateDesiredLrp {
            process_guid: g.into(),
            update: Some(pb::DesiredLrpUpdate {
                instances: Some(n),
                ..Default::default()
            })
        })),
        guid.clone()
            .prop_map(|g| Kind::RemoveDesiredLrp(pb::RemoveDesiredLrp { process_guid: g.into() })),
        (guid, 0u32..6).prop_map(|(g, i)| Kind::RetireActualLrp(pb::RetireActualLrp {
            process_guid: g.into(),
            index: i
        })),
        // Entries are 1 ms apart: some revocations expire within the run and are pruned.
        (prop::sample::select(vec!["j1", "j2", "j3-r"]), 0i64..60).prop_map(|(j, ms)| Kind::RevokeTokens(
            pb::RevokeTokens {
                revocations: vec![pb::TokenRevocation {
                    jti: j.into(),
                    expires_at_ns: ms * 1_000_000,
                }],
            }
        )),
        (domain, 0u32..3).prop_map(|(d, t)| Kind::BumpFreshDomain(pb::BumpFreshDomain {
            domain: d.into(),
            ttl_in_seconds: t
        })),
        prop::sample::select(vec!["c1", "c2"]).prop_map(|c| Kind::RegisterCell(pb::RegisterCell {
            cell: Some(pb::Cell {
                cell_id: c.into(),
                pool: "default".into(),
                api_addr: format!("{c}:7071"),
                preloaded_stacks: vec!["cflinuxfs4".into()],
                capacity: Some(pb::CellCapacity {
                    memory_mb: 1024,
                    disk_mb: 1024,
                    containers: 10,
                }),
                ..Default::default()
            })
        })),
        prop::sample::select(vec!["c1", "c2"]).prop_map(|c| Kind::RemoveCell(pb::RemoveCell {
            cell_id: c.into(),
            reason: "ttl".into()
        })),
        (
            prop::sample::select(vec!["x", "y"]),
            prop::sample::select(vec!["g1", "g2"])
        )
            .prop_map(|(a, g)| {
                Kind::CreateTaskDefinition(pb::CreateTaskDefinition {
                    definition: Some(pb::TaskDefinition {
                        alias: a.into(),
                        group_name: g.into(),
                        image: "ubuntu:latest".into(),
                        command: "echo hi".into(),
                        memory: 64,
                        ..Default::default()
                    }),
                })
            }),
        // Placeholders: filled from the live state when the log is built (see `concretize`).
        Just(Kind::PlaceActualLrps(pb::PlaceActualLrps::default())),
        Just(Kind::ReportActualLrps(pb::ReportActualLrps::default())),
        Just(Kind::ConvergeLrps(pb::ConvergeLrps::default())),
        Just(Kind::UpdateTaskDefinition(pb::UpdateTaskDefinition::default())),
        Just(Kind::DeleteTaskDefinition(pb::DeleteTaskDefinition::default())),
        Just(Kind::ExecuteTask(pb::ExecuteTask::default())),
        Just(Kind::PlaceTaskRuns(pb::PlaceTaskRuns::default())),
        Just(Kind::ReportTaskRuns(pb::ReportTaskRuns::default())),
        Just(Kind::StopTaskRun(pb::StopTaskRun::default())),
        (
            prop::sample::select(vec!["t1", "t2", "t3"]),
            prop::sample::select(vec![64, 4096]),
            any::<bool>()
        )
            .prop_map(|(guid, memory_mb, callback)| Kind::DesireTask(pb::DesireTask {
                task_guid: guid.into(),
                memory_mb,
                env: vec![],
                task: Some(pb::ReceptorTask {
                    domain: "d1".into(),
                    rootfs: "preloaded:cflinuxfs4".into(),
                    action: lrp("x", "d1", 1).action,
                    result_file: "r".into(),
                    completion_callback_url: if callback {
                        "http://127.0.0.1:9/cb".into()
                    } else {
                        String::new()
                    },
                    ..Default::default()
                }),
            })),
        prop::sample::select(vec!["t1", "t2", "t3"])
            .prop_map(|g| Kind::ResolveTask(pb::ResolveTask { task_guid: g.into() })),
        prop::sample::select(vec!["t1", "t2", "t3"])
            .prop_map(|g| Kind::MarkTaskResolving(pb::MarkTaskResolving { task_guid: g.into() })),
        prop::sample::select(vec!["o1", "o2"]).prop_map(|n| Kind::CreateCfOrganization(pb::CreateCfOrganization {
            name: n.into(),
            metadata: None,
        })),
        Just(Kind::CreateCfSpace(pb::CreateCfSpace::default())),
        Just(Kind::CreateCfApp(pb::CreateCfApp::default())),
        (0i32..3, any::<bool>()).prop_map(|(n, docker)| Kind::ApplyCfManifest(pb::ApplyCfManifest {
            space_guid: String::new(),
            applications: vec![pb::CfManifestApp {
                name: "shop".into(),
                docker_image: docker.then(|| "busybox".into()),
                processes: vec![
                    pb::CfManifestProcess {
                        r#type: "web".into(),
                        command: Some("serve".into()),
                        instances: Some(n),
                        ..Default::default()
                    },
                    pb::CfManifestProcess {
                        r#type: "worker".into(),
                        command: Some("work".into()),
                        instances: Some(1),
                        memory_in_mb: Some(64 << n),
                        ..Default::default()
                    },
                ],
                // a manifest's env changes the app (and reaches containers on the next restart)
                env: std::iter::once(("N".to_owned(), n.to_string())).collect(),
                env_removed: if docker { vec!["N".into()] } else { vec![] },
            }],
        })),
        (any::<bool>(), any::<bool>()).prop_map(|(started, restart)| Kind::SetCfAppState(pb::SetCfAppState {
            app_guid: String::new(),
            started,
            restart,
        })),
        Just(Kind::StepCfRollout(pb::StepCfRollout {
            process_guid: String::new(),
        })),
        (-1i32..4).prop_map(|n| Kind::ScaleCfProcess(pb::ScaleCfProcess {
            process_guid: String::new(),
            instances: Some(n),
            ..Default::default()
        })),
        (0u32..3).prop_map(|index| Kind::TerminateCfInstance(pb::TerminateCfInstance {
            process_guid: String::new(),
            index,
        })),
        prop::sample::select(vec![pb::CfKind::App, pb::CfKind::Space]).prop_map(|k| Kind::DeleteCfResource(
            pb::DeleteCfResource {
                kind: k as i32,
                guid: String::new(),
            }
        )),
    ]
}

/// The guid of the `seed`-th CF resource of a kind in `sm`, or "none".
pub fn cf_guid<T: capstan_storage::views::CfRow + 'static>(sm: &StateMachine, seed: u64) -> String {
    let guids: Vec<String> = sm
        .views()
        .cf_rows::<T>(false, false)
        .filter_map(Result::ok)
        .map(|r| r.guid().to_owned())
        .collect();
    guids
        .get(usize::try_from(seed).unwrap_or(0) % guids.len().max(1))
        .cloned()
        .unwrap_or_else(|| "none".into())
}

/// Turns a placeholder into a command about instances that exist in `sm` right now, the way the
/// scheduler, a cell and the converger build theirs from the views.
pub fn concretize(sm: &StateMachine, kind: pb::command::Kind, seed: u64) -> pb::command::Kind {
    use pb::command::Kind;
    let actuals: Vec<pb::ActualLrp> = sm.views().actual_lrps(None, None).filter_map(Result::ok).collect();
    let cells = ["c1", "c2"];
    let runs: Vec<pb::TaskRun> = sm.views().task_runs().filter_map(Result::ok).collect();
    use pb::TaskRunStatus as S;
    let status = |r: &pb::TaskRun| S::try_from(r.status).unwrap_or(S::Unspecified);
    let key = |a: &pb::ActualLrp| pb::ActualLrpKey {
        process_guid: a.process_guid.clone(),
        index: a.index,
        instance_guid: a.instance_guid.clone(),
        cell_id: a.cell_id.clone(),
    };
    let epoch = |a: &pb::ActualLrp| a.modification_tag.clone().map(|t| t.epoch).unwrap_or_default();
    match kind {
        Kind::PlaceActualLrps(_) => Kind::PlaceActualLrps(pb::PlaceActualLrps {
            placements: actuals
                .iter()
                .filter(|a| a.state == pb::ActualLrpState::Unclaimed as i32)
                .map(|a| pb::Placement {
                    process_guid: a.process_guid.clone(),
                    index: a.index,
                    epoch: epoch(a),
                    cell_id: cells[(seed as usize + a.index as usize) % 2].into(),
                })
                .collect(),
            failures: vec![],
        }),
        Kind::ReportActualLrps(_) => {
            let placed: Vec<&pb::ActualLrp> = actuals.iter().filter(|a| !a.cell_id.is_empty()).collect();
            let (crash, start): (Vec<&pb::ActualLrp>, Vec<&pb::ActualLrp>) = placed
                .into_iter()
                .partition(|a| (seed + u64::from(a.index)).is_multiple_of(3));
            Kind::ReportActualLrps(pb::ReportActualLrps {
                started: start
                    .into_iter()
                    .map(|a| pb::StartedActualLrp {
                        key: Some(key(a)),
                        address: "127.0.0.1".into(),
                        ports: vec![pb::PortMapping {
                            container_port: 8080,
                            host_port: 61000 + a.index,
                        }],
                    })
                    .collect(),
                crashed: crash
                    .into_iter()
                    .map(|a| pb::CrashedActualLrp {
                        key: Some(key(a)),
                        reason: "exit status 1".into(),
                    })
                    .collect(),
            })
        }
        Kind::ConvergeLrps(_) => {
            let fresh = std::collections::BTreeSet::from(["d1".to_string()]);
            let present: std::collections::BTreeSet<String> = sm
                .views()
                .cells()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.cell_id)
                .collect();
            let ctx = capstan_storage::rules::convergence::Context {
                now_ns: i64::MAX / 2,
                fresh_domains: &fresh,
                cells: &present,
            };
            let mut ops = Vec::new();
            for g in ["a", "b", "c"] {
                let d = sm.views().get_desired(g).ok().flatten();
                let mine: Vec<pb::ActualLrp> = actuals.iter().filter(|a| a.process_guid == g).cloned().collect();
                ops.extend(capstan_storage::rules::convergence::plan(g, d.as_ref(), &mine, &ctx));
            }
            Kind::ConvergeLrps(pb::ConvergeLrps { ops })
        }
        Kind::UpdateTaskDefinition(_) => {
            let defs: Vec<pb::TaskDefinition> = sm.views().task_definitions().filter_map(Result::ok).collect();
            let pick = defs.get(usize::try_from(seed).unwrap_or(0) % defs.len().max(1));
            Kind::UpdateTaskDefinition(pb::UpdateTaskDefinition {
                definition_id: pick.map(|d| d.definition_id.clone()).unwrap_or_else(|| "none".into()),
                // Sometimes an alias another definition holds (refused), sometimes a free one.
                alias: ["x", "y", "z"][usize::try_from(seed % 3).unwrap_or(0)].into(),
                command: format!("echo {seed}"),
                ..Default::default()
            })
        }
        Kind::DeleteTaskDefinition(_) => {
            let defs: Vec<pb::TaskDefinition> = sm.views().task_definitions().filter_map(Result::ok).collect();
            let pick = defs.get(usize::try_from(seed).unwrap_or(0) % defs.len().max(1));
            Kind::DeleteTaskDefinition(pb::DeleteTaskDefinition {
                definition_id: pick.map(|d| d.definition_id.clone()).unwrap_or_else(|| "none".into()),
            })
        }
        Kind::ExecuteTask(_) => {
            let defs: Vec<pb::TaskDefinition> = sm.views().task_definitions().filter_map(Result::ok).collect();
            let pick = defs.get(usize::try_from(seed).unwrap_or(0) % defs.len().max(1));
            Kind::ExecuteTask(pb::ExecuteTask {
                definition_id: pick.map(|d| d.definition_id.clone()).unwrap_or_else(|| "none".into()),
                cluster_name: String::new(),
                env_overrides: vec![pb::EnvironmentVariable {
                    name: "K".into(),
                    value: seed.to_string(),
                }],
            })
        }
        Kind::PlaceTaskRuns(_) => Kind::PlaceTaskRuns(pb::PlaceTaskRuns {
            placements: runs
                .iter()
                .filter(|r| matches!(status(r), S::Queued | S::NeedsRetry))
                .map(|r| pb::TaskRunPlacement {
                    run_id: r.run_id.clone(),
                    attempt: r.attempt,
                    cell_id: cells[usize::try_from(seed).unwrap_or(0) % 2].into(),
                })
                .collect(),
        }),
        Kind::ReportTaskRuns(_) => Kind::ReportTaskRuns(pb::ReportTaskRuns {
            reports: runs
                .iter()
                .filter(|r| matches!(status(r), S::Pending | S::Running))
                .map(|r| {
                    let kind = match (status(r), seed % 3) {
                        (_, 0) => pb::TaskRunReportKind::NotStarted,
                        (S::Pending, _) => pb::TaskRunReportKind::Started,
                        _ => pb::TaskRunReportKind::Exited,
                    };
                    pb::TaskRunReport {
                        run_id: r.run_id.clone(),
                        cell_id: r.cell_id.clone(),
                        attempt: r.attempt,
                        kind: kind as i32,
                        exit_code: i32::try_from(seed % 4).unwrap_or(0),
                        reason: "reported".into(),
                        result: if r.receptor.is_some() {
                            format!("result {seed}")
                        } else {
                            String::new()
                        },
                    }
                })
                .collect(),
        }),
        Kind::StopTaskRun(_) => Kind::StopTaskRun(pb::StopTaskRun {
            run_id: runs
                .get(usize::try_from(seed).unwrap_or(0) % runs.len().max(1))
                .map(|r| r.run_id.clone())
                .unwrap_or_else(|| "none".into()),
        }),
        Kind::CreateCfSpace(_) => Kind::CreateCfSpace(pb::CreateCfSpace {
            name: format!("s{}", seed % 2),
            organization_guid: cf_guid::<pb::CfOrganization>(sm, seed),
            metadata: None,
        }),
        Kind::CreateCfApp(_) => Kind::CreateCfApp(pb::CreateCfApp {
            name: format!("a{}", seed % 2),
            space_guid: cf_guid::<pb::CfSpace>(sm, seed),
            docker_image: String::new(),
            metadata: None,
        }),
        Kind::ApplyCfManifest(m) => Kind::ApplyCfManifest(pb::ApplyCfManifest {
            space_guid: cf_guid::<pb::CfSpace>(sm, seed),
            ..m
        }),
        Kind::SetCfAppState(c) => Kind::SetCfAppState(pb::SetCfAppState {
            app_guid: cf_guid::<pb::CfApp>(sm, seed),
            ..c
        }),
        Kind::ScaleCfProcess(c) => Kind::ScaleCfProcess(pb::ScaleCfProcess {
            process_guid: cf_guid::<pb::CfProcess>(sm, seed),
            ..c
        }),
        Kind::TerminateCfInstance(c) => Kind::TerminateCfInstance(pb::TerminateCfInstance {
            process_guid: cf_guid::<pb::CfProcess>(sm, seed),
            ..c
        }),
        Kind::StepCfRollout(_) => Kind::StepCfRollout(pb::StepCfRollout {
            process_guid: cf_guid::<pb::CfProcess>(sm, seed),
        }),
        Kind::DeleteCfResource(c) => Kind::DeleteCfResource(pb::DeleteCfResource {
            guid: if c.kind == pb::CfKind::App as i32 {
                cf_guid::<pb::CfApp>(sm, seed)
            } else {
                cf_guid::<pb::CfSpace>(sm, seed)
            },
            ..c
        }),
        other => other,
    }
}
