//! Request bodies as CF's messages read them (spec §1.5, §1.7, §5.2): unknown fields, types and
//! numeric strings, `null` where it means "clear" and where it is refused (DECISIONS), metadata
//! patches — turned into the node's requests. Every message is CF's, joined with ", ".

use capstan_proto::pb;
use serde_json::{Map, Value};

use super::error::CfError;

type Object = Map<String, Value>;

/// The body as a JSON object (an empty body is `{}`); anything else is CF's parse error.
pub fn object(bytes: &[u8]) -> Result<Object, CfError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Object::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(CfError::parse_error("invalid request body")),
    }
}

/// `Unknown field(s): 'a', 'b'` for keys outside `allowed`.
fn unknown_fields(o: &Object, allowed: &[&str]) -> Result<(), CfError> {
    let unknown: Vec<String> = o
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("'{k}'"))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(CfError::unprocessable(format!(
            "Unknown field(s): {}",
            unknown.join(", ")
        )))
    }
}

/// An integer as ActiveModel's numericality reads it: a number or a numeric string.
fn integer(v: &Value, name: &str, min: i64, max: i64) -> Result<i64, String> {
    let n = match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(i),
            (None, Some(f)) if f.fract() != 0.0 => return Err(format!("{name} must be an integer")),
            (None, Some(f)) if f.abs() < 9.2e18 => Some(f as i64),
            _ => None,
        },
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(i) => Some(i),
            Err(_) if s.trim().parse::<f64>().is_ok() => return Err(format!("{name} must be an integer")),
            Err(_) => return Err(format!("{name} is not a number")),
        },
        Value::Null => return Err(format!("{name} must be an integer, not null")),
        _ => return Err(format!("{name} is not a number")),
    };
    let Some(n) = n else {
        return Err(format!("{name} must be less than or equal to {max}"));
    };
    if n < min {
        return Err(if min == 1 {
            format!("{name} must be greater than 0")
        } else {
            format!("{name} must be greater than or equal to {min}")
        });
    }
    if n > max {
        return Err(format!("{name} must be less than or equal to {max}"));
    }
    Ok(n)
}

fn joined(errors: Vec<String>) -> Result<(), CfError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CfError::unprocessable(errors.join(", ")))
    }
}

/// `POST …/actions/scale`.
pub fn scale(o: &Object) -> Result<pb::ScaleCfProcess, CfError> {
    unknown_fields(
        o,
        &[
            "instances",
            "memory_in_mb",
            "disk_in_mb",
            "log_rate_limit_in_bytes_per_second",
        ],
    )?;
    let mut s = pb::ScaleCfProcess::default();
    let mut errors = Vec::new();
    let i32_max = i64::from(i32::MAX);
    let mut field = |key: &str, name: &str, min: i64, max: i64| match o.get(key) {
        None => None,
        Some(v) => match integer(v, name, min, max) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    s.instances = field("instances", "Instances", 0, i32_max).and_then(|n| i32::try_from(n).ok());
    s.memory_in_mb = field("memory_in_mb", "Memory in mb", 1, i32_max).and_then(|n| i32::try_from(n).ok());
    s.disk_in_mb = field("disk_in_mb", "Disk in mb", 1, i32_max).and_then(|n| i32::try_from(n).ok());
    // CF ignores a null log rate limit.
    if o.get("log_rate_limit_in_bytes_per_second")
        .is_some_and(|v| !v.is_null())
    {
        s.log_rate_limit_in_bytes_per_second = field(
            "log_rate_limit_in_bytes_per_second",
            "Log rate limit in bytes per second",
            -1,
            i64::MAX,
        );
    }
    joined(errors)?;
    Ok(s)
}

/// A health check's sent fields (`readiness`: no `timeout`).
fn check_patch(v: &Value, readiness: bool, errors: &mut Vec<String>) -> Option<pb::CfHealthCheckPatch> {
    let label = if readiness {
        "Readiness health check"
    } else {
        "Health check"
    };
    let Value::Object(o) = v else {
        errors.push(format!("{label} must be an object"));
        return None;
    };
    let mut p = pb::CfHealthCheckPatch::default();
    for k in o.keys().filter(|k| !["type", "data"].contains(&k.as_str())) {
        errors.push(format!("{label} has unexpected field(s): '{k}'"));
    }
    match o.get("type") {
        None => {}
        Some(Value::String(t)) => p.r#type = Some(t.clone()),
        Some(_) => errors.push(format!("{label} type must be \"port\", \"process\", or \"http\"")),
    }
    let data = match o.get("data") {
        None | Some(Value::Null) => return Some(p),
        Some(Value::Object(d)) => d,
        Some(_) => {
            errors.push(format!("{label} data must be an object"));
            return Some(p);
        }
    };
    let ints: &[(&str, &str)] = if readiness {
        &[("invocation_timeout", "Invocation timeout"), ("interval", "Interval")]
    } else {
        &[
            ("timeout", "Timeout"),
            ("invocation_timeout", "Invocation timeout"),
            ("interval", "Interval"),
        ]
    };
    for k in data.keys() {
        if k != "endpoint" && !ints.iter().any(|(key, _)| key == k) {
            errors.push(format!("{label} data has unexpected field(s): '{k}'"));
        }
    }
    for (key, name) in ints {
        let Some(v) = data.get(*key) else { continue };
        let n = if v.is_null() {
            None
        } else {
            match integer(v, name, 1, i64::from(i32::MAX)) {
                Ok(n) => i32::try_from(n).ok(),
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        };
        match *key {
            "timeout" => (p.has_timeout, p.timeout) = (true, n),
            "invocation_timeout" => (p.has_invocation_timeout, p.invocation_timeout) = (true, n),
            _ => (p.has_interval, p.interval) = (true, n),
        }
    }
    match data.get("endpoint") {
        None => {}
        Some(Value::Null) => (p.has_endpoint, p.endpoint) = (true, None),
        Some(Value::String(e)) => (p.has_endpoint, p.endpoint) = (true, Some(e.clone())),
        Some(_) => errors.push(format!("{label} endpoint must be a string")),
    }
    Some(p)
}

/// A label value as CF stringifies a non-string one.
fn stringify(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `metadata` of a PATCH: a merge patch (null deletes a key).
pub fn metadata_patch(v: &Value) -> Result<pb::CfMetadataPatch, CfError> {
    let Value::Object(o) = v else {
        return Err(CfError::unprocessable("Metadata must be an object"));
    };
    let unexpected: Vec<String> = o
        .keys()
        .filter(|k| !["labels", "annotations"].contains(&k.as_str()))
        .map(|k| format!("'{k}'"))
        .collect();
    if !unexpected.is_empty() {
        return Err(CfError::unprocessable(format!(
            "Metadata has unexpected field(s): {}",
            unexpected.join(", ")
        )));
    }
    let mut p = pb::CfMetadataPatch::default();
    for which in ["labels", "annotations"] {
        match o.get(which) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let (map, gone) = if which == "labels" {
                        (&mut p.labels, &mut p.labels_removed)
                    } else {
                        (&mut p.annotations, &mut p.annotations_removed)
                    };
                    if v.is_null() {
                        gone.push(k.clone());
                    } else {
                        map.insert(k.clone(), stringify(v));
                    }
                }
            }
            Some(_) => return Err(CfError::unprocessable(format!("Metadata '{which}' is not an object"))),
        }
    }
    Ok(p)
}

