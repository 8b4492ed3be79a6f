//! A daemon's routing changed at run time (a reloaded config): the daemons it meets in peer
//! mode, the services it reaches through them, and the route policy of each service it
//! connects to.

use std::collections::BTreeMap;
use std::time::Instant;

use super::Endpoint;
use crate::config::{MAX_PEERS, PeerConfig};
use crate::crypto::PublicKey;
use crate::error::ServiceError;
use crate::path::RoutePolicy;
use crate::rendezvous::ServiceName;

/// What [`Endpoint::set_routing`] sets: a config's `[[peer]]` entries and its
/// `[[connect]]`s' own routes (see [`crate::config::RendezvousConfig`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    /// Daemons met in peer mode, by key.
    pub peers: BTreeMap<PublicKey, PeerConfig>,
    /// Services reached through a daemon met in peer mode, by its key.
    pub peer_services: BTreeMap<ServiceName, PublicKey>,
    /// Route policies of connected services that set their own.
    pub connect_routes: BTreeMap<ServiceName, RoutePolicy>,
}

impl Endpoint {
    /// The routing in force (a daemon's; `None` for a server).
    pub fn routing(&self) -> Option<Routing> {
        let config = &self.daemon.as_ref()?.config;
        Some(Routing {
            peers: config.peers.clone(),
            peer_services: config.peer_services.clone(),
            connect_routes: config.connect_routes.clone(),
        })
    }

    /// Makes `routing` the daemon's from now on; returns what changed, in words.
    ///
    /// - A `[[peer]]` no longer listed, or listed with another `allow` or `route`, is let go:
    ///   its waiting meeting is forgotten, its grant withdrawn and its session closed
    ///   ([`crate::Event::SessionClosed`]). A changed one is then met again under its new
    ///   entry, as a new one is ([`Self::meet`]).
    /// - A service reached through a peer that changed (or no longer is) is looked up anew
    ///   at its next connection.
    /// - A connected service whose own route changed forgets its daemon and the route it
    ///   agreed with it: its next connection looks it up under the new policy. Sessions up
    ///   now keep their path (they may serve other services).
    ///
    /// # Errors
    /// [`ServiceError::NoRendezvous`] for a server; [`ServiceError::Invalid`] for more than
    /// [`MAX_PEERS`] peers or our own key among them (nothing changes then).
    pub fn set_routing(
        &mut self,
        now: Instant,
        routing: Routing,
    ) -> Result<Vec<String>, ServiceError> {
        if routing.peers.len() > MAX_PEERS {
            return Err(ServiceError::Invalid(format!(
                "at most {MAX_PEERS} peers are met in peer mode"
            )));
        }
        if routing.peers.contains_key(&self.public_key) {
            return Err(ServiceError::Invalid("cannot meet our own key".into()));
        }
        let daemon = self.daemon.as_mut().ok_or(ServiceError::NoRendezvous)?;
        let mut changed = Vec::new();
        let old_peers = std::mem::take(&mut daemon.config.peers);
        let gone: Vec<PublicKey> = old_peers
            .iter()
            .filter(|(k, c)| routing.peers.get(*k) != Some(*c))
            .map(|(k, _)| *k)
            .collect();
        let new: Vec<PublicKey> = routing
            .peers
            .iter()
            .filter(|(k, c)| old_peers.get(*k) != Some(*c))
            .map(|(k, _)| *k)
            .collect();
        // Services whose peer changed are resolved again.
        for (service, key) in &daemon.config.peer_services {
            if routing.peer_services.get(service) != Some(key) || gone.contains(key) {
                daemon.resolved.remove(service);
            }
        }
        daemon.config.peer_services = routing.peer_services;
        let old_routes = &daemon.config.connect_routes;
        let mut rerouted: Vec<ServiceName> = routing
            .connect_routes
            .iter()
            .filter(|(s, r)| old_routes.get(*s) != Some(*r))
            .map(|(s, _)| s.clone())
            .collect();
        rerouted.extend(
            old_routes
                .keys()
                .filter(|s| !routing.connect_routes.contains_key(*s))
                .cloned(),
        );
        for service in &rerouted {
            changed.push(format!("route of {service}"));
            daemon.routes.remove(service);
            if !daemon.config.peer_services.contains_key(service) {
                daemon.resolved.remove(service);
            }
        }
        daemon.config.connect_routes = routing.connect_routes;
        daemon.config.peers = routing.peers;
        for key in &gone {
            let daemon = self.daemon.as_mut().expect("checked above");
            daemon.peers.remove(key);
            daemon.met.remove(key);
            daemon.meetings.retain(|_, k| k != key);
            daemon.rejoins.retain(|_, k| k != key);
            self.access.revoke(key);
            if let Some(peer) = self.peer_of(key) {
                self.close(now, peer);
            }
            if !new.contains(key) {
                changed.push(format!("[[peer]] {key} let go"));
            }
        }
        for key in &new {
            self.meet(now, *key)?;
            let what = if gone.contains(key) {
                "met anew"
            } else {
                "met"
            };
            changed.push(format!("[[peer]] {key} {what}"));
        }
        Ok(changed)
    }
}
