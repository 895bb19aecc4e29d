//! CF's list query parameters (spec §1.2, §4): the allowed keys per list, `page`/`per_page`,
//! `order_by`, the list filters (split on commas, then percent-decoded), the timestamp filters
//! with their operators, and `label_selector`. Errors are CF's messages (the part after
//! "The query parameter is invalid: ").

use super::selector::{self, Selector};
use crate::pb;

pub const PER_PAGE_DEFAULT: u32 = 50;
/// CF's largest page.
pub const PER_PAGE_MAX: u32 = 5000;

/// Which list a query is for: its allowed keys differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Organizations,
    Spaces,
    Apps,
    Processes,
    /// `/v3/apps/:guid/processes`: the app-level filters are refused
    AppProcesses,
}

impl ListKind {
    fn keys(self) -> &'static [&'static str] {
        match self {
            ListKind::Organizations => &[
                "page",
                "per_page",
                "order_by",
                "created_ats",
                "updated_ats",
                "guids",
                "names",
                "label_selector",
            ],
            ListKind::Spaces => &[
                "page",
                "per_page",
                "order_by",
                "created_ats",
                "updated_ats",
                "guids",
                "names",
                "organization_guids",
                "label_selector",
            ],
            ListKind::Apps => &[
                "page",
                "per_page",
                "order_by",
                "created_ats",
                "updated_ats",
                "guids",
                "names",
                "space_guids",
                "organization_guids",
                "label_selector",
            ],
            ListKind::Processes | ListKind::AppProcesses => &[
                "page",
                "per_page",
                "order_by",
                "created_ats",
                "updated_ats",
                "guids",
                "app_guid",
                "types",
                "space_guids",
                "organization_guids",
                "app_guids",
                "embed",
                "label_selector",
            ],
        }
    }

    /// The `order_by` fields this list sorts by.
    fn orders(self) -> &'static [&'static str] {
        match self {
            ListKind::Processes | ListKind::AppProcesses => &["created_at", "updated_at"],
            _ => &["created_at", "updated_at", "name"],
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OrderBy {
    /// creation order (CF: the internal id)
    #[default]
    Created,
    Updated,
    Name,
}

/// One timestamp condition, in Unix nanoseconds; CF compares whole seconds (§4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeFilter {
    /// within one of these seconds
    AnyOf(Vec<i64>),
    Before(i64),
    AtOrAfter(i64),
}

impl TimeFilter {
    pub fn matches(&self, t_ns: i64) -> bool {
        const S: i64 = 1_000_000_000;
        match self {
            TimeFilter::AnyOf(secs) => secs.iter().any(|s| t_ns >= s * S && t_ns < (s + 1) * S),
            TimeFilter::Before(ns) => t_ns < *ns,
            TimeFilter::AtOrAfter(ns) => t_ns >= *ns,
        }
    }
}

/// A parsed list query.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub page: u32,
    pub per_page: u32,
    pub order_by: OrderBy,
    pub descending: bool,
    pub guids: Option<Vec<String>>,
    pub names: Option<Vec<String>>,
    pub types: Option<Vec<String>>,
    pub app_guids: Option<Vec<String>>,
    pub space_guids: Option<Vec<String>>,
    pub organization_guids: Option<Vec<String>>,
    pub created: Vec<TimeFilter>,
    pub updated: Vec<TimeFilter>,
    pub selector: Option<Selector>,
    pub embed_instances: bool,
}

/// `%XX` and `+` decoded (form encoding); invalid escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A list value as Cloud Controller reads it (spec "Query-string list values"): the value as sent
/// is form-decoded as a whole (Rack), then split on a comma and the whitespace after it, then each
/// item is percent-decoded once more (`CGI.unescape`). So `a%2Cb` — what the cf CLI and python
/// `requests` send for `a,b` — is two items, and a comma inside one item is sent as `%252C`. An
/// empty value is the list `[""]`.
pub fn list_value(raw: &str) -> Vec<String> {
    percent_decode(raw)
        .split(',')
        .map(|item| percent_decode(item.trim_start()))
        .collect()
}

/// `created_ats` → "Created ats" (ActiveModel's humanised attribute name).
fn humanize(key: &str) -> String {
    let mut s = key.replace('_', " ");
    if let Some(first) = s.get(..1) {
        s.replace_range(..1, &first.to_uppercase());
    }
    s
}

