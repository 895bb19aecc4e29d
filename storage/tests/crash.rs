//! What the log store said was appended survives `kill -9` of the process at once after it said
//! so.
//!
//! The child process below appends entries, saves the committed id that covers them and applies
//! them, prints a marker, and is killed with SIGKILL the moment the marker arrives; the parent
//! reopens the store and checks the entries are there. The committed id is written, not made
//! durable, so it may be found older (issue 14: a leader restored by openraft would take a stale
//! read index from it; `capstan_raft::fence` holds linearizable reads until the restarted node has
//! applied the log it found at start, which holds every entry it acknowledged).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use capstan_storage::{open_db, pb, LogStore, StateMachine};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

const CHILD_ENV: &str = "CAPSTAN_CRASH_CHILD_DIR";
const MARKER: &str = "capstan-crash-test: saved";
const ENTRIES: u64 = 50;

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(3, 1), index)
}

async fn child(dir: &str) {
    let disk = open_db(&std::path::Path::new(dir).join("db")).expect("open");
    let mut log = LogStore::open(&disk).expect("log store");
    let mut sm = StateMachine::open(&disk, &std::path::Path::new(dir).join("snapshots")).expect("state machine");
    let entry = |index| Entry::<capstan_storage::TypeConfig> {
        log_id: log_id(index),
        payload: EntryPayload::Normal(std::sync::Arc::new(pb::Proposal::default())),
    };
    for index in 1..=ENTRIES {
        log.append_durably([entry(index)]).await.expect("append");
    }
    log.save_committed(Some(log_id(ENTRIES))).await.expect("save committed");
    sm.apply((1..=ENTRIES).map(entry)).await.expect("apply");
    println!("{MARKER}");
    // Wait to be killed; never exit (an exit would flush).
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_survive_kill_9_right_after_they_were_applied() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir).await;
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test executable");
    let mut proc = Command::new(exe)
        .args([
            "--exact",
            "appends_survive_kill_9_right_after_they_were_applied",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = proc.stdout.take().expect("stdout");
    let saw_marker = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains(MARKER));
    let _ = proc.kill();
    let _ = proc.wait();
    assert!(saw_marker, "the child never said it had saved");

    let disk = open_db(&dir.path().join("db")).expect("reopen");
    let mut log = LogStore::open(&disk).expect("log store");
    let entries = log.try_get_log_entries(1..=ENTRIES).await.expect("read log");
    assert_eq!(entries.len() as u64, ENTRIES, "acknowledged appends lost after kill -9");
}
