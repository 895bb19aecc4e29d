//! What a CF client (or any OAuth client) reads before its first call: the root document (`GET /`)
//! that points at this server (`GET /v3` is the CF family's own root), and UAA's token endpoints — `POST /oauth/token` (form
//! fields, client credentials in basic auth or the form), `POST /oauth/revoke` (RFC 7009 logout),
//! `GET /token_keys`, `GET /token_key` and `GET /login`. Tokens are issued by a node (one `Auth` call); errors are UAA's
//! `{error, error_description}`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64_like::decode_basic;
use capstan_proto::pb::{self, ErrorKind};
use serde_json::{json, Value};

use crate::common::body::{self, BodyError};
use crate::common::node_error::NodeError;
use crate::common::response::json_error;
use crate::Gateway;

pub fn routes() -> Router<Gateway> {
    Router::new()
        .route("/", get(root))
        .route("/login", get(login_info))
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .route("/token_keys", get(token_keys))
        .route("/token_key", get(token_key))
}

/// This server's base URL as the caller reached it.
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

#[utoipa::path(
    get, path = "/", tag = "Tokens (UAA)", description = "The CF root document: where the V3 API, login and UAA are.",
    responses((status = 200, body = Object))
)]
pub(crate) async fn root(headers: HeaderMap) -> Json<Value> {
    let base = base_url(&headers);
    let link = |href: String| json!({ "href": href });
    Json(json!({
        "links": {
            "self": link(base.clone()),
            "cloud_controller_v2": null,
            "cloud_controller_v3": { "href": format!("{base}/v3"), "meta": { "version": "3.180.0" } },
            "network_policy_v0": null,
            "network_policy_v1": null,
            "login": link(base.clone()),
            "uaa": link(base.clone()),
            "credhub": null,
            "routing": null,
            "logging": null,
            "log_cache": null,
            "log_stream": null,
            "app_ssh": null,
        }
    }))
}

/// UAA's `/login` info: what a login prompt asks for.
#[utoipa::path(
    get, path = "/login", tag = "Tokens (UAA)", description = "UAA's login info (what the cf CLI reads before it asks for a token).",
    responses((status = 200, body = Object))
)]
pub(crate) async fn login_info() -> Json<Value> {
    Json(json!({
        "app": { "version": env!("CARGO_PKG_VERSION") },
        "commit_id": "capstan",
        "prompts": { "username": ["text", "Username"], "password": ["password", "Password"] },
    }))
}

/// UAA's error body.
fn uaa_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_error(
        status,
        json!({ "error": error, "error_description": description }).to_string(),
        0,
    )
}

fn node_error(s: tonic::Status) -> Response {
    let e = NodeError::from(s);
    match e.kind {
        ErrorKind::Unauthenticated => uaa_error(StatusCode::UNAUTHORIZED, "unauthorized", &e.message),
        ErrorKind::InvalidToken => uaa_error(StatusCode::UNAUTHORIZED, "invalid_token", &e.message),
        ErrorKind::InvalidRequest if e.message.starts_with("Unsupported grant type") => {
            uaa_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", &e.message)
        }
        ErrorKind::InvalidRequest if e.message.starts_with("Invalid scope") => {
            uaa_error(StatusCode::BAD_REQUEST, "invalid_scope", &e.message)
        }
        ErrorKind::InvalidRequest => uaa_error(StatusCode::BAD_REQUEST, "invalid_request", &e.message),
        ErrorKind::Unavailable => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": "temporarily_unavailable", "error_description": e.message }).to_string(),
            e.retry_after_ms,
        ),
        _ => uaa_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.message),
    }
}

/// An OAuth form: its fields, with the client's credentials from HTTP basic auth when given there
/// (they win over `client_id`/`client_secret` fields).
async fn oauth_form(headers: &HeaderMap, body: Body) -> Result<std::collections::HashMap<String, String>, Response> {
    let bytes = match body::read(body).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return Err(uaa_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request is too large",
            ))
        }
        Err(e) => return Err(uaa_error(StatusCode::BAD_REQUEST, "invalid_request", &format!("{e:?}"))),
    };
    let mut form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let Some((id, secret)) = auth.to_str().ok().and_then(decode_basic) else {
            return Err(uaa_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "client credentials must be HTTP basic auth",
            ));
        };
        form.insert("client_id".into(), id);
        form.insert("client_secret".into(), secret);
    }
    Ok(form)
}