/// `YYYY-MM-DDThh:mm:ssZ` → Unix seconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, sec) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn time_filter(base: &str, op: Option<&str>, raw: &str) -> Result<TimeFilter, String> {
    const S: i64 = 1_000_000_000;
    let name = humanize(base);
    let bad_format =
        || format!("{name} has an invalid timestamp format. Timestamps should be formatted as 'YYYY-MM-DDThh:mm:ssZ'");
    let Some(op) = op else {
        let secs = list_value(raw)
            .iter()
            .map(|v| parse_timestamp(v).ok_or_else(bad_format))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(TimeFilter::AnyOf(secs));
    };
    if !matches!(op, "lt" | "lte" | "gt" | "gte") {
        return Err(format!("{name} Invalid relational operator: '{op}'"));
    }
    let value = percent_decode(raw);
    if value.contains(',') {
        return Err(format!(
            "{name} only accepts one value when using a relational operator"
        ));
    }
    let t = parse_timestamp(&value).ok_or_else(bad_format)?;
    Ok(match op {
        "lt" => TimeFilter::Before(t * S),
        "lte" => TimeFilter::Before((t + 1) * S),
        "gt" => TimeFilter::AtOrAfter((t + 1) * S),
        _ => TimeFilter::AtOrAfter(t * S),
    })
}

fn positive(raw: &str, name: &str) -> Result<u32, String> {
    percent_decode(raw)
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{name} must be a positive integer"))
}

/// Parses the pairs of a list query (values raw, as sent) for `kind`.
pub fn parse(kind: ListKind, pairs: &[pb::CfQueryPair]) -> Result<ListQuery, String> {
    let allowed = kind.keys();
    let base_of = |k: &str| k.split_once('[').map_or(k, |(b, _)| b).to_owned();
    let nested_refused = ["app_guids", "space_guids", "organization_guids"];
    let mut unknown: Vec<String> = Vec::new();
    for p in pairs {
        let base = base_of(&p.key);
        let refused = kind == ListKind::AppProcesses && nested_refused.contains(&base.as_str());
        if (!allowed.contains(&base.as_str()) || refused) && !unknown.contains(&base) {
            unknown.push(base);
        }
    }
    if !unknown.is_empty() {
        let names = unknown.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
        if kind == ListKind::AppProcesses {
            return Err(format!("Unknown query parameter(s): {names}"));
        }
        let valid = allowed.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
        return Err(format!(
            "Unknown query parameter(s): {names}. Valid parameters are: {valid}"
        ));
    }
    let mut q = ListQuery {
        page: 1,
        per_page: PER_PAGE_DEFAULT,
        ..Default::default()
    };
    for p in pairs {
        let (base, op) = match p.key.split_once('[') {
            Some((b, rest)) => (b, Some(rest.trim_end_matches(']'))),
            None => (p.key.as_str(), None),
        };
        match base {
            "page" => q.page = positive(&p.value, "Page")?,
            "per_page" => {
                q.per_page = positive(&p.value, "Per page")?;
                if q.per_page > PER_PAGE_MAX {
                    return Err(format!("Per page must be between 1 and {PER_PAGE_MAX}"));
                }
            }
            "order_by" => {
                let v = percent_decode(&p.value);
                let (descending, field) = match v.strip_prefix('-') {
                    Some(f) => (true, f),
                    None => (false, v.strip_prefix('+').unwrap_or(&v)),
                };
                let orders = kind.orders();
                if !orders.contains(&field) {
                    let list = orders.iter().map(|o| format!("'{o}'")).collect::<Vec<_>>().join(", ");
                    return Err(format!("Order by can only be: {list}"));
                }
                q.descending = descending;
                q.order_by = match field {
                    "updated_at" => OrderBy::Updated,
                    "name" => OrderBy::Name,
                    _ => OrderBy::Created,
                };
            }
            "created_ats" => q.created.push(time_filter(base, op, &p.value)?),
            "updated_ats" => q.updated.push(time_filter(base, op, &p.value)?),
            "guids" => q.guids = Some(list_value(&p.value)),
            "names" => q.names = Some(list_value(&p.value)),
            "types" => q.types = Some(list_value(&p.value)),
            "app_guids" => q.app_guids = Some(list_value(&p.value)),
            "space_guids" => q.space_guids = Some(list_value(&p.value)),
            "organization_guids" => q.organization_guids = Some(list_value(&p.value)),
            "label_selector" => q.selector = Some(selector::parse(&percent_decode(&p.value))?),
            "embed" => q.embed_instances = embed(&p.value)?,
            _ => {}
        }
    }
    Ok(q)
}

