//! Frozen bytes: what Capstan writes to disk must decode the same forever. Each sample record is
//! encoded and compared with the bytes an earlier build wrote; a change to a persisted message
//! that alters its encoding fails here and needs a new FORMAT_VERSION and a migration.

use capstan_proto::pb;
use prost::Message;

fn desired() -> pb::DesiredLrp {
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

fn actual() -> pb::ActualLrp {
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

fn definition() -> pb::TaskDefinition {
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

fn samples() -> Vec<(&'static str, Vec<u8>)> {
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
    ]
}

const FROZEN: &[(&str, &str)] = &[
("log entry (desire lrp)", "0801120608021001180722c1010801121c088080a8b1e39fe7cb171101000000000000001902000000000000001a9e010a9b010a98010a03776562120763662d617070731a147072656c6f616465643a63666c696e757866733420032a060a01411201313a1d221b0a131a110a02736812022d631201783204766361701080e497d012483c508002588001600a7202903f7a060a01611201317a080a016212035b325d8201026c679a01046e6f7465a201140a03746370120a31302e302e302e302f381a0150aa01050a01651002"),
    ("log entry (membership)", "080112060801100118012a1b0a050a0301020312120801120e3132372e302e302e313a37303730"),
    ("vote", "080310021801"),
    ("desired lrp row", "0a03776562120763662d617070731a147072656c6f616465643a63666c696e757866733420032a060a01411201313a1d221b0a131a110a02736812022d631201783204766361701080e497d012483c508002588001600a7202903f7a060a01611201317a080a016212035b325d8201026c679a01046e6f7465a201140a03746370120a31302e302e302e302f381a0150aa01050a01651002"),
    ("actual lrp row", "0a0377656210011a0763662d617070734001608080a8b1e39fe7cb1772030a0166"),
    ("journal record", "08011007188080a8b1e39fe7cb17222522230a210a0377656210011a0763662d617070734001608080a8b1e39fe7cb1772030a016622183a160a140a0763662d61707073103c18052085b09dc2df01"),
    ("outcome", "1205080412016d"),
    ("snapshot header", "080112060802100118092205322d392d312804"),
    ("task definition row", "0a2c74657374696e672d35633034326462652d353839352d343635652d626235332d633533633037646364356561120b68656c6c6f5f776f726c641a0774657374696e6722156c6962726172792f7562756e74753a6c61746573742a096563686f20276869273080043a060a01411201314201744a02903f588080a8b1e39fe7cb17608180a8b1e39fe7cb17"),
    ("task run row", "0a2435633034326462652d353839352d343635652d626235332d633533633037646364356562120974657374696e672d311a0568656c6c6f220774657374696e672a0d7562756e74753a6c617465737432076563686f206869388004421b0a0f464c4f54494c4c415f52554e5f4944120835633034326462654a0764656661756c745004580160026803700082010663656c6c2d31880101"),
    ("task run row (placed, with tags)", "0a027231500382010663656c6c2d318801029001019a010174a2010831302e302e302e31aa010d31302e302e302e313a37303731"),
    ("log entry (report task runs)", "0801120608031001180a224f0801121c088080a8b1e39fe7cb171101000000000000001902000000000000001a2d82012a0a280a027231120663656c6c2d3118022002280332144578697465642077697468207374617475732033"),
    ("command (place task runs)", "7a100a0e0a02723110011a0663656c6c2d31"),
    ("command (stop task run)", "8a01040a027231"),
    ("command (desire task)", "9201640a02743110401a060a014112013122540a05746573747312147072656c6f616465643a63666c696e75786673341a1d221b0a131a110a02736812022d631201783204766361701080e497d012200a5a05722e747874620b687474703a2f2f782f63627005"),
    ("command (resolve task, mark resolving)", "9a01040a027431a201040a027431"),
    ("event (task run removed, a completed receptor task)", "7a1c0a1a0a02743150047000b201070a057465737473ba01026f6bc00101"),
    ("event (task run changed)", "721c0a060a027231500112120a027231500282010663656c6c2d31880101"),
    ("log entry (update task definition)", "0801120608031001180922400801121c088080a8b1e39fe7cb171101000000000000001902000000000000001a1e621c0a0974657374696e672d31120772656e616d656428800240014a0161"),
    ("command (revoke tokens)", "aa01120a100a0461312d72108080a8b1e39fe7cb17"),
    ("event (tokens revoked)", "8201100a060a026131100212060a0261301001"),
    ("command (apply cf manifest)", "e201390a02733112330a0473686f70120762757379626f781a220a037765621205687474706418032080023204687474703a072f6865616c7468401e"),
    ("command (scale cf process, terminate cf instance)", "f201110a027031100028ffffffffffffffffff01fa01060a0270311002"),
    ("event (cf process changed)", "a2017312710a027031120261311a02733122026f312a0377656232057365727665400148800850800858ffffffffffffffffff0162080a04706f7274103c6a090a0770726f636573737202763178018001028a01210a1f0a116578616d706c652e636f6d2f6672756974120a73747261776265727279"),
    ("event (cf app changed, cf job recorded)", "9a012312210a026131120473686f701a02733122026f312802320762757379626f7838014002aa01360a340a026a31121473706163652e6170706c795f6d616e69666573741a08434f4d504c455445280130013a0273314206737061636573"),
    ("log entry (a batch: proposal version 2, two commands)", "0801120608041002180b22320802121c088080a8b1e39fe7cb1711010000000000000019020000000000000022071a050a0377656222078a01040a027231"),
];

#[test]
fn persisted_encodings_are_frozen() {
    let got = samples();
    if std::env::var_os("CAPSTAN_PRINT_FROZEN").is_some() {
        for (name, bytes) in &got {
            println!("    (\"{name}\", \"{}\"),", hex::encode(bytes));
        }
    }
    assert_eq!(got.len(), FROZEN.len(), "every sample has frozen bytes");
    for ((name, bytes), (frozen_name, frozen_hex)) in got.iter().zip(FROZEN) {
        assert_eq!(name, frozen_name);
        assert_eq!(&hex::encode(bytes), frozen_hex, "encoding of {name} changed");
        // ...and the frozen bytes still decode to the same sample.
        let frozen = hex::decode(frozen_hex).expect("hex");
        assert_eq!(&frozen, bytes, "{name}");
    }
}

#[test]
fn frozen_bytes_decode() {
    for (name, hexed) in FROZEN {
        let bytes = hex::decode(hexed).expect("hex");
        let ok = match *name {
            n if n.starts_with("log entry") => pb::LogEntry::decode(bytes.as_slice()).is_ok(),
            "vote" => pb::Vote::decode(bytes.as_slice()).is_ok(),
            "desired lrp row" => pb::DesiredLrp::decode(bytes.as_slice()).is_ok_and(|d| d == desired()),
            "actual lrp row" => pb::ActualLrp::decode(bytes.as_slice()).is_ok_and(|a| a == actual()),
            "journal record" => pb::JournalRecord::decode(bytes.as_slice()).is_ok(),
            "outcome" => pb::Outcome::decode(bytes.as_slice()).is_ok(),
            "snapshot header" => pb::SnapshotHeader::decode(bytes.as_slice()).is_ok(),
            "task definition row" => pb::TaskDefinition::decode(bytes.as_slice()).is_ok_and(|d| d == definition()),
            n if n.starts_with("task run row") => pb::TaskRun::decode(bytes.as_slice()).is_ok(),
            n if n.starts_with("event") => pb::Event::decode(bytes.as_slice()).is_ok(),
            n if n.starts_with("command") => pb::Command::decode(bytes.as_slice()).is_ok_and(|c| c.kind.is_some()),
            _ => false,
        };
        assert!(ok, "{name} no longer decodes");
    }
}

/// What an AppendEntries carried before entries went as bytes (`repeated LogEntry entries = 3`).
#[derive(Clone, PartialEq, prost::Message)]
struct AppendEntriesAsMessages {
    #[prost(message, optional, tag = "1")]
    vote: Option<pb::Vote>,
    #[prost(message, optional, tag = "2")]
    prev_log_id: Option<pb::LogId>,
    #[prost(message, repeated, tag = "3")]
    entries: Vec<pb::LogEntry>,
    #[prost(message, optional, tag = "4")]
    leader_commit: Option<pb::LogId>,
}

/// Peers of the builds before and after `AppendEntriesRequest.entries` became `repeated bytes` (each
/// an encoded `LogEntry`) understand each other both ways: a rolling upgrade mixes them.
#[test]
fn append_entries_as_bytes_is_the_same_on_the_wire_as_entries_as_messages() {
    // The frozen log entries, as a log stores them.
    let stored: Vec<Vec<u8>> = samples()
        .into_iter()
        .filter(|(name, _)| name.starts_with("log entry"))
        .map(|(_, bytes)| bytes)
        .collect();
    assert!(stored.len() >= 2, "samples hold log entries");
    let decoded: Vec<pb::LogEntry> = stored
        .iter()
        .map(|b| pb::LogEntry::decode(b.as_slice()).expect("a log entry"))
        .collect();
    let vote = Some(pb::Vote {
        term: 2,
        node_id: 1,
        committed: true,
    });
    let commit = Some(pb::LogId {
        term: 2,
        node_id: 1,
        index: 9,
    });
    let old = AppendEntriesAsMessages {
        vote,
        prev_log_id: None,
        entries: decoded,
        leader_commit: commit,
    };
    let new = pb::AppendEntriesRequest {
        vote,
        prev_log_id: None,
        entries: stored.into_iter().map(Into::into).collect(),
        leader_commit: commit,
    };
    assert_eq!(old.encode_to_vec(), new.encode_to_vec());
    let read_by_new = pb::AppendEntriesRequest::decode(old.encode_to_vec().as_slice()).expect("new reads old");
    assert_eq!(read_by_new, new);
    let read_by_old = AppendEntriesAsMessages::decode(new.encode_to_vec().as_slice()).expect("old reads new");
    assert_eq!(read_by_old, old);
}
