//! CF's app manifest (YAML) for `apply_manifest`: `applications[]` with `name`, `docker.image`,
//! `processes[]` (`type`, `command`, `instances`, `memory`, `disk_quota`, `health-check-type`,
//! `health-check-http-endpoint`, `health-check-invocation-timeout`, `timeout`), and the same keys
//! at the top of an application as the shorthand for its `web` process. Sizes take CF's units
//! (`256M`, `1G`, `512MB`; a bare number is megabytes), and `env` (the app's environment
//! variables, merged). Keys Capstan does not act on (routes, buildpacks, services …) are ignored,
//! as CF ignores keys it does not know.
//!
//! YAML is read with `serde_norway` (a maintained fork of the archived `serde_yaml`, with the same
//! API and no unsafe code of its own), chosen over `serde_yml` for its maintenance record.

use capstan_proto::pb;
use serde::Deserialize;

use super::error::CfError;

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    applications: Option<Vec<App>>,
}

#[derive(Deserialize, Default)]
struct Docker {
    image: Option<String>,
}

/// The per-process keys, at a process or (for web) at the top of an application.
#[derive(Deserialize, Default, Clone)]
struct ProcessKeys {
    command: Option<String>,
    instances: Option<serde_norway::Value>,
    memory: Option<serde_norway::Value>,
    disk_quota: Option<serde_norway::Value>,
    #[serde(rename = "health-check-type")]
    health_check_type: Option<String>,
    #[serde(rename = "health-check-http-endpoint")]
    health_check_http_endpoint: Option<String>,
    #[serde(rename = "health-check-invocation-timeout")]
    health_check_invocation_timeout: Option<serde_norway::Value>,
    timeout: Option<serde_norway::Value>,
}

#[derive(Deserialize)]
struct App {
    name: Option<String>,
    docker: Option<Docker>,
    #[serde(default)]
    env: Option<serde_norway::Value>,
    #[serde(default)]
    processes: Vec<Process>,
    #[serde(flatten)]
    web: ProcessKeys,
}

#[derive(Deserialize)]
struct Process {
    #[serde(rename = "type")]
    process_type: Option<String>,
    #[serde(flatten)]
    keys: ProcessKeys,
}

/// A size in megabytes from CF's notation. Every step is checked: a size whose megabytes do not fit
/// CF's 32-bit field is refused with CF's message, never wrapped.
fn megabytes(v: &serde_norway::Value, what: &str) -> Result<i32, String> {
    let unit_error = || format!("{what} must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB");
    let too_large = || format!("{what} must be less than or equal to {}", i32::MAX);
    let text = match v {
        serde_norway::Value::Number(n) => {
            return match n.as_i64() {
                Some(n) => i32::try_from(n).map_err(|_| too_large()),
                None if n.is_u64() => Err(too_large()),
                None => Err(unit_error()),
            }
        }
        serde_norway::Value::String(s) => s.trim().to_ascii_uppercase(),
        _ => return Err(unit_error()),
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(unit_error());
    }
    // all digits: the only way to fail is to be larger than any size
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    const KIB: u64 = 1024;
    let mb = match unit.trim() {
        "" | "M" | "MB" => Some(n),
        "G" | "GB" => n.checked_mul(KIB),
        "T" | "TB" => n.checked_mul(KIB * KIB),
        "K" | "KB" => Some(n / KIB),
        "B" => Some(n / (KIB * KIB)),
        _ => return Err(unit_error()),
    };
    mb.and_then(|mb| i32::try_from(mb).ok()).ok_or_else(too_large)
}

