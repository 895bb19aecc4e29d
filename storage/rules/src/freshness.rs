//! Domain freshness: a domain is fresh while its bump has not expired; ttl 0 never expires.

use crate::pb;

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// The record a bump at `now_ns` with `ttl_in_seconds` writes.
pub fn bumped(domain: &str, ttl_in_seconds: u32, now_ns: i64) -> pb::FreshDomain {
    let expires_at = if ttl_in_seconds == 0 {
        0
    } else {
        now_ns.saturating_add(i64::from(ttl_in_seconds).saturating_mul(NANOS_PER_SECOND))
    };
    pb::FreshDomain {
        domain: domain.to_owned(),
        ttl_in_seconds,
        bumped_at: now_ns,
        expires_at,
    }
}

/// Whether the domain is still fresh at `now_ns`.
pub fn is_fresh(d: &pb::FreshDomain, now_ns: i64) -> bool {
    d.expires_at == 0 || now_ns < d.expires_at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_ttl_never_expires() {
        let d = bumped("d", 0, 5);
        assert!(is_fresh(&d, i64::MAX));
    }

    #[test]
    fn ttl_expires_exactly_at_deadline() {
        let d = bumped("d", 2, 1_000);
        assert!(is_fresh(&d, 1_000 + 2 * NANOS_PER_SECOND - 1));
        assert!(!is_fresh(&d, 1_000 + 2 * NANOS_PER_SECOND));
    }

    #[test]
    fn rebump_replaces_ttl() {
        let first = bumped("d", 1, 0);
        let again = bumped("d", 0, 10);
        assert!(!is_fresh(&first, 2 * NANOS_PER_SECOND));
        assert!(is_fresh(&again, 2 * NANOS_PER_SECOND));
    }
}
