//! One gRPC channel per remote address (another node, or a cell), made on first use and shared by
//! every call to that address. The table is bounded by what is alive: [`Channels::retain`] drops
//! the channels of addresses that left the membership or the cell list, so a long-lived node does
//! not keep a channel (and its reconnect attempts) for every address it ever talked to.

use std::collections::HashMap;
use std::sync::Mutex;

/// The channels by address; `C` is the channel type (a plain or a credential-wrapped one).
pub struct Channels<C> {
    map: Mutex<HashMap<String, C>>,
}

impl<C> Default for Channels<C> {
    fn default() -> Self {
        Self { map: Mutex::default() }
    }
}

impl<C: Clone> Channels<C> {
    /// The channel to `addr`, made by `make` when there is none yet (a failed `make` stores nothing).
    pub fn get_or_make<E>(&self, addr: &str, make: impl FnOnce() -> Result<C, E>) -> Result<C, E> {
        let mut map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let channel = make()?;
        map.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Drops the channels of the addresses `keep` says are gone; how many were dropped. A call
    /// still holding a clone finishes on it; the next call to that address makes a new one.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> usize {
        let mut map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = map.len();
        map.retain(|addr, _| keep(addr));
        before - map.len()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_channel_per_address_until_the_address_is_gone() {
        let channels: Channels<u32> = Channels::default();
        let mut made = 0;
        for addr in ["a:1", "b:2", "a:1", "c:3", "b:2"] {
            channels
                .get_or_make(addr, || {
                    made += 1;
                    Ok::<_, ()>(made)
                })
                .unwrap_or_default();
        }
        assert_eq!((made, channels.len()), (3, 3), "a channel is made once per address");
        assert_eq!(channels.get_or_make("a:1", || Err("not called")), Ok(1));
        assert_eq!(
            channels.get_or_make("d:4", || Err::<u32, _>("bad address")),
            Err("bad address")
        );
        assert_eq!(channels.len(), 3, "a failed make stores nothing");

        assert_eq!(channels.retain(|addr| addr != "b:2"), 1);
        assert_eq!(channels.len(), 2);
        assert_eq!(
            channels.get_or_make("b:2", || Ok::<_, ()>(9)),
            Ok(9),
            "made anew after it went"
        );
        assert_eq!(channels.retain(|_| false), 3);
        assert!(channels.is_empty());
    }
}
