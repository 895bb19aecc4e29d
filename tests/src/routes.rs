//! The REST routes the gateway serves, read from its sources: every `.route("path", get(..)...)`
//! of each family's file under the prefix the router nests it at. The auth matrix and the API
//! document are checked against this list.

use std::collections::BTreeSet;

/// The gateway's source files that declare routes, with the prefixes each is nested under.
const FILES: &[(&str, &[&str])] = &[
    ("receptor/mod.rs", &["/v1"]),
    ("flotilla/mod.rs", &["/api/v1", "/api/v6"]),
    ("cf/mod.rs", &["/v3"]),
    ("uaa.rs", &[""]),
    ("health.rs", &[""]),
    ("metrics.rs", &[""]),
];

/// Every (METHOD, path template) the gateway serves.
pub fn served() -> BTreeSet<(String, String)> {
    let gw = concat!(env!("CARGO_MANIFEST_DIR"), "/../gateway/src");
    let mut out = BTreeSet::new();
    for (file, prefixes) in FILES {
        let source = std::fs::read_to_string(format!("{gw}/{file}"))
            .unwrap_or_else(|e| panic!("reading the gateway's {file}: {e}"));
        for prefix in *prefixes {
            out.extend(routes_in(&source, prefix));
        }
    }
    out
}

/// (method, path) of every `.route(...)` in a gateway source file, under `prefix`.
pub fn routes_in(source: &str, prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in source.split(".route(").skip(1) {
        let Some(path) = chunk.trim_start().strip_prefix('"').and_then(|r| r.split('"').next()) else {
            continue;
        };
        // The handlers of this route: up to the end of the `.route(...)` call.
        let mut depth = 1;
        let mut end = chunk.len();
        for (i, ch) in chunk.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let handlers = &chunk[..end];
        for m in ["get", "post", "put", "delete", "patch"] {
            let called = handlers.match_indices(&format!("{m}(")).any(|(i, _)| {
                i == 0 || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric() && handlers.as_bytes()[i - 1] != b'_'
            });
            if called {
                let full = if path == "/" && !prefix.is_empty() {
                    prefix.to_owned()
                } else {
                    format!("{prefix}{path}")
                };
                out.push((m.to_uppercase(), full));
            }
        }
    }
    out
}
