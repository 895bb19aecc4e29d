//! Receptor actions (spec/receptor.md §3.3): the tree of run, download, upload, timeout, try,
//! emit_progress, serial, parallel and codependent, to and from `pb::Action`.

use capstan_proto::pb;
use serde::{Deserialize, Serialize};

use super::*;
use crate::common::body::null_default;

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ResourceLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct DownloadAction {
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub artifact: String,
    #[serde(default, deserialize_with = "null_default")]
    pub from: String,
    #[serde(default, deserialize_with = "null_default")]
    pub to: String,
    #[serde(default, deserialize_with = "null_default")]
    pub cache_key: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
    #[serde(default, deserialize_with = "null_default")]
    pub user: String,
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct UploadAction {
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub artifact: String,
    #[serde(default, deserialize_with = "null_default")]
    pub from: String,
    #[serde(default, deserialize_with = "null_default")]
    pub to: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
    #[serde(default, deserialize_with = "null_default")]
    pub user: String,
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct RunAction {
    #[serde(default, deserialize_with = "null_default")]
    pub path: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub dir: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<ResourceLimits>,
    #[serde(default, deserialize_with = "null_default")]
    pub user: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct TimeoutAction {
    #[schema(no_recursion)]
    pub action: Option<Box<Action>>,
    /// nanoseconds
    #[serde(default, deserialize_with = "null_default")]
    pub timeout: i64,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct EmitProgressAction {
    #[schema(no_recursion)]
    pub action: Option<Box<Action>>,
    #[serde(default, deserialize_with = "null_default")]
    pub start_message: String,
    #[serde(default, deserialize_with = "null_default")]
    pub success_message: String,
    #[serde(default, deserialize_with = "null_default")]
    pub failure_message_prefix: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct TryAction {
    #[schema(no_recursion)]
    pub action: Option<Box<Action>>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ActionList {
    /// `null` elements are kept so that validation can name their index.
    #[serde(default, deserialize_with = "null_default")]
    #[schema(no_recursion)]
    pub actions: Vec<Option<Action>>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_empty_str")]
    pub log_source: String,
}

/// An action: an object with exactly one of these keys (the first present one wins).
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Action {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emit_progress: Option<EmitProgressAction>,
    #[serde(default, rename = "try", skip_serializing_if = "Option::is_none")]
    pub try_: Option<TryAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<ActionList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<ActionList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codependent: Option<ActionList>,
}

impl Action {
    /// Levels of nesting below and including this action (a leaf is 1).
    pub fn depth(&self) -> usize {
        let boxed = |a: &Option<Box<Action>>| a.as_ref().map_or(0, |a| a.depth());
        let list = |l: &ActionList| l.actions.iter().flatten().map(Action::depth).max().unwrap_or(0);
        let below = [
            self.timeout.as_ref().map_or(0, |t| boxed(&t.action)),
            self.emit_progress.as_ref().map_or(0, |e| boxed(&e.action)),
            self.try_.as_ref().map_or(0, |t| boxed(&t.action)),
            self.parallel.as_ref().map_or(0, list),
            self.serial.as_ref().map_or(0, list),
            self.codependent.as_ref().map_or(0, list),
        ];
        1 + below.into_iter().max().unwrap_or(0)
    }
}

fn list_to_pb(l: ActionList) -> pb::ActionList {
    pb::ActionList {
        actions: l
            .actions
            .into_iter()
            .map(|a| a.map(pb::Action::from).unwrap_or_default())
            .collect(),
        log_source: l.log_source,
    }
}

fn boxed_to_pb(a: Option<Box<Action>>) -> Option<Box<pb::Action>> {
    a.map(|a| Box::new(pb::Action::from(*a)))
}

impl From<Action> for pb::Action {
    fn from(a: Action) -> Self {
        use pb::action::Kind;
        let kind = if let Some(d) = a.download {
            Some(Kind::Download(pb::DownloadAction {
                artifact: d.artifact,
                from: d.from,
                to: d.to,
                cache_key: d.cache_key,
                log_source: d.log_source,
                user: d.user,
            }))
        } else if let Some(u) = a.upload {
            Some(Kind::Upload(pb::UploadAction {
                artifact: u.artifact,
                from: u.from,
                to: u.to,
                log_source: u.log_source,
                user: u.user,
            }))
        } else if let Some(r) = a.run {
            Some(Kind::Run(pb::RunAction {
                path: r.path,
                args: r.args,
                dir: r.dir,
                env: r.env.into_iter().map(Into::into).collect(),
                resource_limits: r.resource_limits.map(|l| pb::ResourceLimits { nofile: l.nofile }),
                user: r.user,
                log_source: r.log_source,
            }))
        } else if let Some(t) = a.timeout {
            Some(Kind::Timeout(Box::new(pb::TimeoutAction {
                action: boxed_to_pb(t.action),
                timeout: t.timeout,
                log_source: t.log_source,
            })))
        } else if let Some(e) = a.emit_progress {
            Some(Kind::EmitProgress(Box::new(pb::EmitProgressAction {
                action: boxed_to_pb(e.action),
                start_message: e.start_message,
                success_message: e.success_message,
                failure_message_prefix: e.failure_message_prefix,
                log_source: e.log_source,
            })))
        } else if let Some(t) = a.try_ {
            Some(Kind::Try(Box::new(pb::TryAction {
                action: boxed_to_pb(t.action),
                log_source: t.log_source,
            })))
        } else if let Some(l) = a.parallel {
            Some(Kind::Parallel(list_to_pb(l)))
        } else if let Some(l) = a.serial {
            Some(Kind::Serial(list_to_pb(l)))
        } else {
            a.codependent.map(|l| Kind::Codependent(list_to_pb(l)))
        };
        pb::Action { kind }
    }
}

fn list_from_pb(l: &pb::ActionList) -> ActionList {
    ActionList {
        actions: l
            .actions
            .iter()
            .map(|a| a.kind.as_ref().map(|_| Action::from(a)))
            .collect(),
        log_source: l.log_source.clone(),
    }
}

fn boxed_from_pb(a: &Option<Box<pb::Action>>) -> Option<Box<Action>> {
    a.as_ref().map(|a| Box::new(Action::from(a.as_ref())))
}

impl From<&pb::Action> for Action {
    fn from(a: &pb::Action) -> Self {
        use pb::action::Kind;
        let mut out = Action::default();
        match &a.kind {
            None => {}
            Some(Kind::Download(d)) => {
                out.download = Some(DownloadAction {
                    artifact: d.artifact.clone(),
                    from: d.from.clone(),
                    to: d.to.clone(),
                    cache_key: d.cache_key.clone(),
                    log_source: d.log_source.clone(),
                    user: d.user.clone(),
                })
            }
            Some(Kind::Upload(u)) => {
                out.upload = Some(UploadAction {
                    artifact: u.artifact.clone(),
                    from: u.from.clone(),
                    to: u.to.clone(),
                    log_source: u.log_source.clone(),
                    user: u.user.clone(),
                })
            }
            Some(Kind::Run(r)) => {
                out.run = Some(RunAction {
                    path: r.path.clone(),
                    args: r.args.clone(),
                    dir: r.dir.clone(),
                    env: r.env.iter().map(Into::into).collect(),
                    resource_limits: r.resource_limits.map(|l| ResourceLimits { nofile: l.nofile }),
                    user: r.user.clone(),
                    log_source: r.log_source.clone(),
                })
            }
            Some(Kind::Timeout(t)) => {
                out.timeout = Some(TimeoutAction {
                    action: boxed_from_pb(&t.action),
                    timeout: t.timeout,
                    log_source: t.log_source.clone(),
                })
            }
            Some(Kind::EmitProgress(e)) => {
                out.emit_progress = Some(EmitProgressAction {
                    action: boxed_from_pb(&e.action),
                    start_message: e.start_message.clone(),
                    success_message: e.success_message.clone(),
                    failure_message_prefix: e.failure_message_prefix.clone(),
                    log_source: e.log_source.clone(),
                })
            }
            Some(Kind::Try(t)) => {
                out.try_ = Some(TryAction {
                    action: boxed_from_pb(&t.action),
                    log_source: t.log_source.clone(),
                })
            }
            Some(Kind::Parallel(l)) => out.parallel = Some(list_from_pb(l)),
            Some(Kind::Serial(l)) => out.serial = Some(list_from_pb(l)),
            Some(Kind::Codependent(l)) => out.codependent = Some(list_from_pb(l)),
        }
        out
    }
}