/// `metadata` of a create: labels and annotations as given.
pub fn metadata(o: &Object) -> Result<Option<pb::CfMetadata>, CfError> {
    match o.get("metadata") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let p = metadata_patch(v)?;
            Ok(Some(pb::CfMetadata {
                labels: p.labels,
                annotations: p.annotations,
            }))
        }
    }
}

/// `PATCH /v3/processes/:guid`.
pub fn update_process(o: &Object) -> Result<pb::UpdateCfProcess, CfError> {
    unknown_fields(
        o,
        &["command", "user", "health_check", "readiness_health_check", "metadata"],
    )?;
    let mut u = pb::UpdateCfProcess::default();
    let mut errors = Vec::new();
    match o.get("command") {
        None => {}
        Some(Value::Null) => u.has_command = true,
        Some(Value::String(c)) => (u.has_command, u.command) = (true, Some(c.clone())),
        Some(_) => errors.push("Command must be a string".to_string()),
    }
    match o.get("user") {
        None => {}
        Some(Value::Null) => u.has_user = true,
        Some(Value::String(s)) => (u.has_user, u.user) = (true, Some(s.clone())),
        Some(_) => errors.push("User must be a string".to_string()),
    }
    if let Some(v) = o.get("health_check") {
        u.health_check = check_patch(v, false, &mut errors);
    }
    if let Some(v) = o.get("readiness_health_check") {
        u.readiness_health_check = check_patch(v, true, &mut errors);
    }
    joined(errors)?;
    if let Some(v) = o.get("metadata") {
        u.metadata = Some(metadata_patch(v)?);
    }
    Ok(u)
}

/// A string field that must be present (`Name must be a string`).
pub fn name(o: &Object) -> Result<String, CfError> {
    match o.get("name") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(CfError::unprocessable("Name must be a string")),
        None => Err(CfError::unprocessable("Name can't be blank")),
    }
}

/// `relationships.<to>.data.guid` of a create.
pub fn relationship(o: &Object, to: &str) -> Result<String, CfError> {
    o.get("relationships")
        .and_then(|r| r.get(to))
        .and_then(|r| r.get("data"))
        .and_then(|d| d.get("guid"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| CfError::unprocessable(format!("Relationships {to} must be a to-one relationship")))
}

/// `PATCH` of an organization, space or app: a new name and/or a metadata patch.
pub fn update_resource(o: &Object, kind: pb::CfKind, guid: &str) -> Result<pb::UpdateCfResource, CfError> {
    unknown_fields(o, &["name", "metadata"])?;
    let name = match o.get("name") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(CfError::unprocessable("Name must be a string")),
    };
    let metadata = o.get("metadata").map(metadata_patch).transpose()?;
    Ok(pb::UpdateCfResource {
        kind: kind as i32,
        guid: guid.to_owned(),
        name,
        metadata,
        environment_variables: None,
    })
}

