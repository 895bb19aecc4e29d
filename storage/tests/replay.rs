//! Properties: replaying the log into an empty state machine gives byte-identical views; a
//! snapshot installed into an empty node gives the same views as the node it came from; and
//! commands batched into entries (proposal version 2) decide exactly as one per entry.

use std::sync::Arc;

use capstan_storage::codec::Entry;
use capstan_storage::{open_db, pb, StateMachine};
use openraft::storage::RaftLogStorage as _;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use proptest::prelude::*;

mod replay_commands;

use replay_commands::{command, concretize, lrp};

fn entry(i: usize, kind: pb::command::Kind, seed: u64) -> Entry {
    entries(vec![(kind, seed)]).remove(0).with_index(i as u64 + 1)
}

trait WithIndex {
    fn with_index(self, index: u64) -> Self;
}

impl WithIndex for Entry {
    fn with_index(mut self, index: u64) -> Self {
        self.log_id.index = index;
        if let EntryPayload::Normal(p) = &mut self.payload {
            if let Some(s) = &mut Arc::make_mut(p).stamp {
                s.time_unix_ns = index as i64 * 1_000_000;
            }
        }
        self
    }
}

fn entries(cmds: Vec<(pb::command::Kind, u64)>) -> Vec<Entry> {
    cmds.into_iter()
        .enumerate()
        .map(|(i, (kind, seed))| {
            let index = i as u64 + 1;
            Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                payload: EntryPayload::Normal(Arc::new(pb::Proposal {
                    version: capstan_proto::FORMAT_VERSION,
                    stamp: Some(pb::Stamp {
                        time_unix_ns: index as i64 * 1_000_000,
                        id_seed_hi: seed,
                        id_seed_lo: seed.rotate_left(7),
                    }),
                    command: Some(pb::Command { kind: Some(kind) }),
                    commands: vec![],
                })),
            }
        })
        .collect()
}

