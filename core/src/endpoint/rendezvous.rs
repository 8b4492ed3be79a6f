//! The rendezvous roles of an endpoint, riding on ordinary sessions: a daemon's registration,
//! service lookups and peer meetings (which end in hole punching), and a server's registry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::Endpoint;
use crate::config::RendezvousConfig;
use crate::crypto::PublicKey;
use crate::error::CloseReason;
use crate::event::Event;
use crate::path::{Path, RoutePolicy};
use crate::rendezvous::{
    Client, ClientConfig, ClientEvent, ClientMessage, ErrorCode, ServerMessage, ServiceName,
};
use crate::session::Note;
use crate::timer::Timer;
use crate::wire::control::{CONTROL_VERSION, CloseCode};

/// A daemon's side: its client of the rendezvous server (which keeps the registration, the
/// requests and the reconnect backoff) and what the application asked it for.
pub(super) struct Daemon {
    pub(super) config: RendezvousConfig,
    pub(super) client: Client,
    /// Outstanding lookups: request id to the service asked for.
    pub(super) lookups: BTreeMap<u64, ServiceName>,
    /// Services resolved to the daemon exposing them; `ServiceReady` once its session is up.
    pub(super) resolved: BTreeMap<ServiceName, PublicKey>,
    /// Outstanding peer-mode requests: request id to the peer asked for.
    pub(super) meetings: BTreeMap<u64, PublicKey>,
    /// Peers the server introduced to us as a meeting, while that session lives: asking to
    /// meet one of them again needs no server.
    pub(super) met: BTreeSet<PublicKey>,
    /// Peers the application asked to meet; `PeerReady` once a session to one is up.
    pub(super) peers: BTreeSet<PublicKey>,
    /// Our address as the server saw it at the last registration.
    pub(super) reflexive: Option<std::net::SocketAddr>,
    /// Outstanding requests to be introduced again to a peer we have a session with (after
    /// registering again): request id to the peer.
    pub(super) rejoins: BTreeMap<u64, PublicKey>,
    /// Outstanding master commands.
    pub(super) admins: BTreeSet<u64>,
    /// The effective route policy of each service we connect to, once introduced: ours
    /// combined with the exposing side's.
    pub(super) routes: BTreeMap<ServiceName, RoutePolicy>,
    /// The gateway's mapping of our port, when port mapping is on.
    pub(super) port_mapper: Option<crate::portmap::PortMapper>,
    /// The mapped address and whether it is announced, once judged against `reflexive`.
    pub(super) mapped: Option<(std::net::SocketAddrV4, Option<bool>)>,
    /// The protocol the gateway mapped it with.
    pub(super) mapped_by: Option<crate::portmap::Protocol>,
    /// Outstanding requests to publish an exposed service on the server's public ports.
    pub(super) publishing: BTreeMap<u64, ServiceName>,
    /// Since when and why the registration is lost, until registered again.
    pub(super) lost: Option<(Instant, String)>,
}

