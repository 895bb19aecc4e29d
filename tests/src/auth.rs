//! An auth-on setup for tests: a config folder with a signing key, a second key the cluster does
//! not know, a cluster secret and three users (reader, writer, admin), made with the `capstan auth`
//! commands a user would run; tokens obtained as a client would, and forged ones signed here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{capstan_bin, Capstan};
use capstan_proto::pb;

/// A small cell as a rogue (or a test) would register it over gRPC.
pub fn cell_record(id: &str) -> pb::Cell {
    pb::Cell {
        cell_id: id.into(),
        zone: "z1".into(),
        pool: "default".into(),
        capacity: Some(pb::CellCapacity {
            memory_mb: 1024,
            disk_mb: 1024,
            containers: 10,
        }),
        address: "127.0.0.1".into(),
        ..Default::default()
    }
}

/// The users of the fixture: (name, password, scopes).
pub const USERS: [(&str, &str, &str); 3] = [
    ("reader", "reader-pw", "capstan.read"),
    ("writer", "writer-pw", "capstan.write"),
    ("admin", "admin-pw", "capstan.admin"),
];

pub struct AuthFixture {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub secret: String,
    /// PEM of the key the cluster signs with (kid `k1`).
    pub key_pem: String,
    /// PEM of a key the cluster does not know.
    pub foreign_pem: String,
}

fn capstan(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new(capstan_bin()?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("capstan {args:?} failed: {}", out.status);
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

impl AuthFixture {
    /// Writes `capstan.toml` with auth on and a cluster secret; `extra` goes first (flag keys).
    pub fn new(extra: &str) -> Result<Self> {
        Self::build(extra, true)
    }

    /// The same without a cluster secret: cells and peers must come with client certificates.
    pub fn without_secret(extra: &str) -> Result<Self> {
        Self::build(extra, false)
    }

    fn build(extra: &str, with_secret: bool) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let p = |f: &str| dir.path().join(f);
        capstan(&["auth", "gen-key", "--out", &p("k1.pem").display().to_string()], None)?;
        capstan(
            &["auth", "gen-key", "--out", &p("foreign.pem").display().to_string()],
            None,
        )?;
        let secret = "test-cluster-secret-0123456789".to_owned();
        std::fs::write(p("cluster-secret"), format!("{secret}\n"))?;
        let mut users = String::new();
        for (name, password, scope) in USERS {
            let hash = capstan(&["auth", "hash-password"], Some(&format!("{password}\n")))?;
            users.push_str(&format!(
                "[[auth.users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\nscopes = [\"{scope}\"]\n"
            ));
        }
        let config = p("capstan.toml");
        std::fs::write(
            &config,
            format!(
                "{extra}\n[auth]\nenabled = true\n{}\
                 [[auth.keys]]\nkid = \"k1\"\nprivate_key_file = \"k1.pem\"\n{users}",
                if with_secret {
                    "cluster_secret_file = \"cluster-secret\"\n"
                } else {
                    ""
                }
            ),
        )?;
        Ok(Self {
            key_pem: std::fs::read_to_string(p("k1.pem"))?,
            foreign_pem: std::fs::read_to_string(p("foreign.pem"))?,
            dir,
            config,
            secret,
        })
    }

    /// Adds a user to the config (before a node starts with it), with CF roles such as
    /// `space_developer:ORG/SPACE`.
    pub fn add_user(&self, name: &str, password: &str, scope: &str, cf_roles: &[&str]) -> Result<()> {
        let hash = capstan(&["auth", "hash-password"], Some(&format!("{password}\n")))?;
        let roles = cf_roles
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut config = std::fs::read_to_string(&self.config)?;
        config.push_str(&format!(
            "[[auth.users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\nscopes = [\"{scope}\"]\ncf_roles = [{roles}]\n"
        ));
        std::fs::write(&self.config, config)?;
        Ok(())
    }

    /// `capstan dev --no-cell --config <fixture>` (the API alone).
    pub fn dev(&self, data_dir: &Path) -> Result<Capstan> {
        let cfg = self.config.display().to_string();
        Capstan::dev_with(data_dir, &["--no-cell", "--config", &cfg])
    }

    /// A token by the password grant, as the cf CLI asks for it (client `cf:` in basic auth).
    pub async fn login(&self, c: &Capstan, user: &str, password: &str) -> Value {
        Self::login_at(&c.client, &c.http, user, password).await
    }

    /// The access token of a password-grant login ([`AuthFixture::login`]); empty if refused.
    pub async fn token(&self, c: &Capstan, user: &str, password: &str) -> String {
        let v = self.login(c, user, password).await;
        v["access_token"].as_str().unwrap_or_default().to_owned()
    }

    /// [`AuthFixture::login`] against the REST front at `base` (e.g. `https://…`) with `client`.
    pub async fn login_at(client: &reqwest::Client, base: &str, user: &str, password: &str) -> Value {
        let r = client
            .post(format!("{base}/oauth/token"))
            .basic_auth("cf", Some(""))
            .form(&[("grant_type", "password"), ("username", user), ("password", password)])
            .send()
            .await
            .expect("token request");
        assert_eq!(r.status().as_u16(), 200, "login as {user}");
        r.json().await.expect("token JSON")
    }

    /// An access token signed with `pem` under kid `k1`, expiring `exp_in_s` from now (negative:
    /// already expired).
    pub fn forge(pem: &str, scope: &str, exp_in_s: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        let claims = json!({
            "jti": "forged", "sub": "x", "iss": "capstan", "aud": ["capstan"],
            "iat": now - 10, "exp": now + exp_in_s, "scope": [scope],
            "client_id": "cf", "cid": "cf", "grant_type": "password",
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC PEM");
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    }
}

/// `capstan dev` with the auth fixture's config (auth on); keep the folder for the node's life.
pub fn dev_with_auth() -> (AuthFixture, tempfile::TempDir, Capstan) {
    let fx = AuthFixture::new("").expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fx.dev(&dir.path().join("data")).expect("capstan dev with auth");
    (fx, dir, c)
}

/// One request with an optional Authorization header; (status, body). The event stream's body is
/// not read (it does not end).
pub async fn call(c: &Capstan, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = c
        .client
        .request(m, c.url(path))
        .header("content-type", "application/json");
    if method != "GET" && method != "DELETE" {
        req = req.body("{}");
    }
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    if path.ends_with("/events") && status == 200 {
        return (status, String::new());
    }
    (status, resp.text().await.unwrap_or_default())
}
