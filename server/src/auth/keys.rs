//! Token signing keys: ES256 (ECDSA P-256 with SHA-256), held as PKCS#8 PEM files and known by
//! a `kid`. One key signs new tokens; every configured key verifies, so a key can be rotated by
//! adding the new one first and removing the old one after the longest token lifetime.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use capstan_proto::pb;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};

/// The JWT algorithm of every token Capstan signs.
pub const JWT_ALG: &str = "ES256";

/// SubjectPublicKeyInfo header of a P-256 public key (id-ecPublicKey, prime256v1, BIT STRING of
/// 66 bytes); the 65-byte uncompressed point follows it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM document: {0}")]
    Pem(String),
    #[error("expected a PKCS#8 \"PRIVATE KEY\" of curve P-256 (e.g. from `capstan auth gen-key`): {0}")]
    NotP256(String),
}

/// One signing key: its id, what signs, what verifies, and its public half for `/token_keys`.
pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The uncompressed public point (0x04 || x || y).
    public_point: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key of curve P-256.
    pub fn from_pem(kid: &str, pem_text: &str) -> Result<Self, KeyError> {
        let doc = pem_body(pem_text, "PRIVATE KEY")?;
        Self::from_pkcs8(kid, &doc)
    }

    fn from_pkcs8(kid: &str, der: &[u8]) -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
            .map_err(|e| KeyError::NotP256(e.to_string()))?;
        let public_point = pair.public_key().as_ref().to_vec();
        let (x, y) = split_point(&public_point).ok_or_else(|| KeyError::NotP256("bad public point".into()))?;
        let decoding = DecodingKey::from_ec_components(&URL_SAFE_NO_PAD.encode(x), &URL_SAFE_NO_PAD.encode(y))
            .map_err(|e| KeyError::NotP256(e.to_string()))?;
        Ok(Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(der),
            decoding,
            public_point,
        })
    }

    /// A fresh random key (the ephemeral key of a node with auth off, and `capstan auth gen-key`).
    pub fn generate(kid: &str) -> Result<(Self, String), KeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|e| KeyError::NotP256(e.to_string()))?;
        let pem = to_pem("PRIVATE KEY", doc.as_ref());
        Ok((Self::from_pkcs8(kid, doc.as_ref())?, pem))
    }

    /// The public half as UAA's `/token_keys` lists it: a JWK plus the PEM in `value`.
    pub fn jwk(&self) -> pb::TokenKey {
        let (x, y) = split_point(&self.public_point).unwrap_or_default();
        let spki: Vec<u8> = P256_SPKI_PREFIX
            .iter()
            .chain(self.public_point.iter())
            .copied()
            .collect();
        pb::TokenKey {
            kid: self.kid.clone(),
            alg: JWT_ALG.into(),
            kty: "EC".into(),
            r#use: "sig".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
            value: to_pem("PUBLIC KEY", &spki),
        }
    }
}

fn split_point(p: &[u8]) -> Option<(&[u8], &[u8])> {
    (p.len() == 65 && p[0] == 4).then(|| (&p[1..33], &p[33..]))
}

/// The base64 body of the first `label` block of a PEM text.
fn pem_body(text: &str, label: &str) -> Result<Vec<u8>, KeyError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| KeyError::Pem(format!("no '{begin}' line")))?;
    let rest = &text[start + begin.len()..];
    let stop = rest
        .find(&end)
        .ok_or_else(|| KeyError::Pem(format!("no '{end}' line")))?;
    let b64: String = rest[..stop].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).map_err(|e| KeyError::Pem(e.to_string()))
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_from_its_pem_and_publishes_its_point() {
        let (key, pem) = SigningKey::generate("k1").expect("generate");
        let again = SigningKey::from_pem("k1", &pem).expect("reads back");
        assert_eq!(key.public_point, again.public_point);
        let jwk = again.jwk();
        assert_eq!(
            (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_str()),
            ("EC", "P-256", "ES256")
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&jwk.x).expect("x").len(), 32);
        assert!(jwk.value.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let spki = pem_body(&jwk.value, "PUBLIC KEY").expect("pem");
        assert_eq!(spki.len(), 91, "26-byte header + 65-byte point");
    }

    #[test]
    fn anything_but_a_p256_pkcs8_key_is_refused_with_a_reason() {
        assert!(matches!(SigningKey::from_pem("k", "hello"), Err(KeyError::Pem(_))));
        let junk = to_pem("PRIVATE KEY", b"not a key");
        assert!(matches!(SigningKey::from_pem("k", &junk), Err(KeyError::NotP256(_))));
    }
}
