//! Flotilla task definitions: validation with Flotilla's CLASSIC messages (spec/flotilla.md §1.4),
//! and the list query — whitelisted filters, sort and paging (§1.2), never interpolated anywhere.

use std::cmp::Ordering;

use super::limits::NAME_BYTES_MAX;
use crate::pb;

/// `group_name` length (Flotilla: 255).
pub const GROUP_NAME_CHARS_MAX: usize = 255;
/// Default page size of a definition list (Flotilla: 1024).
pub const LIST_LIMIT_DEFAULT: u32 = 1024;
/// Largest page a list may ask for: a page is built in memory, so it is bounded.
pub const LIST_LIMIT_MAX: u32 = 10_000;
/// Sort keys a definition list accepts.
pub const SORT_FIELDS: [&str; 4] = ["alias", "image", "group_name", "memory"];

/// Flotilla's `Definition.IsValid` for a create; the messages joined by `\n` (CLASSIC).
pub fn create(d: &pb::TaskDefinition, memory_given: bool) -> Result<(), String> {
    let mut errs: Vec<&str> = Vec::new();
    if d.image.is_empty() {
        errs.push("string [image] must be specified");
    }
    if d.group_name.is_empty() {
        errs.push("string [group_name] must be specified");
    } else {
        if !d
            .group_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            errs.push("Group name can only contain letters, numbers, hyphens, and underscores");
        }
        if d.group_name.chars().count() > GROUP_NAME_CHARS_MAX {
            errs.push("Group name must be 255 characters or less");
        }
    }
    if d.alias.is_empty() {
        errs.push("string [alias] must be specified");
    } else if d.alias.len() > NAME_BYTES_MAX || d.alias.chars().any(char::is_control) {
        errs.push("string [alias] must be 1024 bytes or less, without control characters");
    }
    if !memory_given {
        errs.push("int [memory] must be specified");
    } else if d.memory < 0 {
        errs.push("int [memory] must not be negative");
    }
    if d.command.is_empty() {
        errs.push("string [command] must be specified");
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

/// An update: the merged result must still be a valid definition.
pub fn update(u: &pb::UpdateTaskDefinition) -> Result<(), String> {
    if u.memory < 0 {
        return Err("int [memory] must not be negative".into());
    }
    if u.alias.len() > NAME_BYTES_MAX || u.alias.chars().any(char::is_control) {
        return Err("string [alias] must be 1024 bytes or less, without control characters".into());
    }
    Ok(())
}

/// Flotilla's "merge non-empty": what an update leaves of `before`.
pub fn merged(before: &pb::TaskDefinition, u: &pb::UpdateTaskDefinition, now: i64) -> pb::TaskDefinition {
    let mut after = before.clone();
    let keep_or = |old: &mut String, new: &str| {
        if !new.is_empty() {
            *old = new.to_owned();
        }
    };
    keep_or(&mut after.alias, &u.alias);
    keep_or(&mut after.image, &u.image);
    keep_or(&mut after.command, &u.command);
    keep_or(&mut after.user, &u.user);
    if u.memory > 0 {
        after.memory = u.memory;
    }
    if u.has_env {
        after.env = u.env.clone();
    }
    if u.has_tags {
        after.tags = u.tags.clone();
    }
    if u.has_ports {
        after.ports = u.ports.clone();
    }
    after.updated_at = now;
    after
}

/// Flotilla's `sort_by` (default `group_name`, from `fields`) and `order` (`asc` | `desc`), checked
/// with its messages: the sort field and whether it is descending.
pub fn sort_and_order(sort_by: &str, order: &str, fields: &[&str]) -> Result<(String, bool), String> {
    let sort_by = if sort_by.is_empty() { "group_name" } else { sort_by };
    if !fields.contains(&sort_by) {
        return Err(format!(
            "Invalid field to order by [{sort_by}], must be one of [{}]",
            fields.join(", ")
        ));
    }
    let descending = match order {
        "" | "asc" => false,
        "desc" => true,
        other => {
            return Err(format!(
                "Invalid order string, must be one of ('asc', 'desc'), was {other}"
            ))
        }
    };
    Ok((sort_by.to_owned(), descending))
}

/// A list's page size: Flotilla's default for 0, bounded by [`LIST_LIMIT_MAX`].
pub fn page_limit(limit: u32) -> Result<u32, String> {
    match limit {
        0 => Ok(LIST_LIMIT_DEFAULT),
        n if n > LIST_LIMIT_MAX => Err(format!("limit must be at most {LIST_LIMIT_MAX}")),
        n => Ok(n),
    }
}

/// A validated list query.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: u32,
    pub offset: u32,
    pub sort_by: String,
    pub descending: bool,
    pub image: Vec<String>,
    pub group_name: Vec<String>,
    pub alias: Vec<String>,
    pub tag: Vec<String>,
}

