//! The API document: OpenAPI 3.1 generated from the handlers' `#[utoipa::path]` annotations and
//! the request/response types' `ToSchema` derives (no hand-kept YAML), each family nested under
//! its prefix. Served at `GET /openapi.json`, rendered at `/docs` by Swagger UI (vendored into the
//! binary at build time: no network at run time). `tests/openapi.rs` fails when a served route is
//! not documented, or a documented one not served.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, SecurityRequirement};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::Gateway;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Capstan",
        description = "One replicated state behind three API families: Diego's Receptor LRP and task API (`/v1`), \
            Flotilla's task API (`/api/v1`, `/api/v6`) and Cloud Foundry's V3 processes (`/v3`); tokens as UAA \
            serves them; probes and metrics. Every route maps onto one gRPC call to a node. With auth on, send \
            `Authorization: Bearer <token>` (from `POST /oauth/token`) or, on Receptor's routes, basic auth.",
        license(name = "Apache-2.0"),
    ),
    paths(
        crate::health::healthz,
        crate::health::readyz,
        crate::metrics::scrape,
        crate::uaa::root,
        crate::uaa::login_info,
        crate::uaa::token,
        crate::uaa::revoke,
        crate::uaa::token_keys,
        crate::uaa::token_key,
    ),
    nest(
        (path = "/v1", api = crate::receptor::Api),
        (path = "/api/v1", api = crate::flotilla::Api),
        (path = "/api/v6", api = crate::flotilla::Api),
        (path = "/v3", api = crate::cf::Api),
    ),
    components(schemas(
        crate::receptor::error::ReceptorError,
        crate::flotilla::error::ErrorBody,
        crate::cf::error::Errors,
        crate::cf::error::ErrorItem,
    )),
    modifiers(&Credentials),
)]
struct ApiDoc;

/// The schemes a caller may authenticate with; none is needed with auth off.
struct Credentials;

impl utoipa::Modify for Credentials {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        doc.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("basic", Vec::<String>::new()),
        ]);
    }
}

/// The whole document. A family nested under two prefixes (Flotilla's `/api/v1` and `/api/v6`)
/// gets its operation ids made unique by the prefix.
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    // A family's root (`/` nested under `/v3`) is served at `/v3`, without the slash.
    let roots: Vec<String> = doc
        .paths
        .paths
        .keys()
        .filter(|p| p.len() > 1 && p.ends_with('/'))
        .cloned()
        .collect();
    for root in roots {
        if let Some(item) = doc.paths.paths.shift_remove(&root) {
            doc.paths.paths.insert(root.trim_end_matches('/').to_owned(), item);
        }
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let Some(version) = path.strip_prefix("/api/").and_then(|p| p.split('/').next()) else {
            continue;
        };
        for op in operations(item) {
            if let Some(id) = op.operation_id.as_mut() {
                *id = format!("flotilla_{version}_{id}");
            }
        }
    }
    doc
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// `GET /openapi.json` and the rendered docs under `/docs`.
pub fn routes() -> axum::Router<Gateway> {
    SwaggerUi::new("/docs").url("/openapi.json", document()).into()
}

#[cfg(test)]
mod tests {
    use capstan_proto::pb;
    use serde_json::{json, Value};

    use super::document;
    use crate::cf::present;

