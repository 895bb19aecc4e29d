//! CF metadata: the key and value rules of labels and annotations (spec §5.1, §5.2), in CF's
//! order and with its messages, and the merge a PATCH makes (a null deletes a key).

use std::collections::BTreeMap;

use crate::pb;

/// Labels a resource may hold (CF's `max_labels_per_resource`).
pub const LABELS_MAX: usize = 50;
/// Annotations a resource may hold (CF's `max_annotations_per_resource`).
pub const ANNOTATIONS_MAX: usize = 200;
const NAME_CHARS_MAX: usize = 63;
const PREFIX_CHARS_MAX: usize = 253;
const ANNOTATION_VALUE_CHARS_MAX: usize = 5000;
const RESERVED_PREFIX: &str = "cloudfoundry.org";

/// The first 8 characters and `...`, as CF shortens a value in a "too long" message.
fn shortened(s: &str) -> String {
    format!("{}...", s.chars().take(8).collect::<String>())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// A DNS label: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`, case-insensitive.
fn is_dns_label(l: &str) -> bool {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !l.is_empty()
        && l.len() <= 63
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && ok_end(l.chars().next())
        && ok_end(l.chars().last())
}

/// CF's DNS regex: at least two labels joined by dots.
fn is_dns(prefix: &str) -> bool {
    let labels: Vec<&str> = prefix.split('.').collect();
    labels.len() >= 2 && labels.iter().all(|l| is_dns_label(l))
}

/// The rules a label value and a key's name part share: characters, ends, length.
fn name_rules(name: &str) -> Result<(), String> {
    if !name.chars().all(is_name_char) {
        return Err(format!("'{name}' contains invalid characters"));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Err(format!("'{name}' starts or ends with invalid characters"));
    }
    if name.chars().count() > NAME_CHARS_MAX {
        return Err(format!(
            "'{}' is greater than {NAME_CHARS_MAX} characters",
            shortened(name)
        ));
    }
    Ok(())
}

/// A label or annotation key, `[prefix/]name` (§5.1, first failure reported).
pub fn key(k: &str) -> Result<(), String> {
    if k.is_empty() {
        return Err("key cannot be empty string".into());
    }
    if k.matches('/').count() > 1 {
        return Err("key has more than one '/'".into());
    }
    let name = match k.split_once('/') {
        Some((prefix, name)) => {
            if !is_dns(prefix) {
                return Err(format!("prefix '{prefix}' must be in valid dns format"));
            }
            if prefix.chars().count() > PREFIX_CHARS_MAX {
                return Err(format!(
                    "prefix '{}' is greater than {PREFIX_CHARS_MAX} characters",
                    shortened(prefix)
                ));
            }
            if prefix.eq_ignore_ascii_case(RESERVED_PREFIX) {
                return Err(format!("prefix '{prefix}' is reserved"));
            }
            name
        }
        None => k,
    };
    if name.is_empty() {
        return Err("key cannot be empty string".into());
    }
    name_rules(name)
}

/// A label value: empty is allowed.
pub fn label_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    name_rules(v)
}

/// A label value as it comes from a selector (same rules).
pub fn selector_value(v: &str) -> Result<(), String> {
    label_value(v)
}

/// A metadata patch as PATCH bodies carry it: every message is `Metadata label key error: …`
/// and the like (422). Annotation keys are checked only when their value is non-blank.
pub fn patch(p: &pb::CfMetadataPatch) -> Result<(), String> {
    for (k, v) in &p.labels {
        key(k).map_err(|e| format!("Metadata label key error: {e}"))?;
        label_value(v).map_err(|e| format!("Metadata label value error: label value error: {e}"))?;
    }
    for k in &p.labels_removed {
        key(k).map_err(|e| format!("Metadata label key error: {e}"))?;
    }
    for (k, v) in &p.annotations {
        if !v.trim().is_empty() {
            key(k).map_err(|e| format!("Metadata annotation key error: {e}"))?;
        }
        if v.chars().count() > ANNOTATION_VALUE_CHARS_MAX {
            return Err(format!(
                "Metadata annotation value error: annotation value error: '{}' is greater than {ANNOTATION_VALUE_CHARS_MAX} characters",
                shortened(v)
            ));
        }
    }
    Ok(())
}

