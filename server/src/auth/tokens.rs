//! Issuing and checking tokens: UAA's grants (password, client_credentials, refresh_token) over
//! the users and clients of the config, ES256 JWTs with a `kid`, and the check every call makes.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use capstan_proto::pb;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::config::{AuthSettings, Grant, Principal};
use super::scopes::Scope;

/// `aud` of every token: this cluster's API.
const AUDIENCE: &str = "capstan";

/// The claims of a Capstan token (UAA's names where UAA has one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub jti: String,
    pub sub: String,
    pub iss: String,
    pub aud: Vec<String>,
    pub iat: u64,
    pub exp: u64,
    pub scope: Vec<String>,
    pub client_id: String,
    pub cid: String,
    pub grant_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// A refresh token: good only for the refresh grant, never for an API call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh: bool,
}

/// Why a token request was refused; each becomes UAA's `{error, error_description}`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Unknown user, wrong password, unknown client, wrong secret: one answer for all of them.
    #[error("Bad credentials")]
    BadCredentials,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("Unsupported grant type: {0}")]
    UnsupportedGrant(String),
    #[error("{0}")]
    InvalidToken(String),
}

/// Why a bearer token does not authenticate a call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BearerError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

/// Answers whether a token id was revoked (the replicated revocations; set once the node runs).
pub type RevocationCheck = Box<dyn Fn(&str) -> bool + Send + Sync>;

pub struct Issuer {
    settings: AuthSettings,
    revoked: OnceLock<RevocationCheck>,
}

fn now_s() -> u64 {
    u64::try_from(capstan_client::clock::unix_now_ns() / 1_000_000_000).unwrap_or_default()
}

/// A hash that no password matches, checked for an unknown name so that it costs what a wrong
/// password costs (the answer must not tell the two apart, in content or in time).
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

