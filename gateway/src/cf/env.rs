//! An app's environment variables (`GET|PATCH /v3/apps/:guid/environment_variables`), its whole
//! environment as CC reports it (`GET /v3/apps/:guid/env`), and the restart that takes a change
//! to the running instances (`POST /v3/apps/:guid/actions/restart`). The shapes are CC's
//! (`env.md` beside this file); the variables are secrets: the node answers them only to a caller who
//! may read the space's secrets (a developer or an admin; 403 for an auditor or supporter).

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use capstan_proto::pb::{self, CfKind};
use serde_json::{json, Map, Value};

use super::error::Answers;
use super::{object, present, request, Result};
use crate::common::extract::FamilyPath;
use crate::uaa::base_url;
use crate::Gateway;

/// CC's file-descriptor limit of an instance, as `VCAP_APPLICATION` reports it.
const FDS: u32 = 16_384;

fn vars(app: &pb::CfApp) -> Value {
    let m: Map<String, Value> = app
        .environment_variables
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Value::Object(m)
}

/// `{var, links}` as CC answers both the GET and the PATCH.
fn environment_variables(base: &str, app: &pb::CfApp) -> Value {
    let path = format!("/v3/apps/{}", app.guid);
    json!({
        "var": vars(app),
        "links": {
            "self": { "href": format!("{base}{path}/environment_variables") },
            "app": { "href": format!("{base}{path}") },
        }
    })
}

async fn app_environment(gw: &Gateway, guid: String) -> Result<pb::CfApp> {
    let req = pb::CfGetRequest {
        kind: CfKind::App as i32,
        guid,
        consistency: 0,
    };
    Ok(gw.cf.clone().get_app_environment(req).await?.into_inner())
}

#[utoipa::path(
    get, path = "/apps/{guid}/environment_variables", tag = "CF: apps", params(("guid" = String, Path)),
    responses((status = 200, description = "`{var, links}`: the app's environment variables (a developer's or an admin's to read)"), Answers)
)]
pub async fn get_environment_variables(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(guid): FamilyPath<String>,
) -> Result<Response> {
    let app = app_environment(&gw, guid).await?;
    Ok(Json(environment_variables(&base_url(&h), &app)).into_response())
}

#[utoipa::path(
    patch, path = "/apps/{guid}/environment_variables", tag = "CF: apps", params(("guid" = String, Path)),
    request_body(content = Object, description = "`{var: {NAME: value | null}}`: merged; null removes; names may not be PORT or start with VCAP_ or VMC"),
    responses((status = 200, description = "`{var, links}` after the merge; running instances get it on the app's next restart"), Answers)
)]
pub async fn update_environment_variables(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(guid): FamilyPath<String>,
    b: Body,
) -> Result<Response> {
    let o = object(b).await?;
    let req = request::env_patch(&o, &guid)?;
    let r = gw.cf.clone().update_resource(req).await?.into_inner();
    let Some(pb::cf_resource::Kind::App(app)) = r.kind else {
        return Err(super::error::CfError::not_found("App not found"));
    };
    Ok(Json(environment_variables(&base_url(&h), &app)).into_response())
}

#[utoipa::path(
    get, path = "/apps/{guid}/env", tag = "CF: apps", params(("guid" = String, Path)),
    responses((status = 200, description = "CC's environment document: `environment_variables`, `staging_env_json`, `running_env_json`, `system_env_json` (`VCAP_SERVICES`), `application_env_json` (`VCAP_APPLICATION`)"), Answers)
)]
pub async fn get_env(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(guid): FamilyPath<String>,
) -> Result<Response> {
    let app = app_environment(&gw, guid).await?;
    let name_of = |kind: CfKind, guid: String| {
        let gw = gw.clone();
        async move {
            let req = pb::CfGetRequest {
                kind: kind as i32,
                guid,
                consistency: pb::ReadConsistency::Stale as i32,
            };
            match gw.cf.clone().get_resource(req).await.map(|r| r.into_inner().kind) {
                Ok(Some(pb::cf_resource::Kind::Space(s))) => s.name,
                Ok(Some(pb::cf_resource::Kind::Organization(o))) => o.name,
                _ => String::new(),
            }
        }
    };
    let space_name = name_of(CfKind::Space, app.space_guid.clone()).await;
    let org_name = name_of(CfKind::Organization, app.organization_guid.clone()).await;
    let base = base_url(&h);
    let vcap_application = json!({
        "cf_api": base,
        "limits": { "fds": FDS },
        "application_name": app.name,
        "application_uris": [],
        "name": app.name,
        "space_name": space_name,
        "space_id": app.space_guid,
        "organization_id": app.organization_guid,
        "organization_name": org_name,
        "uris": [],
        "users": null,
        "application_id": app.guid,
    });
    Ok(Json(json!({
        "staging_env_json": {},
        "running_env_json": {},
        "environment_variables": vars(&app),
        "system_env_json": { "VCAP_SERVICES": {} },
        "application_env_json": { "VCAP_APPLICATION": vcap_application },
    }))
    .into_response())
}

#[utoipa::path(
    post, path = "/apps/{guid}/actions/restart", tag = "CF: apps", params(("guid" = String, Path)),
    responses((status = 200, body = present::App, description = "The app, STARTED: a started app's processes get new containers one index at a time"), Answers)
)]
pub async fn restart_app(
    State(gw): State<Gateway>,
    h: HeaderMap,
    FamilyPath(app_guid): FamilyPath<String>,
) -> Result<Response> {
    let req = pb::SetCfAppState {
        app_guid,
        started: true,
        restart: true,
    };
    let app = gw.cf.clone().set_app_state(req).await?.into_inner();
    Ok(Json(present::app(&base_url(&h), &app)).into_response())
}