/// The metadata after a patch, or CF's limit error when a map grew past its limit.
pub fn merged(before: Option<&pb::CfMetadata>, p: Option<&pb::CfMetadataPatch>) -> Result<pb::CfMetadata, String> {
    let mut m = before.cloned().unwrap_or_default();
    let Some(p) = p else { return Ok(m) };
    let apply = |map: &mut BTreeMap<String, String>, set: &BTreeMap<String, String>, removed: &[String]| {
        let was = map.len();
        for k in removed {
            map.remove(k);
        }
        for (k, v) in set {
            map.insert(k.clone(), v.clone());
        }
        (was, map.len())
    };
    let (was, now) = apply(&mut m.labels, &p.labels, &p.labels_removed);
    if now > LABELS_MAX && now > was {
        return Err(format!(
            "Failed to add {} labels because it would exceed maximum of {LABELS_MAX}",
            p.labels.len()
        ));
    }
    let (was, now) = apply(&mut m.annotations, &p.annotations, &p.annotations_removed);
    if now > ANNOTATIONS_MAX && now > was {
        return Err(format!(
            "Failed to add {} annotations because it would exceed maximum of {ANNOTATIONS_MAX}",
            p.annotations.len()
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_cf_rules_in_order() {
        assert_eq!(key(""), Err("key cannot be empty string".into()));
        assert_eq!(key("a/b/c"), Err("key has more than one '/'".into()));
        assert_eq!(
            key("onlycom/x"),
            Err("prefix 'onlycom' must be in valid dns format".into())
        );
        assert_eq!(
            key("cloudfoundry.org/x"),
            Err("prefix 'cloudfoundry.org' is reserved".into())
        );
        assert_eq!(key("example.com/"), Err("key cannot be empty string".into()));
        assert_eq!(key("a b"), Err("'a b' contains invalid characters".into()));
        assert_eq!(key("-ab"), Err("'-ab' starts or ends with invalid characters".into()));
        let long = "a".repeat(64);
        assert_eq!(key(&long), Err("'aaaaaaaa...' is greater than 63 characters".into()));
        assert_eq!(key("example.com/fruit"), Ok(()));
        assert_eq!(key("Fruit_1.x-y"), Ok(()));
    }

    #[test]
    fn label_values_allow_empty() {
        assert_eq!(label_value(""), Ok(()));
        assert_eq!(label_value("strawberry"), Ok(()));
        assert!(label_value("straw berry").is_err());
    }

    #[test]
    fn patches_merge_and_delete() {
        let before = pb::CfMetadata {
            labels: [("a".to_string(), "1".to_string()), ("b".into(), "2".into())].into(),
            annotations: BTreeMap::new(),
        };
        let p = pb::CfMetadataPatch {
            labels: [("c".to_string(), "3".to_string())].into(),
            labels_removed: vec!["a".into()],
            ..Default::default()
        };
        let m = merged(Some(&before), Some(&p)).unwrap();
        assert_eq!(m.labels.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(
            patch(&pb::CfMetadataPatch {
                labels: [("x".to_string(), "bad value".to_string())].into(),
                ..Default::default()
            }),
            Err("Metadata label value error: label value error: 'bad value' contains invalid characters".into())
        );
    }

    #[test]
    fn too_many_labels_is_refused_only_when_growing() {
        let full: BTreeMap<String, String> = (0..LABELS_MAX).map(|i| (format!("k{i}"), String::new())).collect();
        let before = pb::CfMetadata {
            labels: full,
            ..Default::default()
        };
        let grow = pb::CfMetadataPatch {
            labels: [("new".to_string(), String::new())].into(),
            ..Default::default()
        };
        assert_eq!(
            merged(Some(&before), Some(&grow)),
            Err("Failed to add 1 labels because it would exceed maximum of 50".into())
        );
        let replace = pb::CfMetadataPatch {
            labels: [("k1".to_string(), "v".to_string())].into(),
            ..Default::default()
        };
        assert!(merged(Some(&before), Some(&replace)).is_ok());
    }
}
