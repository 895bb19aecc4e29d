//! The `Auth` gRPC service: UAA's token grant and the published keys, served by every node from
//! its own config (no Raft: nothing about a token is replicated).

use std::sync::Arc;

use capstan_proto::pb::{self, ErrorKind};
use tonic::{Request, Response, Status};

use super::guard::Authenticator;
use super::tokens::TokenError;
use crate::errors;

pub struct AuthService {
    auth: Arc<Authenticator>,
}

impl AuthService {
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
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

    async fn token_keys(&self, _req: Request<pb::TokenKeysRequest>) -> Result<Response<pb::TokenKeysResponse>, Status> {
        Ok(Response::new(self.auth.issuer().token_keys()))
    }
}