impl ListQuery {
    /// Checks a list request: sort field and order from the whitelist, a bounded limit.
    pub fn from_request(r: &pb::ListTaskDefinitionsRequest) -> Result<Self, String> {
        let (sort_by, descending) = sort_and_order(&r.sort_by, &r.order, &SORT_FIELDS)?;
        let limit = page_limit(r.limit)?;
        Ok(Self {
            limit,
            offset: r.offset,
            sort_by,
            descending,
            image: r.image.clone(),
            group_name: r.group_name.clone(),
            alias: r.alias.clone(),
            tag: r.tag.clone(),
        })
    }

    /// Flotilla's column filter: one value is a substring match, several an exact "in".
    fn column(values: &[String], field: &str) -> bool {
        match values {
            [] => true,
            [one] => field.contains(one.as_str()),
            many => many.iter().any(|v| v == field),
        }
    }

    pub fn matches(&self, d: &pb::TaskDefinition) -> bool {
        Self::column(&self.image, &d.image)
            && Self::column(&self.group_name, &d.group_name)
            && Self::column(&self.alias, &d.alias)
            && self.tag.iter().all(|t| d.tags.contains(t))
    }

    /// What a definition sorts by (ties broken by definition_id, so pages are stable).
    pub fn sort_key(&self, d: &pb::TaskDefinition) -> SortKey {
        let field = match self.sort_by.as_str() {
            "alias" => SortField::Text(d.alias.clone()),
            "image" => SortField::Text(d.image.clone()),
            "memory" => SortField::Number(i64::from(d.memory)),
            _ => SortField::Text(d.group_name.clone()),
        };
        SortKey {
            field,
            id: d.definition_id.clone(),
        }
    }

    pub fn order(&self, a: &SortKey, b: &SortKey) -> Ordering {
        let o = a.field.cmp(&b.field).then_with(|| a.id.cmp(&b.id));
        if self.descending {
            o.reverse()
        } else {
            o
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortField {
    Number(i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub field: SortField,
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> pb::TaskDefinition {
        pb::TaskDefinition {
            alias: "hello".into(),
            group_name: "testing".into(),
            image: "ubuntu:latest".into(),
            command: "echo hi".into(),
            memory: 512,
            ..Default::default()
        }
    }

    #[test]
    fn create_validation_in_flotillas_order_and_words() {
        assert!(create(&def(), true).is_ok());
        let empty = pb::TaskDefinition::default();
        assert_eq!(
            create(&empty, false),
            Err("string [image] must be specified\nstring [group_name] must be specified\nstring [alias] must be specified\nint [memory] must be specified\nstring [command] must be specified".into())
        );
        let mut d = def();
        d.group_name = "bad group!".into();
        assert_eq!(
            create(&d, true),
            Err("Group name can only contain letters, numbers, hyphens, and underscores".into())
        );
        d.group_name = "g".repeat(256);
        assert_eq!(
            create(&d, true),
            Err("Group name must be 255 characters or less".into())
        );
    }

    #[test]
    fn merge_keeps_what_the_update_leaves_empty() {
        let before = def();
        let u = pb::UpdateTaskDefinition {
            command: "echo bye".into(),
            has_tags: true,
            tags: vec!["t".into()],
            ..Default::default()
        };
        let after = merged(&before, &u, 7);
        assert_eq!(
            (after.command.as_str(), after.image.as_str(), after.memory),
            ("echo bye", "ubuntu:latest", 512)
        );
        assert_eq!((after.tags.clone(), after.updated_at), (vec!["t".to_string()], 7));
    }

    #[test]
    fn list_query_whitelists_and_filters() {
        let bad = pb::ListTaskDefinitionsRequest {
            sort_by: "command; drop table".into(),
            ..Default::default()
        };
        assert!(ListQuery::from_request(&bad)
            .unwrap_err()
            .starts_with("Invalid field to order by"));
        let bad = pb::ListTaskDefinitionsRequest {
            order: "DESC".into(),
            ..Default::default()
        };
        assert!(ListQuery::from_request(&bad).is_err());
        let q = ListQuery::from_request(&pb::ListTaskDefinitionsRequest {
            alias: vec!["ell".into()],
            ..Default::default()
        })
        .expect("valid");
        assert_eq!((q.limit, q.sort_by.as_str()), (LIST_LIMIT_DEFAULT, "group_name"));
        assert!(q.matches(&def()));
        let q = ListQuery::from_request(&pb::ListTaskDefinitionsRequest {
            alias: vec!["ell".into(), "other".into()],
            ..Default::default()
        })
        .expect("valid");
        assert!(!q.matches(&def()), "several values: exact match");
    }
}
