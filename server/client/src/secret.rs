//! The client side of internal credentials: how `capstan cell` and `capstan cluster` are given
//! the cluster secret (a file, or an environment variable; never a plain flag, which `ps` shows).

use std::path::PathBuf;

use crate::credential::ClusterCredential;
use anyhow::Context as _;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct SecretArgs {
    /// A file holding the cluster secret (needed when the cluster runs with auth on, unless this
    /// process has a client certificate the cluster's CA signed).
    #[arg(long, env = "CAPSTAN_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// A cell's own secret (`capstan auth cell-secret --cell-id ID`), instead of the cluster
    /// secret: with it the cell can act as itself and as no other cell.
    #[arg(long, env = "CAPSTAN_CELL_SECRET_FILE")]
    pub cell_secret_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

fn read_secret(f: &std::path::Path, flag: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(f)
        .with_context(|| format!("{flag} {}", f.display()))?
        .trim_end_matches(['\n', '\r'])
        .to_owned())
}

/// Environment variable that may carry the cluster secret itself.
pub const CLUSTER_SECRET_ENV: &str = "CAPSTAN_CLUSTER_SECRET";

impl SecretArgs {
    /// The cluster secret, from its file or the environment.
    pub fn cluster_secret(&self) -> anyhow::Result<Option<String>> {
        Ok(match &self.cluster_secret_file {
            Some(f) => Some(read_secret(f, "--cluster-secret-file")?),
            None => std::env::var(CLUSTER_SECRET_ENV).ok(),
        })
    }

    pub fn credential(&self) -> anyhow::Result<ClusterCredential> {
        self.credential_as(None)
    }

    /// The credential of `cell` when a cell secret is given (else as [`SecretArgs::credential`]).
    pub fn credential_as(&self, cell: Option<&str>) -> anyhow::Result<ClusterCredential> {
        let credential = match (&self.cell_secret_file, cell) {
            (Some(f), Some(id)) => ClusterCredential::for_cell(id, &read_secret(f, "--cell-secret-file")?)?,
            (Some(_), None) => anyhow::bail!("--cell-secret-file is for one cell (capstan cell)"),
            (None, _) => ClusterCredential::new(self.cluster_secret()?.as_deref())?,
        };
        // A cell bound by its own secret does not present its certificate as a client (a CA-signed
        // certificate would make it any cell, or a node); it still serves its CellApi with it.
        let present_certificate = self.cell_secret_file.is_none();
        Ok(match self.tls.load()? {
            Some(tls) => credential.with_tls(tls.client(present_certificate)?),
            None => credential,
        })
    }
}

/// How a CLI that speaks for a user (`capstan task`, `capstan events`) reaches an API with auth or
/// TLS on: a bearer token, and the CA that signs the server's certificate.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct UserArgs {
    /// A bearer token (from `POST /oauth/token`), sent on every call.
    #[arg(long, env = "CAPSTAN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA that signs the server's certificate (for https:// and TLS gRPC).
    #[arg(long = "tls-ca-file", env = "CAPSTAN_TLS_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

impl UserArgs {
    /// The `Authorization` value, when a token is given.
    pub fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("bearer {}", t.trim()))
    }

    pub fn ca_pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.ca_file
            .as_ref()
            .map(|f| std::fs::read(f).with_context(|| format!("--tls-ca-file {}", f.display())))
            .transpose()
    }
}
