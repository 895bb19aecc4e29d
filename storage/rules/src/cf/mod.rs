//! Cloud Foundry V3's rules (spec/cf_v3_processes.md): the resources' shared shape
//! ([`CfRecord`]), CF's defaults and limits, the process's mapping onto a DesiredLRP in domain
//! `cf-apps` (§7), and the stats state mapping from ActualLRPs (§3, §7.4). `labels`, `selector`
//! and `query` hold metadata validation, `label_selector` and the list query parameters.

pub mod labels;
pub mod query;
pub mod selector;

use crate::pb;

/// The Diego domain of every CF process's DesiredLRP.
pub const DOMAIN: &str = "cf-apps";
/// The container port a web process listens on (`PORT` inside a container).
pub const WEB_PORT: u32 = 8080;
/// CF's `default_app_memory` and `default_app_disk_in_mb`.
pub const MEMORY_MB_DEFAULT: i32 = 1024;
pub const DISK_MB_DEFAULT: i32 = 1024;
/// −1: no log rate limit (CF's default).
pub const LOG_RATE_DEFAULT: i64 = -1;
/// CF's `maximum_health_check_timeout` (seconds).
pub const HEALTH_CHECK_TIMEOUT_MAX: i32 = 180;
/// CF's `default_health_check_timeout` (seconds): how long an instance may take to become healthy.
pub const HEALTH_CHECK_TIMEOUT_DEFAULT: i32 = 60;
/// CF's `maximum_app_disk_in_mb`.
pub const DISK_MB_MAX: i32 = 2048 * 1024;
/// Instances one process may ask for (Diego's limit on a DesiredLRP).
pub const INSTANCES_MAX: i32 = super::limits::INSTANCES_MAX;
/// The stack a process without a docker image runs on (a cell's `preloaded:` rootfs).
pub const STACK: &str = "cflinuxfs4";
/// Names of organizations, spaces and apps (CF's column width).
pub const NAME_CHARS_MAX: usize = 255;
/// Apps one manifest may carry (a manifest is one log entry).
pub const MANIFEST_APPS_MAX: usize = 100;
/// Processes one manifest app may carry.
pub const MANIFEST_PROCESSES_MAX: usize = 20;
/// A command's length (CF: 1..4096).
pub const COMMAND_CHARS_MAX: usize = 4096;

/// What every CF resource shares: how the views index it.
pub trait CfRecord {
    const KIND: pb::CfKind;
    fn guid(&self) -> &str;
    /// The owner (organization of a space, space of an app, app of a process; "" for an org).
    fn parent(&self) -> &str;
    /// The name unique within the parent (a process's type).
    fn name(&self) -> &str;
    fn created_at(&self) -> i64;
    fn updated_at(&self) -> i64;
}

macro_rules! cf_record {
    ($t:ty, $kind:ident, $parent:ident, $name:ident) => {
        impl CfRecord for $t {
            const KIND: pb::CfKind = pb::CfKind::$kind;
            fn guid(&self) -> &str {
                &self.guid
            }
            fn parent(&self) -> &str {
                &self.$parent
            }
            fn name(&self) -> &str {
                &self.$name
            }
            fn created_at(&self) -> i64 {
                self.created_at
            }
            fn updated_at(&self) -> i64 {
                self.updated_at
            }
        }
    };
}

