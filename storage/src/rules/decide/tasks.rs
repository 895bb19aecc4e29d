//! Flotilla task definitions: create (the id is `<group_name>-<uuid4>` from the entry's seed),
//! update (merge non-empty; a taken alias is refused), delete (deregister).

use super::events::ev;
use super::{reject, Ctx, Decision, ViewRead};
use crate::pb;
use crate::rules::task_definitions;
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
