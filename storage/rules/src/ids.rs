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

/// The stamp of the command at `position` in an entry's batch: the entry's time, and id entropy
/// of its own (the first command keeps the entry's, so a batch of one decides exactly as an entry
/// carrying that one command did before batches).
pub fn command_stamp(stamp: &pb::Stamp, position: usize) -> pb::Stamp {
    if position == 0 {
        return *stamp;
    }
    let mut state = stamp.id_seed_hi ^ (position as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let hi = splitmix64(&mut state);
    let lo = splitmix64(&mut state) ^ stamp.id_seed_lo;
    pb::Stamp {
        time_unix_ns: stamp.time_unix_ns,
        id_seed_hi: hi,
        id_seed_lo: lo,
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

    #[test]
    fn commands_of_a_batch_draw_distinct_ids() {
        let s = pb::Stamp {
            time_unix_ns: 5,
            id_seed_hi: 42,
            id_seed_lo: 7,
        };
        assert_eq!(command_stamp(&s, 0), s);
        let ids: std::collections::BTreeSet<String> =
            (0..64).map(|i| IdGen::new(&command_stamp(&s, i)).next_uuid()).collect();
        assert_eq!(ids.len(), 64);
        assert_eq!(command_stamp(&s, 3), command_stamp(&s, 3));
        assert_eq!(command_stamp(&s, 3).time_unix_ns, 5);
    }
}