impl CfRecord for pb::CfOrganization {
    const KIND: pb::CfKind = pb::CfKind::Organization;
    fn guid(&self) -> &str {
        &self.guid
    }
    fn parent(&self) -> &str {
        ""
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn updated_at(&self) -> i64 {
        self.updated_at
    }
}
cf_record!(pb::CfSpace, Space, organization_guid, name);
cf_record!(pb::CfApp, App, space_guid, name);
cf_record!(pb::CfProcess, Process, app_guid, r#type);

/// The resource's name in messages (`App not found`).
pub fn kind_title(kind: pb::CfKind) -> &'static str {
    match kind {
        pb::CfKind::Organization => "Organization",
        pb::CfKind::Space => "Space",
        pb::CfKind::App => "App",
        pb::CfKind::Process => "Process",
        pb::CfKind::Unspecified => "Resource",
    }
}

/// A resource name: 1..255 characters.
pub fn name(n: &str) -> Result<(), String> {
    match n.chars().count() {
        0 => Err("Name can't be blank".into()),
        c if c > NAME_CHARS_MAX => Err(format!("Name is too long (maximum is {NAME_CHARS_MAX} characters)")),
        _ => Ok(()),
    }
}

/// Diego's process_guid of a CF process: `<guid>-<version>` (§7.1).
pub fn process_guid(p: &pb::CfProcess) -> String {
    format!("{}-{}", p.guid, p.version)
}

/// The DesiredLRP guid of the version a rolling restart is replacing, while one is under way.
pub fn previous_process_guid(p: &pb::CfProcess) -> Option<String> {
    (!p.previous_version.is_empty()).then(|| format!("{}-{}", p.guid, p.previous_version))
}

/// A health check as CF creates it for a process type: `port` for web, `process` otherwise.
pub fn default_health_check(process_type: &str) -> pb::CfHealthCheck {
    pb::CfHealthCheck {
        r#type: if process_type == "web" { "port" } else { "process" }.into(),
        ..Default::default()
    }
}

pub fn default_readiness_check() -> pb::CfHealthCheck {
    pb::CfHealthCheck {
        r#type: "process".into(),
        ..Default::default()
    }
}

/// A health check type V3 accepts.
pub fn health_check_type(t: &str, readiness: bool) -> Result<(), String> {
    if matches!(t, "port" | "process" | "http") {
        return Ok(());
    }
    let which = if readiness {
        "Readiness health check"
    } else {
        "Health check"
    };
    Err(format!("{which} type must be \"port\", \"process\", or \"http\""))
}

/// A health-check endpoint: a URI path (`^(?:/|/([^\s/]\S*)?)$`), at most 255 characters.
pub fn endpoint(e: &str) -> Result<(), String> {
    if e.chars().count() > 255 {
        return Err("is too long (maximum is 255 characters)".into());
    }
    let ok = e == "/"
        || e.strip_prefix('/')
            .is_some_and(|rest| !rest.starts_with('/') && !rest.chars().any(char::is_whitespace) && !rest.is_empty());
    if ok {
        Ok(())
    } else {
        Err("Health check endpoint must be a valid URI path".into())
    }
}

/// The model checks a process must pass after any change (422 on failure).
pub fn process_model(p: &pb::CfProcess) -> Result<(), String> {
    if let Some(hc) = &p.health_check {
        if hc.timeout.is_some_and(|t| t > HEALTH_CHECK_TIMEOUT_MAX) {
            return Err(format!(
                "health_check_timeout Maximum exceeded: max {HEALTH_CHECK_TIMEOUT_MAX}s"
            ));
        }
        if hc.r#type == "http" && endpoint(&hc.endpoint).is_err() {
            return Err(format!(
                "health_check_http_endpoint HTTP health check endpoint is not a valid URI path: {}",
                hc.endpoint
            ));
        }
    }
    if p.disk_in_mb > DISK_MB_MAX {
        return Err(format!(
            "disk_quota too much disk requested (requested {} MB - must be less than {DISK_MB_MAX} MB)",
            p.disk_in_mb
        ));
    }
    if p.instances > INSTANCES_MAX {
        return Err(format!("instances must be less than or equal to {INSTANCES_MAX}"));
    }
    Ok(())
}

/// What a caller who may not read secrets sees in place of one (CC's words).
pub const PRIVATE_DATA_HIDDEN: &str = "[PRIVATE DATA HIDDEN]";

/// The platform's variables in a CF process's DesiredLRP: not secrets.
const PLATFORM_ENV: [&str; 2] = ["VCAP_APPLICATION", "MEMORY_LIMIT"];

/// A CF process's DesiredLRP as a caller who may not read secrets sees it: the app's environment
/// variables keep their names, their values are hidden. Other LRPs are left as they are.
pub fn hide_app_env(d: &mut pb::DesiredLrp) {
    if d.domain != DOMAIN {
        return;
    }
    for e in d.env.iter_mut().filter(|e| !PLATFORM_ENV.contains(&e.name.as_str())) {
        e.value = PRIVATE_DATA_HIDDEN.into();
    }
}

