//! One sample of every persisted message, built field by field: what `frozen_bytes.rs` encodes and
//! compares with the bytes pinned there.

use capstan_proto::pb;
use prost::Message;

pub fn desired() -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: "web".into(),
        domain: "cf-apps".into(),
        rootfs: "preloaded:cflinuxfs4".into(),
        instances: 3,
        env: vec![pb::EnvironmentVariable {
            name: "A".into(),
            value: "1".into(),
        }],
        setup: None,
        action: Some(pb::Action {
            kind: Some(pb::action::Kind::Timeout(Box::new(pb::TimeoutAction {
                action: Some(Box::new(pb::Action {
                    kind: Some(pb::action::Kind::Run(pb::RunAction {
                        path: "sh".into(),
                        args: vec!["-c".into(), "x".into()],
                        user: "vcap".into(),
                        ..Default::default()
                    })),
                })),
                timeout: 5_000_000_000,
                log_source: String::new(),
            }))),
        }),
        monitor: None,
        start_timeout: 60,
        disk_mb: 256,
        memory_mb: 128,
        cpu_weight: 10,
        privileged: false,
        ports: vec![8080],
        routes: [("a".to_string(), "1".to_string()), ("b".to_string(), "[2]".to_string())].into(),
        log_guid: "lg".into(),
        log_source: String::new(),
        metrics_guid: String::new(),
        annotation: "note".into(),
        egress_rules: vec![pb::SecurityGroupRule {
            protocol: "tcp".into(),
            destinations: vec!["10.0.0.0/8".into()],
            ports: vec![80],
            ..Default::default()
        }],
        modification_tag: Some(pb::ModificationTag {
            epoch: "e".into(),
            index: 2,
        }),
    }
}

pub fn actual() -> pb::ActualLrp {
    pb::ActualLrp {
        process_guid: "web".into(),
        index: 1,
        domain: "cf-apps".into(),
        state: pb::ActualLrpState::Unclaimed as i32,
        since: 1_700_000_000_000_000_000,
        modification_tag: Some(pb::ModificationTag {
            epoch: "f".into(),
            index: 0,
        }),
        ..Default::default()
    }
}

pub fn definition() -> pb::TaskDefinition {
    pb::TaskDefinition {
        definition_id: "testing-5c042dbe-5895-465e-bb53-c53c07dcd5ea".into(),
        alias: "hello_world".into(),
        group_name: "testing".into(),
        image: "library/ubuntu:latest".into(),
        command: "echo 'hi'".into(),
        memory: 512,
        env: vec![pb::EnvironmentVariable {
            name: "A".into(),
            value: "1".into(),
        }],
        tags: vec!["t".into()],
        ports: vec![8080],
        user: String::new(),
        created_at: 1_700_000_000_000_000_000,
        updated_at: 1_700_000_000_000_000_001,
    }
}

