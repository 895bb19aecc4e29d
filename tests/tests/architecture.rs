//! Architecture invariants read off the source (ARCHITECTURE.md): no two modules of a crate import
//! each other (directly or through a third), and the crates by role depend only on what their
//! role allows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The source folders of the workspace's crates (tests excluded: they are clients).
const CRATES: [&str; 9] = [
    "proto/src",
    "storage/src",
    "storage/rules/src",
    "raft/src",
    "gateway/src",
    "server/src",
    "server/client/src",
    "server/cell/src",
    "server/cli/src",
];

type Module = Vec<String>;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `a/b.rs` → [a, b]; `a/mod.rs` and `lib.rs` name their folder.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Module = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib" || l == "main") {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its test module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths after `prefix` (`crate::a::b`, `super::c`), as segments.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].split("::").filter(|s| !s.is_empty()).collect());
    }
    out
}

/// The module edges of one crate: module → the sibling or cousin modules it names.
fn edges(src: &Path) -> BTreeSet<(Module, Module)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Module, PathBuf> = files.iter().map(|f| (module_of(src, f), f.clone())).collect();
    let mut out = BTreeSet::new();
    for (m, file) in &modules {
        let text = code(&std::fs::read_to_string(file).unwrap_or_default());
        // `super::` of `a/b.rs` and of `a/b/mod.rs` alike is `a`
        let parent: Module = m[..m.len().saturating_sub(1)].to_vec();
        let mut targets: Vec<Module> = Vec::new();
        for p in paths_after(&text, "crate::") {
            targets.push(p.iter().map(|s| (*s).to_owned()).collect());
        }
        for p in paths_after(&text, "super::") {
            let mut t = parent.clone();
            t.extend(p.iter().map(|s| (*s).to_owned()));
            targets.push(t);
        }
        for t in targets {
            // the longest module the path names
            let Some(k) = (1..=t.len()).rev().find(|k| modules.contains_key(&t[..*k])) else {
                continue;
            };
            let target = t[..k].to_vec();
            // a module naming itself, an ancestor or a descendant is no circle between siblings
            if target == *m || m.starts_with(&target) || target.starts_with(m) {
                continue;
            }
            out.insert((m.clone(), target));
        }
    }
    out
}

#[test]
fn no_two_modules_import_each_other() {
    let mut circles = Vec::new();
    for krate in CRATES {
        let e = edges(&root().join(krate));
        let adj = |a: &Module| -> Vec<Module> { e.iter().filter(|(x, _)| x == a).map(|(_, y)| y.clone()).collect() };
        for (a, b) in &e {
            if e.contains(&(b.clone(), a.clone())) && a < b {
                circles.push(format!("{krate}: {} <-> {}", a.join("::"), b.join("::")));
            }
            for c in adj(b) {
                if c != *a && e.contains(&(c.clone(), a.clone())) && a < b && a < &c {
                    circles.push(format!(
                        "{krate}: {} -> {} -> {}",
                        a.join("::"),
                        b.join("::"),
                        c.join("::")
                    ));
                }
            }
        }
    }
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

#[test]
fn the_detector_sees_a_circle() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("lib.rs"), "mod a;\nmod b;\n").expect("lib");
    std::fs::write(dir.path().join("a.rs"), "use crate::b::X;\n").expect("a");
    std::fs::write(dir.path().join("b.rs"), "use super::a::Y;\n// crate::c is a comment\n").expect("b");
    let e = edges(dir.path());
    let a = vec!["a".to_owned()];
    let b = vec!["b".to_owned()];
    assert!(e.contains(&(a.clone(), b.clone())) && e.contains(&(b, a)), "{e:?}");
}

/// What each crate by role may depend on among the workspace's crates.
#[test]
fn crates_depend_only_on_what_their_role_allows() {
    let allowed: [(&str, &[&str]); 5] = [
        ("storage/rules", &["capstan-proto"]),
        ("server/client", &[]),
        ("server/cell", &["capstan-proto", "capstan-client", "capstan-rules"]),
        ("server/cli", &["capstan-proto", "capstan-client", "capstan-gateway"]),
        ("gateway", &["capstan-proto"]),
    ];
    for (krate, may) in allowed {
        let manifest = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).expect("Cargo.toml");
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .unwrap_or_default()
            .split("\n[")
            .next()
            .unwrap_or_default();
        for line in deps.lines() {
            let name = line.split(['.', ' ', '=']).next().unwrap_or_default();
            if name.starts_with("capstan-") {
                assert!(
                    may.contains(&name),
                    "{krate} depends on {name}, which its role does not allow"
                );
            }
        }
        // the pure rules: no sled, tokio or tonic, whatever else comes
        if krate == "storage/rules" {
            for banned in ["sled", "tokio", "tonic"] {
                assert!(!deps.contains(banned), "the pure rules depend on {banned}");
            }
        }
    }
}
