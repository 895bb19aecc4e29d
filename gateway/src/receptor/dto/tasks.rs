//! Receptor TaskCreateRequest and TaskResponse (spec/receptor.md §3.7), over the task runs.

use capstan_proto::pb;
use serde::{Deserialize, Serialize};

use super::*;
use crate::common::body::null_default;

/// TaskCreateRequest.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct TaskCreate {
    #[serde(default, deserialize_with = "null_default")]
    pub task_guid: String,
    #[serde(default, deserialize_with = "null_default")]
    pub domain: String,
    #[serde(default, deserialize_with = "null_default")]
    pub rootfs: String,
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default, deserialize_with = "null_default")]
    pub result_file: String,
    #[serde(default, deserialize_with = "null_default")]
    pub memory_mb: i32,
    #[serde(default, deserialize_with = "null_default")]
    pub disk_mb: i32,
    #[serde(default, deserialize_with = "null_default")]
    pub cpu_weight: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub privileged: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub log_guid: String,
    #[serde(default, deserialize_with = "null_default")]
    pub log_source: String,
    #[serde(default, deserialize_with = "null_default")]
    pub metrics_guid: String,
    #[serde(default, deserialize_with = "null_default")]
    pub completion_callback_url: String,
    #[serde(default, deserialize_with = "null_default")]
    pub annotation: String,
    #[serde(default, deserialize_with = "null_default")]
    pub egress_rules: Vec<SecurityGroupRule>,
}

impl TaskCreate {
    /// As for a DesiredLRP: a tree deeper than the node could decode is refused at the edge.
    pub fn check_action_depth(&self) -> Result<(), String> {
        let max = capstan_proto::ACTION_DEPTH_MAX;
        match &self.action {
            Some(a) if a.depth() > max => Err(format!("Invalid field: action (actions nest at most {max} deep)")),
            _ => Ok(()),
        }
    }
}

impl From<TaskCreate> for pb::CreateTaskRequest {
    fn from(t: TaskCreate) -> Self {
        pb::CreateTaskRequest {
            task_guid: t.task_guid,
            memory_mb: t.memory_mb,
            env: t.env.into_iter().map(Into::into).collect(),
            task: Some(pb::ReceptorTask {
                domain: t.domain,
                rootfs: t.rootfs,
                action: t.action.map(Into::into),
                disk_mb: t.disk_mb,
                cpu_weight: t.cpu_weight,
                privileged: t.privileged,
                log_guid: t.log_guid,
                log_source: t.log_source,
                metrics_guid: t.metrics_guid,
                annotation: t.annotation,
                result_file: t.result_file,
                completion_callback_url: t.completion_callback_url,
                egress_rules: t.egress_rules.into_iter().map(Into::into).collect(),
                created_at: 0,
            }),
        }
    }
}

/// TaskResponse, in Go's field order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskResponse {
    pub task_guid: String,
    pub domain: String,
    pub rootfs: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    pub cell_id: String,
    pub action: Option<Action>,
    pub result_file: String,
    pub result: String,
    pub failed: bool,
    pub failure_reason: String,
    pub memory_mb: i32,
    pub disk_mb: i32,
    pub cpu_weight: u32,
    pub privileged: bool,
    pub log_guid: String,
    pub log_source: String,
    pub metrics_guid: String,
    pub created_at: i64,
    pub completion_callback_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub annotation: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress_rules: Vec<SecurityGroupRule>,
}

/// Receptor's words for a cancelled task.
pub const CANCELLED: &str = "task was cancelled";

impl From<pb::TaskRun> for TaskResponse {
    fn from(r: pb::TaskRun) -> Self {
        let state = capstan_proto::receptor_task_state_name(&r);
        let completed = r.status == pb::TaskRunStatus::Stopped as i32;
        let failed = completed && r.exit_code != Some(0);
        let failure_reason = match (failed, r.stop_requested) {
            (false, _) => String::new(),
            (true, true) => CANCELLED.to_owned(),
            (true, false) => r.exit_reason.clone(),
        };
        let t = r.receptor.unwrap_or_default();
        TaskResponse {
            task_guid: r.run_id,
            domain: t.domain,
            rootfs: t.rootfs,
            env: r.env.iter().map(Into::into).collect(),
            cell_id: r.cell_id,
            action: t.action.as_ref().map(Into::into),
            result_file: t.result_file,
            result: r.result,
            failed,
            failure_reason,
            memory_mb: r.memory,
            disk_mb: t.disk_mb,
            cpu_weight: t.cpu_weight,
            privileged: t.privileged,
            log_guid: t.log_guid,
            log_source: t.log_source,
            metrics_guid: t.metrics_guid,
            created_at: t.created_at,
            completion_callback_url: t.completion_callback_url,
            annotation: t.annotation,
            state,
            egress_rules: t.egress_rules.iter().map(Into::into).collect(),
        }
    }
}
