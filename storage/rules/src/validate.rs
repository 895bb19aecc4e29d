//! Validation of DesiredLRP creates and updates, in Diego's order and with its messages
//! (`Invalid field: x, Invalid field: y`, spec/receptor.md §4).

use std::net::IpAddr;

use super::limits::*;
use crate::pb;

/// A list of validation messages; empty = valid. Displayed joined by ", " as Diego does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<String>);

impl ValidationErrors {
    pub(crate) fn field(&mut self, name: &str) {
        self.0.push(format!("Invalid field: {name}"));
    }
    pub(crate) fn push(&mut self, msg: impl Into<String>) {
        self.0.push(msg.into());
    }
    fn extend(&mut self, other: ValidationErrors) {
        self.0.extend(other.0);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result(self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0.join(", "))
        }
    }
}

/// `^[a-zA-Z0-9_-]+$`, bounded.
pub fn is_valid_guid(guid: &str) -> bool {
    !guid.is_empty()
        && guid.len() <= NAME_BYTES_MAX
        && guid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A URL with a non-empty scheme (`preloaded:cflinuxfs4`, `docker:///busybox#latest`).
pub(crate) fn has_url_scheme(s: &str) -> bool {
    if s.chars().any(char::is_control) {
        return false;
    }
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Validates a DesiredLRP create request (checks 1–12 of spec/receptor.md §4, then the limits
/// Capstan adds: memory_mb/disk_mb ≥ 0 as later Diego enforces, and the named size limits).
pub fn desired_lrp(d: &pb::DesiredLrp) -> Result<(), String> {
    let mut errs = ValidationErrors::default();
    if d.domain.is_empty() || d.domain.len() > NAME_BYTES_MAX {
        errs.field("domain");
    }
    if !is_valid_guid(&d.process_guid) {
        errs.field("process_guid");
    }
    if d.rootfs.is_empty() {
        errs.field("rootfs");
    }
    if !has_url_scheme(&d.rootfs) {
        errs.field("rootfs");
    }
    if let Some(setup) = &d.setup {
        nested_action(&mut errs, "setup", setup);
    }
    match &d.action {
        None => errs.push("invalid action type"),
        Some(a) => nested_action(&mut errs, "action", a),
    }
    if let Some(monitor) = &d.monitor {
        nested_action(&mut errs, "monitor", monitor);
    }
    if d.instances < 0 || d.instances > INSTANCES_MAX {
        errs.field("instances");
    }
    if d.cpu_weight > CPU_WEIGHT_MAX {
        errs.field("cpu_weight");
    }
    if d.annotation.len() > ANNOTATION_BYTES_MAX {
        errs.field("annotation");
    }
    if routes_bytes(&d.routes) > ROUTES_BYTES_MAX {
        errs.field("routes");
    }
    egress_rules(&mut errs, &d.egress_rules);
    if d.memory_mb < 0 {
        errs.field("memory_mb");
    }
    if d.disk_mb < 0 {
        errs.field("disk_mb");
    }
    if d.ports.len() > PORTS_MAX || d.ports.iter().any(|p| *p > u32::from(u16::MAX)) {
        errs.field("ports");
    }
    errs.into_result()
}

/// An action tree in a field: `Invalid field: <name>` followed by its own errors, if any.
pub(crate) fn nested_action(errs: &mut ValidationErrors, name: &str, a: &pb::Action) {
    let inner = action(a, 0);
    if !inner.is_empty() {
        errs.field(name);
        errs.extend(inner);
    }
}

/// `Invalid field: egress_rules` and the rule's errors, for each rule that is not valid.
pub(crate) fn egress_rules(errs: &mut ValidationErrors, rules: &[pb::SecurityGroupRule]) {
    for rule in rules {
        let inner = egress_rule(rule);
        if !inner.is_empty() {
            errs.field("egress_rules");
            errs.extend(inner);
        }
    }
}

/// Validates a DesiredLRPUpdateRequest (checks 8, 10, 11).
pub fn update(u: &pb::DesiredLrpUpdate) -> Result<(), String> {
    let mut errs = ValidationErrors::default();
    if let Some(n) = u.instances {
        if !(0..=INSTANCES_MAX).contains(&n) {
            errs.field("instances");
        }
    }
    if let Some(a) = &u.annotation {
        if a.len() > ANNOTATION_BYTES_MAX {
            errs.field("annotation");
        }
    }
    if u.has_routes && routes_bytes(&u.routes) > ROUTES_BYTES_MAX {
        errs.field("routes");
    }
    errs.into_result()
}

/// Admission checks added after logs holding entries may exist. They run where a request is
/// admitted (the server, before proposing) and never in apply, so replaying an older log still
/// gives the same views: a domain (or other name) with control characters, and route values
/// nested deeper than [`ROUTE_JSON_DEPTH_MAX`].
pub fn admit_desired_lrp(d: &pb::DesiredLrp) -> Result<(), String> {
    desired_lrp(d)?;
    let mut errs = ValidationErrors::default();
    if !is_clean_name(&d.domain) {
        errs.field("domain");
    }
    if d.routes.values().any(|v| json_depth(v) > ROUTE_JSON_DEPTH_MAX) {
        errs.field("routes");
    }
    errs.into_result()
}

/// As [`admit_desired_lrp`], for an update.
pub fn admit_update(u: &pb::DesiredLrpUpdate) -> Result<(), String> {
    update(u)?;
    let mut errs = ValidationErrors::default();
    if u.has_routes && u.routes.values().any(|v| json_depth(v) > ROUTE_JSON_DEPTH_MAX) {
        errs.field("routes");
    }
    errs.into_result()
}

/// A domain, cell id or other name: non-empty, bounded, and free of control characters (NUL
/// included), which would corrupt logs, terminals and URLs that show it.
pub fn is_clean_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= NAME_BYTES_MAX && !s.chars().any(char::is_control)
}

/// How deeply a JSON text nests arrays and objects (brackets inside strings do not count).
pub fn json_depth(json: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn routes_bytes(routes: &std::collections::BTreeMap<String, String>) -> usize {
    routes.values().map(String::len).sum()
}

fn action(a: &pb::Action, depth: usize) -> ValidationErrors {
    use pb::action::Kind;
    let mut errs = ValidationErrors::default();
    if depth > ACTION_DEPTH_MAX {
        errs.field("action depth");
        return errs;
    }
    let nested = |errs: &mut ValidationErrors, inner: &Option<Box<pb::Action>>| match inner {
        None => errs.field("action"),
        Some(inner) => {
            let e = action(inner, depth + 1);
            if !e.is_empty() {
                errs.field("action");
                errs.extend(e);
            }
        }
    };
    match &a.kind {
        None => errs.field("inner-action"),
        Some(Kind::Download(d)) => {
            if d.from.is_empty() {
                errs.field("from");
            }
            if d.to.is_empty() {
                errs.field("to");
            }
            if d.user.is_empty() {
                errs.field("user");
            }
        }
        Some(Kind::Upload(u)) => {
            if u.to.is_empty() {
                errs.field("to");
            }
            if u.from.is_empty() {
                errs.field("from");
            }
            if u.user.is_empty() {
                errs.field("user");
            }
        }
        Some(Kind::Run(r)) => {
            if r.path.is_empty() {
                errs.field("path");
            }
            if r.user.is_empty() {
                errs.field("user");
            }
        }
        Some(Kind::Timeout(t)) => {
            nested(&mut errs, &t.action);
            if t.timeout <= 0 {
                errs.field("timeout");
            }
        }
        Some(Kind::EmitProgress(e)) => nested(&mut errs, &e.action),
        Some(Kind::Try(t)) => nested(&mut errs, &t.action),
        Some(Kind::Parallel(l)) | Some(Kind::Serial(l)) | Some(Kind::Codependent(l)) => {
            if l.actions.is_empty() {
                errs.field("actions");
            }
            for (i, child) in l.actions.iter().enumerate() {
                if child.kind.is_none() {
                    errs.push(format!("Invalid field: action at index {i}"));
                    continue;
                }
                let e = action(child, depth + 1);
                if !e.is_empty() {
                    errs.field("action");
                    errs.extend(e);
                }
            }
        }
    }
    errs
}

fn egress_rule(r: &pb::SecurityGroupRule) -> ValidationErrors {
    let mut errs = ValidationErrors::default();
    let has_ports = !r.ports.is_empty();
    let has_range = r.port_range.is_some();
    match r.protocol.as_str() {
        "tcp" | "udp" => {
            match (has_ports, has_range) {
                (false, false) => errs.push("Missing required field: ports or port_range"),
                (true, true) => errs.push("Invalid: ports and port_range provided"),
                _ => {}
            }
            if r.icmp_info.is_some() {
                errs.field("icmp_info");
            }
            if r.protocol == "udp" && r.log {
                errs.field("log");
            }
        }
        "icmp" => {
            if r.icmp_info.is_none() {
                errs.push("Missing required field: icmp_info");
            }
            if has_ports || has_range {
                errs.field("ports");
            }
            if r.log {
                errs.field("log");
            }
        }
        "all" => {
            if has_ports || has_range {
                errs.field("ports");
            }
            if r.icmp_info.is_some() {
                errs.field("icmp_info");
            }
        }
        _ => errs.field("protocol"),
    }
    if let Some(pr) = &r.port_range {
        if pr.start < 1 || pr.end < 1 || pr.start > pr.end || pr.end > u32::from(u16::MAX) {
            errs.field("port_range");
        }
    }
    if r.ports.iter().any(|p| *p < 1 || *p > u32::from(u16::MAX)) {
        errs.field("ports");
    }
    if r.destinations.is_empty() {
        errs.field("destinations");
    }
    for d in &r.destinations {
        if !is_destination(d) {
            errs.field("destinations");
        }
    }
    errs
}

/// An IP, an `a-b` range of IPs of one family with a ≤ b, or a CIDR.
fn is_destination(d: &str) -> bool {
    if let Some((a, b)) = d.split_once('-') {
        return match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
            (Ok(IpAddr::V4(a)), Ok(IpAddr::V4(b))) => a <= b,
            (Ok(IpAddr::V6(a)), Ok(IpAddr::V6(b))) => a <= b,
            _ => false,
        };
    }
    if let Some((ip, bits)) = d.split_once('/') {
        let max = match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => 32,
            Ok(IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        return bits.parse::<u8>().is_ok_and(|b| b <= max);
    }
    d.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::action::Kind;

    fn run(path: &str) -> pb::Action {
        pb::Action {
            kind: Some(Kind::Run(pb::RunAction {
                path: path.into(),
                user: "vcap".into(),
                ..Default::default()
            })),
        }
    }

    fn valid() -> pb::DesiredLrp {
        pb::DesiredLrp {
            process_guid: "pg-1".into(),
            domain: "d".into(),
            rootfs: "preloaded:cflinuxfs4".into(),
            instances: 2,
            action: Some(run("/bin/true")),
            ..Default::default()
        }
    }

    #[test]
    fn a_valid_lrp_passes() {
        assert_eq!(desired_lrp(&valid()), Ok(()));
        let mut d = valid();
        d.rootfs = "docker:///busybox#latest".into();
        assert_eq!(desired_lrp(&d), Ok(()));
    }

    #[test]
    fn messages_follow_diego_order_and_rootfs_appears_twice() {
        let mut d = valid();
        d.process_guid = "bad guid".into();
        d.rootfs = String::new();
        assert_eq!(
            desired_lrp(&d),
            Err("Invalid field: process_guid, Invalid field: rootfs, Invalid field: rootfs".into())
        );
    }

    #[test]
    fn missing_domain_and_scheme_less_rootfs() {
        let mut d = valid();
        d.domain = String::new();
        d.rootfs = "cflinuxfs4".into();
        assert_eq!(
            desired_lrp(&d),
            Err("Invalid field: domain, Invalid field: rootfs".into())
        );
    }

    #[test]
    fn missing_action_is_invalid_action_type() {
        let mut d = valid();
        d.action = None;
        assert_eq!(desired_lrp(&d), Err("invalid action type".into()));
    }

    #[test]
    fn nested_action_errors_are_flattened() {
        let mut d = valid();
        d.action = Some(pb::Action {
            kind: Some(Kind::Serial(pb::ActionList {
                actions: vec![run(""), pb::Action { kind: None }],
                log_source: String::new(),
            })),
        });
        assert_eq!(
            desired_lrp(&d),
            Err(
                "Invalid field: action, Invalid field: action, Invalid field: path, Invalid field: action at index 1"
                    .into()
            )
        );
        d.action = Some(pb::Action { kind: None });
        assert_eq!(
            desired_lrp(&d),
            Err("Invalid field: action, Invalid field: inner-action".into())
        );
    }

    #[test]
    fn limits_and_ranges() {
        let mut d = valid();
        d.instances = -1;
        d.cpu_weight = 101;
        d.annotation = "a".repeat(ANNOTATION_BYTES_MAX + 1);
        d.routes.insert("cf-router".into(), "x".repeat(ROUTES_BYTES_MAX + 1));
        assert_eq!(
            desired_lrp(&d),
            Err(
                "Invalid field: instances, Invalid field: cpu_weight, Invalid field: annotation, Invalid field: routes"
                    .into()
            )
        );
        d = valid();
        d.annotation = "a".repeat(ANNOTATION_BYTES_MAX);
        assert_eq!(desired_lrp(&d), Ok(()));
    }

    #[test]
    fn egress_rules() {
        let mut d = valid();
        d.egress_rules = vec![pb::SecurityGroupRule {
            protocol: "tcp".into(),
            destinations: vec!["10.0.0.0/8".into()],
            ..Default::default()
        }];
        assert_eq!(
            desired_lrp(&d),
            Err("Invalid field: egress_rules, Missing required field: ports or port_range".into())
        );
        d.egress_rules[0].ports = vec![80];
        assert_eq!(desired_lrp(&d), Ok(()));
        d.egress_rules[0].protocol = "sctp".into();
        assert_eq!(
            desired_lrp(&d),
            Err("Invalid field: egress_rules, Invalid field: protocol".into())
        );
        d.egress_rules[0].protocol = "all".into();
        d.egress_rules[0].ports.clear();
        d.egress_rules[0].destinations = vec!["1.2.3.4-1.2.3.1".into()];
        assert_eq!(
            desired_lrp(&d),
            Err("Invalid field: egress_rules, Invalid field: destinations".into())
        );
    }

    #[test]
    fn update_rules() {
        assert_eq!(
            update(&pb::DesiredLrpUpdate {
                instances: Some(-1),
                annotation: Some("a".repeat(ANNOTATION_BYTES_MAX + 1)),
                ..Default::default()
            }),
            Err("Invalid field: instances, Invalid field: annotation".into())
        );
        assert_eq!(update(&pb::DesiredLrpUpdate::default()), Ok(()));
    }

    #[test]
    fn admission_refuses_control_characters_and_deep_routes() {
        let mut d = valid();
        assert!(admit_desired_lrp(&d).is_ok());
        d.domain = "cf\0apps".into();
        assert_eq!(admit_desired_lrp(&d), Err("Invalid field: domain".into()));
        d.domain = "cf-apps".into();
        let deep = format!(
            "{}{}",
            "[".repeat(ROUTE_JSON_DEPTH_MAX + 1),
            "]".repeat(ROUTE_JSON_DEPTH_MAX + 1)
        );
        d.routes.insert("r".into(), deep);
        assert_eq!(admit_desired_lrp(&d), Err("Invalid field: routes".into()));
        let update = pb::DesiredLrpUpdate {
            has_routes: true,
            routes: d.routes.clone(),
            ..Default::default()
        };
        assert_eq!(admit_update(&update), Err("Invalid field: routes".into()));
        assert!(!is_clean_name("a\u{7}b") && !is_clean_name("") && is_clean_name("z1"));
    }

    #[test]
    fn json_depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth(r#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(json_depth(r#"["[[[[", "\"[["]"#), 1);
    }
}