fn fresh() -> (tempfile::TempDir, StateMachine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_db(&dir.path().join("db")).expect("db");
    let sm = StateMachine::open(&db, &dir.path().join("snap")).expect("sm");
    (dir, sm)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn replay_gives_identical_views(cmds in prop::collection::vec((command(), any::<u64>()), 1..60)) {
        let (_d1, mut first) = fresh();
        let (_d2, mut second) = fresh();
        let rt = rt();
        // The first applies entry by entry as a live node would, the log being built from its
        // state (placements, reports, convergence); the second replays the whole log at once.
        let mut log = Vec::new();
        for (i, (kind, seed)) in cmds.into_iter().enumerate() {
            let e = entry(i, concretize(&first, kind, seed), seed);
            rt.block_on(first.apply(vec![e.clone()])).expect("apply");
            log.push(e);
        }
        rt.block_on(second.apply(log.clone())).expect("replay");
        prop_assert_eq!(first.view_rows().expect("rows"), second.view_rows().expect("rows"));

        // A snapshot of the first, installed on an empty third, carries the same views.
        let (_d3, mut third) = fresh();
        let snap = rt.block_on(first.get_current_snapshot()).expect("snapshot").expect("a snapshot");
        rt.block_on(third.install_snapshot(&snap.meta, snap.snapshot)).expect("install");
        let views = |rows: Vec<(String, Vec<u8>, Vec<u8>)>| rows.into_iter().filter(|r| r.0 != "event_journal").collect::<Vec<_>>();
        prop_assert_eq!(views(first.view_rows().expect("rows")), views(third.view_rows().expect("rows")));
        prop_assert_eq!(
            rt.block_on(first.applied_state()).expect("state").0,
            rt.block_on(third.applied_state()).expect("state").0
        );

        // Restarted, the first rebuilds its in-memory indexes from its views: the rows apply
        // kept, index rows included.
        let rows = first.view_rows().expect("rows");
        drop(first);
        let db = open_db(&_d1.path().join("db")).expect("db");
        let reopened = StateMachine::open(&db, &_d1.path().join("snap")).expect("sm");
        prop_assert_eq!(rows, reopened.view_rows().expect("rows"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    // A snapshot built for log compaction is the views made durable at its index; one served is
    // the views read out at the index it names, and installed on an empty node gives the views
    // of the node it came from. It is served again while no entry after it was purged.
    #[test]
    fn a_served_snapshot_is_the_views_at_its_index(
        cmds in prop::collection::vec((command(), any::<u64>()), 2..50),
        cut in 0usize..50,
    ) {
        let cut = cut % cmds.len();
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = open_db(&dir.path().join("db")).expect("db");
        let mut live = StateMachine::open(&disk, &dir.path().join("snap")).expect("sm");
        let mut log = capstan_storage::LogStore::open(&disk).expect("log");
        let rt = rt();
        let mut cmds = cmds.into_iter().enumerate();
        let mut apply = |live: &mut StateMachine, n: usize| {
            for (i, (kind, seed)) in cmds.by_ref().take(n) {
                let e = entry(i, concretize(live, kind, seed), seed);
                rt.block_on(live.apply(vec![e])).expect("apply");
            }
        };
        apply(&mut live, cut);
        let built = rt.block_on(async { live.get_snapshot_builder().await.build_snapshot().await }).expect("build");
        prop_assert_eq!(built.meta.last_log_id, rt.block_on(live.applied_state()).expect("state").0);
        apply(&mut live, usize::MAX);
        let applied = rt.block_on(live.applied_state()).expect("state").0;
        let snap = rt.block_on(live.get_current_snapshot()).expect("snapshot").expect("a snapshot");
        prop_assert_eq!(snap.meta.last_log_id, applied);
        let other = tempfile::tempdir().expect("tempdir");
        let other_disk = open_db(&other.path().join("db")).expect("db");
        let mut installed = StateMachine::open(&other_disk, &other.path().join("snap")).expect("sm");
        let passes = other_disk.sync_passes();
        rt.block_on(installed.install_snapshot(&snap.meta, snap.snapshot)).expect("install");
        // Durable before openraft purges the log behind it.
        prop_assert!(other_disk.sync_passes() > passes, "the installed views were not made durable");
        let views = |rows: Vec<(String, Vec<u8>, Vec<u8>)>| rows.into_iter().filter(|r| r.0 != "event_journal").collect::<Vec<_>>();
        prop_assert_eq!(views(live.view_rows().expect("rows")), views(installed.view_rows().expect("rows")));
        prop_assert_eq!(rt.block_on(installed.applied_state()).expect("state").0, applied);

        // One more entry: the file still joins the log, so it is served again as it is...
        let more = entry(1_000, pb::command::Kind::BumpFreshDomain(pb::BumpFreshDomain { domain: "more".into(), ttl_in_seconds: 0 }), 7);
        rt.block_on(live.apply(vec![more.clone()])).expect("apply");
        let again = rt.block_on(live.get_current_snapshot()).expect("snapshot").expect("a snapshot");
        prop_assert_eq!(again.meta.last_log_id, applied);
        // ...until the log behind the newest entry is purged: then it is read out anew.
        rt.block_on(log.purge(more.log_id)).expect("purge");
        let fresh_snap = rt.block_on(live.get_current_snapshot()).expect("snapshot").expect("a snapshot");
        prop_assert_eq!(fresh_snap.meta.last_log_id, Some(more.log_id));
    }
}

/// A version 2 entry carrying `commands`, all under one stamp.
fn batch_entry(index: u64, stamp: pb::Stamp, commands: Vec<pb::command::Kind>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Arc::new(pb::Proposal {
            version: capstan_proto::PROPOSAL_VERSION,
            stamp: Some(stamp),
            command: None,
            commands: commands.into_iter().map(|k| pb::Command { kind: Some(k) }).collect(),
        })),
    }
}

/// The events of the journal, in order, whatever entries they were recorded under — as sled
/// holds them, checked to be what the in-memory newest records give its readers.
fn journal_events(sm: &StateMachine) -> Vec<pb::Event> {
    let stored: Vec<pb::JournalRecord> = sm.views().journal_stored_from(1).map(|r| r.expect("record")).collect();
    let served: Vec<pb::JournalRecord> = sm
        .views()
        .journal_from(1)
        .map(|r| pb::JournalRecord::clone(&r.expect("record")))
        .collect();
    assert_eq!(served, stored, "the journal readers are served differs from sled's");
    stored.into_iter().flat_map(|r| r.events).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_batch_decides_as_one_command_per_entry(
        cmds in prop::collection::vec((command(), any::<u64>()), 1..60),
        sizes in prop::collection::vec(1usize..9, 1..20),
    ) {
        let (_d1, mut single) = fresh();
        let (_d2, mut batched) = fresh();
        let rt = rt();
        let (mut single_outcomes, mut batches, mut index) = (Vec::new(), Vec::new(), 0);
        let mut cmds = cmds.into_iter();
        for (b, size) in sizes.iter().cycle().enumerate() {
            let chunk: Vec<_> = cmds.by_ref().take(*size).collect();
            if chunk.is_empty() {
                break;
            }
            let stamp = pb::Stamp { time_unix_ns: (b as i64 + 1) * 1_000_000, id_seed_hi: chunk[0].1, id_seed_lo: !chunk[0].1 };
            let mut kinds = Vec::new();
            for (position, (kind, seed)) in chunk.into_iter().enumerate() {
                // Built from the state as the earlier commands left it, as a live leader would.
                let kind = concretize(&single, kind, seed);
                index += 1;
                let own = capstan_storage::rules::ids::command_stamp(&stamp, position);
                let out = rt.block_on(single.apply(vec![batch_entry(index, own, vec![kind.clone()])])).expect("apply");
                single_outcomes.extend(out.into_iter().flat_map(|o| o.outcomes));
                kinds.push(kind);
            }
            batches.push(batch_entry(b as u64 + 1, stamp, kinds));
        }
        // All the batches at once: several entries in one apply transaction, too.
        let out = rt.block_on(batched.apply(batches)).expect("apply");
        let batched_outcomes: Vec<pb::Outcome> = out.into_iter().flat_map(|o| o.outcomes).collect();
        prop_assert_eq!(single_outcomes, batched_outcomes);
        let views = |rows: Vec<(String, Vec<u8>, Vec<u8>)>| rows.into_iter().filter(|r| r.0 != "event_journal").collect::<Vec<_>>();
        prop_assert_eq!(views(single.view_rows().expect("rows")), views(batched.view_rows().expect("rows")));
        prop_assert_eq!(journal_events(&single), journal_events(&batched));
    }
}

#[test]
fn rejected_commands_change_no_view() {
    let (_d, mut sm) = fresh();
    let rt = rt();
    let ok = entries(vec![(
        pb::command::Kind::DesireLrp(pb::DesireLrp {
            desired_lrp: Some(lrp("a", "d", 2)),
        }),
        1,
    )]);
    rt.block_on(sm.apply(ok)).expect("apply");
    let before = sm.view_rows().expect("rows");
    let mut bad = entries(vec![
        (
            pb::command::Kind::DesireLrp(pb::DesireLrp {
                desired_lrp: Some(lrp("a", "d", 3)),
            }),
            2,
        ),
        (
            pb::command::Kind::RemoveDesiredLrp(pb::RemoveDesiredLrp {
                process_guid: "zz".into(),
            }),
            3,
        ),
    ]);
    // make the first a conflicting create
    if let EntryPayload::Normal(p) = &mut bad[0].payload {
        if let Some(pb::Command {
            kind: Some(pb::command::Kind::DesireLrp(c)),
        }) = &mut Arc::make_mut(p).command
        {
            if let Some(d) = &mut c.desired_lrp {
                d.rootfs = "preloaded:other".into();
            }
        }
    }
    for e in &mut bad {
        e.log_id.index += 1;
    }
    let outcomes = rt.block_on(sm.apply(bad)).expect("apply");
    assert!(outcomes
        .iter()
        .all(|o| o.outcomes.len() == 1 && o.outcomes[0].rejection.is_some() && o.outcomes[0].events.is_empty()));
    assert_eq!(before, sm.view_rows().expect("rows"));
    assert_eq!(
        rt.block_on(sm.applied_state()).expect("state").0.map(|l| l.index),
        Some(3)
    );
}
