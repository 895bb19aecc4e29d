//! The run list query of Flotilla's history routes (spec/flotilla.md §1.2, §1.6): whitelisted
//! filters and sort fields, validated statuses, paging — never interpolated anywhere. Sorting
//! follows Postgres' `NULLS LAST` for times a run does not have yet, in either order.

use std::cmp::Ordering;

use super::task_definitions::{page_limit, sort_and_order, SortField};
use crate::pb;

/// Sort keys a run list accepts.
pub const SORT_FIELDS: [&str; 6] = [
    "run_id",
    "cluster_name",
    "status",
    "started_at",
    "finished_at",
    "group_name",
];
/// Statuses a `status` filter accepts (case-sensitive, as Flotilla).
pub const STATUSES: [&str; 5] = ["QUEUED", "PENDING", "RUNNING", "STOPPED", "NEEDS_RETRY"];

pub use capstan_proto::task_run_status_name as status_name;

/// A validated run list query.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub limit: u32,
    pub offset: u32,
    pub sort_by: String,
    pub descending: bool,
    pub definition_id: String,
    pub status: Vec<String>,
    pub cluster_name: Vec<String>,
    pub group_name: Vec<String>,
    pub alias: Vec<String>,
}

/// What a run sorts by: the field (`None` = no value yet, always last), then the run id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSortKey {
    pub field: Option<SortField>,
    pub run_id: String,
}

impl RunQuery {
    pub fn from_request(r: &pb::ListTaskRunsRequest) -> Result<Self, String> {
        let (sort_by, descending) = sort_and_order(&r.sort_by, &r.order, &SORT_FIELDS)?;
        if let Some(bad) = r.status.iter().find(|s| !STATUSES.contains(&s.as_str())) {
            return Err(format!("invalid status [{bad}]"));
        }
        let limit = page_limit(r.limit)?;
        Ok(Self {
            limit,
            offset: r.offset,
            sort_by,
            descending,
            definition_id: r.definition_id.clone(),
            status: r.status.clone(),
            cluster_name: r.cluster_name.clone(),
            group_name: r.group_name.clone(),
            alias: r.alias.clone(),
        })
    }

    /// One value: substring for text columns, exact otherwise; several: exact "in".
    fn column(values: &[String], field: &str, substring: bool) -> bool {
        match values {
            [] => true,
            [one] if substring => field.contains(one.as_str()),
            many => many.iter().any(|v| v == field),
        }
    }

    /// A Flotilla run that passes every filter (Receptor tasks are not Flotilla's history).
    pub fn matches(&self, r: &pb::TaskRun) -> bool {
        r.receptor.is_none()
            && (self.definition_id.is_empty() || r.definition_id == self.definition_id)
            && Self::column(&self.status, status_name(r.status), false)
            && Self::column(&self.cluster_name, &r.cluster_name, false)
            && Self::column(&self.group_name, &r.group_name, true)
            && Self::column(&self.alias, &r.alias, true)
    }

    pub fn sort_key(&self, r: &pb::TaskRun) -> RunSortKey {
        let time = |t: i64| (t != 0).then_some(SortField::Number(t));
        let field = match self.sort_by.as_str() {
            "run_id" => None,
            "cluster_name" => Some(SortField::Text(r.cluster_name.clone())),
            "status" => Some(SortField::Text(status_name(r.status).to_owned())),
            "started_at" => time(r.started_at),
            "finished_at" => time(r.finished_at),
            _ => Some(SortField::Text(r.group_name.clone())),
        };
        RunSortKey {
            field,
            run_id: r.run_id.clone(),
        }
    }

    pub fn order(&self, a: &RunSortKey, b: &RunSortKey) -> Ordering {
        let by_field = match (&a.field, &b.field) {
            (Some(x), Some(y)) => {
                let o = x.cmp(y);
                if self.descending {
                    o.reverse()
                } else {
                    o
                }
            }
            // NULLS LAST in both directions (`run_id` sorts by the id alone).
            (None, Some(_)) if self.sort_by != "run_id" => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Equal,
        };
        by_field.then_with(|| {
            let o = a.run_id.cmp(&b.run_id);
            if self.descending {
                o.reverse()
            } else {
                o
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> pb::ListTaskRunsRequest {
        pb::ListTaskRunsRequest::default()
    }

    fn run(id: &str, status: pb::TaskRunStatus, started_at: i64) -> pb::TaskRun {
        pb::TaskRun {
            run_id: id.into(),
            status: status as i32,
            started_at,
            cluster_name: "default".into(),
            group_name: "testing".into(),
            alias: "hello-world".into(),
            ..Default::default()
        }
    }

    #[test]
    fn refuses_what_flotilla_would_have_failed_on() {
        let bad_sort = pb::ListTaskRunsRequest {
            sort_by: "memory".into(),
            ..req()
        };
        assert!(RunQuery::from_request(&bad_sort).is_err_and(|m| m.starts_with("Invalid field to order by [memory]")));
        let bad_order = pb::ListTaskRunsRequest {
            order: "DESC".into(),
            ..req()
        };
        assert!(RunQuery::from_request(&bad_order).is_err());
        let bad_status = pb::ListTaskRunsRequest {
            status: vec!["RUNNING".into(), "running".into()],
            ..req()
        };
        assert_eq!(
            RunQuery::from_request(&bad_status).err().as_deref(),
            Some("invalid status [running]")
        );
        let q = RunQuery::from_request(&req()).expect("defaults");
        assert_eq!((q.limit, q.sort_by.as_str(), q.descending), (1024, "group_name", false));
    }

    #[test]
    fn filters_and_nulls_last_in_both_orders() {
        let runs = [
            run("a", pb::TaskRunStatus::Queued, 0),
            run("b", pb::TaskRunStatus::Running, 20),
            run("c", pb::TaskRunStatus::Stopped, 10),
        ];
        let query = |status: Vec<&str>, order: &str| {
            RunQuery::from_request(&pb::ListTaskRunsRequest {
                status: status.into_iter().map(String::from).collect(),
                sort_by: "started_at".into(),
                order: order.into(),
                ..req()
            })
            .expect("valid")
        };
        let ids = |q: &RunQuery| {
            let mut keys: Vec<RunSortKey> = runs.iter().filter(|r| q.matches(r)).map(|r| q.sort_key(r)).collect();
            keys.sort_by(|a, b| q.order(a, b));
            keys.into_iter().map(|k| k.run_id).collect::<Vec<_>>()
        };
        assert_eq!(ids(&query(vec![], "asc")), ["c", "b", "a"]);
        assert_eq!(
            ids(&query(vec![], "desc")),
            ["b", "c", "a"],
            "a run not started yet stays last"
        );
        assert_eq!(ids(&query(vec!["RUNNING", "QUEUED"], "asc")), ["b", "a"]);
        let alias = RunQuery::from_request(&pb::ListTaskRunsRequest {
            alias: vec!["world".into()],
            cluster_name: vec!["default".into()],
            ..req()
        })
        .expect("valid");
        assert!(
            runs.iter().all(|r| alias.matches(r)),
            "alias is a substring, cluster exact"
        );
        let exact = RunQuery::from_request(&pb::ListTaskRunsRequest {
            cluster_name: vec!["def".into()],
            ..req()
        })
        .expect("valid");
        assert!(!exact.matches(&runs[0]));
    }
}
