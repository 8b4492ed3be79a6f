//! What the application asks of a daemon's rendezvous role: pins, lookups, peer meetings,
//! a master's commands, path tokens, and the set of services registered with the server.

use std::time::Instant;

use super::Endpoint;
use crate::crypto::PublicKey;
use crate::error::ServiceError;
use crate::path::RoutePolicy;
use crate::rendezvous::ServiceName;

impl Endpoint {
    /// Pins `key` for `service`: a lookup that names another key is refused, as for a pin
    /// given in [`crate::config::RendezvousConfig::pinned`]. A different key remembered for
    /// the service is forgotten, so the next lookup asks the server again.
    pub fn pin_service(
        &mut self,
        service: ServiceName,
        key: PublicKey,
    ) -> Result<(), crate::error::ServiceError> {
        let daemon = self
            .daemon
            .as_mut()
            .ok_or(crate::error::ServiceError::NoRendezvous)?;
        if daemon.resolved.get(&service).is_some_and(|k| *k != key) {
            daemon.resolved.remove(&service);
        }
        daemon.config.pinned.insert(service, key);
        Ok(())
    }

    /// Asks the rendezvous server for the daemon exposing `service`. Either
    /// [`crate::Event::ServiceReady`] follows, once a session to that daemon is up (punched direct,
    /// and again after any reconnect), or [`crate::Event::ServiceFailed`] with the server's reason.
    pub fn connect_service(
        &mut self,
        now: Instant,
        service: ServiceName,
    ) -> Result<(), crate::error::ServiceError> {
        let daemon = self
            .daemon
            .as_mut()
            .ok_or(crate::error::ServiceError::NoRendezvous)?;
        if let Some(key) = daemon.config.peer_services.get(&service).copied() {
            // Reached through a daemon met in peer mode: no lookup, the meeting serves it.
            daemon.resolved.insert(service, key);
            return self.meet(now, key);
        }
        if let Some(key) = daemon.resolved.get(&service).copied() {
            if self.sessions.get(&key).is_some_and(|s| s.is_connected()) {
                self.announce_ready(key);
                return Ok(());
            }
        }
        let daemon = self.daemon.as_mut().expect("checked above");
        let route = daemon.own_route(&service);
        let request = daemon.client.lookup_with_route(now, service.clone(), route);
        daemon.lookups.insert(request, service);
        self.after(now);
        Ok(())
    }

    /// The route policy of a service we connect to: ours combined with the exposing side's
    /// once an introduction told it, else ours (the `[[connect]]`'s or the daemon's).
    pub fn service_route(&self, service: &ServiceName) -> Option<RoutePolicy> {
        let daemon = self.daemon.as_ref()?;
        let own = daemon.own_route(service);
        Some(daemon.routes.get(service).copied().unwrap_or(own))
    }

    /// The daemons this one meets in peer mode (its `[[peer]]`s).
    pub fn configured_peers(&self) -> Vec<PublicKey> {
        let daemon = self.daemon.as_ref();
        daemon.map_or_else(Vec::new, |d| d.config.peers.keys().copied().collect())
    }

    /// Asks the server to introduce us to every daemon of
    /// [`crate::config::RendezvousConfig::peers`] (peer mode; each must ask for us too).
    /// The node does it at start.
    pub fn meet_configured(&mut self, now: Instant) {
        for key in self.configured_peers() {
            let _ = self.meet(now, key);
        }
    }

    /// The key of the daemon `service` was resolved to (a daemon's connected services).
    pub fn resolved(&self, service: &ServiceName) -> Option<PublicKey> {
        self.daemon.as_ref()?.resolved.get(service).copied()
    }

    /// Asks the rendezvous server to introduce us to the daemon holding `key`, which must
    /// ask for us too (peer mode: each side names the other). Either [`crate::Event::PeerReady`]
    /// follows, once a session to it is up (punched direct or relayed, as the route policy
    /// allows, and again after any reconnect), or [`crate::Event::PeerFailed`] when the server
    /// refused or the other side did not ask in time.
    pub fn meet(&mut self, now: Instant, key: PublicKey) -> Result<(), ServiceError> {
        if key == self.public_key {
            return Err(ServiceError::Invalid("cannot meet our own key".into()));
        }
        let daemon = self.daemon.as_mut().ok_or(ServiceError::NoRendezvous)?;
        daemon.peers.insert(key);
        // Asking again for a peer already met and connected answers at once. A session that
        // is up for another reason (a lookup) is no meeting: the server is asked, because the
        // meeting is what grants the peer its `allow` here and what the other side's own ask
        // waits for; the introduction then finds the session up and reports it ready.
        let met = daemon.met.contains(&key);
        if met && self.sessions.get(&key).is_some_and(|s| s.is_connected()) {
            self.announce_ready(key);
            return Ok(());
        }
        let daemon = self.daemon.as_mut().expect("checked above");
        let request = daemon.client.connect_peer(now, key);
        daemon.meetings.insert(request, key);
        self.after(now);
        Ok(())
    }