impl Daemon {
    pub(super) fn new(config: RendezvousConfig, seed: u64, now: Instant) -> Self {
        let mut client_config = ClientConfig::new(config.token.clone());
        client_config.host_candidates = config.host_candidates.clone();
        client_config.path_tokens = config.path_tokens.clone();
        // A token the server would refuse anyway: register without one, and let the server
        // say no.
        let client = Client::new(client_config, seed, now).unwrap_or_else(|_| {
            Client::new(ClientConfig::new(String::new()), seed, now)
                .expect("an empty configuration is valid")
        });
        Self {
            client,
            lookups: BTreeMap::new(),
            resolved: BTreeMap::new(),
            meetings: BTreeMap::new(),
            met: BTreeSet::new(),
            peers: BTreeSet::new(),
            rejoins: BTreeMap::new(),
            admins: BTreeSet::new(),
            publishing: BTreeMap::new(),
            reflexive: None,
            routes: BTreeMap::new(),
            port_mapper: config.port_mapping.map(|pm| {
                // PCP's mapping nonce, from the daemon's seed.
                let mut seed_bytes = [0x19; 32];
                seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
                let nonce = crate::rng::SeededRng::new(seed_bytes).bytes();
                let mut mapper = crate::portmap::PortMapper::new(
                    pm.gateway,
                    pm.client,
                    pm.internal_port,
                    nonce,
                    now,
                );
                mapper.upnp = pm.upnp;
                mapper
            }),
            mapped: None,
            mapped_by: None,
            lost: None,
            config,
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        let lease = self.client.poll_timeout().map(|at| (at, Timer::LeaseRenew));
        let mapping = self
            .port_mapper
            .as_ref()
            .and_then(crate::portmap::PortMapper::next_deadline)
            .map(|at| (at, Timer::PortMapping));
        lease.into_iter().chain(mapping).min()
    }

    /// Our own route policy for a service we connect to: the connect's, or the daemon's.
    pub(super) fn own_route(&self, service: &ServiceName) -> RoutePolicy {
        let own = self.config.connect_routes.get(service);
        own.copied().unwrap_or(self.config.route)
    }
}

/// Why a lookup answered with a key other than the pinned one was refused, and the fix.
fn key_changed(service: &ServiceName, pinned: PublicKey, offered: PublicKey) -> String {
    format!(
        "refused: the server named key {offered} for {service}, but {pinned} is pinned for it \
         (from the first connection, or given as its peer key); another daemon may have taken \
         the name. If the service's key changed on purpose, remove its line from \
         known_services in the state directory (or set its peer_key) and connect again"
    )
}

/// Why a connect whose route policy (`own`) and the exposing side's (`theirs`) allow no
/// common path fails, and the fix.
fn route_conflict(service: &ServiceName, theirs: RoutePolicy, own: RoutePolicy) -> String {
    format!(
        "{service} is exposed {} and this connect is {}: no path satisfies both; set \
         route = \"{theirs}\" or \"any\" on its [[connect]] (or --route), or change the \
         exposing side's",
        theirs.describe(),
        own.describe()
    )
}

/// The route policy a session to a peer takes when a service that wants `wanted` starts
/// using it: the stricter of `wanted` and the session's own (the session is shared by every
/// service between the two daemons), or why they cannot share it.
fn session_route(
    session: Option<&crate::session::Session>,
    wanted: RoutePolicy,
) -> Result<RoutePolicy, String> {
    let Some(session) = session.filter(|s| !s.closed) else {
        return Ok(wanted);
    };
    let combined = match session.punch.route() {
        Some(current) => current.combine(wanted).ok_or_else(|| {
            format!(
                "the session to its daemon is {} for another service, and this one is {}",
                current.describe(),
                wanted.describe()
            )
        })?,
        None => wanted,
    };
    let path = session.path();
    if session.is_connected() && !combined.allows(path) {
        let way = match path {
            Path::Direct(_) => "direct",
            Path::Relay(_) => "relayed",
        };
        return Err(format!(
            "the session to its daemon is {way} now (for another service), and this one is {}",
            combined.describe()
        ));
    }
    Ok(combined)
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
        self.after_unsettled(now);
        self.settle();
    }

    /// [`Self::after`] but for the deadlines, which stay stale until the next settle.
    pub(super) fn after_unsettled(&mut self, now: Instant) {
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
    }