/// An event as a caller who may not read secrets sees it: apps' environment variable values and
/// those in CF processes' DesiredLRPs hidden.
pub fn hide_secrets(e: &mut pb::Event) {
    use pb::event::Kind as Ev;
    let hide_app = |a: &mut Option<pb::CfApp>| {
        for v in a.iter_mut().flat_map(|a| a.environment_variables.values_mut()) {
            *v = PRIVATE_DATA_HIDDEN.into();
        }
    };
    match &mut e.kind {
        Some(Ev::CfAppChanged(c)) => {
            hide_app(&mut c.before);
            hide_app(&mut c.after);
        }
        Some(Ev::DesiredLrpCreated(pb::DesiredLrpCreated { desired_lrp: d }))
        | Some(Ev::DesiredLrpRemoved(pb::DesiredLrpRemoved { desired_lrp: d })) => d.iter_mut().for_each(hide_app_env),
        Some(Ev::DesiredLrpChanged(c)) => c.before.iter_mut().chain(c.after.iter_mut()).for_each(hide_app_env),
        _ => {}
    }
}

/// Cloud Controller's rules for environment variable names (its `EnvironmentVariablesValidator`):
/// each broken rule as CF words it, after `attribute` (`Var` for the environment_variables
/// endpoint, `Env` for a manifest), once per rule.
pub fn env_names<'a>(attribute: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut broken = Vec::new();
    for name in names {
        let upper = name.to_ascii_uppercase();
        let rule = if name.is_empty() {
            "key must be a minimum length of 1"
        } else if upper.starts_with("VCAP_") {
            "cannot start with VCAP_"
        } else if upper.starts_with("VMC") {
            "cannot start with VMC_"
        } else if upper == "PORT" {
            "cannot set PORT"
        } else {
            continue;
        };
        let message = format!("{attribute} {rule}");
        if !broken.contains(&message) {
            broken.push(message);
        }
    }
    broken
}

/// An app's environment variables after a merge: `set` written over, `removed` gone.
pub fn env_merged(
    before: &std::collections::BTreeMap<String, String>,
    set: &std::collections::BTreeMap<String, String>,
    removed: &[String],
) -> std::collections::BTreeMap<String, String> {
    let mut after = before.clone();
    for name in removed {
        after.remove(name);
    }
    after.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    after
}

/// The scale fields' message-layer rules (spec §1.7; `null` refused by the gateway, DECISIONS).
pub fn scale(s: &pb::ScaleCfProcess) -> Result<(), String> {
    if s.instances.is_some_and(|n| n < 0) {
        return Err("Instances must be greater than or equal to 0".into());
    }
    if s.memory_in_mb.is_some_and(|n| n < 1) {
        return Err("Memory in mb must be greater than 0".into());
    }
    if s.disk_in_mb.is_some_and(|n| n < 1) {
        return Err("Disk in mb must be greater than 0".into());
    }
    if s.log_rate_limit_in_bytes_per_second.is_some_and(|n| n < -1) {
        return Err("Log rate limit in bytes per second must be greater than or equal to -1".into());
    }
    Ok(())
}