#[utoipa::path(
    post, path = "/oauth/token", tag = "Tokens (UAA)",
    description = "UAA's token endpoint: `grant_type=password` (username, password) or `refresh_token`, form-encoded; the client (`cf:`) in basic auth.",
    request_body(content_type = "application/x-www-form-urlencoded", content = Object),
    responses((status = 200, description = "access_token, refresh_token, token_type, expires_in, scope, jti", body = Object), (status = 400, description = "Bad request (`invalid_request`, `unsupported_grant_type`, `invalid_scope`)", body = Object), (status = 401, description = "Bad credentials", body = Object), (status = 413, body = Object), (status = 503, body = Object))
)]
pub(crate) async fn token(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    let mut form = match oauth_form(&headers, body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let mut take = |k: &str| form.remove(k).unwrap_or_default();
    let req = pb::IssueTokenRequest {
        grant_type: take("grant_type"),
        username: take("username"),
        password: take("password"),
        client_id: take("client_id"),
        client_secret: take("client_secret"),
        refresh_token: take("refresh_token"),
        scope: take("scope"),
    };
    match gw.auth.clone().issue_token(req).await {
        Ok(r) => {
            let t = r.into_inner();
            let mut resp = Json(json!({
                "access_token": t.access_token,
                "token_type": t.token_type,
                "refresh_token": t.refresh_token,
                "expires_in": t.expires_in,
                "scope": t.scope,
                "jti": t.jti,
            }))
            .into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
            resp
        }
        Err(s) => node_error(s),
    }
}

/// RFC 7009 revocation (logout): 200 with an empty body, also for a token that was not valid.
#[utoipa::path(
    post, path = "/oauth/revoke", tag = "Tokens (UAA)", description = "Revokes a token (form field `token`); every node refuses it once applied.",
    request_body(content_type = "application/x-www-form-urlencoded", content = Object),
    responses((status = 200, description = "Revoked"), (status = 400, description = "Bad request (`invalid_request`, `unsupported_grant_type`, `invalid_scope`)", body = Object), (status = 401, description = "Bad credentials", body = Object), (status = 413, body = Object), (status = 503, body = Object))
)]
pub(crate) async fn revoke(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    let mut form = match oauth_form(&headers, body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let mut take = |k: &str| form.remove(k).unwrap_or_default();
    let req = pb::RevokeTokenRequest {
        token: take("token"),
        client_id: take("client_id"),
        client_secret: take("client_secret"),
    };
    if req.token.is_empty() {
        return uaa_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a token is required (token)",
        );
    }
    match gw.auth.clone().revoke_token(req).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(s) => node_error(s),
    }
}

fn jwk(k: &pb::TokenKey) -> Value {
    json!({
        "kty": k.kty, "alg": k.alg, "use": k.r#use, "kid": k.kid,
        "crv": k.crv, "x": k.x, "y": k.y, "value": k.value,
    })
}

#[utoipa::path(
    get, path = "/token_keys", tag = "Tokens (UAA)", description = "The keys that verify tokens, as JWKs.",
    responses((status = 200, body = Object), (status = 503, body = Object))
)]
pub(crate) async fn token_keys(State(gw): State<Gateway>) -> Response {
    match gw.auth.clone().token_keys(pb::TokenKeysRequest {}).await {
        Ok(r) => Json(json!({ "keys": r.into_inner().keys.iter().map(jwk).collect::<Vec<_>>() })).into_response(),
        Err(s) => node_error(s),
    }
}

/// The key new tokens are signed with.
#[utoipa::path(
    get, path = "/token_key", tag = "Tokens (UAA)", description = "The signing key, as a JWK.",
    responses((status = 200, body = Object), (status = 404, body = Object), (status = 503, body = Object))
)]
pub(crate) async fn token_key(State(gw): State<Gateway>) -> Response {
    match gw.auth.clone().token_keys(pb::TokenKeysRequest {}).await {
        Ok(r) => match r.into_inner().keys.first() {
            Some(k) => Json(jwk(k)).into_response(),
            None => uaa_error(StatusCode::NOT_FOUND, "not_found", "no key"),
        },
        Err(s) => node_error(s),
    }
}

/// HTTP basic credentials, form-decoded as OAuth 2 clients encode them (RFC 6749 §2.3.1).
mod base64_like {
    use base64::Engine as _;

    pub fn decode_basic(header: &str) -> Option<(String, String)> {
        let (scheme, rest) = header.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (id, secret) = text.split_once(':')?;
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        Some((dec(id)?, dec(secret)?))
    }
}
