//! The edge checks of CF writes: what the node refuses before proposing (the rules are
//! `storage::rules::cf`; the messages CF's).

use capstan_proto::pb;
use capstan_storage::rules::cf::{self as rules, labels};
use tonic::Status;

use super::unprocessable;

pub(super) fn check_metadata(m: Option<&pb::CfMetadata>) -> Result<(), Status> {
    let Some(m) = m else { return Ok(()) };
    labels::patch(&pb::CfMetadataPatch {
        labels: m.labels.clone(),
        annotations: m.annotations.clone(),
        ..Default::default()
    })
    .map_err(unprocessable)
}

pub(super) fn check_manifest(m: &pb::ApplyCfManifest) -> Result<(), Status> {
    if m.applications.is_empty() {
        return Err(unprocessable("Applications must have at least 1 application"));
    }
    if m.applications.len() > rules::MANIFEST_APPS_MAX {
        return Err(unprocessable(format!(
            "a manifest may hold at most {} applications",
            rules::MANIFEST_APPS_MAX
        )));
    }
    let mut names = std::collections::BTreeSet::new();
    for a in &m.applications {
        rules::name(&a.name).map_err(|e| unprocessable(format!("For application '{}': {e}", a.name)))?;
        if !names.insert(a.name.as_str()) {
            return Err(unprocessable(format!(
                "Application '{}' appears more than once",
                a.name
            )));
        }
        if a.processes.len() > rules::MANIFEST_PROCESSES_MAX {
            return Err(unprocessable(format!(
                "For application '{}': too many processes",
                a.name
            )));
        }
        let env = a.env.keys().chain(&a.env_removed).map(String::as_str);
        let broken = rules::env_names("Env", env);
        if !broken.is_empty() {
            return Err(unprocessable(format!(
                "For application '{}': {}",
                a.name,
                broken.join(", ")
            )));
        }
        let mut types = std::collections::BTreeSet::new();
        for p in &a.processes {
            let fail =
                |e: String| unprocessable(format!("For application '{}': Process \"{}\": {e}", a.name, p.r#type));
            if p.r#type.is_empty() {
                return Err(unprocessable(format!(
                    "For application '{}': Type must not be empty",
                    a.name
                )));
            }
            if !types.insert(p.r#type.as_str()) {
                return Err(fail("appears more than once".into()));
            }
            if let Some(c) = &p.command {
                if c.chars().count() > rules::COMMAND_CHARS_MAX {
                    return Err(fail("Command must be between 1 and 4096 characters".into()));
                }
            }
            if p.instances.is_some_and(|n| n < 0) {
                return Err(fail("Instances must be greater than or equal to 0".into()));
            }
            if p.memory_in_mb.is_some_and(|n| n < 1) || p.disk_in_mb.is_some_and(|n| n < 1) {
                return Err(fail("Memory and disk must be greater than 0".into()));
            }
            if let Some(t) = &p.health_check_type {
                if t != "none" {
                    rules::health_check_type(t, false).map_err(fail)?;
                }
            }
            if let Some(e) = &p.health_check_http_endpoint {
                rules::endpoint(e).map_err(fail)?;
            }
            if p.timeout.is_some_and(|t| t < 1) {
                return Err(fail("Timeout must be greater than or equal to 1".into()));
            }
        }
    }
    Ok(())
}

pub(super) fn check_check_patch(p: Option<&pb::CfHealthCheckPatch>, readiness: bool) -> Result<(), Status> {
    let Some(p) = p else { return Ok(()) };
    if let Some(t) = &p.r#type {
        rules::health_check_type(t, readiness).map_err(unprocessable)?;
    }
    for (has, v, name) in [
        (p.has_timeout, p.timeout, "Timeout"),
        (p.has_invocation_timeout, p.invocation_timeout, "Invocation timeout"),
        (p.has_interval, p.interval, "Interval"),
    ] {
        if has && v.is_some_and(|n| n < 1) {
            return Err(unprocessable(format!("{name} must be greater than or equal to 1")));
        }
    }
    if let Some(e) = &p.endpoint {
        rules::endpoint(e).map_err(unprocessable)?;
    }
    Ok(())
}

/// An environment-variable patch: CC's name rules, refused at the edge.
pub(super) fn check_env(patch: Option<&pb::CfEnvPatch>) -> Result<(), Status> {
    let Some(p) = patch else { return Ok(()) };
    let broken = rules::env_names("Var", p.set.keys().chain(&p.removed).map(String::as_str));
    if broken.is_empty() {
        Ok(())
    } else {
        Err(unprocessable(broken.join(", ")))
    }
}

pub(super) fn check_update(u: &pb::UpdateCfProcess) -> Result<(), Status> {
    if let Some(c) = &u.command {
        if c.is_empty() || c.chars().count() > rules::COMMAND_CHARS_MAX {
            return Err(unprocessable("Command must be between 1 and 4096 characters"));
        }
    }
    if let Some(user) = &u.user {
        if user.is_empty() || user.chars().count() > 255 {
            return Err(unprocessable("User must be between 1 and 255 characters"));
        }
    }
    check_check_patch(u.health_check.as_ref(), false)?;
    check_check_patch(u.readiness_health_check.as_ref(), true)?;
    if let Some(m) = &u.metadata {
        labels::patch(m).map_err(unprocessable)?;
    }
    Ok(())
}
