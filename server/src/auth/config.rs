//! The `[auth]` table of the config file: whether auth is on, the token keys, users, clients and
//! the cluster secret. Secrets may come from files (`*_file` keys) so that they stay out of the
//! TOML; [`AuthConfig::load`] reads and checks everything at start and names the bad key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::keys::SigningKey;
use super::scopes::{Realm, Scope};

/// Lifetime of an access token unless configured.
pub const ACCESS_TOKEN_TTL_S_DEFAULT: u64 = 3_600;
/// Lifetime of a refresh token unless configured (UAA's default is 30 days).
pub const REFRESH_TOKEN_TTL_S_DEFAULT: u64 = 30 * 24 * 3_600;
/// Shortest cluster secret accepted: long enough that guessing it is not an attack.
pub const CLUSTER_SECRET_BYTES_MIN: usize = 16;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Off (the `capstan dev` default): every call is open; the token endpoint still answers.
    #[serde(default)]
    pub enabled: bool,
    /// `iss` of the tokens (default `capstan`).
    pub issuer: Option<String>,
    pub access_token_ttl_s: Option<u64>,
    pub refresh_token_ttl_s: Option<u64>,
    /// The kid that signs new tokens (default: the first key).
    pub signing_kid: Option<String>,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// The credential cells, peers and the admin CLI present on the internal gRPC services.
    pub cluster_secret: Option<String>,
    pub cluster_secret_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub kid: String,
    /// PKCS#8 PEM of a P-256 key (`capstan auth gen-key`).
    pub private_key_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// An argon2 PHC string (`capstan auth hash-password`).
    pub password_hash: Option<String>,
    pub password_hash_file: Option<PathBuf>,
    pub scopes: Vec<String>,
    /// Cloud Foundry roles: `space_developer:ORG/SPACE`, `space_supporter:…`, `space_manager:…`,
    /// `space_auditor:…`, `org_manager:ORG`. A user with roles sees only those spaces in the CF
    /// family; a user without any is a CF user of every space within its scopes.
    #[serde(default)]
    pub cf_roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub id: String,
    /// An argon2 PHC string; absent = a public client (the cf CLI's `cf` with an empty secret).
    pub secret_hash: Option<String>,
    pub secret_hash_file: Option<PathBuf>,
    /// Scopes a `client_credentials` token carries (and the most a user's token may carry through it).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Grants the client may use: `password`, `client_credentials`, `refresh_token`.
    pub grants: Vec<String>,
}

/// A user or client as the token issuer uses it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    /// `None`: a public client, no secret.
    pub hash: Option<String>,
    pub scopes: Vec<Scope>,
    pub grants: Vec<Grant>,
    /// A user's CF roles (empty for clients and for users of every space).
    pub cf_roles: Vec<CfRole>,
}

/// The CF roles Capstan distinguishes (spec §6): who sees a space, who sees commands, who writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfRoleKind {
    SpaceDeveloper,
    SpaceSupporter,
    SpaceManager,
    SpaceAuditor,
    OrgManager,
}

/// One CF role of a user, on a space (`org/space`) or, for an org manager, an org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfRole {
    pub kind: CfRoleKind,
    pub org: String,
    pub space: Option<String>,
}

