//! CF's `label_selector` (spec §5.3): parsed in CF's order of forms with its messages, evaluated
//! against a resource's labels. Every requirement must hold.

use std::collections::BTreeMap;

use super::labels;

/// Requirements one selector may hold.
pub const REQUIREMENTS_MAX: usize = 50;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    In,
    NotIn,
    Equal,
    NotEqual,
    Exists,
    NotExists,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

/// A parsed selector: all its requirements hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

/// The pieces between commas that are not inside parentheses (CF scans `(?:\(.*?\)|[^,])+`).
fn pieces(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut depth_open) = (0usize, false);
    for (i, c) in s.char_indices() {
        match c {
            '(' if !depth_open => depth_open = s[i + 1..].contains(')'),
            ')' if depth_open => depth_open = false,
            ',' if !depth_open => {
                if i > start {
                    out.push(&s[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if s.len() > start {
        out.push(&s[start..]);
    }
    out
}

/// Ruby's `split(',')`: trailing empty items are dropped (`""` gives none).
fn values(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.split(',').map(str::to_owned).collect();
    while v.last().is_some_and(String::is_empty) {
        v.pop();
    }
    v
}

/// `[\w\-._/]+` (Ruby's `\w` is ASCII word characters).
fn is_key_chars(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
}

fn set_form(piece: &str, word: &str) -> Option<(String, Vec<String>)> {
    let marker = format!(" {word} (");
    let at = piece.find(&marker)?;
    let inner = piece[at + marker.len()..].strip_suffix(')')?;
    Some((piece[..at].to_owned(), values(inner)))
}

fn requirement(piece: &str) -> Option<Requirement> {
    let req = |key: &str, op, values| Requirement {
        key: key.to_owned(),
        op,
        values,
    };
    if let Some((k, v)) = set_form(piece, "in") {
        return Some(req(&k, Op::In, v));
    }
    if let Some((k, v)) = set_form(piece, "notin") {
        return Some(req(&k, Op::NotIn, v));
    }
    let key_end = piece
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')))
        .unwrap_or(piece.len());
    let (key, rest) = piece.split_at(key_end);
    if is_key_chars(key) {
        if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
            return Some(req(key, Op::Equal, values(v)));
        }
        if let Some(v) = rest.strip_prefix("!=") {
            return Some(req(key, Op::NotEqual, values(v)));
        }
        if rest.is_empty() {
            return Some(req(key, Op::Exists, vec![]));
        }
    }
    let negated = piece.strip_prefix('!').filter(|k| is_key_chars(k))?;
    Some(req(negated, Op::NotExists, vec![]))
}

/// Parses a selector; the error is the message after "The query parameter is invalid: ".
pub fn parse(s: &str) -> Result<Selector, String> {
    let pieces = pieces(s);
    if pieces.is_empty() {
        return Err("Missing label_selector value".into());
    }
    if pieces.len() > REQUIREMENTS_MAX {
        return Err(format!(
            "Too many label_selector requirements (maximum is {REQUIREMENTS_MAX})"
        ));
    }
    let mut reqs = Vec::with_capacity(pieces.len());
    for p in pieces {
        let r = requirement(p).ok_or_else(|| "Invalid label_selector value".to_string())?;
        labels::key(&r.key)?;
        for v in &r.values {
            labels::selector_value(v)?;
        }
        reqs.push(r);
    }
    Ok(Selector(reqs))
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| {
            let has_value_in = || labels.get(&r.key).is_some_and(|v| r.values.contains(v));
            match r.op {
                Op::In | Op::Equal => has_value_in(),
                Op::NotIn | Op::NotEqual => !has_value_in(),
                Op::Exists => labels.contains_key(&r.key),
                Op::NotExists => !labels.contains_key(&r.key),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_form_parses_in_cf_order() {
        let s = parse("env in (prod,staging),tier notin (db),fruit=strawberry,a==b,c!=d,e,!f").unwrap();
        let ops: Vec<Op> = s.0.iter().map(|r| r.op.clone()).collect();
        assert_eq!(
            ops,
            [
                Op::In,
                Op::NotIn,
                Op::Equal,
                Op::Equal,
                Op::NotEqual,
                Op::Exists,
                Op::NotExists
            ]
        );
        assert_eq!(s.0[0].values, ["prod", "staging"]);
        assert_eq!(s.0[2].key, "fruit");
        assert_eq!(parse("example.com/x=1").unwrap().0[0].key, "example.com/x");
    }

    #[test]
    fn errors_are_cf_messages() {
        assert_eq!(parse(""), Err("Missing label_selector value".into()));
        assert_eq!(parse(",,"), Err("Missing label_selector value".into()));
        let many = (0..51).map(|i| format!("k{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(
            parse(&many),
            Err("Too many label_selector requirements (maximum is 50)".into())
        );
        assert_eq!(parse("a b"), Err("Invalid label_selector value".into()));
        assert_eq!(parse("a=b c"), Err("'b c' contains invalid characters".into()));
        assert_eq!(parse("x in (a b)"), Err("'a b' contains invalid characters".into()));
        assert_eq!(
            parse("onlycom/x=1"),
            Err("prefix 'onlycom' must be in valid dns format".into())
        );
    }

    #[test]
    fn semantics_follow_cf() {
        let l = labels(&[("fruit", "strawberry"), ("env", "prod")]);
        let none = labels(&[]);
        let m = |s: &str, l: &BTreeMap<String, String>| parse(s).unwrap().matches(l);
        assert!(m("fruit=strawberry", &l));
        assert!(m("fruit==strawberry", &l));
        assert!(!m("fruit=apple", &l));
        assert!(m("fruit!=apple", &l));
        assert!(m("fruit!=apple", &none), "a resource without the key matches !=");
        assert!(m("env in (prod,dev)", &l));
        assert!(m("env notin (dev)", &l));
        assert!(m("env notin (dev)", &none), "a resource without the key matches notin");
        assert!(m("fruit", &l) && !m("fruit", &none));
        assert!(m("!fruit", &none) && !m("!fruit", &l));
        assert!(!m("fruit=", &l), "an empty value list matches nothing");
        assert!(m("fruit=strawberry,env=prod", &l) && !m("fruit=strawberry,env=dev", &l));
    }
}
