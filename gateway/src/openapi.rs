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
