//! The rendezvous roles of an endpoint, riding on ordinary sessions: a daemon's registration
//! and service lookups (which end in hole punching), and a server's registry.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Endpoint;
use crate::config::RendezvousConfig;
use crate::crypto::PublicKey;
use crate::error::CloseReason;
use crate::event::Event;
use crate::rendezvous::{
    Client, ClientConfig, ClientEvent, ClientMessage, ServerMessage, ServiceName,
};
use crate::session::Note;
use crate::timer::Timer;
use crate::wire::control::CONTROL_VERSION;

/// First delay before reconnecting to a server whose session ended; doubles up to
/// [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// A daemon's side: its client of the rendezvous server and what it asked for.
pub(super) struct Daemon {
    pub(super) config: RendezvousConfig,
    pub(super) client: Client,
    /// When to (re)connect the session to the server, if it is down.
    connect_at: Option<Instant>,
    backoff: Duration,
    /// Outstanding lookups: request id to the service asked for.
    lookups: BTreeMap<u64, ServiceName>,
    /// Services resolved to the daemon exposing them; `ServiceReady` once its session is up.
    resolved: BTreeMap<ServiceName, PublicKey>,
}

impl Daemon {
    pub(super) fn new(config: RendezvousConfig, seed: u64, now: Instant) -> Self {
        let client = new_client(&config, Vec::new(), seed, now);
        Self {
            config,
            client,
            connect_at: Some(now),
            backoff: RECONNECT_MIN,
            lookups: BTreeMap::new(),
            resolved: BTreeMap::new(),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        [self.connect_at, self.client.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map(|at| (at, Timer::LeaseRenew))
    }
}

fn client_config(config: &RendezvousConfig, services: Vec<ServiceName>) -> ClientConfig {
    let mut client_config = ClientConfig::new(config.token.clone());
    client_config.services = services;
    client_config.host_candidates = config.host_candidates.clone();
    client_config
}

/// Checks that a daemon could register `services` with `config` (token length, how many
/// services); `expose` refuses what would not be.
pub(super) fn check(
    config: &RendezvousConfig,
    services: Vec<ServiceName>,
    now: Instant,
) -> Result<(), String> {
    Client::new(client_config(config, services), 0, now)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn new_client(
    config: &RendezvousConfig,
    services: Vec<ServiceName>,
    seed: u64,
    now: Instant,
) -> Client {
    // `expose` checked these services; the token was checked when the endpoint was made.
    Client::new(client_config(config, services), seed, now).unwrap_or_else(|_| {
        Client::new(ClientConfig::new(String::new()), seed, now)
            .expect("an empty configuration is valid")
    })
}

fn body(encoded: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + encoded.len());
    out.push(CONTROL_VERSION);
    out.extend(encoded);
    out
}

impl Endpoint {
    /// Acts on what sessions noted during the last call (sessions up or down, rendezvous
    /// messages) and moves the rendezvous roles' output onto sessions and into events.
    pub(super) fn after(&mut self, now: Instant) {
        loop {
            while let Some(note) = self.out.notes.pop_front() {
                self.on_note(now, note);
            }
            self.pump_rendezvous(now);
            self.send_relayed(now);
            if self.out.notes.is_empty() {
                break;
            }
        }
        self.settle();
    }

    fn on_note(&mut self, now: Instant, note: Note) {
        let server_key = self.daemon.as_ref().map(|d| d.config.server_key);
        match note {
            Note::Up(key) if Some(key) == server_key => {
                let daemon = self.daemon.as_mut().expect("server_key came from it");
                daemon.backoff = RECONNECT_MIN;
                daemon.client.start(now);
            }
            Note::Up(key) => self.announce_ready(key),
            Note::Down(key, _) if Some(key) == server_key => {
                let daemon = self.daemon.as_mut().expect("server_key came from it");
                if daemon.client.is_registered() {
                    self.out.events.push_back(Event::RegistrationLost);
                }
                daemon.client.session_lost(now);
                daemon.connect_at = Some(now + daemon.backoff);
                daemon.backoff = (daemon.backoff * 2).min(RECONNECT_MAX);
            }
            Note::Down(key, reason) => self.on_peer_down(now, key, reason),
            Note::Rendezvous(key, bytes) => self.on_rendezvous_message(now, key, &bytes),
            Note::Relay { via, peer, packet } => self.on_relay(now, via, peer, &packet),
            Note::RelaySilent(_) => {
                // The server may have restarted without our noticing (it answers nothing to
                // a session it forgot): a handshake finds out, as a new instance if so, and
                // the daemon registers again.
                if let Some(key) = server_key {
                    let (mut ctx, sessions) = self.parts();
                    if let Some(server) = sessions.get_mut(&key) {
                        server.start_handshake(&mut ctx, now);
                    }
                }
            }
        }
    }

    fn on_rendezvous_message(&mut self, now: Instant, key: PublicKey, bytes: &[u8]) {
        let Some((&CONTROL_VERSION, encoded)) = bytes.split_first() else {
            self.out.stats.dropped_bad_payload += 1;
            return;
        };
        if let Some(daemon) = self.daemon.as_mut().filter(|d| d.config.server_key == key) {
            match ServerMessage::decode(encoded) {
                Ok(msg) => daemon.client.handle_message(now, msg),
                Err(_) => self.out.stats.dropped_bad_payload += 1,
            }
            return;
        }
        let addr = self.sessions.get(&key).map(|s| s.path().addr());
        match (self.server.as_mut(), ClientMessage::decode(encoded), addr) {
            (Some(server), Ok(msg), Some(addr)) => server.handle_message(now, key, addr, msg),
            _ => self.out.stats.dropped_bad_payload += 1,
        }
    }

    /// Sends the server's and the client's messages, and turns the client's events into
    /// punching and application events.
    fn pump_rendezvous(&mut self, now: Instant) {
        if let Some(server) = self.server.as_mut() {
            let mut outgoing = Vec::new();
            while let Some((key, msg)) = server.poll_message() {
                outgoing.push((key, body(msg.encode())));
            }
            while let Some(event) = server.poll_event() {
                self.out.events.push_back(Event::Rendezvous(event));
            }
            for (key, bytes) in outgoing {
                self.send_rendezvous(now, key, &bytes);
            }
        }
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        let server_key = daemon.config.server_key;
        let mut outgoing = Vec::new();
        while let Some(msg) = daemon.client.poll_message() {
            outgoing.push(body(msg.encode()));
        }
        let mut events = Vec::new();
        while let Some(event) = daemon.client.poll_event() {
            events.push(event);
        }
        for bytes in outgoing {
            self.send_rendezvous(now, server_key, &bytes);
        }
        for event in events {
            self.on_client_event(now, event);
        }
    }

    fn send_rendezvous(&mut self, now: Instant, key: PublicKey, bytes: &[u8]) {
        let (mut ctx, sessions) = self.parts();
        // Without a session the message is lost; the rendezvous roles retransmit.
        if let Some(session) = sessions.get_mut(&key) {
            session.send_rendezvous(&mut ctx, now, bytes);
        }
    }

    fn on_client_event(&mut self, now: Instant, event: ClientEvent) {
        let daemon = self
            .daemon
            .as_mut()
            .expect("only a daemon has client events");
        match event {
            ClientEvent::Registered { reflexive, .. } => {
                self.out.events.push_back(Event::Registered { reflexive })
            }
            ClientEvent::RegistrationFailed { code, detail } => {
                let reason = format!("{code:?}: {detail}");
                self.out
                    .events
                    .push_back(Event::RegistrationFailed { reason });
            }
            ClientEvent::Introduced {
                request,
                peer,
                candidates,
                ..
            } => {
                if let Some(service) = request.and_then(|r| daemon.lookups.remove(&r)) {
                    daemon.resolved.insert(service, peer);
                }
                // Both sides punch toward each other; the session's tie-break picks one
                // handshake if both get through.
                let relay = Some((daemon.config.server_addr, daemon.config.route));
                if self.punch_with(now, peer, candidates, relay).is_ok()
                    && self.sessions.get(&peer).is_some_and(|s| s.is_connected())
                {
                    self.announce_ready(peer);
                }
            }
            ClientEvent::RequestFailed {
                request,
                code,
                detail,
            } => {
                if let Some(service) = daemon.lookups.remove(&request) {
                    let reason = format!("{code:?}: {detail}");
                    self.out
                        .events
                        .push_back(Event::ServiceFailed { service, reason });
                }
            }
            ClientEvent::LeaseLost => self.out.events.push_back(Event::RegistrationLost),
        }
    }

    /// Tells the application about every service resolved to `key`, now that its session is up.
    fn announce_ready(&mut self, key: PublicKey) {
        let (Some(daemon), Some(session)) = (self.daemon.as_ref(), self.sessions.get(&key)) else {
            return;
        };
        let peer = session.id;
        for (service, _) in daemon.resolved.iter().filter(|(_, k)| **k == key) {
            self.out.events.push_back(Event::ServiceReady {
                service: service.clone(),
                peer,
            });
        }
    }

    /// A session to a daemon serving us ended: look its services up again (it may come back
    /// at another address, or through another path), unless we closed it ourselves.
    fn on_peer_down(&mut self, now: Instant, key: PublicKey, reason: CloseReason) {
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        if reason == CloseReason::Local {
            daemon.resolved.retain(|_, k| *k != key);
            return;
        }
        let lost: Vec<ServiceName> = daemon
            .resolved
            .iter()
            .filter(|(_, k)| **k == key)
            .map(|(s, _)| s.clone())
            .collect();
        for service in lost {
            daemon.resolved.remove(&service);
            let request = daemon.client.lookup(now, service.clone());
            daemon.lookups.insert(request, service);
        }
    }

    /// Reconnects the session to the rendezvous server when it is due.
    pub(super) fn rendezvous_timeout(&mut self, now: Instant) {
        if let Some(daemon) = self.daemon.as_mut() {
            if daemon.connect_at.is_some_and(|at| at <= now) {
                daemon.connect_at = None;
                let (key, addr) = (daemon.config.server_key, daemon.config.server_addr);
                let _ = self.connect(now, key, addr);
            }
            let daemon = self.daemon.as_mut().expect("checked above");
            if daemon.client.poll_timeout().is_some_and(|at| at <= now) {
                daemon.client.handle_timeout(now);
            }
        }
        if let Some(server) = self.server.as_mut() {
            if server.poll_timeout().is_some_and(|at| at <= now) {
                server.handle_timeout(now);
            }
        }
    }

    /// Asks the rendezvous server for the daemon exposing `service`. Either
    /// [`Event::ServiceReady`] follows, once a session to that daemon is up (punched direct,
    /// and again after any reconnect), or [`Event::ServiceFailed`] with the server's reason.
    pub fn connect_service(
        &mut self,
        now: Instant,
        service: ServiceName,
    ) -> Result<(), crate::error::ServiceError> {
        let daemon = self
            .daemon
            .as_mut()
            .ok_or(crate::error::ServiceError::NoRendezvous)?;
        if let Some(key) = daemon.resolved.get(&service).copied() {
            if self.sessions.get(&key).is_some_and(|s| s.is_connected()) {
                self.announce_ready(key);
                return Ok(());
            }
        }
        let daemon = self.daemon.as_mut().expect("checked above");
        let request = daemon.client.lookup(now, service.clone());
        daemon.lookups.insert(request, service);
        self.after(now);
        Ok(())
    }

    /// Re-registers with the current set of exposed services (after `expose`/`unexpose`).
    pub(super) fn republish(&mut self, now: Instant) {
        let services: Vec<ServiceName> = self.exposed.names().cloned().collect();
        let seed = self.rng.u64();
        let server_up = self.daemon.as_ref().is_some_and(|d| {
            self.sessions
                .get(&d.config.server_key)
                .is_some_and(|s| s.is_connected())
        });
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        daemon.client = new_client(&daemon.config, services, seed, now);
        if server_up {
            daemon.client.start(now);
        }
        // The new client knows nothing of the old one's requests: ask again.
        let pending = std::mem::take(&mut daemon.lookups);
        for service in pending.into_values() {
            let request = daemon.client.lookup(now, service.clone());
            daemon.lookups.insert(request, service);
        }
        self.after(now);
    }
}