    fn on_note(&mut self, now: Instant, note: Note) {
        let server_key = self.daemon.as_ref().map(|d| d.config.server_key);
        match note {
            Note::Up(key) if Some(key) == server_key => {
                let daemon = self.daemon.as_mut().expect("server_key came from it");
                daemon.client.start(now);
                if let Some(session) = self.sessions.get_mut(&key) {
                    // A killed server is noticed at the first unanswered keepalive.
                    session.pings_keepalive = true;
                }
            }
            Note::Up(key) => {
                if let Some(server) = self.server.as_mut() {
                    server.session_up(now, key);
                }
                self.announce_ready(key);
            }
            Note::Down(key, reason) if Some(key) == server_key => {
                let daemon = self.daemon.as_mut().expect("server_key came from it");
                if daemon.client.is_registered() {
                    let why = format!("the session to the rendezvous server ended: {reason}");
                    daemon.lost = Some((now, why));
                    self.out.events.push_back(Event::RegistrationLost);
                }
                daemon.client.session_lost(now);
            }
            Note::Down(key, reason) => {
                // Grants last as long as the session: a source must be introduced again. Not
                // when the session ended because the peer restarted: its new life's first
                // handshake is what revealed the restart, and the server introduced that new
                // life (granting it) before; the key is the same, and a withdrawal by the
                // server comes as its own message. The same when the peer had dropped the
                // session and a handshake started a new one (`PeerReset`).
                // A source's place in the paths' limits goes with its grant.
                if !matches!(reason, CloseReason::PeerRestarted | CloseReason::PeerReset) {
                    let source = self.access.is_source(&key);
                    self.access.revoke(&key);
                    if let Some(daemon) = self.daemon.as_mut() {
                        daemon.met.remove(&key);
                        if source {
                            daemon.client.source_left(key);
                        }
                    }
                }
                self.on_peer_down(now, key, reason);
            }
            Note::Rendezvous(key, bytes) => self.on_rendezvous_message(now, key, &bytes),
            Note::Relay {
                via,
                peer,
                mut packet,
            } => self.on_relay(now, via, peer, &mut packet),
            Note::LeftDirect(key) => self.reintroduce(now, key),
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
            (Some(server), Ok(msg), Some(addr)) => {
                server.handle_message(now, key, addr, msg, self.input_ttl);
            }
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
            let mut evicted = Vec::new();
            while let Some(key) = server.poll_eviction() {
                evicted.push(key);
            }
            for (key, bytes) in outgoing {
                self.send_rendezvous(now, key, &bytes);
            }
            for key in evicted {
                // Told, so an honest daemon with a bad token does not wait for a timeout.
                let (mut ctx, sessions) = self.parts();
                if let Some(session) = sessions.get_mut(&key) {
                    session.close(&mut ctx, now, CloseCode::Normal);
                    ctx.out.stats.closed_unregistered += 1;
                }
                self.reap();
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
                daemon.reflexive = Some(reflexive);
                daemon.lost = None;
                self.out.events.push_back(Event::Registered { reflexive });
                self.refresh_introductions(now);
                self.announce_mapping(now);
                self.request_publications(now);
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
                service,
                candidates,
                route: theirs,
                ..
            } => {
                // The route policy the session takes for this introduction (see below).
                let mut route = self
                    .sessions
                    .get(&peer)
                    .and_then(|s| s.punch.route())
                    .unwrap_or(daemon.config.route);
                if let Some(service) = request.and_then(|r| daemon.lookups.remove(&r)) {
                    // ssh known_hosts: the first key met is pinned; another is refused.
                    if let Some(pinned) = daemon.config.pinned.get(&service) {
                        if *pinned != peer {
                            let reason = key_changed(&service, *pinned, peer);
                            self.out
                                .events
                                .push_back(Event::ServiceFailed { service, reason });
                            return;
                        }
                    }
                    // connet's rule: the stricter side wins; direct with relay is no path.
                    let own = daemon.own_route(&service);
                    let theirs = theirs.unwrap_or_default();
                    let wanted = own
                        .combine(theirs)
                        .ok_or_else(|| route_conflict(&service, theirs, own))
                        .and_then(|wanted| {
                            session_route(self.sessions.get(&peer), wanted).map(|r| (wanted, r))
                        });
                    let (wanted, session) = match wanted {
                        Ok(routes) => routes,
                        Err(reason) => {
                            let reason = format!("refused: {reason}");
                            self.out
                                .events
                                .push_back(Event::ServiceFailed { service, reason });
                            return;
                        }
                    };
                    route = session;
                    if !daemon.config.pinned.contains_key(&service) {
                        daemon.config.pinned.insert(service.clone(), peer);
                        self.out.events.push_back(Event::ServiceKeyPinned {
                            service: service.clone(),
                            key: peer,
                        });
                    }
                    daemon.routes.insert(service.clone(), wanted);
                    daemon.resolved.insert(service, peer);
                }
                // What the introduction authorises the peer to reach here: the service it
                // looked up (we did not ask: `request` is `None`), or everything if we asked
                // to meet it. Our own lookups and re-introductions grant nothing.
                let met = request.is_some_and(|r| daemon.meetings.remove(&r).is_some());
                if met {
                    daemon.met.insert(peer);
                }
                if let Some(r) = request {
                    daemon.rejoins.remove(&r);
                }
                if let (None, Some(service)) = (request, &service) {
                    // A peer looked up a service of ours: its route policy joins the
                    // session's. If they cannot share the session, the session keeps its
                    // own and the service's streams are refused on a path it does not allow.
                    let own = self.exposed.route(service).unwrap_or(daemon.config.route);
                    if let Ok(combined) = session_route(self.sessions.get(&peer), own) {
                        route = combined;
                    }
                }
                let configured = daemon.config.peers.get(&peer);
                if met {
                    // A `[[peer]]` sets its session's route; else the daemon's holds.
                    let own = configured
                        .and_then(|c| c.route)
                        .unwrap_or(daemon.config.route);
                    if let Ok(combined) = session_route(self.sessions.get(&peer), own) {
                        route = combined;
                    }
                }
                let grant = match (request, service) {
                    (None, Some(service)) => Some(Some(service)),
                    _ if met => Some(None),
                    _ => None,
                };
                let granted = grant.is_some();
                let allowed = match (grant, configured) {
                    // A `[[peer]]` lets it reach only what it lists.
                    (Some(None), Some(c)) => self.access.grant_only(peer, &c.allow),
                    (Some(grant), _) => self.access.grant(peer, grant),
                    (None, _) => true,
                };
                if !allowed {
                    self.out.stats.dropped_grant_limit += 1;
                    return;
                }
                // Both sides punch toward each other; the session's tie-break picks one
                // handshake if both get through. Only toward host candidates on a LAN we
                // share, whatever the server passed on.
                // And the peer's local ports on its reflexive IP, for a port-preserving NAT
                // whose mapping toward us is not the one the server saw.
                let preserved = crate::punch::candidates::preserved_ports(&candidates);
                let mut candidates = crate::punch::candidates::usable(
                    candidates,
                    daemon.reflexive,
                    &daemon.config.host_candidates,
                );
                for guess in preserved {
                    if !candidates.contains(&guess) {
                        candidates.push(guess);
                    }
                }
                let relay = Some((daemon.config.server_addr, route));
                if granted {
                    // A stream or flow the peer opened before this introduction reached us
                    // may be waiting for it.
                    self.admit_held_streams(now, &peer);
                    self.out
                        .events
                        .push_back(Event::AccessGranted { key: peer });
                }
                match self.punch_with(now, peer, candidates, relay, request.is_some()) {
                    Ok(_) if self.sessions.get(&peer).is_some_and(|s| s.is_connected()) => {
                        self.announce_ready(peer);
                    }
                    Ok(_) => {}
                    // No session will carry the grant: withdraw it with the attempt.
                    Err(_) if !self.sessions.contains_key(&peer) => self.access.revoke(&peer),
                    Err(_) => {}
                }
            }
            ClientEvent::Published {
                request,
                name,
                port,
            } => {
                let server_key = daemon.config.server_key;
                let at = std::net::SocketAddr::new(daemon.config.server_addr.ip(), port);
                if daemon.publishing.remove(&request).is_some()
                    && self.exposed.to_publish().any(|(n, _)| *n == name)
                {
                    // The server's streams may reach exactly the paths it publishes.
                    if self.access.grant(server_key, Some(name.clone())) {
                        self.admit_held_streams(now, &server_key);
                        self.out
                            .events
                            .push_back(Event::Published { service: name, at });
                    } else {
                        self.out.stats.dropped_grant_limit += 1;
                    }
                }
            }
            ClientEvent::RequestFailed {
                request,
                code,
                detail,
            } => {
                let reason = format!("{code:?}: {detail}");
                if let Some(service) = daemon.publishing.remove(&request) {
                    let server_key = daemon.config.server_key;
                    self.access.revoke_service(&server_key, &service);
                    if self.exposed.to_publish().any(|(n, _)| *n == service) {
                        self.out.events.push_back(Event::PublishRefused {
                            service,
                            reason: detail,
                        });
                    }
                } else if daemon.rejoins.remove(&request).is_some() {
                    // The other side did not ask in time: its session stands or falls alone.
                } else if let Some(service) = daemon.lookups.remove(&request) {
                    self.out
                        .events
                        .push_back(Event::ServiceFailed { service, reason });
                } else if let Some(key) = daemon.meetings.remove(&request) {
                    // A `[[peer]]` is asked for again at once when the other side did not
                    // come (or the server did not answer): the server waits anew, and the
                    // error stands until the two meet.
                    let again = matches!(
                        code,
                        ErrorCode::PeerTimeout | ErrorCode::LeaseExpired | ErrorCode::NoAnswer
                    ) && daemon.config.peers.contains_key(&key);
                    if again {
                        let request = daemon.client.connect_peer(now, key);
                        daemon.meetings.insert(request, key);
                    } else {
                        daemon.peers.remove(&key);
                    }
                    let services: Vec<ServiceName> = daemon
                        .config
                        .peer_services
                        .iter()
                        .filter(|(_, k)| **k == key)
                        .map(|(s, _)| s.clone())
                        .collect();
                    for service in services {
                        let reason = format!("peer {key}: {reason}");
                        self.out
                            .events
                            .push_back(Event::ServiceFailed { service, reason });
                    }
                    self.out.events.push_back(Event::PeerFailed { key, reason });
                } else if daemon.admins.remove(&request) {
                    self.out
                        .events
                        .push_back(Event::AdminFailed { request, reason });
                }
            }
            ClientEvent::LeaseLost => {
                let why = "the rendezvous server no longer knew our registration";
                daemon.lost.get_or_insert((now, why.into()));
                self.out.events.push_back(Event::RegistrationLost);
            }
            ClientEvent::Revoked { peer } => {
                self.access.revoke(&peer);
                if let Some(id) = self.sessions.get(&peer).map(|s| s.id) {
                    self.close(now, id);
                }
                self.out
                    .events
                    .push_back(Event::AccessRevoked { key: peer });
            }
            ClientEvent::Attach { name, attach } => {
                self.out.events.push_back(Event::MasterAttach {
                    service: name,
                    attach,
                });
            }
            ClientEvent::Pins { name, clients } => {
                // Past the bound, only the server's own check holds (see `Access::pin`).
                self.access.pin(name, clients);
            }
            ClientEvent::PathTokensSet { result } => {
                let result = result.map_err(|(code, detail)| format!("{code:?}: {detail}"));
                self.out.events.push_back(Event::PathTokensSet { result });
            }
            ClientEvent::AdminAnswered { request, answer } => {
                if daemon.admins.remove(&request) {
                    self.out
                        .events
                        .push_back(Event::AdminAnswered { request, answer });
                }
            }
            ClientEvent::TokensRefused { starts } => {
                self.out
                    .events
                    .push_back(Event::PathTokensRefused { starts });
            }
        }
    }

