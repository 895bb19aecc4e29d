//! Folding: the writes an event makes to the views. Pure — it reads nothing, so apply can collect
//! an entry's writes first and commit them, with the journal and `last_applied`, in one transaction.

use prost::Message;

use crate::keyspace::{self as ks, Tree};
use crate::pb;
use crate::rules::run_lifecycle;
use crate::views::CfRow;

/// One write that folding an event produces: (tree, key, value or delete).
pub struct Write {
    pub tree: Tree,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Folds one event into the writes it makes to the views.
pub fn fold(e: &pb::Event, writes: &mut Vec<Write>) {
    use pb::event::Kind;
    let mut put = |tree: Tree, key: Vec<u8>, value: Option<Vec<u8>>| writes.push(Write { tree, key, value });
    match &e.kind {
        Some(Kind::DesiredLrpCreated(pb::DesiredLrpCreated { desired_lrp: Some(d) })) => {
            put(
                Tree::Desired,
                d.process_guid.as_bytes().to_vec(),
                Some(d.encode_to_vec()),
            );
            put(
                Tree::DesiredByDomain,
                ks::desired_by_domain_key(&d.domain, &d.process_guid),
                Some(vec![]),
            );
        }
        Some(Kind::DesiredLrpChanged(pb::DesiredLrpChanged { before, after: Some(d) })) => {
            put(
                Tree::Desired,
                d.process_guid.as_bytes().to_vec(),
                Some(d.encode_to_vec()),
            );
            // The index row is there since the LRP was created: written again only if the domain
            // moved (each sled insert costs, even of a row that is already there).
            if before.as_ref().is_none_or(|b| b.domain != d.domain) {
                if let Some(b) = before {
                    put(
                        Tree::DesiredByDomain,
                        ks::desired_by_domain_key(&b.domain, &b.process_guid),
                        None,
                    );
                }
                put(
                    Tree::DesiredByDomain,
                    ks::desired_by_domain_key(&d.domain, &d.process_guid),
                    Some(vec![]),
                );
            }
        }
        Some(Kind::DesiredLrpRemoved(pb::DesiredLrpRemoved { desired_lrp: Some(d) })) => {
            put(Tree::Desired, d.process_guid.as_bytes().to_vec(), None);
            put(
                Tree::DesiredByDomain,
                ks::desired_by_domain_key(&d.domain, &d.process_guid),
                None,
            );
        }
        Some(Kind::ActualLrpCreated(pb::ActualLrpCreated { actual_lrp: Some(a) })) => {
            put_actual(&mut put, a);
        }
        Some(Kind::ActualLrpChanged(pb::ActualLrpChanged {
            before: Some(b),
            after: Some(a),
        })) => {
            if !b.cell_id.is_empty() && (b.cell_id != a.cell_id) {
                put(
                    Tree::ActualByCell,
                    ks::actual_by_cell_key(&b.cell_id, &b.process_guid, b.index),
                    None,
                );
            }
            if b.domain != a.domain {
                put(
                    Tree::ActualByDomain,
                    ks::actual_by_domain_key(&b.domain, &b.process_guid, b.index),
                    None,
                );
            }
            // Index rows already there (same domain, same cell) are not written again.
            put_actual_changed(&mut put, a, b.domain != a.domain, b.cell_id != a.cell_id);
        }
        Some(Kind::ActualLrpRemoved(pb::ActualLrpRemoved { actual_lrp: Some(a) })) => {
            put(Tree::Actual, ks::actual_key(&a.process_guid, a.index), None);
            put(
                Tree::ActualByDomain,
                ks::actual_by_domain_key(&a.domain, &a.process_guid, a.index),
                None,
            );
            if !a.cell_id.is_empty() {
                put(
                    Tree::ActualByCell,
                    ks::actual_by_cell_key(&a.cell_id, &a.process_guid, a.index),
                    None,
                );
            }
        }
        Some(Kind::CellRegistered(pb::CellRegistered { cell: Some(c) })) => {
            put(Tree::Cells, c.cell_id.as_bytes().to_vec(), Some(c.encode_to_vec()));
        }
        Some(Kind::CellRemoved(pb::CellRemoved { cell: Some(c), .. })) => {
            put(Tree::Cells, c.cell_id.as_bytes().to_vec(), None);
        }
        Some(Kind::TokensRevoked(pb::TokensRevoked { revoked, expired })) => {
            for r in expired {
                put(Tree::RevokedTokens, r.jti.as_bytes().to_vec(), None);
                put(
                    Tree::RevokedTokensByExpiry,
                    ks::revoked_by_expiry_key(r.expires_at_ns, &r.jti),
                    None,
                );
            }
            for r in revoked {
                put(Tree::RevokedTokens, r.jti.as_bytes().to_vec(), Some(r.encode_to_vec()));
                put(
                    Tree::RevokedTokensByExpiry,
                    ks::revoked_by_expiry_key(r.expires_at_ns, &r.jti),
                    Some(Vec::new()),
                );
            }
        }
        Some(Kind::FreshDomainBumped(pb::FreshDomainBumped { fresh_domain: Some(d) })) => {
            put(
                Tree::FreshDomains,
                d.domain.as_bytes().to_vec(),
                Some(d.encode_to_vec()),
            );
        }
        Some(Kind::TaskDefinitionCreated(pb::TaskDefinitionCreated { definition: Some(d) })) => {
            put_definition(&mut put, d);
        }
        Some(Kind::TaskDefinitionChanged(pb::TaskDefinitionChanged {
            before: Some(b),
            after: Some(a),
        })) => {
            if b.alias != a.alias {
                put(Tree::TaskDefinitionsByAlias, b.alias.as_bytes().to_vec(), None);
            }
            put_definition(&mut put, a);
        }
        Some(Kind::TaskDefinitionDeleted(pb::TaskDefinitionDeleted { definition: Some(d) })) => {
            put(Tree::TaskDefinitions, d.definition_id.as_bytes().to_vec(), None);
            put(Tree::TaskDefinitionsByAlias, d.alias.as_bytes().to_vec(), None);
        }
        Some(Kind::TaskRunQueued(pb::TaskRunQueued { run: Some(r) })) => {
            put(Tree::TaskRuns, r.run_id.as_bytes().to_vec(), Some(r.encode_to_vec()));
            // A Receptor task belongs to no definition.
            if !r.definition_id.is_empty() {
                put(
                    Tree::TaskRunsByDefinition,
                    ks::run_by_definition_key(&r.definition_id, &r.run_id),
                    Some(vec![]),
                );
            }
        }
        Some(Kind::TaskRunRemoved(pb::TaskRunRemoved { run: Some(r) })) => {
            put(Tree::TaskRuns, r.run_id.as_bytes().to_vec(), None);
            if let Some(cell) = run_lifecycle::on_cell(r) {
                put(Tree::TaskRunsByCell, ks::run_by_cell_key(cell, &r.run_id), None);
            }
        }
        Some(Kind::TaskRunChanged(pb::TaskRunChanged {
            before: Some(b),
            after: Some(a),
        })) => {
            put(Tree::TaskRuns, a.run_id.as_bytes().to_vec(), Some(a.encode_to_vec()));
            let (was, is) = (run_lifecycle::on_cell(b), run_lifecycle::on_cell(a));
            if let Some(cell) = was.filter(|c| Some(*c) != is) {
                put(Tree::TaskRunsByCell, ks::run_by_cell_key(cell, &b.run_id), None);
            }
            if let Some(cell) = is.filter(|c| Some(*c) != was) {
                put(Tree::TaskRunsByCell, ks::run_by_cell_key(cell, &a.run_id), Some(vec![]));
            }
        }
        Some(Kind::CfOrganizationChanged(c)) => cf_changed(&mut put, c.before.as_ref(), c.after.as_ref()),
        Some(Kind::CfSpaceChanged(c)) => cf_changed(&mut put, c.before.as_ref(), c.after.as_ref()),
        Some(Kind::CfAppChanged(c)) => cf_changed(&mut put, c.before.as_ref(), c.after.as_ref()),
        Some(Kind::CfProcessChanged(c)) => cf_changed(&mut put, c.before.as_ref(), c.after.as_ref()),
        Some(Kind::CfJobRecorded(pb::CfJobRecorded { job: Some(j) })) => {
            put(Tree::CfJobs, j.guid.as_bytes().to_vec(), Some(j.encode_to_vec()));
        }
        // An event without its payload changes nothing; decide never makes one.
        _ => {}
    }
}

/// The writes of a CF resource's change: its row and its name, parent and time indexes (the
/// old ones go first, so an unchanged key is simply written again).
fn cf_changed<T: CfRow>(put: &mut impl FnMut(Tree, Vec<u8>, Option<Vec<u8>>), before: Option<&T>, after: Option<&T>) {
    let kind = T::KIND as u8;
    for (row, value) in [(before, None), (after, Some(()))] {
        let Some(r) = row else { continue };
        let set = |v: Vec<u8>| value.map(|_| v);
        if value.is_some() {
            put(T::TREE, r.guid().as_bytes().to_vec(), Some(r.encode_to_vec()));
        } else if after.is_none() {
            put(T::TREE, r.guid().as_bytes().to_vec(), None);
        }
        put(
            Tree::CfNames,
            ks::cf_name_key(kind, r.parent(), r.name()),
            set(r.guid().as_bytes().to_vec()),
        );
        if !r.parent().is_empty() {
            put(
                Tree::CfChildren,
                ks::cf_child_key(r.parent(), r.guid()),
                set(vec![kind]),
            );
        }
        put(
            Tree::CfByCreated,
            ks::cf_time_key(kind, r.created_at(), r.guid()),
            set(vec![]),
        );
        put(
            Tree::CfByUpdated,
            ks::cf_time_key(kind, r.updated_at(), r.guid()),
            set(vec![]),
        );
    }
}

/// The writes of a definition's new state: its row and its alias index.
fn put_definition(put: &mut impl FnMut(Tree, Vec<u8>, Option<Vec<u8>>), d: &pb::TaskDefinition) {
    put(
        Tree::TaskDefinitions,
        d.definition_id.as_bytes().to_vec(),
        Some(d.encode_to_vec()),
    );
    put(
        Tree::TaskDefinitionsByAlias,
        d.alias.as_bytes().to_vec(),
        Some(d.definition_id.as_bytes().to_vec()),
    );
}

/// The writes of a new actual: its row, its domain index, its cell index.
fn put_actual(put: &mut impl FnMut(Tree, Vec<u8>, Option<Vec<u8>>), a: &pb::ActualLrp) {
    put_actual_changed(put, a, true, true);
}

/// The writes of an actual's new state: its row, and its domain and cell index rows where they
/// are new.
fn put_actual_changed(
    put: &mut impl FnMut(Tree, Vec<u8>, Option<Vec<u8>>),
    a: &pb::ActualLrp,
    new_domain: bool,
    new_cell: bool,
) {
    put(
        Tree::Actual,
        ks::actual_key(&a.process_guid, a.index),
        Some(a.encode_to_vec()),
    );
    if new_domain {
        put(
            Tree::ActualByDomain,
            ks::actual_by_domain_key(&a.domain, &a.process_guid, a.index),
            Some(vec![]),
        );
    }
    if new_cell && !a.cell_id.is_empty() {
        put(
            Tree::ActualByCell,
            ks::actual_by_cell_key(&a.cell_id, &a.process_guid, a.index),
            Some(vec![]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actual(domain: &str, cell: &str, placement_error: &str) -> pb::ActualLrp {
        pb::ActualLrp {
            process_guid: "pg".into(),
            index: 0,
            domain: domain.into(),
            cell_id: cell.into(),
            placement_error: placement_error.into(),
            ..Default::default()
        }
    }

    fn changed(before: pb::ActualLrp, after: pb::ActualLrp) -> Vec<(Tree, Vec<u8>, Option<Vec<u8>>)> {
        let e = pb::Event {
            kind: Some(pb::event::Kind::ActualLrpChanged(pb::ActualLrpChanged {
                before: Some(before),
                after: Some(after),
            })),
        };
        let mut writes = Vec::new();
        fold(&e, &mut writes);
        writes.into_iter().map(|w| (w.tree, w.key, w.value)).collect()
    }

    #[test]
    fn a_change_writes_only_the_index_rows_that_move() {
        // Same domain, same cell (a placement failure, a state change on its cell): the row only.
        let w = changed(actual("d", "", ""), actual("d", "", "insufficient resources"));
        assert_eq!(w.iter().map(|w| w.0).collect::<Vec<_>>(), [Tree::Actual]);
        let w = changed(actual("d", "c1", ""), actual("d", "c1", "x"));
        assert_eq!(w.iter().map(|w| w.0).collect::<Vec<_>>(), [Tree::Actual]);
        // Placed on a cell: the cell's index row is added.
        let w = changed(actual("d", "", ""), actual("d", "c1", ""));
        assert!(w.contains(&(Tree::ActualByCell, ks::actual_by_cell_key("c1", "pg", 0), Some(vec![]))));
        // Moved cell: the old row goes, the new one comes.
        let w = changed(actual("d", "c1", ""), actual("d", "c2", ""));
        assert!(w.contains(&(Tree::ActualByCell, ks::actual_by_cell_key("c1", "pg", 0), None)));
        assert!(w.contains(&(Tree::ActualByCell, ks::actual_by_cell_key("c2", "pg", 0), Some(vec![]))));
        // A domain that moved (never by the rules today): both domain rows.
        let w = changed(actual("d", "", ""), actual("e", "", ""));
        assert!(w.contains(&(Tree::ActualByDomain, ks::actual_by_domain_key("d", "pg", 0), None)));
        assert!(w.contains(&(
            Tree::ActualByDomain,
            ks::actual_by_domain_key("e", "pg", 0),
            Some(vec![])
        )));
    }
}
