//! The query string as CF reads it: pairs with decoded keys and raw values (the node decodes a
//! list value whole, splits it on commas, then decodes each item again), and the pagination links rebuilt from them by
//! CF's recipe (spec §4.1): the effective `per_page`, `order_by` with an explicit direction, the
//! filters sent, `page`; form-encoded and sorted.

use capstan_proto::pb;
use serde_json::{json, Value};
use url::form_urlencoded::byte_serialize;

/// Keys whose values are comma-separated lists.
const LIST_KEYS: [&str; 8] = [
    "guids",
    "names",
    "types",
    "app_guids",
    "space_guids",
    "organization_guids",
    "created_ats",
    "updated_ats",
];

/// `%XX` and `+` decoded.
pub fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn encode(s: &str) -> String {
    byte_serialize(s.as_bytes()).collect()
}

/// The pairs of a raw query string: keys decoded, values as sent.
pub fn pairs(raw: Option<&str>) -> Vec<pb::CfQueryPair> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            pb::CfQueryPair {
                key: decode(k),
                value: v.to_owned(),
            }
        })
        .collect()
}

/// The filters and order a link carries (everything but page, per_page and app_guid).
fn link_pairs(query: &[pb::CfQueryPair]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in query {
        let base = p.key.split_once('[').map_or(p.key.as_str(), |(b, _)| b);
        match base {
            "page" | "per_page" | "app_guid" => {}
            "order_by" => {
                let v = decode(&p.value);
                let v = if v.starts_with('-') || v.starts_with('+') {
                    v
                } else {
                    format!("+{v}")
                };
                out.push((p.key.clone(), v));
            }
            b if LIST_KEYS.contains(&b) => {
                // read as the node reads it (form-decoded whole, split, each item decoded
                // again), then a comma inside an item re-rendered as `%2C` (spec §4.1 step 3)
                let items: Vec<String> = decode(&p.value)
                    .split(',')
                    .map(|i| decode(i.trim_start()).replace(',', "%2C"))
                    .collect();
                out.push((p.key.clone(), items.join(",")));
            }
            _ => out.push((p.key.clone(), decode(&p.value))),
        }
    }
    out
}

/// `base + path ? sorted(k=v…)` for one page.
fn link(base: &str, path: &str, filters: &[(String, String)], per_page: u32, page: u64) -> Value {
    let mut parts: Vec<String> = filters
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    parts.push(format!("per_page={per_page}"));
    parts.push(format!("page={page}"));
    parts.sort();
    json!({ "href": format!("{base}{path}?{}", parts.join("&")) })
}

/// The `pagination` object of a list.
pub fn pagination(base: &str, path: &str, query: &[pb::CfQueryPair], page: &pb::CfListPage) -> Value {
    let per_page = page.per_page.max(1);
    let total_pages = page.total_results.div_ceil(u64::from(per_page)).max(1);
    let filters = link_pairs(query);
    let at = |n: u64| link(base, path, &filters, per_page, n);
    let current = u64::from(page.page.max(1));
    json!({
        "total_results": page.total_results,
        "total_pages": total_pages,
        "first": at(1),
        "last": at(total_pages),
        "next": if current < total_pages { at(current + 1) } else { Value::Null },
        "previous": if current > 1 { at(current - 1) } else { Value::Null },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(total: u64, page: u32, per_page: u32) -> pb::CfListPage {
        pb::CfListPage {
            total_results: total,
            page,
            per_page,
            ..Default::default()
        }
    }

    #[test]
    fn links_follow_cfs_recipe() {
        let q = pairs(Some("per_page=2"));
        let p = pagination("https://api", "/v3/processes", &q, &page(2, 1, 2));
        assert_eq!(p["total_pages"], 1);
        assert_eq!(p["first"]["href"], "https://api/v3/processes?page=1&per_page=2");
        assert_eq!(p["last"], p["first"]);
        assert_eq!(p["next"], Value::Null);
        assert_eq!(p["previous"], Value::Null);

        let q = pairs(Some("label_selector=fruit%3Dstrawberry"));
        let p = pagination("https://api", "/v3/processes", &q, &page(0, 1, 50));
        assert_eq!(p["total_pages"], 1);
        assert_eq!(
            p["first"]["href"],
            "https://api/v3/processes?label_selector=fruit%3Dstrawberry&page=1&per_page=50"
        );

        let q = pairs(Some("types=worker,doesnotexist&per_page=2"));
        let p = pagination("https://api", "/v3/processes", &q, &page(3, 1, 2));
        assert_eq!(
            p["next"]["href"],
            "https://api/v3/processes?page=2&per_page=2&types=worker%2Cdoesnotexist"
        );

        // what the cf CLI sends for `types=worker,doesnotexist`: the same two items, the same link
        let q = pairs(Some("types=worker%2Cdoesnotexist&per_page=2"));
        let p = pagination("https://api", "/v3/processes", &q, &page(3, 1, 2));
        assert_eq!(
            p["next"]["href"],
            "https://api/v3/processes?page=2&per_page=2&types=worker%2Cdoesnotexist"
        );
        // a comma inside one item travels double-encoded, and stays so in the links
        let q = pairs(Some("names=a%252Cb%2Cc&per_page=2"));
        let p = pagination("https://api", "/v3/apps", &q, &page(3, 1, 2));
        assert_eq!(
            p["next"]["href"],
            "https://api/v3/apps?names=a%252Cb%2Cc&page=2&per_page=2"
        );

        let q = pairs(Some("order_by=name&per_page=1"));
        let p = pagination("https://api", "/v3/apps", &q, &page(1, 1, 1));
        assert_eq!(
            p["first"]["href"],
            "https://api/v3/apps?order_by=%2Bname&page=1&per_page=1"
        );

        let q = pairs(Some("label_selector=foo in (bar)"));
        let p = pagination("https://api", "/v3/apps", &q, &page(1, 1, 50));
        assert_eq!(
            p["first"]["href"],
            "https://api/v3/apps?label_selector=foo+in+%28bar%29&page=1&per_page=50"
        );
    }

    #[test]
    fn a_page_past_the_end_points_back() {
        let p = pagination("h", "/v3/processes", &[], &page(3, 5, 2));
        assert_eq!(p["next"], Value::Null);
        assert_eq!(p["previous"]["href"], "h/v3/processes?page=4&per_page=2");
        assert_eq!(p["last"]["href"], "h/v3/processes?page=2&per_page=2");
    }
}
