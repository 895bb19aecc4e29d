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
    credential: crate::auth::client::SecretArgs,
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
    credential: &capstan_raft::credential::ClusterCredential,
) -> anyhow::Result<AdminClient<capstan_raft::credential::Authed>> {
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
        let members: Vec<serde_like::Member> = status.members.iter().map(serde_like::Member::from).collect();
        println!(
            "{{\"leader_id\":{},\"term\":{},\"leader_last_log_index\":{},\"members\":[{}]}}",
            status.leader_id,
            status.term,
            status.leader_last_log_index,
            members
                .iter()
                .map(serde_like::Member::to_json)
                .collect::<Vec<_>>()
                .join(",")
        );
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

/// Hand-rolled JSON for the status (keeps serde out of the binary's CLI path).
mod serde_like {
    use capstan_proto::pb;

    pub struct Member {
        id: u64,
        addr: String,
        voter: bool,
        lag: u64,
        matched: u64,
        status: Option<pb::NodeStatus>,
    }

    impl From<&pb::MemberStatus> for Member {
        fn from(m: &pb::MemberStatus) -> Self {
            Member {
                id: m.node_id,
                addr: m.addr.clone(),
                voter: m.voter,
                lag: m.lag,
                matched: m.matched_index,
                status: m.status.clone(),
            }
        }
    }

    impl Member {
        pub fn to_json(&self) -> String {
            let status = match &self.status {
                None => "null".to_owned(),
                Some(s) => format!(
                    "{{\"state\":\"{}\",\"term\":{},\"last_log_index\":{},\"last_applied_index\":{},\"snapshot_index\":{},\"purged_index\":{}}}",
                    s.state, s.current_term, s.last_log_index, s.last_applied_index, s.snapshot_index, s.purged_index
                ),
            };
            format!(
                "{{\"id\":{},\"addr\":\"{}\",\"voter\":{},\"matched_index\":{},\"lag\":{},\"status\":{}}}",
                self.id,
                self.addr.replace('"', "'"),
                self.voter,
                self.matched,
                self.lag,
                status
            )
        }
    }
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