/// The DesiredLRP that runs a started process (§7.1): `sh -c <command>` on the app's docker image
/// or on a cell's preloaded stack, port 8080 for web and for port/http checks, the start timeout
/// from the health check, a `true` monitor for a `process` check on a process with ports (no
/// port check then). An `http` check is made as a port check (the cell has no HTTP monitor yet).
pub fn desired_lrp(app: &pb::CfApp, p: &pb::CfProcess) -> pb::DesiredLrp {
    let hc = p
        .health_check
        .clone()
        .unwrap_or_else(|| default_health_check(&p.r#type));
    let wants_port = p.r#type == "web" || hc.r#type != "process";
    let ports = if wants_port { vec![WEB_PORT] } else { vec![] };
    let monitor = (wants_port && hc.r#type == "process").then(|| pb::Action {
        kind: Some(pb::action::Kind::Run(pb::RunAction {
            path: "true".into(),
            user: "vcap".into(),
            ..Default::default()
        })),
    });
    let rootfs = if app.docker_image.is_empty() {
        format!("preloaded:{STACK}")
    } else {
        format!("docker:///{}", app.docker_image)
    };
    let mut env = vec![
        pb::EnvironmentVariable {
            name: "VCAP_APPLICATION".into(),
            value: format!(
                "{{\"application_id\":\"{}\",\"application_name\":{},\"process_id\":\"{}\",\"process_type\":{},\"space_id\":\"{}\",\"organization_id\":\"{}\",\"limits\":{{\"mem\":{},\"disk\":{}}}}}",
                app.guid,
                json_string(&app.name),
                p.guid,
                json_string(&p.r#type),
                app.space_guid,
                app.organization_guid,
                p.memory_in_mb,
                p.disk_in_mb
            ),
        },
        pb::EnvironmentVariable {
            name: "MEMORY_LIMIT".into(),
            value: format!("{}m", p.memory_in_mb),
        },
    ];
    // The app's own variables after the platform's, which win a clash (a user may not set VCAP_*
    // or PORT, but may name MEMORY_LIMIT).
    let user = app
        .environment_variables
        .iter()
        .filter(|(name, _)| !env.iter().any(|e| &e.name == *name))
        .map(|(name, value)| pb::EnvironmentVariable {
            name: name.clone(),
            value: value.clone(),
        })
        .collect::<Vec<_>>();
    env.extend(user);
    let timeout = hc.timeout.unwrap_or(HEALTH_CHECK_TIMEOUT_DEFAULT);
    pb::DesiredLrp {
        process_guid: process_guid(p),
        domain: DOMAIN.into(),
        rootfs,
        instances: p.instances,
        env,
        action: Some(pb::Action {
            kind: Some(pb::action::Kind::Run(pb::RunAction {
                path: "sh".into(),
                args: vec!["-c".into(), p.command.clone()],
                user: if p.user.is_empty() {
                    "vcap".into()
                } else {
                    p.user.clone()
                },
                log_source: format!("APP/PROC/{}", p.r#type.to_uppercase()),
                ..Default::default()
            })),
        }),
        monitor,
        start_timeout: u32::try_from(timeout).unwrap_or(60),
        disk_mb: p.disk_in_mb,
        memory_mb: p.memory_in_mb,
        cpu_weight: cpu_weight(p.memory_in_mb),
        ports,
        log_guid: app.guid.clone(),
        log_source: "CELL".into(),
        metrics_guid: app.guid.clone(),
        annotation: p.version.clone(),
        ..Default::default()
    }
}

/// CF's cpu weight from memory: proportional to memory, 8 GiB and more = 100.
fn cpu_weight(memory_mb: i32) -> u32 {
    let w = i64::from(memory_mb.max(0)) * 100 / 8192;
    u32::try_from(w.clamp(1, 100)).unwrap_or(100)
}

/// A string as a JSON literal (quotes and escapes).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One instance index as stats report it, before the cell's usage is added.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceState {
    pub index: u32,
    pub state: &'static str,
    /// the ActualLRP behind it, if any
    pub actual: Option<pb::ActualLrp>,
}

/// BBS state → V3 state (§7.4).
pub fn v3_state(a: &pb::ActualLrp) -> &'static str {
    match pb::ActualLrpState::try_from(a.state) {
        Ok(pb::ActualLrpState::Unclaimed) if a.placement_error.is_empty() => "STARTING",
        Ok(pb::ActualLrpState::Unclaimed) => "DOWN",
        Ok(pb::ActualLrpState::Claimed) => "STARTING",
        Ok(pb::ActualLrpState::Running) => "RUNNING",
        Ok(pb::ActualLrpState::Crashed) => "CRASHED",
        _ => "UNKNOWN",
    }
}

/// The instance list of a process's stats (§3.1): indices `0..instances`, each from its
/// ActualLRP or DOWN; with no DesiredLRP, existing ActualLRPs are STOPPING.
pub fn instance_states(instances: i32, desired_exists: bool, actuals: &[pb::ActualLrp]) -> Vec<InstanceState> {
    let n = u32::try_from(instances).unwrap_or(0);
    if n == 0 {
        return Vec::new();
    }
    if !desired_exists && !actuals.is_empty() {
        return actuals
            .iter()
            .map(|a| InstanceState {
                index: a.index,
                state: "STOPPING",
                actual: Some(a.clone()),
            })
            .collect();
    }
    (0..n)
        .map(|index| match actuals.iter().find(|a| a.index == index) {
            Some(a) => InstanceState {
                index,
                state: v3_state(a),
                actual: Some(a.clone()),
            },
            None => InstanceState {
                index,
                state: "DOWN",
                actual: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actual(index: u32, state: pb::ActualLrpState, error: &str) -> pb::ActualLrp {
        pb::ActualLrp {
            index,
            state: state as i32,
            placement_error: error.into(),
            ..Default::default()
        }
    }

    #[test]
    fn states_map_as_cf_translates_them() {
        use pb::ActualLrpState as S;
        assert_eq!(v3_state(&actual(0, S::Unclaimed, "")), "STARTING");
        assert_eq!(v3_state(&actual(0, S::Unclaimed, "found no compatible cells")), "DOWN");
        assert_eq!(v3_state(&actual(0, S::Claimed, "")), "STARTING");
        assert_eq!(v3_state(&actual(0, S::Running, "")), "RUNNING");
        assert_eq!(v3_state(&actual(0, S::Crashed, "")), "CRASHED");
        assert_eq!(v3_state(&actual(0, S::Unspecified, "")), "UNKNOWN");
    }

    #[test]
    fn missing_indices_are_down_and_extra_ones_dropped() {
        use pb::ActualLrpState as S;
        let actuals = [
            actual(0, S::Running, ""),
            actual(2, S::Running, ""),
            actual(5, S::Running, ""),
        ];
        let s = instance_states(3, true, &actuals);
        let states: Vec<_> = s.iter().map(|i| (i.index, i.state)).collect();
        assert_eq!(states, [(0, "RUNNING"), (1, "DOWN"), (2, "RUNNING")]);
        assert!(instance_states(0, true, &actuals).is_empty());
    }

    #[test]
    fn a_stopped_process_reports_stopping_or_down() {
        use pb::ActualLrpState as S;
        let s = instance_states(2, false, &[actual(0, S::Running, "")]);
        assert_eq!(s.iter().map(|i| i.state).collect::<Vec<_>>(), ["STOPPING"]);
        let s = instance_states(2, false, &[]);
        assert_eq!(s.iter().map(|i| i.state).collect::<Vec<_>>(), ["DOWN", "DOWN"]);
    }

    #[test]
    fn endpoints_are_uri_paths() {
        assert!(endpoint("/").is_ok());
        assert!(endpoint("/health").is_ok());
        assert!(endpoint("//x").is_err());
        assert!(endpoint("health").is_err());
        assert!(endpoint("/a b").is_err());
    }

    #[test]
    fn a_started_web_process_becomes_a_cf_apps_lrp() {
        let app = pb::CfApp {
            guid: "app".into(),
            name: "my \"app\"".into(),
            ..Default::default()
        };
        let p = pb::CfProcess {
            guid: "11111111-1111-4111-8111-111111111111".into(),
            version: "v1".into(),
            r#type: "web".into(),
            command: "python3 -m http.server $PORT".into(),
            instances: 3,
            memory_in_mb: 256,
            disk_in_mb: 1024,
            ..Default::default()
        };
        let d = desired_lrp(&app, &p);
        assert_eq!(d.process_guid, "11111111-1111-4111-8111-111111111111-v1");
        assert_eq!(
            (d.domain.as_str(), d.instances, d.ports.as_slice()),
            ("cf-apps", 3, &[8080][..])
        );
        assert_eq!(d.rootfs, "preloaded:cflinuxfs4");
        assert!(d.monitor.is_none());
        assert!(d.env[0].value.contains("\"application_name\":\"my \\\"app\\\"\""));
        let worker = pb::CfProcess {
            r#type: "worker".into(),
            ..p.clone()
        };
        assert!(desired_lrp(&app, &worker).ports.is_empty());
    }
}
