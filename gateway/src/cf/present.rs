//! CF V3 JSON as the presenters write it (spec §2, §3, §4.1): organizations, spaces, apps,
//! processes, stats, process instances, jobs, and paginated lists with links that resolve.

use capstan_proto::pb;
use serde_json::{json, Map, Value};

/// `YYYY-MM-DDThh:mm:ssZ` (whole seconds, UTC).
pub fn timestamp(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// `now` as `usage.time` (RFC 3339 with `+00:00`).
fn usage_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())
        .unwrap_or_default()
}

fn href(base: &str, path: &str) -> Value {
    json!({ "href": format!("{base}{path}") })
}

fn post(base: &str, path: &str) -> Value {
    json!({ "href": format!("{base}{path}"), "method": "POST" })
}

/// Keys as written (`prefix/name`, or `name` without a prefix).
pub fn metadata(m: &Option<pb::CfMetadata>) -> Value {
    let m = m.clone().unwrap_or_default();
    json!({ "labels": m.labels, "annotations": m.annotations })
}

pub fn organization(base: &str, o: &pb::CfOrganization) -> Value {
    json!({
        "guid": o.guid,
        "created_at": timestamp(o.created_at),
        "updated_at": timestamp(o.updated_at),
        "name": o.name,
        "suspended": false,
        "relationships": { "quota": { "data": null } },
        "metadata": metadata(&o.metadata),
        "links": {
            "self": href(base, &format!("/v3/organizations/{}", o.guid)),
            "spaces": href(base, &format!("/v3/spaces?organization_guids={}", o.guid)),
        },
    })
}

pub fn space(base: &str, s: &pb::CfSpace) -> Value {
    json!({
        "guid": s.guid,
        "created_at": timestamp(s.created_at),
        "updated_at": timestamp(s.updated_at),
        "name": s.name,
        "relationships": {
            "organization": { "data": { "guid": s.organization_guid } },
            "quota": { "data": null },
        },
        "metadata": metadata(&s.metadata),
        "links": {
            "self": href(base, &format!("/v3/spaces/{}", s.guid)),
            "organization": href(base, &format!("/v3/organizations/{}", s.organization_guid)),
            "apps": href(base, &format!("/v3/apps?space_guids={}", s.guid)),
            "apply_manifest": post(base, &format!("/v3/spaces/{}/actions/apply_manifest", s.guid)),
        },
    })
}

pub fn app(base: &str, a: &pb::CfApp) -> Value {
    let state = if a.state == pb::CfAppState::Started as i32 {
        "STARTED"
    } else {
        "STOPPED"
    };
    let lifecycle = if a.docker_image.is_empty() {
        json!({ "type": "buildpack", "data": { "buildpacks": [], "stack": "cflinuxfs4" } })
    } else {
        json!({ "type": "docker", "data": {} })
    };
    let path = format!("/v3/apps/{}", a.guid);
    json!({
        "guid": a.guid,
        "name": a.name,
        "state": state,
        "created_at": timestamp(a.created_at),
        "updated_at": timestamp(a.updated_at),
        "lifecycle": lifecycle,
        "relationships": { "space": { "data": { "guid": a.space_guid } } },
        "metadata": metadata(&a.metadata),
        "links": {
            "self": href(base, &path),
            "space": href(base, &format!("/v3/spaces/{}", a.space_guid)),
            "processes": href(base, &format!("{path}/processes")),
            "start": post(base, &format!("{path}/actions/start")),
            "stop": post(base, &format!("{path}/actions/stop")),
        },
    })
}

fn optional_int(v: Option<i32>) -> Value {
    v.map_or(Value::Null, Value::from)
}

