//! Fresh-domain commands: bump a domain's freshness for a TTL.

use super::events::ev;
use super::{reject, Ctx, Decision};
use crate::pb;
use crate::{freshness, limits};
use pb::{event::Kind as Ev, RejectionKind};

pub fn bump(c: &pb::BumpFreshDomain, cx: &Ctx) -> Decision {
    if c.domain.is_empty() || c.domain.len() > limits::NAME_BYTES_MAX {
        return Err(reject(RejectionKind::InvalidDomain, "Invalid field: domain"));
    }
    Ok(vec![ev(Ev::FreshDomainBumped(pb::FreshDomainBumped {
        fresh_domain: Some(freshness::bumped(&c.domain, c.ttl_in_seconds, cx.now)),
    }))])
}
