//! Who may reach which exposed service: the destination's side of access control.
//!
//! A daemon's rendezvous server decides who may use a service: it introduces a source to the
//! destination only for a name the source's token may look up, and tells the destination which
//! key it introduced for which name. The destination keeps those grants here and enforces them
//! itself, so a key the server never introduced cannot get in by sending packets straight to
//! the daemon's port, and an introduced key reaches only the service it was introduced for.
//!
//! Under [`PeerPolicy::Authorized`] a key may complete a handshake with us if it is our
//! rendezvous server, holds a grant, is on the allow-list, or is a key we ourselves opened a
//! session to (a destination we looked up). A stream is accepted only for a service the key
//! holds a grant for (or any service, for allow-listed keys and peers met in peer mode).
//! Grants last as long as the key's session: when it ends, the source must be introduced again.
//! [`PeerPolicy::AnyKey`] admits everyone to everything (a rendezvous server, whose daemons
//! prove themselves with tokens, and endpoints used without a server).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::PeerPolicy;
use crate::crypto::PublicKey;
use crate::rendezvous::ServiceName;

/// Most keys holding grants at once. The server introduces keys only as sources ask, and each
/// grant lives as long as a session, so this is reached only past `max_sessions`; a grant
/// beyond it is refused (the source's handshake then fails and it asks again later).
pub(crate) const MAX_GRANTED_KEYS: usize = 65_536;
/// Most services one key is granted (a daemon exposes at most a few).
pub(crate) const MAX_SERVICES_PER_KEY: usize = 64;
/// Most fixed paths whose pinned keys we keep (a daemon exposes a few paths).
pub(crate) const MAX_PINNED_SERVICES: usize = 256;
/// Most keys whose refusal we remember having reported, so each is logged once.
const REPORTED_KEYS: usize = 1024;

/// What one key may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Grant {
    /// Every exposed service (a peer met in peer mode).
    All,
    /// These services (introduced by the server for them).
    Services(BTreeSet<ServiceName>),
}

/// The destination's access table: the policy, and the grants the rendezvous server and peer
/// mode made.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    policy: PeerPolicy,
    grants: BTreeMap<PublicKey, Grant>,
    /// Keys refused since the set was last cleared, so a flood logs one line per key.
    reported: BTreeSet<PublicKey>,
    /// The fixed paths we expose, with the client keys their server pinned: an introduced
    /// key reaches one only if it is pinned.
    pins: BTreeMap<ServiceName, BTreeSet<PublicKey>>,
}

impl Access {
    pub(crate) fn new(policy: PeerPolicy) -> Self {
        Self {
            policy,
            grants: BTreeMap::new(),
            reported: BTreeSet::new(),
            pins: BTreeMap::new(),
        }
    }

    /// Whether `key` may complete a handshake as initiator: admitted by policy, or holding a
    /// grant. (The endpoint also admits its server and keys it already has a session with.)
    pub(crate) fn admits(&self, key: &PublicKey) -> bool {
        match &self.policy {
            PeerPolicy::AnyKey => true,
            PeerPolicy::Authorized(allow) => allow.contains(key) || self.grants.contains_key(key),
        }
    }

    /// Whether `key` may open a stream to `service`.
    pub(crate) fn allows(&self, key: &PublicKey, service: &ServiceName) -> bool {
        match &self.policy {
            PeerPolicy::AnyKey => true,
            PeerPolicy::Authorized(allow) if allow.contains(key) => true,
            PeerPolicy::Authorized(_) => match self.grants.get(key) {
                Some(Grant::All) => true,
                Some(Grant::Services(set)) => {
                    set.contains(service)
                        && self.pins.get(service).is_none_or(|keys| keys.contains(key))
                }
                None => false,
            },
        }
    }