    /// After a registration: asks the server to publish each exposed service that wants it
    /// (a publication lives as long as the registration; the server answers one it holds
    /// already with the same port). One still waiting for its answer is not asked again.
    fn request_publications(&mut self, now: Instant) {
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        for (name, port) in self.exposed.to_publish() {
            if daemon.publishing.values().any(|n| n == name) {
                continue;
            }
            let request = match port {
                crate::forward::PublishPort::Sni => daemon.client.publish_sni(now, name.clone()),
                port => {
                    let udp = self.exposed.udp_target(name).is_some();
                    daemon.client.publish(now, name.clone(), port.port(), udp)
                }
            };
            daemon.publishing.insert(request, name.clone());
        }
    }

    /// Forgets what was asked or granted for publishing `service` (no longer exposed): the
    /// server's streams may not reach it any more, and a late answer is ignored.
    pub(super) fn forget_publication(&mut self, service: &ServiceName) {
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        daemon.publishing.retain(|_, n| n != service);
        let server_key = daemon.config.server_key;
        self.access.revoke_service(&server_key, service);
    }

    /// After a registration (also again after a server restart or a lapsed lease, which cost
    /// the server its introductions): asks the server, in peer mode, to introduce us again to
    /// every daemon we still have a session with. The other side does the same when it
    /// registers again, so the server pairs the two again and its relay, which forwards only
    /// between introduced pairs, carries their packets again. Outcomes are not the
    /// application's business: a failure (the other side never asked) is dropped.
    fn refresh_introductions(&mut self, now: Instant) {
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        let server = daemon.config.server_key;
        let pending: BTreeSet<PublicKey> = daemon
            .rejoins
            .values()
            .chain(daemon.meetings.values())
            .copied()
            .collect();
        let peers: Vec<PublicKey> = self
            .sessions
            .iter()
            .filter(|(key, s)| **key != server && !s.closed && !pending.contains(*key))
            .map(|(key, _)| *key)
            .collect();
        for key in peers {
            let request = daemon.client.connect_peer(now, key);
            daemon.rejoins.insert(request, key);
        }
    }

