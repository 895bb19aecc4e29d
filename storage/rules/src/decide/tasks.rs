//! Flotilla task definitions: create (the id is `<group_name>-<uuid4>` from the entry's seed),
//! update (merge non-empty; a taken alias is refused), delete (deregister); and execute, which
//! queues a run with the definition's fields as they are now.

use super::events::ev;
use super::runs;
use super::{reject, Ctx, Decision, ViewRead};
use crate::pb;
use crate::task_definitions;
use pb::{event::Kind as Ev, RejectionKind};

pub fn not_found(definition_id: &str) -> pb::Rejection {
    reject(
        RejectionKind::DefinitionNotFound,
        format!("Definition with ID {definition_id} not found"),
    )
}

fn alias_taken(alias: &str) -> pb::Rejection {
    reject(
        RejectionKind::DefinitionAliasTaken,
        format!("definition with alias [{alias}] aleady exists"),
    )
}

pub fn create_definition<V: ViewRead>(
    view: &V,
    c: &pb::CreateTaskDefinition,
    cx: &mut Ctx,
) -> Result<Decision, V::Error> {
    let Some(d) = &c.definition else {
        return Ok(Err(reject(
            RejectionKind::InvalidDefinition,
            "the definition is missing",
        )));
    };
    if let Err(msg) = task_definitions::create(d, true) {
        return Ok(Err(reject(RejectionKind::InvalidDefinition, msg)));
    }
    if view.task_definition_by_alias(&d.alias)?.is_some() {
        return Ok(Err(alias_taken(&d.alias)));
    }
    let mut d = d.clone();
    d.definition_id = format!("{}-{}", d.group_name, cx.ids.next_uuid());
    d.created_at = cx.now;
    d.updated_at = cx.now;
    Ok(Ok(vec![ev(Ev::TaskDefinitionCreated(pb::TaskDefinitionCreated {
        definition: Some(d),
    }))]))
}

pub fn update_definition<V: ViewRead>(
    view: &V,
    c: &pb::UpdateTaskDefinition,
    cx: &mut Ctx,
) -> Result<Decision, V::Error> {
    if let Err(msg) = task_definitions::update(c) {
        return Ok(Err(reject(RejectionKind::InvalidDefinition, msg)));
    }
    let Some(before) = view.task_definition(&c.definition_id)? else {
        return Ok(Err(not_found(&c.definition_id)));
    };
    if !c.alias.is_empty() && c.alias != before.alias {
        if let Some(owner) = view.task_definition_by_alias(&c.alias)? {
            if owner != before.definition_id {
                return Ok(Err(alias_taken(&c.alias)));
            }
        }
    }
    let after = task_definitions::merged(&before, c, cx.now);
    Ok(Ok(vec![ev(Ev::TaskDefinitionChanged(pb::TaskDefinitionChanged {
        before: Some(before),
        after: Some(after),
    }))]))
}

pub fn delete_definition<V: ViewRead>(view: &V, c: &pb::DeleteTaskDefinition) -> Result<Decision, V::Error> {
    let Some(d) = view.task_definition(&c.definition_id)? else {
        return Ok(Err(not_found(&c.definition_id)));
    };
    Ok(Ok(vec![ev(Ev::TaskDefinitionDeleted(pb::TaskDefinitionDeleted {
        definition: Some(d),
    }))]))
}

/// Env names Flotilla sets itself; an override naming one is refused (DECISIONS: 409).
pub const RESERVED_ENV: [&str; 3] = ["FLOTILLA_RUN_ID", "FLOTILLA_SERVER_MODE", "FLOTILLA_RUN_OWNER_ID"];
/// `FLOTILLA_SERVER_MODE` as Capstan sets it.
pub const SERVER_MODE: &str = "capstan";

/// Queues a run: the definition's fields snapshotted, env = definition env, then the overrides
/// (replacing a same-named variable), then Flotilla's reserved variables.
/// Checked in Flotilla's order: the definition (404), reserved names (409), the cluster (400).
pub fn execute<V: ViewRead>(view: &V, c: &pb::ExecuteTask, cx: &mut Ctx) -> Result<Decision, V::Error> {
    let Some(d) = view.task_definition(&c.definition_id)? else {
        return Ok(Err(not_found(&c.definition_id)));
    };
    if let Some(bad) = c.env_overrides.iter().find(|e| RESERVED_ENV.contains(&e.name.as_str())) {
        return Ok(Err(reject(
            RejectionKind::ReservedEnv,
            format!("environment variable {} is reserved", bad.name),
        )));
    }
    let cluster_name = if c.cluster_name.is_empty() {
        "default"
    } else {
        c.cluster_name.as_str()
    };
    if !runs::pool_can_run(&view.cells()?, cluster_name, d.memory) {
        return Ok(Err(reject(
            RejectionKind::ClusterCannotRun,
            format!(
                "definition [{}] cannot be run on cluster [{cluster_name}]",
                d.definition_id
            ),
        )));
    }
    let run_id = cx.ids.next_uuid();
    let mut env: Vec<pb::EnvironmentVariable> = d.env.clone();
    for o in &c.env_overrides {
        match env.iter_mut().find(|e| e.name == o.name) {
            Some(e) => e.value = o.value.clone(),
            None => env.push(o.clone()),
        }
    }
    for (name, value) in [
        ("FLOTILLA_RUN_ID", run_id.as_str()),
        ("FLOTILLA_SERVER_MODE", SERVER_MODE),
        ("FLOTILLA_RUN_OWNER_ID", ""),
    ] {
        env.push(pb::EnvironmentVariable {
            name: name.into(),
            value: value.into(),
        });
    }
    let run = pb::TaskRun {
        run_id,
        definition_id: d.definition_id,
        alias: d.alias,
        group_name: d.group_name,
        image: d.image,
        command: d.command,
        memory: d.memory,
        env,
        tags: d.tags,
        cluster_name: cluster_name.to_owned(),
        status: pb::TaskRunStatus::Queued as i32,
        queued_at: cx.now,
        ..Default::default()
    };
    Ok(Ok(vec![ev(Ev::TaskRunQueued(pb::TaskRunQueued { run: Some(run) }))]))
}