fn int(v: &serde_norway::Value, what: &str) -> Result<i32, String> {
    match v {
        serde_norway::Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        serde_norway::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{what} must be an integer"))
}

fn process(process_type: &str, k: &ProcessKeys) -> Result<pb::CfManifestProcess, String> {
    let opt = |v: &Option<serde_norway::Value>, f: &dyn Fn(&serde_norway::Value) -> Result<i32, String>| {
        v.as_ref().map(f).transpose()
    };
    Ok(pb::CfManifestProcess {
        r#type: process_type.to_owned(),
        command: k.command.clone(),
        instances: opt(&k.instances, &|v| int(v, "Instances"))?,
        memory_in_mb: opt(&k.memory, &|v| megabytes(v, "Memory"))?,
        disk_in_mb: opt(&k.disk_quota, &|v| megabytes(v, "Disk quota"))?,
        health_check_type: k.health_check_type.clone(),
        health_check_http_endpoint: k.health_check_http_endpoint.clone(),
        timeout: opt(&k.timeout, &|v| int(v, "Timeout"))?,
        health_check_invocation_timeout: opt(&k.health_check_invocation_timeout, &|v| {
            int(v, "Health check invocation timeout")
        })?,
    })
}

/// Fills the keys `top` has and `p` lacks (a `processes` entry wins over the shorthand).
fn merged(p: &ProcessKeys, top: &ProcessKeys) -> ProcessKeys {
    ProcessKeys {
        command: p.command.clone().or_else(|| top.command.clone()),
        instances: p.instances.clone().or_else(|| top.instances.clone()),
        memory: p.memory.clone().or_else(|| top.memory.clone()),
        disk_quota: p.disk_quota.clone().or_else(|| top.disk_quota.clone()),
        health_check_type: p.health_check_type.clone().or_else(|| top.health_check_type.clone()),
        health_check_http_endpoint: p
            .health_check_http_endpoint
            .clone()
            .or_else(|| top.health_check_http_endpoint.clone()),
        health_check_invocation_timeout: p
            .health_check_invocation_timeout
            .clone()
            .or_else(|| top.health_check_invocation_timeout.clone()),
        timeout: p.timeout.clone().or_else(|| top.timeout.clone()),
    }
}

fn has_any(k: &ProcessKeys) -> bool {
    k.command.is_some()
        || k.instances.is_some()
        || k.memory.is_some()
        || k.disk_quota.is_some()
        || k.health_check_type.is_some()
        || k.health_check_http_endpoint.is_some()
        || k.health_check_invocation_timeout.is_some()
        || k.timeout.is_some()
}

/// A manifest's `env:`: a mapping of names to strings, numbers or booleans (turned into the strings
/// CC makes of them); a name given `null` is removed from the app.
fn env(v: &serde_norway::Value) -> Result<(std::collections::BTreeMap<String, String>, Vec<String>), String> {
    use serde_norway::Value as Y;
    let Y::Mapping(m) = v else {
        return Err("Env must be an object of keys and values".into());
    };
    let (mut set, mut removed) = (std::collections::BTreeMap::new(), Vec::new());
    for (k, v) in m {
        let Y::String(name) = k else {
            return Err("Env key must be a string".into());
        };
        match v {
            Y::Null => removed.push(name.clone()),
            Y::String(s) => {
                set.insert(name.clone(), s.clone());
            }
            Y::Bool(b) => {
                set.insert(name.clone(), b.to_string());
            }
            Y::Number(n) => {
                set.insert(name.clone(), n.to_string());
            }
            _ => return Err(format!("Env value of '{name}' must be a string, a number or a boolean")),
        }
    }
    Ok((set, removed))
}

/// The manifest as the node's `ApplyCfManifest` for a space.
pub fn parse(yaml: &[u8], space_guid: &str) -> Result<pb::ApplyCfManifest, CfError> {
    let m: Manifest =
        serde_norway::from_slice(yaml).map_err(|e| CfError::parse_error(&format!("invalid manifest: {e}")))?;
    let Some(apps) = m.applications.filter(|a| !a.is_empty()) else {
        return Err(CfError::unprocessable("Applications must have at least 1 application"));
    };
    let mut out = pb::ApplyCfManifest {
        space_guid: space_guid.to_owned(),
        applications: Vec::with_capacity(apps.len()),
    };
    for a in apps {
        let name = a.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(CfError::unprocessable("Name must not be empty"));
        }
        let fail = |e: String| CfError::unprocessable(format!("For application '{name}': {e}"));
        let mut processes = Vec::new();
        let mut web_listed = false;
        for p in &a.processes {
            let t = p.process_type.clone().unwrap_or_default();
            let keys = if t == "web" {
                web_listed = true;
                merged(&p.keys, &a.web)
            } else {
                p.keys.clone()
            };
            processes.push(process(&t, &keys).map_err(|e| fail(format!("Process \"{t}\": {e}")))?);
        }
        if !web_listed && has_any(&a.web) {
            processes.insert(0, process("web", &a.web).map_err(fail)?);
        }
        let (env, env_removed) = match &a.env {
            Some(v) => env(v).map_err(fail)?,
            None => Default::default(),
        };
        out.applications.push(pb::CfManifestApp {
            name: name.clone(),
            docker_image: a.docker.and_then(|d| d.image),
            processes,
            env,
            env_removed,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_become_strings_and_null_removes() {
        let yaml = br#"
applications:
- name: payroll
  env:
    DB_URL: postgres://db.internal/payroll
    WORKERS: 4
    RATIO: 0.5
    DEBUG: true
    OLD: ~
"#;
        let app = &parse(yaml, "s").expect("manifest").applications[0];
        let env: Vec<(&str, &str)> = app.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            env,
            [
                ("DB_URL", "postgres://db.internal/payroll"),
                ("DEBUG", "true"),
                ("RATIO", "0.5"),
                ("WORKERS", "4")
            ]
        );
        assert_eq!(app.env_removed, ["OLD"]);
        for (bad, message) in [
            ("env: [a, b]", "Env must be an object of keys and values"),
            ("env: {1: x}", "Env key must be a string"),
            (
                "env: {A: [1]}",
                "Env value of 'A' must be a string, a number or a boolean",
            ),
        ] {
            let yaml = format!("applications:\n- name: a\n  {bad}\n");
            let e = parse(yaml.as_bytes(), "s").expect_err(bad);
            assert_eq!(e.detail, format!("For application 'a': {message}"));
        }
    }

    #[test]
    fn processes_and_the_web_shorthand() {
        let yaml = br#"
applications:
- name: shop
  memory: 256M
  instances: 2
  command: python3 -m http.server $PORT
  routes: [{route: shop.example.com}]
  processes:
  - type: worker
    command: ./work
    instances: 1
    memory: 1G
    disk_quota: 512MB
    health-check-type: process
- name: img
  docker: {image: busybox}
  processes:
  - type: web
    command: httpd -f
    health-check-type: http
    health-check-http-endpoint: /health
    timeout: 30
"#;
        let m = parse(yaml, "s1").unwrap();
        assert_eq!(m.applications.len(), 2);
        let shop = &m.applications[0];
        assert_eq!(shop.processes[0].r#type, "web");
        assert_eq!(shop.processes[0].memory_in_mb, Some(256));
        assert_eq!(shop.processes[0].instances, Some(2));
        assert_eq!(shop.processes[1].memory_in_mb, Some(1024));
        assert_eq!(shop.processes[1].disk_in_mb, Some(512));
        let img = &m.applications[1];
        assert_eq!(img.docker_image.as_deref(), Some("busybox"));
        assert_eq!(img.processes[0].health_check_http_endpoint.as_deref(), Some("/health"));
        assert_eq!(img.processes[0].timeout, Some(30));
    }

    #[test]
    fn bad_manifests_get_cf_errors() {
        assert_eq!(parse(b"applications: [", "s").unwrap_err().code, 1001);
        assert_eq!(parse(b"applications: []", "s").unwrap_err().status.as_u16(), 422);
        let e = parse(b"applications:\n- name: a\n  memory: 12Q\n", "s").unwrap_err();
        assert_eq!(
            e.detail,
            "For application 'a': Memory must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB"
        );
        // sizes whose megabytes overflow are refused, never wrapped (18014398509481985G wrapped to 1024)
        for (size, what) in [
            ("18014398509481985G", "Memory"),
            ("2097152G", "Memory"),
            ("99999999999999999999999M", "Memory"),
            ("2048T", "Memory"),
            ("3000000000", "Memory"),
        ] {
            let yaml = format!("applications:\n- name: a\n  memory: {size}\n");
            let e = parse(yaml.as_bytes(), "s").unwrap_err();
            assert_eq!(e.status.as_u16(), 422, "{size}");
            assert_eq!(
                e.detail,
                format!("For application 'a': {what} must be less than or equal to 2147483647"),
                "{size}"
            );
        }
        let e = parse(b"applications:\n- name: a\n  disk_quota: 4194304T\n", "s").unwrap_err();
        assert_eq!(
            e.detail,
            "For application 'a': Disk quota must be less than or equal to 2147483647"
        );
        let m = parse(b"applications:\n- name: a\n  memory: 2097151G\n", "s").unwrap();
        assert_eq!(m.applications[0].processes[0].memory_in_mb, Some(2_147_482_624));
        let e = parse(b"applications:\n- name: a\n  memory: G\n", "s").unwrap_err();
        assert!(
            e.detail.ends_with("supported unit: B, K, KB, M, MB, G, GB, T, or TB"),
            "{}",
            e.detail
        );
    }
}
