//! The long nemesis run (prints figures; exits non-zero on a violation):
//! `cargo run --release -p capstan-tests --bin nemesis [CYCLES] [CLIENTS]`.

use capstan_tests::nemesis::{self, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut cfg = Config::default();
    if let Some(n) = args.get(1).and_then(|a| a.parse().ok()) {
        cfg.cycles = n;
    }
    if let Some(n) = args.get(2).and_then(|a| a.parse().ok()) {
        cfg.clients = n;
    }
    println!(
        "nemesis: {} cycles, {} clients, {} registers, 3 nodes",
        cfg.cycles, cfg.clients, cfg.keys
    );
    let started = std::time::Instant::now();
    let report = nemesis::run(&cfg).await?;
    println!("{report}");
    println!("wall time {:.0} s", started.elapsed().as_secs_f64());
    if report.verdict.is_err() {
        std::process::exit(1);
    }
    Ok(())
}