    /// Grants `key` access to `service` (`None`: to every service, for a peer met in peer
    /// mode). Returns false when a limit refused it.
    pub(crate) fn grant(&mut self, key: PublicKey, service: Option<ServiceName>) -> bool {
        if !self.grants.contains_key(&key) && self.grants.len() >= MAX_GRANTED_KEYS {
            return false;
        }
        let grant = self
            .grants
            .entry(key)
            .or_insert_with(|| Grant::Services(BTreeSet::new()));
        match (grant, service) {
            (Grant::All, _) => true,
            (grant, None) => {
                *grant = Grant::All;
                true
            }
            (Grant::Services(set), Some(service)) => {
                if set.len() >= MAX_SERVICES_PER_KEY && !set.contains(&service) {
                    return false;
                }
                set.insert(service);
                true
            }
        }
    }

    /// Grants `key` exactly `services` (a peer met in peer mode that its `[[peer]]` allows
    /// those): its sessions are admitted even when the list is empty, and its streams reach
    /// only those. Returns false when a limit refused it.
    pub(crate) fn grant_only(&mut self, key: PublicKey, services: &[ServiceName]) -> bool {
        if !self.grants.contains_key(&key) && self.grants.len() >= MAX_GRANTED_KEYS {
            return false;
        }
        let grant = self
            .grants
            .entry(key)
            .or_insert_with(|| Grant::Services(BTreeSet::new()));
        if let Grant::Services(set) = grant {
            for service in services {
                if set.len() >= MAX_SERVICES_PER_KEY {
                    return false;
                }
                set.insert(service.clone());
            }
        }
        true
    }

    /// Withdraws `key`'s grant for `service` alone (an all-services grant stays).
    pub(crate) fn revoke_service(&mut self, key: &PublicKey, service: &ServiceName) {
        if let Some(Grant::Services(set)) = self.grants.get_mut(key) {
            set.remove(service);
            if set.is_empty() {
                self.grants.remove(key);
            }
        }
    }

    /// Records that `service` is a fixed path admitting only `clients` through introductions
    /// (the server's latest word replaces the earlier one). Allow-listed keys and peers met
    /// in peer mode are not introduced and not held to it. At most [`MAX_PINNED_SERVICES`]
    /// paths are kept (a daemon exposes a few); past it, a new path's pins are ignored and
    /// only the server's own check holds for it. Returns whether they were kept.
    pub(crate) fn pin(&mut self, service: ServiceName, clients: Vec<PublicKey>) -> bool {
        if self.pins.len() >= MAX_PINNED_SERVICES && !self.pins.contains_key(&service) {
            return false;
        }
        self.pins.insert(service, clients.into_iter().collect());
        true
    }

    /// Whether `key` holds a grant for named services (the server introduced it to us as a
    /// source, or its `[[peer]]` entry lists them).
    pub(crate) fn is_source(&self, key: &PublicKey) -> bool {
        matches!(self.grants.get(key), Some(Grant::Services(_)))
    }

    /// Withdraws every grant of `key` (its session ended).
    pub(crate) fn revoke(&mut self, key: &PublicKey) {
        self.grants.remove(key);
    }

    /// Whether a refusal of `key` should be reported: true the first time (and again once the
    /// memory of reported keys has been cleared, after [`REPORTED_KEYS`] distinct keys).
    pub(crate) fn first_refusal(&mut self, key: PublicKey) -> bool {
        if self.reported.len() >= REPORTED_KEYS {
            self.reported.clear();
        }
        self.reported.insert(key)
    }

