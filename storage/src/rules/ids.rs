//! Deterministic ids from the leader's stamp: every replica derives the same epochs and guids.

use crate::pb;

/// A splitmix64 stream seeded by the entry's stamp. Each call yields the next UUID-shaped id.
#[derive(Debug, Clone)]
pub struct IdGen {
    state: u64,
    salt: u64,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl IdGen {
    pub fn new(stamp: &pb::Stamp) -> Self {
        Self {
            state: stamp.id_seed_hi,
            salt: stamp.id_seed_lo,
        }
    }

    /// The next id, formatted as a version-4 UUID.
    pub fn next_uuid(&mut self) -> String {
        let hi = splitmix64(&mut self.state);
        let lo = splitmix64(&mut self.state) ^ self.salt;
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_be_bytes());
        bytes[8..].copy_from_slice(&lo.to_be_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_stamp_same_ids_and_ids_differ() {
        let s = pb::Stamp {
            time_unix_ns: 1,
            id_seed_hi: 42,
            id_seed_lo: 7,
        };
        let (mut a, mut b) = (IdGen::new(&s), IdGen::new(&s));
        let (a1, a2) = (a.next_uuid(), a.next_uuid());
        assert_eq!(a1, b.next_uuid());
        assert_ne!(a1, a2);
        assert_eq!(uuid::Uuid::parse_str(&a1).map(|u| u.get_version_num()).ok(), Some(4));
    }
}
