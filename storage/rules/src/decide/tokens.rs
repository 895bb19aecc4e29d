//! Token revocations (logout): a revoked token id is refused until the token would have expired
//! anyway; each revocation entry also drops the revocations that have expired by its time, so the
//! set stays as small as the tokens still alive.

use super::events::ev;
use super::{reject, Ctx, Decision, ViewRead};
use crate::limits;
use crate::pb;
use pb::{event::Kind as Ev, RejectionKind};

/// Expired revocations dropped by one entry at most (bounded work per apply).
pub const EXPIRED_REVOCATIONS_PER_ENTRY_MAX: usize = 256;
/// Revocations one command may carry (a refresh token and its access token).
pub const REVOCATIONS_PER_COMMAND_MAX: usize = 16;

pub fn revoke<V: ViewRead>(view: &V, c: &pb::RevokeTokens, cx: &Ctx) -> Result<Decision, V::Error> {
    if c.revocations.is_empty() || c.revocations.len() > REVOCATIONS_PER_COMMAND_MAX {
        return Ok(Err(reject(
            RejectionKind::InvalidTokenRevocation,
            format!("1 to {REVOCATIONS_PER_COMMAND_MAX} revocations per request"),
        )));
    }
    if let Some(bad) = c
        .revocations
        .iter()
        .find(|r| r.jti.is_empty() || r.jti.len() > limits::NAME_BYTES_MAX)
    {
        return Ok(Err(reject(
            RejectionKind::InvalidTokenRevocation,
            format!("invalid token id '{}'", bad.jti.chars().take(64).collect::<String>()),
        )));
    }
    let mut revoked: Vec<pb::TokenRevocation> = Vec::new();
    for r in &c.revocations {
        // Already revoked, already expired, or named twice: nothing new.
        if r.expires_at_ns <= cx.now
            || revoked.iter().any(|x| x.jti == r.jti)
            || view.token_revocation(&r.jti)?.is_some()
        {
            continue;
        }
        revoked.push(r.clone());
    }
    let expired = view.token_revocations_expired(cx.now, EXPIRED_REVOCATIONS_PER_ENTRY_MAX)?;
    if revoked.is_empty() && expired.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    Ok(Ok(vec![ev(Ev::TokensRevoked(pb::TokensRevoked { revoked, expired }))]))
}