pub fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let stamp = pb::Stamp {
        time_unix_ns: 1_700_000_000_000_000_000,
        id_seed_hi: 1,
        id_seed_lo: 2,
    };
    let entry = pb::LogEntry {
        version: 1,
        log_id: Some(pb::LogId {
            term: 2,
            node_id: 1,
            index: 7,
        }),
        payload: Some(pb::log_entry::Payload::Proposal(pb::Proposal {
            version: 1,
            stamp: Some(stamp),
            commands: vec![],
            command: Some(pb::Command {
                kind: Some(pb::command::Kind::DesireLrp(pb::DesireLrp {
                    desired_lrp: Some(desired()),
                })),
            }),
        })),
    };
    let membership = pb::LogEntry {
        version: 1,
        log_id: Some(pb::LogId {
            term: 1,
            node_id: 1,
            index: 1,
        }),
        payload: Some(pb::log_entry::Payload::Membership(pb::Membership {
            configs: vec![pb::VoterSet {
                node_ids: vec![1, 2, 3],
            }],
            nodes: vec![pb::NodeAddr {
                node_id: 1,
                addr: "127.0.0.1:7070".into(),
            }],
        })),
    };
    let journal = pb::JournalRecord {
        version: 1,
        log_index: 7,
        time_unix_ns: 1_700_000_000_000_000_000,
        events: vec![
            pb::Event {
                kind: Some(pb::event::Kind::ActualLrpCreated(pb::ActualLrpCreated {
                    actual_lrp: Some(actual()),
                })),
            },
            pb::Event {
                kind: Some(pb::event::Kind::FreshDomainBumped(pb::FreshDomainBumped {
                    fresh_domain: Some(pb::FreshDomain {
                        domain: "cf-apps".into(),
                        ttl_in_seconds: 60,
                        bumped_at: 5,
                        expires_at: 60_000_000_005,
                    }),
                })),
            },
        ],
    };
    let outcome = pb::Outcome {
        events: vec![],
        rejection: Some(pb::Rejection {
            kind: pb::RejectionKind::DesiredLrpNotFound as i32,
            message: "m".into(),
        }),
    };
    let header = pb::SnapshotHeader {
        version: 1,
        last_applied: Some(pb::LogId {
            term: 2,
            node_id: 1,
            index: 9,
        }),
        last_membership: None,
        snapshot_id: "2-9-1".into(),
        row_count: 4,
    };
    vec![
        ("log entry (desire lrp)", entry.encode_to_vec()),
        ("log entry (membership)", membership.encode_to_vec()),
        (
            "vote",
            pb::Vote {
                term: 3,
                node_id: 2,
                committed: true,
            }
            .encode_to_vec(),
        ),
        ("desired lrp row", desired().encode_to_vec()),
        ("actual lrp row", actual().encode_to_vec()),
        ("journal record", journal.encode_to_vec()),
        ("outcome", outcome.encode_to_vec()),
        ("snapshot header", header.encode_to_vec()),
        ("task definition row", definition().encode_to_vec()),
        (
            "task run row",
            pb::TaskRun {
                run_id: "5c042dbe-5895-465e-bb53-c53c07dcd5eb".into(),
                definition_id: "testing-1".into(),
                alias: "hello".into(),
                group_name: "testing".into(),
                image: "ubuntu:latest".into(),
                command: "echo hi".into(),
                memory: 512,
                env: vec![pb::EnvironmentVariable {
                    name: "FLOTILLA_RUN_ID".into(),
                    value: "5c042dbe".into(),
                }],
                cluster_name: "default".into(),
                status: pb::TaskRunStatus::Stopped as i32,
                queued_at: 1,
                started_at: 2,
                finished_at: 3,
                exit_code: Some(0),
                exit_reason: String::new(),
                cell_id: "cell-1".into(),
                attempt: 1,
                stop_requested: false,
                tags: vec![],
                cell_address: String::new(),
                log_addr: String::new(),
                receptor: None,
                result: String::new(),
                resolving: false,
            }
            .encode_to_vec(),
        ),
        (
            "task run row (placed, with tags)",
            pb::TaskRun {
                run_id: "r1".into(),
                status: pb::TaskRunStatus::Running as i32,
                tags: vec!["t".into()],
                cell_id: "cell-1".into(),
                cell_address: "10.0.0.1".into(),
                log_addr: "10.0.0.1:7071".into(),
                attempt: 2,
                stop_requested: true,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "log entry (report task runs)",
            pb::LogEntry {
                version: 1,
                log_id: Some(pb::LogId {
                    term: 3,
                    node_id: 1,
                    index: 10,
                }),
                payload: Some(pb::log_entry::Payload::Proposal(pb::Proposal {
                    version: 1,
                    stamp: Some(stamp),
                    commands: vec![],
                    command: Some(pb::Command {
                        kind: Some(pb::command::Kind::ReportTaskRuns(pb::ReportTaskRuns {
                            reports: vec![pb::TaskRunReport {
                                run_id: "r1".into(),
                                cell_id: "cell-1".into(),
                                attempt: 2,
                                kind: pb::TaskRunReportKind::Exited as i32,
                                exit_code: 3,
                                reason: "Exited with status 3".into(),
                                result: String::new(),
                            }],
                        })),
                    }),
                })),
            }
            .encode_to_vec(),
        ),
        (
            "command (place task runs)",
            pb::Command {
                kind: Some(pb::command::Kind::PlaceTaskRuns(pb::PlaceTaskRuns {
                    placements: vec![pb::TaskRunPlacement {
                        run_id: "r1".into(),
                        attempt: 1,
                        cell_id: "cell-1".into(),
                    }],
                })),
            }
            .encode_to_vec(),
        ),
        (
            "command (stop task run)",
            pb::Command {
                kind: Some(pb::command::Kind::StopTaskRun(pb::StopTaskRun { run_id: "r1".into() })),
            }
            .encode_to_vec(),
        ),
        (
            "command (desire task)",
            pb::Command {
                kind: Some(pb::command::Kind::DesireTask(pb::DesireTask {
                    task_guid: "t1".into(),
                    memory_mb: 64,
                    env: vec![pb::EnvironmentVariable {
                        name: "A".into(),
                        value: "1".into(),
                    }],
                    task: Some(pb::ReceptorTask {
                        domain: "tests".into(),
                        rootfs: "preloaded:cflinuxfs4".into(),
                        action: desired().action,
                        disk_mb: 10,
                        result_file: "r.txt".into(),
                        completion_callback_url: "http://x/cb".into(),
                        created_at: 5,
                        ..Default::default()
                    }),
                })),
            }
            .encode_to_vec(),
        ),
        (
            "command (resolve task, mark resolving)",
            [
                pb::command::Kind::ResolveTask(pb::ResolveTask { task_guid: "t1".into() }),
                pb::command::Kind::MarkTaskResolving(pb::MarkTaskResolving { task_guid: "t1".into() }),
            ]
            .into_iter()
            .map(|kind| pb::Command { kind: Some(kind) }.encode_to_vec())
            .collect::<Vec<_>>()
            .concat(),
        ),
        (
            "event (task run removed, a completed receptor task)",
            pb::Event {
                kind: Some(pb::event::Kind::TaskRunRemoved(pb::TaskRunRemoved {
                    run: Some(pb::TaskRun {
                        run_id: "t1".into(),
                        status: pb::TaskRunStatus::Stopped as i32,
                        exit_code: Some(0),
                        result: "ok".into(),
                        resolving: true,
                        receptor: Some(pb::ReceptorTask {
                            domain: "tests".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                })),
            }
            .encode_to_vec(),
        ),
        (
            "event (task run changed)",
            pb::Event {
                kind: Some(pb::event::Kind::TaskRunChanged(pb::TaskRunChanged {
                    before: Some(pb::TaskRun {
                        run_id: "r1".into(),
                        status: pb::TaskRunStatus::Queued as i32,
                        ..Default::default()
                    }),
                    after: Some(pb::TaskRun {
                        run_id: "r1".into(),
                        status: pb::TaskRunStatus::Pending as i32,
                        cell_id: "cell-1".into(),
                        attempt: 1,
                        ..Default::default()
                    }),
                })),
            }
            .encode_to_vec(),
        ),
        (
            "log entry (update task definition)",
            pb::LogEntry {
                version: 1,
                log_id: Some(pb::LogId {
                    term: 3,
                    node_id: 1,
                    index: 9,
                }),
                payload: Some(pb::log_entry::Payload::Proposal(pb::Proposal {
                    version: 1,
                    stamp: Some(stamp),
                    commands: vec![],
                    command: Some(pb::Command {
                        kind: Some(pb::command::Kind::UpdateTaskDefinition(pb::UpdateTaskDefinition {
                            definition_id: "testing-1".into(),
                            alias: "renamed".into(),
                            memory: 256,
                            has_tags: true,
                            tags: vec!["a".into()],
                            ..Default::default()
                        })),
                    }),
                })),
            }
            .encode_to_vec(),
        ),
        (
            "command (revoke tokens)",
            pb::Command {
                kind: Some(pb::command::Kind::RevokeTokens(pb::RevokeTokens {
                    revocations: vec![pb::TokenRevocation {
                        jti: "a1-r".into(),
                        expires_at_ns: 1_700_000_000_000_000_000,
                    }],
                })),
            }
            .encode_to_vec(),
        ),
        (
            "event (tokens revoked)",
            pb::Event {
                kind: Some(pb::event::Kind::TokensRevoked(pb::TokensRevoked {
                    revoked: vec![pb::TokenRevocation {
                        jti: "a1".into(),
                        expires_at_ns: 2,
                    }],
                    expired: vec![pb::TokenRevocation {
                        jti: "a0".into(),
                        expires_at_ns: 1,
                    }],
                })),
            }
            .encode_to_vec(),
        ),
        (
            "command (apply cf manifest)",
            pb::Command {
                kind: Some(pb::command::Kind::ApplyCfManifest(pb::ApplyCfManifest {
                    space_guid: "s1".into(),
                    applications: vec![pb::CfManifestApp {
                        name: "shop".into(),
                        docker_image: Some("busybox".into()),
                        processes: vec![pb::CfManifestProcess {
                            r#type: "web".into(),
                            command: Some("httpd".into()),
                            instances: Some(3),
                            memory_in_mb: Some(256),
                            health_check_type: Some("http".into()),
                            health_check_http_endpoint: Some("/health".into()),
                            timeout: Some(30),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                })),
            }
            .encode_to_vec(),
        ),
        (
            "command (scale cf process, terminate cf instance)",
            [
                pb::Command {
                    kind: Some(pb::command::Kind::ScaleCfProcess(pb::ScaleCfProcess {
                        process_guid: "p1".into(),
                        instances: Some(0),
                        log_rate_limit_in_bytes_per_second: Some(-1),
                        ..Default::default()
                    })),
                }
                .encode_to_vec(),
                pb::Command {
                    kind: Some(pb::command::Kind::TerminateCfInstance(pb::TerminateCfInstance {
                        process_guid: "p1".into(),
                        index: 2,
                    })),
                }
                .encode_to_vec(),
            ]
            .concat(),
        ),
        (
            "event (cf process changed)",
            pb::Event {
                kind: Some(pb::event::Kind::CfProcessChanged(pb::CfProcessChanged {
                    before: None,
                    after: Some(pb::CfProcess {
                        guid: "p1".into(),
                        app_guid: "a1".into(),
                        space_guid: "s1".into(),
                        organization_guid: "o1".into(),
                        r#type: "web".into(),
                        command: "serve".into(),
                        user: String::new(),
                        instances: 1,
                        memory_in_mb: 1024,
                        disk_in_mb: 1024,
                        log_rate_limit_in_bytes_per_second: -1,
                        health_check: Some(pb::CfHealthCheck {
                            r#type: "port".into(),
                            timeout: Some(60),
                            ..Default::default()
                        }),
                        readiness_health_check: Some(pb::CfHealthCheck {
                            r#type: "process".into(),
                            ..Default::default()
                        }),
                        version: "v1".into(),
                        created_at: 1,
                        updated_at: 2,
                        metadata: Some(pb::CfMetadata {
                            labels: [("example.com/fruit".to_string(), "strawberry".to_string())].into(),
                            annotations: Default::default(),
                        }),
                        previous_version: String::new(),
                    }),
                })),
            }
            .encode_to_vec(),
        ),
        (
            "event (cf app changed, cf job recorded)",
            [
                pb::Event {
                    kind: Some(pb::event::Kind::CfAppChanged(pb::CfAppChanged {
                        before: None,
                        after: Some(pb::CfApp {
                            guid: "a1".into(),
                            name: "shop".into(),
                            space_guid: "s1".into(),
                            organization_guid: "o1".into(),
                            state: pb::CfAppState::Started as i32,
                            docker_image: "busybox".into(),
                            created_at: 1,
                            updated_at: 2,
                            metadata: None,
                            environment_variables: Default::default(),
                        }),
                    })),
                }
                .encode_to_vec(),
                pb::Event {
                    kind: Some(pb::event::Kind::CfJobRecorded(pb::CfJobRecorded {
                        job: Some(pb::CfJob {
                            guid: "j1".into(),
                            operation: "space.apply_manifest".into(),
                            state: "COMPLETE".into(),
                            errors: vec![],
                            created_at: 1,
                            updated_at: 1,
                            resource_guid: "s1".into(),
                            resource_kind: "spaces".into(),
                        }),
                    })),
                }
                .encode_to_vec(),
            ]
            .concat(),
        ),
        (
            "log entry (a batch: proposal version 2, two commands)",
            pb::LogEntry {
                version: 1,
                log_id: Some(pb::LogId {
                    term: 4,
                    node_id: 2,
                    index: 11,
                }),
                payload: Some(pb::log_entry::Payload::Proposal(pb::Proposal {
                    version: 2,
                    stamp: Some(stamp),
                    command: None,
                    commands: vec![
                        pb::Command {
                            kind: Some(pb::command::Kind::RemoveDesiredLrp(pb::RemoveDesiredLrp {
                                process_guid: "web".into(),
                            })),
                        },
                        pb::Command {
                            kind: Some(pb::command::Kind::StopTaskRun(pb::StopTaskRun { run_id: "r1".into() })),
                        },
                    ],
                })),
            }
            .encode_to_vec(),
        ),
        (
            "command (cf env patch, restart, rollout step)",
            [
                pb::Command {
                    kind: Some(pb::command::Kind::UpdateCfResource(pb::UpdateCfResource {
                        kind: pb::CfKind::App as i32,
                        guid: "a1".into(),
                        name: None,
                        metadata: None,
                        environment_variables: Some(pb::CfEnvPatch {
                            set: [("DB_URL".to_owned(), "postgres://db".to_owned())].into(),
                            removed: vec!["OLD".into()],
                        }),
                    })),
                }
                .encode_to_vec(),
                pb::Command {
                    kind: Some(pb::command::Kind::SetCfAppState(pb::SetCfAppState {
                        app_guid: "a1".into(),
                        started: true,
                        restart: true,
                    })),
                }
                .encode_to_vec(),
                pb::Command {
                    kind: Some(pb::command::Kind::StepCfRollout(pb::StepCfRollout {
                        process_guid: "p1".into(),
                    })),
                }
                .encode_to_vec(),
            ]
            .concat(),
        ),
        (
            "event (cf app with env changed, cf process in a rollout changed)",
            [
                pb::Event {
                    kind: Some(pb::event::Kind::CfAppChanged(pb::CfAppChanged {
                        before: None,
                        after: Some(pb::CfApp {
                            guid: "a1".into(),
                            environment_variables: [("DB_URL".to_owned(), "postgres://db".to_owned())].into(),
                            ..Default::default()
                        }),
                    })),
                }
                .encode_to_vec(),
                pb::Event {
                    kind: Some(pb::event::Kind::CfProcessChanged(pb::CfProcessChanged {
                        before: None,
                        after: Some(pb::CfProcess {
                            guid: "p1".into(),
                            version: "v2".into(),
                            previous_version: "v1".into(),
                            ..Default::default()
                        }),
                    })),
                }
                .encode_to_vec(),
            ]
            .concat(),
        ),
    ]
}
