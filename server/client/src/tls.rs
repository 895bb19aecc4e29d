//! TLS settings of a process (rustls with ring): the certificate it presents — on its listeners,
//! and as its client certificate on the internal calls it makes (mutual TLS) — and the CA that
//! signs the cluster's certificates. Flags, so that each is also an environment variable and a
//! config-file key (`tls-cert-file = "..."`).

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// PEM certificate chain this process presents: its listeners' certificate, and its client
    /// certificate on calls to the nodes (mutual TLS). Its subject names must cover the addresses
    /// others dial (IP addresses as IP SANs).
    #[arg(long, env = "CAPSTAN_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "CAPSTAN_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificate of the cluster: the nodes this process calls must be signed by it, and
    /// a client certificate signed by it makes a caller a cell or peer (no cluster secret needed).
    #[arg(long, env = "CAPSTAN_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
}

/// The files of [`TlsArgs`], read.
#[derive(Clone, Debug)]
pub struct Tls {
    /// (certificate chain, key) PEM, when this process has a certificate.
    identity: Option<(Vec<u8>, Vec<u8>)>,
    ca: Option<Vec<u8>>,
}

fn read(path: &PathBuf, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("--{flag} {}", path.display()))
}

impl TlsArgs {
    /// `None` when no TLS flag is given.
    pub fn load(&self) -> anyhow::Result<Option<Tls>> {
        let identity = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(c), Some(k)) => Some((read(c, "tls-cert-file")?, read(k, "tls-key-file")?)),
            (None, None) => None,
            _ => bail!("--tls-cert-file and --tls-key-file go together"),
        };
        let ca = self.tls_ca_file.as_ref().map(|p| read(p, "tls-ca-file")).transpose()?;
        Ok((identity.is_some() || ca.is_some()).then_some(Tls { identity, ca }))
    }
}

impl Tls {
    /// The gRPC listener's TLS: this certificate; client certificates verified against the CA
    /// when one is given — optional on a node (token-carrying clients have none), required on a
    /// cell's own listener (only nodes call it).
    pub fn grpc_server(&self, client_cert_required: bool) -> anyhow::Result<ServerTlsConfig> {
        let (cert, key) = self
            .identity
            .as_ref()
            .context("serving gRPC over TLS (a node, or a cell's own API) needs --tls-cert-file and --tls-key-file")?;
        let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.ca {
            cfg = cfg
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(!client_cert_required);
        }
        Ok(cfg)
    }

    /// This process's certificate chain and key (PEM), for a REST listener's TLS.
    pub fn identity_pem(&self) -> anyhow::Result<(&[u8], &[u8])> {
        let (cert, key) = self
            .identity
            .as_ref()
            .context("REST over TLS needs --tls-cert-file and --tls-key-file")?;
        Ok((cert, key))
    }

    /// TLS for calls to the nodes. `present_identity`: send this process's certificate (cells,
    /// peers, the admin CLI); the REST gateway never does, so that its calls are the callers'.
    pub fn client(&self, present_identity: bool) -> anyhow::Result<ClientTlsConfig> {
        let ca = self
            .ca
            .as_ref()
            .context("calling the nodes over TLS needs --tls-ca-file (the CA that signs them)")?;
        let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if present_identity {
            if let Some((cert, key)) = &self.identity {
                cfg = cfg.identity(Identity::from_pem(cert, key));
            }
        }
        Ok(cfg)
    }
}