/// The query of one process's GET: only `embed` (spec §1.4); whether it embeds the instances.
pub fn single(pairs: &[pb::CfQueryPair]) -> Result<bool, String> {
    let mut embedded = false;
    for p in pairs {
        if p.key != "embed" {
            return Err(format!(
                "Unknown query parameter(s): '{}'. Valid parameters are: 'embed'",
                p.key
            ));
        }
        embedded = embed(&p.value)?;
    }
    Ok(embedded)
}

/// `embed`: only `process_instances`, once.
pub fn embed(raw: &str) -> Result<bool, String> {
    let items = list_value(raw);
    let mut seen = false;
    for e in items {
        if e != "process_instances" {
            return Err(format!(
                "Invalid embedded resource: '{e}'. Valid embedded resources are: 'process_instances'"
            ));
        }
        if seen {
            return Err("Duplicate embedded resource: 'process_instances'".into());
        }
        seen = true;
    }
    Ok(seen)
}

fn any_of(filter: &Option<Vec<String>>, value: &str) -> bool {
    filter.as_ref().is_none_or(|v| v.iter().any(|x| x == value))
}

/// What a row must show to be filtered (each field empty where the kind has none).
pub struct Row<'a> {
    pub guid: &'a str,
    pub name: &'a str,
    pub kind_type: &'a str,
    pub app_guid: &'a str,
    pub space_guid: &'a str,
    pub organization_guid: &'a str,
    pub created_at: i64,
    pub updated_at: i64,
    pub labels: Option<&'a std::collections::BTreeMap<String, String>>,
}

impl ListQuery {
    /// Whether a row passes every filter (AND across filters, OR within one).
    pub fn matches(&self, r: &Row<'_>) -> bool {
        let empty = std::collections::BTreeMap::new();
        any_of(&self.guids, r.guid)
            && any_of(&self.names, r.name)
            && any_of(&self.types, r.kind_type)
            && any_of(&self.app_guids, r.app_guid)
            && any_of(&self.space_guids, r.space_guid)
            && any_of(&self.organization_guids, r.organization_guid)
            && self.created.iter().all(|f| f.matches(r.created_at))
            && self.updated.iter().all(|f| f.matches(r.updated_at))
            && self
                .selector
                .as_ref()
                .is_none_or(|s| s.matches(r.labels.unwrap_or(&empty)))
    }