    /// Whether `v` is what `schema` describes, strictly: a key an object's `properties` do not
    /// name is refused too (a field written but not documented).
    fn conforms(v: &Value, schema: &Value, doc: &Value, at: &str) -> Result<(), String> {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/components/schemas/");
            let target = &doc["components"]["schemas"][name];
            if target.is_null() {
                return Err(format!("{at}: {r} does not resolve"));
            }
            return conforms(v, target, doc, at);
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array) {
                if !options.iter().any(|s| conforms(v, s, doc, at).is_ok()) {
                    return Err(format!("{at}: {v} matches none of {key}"));
                }
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                conforms(v, s, doc, at)?;
            }
        }
        if let Some(ty) = schema.get("type") {
            let types: Vec<&str> = match ty {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let fits = |t: &str| match t {
                "null" => v.is_null(),
                "boolean" => v.is_boolean(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "string" => v.is_string(),
                "array" => v.is_array(),
                "object" => v.is_object(),
                _ => false,
            };
            if !types.iter().any(|t| fits(t)) {
                return Err(format!("{at}: {v} is not {ty}"));
            }
        }
        if let (Some(o), Some(props)) = (v.as_object(), schema.get("properties").and_then(Value::as_object)) {
            for (k, field) in o {
                match props.get(k) {
                    Some(s) => conforms(field, s, doc, &format!("{at}.{k}"))?,
                    None => return Err(format!("{at}: key {k} is not documented")),
                }
            }
            for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let name = r.as_str().unwrap_or_default();
                if !o.contains_key(name) {
                    return Err(format!("{at}: required key {name} is missing"));
                }
            }
        }
        if let (Some(o), Some(extra)) = (v.as_object(), schema.get("additionalProperties")) {
            if extra.is_object() {
                for (k, field) in o {
                    conforms(field, extra, doc, &format!("{at}.{k}"))?;
                }
            }
        }
        if let (Some(items), Some(schema)) = (v.as_array(), schema.get("items")) {
            for (i, item) in items.iter().enumerate() {
                conforms(item, schema, doc, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }

    fn check(name: &str, v: impl serde::Serialize) {
        let doc = serde_json::to_value(document()).expect("document");
        let v = serde_json::to_value(v).expect("value");
        let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
        if let Err(e) = conforms(&v, &schema, &doc, name) {
            panic!("{e}\nvalue: {v}");
        }
    }

    fn instance(found: bool, usage: Option<pb::CfUsage>) -> pb::CfInstanceStats {
        pb::CfInstanceStats {
            index: 1,
            instance_guid: "i-1".into(),
            state: if found { "RUNNING" } else { "DOWN" }.into(),
            host: "10.0.0.5".into(),
            ports: vec![pb::PortMapping {
                container_port: 8080,
                host_port: 61001,
            }],
            uptime: 42,
            details: String::new(),
            usage,
            found,
        }
    }

    #[test]
    fn the_cf_presenters_write_what_the_document_says() {
        let process = pb::CfProcess {
            guid: "p".into(),
            r#type: "web".into(),
            health_check: Some(pb::CfHealthCheck {
                r#type: "http".into(),
                endpoint: "/health".into(),
                timeout: Some(60),
                ..Default::default()
            }),
            metadata: Some(pb::CfMetadata {
                labels: [("env".to_owned(), "prod".to_owned())].into(),
                annotations: Default::default(),
            }),
            ..Default::default()
        };
        let usage = pb::CfUsage {
            time_unix_ns: 1,
            cpu: 0.25,
            mem_bytes: 1024,
            disk_bytes: 2048,
        };
        let instances = [instance(true, Some(usage)), instance(false, None)];
        check("Process", present::process("http://h", &process, None, 0));
        check("Process", present::process("http://h", &process, Some(&instances), 0));
        let metadata = process.metadata.clone();
        check(
            "Organization",
            present::organization(
                "http://h",
                &pb::CfOrganization {
                    guid: "o".into(),
                    name: "org".into(),
                    metadata: metadata.clone(),
                    ..Default::default()
                },
            ),
        );
        check(
            "Space",
            present::space(
                "http://h",
                &pb::CfSpace {
                    guid: "s".into(),
                    organization_guid: "o".into(),
                    ..Default::default()
                },
            ),
        );
        for docker_image in ["", "busybox"] {
            let app = pb::CfApp {
                guid: "a".into(),
                docker_image: docker_image.into(),
                ..Default::default()
            };
            check("App", present::app("http://h", &app));
        }
        let failed = pb::CfJob {
            guid: "j".into(),
            operation: "space.apply_manifest".into(),
            state: "FAILED".into(),
            errors: vec![pb::CfJobError {
                code: 10008,
                title: "CF-UnprocessableEntity".into(),
                detail: "no".into(),
            }],
            ..Default::default()
        };
        check("Job", present::job("http://h", &failed));
        for unavailable in [false, true] {
            let stats = pb::CfProcessStats {
                process: Some(process.clone()),
                instances: vec![instance(true, Some(usage)), instance(true, None), instance(false, None)],
                usage_unavailable: unavailable,
            };
            check("Stats", crate::cf::stats::stats(&stats, 0));
        }
    }

    #[test]
    fn the_receptor_and_flotilla_records_are_what_the_document_says() {
        use crate::receptor::dto::{ActualLrpResponse, DesiredLrpResponse};
        let run = |path: &str| pb::Action {
            kind: Some(pb::action::Kind::Run(pb::RunAction {
                path: path.into(),
                args: vec!["-c".into(), "sleep 1".into()],
                ..Default::default()
            })),
        };
        let serial = pb::Action {
            kind: Some(pb::action::Kind::Serial(pb::ActionList {
                actions: vec![run("sh"), run("true")],
                ..Default::default()
            })),
        };
        let desired = pb::DesiredLrp {
            process_guid: "web".into(),
            domain: "d".into(),
            instances: 2,
            action: Some(serial),
            ports: vec![8080],
            routes: [(
                "cf-router".to_owned(),
                r#"[{"hostnames":["a"],"port":8080}]"#.to_owned(),
            )]
            .into(),
            modification_tag: Some(Default::default()),
            ..Default::default()
        };
        check("DesiredLrpResponse", DesiredLrpResponse::from(desired));
        let actual = pb::ActualLrp {
            process_guid: "web".into(),
            index: 1,
            state: pb::ActualLrpState::Running as i32,
            ports: vec![pb::PortMapping {
                container_port: 8080,
                host_port: 61000,
            }],
            ..Default::default()
        };
        check("ActualLrpResponse", ActualLrpResponse::from(actual));
        let definition = pb::TaskDefinition {
            definition_id: "d-1".into(),
            alias: "hello".into(),
            ..Default::default()
        };
        check("Definition", crate::flotilla::dto::Definition::from(definition));
        let run = pb::TaskRun {
            run_id: "r-1".into(),
            status: pb::TaskRunStatus::Stopped as i32,
            exit_code: Some(3),
            ..Default::default()
        };
        check("Run", crate::flotilla::dto::Run::from(run));
    }

    #[test]
    fn the_checker_refuses_what_the_document_does_not_say() {
        let doc = serde_json::to_value(document()).expect("document");
        let schema = json!({ "$ref": "#/components/schemas/InstanceState" });
        let ok = json!({"index": 0, "state": "RUNNING", "since": null});
        assert!(conforms(&ok, &schema, &doc, "t").is_ok());
        for bad in [
            json!({"index": 0, "state": "RUNNING", "since": null, "extra": 1}),
            json!({"index": "0", "state": "RUNNING", "since": 1}),
            json!({"state": "RUNNING", "since": 1}),
        ] {
            assert!(conforms(&bad, &schema, &doc, "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_error_shapes_are_what_the_document_says() {
        use axum::http::StatusCode;
        check(
            "ReceptorError",
            crate::receptor::error::ReceptorError::new(StatusCode::NOT_FOUND, "DesiredLRPNotFound", "gone"),
        );
        check(
            "FlotillaError",
            crate::flotilla::error::ErrorBody { error: "bad".into() },
        );
        let cf: Value = serde_json::from_str(&crate::cf::error::CfError::not_found("Process").body()).expect("json");
        check("CfErrors", cf);
    }
}
