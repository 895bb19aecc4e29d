//! The client side of internal credentials: how `capstan cell` and `capstan cluster` are given
//! the cluster secret (a file, or an environment variable; never a plain flag, which `ps` shows).

use std::path::PathBuf;

use anyhow::Context as _;
use capstan_raft::credential::ClusterCredential;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct SecretArgs {
    /// A file holding the cluster secret (needed when the cluster runs with auth on, unless this
    /// process has a client certificate the cluster's CA signed).
    #[arg(long, env = "CAPSTAN_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

/// Environment variable that may carry the cluster secret itself.
pub const CLUSTER_SECRET_ENV: &str = "CAPSTAN_CLUSTER_SECRET";

impl SecretArgs {
    pub fn credential(&self) -> anyhow::Result<ClusterCredential> {
        let secret = match &self.cluster_secret_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("--cluster-secret-file {}", f.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            ),
            None => std::env::var(CLUSTER_SECRET_ENV).ok(),
        };
        let credential = ClusterCredential::new(secret.as_deref())?;
        Ok(match self.tls.load()? {
            Some(tls) => credential.with_tls(tls.client(true)?),
            None => credential,
        })
    }
}
