//! Rolling restarts, on the leader only (`storage::rules::decide::cf_rollout`): for each CF
//! process with a rollout under way, a `StepCfRollout` is proposed whenever a step is due — when
//! the new version's instances are all RUNNING, or one of the two versions is gone — so the app
//! keeps its instances while its containers are replaced one index at a time. Woken by the hub
//! when an instance starts running or a rolling process changes, and every [`TICK`] besides.

use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb;
use capstan_raft::RaftNode;
use capstan_storage::rules::decide::cf_rollout_due;

use super::hub::Hub;

/// How often the stepper looks again without being woken.
const TICK: Duration = Duration::from_secs(1);

pub async fn run(node: RaftNode, hub: Arc<Hub>) {
    loop {
        hub.next_pass(&hub.rollouts, TICK).await;
        let rolling: Vec<String> = hub.with_fleet(|f| f.rollouts.iter().cloned().collect());
        for guid in rolling {
            let views = node.views();
            let due = match views.get_cf::<pb::CfProcess>(&guid) {
                Ok(Some(p)) => cf_rollout_due(views, &p),
                Ok(None) => Ok(false),
                Err(e) => Err(e),
            };
            match due {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(process = %guid, error = %e, "rollout not stepped: the views could not be read");
                    continue;
                }
            }
            let step = pb::command::Kind::StepCfRollout(pb::StepCfRollout {
                process_guid: guid.clone(),
            });
            match node.write(pb::Command { kind: Some(step) }).await {
                Ok(o) if o.rejection.is_none() => tracing::debug!(process = %guid, "rollout stepped"),
                Ok(o) => tracing::debug!(process = %guid, rejection = ?o.rejection, "rollout step refused"),
                Err(e) => tracing::debug!(process = %guid, error = %e, "rollout step not proposed"),
            }
        }
    }
}
