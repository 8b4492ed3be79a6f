//! The connecting daemons introduced to each path: what a path's limit of connections
//! (`burrow admin create PATH --max-connections N`) counts.
//!
//! The server sees introductions, not sessions: an introduction stands while both daemons
//! stay registered (as the relay's pairs do), so a path's connections are the distinct
//! daemons that looked it up and were introduced to a destination that is still registered.
//! A daemon that stops, unregisters, loses its tokens or moves to another tenant frees its
//! place at once; looking the path up again while it holds one takes no second place.

use std::collections::{BTreeMap, BTreeSet};

use super::super::name::ServiceName;
use crate::crypto::PublicKey;

/// Standing introductions per path.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    /// Per (registry tenant, path): (connecting daemon, destination) of every introduction.
    by_path: BTreeMap<(String, ServiceName), BTreeSet<(PublicKey, PublicKey)>>,
}

impl Connections {
    /// How many distinct connecting daemons `name` of `tenant` has now.
    pub(crate) fn count(&self, tenant: &str, name: &ServiceName) -> usize {
        let Some(set) = self.by_path.get(&(tenant.to_string(), name.clone())) else {
            return 0;
        };
        // Ordered by source, so a source's introductions are next to each other.
        let mut sources: Vec<&PublicKey> = set.iter().map(|(s, _)| s).collect();
        sources.dedup();
        sources.len()
    }

    /// Whether `source` holds a place on `name` of `tenant` already.
    pub(crate) fn holds(&self, tenant: &str, name: &ServiceName, source: &PublicKey) -> bool {
        self.by_path
            .get(&(tenant.to_string(), name.clone()))
            .is_some_and(|set| set.iter().any(|(s, _)| s == source))
    }

    /// The connecting daemons introduced to `name` of `tenant`, in key order.
    pub(crate) fn sources(&self, tenant: &str, name: &ServiceName) -> Vec<PublicKey> {
        let Some(set) = self.by_path.get(&(tenant.to_string(), name.clone())) else {
            return Vec::new();
        };
        let mut sources: Vec<PublicKey> = set.iter().map(|(s, _)| *s).collect();
        sources.dedup();
        sources
    }

    /// Records that `source` was introduced to `destination` for `name` of `tenant`.
    pub(crate) fn insert(
        &mut self,
        tenant: &str,
        name: ServiceName,
        source: PublicKey,
        destination: PublicKey,
    ) {
        self.by_path
            .entry((tenant.to_string(), name))
            .or_default()
            .insert((source, destination));
    }

    /// Frees the place `source` holds on `name` of `tenant` (its last session for the path
    /// ended), if it holds one.
    pub(crate) fn remove_source(&mut self, tenant: &str, name: &ServiceName, source: &PublicKey) {
        let key = (tenant.to_string(), name.clone());
        if let Some(set) = self.by_path.get_mut(&key) {
            set.retain(|(s, _)| s != source);
            if set.is_empty() {
                self.by_path.remove(&key);
            }
        }
    }

    /// Ends the introductions of `source` to `destination`, on every path (the destination's
    /// session with it ended). Visits only the paths that have connections.
    pub(crate) fn remove_pair(&mut self, source: &PublicKey, destination: &PublicKey) {
        self.by_path.retain(|_, set| {
            set.remove(&(*source, *destination));
            !set.is_empty()
        });
    }

    /// Ends every introduction `key` is part of, on either side.
    pub(crate) fn remove_key(&mut self, key: &PublicKey) {
        self.by_path.retain(|_, set| {
            set.retain(|(s, d)| s != key && d != key);
            !set.is_empty()
        });
    }

    /// Forgets path `name` of `tenant` (deleted).
    pub(crate) fn remove_path(&mut self, tenant: &str, name: &ServiceName) {
        self.by_path.remove(&(tenant.to_string(), name.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn key(n: u8) -> PublicKey {
        SecretKey::from_bytes([n; 32]).public_key()
    }

    #[test]
    fn a_source_counts_once_and_leaves_with_either_side() {
        let mut c = Connections::default();
        let ssh = ServiceName::parse("/home/ssh").unwrap();
        c.insert("d:acme", ssh.clone(), key(1), key(9));
        c.insert("d:acme", ssh.clone(), key(1), key(8));
        c.insert("d:acme", ssh.clone(), key(2), key(9));
        assert_eq!(c.count("d:acme", &ssh), 2);
        assert_eq!(c.count("d:other", &ssh), 0, "tenants apart");
        assert!(c.holds("d:acme", &ssh, &key(1)));
        c.remove_key(&key(9));
        assert_eq!(
            c.count("d:acme", &ssh),
            1,
            "key 1 still introduced to key 8"
        );
        c.remove_key(&key(1));
        assert_eq!(c.count("d:acme", &ssh), 0);
        assert!(c.by_path.is_empty(), "nothing left behind");
        c.insert("d:acme", ssh.clone(), key(3), key(9));
        c.remove_path("d:acme", &ssh);
        assert!(c.by_path.is_empty());
        // A source frees only its own place, on its own tenant's path.
        c.insert("d:acme", ssh.clone(), key(4), key(9));
        c.insert("d:acme", ssh.clone(), key(5), key(9));
        c.remove_source("d:other", &ssh, &key(4));
        c.remove_source("d:acme", &ssh, &key(6));
        assert_eq!(c.count("d:acme", &ssh), 2);
        c.remove_source("d:acme", &ssh, &key(4));
        assert_eq!(c.sources("d:acme", &ssh), [key(5)]);
        c.remove_source("d:acme", &ssh, &key(5));
        assert!(c.by_path.is_empty());
        // A destination's report ends only that source's introductions to it.
        let web = ServiceName::parse("/web").unwrap();
        c.insert("d:acme", ssh.clone(), key(4), key(9));
        c.insert("d:acme", web.clone(), key(4), key(9));
        c.insert("d:acme", web.clone(), key(4), key(8));
        c.remove_pair(&key(4), &key(7));
        c.remove_pair(&key(9), &key(4));
        assert_eq!(c.count("d:acme", &ssh) + c.count("d:acme", &web), 2);
        c.remove_pair(&key(4), &key(9));
        assert_eq!(c.count("d:acme", &ssh), 0);
        assert!(c.holds("d:acme", &web, &key(4)), "still through key 8");
    }
}
