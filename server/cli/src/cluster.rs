//! `capstan cluster ...`: the membership CLI, a client of the Admin gRPC service.

use anyhow::{bail, Context};
use capstan_proto::pb::{self, admin_client::AdminClient};
use clap::Subcommand;

#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Nodes' gRPC addresses, comma-separated; the first that answers is used.
    #[arg(long, env = "CAPSTAN_CLUSTER", default_value = "127.0.0.1:7070", global = true)]
    cluster: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    credential: capstan_client::secret::SecretArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Members, leader, term, last log/applied index per node, replication lag.
    Status,
    /// Add a node: as a learner until caught up, then as a voter.
    Add {
        #[arg(long)]
        id: u64,
        /// The new node's gRPC address as the other nodes reach it.
        #[arg(long)]
        addr: String,
        /// Keep it a learner (not counted in the quorum).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the cluster.
    Remove {
        #[arg(long)]
        id: u64,
    },
}

async fn connect(
    cluster: &str,
    credential: &capstan_client::credential::ClusterCredential,
) -> anyhow::Result<AdminClient<capstan_client::credential::Authed>> {
    let mut last = None;
    for addr in cluster.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let endpoint = credential
            .endpoint(addr)?
            .connect_timeout(std::time::Duration::from_secs(2));
        match endpoint.connect().await {
            Ok(ch) => return Ok(AdminClient::new(credential.wrap(ch))),
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    bail!(
        "no node answered ({})",
        last.unwrap_or_else(|| "no address given".into())
    )
}

fn print(status: &pb::ClusterStatus, json: bool) {
    if json {
        println!("{}", status_json(status));
        return;
    }
    println!(
        "leader: {}  term: {}  leader last log index: {}",
        status.leader_id, status.term, status.leader_last_log_index
    );
    println!(
        "{:>4}  {:<24} {:<8} {:<10} {:>10} {:>10} {:>8} {:>9}",
        "id", "addr", "role", "state", "last_log", "applied", "lag", "snapshot"
    );
    for m in &status.members {
        let s = m.status.clone().unwrap_or_default();
        let state = if m.status.is_some() {
            s.state.as_str()
        } else {
            "unreachable"
        };
        println!(
            "{:>4}  {:<24} {:<8} {:<10} {:>10} {:>10} {:>8} {:>9}",
            m.node_id,
            m.addr,
            if m.voter { "voter" } else { "learner" },
            state,
            s.last_log_index,
            s.last_applied_index,
            m.lag,
            s.snapshot_index
        );
    }
}

/// The status as one JSON document (serde_json: every string escaped as JSON requires).
fn status_json(status: &pb::ClusterStatus) -> serde_json::Value {
    let members: Vec<serde_json::Value> = status
        .members
        .iter()
        .map(|m| {
            let node = m.status.as_ref().map(|s| {
                serde_json::json!({
                    "state": s.state,
                    "term": s.current_term,
                    "last_log_index": s.last_log_index,
                    "last_applied_index": s.last_applied_index,
                    "snapshot_index": s.snapshot_index,
                    "purged_index": s.purged_index,
                })
            });
            serde_json::json!({
                "id": m.node_id,
                "addr": m.addr,
                "voter": m.voter,
                "matched_index": m.matched_index,
                "lag": m.lag,
                "status": node,
            })
        })
        .collect();
    serde_json::json!({
        "leader_id": status.leader_id,
        "term": status.term,
        "leader_last_log_index": status.leader_last_log_index,
        "members": members,
    })
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.cluster, &args.credential.credential()?).await?;
    let status = match args.command {
        ClusterCommand::Status => client.cluster_status(pb::ClusterStatusRequest {}).await,
        ClusterCommand::Add { id, addr, learner } => {
            client
                .add_member(pb::AddMemberRequest {
                    node_id: id,
                    addr,
                    promote: !learner,
                })
                .await
        }
        ClusterCommand::Remove { id } => client.remove_member(pb::RemoveMemberRequest { node_id: id }).await,
    }
    .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))
    .context("admin call failed")?
    .into_inner();
    print(&status, args.json);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_escapes_what_it_prints() {
        let status = pb::ClusterStatus {
            leader_id: 2,
            term: 7,
            leader_last_log_index: 42,
            members: vec![
                pb::MemberStatus {
                    node_id: 1,
                    addr: "host\"a\\b:7070".into(),
                    voter: true,
                    lag: 3,
                    matched_index: 39,
                    status: None,
                },
                pb::MemberStatus {
                    node_id: 2,
                    addr: "10.0.0.2:7070".into(),
                    voter: true,
                    status: Some(pb::NodeStatus {
                        state: "Leader".into(),
                        current_term: 7,
                        last_log_index: 42,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
        };
        let printed = status_json(&status).to_string();
        let back: serde_json::Value = serde_json::from_str(&printed).expect("valid JSON");
        assert_eq!(back["members"][0]["addr"], "host\"a\\b:7070");
        assert_eq!(back["members"][0]["status"], serde_json::Value::Null);
        assert_eq!(back["members"][1]["status"]["state"], "Leader");
        assert_eq!(back["members"][1]["status"]["last_log_index"], 42);
        assert_eq!((back["leader_id"].as_u64(), back["term"].as_u64()), (Some(2), Some(7)));
    }
}