impl CfRole {
    /// `role:ORG/SPACE` (`org_manager:ORG`).
    pub fn parse(s: &str) -> Result<CfRole, String> {
        let (role, target) = s.split_once(':').ok_or("expected role:ORG/SPACE or org_manager:ORG")?;
        let kind = match role {
            "space_developer" => CfRoleKind::SpaceDeveloper,
            "space_supporter" => CfRoleKind::SpaceSupporter,
            "space_manager" => CfRoleKind::SpaceManager,
            "space_auditor" => CfRoleKind::SpaceAuditor,
            "org_manager" => CfRoleKind::OrgManager,
            other => {
                return Err(format!(
                "unknown CF role '{other}' (space_developer|space_supporter|space_manager|space_auditor|org_manager)"
            ))
            }
        };
        let (org, space) = match target.split_once('/') {
            Some((o, sp)) => (o, Some(sp)),
            None => (target, None),
        };
        let needs_space = kind != CfRoleKind::OrgManager;
        if org.is_empty() || space.is_some_and(str::is_empty) || needs_space != space.is_some() {
            return Err(format!("'{s}': a space role names ORG/SPACE, org_manager names ORG"));
        }
        Ok(CfRole {
            kind,
            org: org.to_owned(),
            space: space.map(str::to_owned),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Password,
    ClientCredentials,
    RefreshToken,
}

impl Grant {
    pub fn parse(s: &str) -> Option<Grant> {
        match s {
            "password" => Some(Grant::Password),
            "client_credentials" => Some(Grant::ClientCredentials),
            "refresh_token" => Some(Grant::RefreshToken),
            _ => None,
        }
    }
}

/// Everything `[auth]` says, read and checked.
#[derive(Debug)]
pub struct AuthSettings {
    pub enabled: bool,
    pub issuer: String,
    pub access_token_ttl_s: u64,
    pub refresh_token_ttl_s: u64,
    /// The signing key first, then the others (verification only).
    pub keys: Vec<SigningKey>,
    pub users: Vec<Principal>,
    pub clients: Vec<Principal>,
    pub cluster_secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("auth.{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// A secret given inline or in a file (trailing newline dropped); both or neither is an error
/// only when `required`.
fn secret(
    key: &str,
    inline: Option<&String>,
    file: Option<&PathBuf>,
    base: &Path,
) -> Result<Option<String>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(bad(key, format!("give {key} or {key}_file, not both"))),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(f)) => {
            let path = base.join(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| bad(format!("{key}_file"), format!("{}: {e}", path.display())))?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
        }
        (None, None) => Ok(None),
    }
}

fn scopes(key: &str, names: &[String]) -> Result<Vec<Scope>, ConfigError> {
    names
        .iter()
        .map(|n| {
            Scope::parse(n).ok_or_else(|| {
                bad(
                    key,
                    format!("unknown scope '{n}' (capstan.read|write|admin, cloud_controller.read|write|admin)"),
                )
            })
        })
        .collect()
}

fn check_hash(key: &str, phc: &str) -> Result<(), ConfigError> {
    argon2::PasswordHash::new(phc).map(|_| ()).map_err(|e| {
        bad(
            key,
            format!("not an argon2 PHC string ({e}); make one with `capstan auth hash-password`"),
        )
    })
}

impl AuthConfig {
    /// Reads the files it names (relative to `base`, the config file's folder) and checks every
    /// value. With no keys configured, a fresh random key signs (tokens then die with the node:
    /// fine for `capstan dev`, refused for a cluster with auth on).
    pub fn load(&self, base: &Path) -> Result<AuthSettings, ConfigError> {
        let mut keys = Vec::with_capacity(self.keys.len());
        for (i, k) in self.keys.iter().enumerate() {
            if k.kid.is_empty() || keys.iter().any(|s: &SigningKey| s.kid == k.kid) {
                return Err(bad(format!("keys[{i}].kid"), "empty or used twice"));
            }
            let path = base.join(&k.private_key_file);
            let pem = std::fs::read_to_string(&path).map_err(|e| {
                bad(
                    format!("keys[{i}].private_key_file"),
                    format!("{}: {e}", path.display()),
                )
            })?;
            keys.push(
                SigningKey::from_pem(&k.kid, &pem)
                    .map_err(|e| bad(format!("keys[{i}].private_key_file"), e.to_string()))?,
            );
        }
        if let Some(kid) = &self.signing_kid {
            let at = keys
                .iter()
                .position(|k| &k.kid == kid)
                .ok_or_else(|| bad("signing_kid", format!("no key has kid '{kid}'")))?;
            keys.swap(0, at);
        }
        if self.enabled && keys.is_empty() {
            return Err(bad("keys", "auth is enabled but no signing key is configured"));
        }
        if keys.is_empty() {
            let (k, _) = SigningKey::generate("ephemeral").map_err(|e| bad("keys", e.to_string()))?;
            keys.push(k);
        }
        let mut users = Vec::with_capacity(self.users.len());
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}]");
            if u.name.is_empty() || users.iter().any(|p: &Principal| p.name == u.name) {
                return Err(bad(format!("{key}.name"), "empty or used twice"));
            }
            let hash = secret(
                &format!("{key}.password_hash"),
                u.password_hash.as_ref(),
                u.password_hash_file.as_ref(),
                base,
            )?
            .ok_or_else(|| bad(format!("{key}.password_hash"), "missing"))?;
            check_hash(&format!("{key}.password_hash"), &hash)?;
            let cf_roles = u
                .cf_roles
                .iter()
                .map(|r| CfRole::parse(r).map_err(|e| bad(format!("{key}.cf_roles"), e)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut user_scopes = scopes(&format!("{key}.scopes"), &u.scopes)?;
            if !cf_roles.is_empty() {
                // A user with CF roles is a CF user: its scopes open the CF family only.
                let operator: Vec<&str> = user_scopes
                    .iter()
                    .filter(|s| s.realm == Realm::Operator)
                    .map(|s| s.name())
                    .collect();
                if !operator.is_empty() {
                    tracing::warn!(
                        user = %u.name,
                        "auth: user '{}' has cf_roles, so it is a CF user: its scopes {} open the CF family only \
                         (they are cloud_controller.* in its tokens); give operators no cf_roles",
                        u.name,
                        operator.join(", ")
                    );
                }
                user_scopes = user_scopes.into_iter().map(Scope::as_cf).collect();
            }
            users.push(Principal {
                name: u.name.clone(),
                hash: Some(hash),
                scopes: user_scopes,
                grants: vec![Grant::Password],
                cf_roles,
            });
        }
        let mut clients = Vec::with_capacity(self.clients.len().max(1));
        for (i, c) in self.clients.iter().enumerate() {
            let key = format!("clients[{i}]");
            if c.id.is_empty() || clients.iter().any(|p: &Principal| p.name == c.id) {
                return Err(bad(format!("{key}.id"), "empty or used twice"));
            }
            let hash = secret(
                &format!("{key}.secret_hash"),
                c.secret_hash.as_ref(),
                c.secret_hash_file.as_ref(),
                base,
            )?;
            if let Some(h) = &hash {
                check_hash(&format!("{key}.secret_hash"), h)?;
            }
            let grants = c
                .grants
                .iter()
                .map(|g| {
                    Grant::parse(g).ok_or_else(|| {
                        bad(
                            format!("{key}.grants"),
                            format!("unknown grant '{g}' (password|client_credentials|refresh_token)"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if hash.is_none() && grants.contains(&Grant::ClientCredentials) {
                return Err(bad(
                    format!("{key}.grants"),
                    "a public client (no secret) cannot use client_credentials",
                ));
            }
            clients.push(Principal {
                name: c.id.clone(),
                hash,
                scopes: scopes(&format!("{key}.scopes"), &c.scopes)?,
                grants,
                cf_roles: vec![],
            });
        }
        if !clients.iter().any(|c| c.name == "cf") {
            // CF's CLI logs in as the public client `cf` with an empty secret.
            clients.push(Principal {
                name: "cf".into(),
                hash: None,
                scopes: Scope::ALL.to_vec(),
                grants: vec![Grant::Password, Grant::RefreshToken],
                cf_roles: vec![],
            });
        }
        let cluster_secret = secret(
            "cluster_secret",
            self.cluster_secret.as_ref(),
            self.cluster_secret_file.as_ref(),
            base,
        )?;
        if let Some(s) = &cluster_secret {
            if s.len() < CLUSTER_SECRET_BYTES_MIN {
                return Err(bad(
                    "cluster_secret",
                    format!("shorter than {CLUSTER_SECRET_BYTES_MIN} bytes"),
                ));
            }
        }
        Ok(AuthSettings {
            enabled: self.enabled,
            issuer: self.issuer.clone().unwrap_or_else(|| "capstan".into()),
            access_token_ttl_s: self.access_token_ttl_s.unwrap_or(ACCESS_TOKEN_TTL_S_DEFAULT),
            refresh_token_ttl_s: self.refresh_token_ttl_s.unwrap_or(REFRESH_TOKEN_TTL_S_DEFAULT),
            keys,
            users,
            clients,
            cluster_secret,
        })
    }
}
