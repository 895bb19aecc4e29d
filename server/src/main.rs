//! The `capstan` binary: `dev` (one node + gateway, embedded), and later the cluster modes.

mod control_plane;
mod errors;
mod node_process;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "capstan",
    version,
    about = "Capstan: an event-sourced, Raft-replicated control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The embedded single-node default: one Raft node, the gRPC API and the REST gateway.
    Dev(DevArgs),
}

#[derive(clap::Args)]
struct DevArgs {
    /// REST gateway listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// gRPC listen address (public API and Raft peers; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070")]
    grpc: SocketAddr,
    /// Where the node keeps its data (kept across restarts).
    #[arg(long, default_value = "capstan-data")]
    data_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => {
                node_process::run(node_process::NodeOptions {
                    id: 1,
                    data_dir: args.data_dir,
                    grpc: args.grpc,
                    http: Some(args.http),
                    initial_members: None,
                })
                .await
            }
        }
    })
}