fn health_check(hc: &Option<pb::CfHealthCheck>, readiness: bool) -> Value {
    let hc = hc.clone().unwrap_or_default();
    let mut data = Map::new();
    if !readiness {
        data.insert("timeout".into(), optional_int(hc.timeout));
    }
    data.insert("invocation_timeout".into(), optional_int(hc.invocation_timeout));
    data.insert("interval".into(), optional_int(hc.interval));
    if hc.r#type == "http" {
        data.insert("endpoint".into(), Value::from(hc.endpoint));
    }
    json!({ "type": hc.r#type, "data": data })
}

/// The process object; `instances` is its `process_instances` array when embedded.
pub fn process(base: &str, p: &pb::CfProcess, embedded: Option<&[pb::CfInstanceStats]>, now_ns: i64) -> Value {
    let path = format!("/v3/processes/{}", p.guid);
    let mut o = Map::new();
    o.insert("guid".into(), json!(p.guid));
    o.insert("created_at".into(), json!(timestamp(p.created_at)));
    o.insert("updated_at".into(), json!(timestamp(p.updated_at)));
    o.insert("version".into(), json!(p.version));
    o.insert("type".into(), json!(p.r#type));
    o.insert("command".into(), json!(p.command));
    o.insert(
        "user".into(),
        json!(if p.user.is_empty() { "vcap" } else { p.user.as_str() }),
    );
    o.insert("instances".into(), json!(p.instances));
    o.insert("memory_in_mb".into(), json!(p.memory_in_mb));
    o.insert("disk_in_mb".into(), json!(p.disk_in_mb));
    o.insert(
        "log_rate_limit_in_bytes_per_second".into(),
        json!(p.log_rate_limit_in_bytes_per_second),
    );
    o.insert("health_check".into(), health_check(&p.health_check, false));
    o.insert(
        "readiness_health_check".into(),
        health_check(&p.readiness_health_check, true),
    );
    if let Some(instances) = embedded {
        o.insert("process_instances".into(), process_instances(instances, now_ns));
    }
    o.insert(
        "relationships".into(),
        json!({ "app": { "data": { "guid": p.app_guid } }, "revision": null }),
    );
    o.insert("metadata".into(), metadata(&p.metadata));
    o.insert(
        "links".into(),
        json!({
            "self": href(base, &path),
            "scale": post(base, &format!("{path}/actions/scale")),
            "app": href(base, &format!("/v3/apps/{}", p.app_guid)),
            "space": href(base, &format!("/v3/spaces/{}", p.space_guid)),
            "stats": href(base, &format!("{path}/stats")),
            "process_instances": href(base, &format!("{path}/process_instances")),
        }),
    );
    Value::Object(o)
}

/// `[{index, state, since}]` (§3.3): `since` null for an index with nothing behind it.
pub fn process_instances(instances: &[pb::CfInstanceStats], _now_ns: i64) -> Value {
    Value::Array(
        instances
            .iter()
            .map(|i| json!({ "index": i.index, "state": i.state, "since": if i.found { json!(i.uptime) } else { Value::Null } }))
            .collect(),
    )
}

/// One stats object per instance index (§3.1); `unavailable` when a cell could not be asked.
pub fn stats(s: &pb::CfProcessStats, now_ns: i64) -> Value {
    let p = s.process.clone().unwrap_or_default();
    const MIB: i64 = 1024 * 1024;
    let resources: Vec<Value> = s
        .instances
        .iter()
        .map(|i| {
            if !i.found {
                return json!({
                    "type": p.r#type, "index": i.index, "state": i.state, "routable": null,
                    "uptime": 0, "isolation_segment": null, "details": null,
                });
            }
            let usage = match (&i.usage, s.usage_unavailable) {
                (Some(u), _) => json!({
                    "time": usage_time(u.time_unix_ns), "cpu": u.cpu, "cpu_entitlement": null,
                    "mem": u.mem_bytes, "disk": u.disk_bytes, "log_rate": 0,
                }),
                (None, true) => json!({}),
                (None, false) => json!({
                    "time": usage_time(now_ns), "cpu": 0, "cpu_entitlement": null, "mem": 0, "disk": 0, "log_rate": 0,
                }),
            };
            let quota = |v: i64| {
                if s.usage_unavailable && i.usage.is_none() {
                    Value::Null
                } else {
                    json!(v)
                }
            };
            json!({
                "type": p.r#type,
                "index": i.index,
                "instance_guid": i.instance_guid,
                "state": i.state,
                "routable": null,
                "host": i.host,
                "instance_internal_ip": i.host,
                "uptime": i.uptime,
                "mem_quota": quota(i64::from(p.memory_in_mb) * MIB),
                "disk_quota": quota(i64::from(p.disk_in_mb) * MIB),
                "log_rate_limit": quota(p.log_rate_limit_in_bytes_per_second),
                "fds_quota": 16384,
                "isolation_segment": null,
                "details": if i.details.is_empty() { Value::Null } else { json!(i.details) },
                "instance_ports": i.ports.iter().map(|m| json!({
                    "external": m.host_port, "internal": m.container_port,
                    "external_tls_proxy_port": null, "internal_tls_proxy_port": null,
                })).collect::<Vec<_>>(),
                "usage": usage,
            })
        })
        .collect();
    json!({ "resources": resources })
}

pub fn job(base: &str, j: &pb::CfJob) -> Value {
    let errors: Vec<Value> = j
        .errors
        .iter()
        .map(|e| json!({ "code": e.code, "title": e.title, "detail": e.detail }))
        .collect();
    let mut links = Map::new();
    links.insert("self".into(), href(base, &format!("/v3/jobs/{}", j.guid)));
    if j.operation.ends_with("apply_manifest") {
        links.insert("space".into(), href(base, &format!("/v3/spaces/{}", j.resource_guid)));
    }
    json!({
        "guid": j.guid,
        "created_at": timestamp(j.created_at),
        "updated_at": timestamp(j.updated_at),
        "operation": j.operation,
        "state": j.state,
        "errors": errors,
        "warnings": [],
        "links": links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_whole_utc_seconds() {
        assert_eq!(timestamp(1_577_836_800_999_999_999), "2020-01-01T00:00:00Z");
        assert_eq!(usage_time(1_577_836_800_000_000_000), "2020-01-01T00:00:00+00:00");
    }

    #[test]
    fn a_process_has_cf_keys_and_an_http_endpoint_only_for_http() {
        let p = pb::CfProcess {
            guid: "g".into(),
            r#type: "web".into(),
            health_check: Some(pb::CfHealthCheck {
                r#type: "port".into(),
                endpoint: "/x".into(),
                ..Default::default()
            }),
            readiness_health_check: Some(pb::CfHealthCheck {
                r#type: "http".into(),
                endpoint: "/ready".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = process("http://h", &p, None, 0);
        assert_eq!(
            v["health_check"]["data"],
            json!({"timeout": null, "invocation_timeout": null, "interval": null})
        );
        assert_eq!(v["readiness_health_check"]["data"]["endpoint"], "/ready");
        assert!(v["readiness_health_check"]["data"].get("timeout").is_none());
        assert_eq!(v["relationships"]["revision"], Value::Null);
        assert_eq!(v["links"]["scale"]["method"], "POST");
        assert_eq!(v["user"], "vcap");
    }
}