/// An argon2id PHC string of `password` with a random salt (`capstan auth hash-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `secret` matches the PHC string (`None`: the decoy, never matches).
pub fn verify_secret(phc: Option<&str>, secret: &str) -> bool {
    let matched = PasswordHash::new(phc.unwrap_or_else(|| decoy_hash()))
        .map(|h| Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
        .unwrap_or(false);
    matched && phc.is_some()
}

impl Issuer {
    pub fn new(settings: AuthSettings) -> Self {
        Self {
            settings,
            revoked: OnceLock::new(),
        }
    }

    /// Where revocations are looked up from now on (the node's views).
    pub fn watch_revocations(&self, check: RevocationCheck) {
        let _ = self.revoked.set(check);
    }

    /// The client a token was issued to, checked like the token grant checks it (auth on).
    pub fn check_client_of(&self, claims: &Claims, client_id: &str, secret: &str) -> Result<(), TokenError> {
        if !self.settings.enabled {
            return Ok(());
        }
        let id = if client_id.is_empty() { "cf" } else { client_id };
        self.check_client(id, secret)?;
        if claims.client_id != id {
            return Err(TokenError::InvalidToken(
                "the token was issued to another client".into(),
            ));
        }
        Ok(())
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// The public keys for `/token_keys`.
    pub fn token_keys(&self) -> pb::TokenKeysResponse {
        pb::TokenKeysResponse {
            keys: self.settings.keys.iter().map(|k| k.jwk()).collect(),
        }
    }

    /// Checks a user's name and password; the user's scopes when they match.
    pub fn check_user(&self, name: &str, password: &str) -> Option<Vec<Scope>> {
        let user = self.settings.users.iter().find(|u| u.name == name);
        verify_secret(user.and_then(|u| u.hash.as_deref()), password)
            .then(|| user.map(|u| u.scopes.clone()))
            .flatten()
    }

    fn check_client(&self, id: &str, secret: &str) -> Result<&Principal, TokenError> {
        let client = self.settings.clients.iter().find(|c| c.name == id);
        match client {
            // A public client presents an empty secret.
            Some(c) if c.hash.is_none() => secret.is_empty().then_some(c).ok_or(TokenError::BadCredentials),
            Some(c) => verify_secret(c.hash.as_deref(), secret)
                .then_some(c)
                .ok_or(TokenError::BadCredentials),
            None => {
                let _ = verify_secret(None, secret);
                Err(TokenError::BadCredentials)
            }
        }
    }

    /// UAA's token grant. With auth off, any user and client are accepted and get every scope
    /// (CF clients always log in first).
    pub fn issue(&self, req: &pb::IssueTokenRequest) -> Result<pb::IssueTokenResponse, TokenError> {
        let grant = Grant::parse(&req.grant_type).ok_or_else(|| {
            if req.grant_type.is_empty() {
                TokenError::InvalidRequest("A grant type is required (grant_type)".into())
            } else {
                TokenError::UnsupportedGrant(req.grant_type.clone())
            }
        })?;
        let client_id = if req.client_id.is_empty() {
            "cf"
        } else {
            req.client_id.as_str()
        };
        let enabled = self.settings.enabled;
        let client_scopes = if enabled {
            let client = self.check_client(client_id, &req.client_secret)?;
            if !client.grants.contains(&grant) {
                return Err(TokenError::InvalidRequest(format!(
                    "Unauthorized grant type: {}",
                    req.grant_type
                )));
            }
            client.scopes.clone()
        } else {
            Scope::ALL.to_vec()
        };
        let (user, held) = match grant {
            Grant::Password => {
                if req.username.is_empty() {
                    return Err(TokenError::InvalidRequest("A username is required (username)".into()));
                }
                let scopes = if enabled {
                    let scopes = self
                        .check_user(&req.username, &req.password)
                        .ok_or(TokenError::BadCredentials)?;
                    // A client with scopes listed narrows its users' tokens to them.
                    if self
                        .settings
                        .clients
                        .iter()
                        .any(|c| c.name == client_id && !c.scopes.is_empty())
                    {
                        scopes
                            .into_iter()
                            .filter(|s| client_scopes.iter().any(|c| c.grants(*s)))
                            .collect()
                    } else {
                        scopes
                    }
                } else {
                    Scope::ALL.to_vec()
                };
                (Some(req.username.clone()), scopes)
            }
            Grant::ClientCredentials => (None, client_scopes),
            Grant::RefreshToken => {
                let claims = self
                    .decode(&req.refresh_token)
                    .map_err(|e| TokenError::InvalidToken(e.to_string()))?;
                if !claims.refresh || claims.client_id != client_id {
                    return Err(TokenError::InvalidToken(
                        "not a refresh token issued to this client".into(),
                    ));
                }
                // The user's scopes as configured now, not as they were: a removed user or scope
                // stops refreshing.
                let scopes: Vec<Scope> = claims.scope.iter().filter_map(|s| Scope::parse(s)).collect();
                let scopes = match (&claims.user_name, enabled) {
                    (Some(u), true) => {
                        let now: Vec<Scope> = self
                            .settings
                            .users
                            .iter()
                            .find(|p| &p.name == u)
                            .map(|p| p.scopes.clone())
                            .ok_or_else(|| TokenError::InvalidToken("the user no longer exists".into()))?;
                        scopes.into_iter().filter(|s| now.contains(s)).collect()
                    }
                    _ => scopes,
                };
                (claims.user_name, scopes)
            }
        };
        let scopes = narrow(held, &req.scope)?;
        self.sign_pair(client_id, &req.grant_type, user, &scopes)
    }

    fn sign_pair(
        &self,
        client_id: &str,
        grant_type: &str,
        user: Option<String>,
        scopes: &[Scope],
    ) -> Result<pb::IssueTokenResponse, TokenError> {
        let now = now_s();
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let mut claims = Claims {
            jti: jti.clone(),
            sub: user.clone().unwrap_or_else(|| client_id.to_owned()),
            iss: self.settings.issuer.clone(),
            aud: vec![AUDIENCE.to_owned()],
            iat: now,
            exp: now + self.settings.access_token_ttl_s,
            scope: scopes.iter().map(|s| s.name().to_owned()).collect(),
            client_id: client_id.to_owned(),
            cid: client_id.to_owned(),
            grant_type: grant_type.to_owned(),
            user_name: user,
            refresh: false,
        };
        let access_token = self.sign(&claims)?;
        claims.jti = format!("{jti}-r");
        claims.exp = now + self.settings.refresh_token_ttl_s;
        claims.refresh = true;
        let refresh_token = self.sign(&claims)?;
        Ok(pb::IssueTokenResponse {
            access_token,
            token_type: "bearer".into(),
            expires_in: self.settings.access_token_ttl_s,
            scope: scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(" "),
            jti,
            refresh_token,
        })
    }

    /// Signs claims with the current signing key (tests sign expired or foreign tokens with it).
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let key = self
            .settings
            .keys
            .first()
            .ok_or_else(|| TokenError::InvalidRequest("no signing key".into()))?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| TokenError::InvalidRequest(e.to_string()))
    }

    /// Checks signature (by `kid`, ES256 only), expiry, audience; the claims when it holds.
    pub fn decode(&self, token: &str) -> Result<Claims, BearerError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| BearerError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::ES256 {
            return Err(BearerError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header.kid.ok_or_else(|| BearerError::Invalid("no kid".into()))?;
        let key = self
            .settings
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| BearerError::Invalid("signed by an unknown key".into()))?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => BearerError::Expired,
                _ => BearerError::Invalid(e.to_string()),
            })?;
        if self.revoked.get().is_some_and(|is_revoked| is_revoked(&claims.jti)) {
            return Err(BearerError::Invalid("the token was revoked".into()));
        }
        Ok(claims)
    }

    /// The scopes an access token grants for an API call.
    pub fn check_bearer(&self, token: &str) -> Result<(Option<String>, Vec<Scope>), BearerError> {
        let claims = self.decode(token)?;
        if claims.refresh {
            return Err(BearerError::Invalid("a refresh token is not an access token".into()));
        }
        let mut scopes: Vec<Scope> = claims.scope.iter().filter_map(|s| Scope::parse(s)).collect();
        // A CF user's token is a CF token, also one signed before the user was given roles.
        let cf_user = claims.user_name.as_deref().is_some_and(|u| {
            self.settings
                .users
                .iter()
                .any(|p| p.name == u && !p.cf_roles.is_empty())
        });
        if cf_user {
            scopes = scopes.into_iter().map(Scope::as_cf).collect();
        }
        Ok((claims.user_name, scopes))
    }
}

