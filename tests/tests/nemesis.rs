//! Issue 14: a bounded nemesis run (kill -9 / restart and SIGSTOP / SIGCONT of leaders and
//! followers under concurrent clients writing and reading through every node); the recorded
//! history must be linearizable. `cargo run --release -p capstan-tests --bin nemesis 100` runs
//! the long version (BENCHMARKS.md).

use capstan_tests::nemesis::{self, Config, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_kills_and_pauses_are_linearizable() {
    // Two rounds of every fault kind.
    let cfg = Config {
        cycles: 2 * Fault::ALL.len(),
        ..Config::default()
    };
    let report = nemesis::run(&cfg).await.expect("nemesis run");
    println!("{report}");
    for fault in Fault::ALL {
        assert!(
            report.faults.get(&fault).copied().unwrap_or(0) >= 1,
            "{fault:?} was never injected"
        );
    }
    assert!(report.acknowledged_writes > 50, "too little load to judge: {report}");
    assert!(report.reads > 50, "too little load to judge: {report}");
    if let Err(v) = &report.verdict {
        panic!("the history is not linearizable:\n{v}");
    }
}