    /// How many rows to skip before the page.
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.per_page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<pb::CfQueryPair> {
        q.iter()
            .map(|(k, v)| pb::CfQueryPair {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    fn err(kind: ListKind, q: &[(&str, &str)]) -> String {
        parse(kind, &pairs(q)).unwrap_err()
    }

    #[test]
    fn paging_rules_and_messages() {
        let q = parse(ListKind::Processes, &[]).unwrap();
        assert_eq!((q.page, q.per_page), (1, 50));
        assert_eq!(
            err(ListKind::Processes, &[("per_page", "10000")]),
            "Per page must be between 1 and 5000"
        );
        assert_eq!(
            err(ListKind::Processes, &[("per_page", "0")]),
            "Per page must be a positive integer"
        );
        assert_eq!(
            err(ListKind::Processes, &[("page", "")]),
            "Page must be a positive integer"
        );
        assert_eq!(
            err(ListKind::Processes, &[("page", "x")]),
            "Page must be a positive integer"
        );
        let q = parse(ListKind::Processes, &pairs(&[("page", "3"), ("per_page", "2")])).unwrap();
        assert_eq!(q.offset(), 4);
    }

    #[test]
    fn order_by_is_whitelisted() {
        assert_eq!(
            err(ListKind::Processes, &[("order_by", "^=%")]),
            "Order by can only be: 'created_at', 'updated_at'"
        );
        let q = parse(ListKind::Processes, &pairs(&[("order_by", "-updated_at")])).unwrap();
        assert_eq!((q.order_by, q.descending), (OrderBy::Updated, true));
        let q = parse(ListKind::Processes, &pairs(&[("order_by", "%2Bcreated_at")])).unwrap();
        assert_eq!((q.order_by, q.descending), (OrderBy::Created, false));
        assert!(parse(ListKind::Apps, &pairs(&[("order_by", "name")])).is_ok());
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_eq!(
            err(ListKind::Processes, &[("foo", "1")]),
            "Unknown query parameter(s): 'foo'. Valid parameters are: 'page', 'per_page', 'order_by', 'created_ats', \
             'updated_ats', 'guids', 'app_guid', 'types', 'space_guids', 'organization_guids', 'app_guids', 'embed', \
             'label_selector'"
        );
        assert_eq!(
            err(ListKind::AppProcesses, &[("app_guids", "a"), ("space_guids", "b")]),
            "Unknown query parameter(s): 'app_guids', 'space_guids'"
        );
    }

    #[test]
    fn lists_decode_split_then_decode_each_item() {
        assert_eq!(list_value("a, b,c%252Cd"), ["a", "b", "c,d"]);
        // the cf CLI and python `requests` encode every comma of a list: still a list
        assert_eq!(list_value("a%2Cb%2C%20c"), ["a", "b", "c"]);
        assert_eq!(list_value("web%2Cworker"), ["web", "worker"]);
        assert_eq!(list_value(""), [""]);
        let q = parse(ListKind::Processes, &pairs(&[("types", "worker,web")])).unwrap();
        assert_eq!(q.types.as_deref(), Some(&["worker".to_string(), "web".to_string()][..]));
        let q = parse(
            ListKind::Processes,
            &pairs(&[("guids", "g1%2Cg2"), ("app_guids", "a%2C%20b")]),
        )
        .unwrap();
        assert_eq!(q.guids.as_deref(), Some(&["g1".to_string(), "g2".to_string()][..]));
        assert_eq!(q.app_guids.as_deref(), Some(&["a".to_string(), "b".to_string()][..]));
        // python `requests` form-encodes a label selector whole, commas of `in (…)` included
        let q = parse(ListKind::Apps, &pairs(&[("label_selector", "env+in+%28prod%2Cdev%29")])).unwrap();
        let prod: std::collections::BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
        assert!(q.selector.as_ref().is_some_and(|s| s.matches(&prod)));
        let t = parse(
            ListKind::Apps,
            &pairs(&[("created_ats", "2020-01-01T00%3A00%3A00Z%2C2021-01-01T00%3A00%3A00Z")]),
        )
        .unwrap();
        assert!(matches!(&t.created[0], TimeFilter::AnyOf(s) if s.len() == 2));
    }

    #[test]
    fn timestamps_and_operators() {
        let t = parse_timestamp("2020-01-01T00:00:00Z").unwrap();
        assert_eq!(t, 1_577_836_800);
        assert_eq!(
            err(ListKind::Processes, &[("created_ats", "2020-01-01")]),
            "Created ats has an invalid timestamp format. Timestamps should be formatted as 'YYYY-MM-DDThh:mm:ssZ'"
        );
        assert_eq!(
            err(ListKind::Processes, &[("created_ats[foo]", "2020-01-01T00:00:00Z")]),
            "Created ats Invalid relational operator: 'foo'"
        );
        assert_eq!(
            err(
                ListKind::Processes,
                &[("updated_ats[lt]", "2020-01-01T00:00:00Z,2020-01-02T00:00:00Z")]
            ),
            "Updated ats only accepts one value when using a relational operator"
        );
        let s = 1_000_000_000i64;
        let at = t * s + 500_000_000;
        let f = |op: &str| time_filter("created_ats", Some(op), "2020-01-01T00:00:00Z").unwrap();
        assert!(!f("lt").matches(at) && f("lte").matches(at));
        assert!(!f("gt").matches(at) && f("gte").matches(at));
        assert!(TimeFilter::AnyOf(vec![t]).matches(at));
        assert!(!TimeFilter::AnyOf(vec![t]).matches((t + 1) * s));
    }

    #[test]
    fn a_single_get_allows_only_embed() {
        assert_eq!(single(&[]), Ok(false));
        assert_eq!(single(&pairs(&[("embed", "process_instances")])), Ok(true));
        assert_eq!(
            single(&pairs(&[("foo", "1")])),
            Err("Unknown query parameter(s): 'foo'. Valid parameters are: 'embed'".into())
        );
    }

    #[test]
    fn embed_values() {
        assert_eq!(embed("process_instances"), Ok(true));
        assert_eq!(
            embed("foo"),
            Err("Invalid embedded resource: 'foo'. Valid embedded resources are: 'process_instances'".into())
        );
        assert_eq!(
            embed("process_instances,process_instances"),
            Err("Duplicate embedded resource: 'process_instances'".into())
        );
    }
}