    /// A session to `key` fell back from its direct path to the relay: asks the server to
    /// introduce us again (peer mode; the other side, falling back too, asks as well), so
    /// the next round of the search punches toward the peer's addresses as the server sees
    /// them now, not the ones from the first introduction, which a NAT that lost its state
    /// no longer maps.
    fn reintroduce(&mut self, now: Instant, key: PublicKey) {
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        let pending = daemon.rejoins.values().chain(daemon.meetings.values());
        if key == daemon.config.server_key || pending.into_iter().any(|k| *k == key) {
            return;
        }
        let request = daemon.client.connect_peer(now, key);
        daemon.rejoins.insert(request, key);
    }

    /// Tells the application about every service resolved to `key`, and about `key` itself
    /// if it asked to meet it, now that its session is up.
    pub(super) fn announce_ready(&mut self, key: PublicKey) {
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
        if daemon.peers.contains(&key) {
            self.out.events.push_back(Event::PeerReady { key, peer });
        }
    }

    /// A session to a daemon serving us ended: look its services up again (it may come back
    /// at another address, or through another path), unless we closed it ourselves.
    fn on_peer_down(&mut self, now: Instant, key: PublicKey, reason: CloseReason) {
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        if reason == CloseReason::Local {
            // Our last session for these paths ended: their places in the paths' limits go.
            let peer_services = &daemon.config.peer_services;
            let ended: Vec<ServiceName> = daemon
                .resolved
                .iter()
                .filter(|(s, k)| **k == key && !peer_services.contains_key(*s))
                .map(|(s, _)| s.clone())
                .collect();
            for service in ended {
                daemon.client.disconnected(service);
            }
            daemon.resolved.retain(|_, k| *k != key);
            daemon.peers.remove(&key);
            return;
        }
        // Services reached through a peer met in peer mode stay with it: it is met again.
        let peer_services = &daemon.config.peer_services;
        let lost: Vec<ServiceName> = daemon
            .resolved
            .iter()
            .filter(|(s, k)| **k == key && !peer_services.contains_key(*s))
            .map(|(s, _)| s.clone())
            .collect();
        for service in lost {
            daemon.resolved.remove(&service);
            let route = daemon.own_route(&service);
            let request = daemon.client.lookup_with_route(now, service.clone(), route);
            daemon.lookups.insert(request, service);
        }
        if daemon.peers.contains(&key) {
            let request = daemon.client.connect_peer(now, key);
            daemon.meetings.insert(request, key);
        }
    }

    /// Reconnects the session to the rendezvous server when it is due.
    pub(super) fn rendezvous_timeout(&mut self, now: Instant) {
        if let Some(daemon) = self.daemon.as_mut() {
            if daemon.client.poll_timeout().is_some_and(|at| at <= now) {
                daemon.client.handle_timeout(now);
            }
            if daemon.client.poll_connect() {
                let (key, addr) = (daemon.config.server_key, daemon.config.server_addr);
                let _ = self.connect(now, key, addr);
            }
        }
        self.port_mapping_timeout(now);
        if let Some(server) = self.server.as_mut() {
            if server.poll_timeout().is_some_and(|at| at <= now) {
                server.handle_timeout(now);
            }
        }
        self.forward_released(now);
    }
}