/// `PATCH /v3/apps/:guid/environment_variables`: `{"var": {NAME: "value" | null}}` (CC's
/// `EnvironmentVariablesStringValuesValidator`: values are strings, a null removes the name).
pub fn env_patch(o: &Object, app_guid: &str) -> Result<pb::UpdateCfResource, CfError> {
    unknown_fields(o, &["var"])?;
    let mut patch = pb::CfEnvPatch::default();
    match o.get("var") {
        None => {}
        Some(Value::Object(vars)) => {
            let mut errors = Vec::new();
            for (name, value) in vars {
                match value {
                    Value::String(s) => {
                        patch.set.insert(name.clone(), s.clone());
                    }
                    Value::Null => patch.removed.push(name.clone()),
                    other => errors.push(format!(
                        "Non-string value in environment variable for key '{name}', value '{other}'"
                    )),
                }
            }
            joined(errors)?;
        }
        Some(_) => return Err(CfError::unprocessable("Var must be an object")),
    }
    Ok(pb::UpdateCfResource {
        kind: pb::CfKind::App as i32,
        guid: app_guid.to_owned(),
        name: None,
        metadata: None,
        environment_variables: Some(patch),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => Object::new(),
        }
    }

    #[test]
    fn an_env_patch_takes_strings_and_nulls_as_cc_does() {
        let p = env_patch(&obj(json!({"var": {"A": "1", "B": null}})), "g").expect("patch");
        let env = p.environment_variables.expect("env");
        assert_eq!(
            (env.set.get("A").map(String::as_str), env.removed),
            (Some("1"), vec!["B".to_owned()])
        );
        let e = |v: Value| env_patch(&obj(v), "g").unwrap_err().detail;
        assert_eq!(
            e(json!({"var": {"N": 5}})),
            "Non-string value in environment variable for key 'N', value '5'"
        );
        assert_eq!(e(json!({"var": "x"})), "Var must be an object");
        assert_eq!(e(json!({"vars": {}})), "Unknown field(s): 'vars'");
    }

    #[test]
    fn scale_messages_are_cfs() {
        let e = |v: Value| scale(&obj(v)).unwrap_err().detail;
        assert_eq!(
            e(json!({"memory_in_mb": 100000000000i64})),
            "Memory in mb must be less than or equal to 2147483647"
        );
        assert_eq!(
            e(json!({"log_rate_limit_in_bytes_per_second": -2})),
            "Log rate limit in bytes per second must be greater than or equal to -1"
        );
        assert_eq!(e(json!({"instances": "wrong"})), "Instances is not a number");
        assert_eq!(e(json!({"instances": 1.5})), "Instances must be an integer");
        assert_eq!(e(json!({"instances": null})), "Instances must be an integer, not null");
        assert_eq!(e(json!({"ports": [1]})), "Unknown field(s): 'ports'");
        let s = scale(&obj(
            json!({"instances": "5", "log_rate_limit_in_bytes_per_second": null}),
        ))
        .unwrap();
        assert_eq!((s.instances, s.log_rate_limit_in_bytes_per_second), (Some(5), None));
    }

    #[test]
    fn update_messages_are_cfs() {
        let e = |v: Value| update_process(&obj(v)).unwrap_err().detail;
        assert_eq!(e(json!({"command": false})), "Command must be a string");
        assert_eq!(e(json!({"ports": [8080]})), "Unknown field(s): 'ports'");
        assert_eq!(e(json!({"metadata": []})), "Metadata must be an object");
        assert_eq!(
            e(json!({"metadata": {"x": 1}})),
            "Metadata has unexpected field(s): 'x'"
        );
        let u = update_process(&obj(json!({
            "command": null,
            "health_check": {"type": "http", "data": {"endpoint": "/h", "timeout": null}},
            "metadata": {"labels": {"a": "1", "b": null}}
        })))
        .unwrap();
        assert!(u.has_command && u.command.is_none());
        let hc = u.health_check.unwrap();
        assert_eq!(hc.r#type.as_deref(), Some("http"));
        assert!(hc.has_timeout && hc.timeout.is_none() && hc.endpoint.as_deref() == Some("/h"));
        let m = u.metadata.unwrap();
        assert_eq!(m.labels_removed, ["b"]);
    }

    #[test]
    fn bodies_that_are_not_objects_are_parse_errors() {
        assert_eq!(object(b"[").unwrap_err().code, 1001);
        assert_eq!(object(b"").unwrap().len(), 0);
    }
}