/// The requested scopes (space-separated), each of which must be held; none requested = all held.
fn narrow(held: Vec<Scope>, requested: &str) -> Result<Vec<Scope>, TokenError> {
    let mut out = Vec::new();
    for name in requested.split_whitespace() {
        match Scope::parse(name) {
            Some(s) if held.contains(&s) => out.push(s),
            _ => return Err(TokenError::InvalidRequest(format!("Invalid scope: {name}"))),
        }
    }
    if requested.split_whitespace().next().is_none() {
        out = held;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config::AuthConfig;

    fn issuer(enabled: bool) -> Issuer {
        let mut settings = AuthConfig::default().load(std::path::Path::new(".")).expect("settings");
        settings.enabled = enabled;
        settings.users.push(Principal {
            name: "alice".into(),
            hash: Some(hash_password("s3cret").expect("hash")),
            scopes: vec![Scope::READ],
            grants: vec![Grant::Password],
            cf_roles: vec![],
        });
        Issuer::new(settings)
    }

    fn password(user: &str, pass: &str) -> pb::IssueTokenRequest {
        pb::IssueTokenRequest {
            grant_type: "password".into(),
            username: user.into(),
            password: pass.into(),
            client_id: "cf".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_password_grant_gives_the_users_scopes_and_a_refresh_token_that_works_once_rotated() {
        let iss = issuer(true);
        let t = iss.issue(&password("alice", "s3cret")).expect("token");
        assert_eq!(t.token_type, "bearer");
        assert_eq!(t.scope, "capstan.read");
        assert_eq!(iss.check_bearer(&t.access_token).expect("valid").1, vec![Scope::READ]);
        assert!(
            iss.check_bearer(&t.refresh_token).is_err(),
            "a refresh token is no access token"
        );
        let r = iss
            .issue(&pb::IssueTokenRequest {
                grant_type: "refresh_token".into(),
                refresh_token: t.refresh_token.clone(),
                client_id: "cf".into(),
                ..Default::default()
            })
            .expect("refreshed");
        assert_eq!(r.scope, "capstan.read");
        assert!(
            iss.issue(&pb::IssueTokenRequest {
                grant_type: "refresh_token".into(),
                refresh_token: t.access_token,
                client_id: "cf".into(),
                ..Default::default()
            })
            .is_err(),
            "an access token does not refresh"
        );
    }

    #[test]
    fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
        let iss = issuer(true);
        assert_eq!(
            iss.issue(&password("alice", "nope")).err(),
            Some(TokenError::BadCredentials)
        );
        assert_eq!(
            iss.issue(&password("mallory", "nope")).err(),
            Some(TokenError::BadCredentials)
        );
    }

    #[test]
    fn with_auth_off_any_user_logs_in_with_every_scope() {
        let t = issuer(false).issue(&password("anyone", "")).expect("token");
        assert_eq!(t.scope, "capstan.read capstan.write capstan.admin");
    }

    #[test]
    fn expired_foreign_and_unsigned_tokens_are_refused() {
        let iss = issuer(true);
        let now = now_s();
        let mut claims = Claims {
            jti: "j".into(),
            sub: "alice".into(),
            iss: "capstan".into(),
            aud: vec![AUDIENCE.into()],
            iat: now - 100,
            exp: now - 10,
            scope: vec!["capstan.read".into()],
            client_id: "cf".into(),
            cid: "cf".into(),
            grant_type: "password".into(),
            user_name: None,
            refresh: false,
        };
        let expired = iss.sign(&claims).expect("sign");
        assert_eq!(iss.check_bearer(&expired).err(), Some(BearerError::Expired));
        claims.exp = now + 100;
        let foreign = issuer(true).sign(&claims).expect("sign");
        assert!(iss.check_bearer(&foreign).is_err(), "another key, same kid name");
        // alg none: header {"alg":"none"}, the same claims, no signature.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT","kid":"ephemeral"}"#),
            b64.encode(serde_json::to_vec(&claims).expect("json"))
        );
        assert!(matches!(iss.check_bearer(&none), Err(BearerError::Invalid(_))));
        assert!(iss.check_bearer("garbage").is_err());
        assert!(iss.check_bearer(&iss.sign(&claims).expect("sign")).is_ok());
    }

    #[test]
    fn scopes_can_be_narrowed_but_not_widened() {
        let iss = issuer(false);
        let mut req = password("bob", "");
        req.scope = "capstan.read".into();
        assert_eq!(iss.issue(&req).expect("narrowed").scope, "capstan.read");
        let iss = issuer(true);
        let mut req = password("alice", "s3cret");
        req.scope = "capstan.write".into();
        assert!(matches!(iss.issue(&req), Err(TokenError::InvalidRequest(_))));
    }
}