    /// Sends a tenant's master `command` to the rendezvous server with the `master` token,
    /// once registered. Returns the request id that [`crate::Event::AdminAnswered`] or
    /// [`crate::Event::AdminFailed`] will carry.
    ///
    /// # Errors
    /// [`ServiceError::NoRendezvous`] when the endpoint has no rendezvous server.
    pub fn admin(
        &mut self,
        now: Instant,
        master: String,
        command: crate::rendezvous::directory::AdminCommand,
    ) -> Result<u64, ServiceError> {
        let daemon = self.daemon.as_mut().ok_or(ServiceError::NoRendezvous)?;
        let request = daemon.client.admin(now, master, command);
        daemon.admins.insert(request);
        self.after(now);
        Ok(request)
    }

    /// Presents `tokens` as the registration's path tokens from now on (`burrow import`):
    /// registers again with them, and reports what the server granted, or why it refused
    /// them, as [`crate::Event::PathTokensSet`]. A refusal restores the previous tokens, so the
    /// registration never depends on a token the server did not accept.
    ///
    /// # Errors
    /// [`ServiceError::NoRendezvous`] when the endpoint has no rendezvous server;
    /// [`ServiceError::Invalid`] when a token is too long, there are more than
    /// one registration presents, or another change waits for its answer.
    pub fn set_path_tokens(
        &mut self,
        now: Instant,
        tokens: Vec<String>,
    ) -> Result<(), ServiceError> {
        let daemon = self.daemon.as_mut().ok_or(ServiceError::NoRendezvous)?;
        daemon
            .client
            .set_path_tokens(now, tokens.clone())
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        daemon.config.path_tokens = tokens;
        self.after(now);
        Ok(())
    }

    /// Tells the rendezvous server that this daemon's attachment of `service` (by its
    /// tenant's master or its own) failed, with why (`Some`, cut to
    /// [`crate::rendezvous::directory::MAX_ATTACH_ERROR_LEN`] bytes), or runs now (`None`):
    /// `burrow admin tree` and `daemons` show a failure until it runs, is detached, or the
    /// registration ends. Sent again after every registration while it stands. Nothing
    /// happens without a rendezvous server.
    pub fn report_attach(&mut self, now: Instant, service: ServiceName, failed: Option<String>) {
        if let Some(daemon) = self.daemon.as_mut() {
            daemon.client.report_attach(service, failed);
            self.after(now);
        }
    }

    /// The daemon no longer connects to `service` (its listener was removed): the server
    /// frees its place in the path's limit of connections, and a later connect looks the
    /// path up again. Nothing happens for a service that was not looked up.
    pub fn forget_service(&mut self, now: Instant, service: &ServiceName) {
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        if daemon.config.peer_services.contains_key(service) {
            return;
        }
        if daemon.resolved.remove(service).is_some() {
            daemon.client.disconnected(service.clone());
            self.after(now);
        }
    }

    /// What each path token of the latest registration does, as the server said, by the
    /// token's first 6 characters, in the order presented (empty until it said).
    #[must_use]
    pub fn path_token_uses(&self) -> Vec<(String, crate::rendezvous::TokenUse)> {
        self.daemon.as_ref().map_or_else(Vec::new, |d| {
            d.client
                .token_uses()
                .iter()
                .map(|(t, u)| (crate::rendezvous::token_start(t), u.clone()))
                .collect()
        })
    }

    /// Publishes the exposed services with `service` added with its route policy (`None`: as
    /// they are), after
    /// checking the server could take them. Nothing changes if it could not.
    pub(super) fn publish(
        &mut self,
        now: Instant,
        service: Option<(&ServiceName, RoutePolicy)>,
    ) -> Result<(), ServiceError> {
        let mut names: Vec<ServiceName> = self.exposed.names().cloned().collect();
        let mut routes: Vec<RoutePolicy> = names
            .iter()
            .map(|n| self.exposed.route(n).unwrap_or_default())
            .collect();
        if let Some((service, route)) = service {
            match names.iter().position(|n| n == service) {
                Some(at) => routes[at] = route,
                None => {
                    names.push(service.clone());
                    routes.push(route);
                }
            }
        }
        if let Some(daemon) = self.daemon.as_mut() {
            daemon
                .client
                .set_services(now, names, routes)
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        }
        Ok(())
    }
}