    /// Number of keys holding grants.
    #[cfg(test)]
    pub(crate) fn granted_keys(&self) -> usize {
        self.grants.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn key(n: u8) -> PublicKey {
        SecretKey::from_bytes([n; 32]).public_key()
    }

    fn name(s: &str) -> ServiceName {
        ServiceName::parse(s).unwrap()
    }

    fn authorized(allow: &[u8]) -> Access {
        Access::new(PeerPolicy::Authorized(
            allow.iter().map(|n| key(*n)).collect(),
        ))
    }

    #[test]
    fn any_key_admits_everyone_to_everything() {
        let access = Access::new(PeerPolicy::AnyKey);
        assert!(access.admits(&key(1)));
        assert!(access.allows(&key(1), &name("/a")));
    }

    #[test]
    fn a_stranger_is_admitted_to_nothing() {
        let access = authorized(&[]);
        assert!(!access.admits(&key(1)));
        assert!(!access.allows(&key(1), &name("/a")));
    }

    #[test]
    fn an_introduced_key_reaches_only_its_service() {
        let mut access = authorized(&[]);
        assert!(access.grant(key(1), Some(name("/a"))));
        assert!(access.admits(&key(1)));
        assert!(access.allows(&key(1), &name("/a")));
        assert!(!access.allows(&key(1), &name("/b")));
        assert!(!access.allows(&key(2), &name("/a")));
    }

    #[test]
    fn allow_listed_and_met_keys_reach_every_service() {
        let mut access = authorized(&[7]);
        assert!(access.admits(&key(7)));
        assert!(access.allows(&key(7), &name("/x")));
        access.grant(key(1), Some(name("/a")));
        access.grant(key(1), None);
        assert!(access.allows(&key(1), &name("/b")));
        // A later service grant does not narrow an all-services grant.
        access.grant(key(1), Some(name("/c")));
        assert!(access.allows(&key(1), &name("/b")));
    }

    #[test]
    fn a_fixed_path_admits_only_its_pinned_introduced_keys() {
        let mut a = authorized(&[9]);
        a.grant(key(1), Some(name("/ssh")));
        a.grant(key(2), Some(name("/ssh")));
        a.grant(key(3), None);
        assert!(a.pin(name("/ssh"), vec![key(1)]));
        assert!(a.allows(&key(1), &name("/ssh")));
        assert!(!a.allows(&key(2), &name("/ssh")), "introduced, not pinned");
        assert!(a.allows(&key(3), &name("/ssh")), "a peer met in peer mode");
        assert!(a.allows(&key(9), &name("/ssh")), "allow-listed");
        // The master reloads the path and the server pins key 2: key 1 is out.
        assert!(a.pin(name("/ssh"), vec![key(2)]));
        assert!(!a.allows(&key(1), &name("/ssh")) && a.allows(&key(2), &name("/ssh")));
        assert!(a.pin(name("/ssh"), Vec::new()));
        assert!(
            !a.allows(&key(2), &name("/ssh")),
            "none pinned: none admitted"
        );
        // Bounded.
        for i in 0..MAX_PINNED_SERVICES {
            a.pin(name(&format!("/p{i}")), Vec::new());
        }
        assert!(!a.pin(name("/one-more"), vec![key(1)]));
        assert!(a.pin(name("/ssh"), vec![key(1)]), "a known path is updated");
    }

    #[test]
    fn revoking_ends_every_grant_of_the_key() {
        let mut access = authorized(&[]);
        access.grant(key(1), Some(name("/a")));
        access.grant(key(1), Some(name("/b")));
        access.revoke(&key(1));
        assert!(!access.admits(&key(1)));
        assert_eq!(access.granted_keys(), 0);
    }

    #[test]
    fn revoking_one_service_keeps_the_others() {
        let mut access = authorized(&[]);
        access.grant(key(1), Some(name("/a")));
        access.grant(key(1), Some(name("/b")));
        access.revoke_service(&key(1), &name("/a"));
        assert!(!access.allows(&key(1), &name("/a")));
        assert!(access.allows(&key(1), &name("/b")));
        access.revoke_service(&key(1), &name("/b"));
        assert_eq!(access.granted_keys(), 0);
    }

    #[test]
    fn grants_are_bounded_per_key() {
        let mut access = authorized(&[]);
        for i in 0..MAX_SERVICES_PER_KEY {
            assert!(access.grant(key(1), Some(name(&format!("/s{i}")))));
        }
        assert!(!access.grant(key(1), Some(name("/one-more"))));
        // Granting one already held is not "more".
        assert!(access.grant(key(1), Some(name("/s0"))));
    }

    #[test]
    fn each_refused_key_is_reported_once() {
        let mut access = authorized(&[]);
        assert!(access.first_refusal(key(1)));
        assert!(!access.first_refusal(key(1)));
        assert!(access.first_refusal(key(2)));
    }
}
