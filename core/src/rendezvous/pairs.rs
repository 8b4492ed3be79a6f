//! The pairs of daemons the server introduced: the only pairs its relay forwards between (as
//! Tailscale's DERP relays only between authorised peers). A pair stands while both daemons'
//! registrations do; a daemon that registers again (after a server restart, or a lapsed lease)
//! asks for its introductions again.

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::PublicKey;

/// Most daemons one daemon may have been introduced to at once; beyond it, lookups and peer
/// requests that would add a pair fail with `TooMany` until some of those registrations end.
pub const MAX_INTRODUCED_PER_KEY: usize = 4096;

/// Introduced pairs, indexed both ways.
#[derive(Debug, Default)]
pub(crate) struct Pairs {
    by_key: BTreeMap<PublicKey, BTreeSet<PublicKey>>,
}

impl Pairs {
    /// Whether `a` and `b` were introduced to each other.
    pub(crate) fn contains(&self, a: &PublicKey, b: &PublicKey) -> bool {
        self.by_key.get(a).is_some_and(|peers| peers.contains(b))
    }

    /// Whether `a` and `b` may be introduced: they already are, or both have room.
    pub(crate) fn allows(&self, a: &PublicKey, b: &PublicKey) -> bool {
        let room = |k: &PublicKey| {
            self.by_key
                .get(k)
                .is_none_or(|peers| peers.len() < MAX_INTRODUCED_PER_KEY)
        };
        self.contains(a, b) || (room(a) && room(b))
    }

    /// Records that `a` and `b` were introduced.
    pub(crate) fn insert(&mut self, a: PublicKey, b: PublicKey) {
        self.by_key.entry(a).or_default().insert(b);
        self.by_key.entry(b).or_default().insert(a);
    }

    /// Forgets every pair `key` is part of (its registration ended or changed tenant).
    /// The daemons `key` was introduced to.
    pub(crate) fn peers_of(&self, key: &PublicKey) -> Vec<PublicKey> {
        self.by_key
            .get(key)
            .map(|peers| peers.iter().copied().collect())
            .unwrap_or_default()
    }

    pub(crate) fn remove_key(&mut self, key: &PublicKey) {
        let Some(peers) = self.by_key.remove(key) else {
            return;
        };
        for peer in peers {
            if let Some(theirs) = self.by_key.get_mut(&peer) {
                theirs.remove(key);
                if theirs.is_empty() {
                    self.by_key.remove(&peer);
                }
            }
        }
    }

    /// Daemons with at least one pair.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn key(n: u32) -> PublicKey {
        let mut bytes = [7u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        SecretKey::from_bytes(bytes).public_key()
    }

    #[test]
    fn pairs_stand_both_ways_until_either_side_goes() {
        let mut p = Pairs::default();
        p.insert(key(1), key(2));
        p.insert(key(1), key(3));
        assert!(p.contains(&key(2), &key(1)) && p.contains(&key(1), &key(3)));
        assert!(!p.contains(&key(2), &key(3)));
        p.remove_key(&key(1));
        assert!(!p.contains(&key(2), &key(1)) && !p.contains(&key(3), &key(1)));
        assert_eq!(p.keys(), 0, "nothing left behind");
    }

    #[test]
    fn one_key_holds_at_most_the_cap() {
        let mut p = Pairs::default();
        let hub = key(0);
        for n in 1..=MAX_INTRODUCED_PER_KEY as u32 {
            assert!(p.allows(&hub, &key(n)));
            p.insert(hub, key(n));
        }
        let extra = key(MAX_INTRODUCED_PER_KEY as u32 + 1);
        assert!(!p.allows(&hub, &extra), "over the cap");
        assert!(p.allows(&hub, &key(1)), "an existing pair stays allowed");
    }
}
