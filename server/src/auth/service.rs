//! The `Auth` gRPC service: UAA's token grant and the published keys, served by every node from
//! its own config (no Raft: nothing about a token is replicated).

use std::sync::Arc;

use capstan_proto::pb::{self, ErrorKind};
use tonic::{Request, Response, Status};

use super::guard::Authenticator;
use super::tokens::{Claims, TokenError};
use crate::api::forward::Forwarder;
use crate::errors;

pub struct AuthService {
    auth: Arc<Authenticator>,
    /// Revocations go through the Raft log, so that every node refuses a revoked token.
    fwd: Forwarder,
}

impl AuthService {
    pub fn new(auth: Arc<Authenticator>, fwd: Forwarder) -> Self {
        Self { auth, fwd }
    }
}

/// A token's id and expiry as a revocation.
fn revocation(claims: &Claims) -> pb::TokenRevocation {
    pb::TokenRevocation {
        jti: claims.jti.clone(),
        expires_at_ns: i64::try_from(claims.exp).unwrap_or(i64::MAX / 1_000_000_000) * 1_000_000_000,
    }
}

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn issue_token(
        &self,
        req: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let req = req.into_inner();
        let auth = self.auth.clone();
        // argon2 on the blocking pool: it is slow on purpose.
        let issued = tokio::task::spawn_blocking(move || auth.issuer().issue(&req))
            .await
            .map_err(|e| errors::status(ErrorKind::Internal, e.to_string(), 0))?;
        match issued {
            Ok(t) => Ok(Response::new(t)),
            Err(e) => {
                let kind = match &e {
                    TokenError::BadCredentials => ErrorKind::Unauthenticated,
                    TokenError::InvalidToken(_) => ErrorKind::InvalidToken,
                    TokenError::InvalidRequest(_) | TokenError::UnsupportedGrant(_) => ErrorKind::InvalidRequest,
                };
                tracing::info!(refusal = %e, "token request refused");
                Err(errors::status(kind, e.to_string(), 0))
            }
        }
    }

    async fn authorize(&self, req: Request<pb::AuthorizeRequest>) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let rpc = req.get_ref().rpc.clone();
        if !matches!(super::scopes::access(&rpc), super::scopes::Access::Scoped(_)) {
            return Err(errors::status(
                ErrorKind::InvalidRequest,
                format!("{rpc} is not a public API method"),
                0,
            ));
        }
        let headers = req.metadata().clone().into_headers();
        let auth = self.auth.clone();
        // Asked by the gateway for its REST caller: the gateway's own connection (which never
        // presents a client certificate) says nothing about that caller.
        // A basic-auth check may run argon2.
        tokio::task::spawn_blocking(move || auth.decide(&rpc, &headers, false))
            .await
            .map_err(|e| errors::status(ErrorKind::Internal, e.to_string(), 0))??;
        Ok(Response::new(pb::AuthorizeResponse {}))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let r = req.into_inner();
        // RFC 7009: a token that is invalid or already expired needs no revoking (200 all the same).
        let Ok(claims) = self.auth.issuer().decode(&r.token) else {
            return Ok(Response::new(pb::RevokeTokenResponse {}));
        };
        let auth = self.auth.clone();
        let (id, secret, c) = (r.client_id.clone(), r.client_secret.clone(), claims.clone());
        tokio::task::spawn_blocking(move || auth.issuer().check_client_of(&c, &id, &secret))
            .await
            .map_err(|e| errors::status(ErrorKind::Internal, e.to_string(), 0))?
            .map_err(|e| errors::status(ErrorKind::Unauthenticated, e.to_string(), 0))?;
        let mut revocations = vec![revocation(&claims)];
        if claims.refresh {
            // The access token issued with it shares its id, without the "-r".
            if let Some(access) = claims.jti.strip_suffix("-r") {
                let mut paired = revocation(&claims);
                paired.jti = access.to_owned();
                revocations.push(paired);
            }
        }
        let kind = pb::command::Kind::RevokeTokens(pb::RevokeTokens { revocations });
        self.fwd.decide(kind).await?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn token_keys(&self, _req: Request<pb::TokenKeysRequest>) -> Result<Response<pb::TokenKeysResponse>, Status> {
        Ok(Response::new(self.auth.issuer().token_keys()))
    }
}
