//! Diego Receptor tasks (spec/receptor.md §3.7, §4; DECISIONS "Receptor tasks"): validation of a
//! TaskCreateRequest in Diego's order and words, whether any cell could ever run a task, and the
//! names of a task's states. A Receptor task is a [`pb::TaskRun`] with `receptor` set: the same
//! run lifecycle, queue and cells as Flotilla's runs, shown in Receptor's shape.

use super::limits::*;
use super::placement::provides_rootfs;
use super::validate::{egress_rules, has_url_scheme, is_valid_guid, nested_action, ValidationErrors};
use crate::pb;

/// Receptor's reason for a task no cell could ever run (Diego's auctioneer).
pub const INSUFFICIENT_RESOURCES: &str = "insufficient resources";

/// Validates a create (the checks of a DesiredLRP create that apply, with `task_guid`), then
/// Capstan's limits; messages `Invalid field: x` joined by ", ".
pub fn validate(c: &pb::DesireTask) -> Result<(), String> {
    let mut errs = ValidationErrors::default();
    let t = c.task.clone().unwrap_or_default();
    if t.domain.is_empty() || t.domain.len() > NAME_BYTES_MAX || t.domain.chars().any(char::is_control) {
        errs.field("domain");
    }
    if !is_valid_guid(&c.task_guid) {
        errs.field("task_guid");
    }
    if t.rootfs.is_empty() {
        errs.field("rootfs");
    }
    if !has_url_scheme(&t.rootfs) {
        errs.field("rootfs");
    }
    match &t.action {
        None => errs.push("invalid action type"),
        Some(a) => nested_action(&mut errs, "action", a),
    }
    if t.cpu_weight > CPU_WEIGHT_MAX {
        errs.field("cpu_weight");
    }
    if t.annotation.len() > ANNOTATION_BYTES_MAX {
        errs.field("annotation");
    }
    egress_rules(&mut errs, &t.egress_rules);
    if c.memory_mb < 0 {
        errs.field("memory_mb");
    }
    if t.disk_mb < 0 {
        errs.field("disk_mb");
    }
    if t.result_file.len() > TASK_PATH_BYTES_MAX || t.result_file.chars().any(char::is_control) {
        errs.field("result_file");
    }
    if !t.completion_callback_url.is_empty() && !is_callback_url(&t.completion_callback_url) {
        errs.field("completion_callback_url");
    }
    errs.into_result()
}

/// An absolute `http`/`https` URL with a host, bounded.
fn is_callback_url(u: &str) -> bool {
    if u.len() > TASK_PATH_BYTES_MAX || u.chars().any(|c| c.is_control() || c == ' ') {
        return false;
    }
    let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

/// Whether any registered cell could ever take the task: it provides the rootfs and its whole
/// capacity fits the memory and disk.
pub fn any_cell_fits(cells: &[pb::Cell], rootfs: &str, memory_mb: i32, disk_mb: i32) -> bool {
    cells.iter().any(|c| {
        let cap = c.capacity.unwrap_or_default();
        provides_rootfs(c, rootfs)
            && cap.containers > 0
            && cap.memory_mb >= memory_mb.max(0)
            && cap.disk_mb >= disk_mb.max(0)
    })
}

pub use capstan_proto::receptor_task_state_name as state_name;

/// A task's result as the cell read it, bounded (Diego keeps the first 10 KB).
pub fn bounded_result(result: &str) -> String {
    if result.len() <= crate::limits::TASK_RESULT_BYTES_MAX {
        return result.to_owned();
    }
    let mut end = crate::limits::TASK_RESULT_BYTES_MAX;
    while !result.is_char_boundary(end) {
        end -= 1;
    }
    result[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> pb::DesireTask {
        pb::DesireTask {
            task_guid: "task-1".into(),
            memory_mb: 64,
            env: vec![],
            task: Some(pb::ReceptorTask {
                domain: "tests".into(),
                rootfs: "preloaded:cflinuxfs4".into(),
                action: Some(pb::Action {
                    kind: Some(pb::action::Kind::Run(pb::RunAction {
                        path: "true".into(),
                        user: "vcap".into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_valid_task_passes_and_errors_come_in_diegos_order() {
        assert_eq!(validate(&valid()), Ok(()));
        let mut bad = valid();
        bad.task_guid = "no spaces".into();
        if let Some(t) = bad.task.as_mut() {
            t.domain.clear();
            t.rootfs = "noscheme".into();
            t.action = None;
            t.cpu_weight = 101;
            t.completion_callback_url = "ftp://x".into();
        }
        assert_eq!(
            validate(&bad),
            Err(
                "Invalid field: domain, Invalid field: task_guid, Invalid field: rootfs, invalid action type, \
                 Invalid field: cpu_weight, Invalid field: completion_callback_url"
                    .into()
            )
        );
        let mut ok_url = valid();
        if let Some(t) = ok_url.task.as_mut() {
            t.completion_callback_url = "http://127.0.0.1:9/done".into();
        }
        assert_eq!(validate(&ok_url), Ok(()));
    }

    #[test]
    fn fit_and_state_names() {
        let cell = pb::Cell {
            cell_id: "c".into(),
            preloaded_stacks: vec!["cflinuxfs4".into()],
            capacity: Some(pb::CellCapacity {
                memory_mb: 1024,
                disk_mb: 1024,
                containers: 4,
            }),
            ..Default::default()
        };
        assert!(any_cell_fits(
            std::slice::from_ref(&cell),
            "preloaded:cflinuxfs4",
            1024,
            0
        ));
        assert!(!any_cell_fits(
            std::slice::from_ref(&cell),
            "preloaded:cflinuxfs4",
            2048,
            0
        ));
        assert!(!any_cell_fits(std::slice::from_ref(&cell), "docker:///busybox", 1, 0));
        let mut r = pb::TaskRun {
            status: pb::TaskRunStatus::Stopped as i32,
            ..Default::default()
        };
        assert_eq!(state_name(&r), "COMPLETED");
        r.resolving = true;
        assert_eq!(state_name(&r), "RESOLVING");
    }
}
