//! [`Endpoint`]: the one type a driver talks to.

mod connect;
mod daemon_commands;
mod initiation;
mod load;
mod portmap;
mod queries;
mod reconfigure;
pub use reconfigure::Routing;
mod publish_sni;
mod relay;
mod rendezvous;
mod sessions;
mod shutdown;
mod streams;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::access::Access;
use crate::config::Config;
use crate::crypto::PublicKey;
use crate::crypto::cookie::CookieChecker;
use crate::crypto::noise;
use crate::error::{SendError, ServiceError};
use crate::event::{Event, PeerId};
use crate::forward::ExposeOptions;
use crate::path::{Path, RoutePolicy};
use crate::rendezvous::{Server, ServiceName};
use crate::rng::SeededRng;
use crate::service::Exposed;
use crate::session::handshake::{HandshakePayload, PROLOGUE};
use crate::session::{self, Context, Identity, Indices, Output, PeerIds, Session};
use crate::stats::Stats;
use crate::stun::StunClient;
use crate::timer::Timer;
use crate::transmit::Transmit;
use crate::wire::Packet;
use crate::wire::control::CloseCode;
use crate::wire::header::{self, MAC_LEN, TRANSPORT_HEADER_LEN};
use crate::wire::stun::{self, StunMessage};
use load::LoadMeter;
use sessions::Sessions;

/// How many ended sessions' handshake timestamps an endpoint remembers (about 40 bytes each).
const REPLAY_FLOOR_KEYS: usize = 4096;

/// A burrow endpoint: one UDP socket's worth of protocol state. See the crate docs for the run
/// loop every driver follows.
pub struct Endpoint {
    config: Config,
    identity: Identity,
    public_key: PublicKey,
    rng: SeededRng,
    indices: Indices,
    ids: PeerIds,
    out: Output,
    /// The sessions, with their deadlines in an ordered index.
    sessions: Sessions,
    /// Newest handshake timestamp of each peer whose session ended (at most
    /// [`REPLAY_FLOOR_KEYS`]): a session's own replay check ends with it, and without this
    /// an old initiation replayed to a new session would be answered.
    replay_floor: BTreeMap<PublicKey, u64>,
    cookies: CookieChecker,
    load: LoadMeter,
    stun: StunClient,
    exposed: Exposed,
    /// Who may reach which exposed service.
    access: Access,
    /// The daemon role: registration and lookups with a rendezvous server.
    daemon: Option<rendezvous::Daemon>,
    /// The rendezvous server role.
    server: Option<Server>,
    /// Where [`Self::handle_input`] copies a datagram to decrypt it in place.
    scratch: Vec<u8>,
    /// The IP TTL of the datagram being handled, when the runtime read it.
    input_ttl: Option<u8>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("public_key", &self.public_key)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Creates an endpoint.
    ///
    /// `seed` seeds the endpoint's CSPRNG (ephemeral keys, session indices, cookie secrets):
    /// drivers take it from the OS, tests and the simulator from a fixed value. `now` is the
    /// driver's monotonic clock and `unix_now` the wall-clock time since the Unix epoch at the
    /// same moment; the core derives handshake timestamps from the two.
    pub fn new(config: Config, seed: [u8; 32], now: Instant, unix_now: Duration) -> Self {
        let mut rng = SeededRng::new(seed);
        let public_key = config.secret_key.public_key();
        let daemon = config
            .rendezvous
            .clone()
            .map(|r| rendezvous::Daemon::new(r, rng.u64(), now));
        let server = config
            .server
            .clone()
            .map(|c| Server::new(c, now, rng.bytes()));
        let access = Access::new(config.peers.clone());
        let identity = Identity {
            secret: config.secret_key.clone(),
            instance: rng.u64(),
            epoch: now,
            unix_at_epoch: unix_now,
        };
        Self {
            cookies: CookieChecker::new(&public_key),
            public_key,
            identity,
            rng,
            config,
            indices: Indices::default(),
            ids: PeerIds::default(),
            out: Output::default(),
            sessions: Sessions::default(),
            replay_floor: BTreeMap::new(),
            load: LoadMeter::new(now),
            stun: StunClient::default(),
            exposed: Exposed::default(),
            access,
            daemon,
            server,
            scratch: Vec::with_capacity(2048),
            input_ttl: None,
        }
    }

    /// Our static public key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// Counters of what the endpoint did and dropped.
    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// Splits the endpoint into the sessions and the context they write into.
    fn parts(&mut self) -> (Context<'_>, &mut Sessions) {
        let ctx = Context {
            config: &self.config,
            identity: &self.identity,
            rng: &mut self.rng,
            indices: &mut self.indices,
            ids: &mut self.ids,
            exposed: &self.exposed,
            access: &self.access,
            out: &mut self.out,
        };
        (ctx, &mut self.sessions)
    }

    /// Forgets sessions that ended during the last call, remembering how new their peers'
    /// last handshakes were.
    fn reap(&mut self) {
        if !std::mem::take(&mut self.out.ended) {
            return;
        }
        let floor = &mut self.replay_floor;
        self.sessions.retain(|key, s| {
            if s.closed && s.handshake_timestamp() > 0 {
                let t = floor.entry(*key).or_default();
                *t = (*t).max(s.handshake_timestamp());
            }
            !s.closed
        });
        while self.replay_floor.len() > REPLAY_FLOOR_KEYS {
            // Forget the peer heard from longest ago.
            let oldest = self
                .replay_floor
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| *k)
                .expect("not empty");
            self.replay_floor.remove(&oldest);
        }
    }

    /// Brings the deadline index up to date with the sessions the last call changed. Every
    /// public call that may change a session ends with it, so that [`Self::poll_timeout`] reads
    /// a current index.
    fn settle(&mut self) {
        self.sessions.sync(&self.config.session);
    }

    // ----- input -------------------------------------------------------------------------

    /// Feeds one datagram received on the endpoint's socket from `from`.
    ///
    /// Call it for every datagram, then drain `poll_transmit` and `poll_event`. Whatever the
    /// bytes, this never fails or panics: what is not acted on is counted in [`Self::stats`].
    pub fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.handle_input_with_ttl(now, from, bytes, None);
    }

    /// [`Self::handle_input`], with the IP TTL (IPv6: hop limit) the datagram arrived with,
    /// where the runtime reads it (`IP_RECVTTL`, `IPV6_RECVHOPLIMIT`). A rendezvous server
    /// tells each daemon the TTL its requests arrive with, from which the daemon learns its hop
    /// count to the server and the TTL of its first punching probes (see
    /// [`crate::ProbeTtl`]); [`Self::wants_input_ttl`] says whether it is worth reading.
    pub fn handle_input_with_ttl(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        ttl: Option<u8>,
    ) {
        let mut copy = std::mem::take(&mut self.scratch);
        copy.clear();
        copy.extend_from_slice(bytes);
        self.handle_input_in_place(now, from, &mut copy, ttl);
        self.scratch = copy;
    }

    /// [`Self::handle_input_with_ttl`] without a copy: a transport packet is decrypted where
    /// it lies, so `bytes` holds something else afterwards. What a runtime calls with its
    /// receive buffer.
    pub fn handle_input_in_place(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &mut [u8],
        ttl: Option<u8>,
    ) {
        self.input_ttl = ttl;
        self.handle_input_inner(now, from, bytes);
        self.input_ttl = None;
    }

    /// Whether this endpoint uses the TTL of received datagrams: it is a rendezvous server.
    pub fn wants_input_ttl(&self) -> bool {
        self.server.is_some()
    }

    fn handle_input_inner(&mut self, now: Instant, from: SocketAddr, bytes: &mut [u8]) {
        self.out.stats.datagrams_in += 1;
        self.out.stats.bytes_in += bytes.len() as u64;
        if stun::is_stun(bytes) {
            self.out.stats.stun_received += 1;
            self.on_stun(from, bytes);
            return;
        }
        if self.is_port_mapping_answer(from) {
            self.on_port_mapping_answer(now, bytes);
            self.after(now);
            self.settle();
            return;
        }
        self.handle_packet(now, Path::Direct(from), bytes);
        self.reap();
        // The deadlines wait for the output to be drained (`poll_transmit`): a runtime feeds
        // a whole batch of datagrams first, and a busy session's deadline is worth computing
        // once per batch, not once per packet.
        self.after_unsettled(now);
        self.sessions.sync_half_open();
    }

    /// Acts on one burrow packet that came by `from`: straight from the network, or out of
    /// the relay. Callers reap ended sessions and run [`Self::after`].
    /// A transport packet is decrypted where it lies, so `bytes` may be changed.
    fn handle_packet(&mut self, now: Instant, from: Path, bytes: &mut [u8]) {
        let transport = match Packet::parse(bytes) {
            Ok(Packet::Transport {
                header,
                receiver,
                counter,
                ..
            }) => Some((*header, receiver, counter)),
            Ok(_) => None,
            Err(_) => {
                self.out.stats.dropped_malformed += 1;
                return;
            }
        };
        if let Some((header, receiver, counter)) = transport {
            let sealed = &mut bytes[TRANSPORT_HEADER_LEN..];
            return self.on_transport(now, from, &header, receiver, counter, sealed);
        }
        let Ok(packet) = Packet::parse(bytes) else {
            return;
        };
        match packet {
            Packet::Probe => self.out.stats.probes_received += 1,
            Packet::Initiation {
                sender,
                noise,
                mac1_input,
                mac1,
                mac2,
            } => {
                let mac2_input = &bytes[..mac1_input.len() + MAC_LEN];
                self.on_initiation(
                    now,
                    from,
                    sender,
                    noise,
                    (mac1_input, mac1),
                    (mac2_input, mac2),
                );
            }
            Packet::Response {
                sender,
                receiver,
                noise,
                mac1_input,
                mac1,
                ..
            } => {
                if !self.cookies.verify_mac1(mac1_input, mac1) {
                    self.out.stats.dropped_bad_mac += 1;
                    return;
                }
                let (mut ctx, sessions) = self.parts();
                match ctx.indices.get(receiver).and_then(|k| sessions.get_mut(&k)) {
                    Some(s) if !s.punch.path_allowed(from) => {
                        ctx.out.stats.dropped_route_policy += 1
                    }
                    Some(s) if s.owns_pending(receiver) => {
                        s.on_response(&mut ctx, now, from, sender, noise);
                        let key = s.key;
                        self.catch_up(now, key);
                    }
                    _ => ctx.out.stats.dropped_unexpected += 1,
                }
            }
            Packet::CookieReply {
                receiver,
                nonce,
                sealed,
            } => {
                let (mut ctx, sessions) = self.parts();
                match ctx.indices.get(receiver).and_then(|k| sessions.get_mut(&k)) {
                    Some(s) if s.owns_pending(receiver) => {
                        s.on_cookie_reply(&mut ctx, now, nonce, sealed)
                    }
                    _ => ctx.out.stats.dropped_unexpected += 1,
                }
            }
            // Decrypted in place, above.
            Packet::Transport { .. } => {}
        }
    }

    /// A transport packet for our session index `receiver`: its session decrypts `sealed`
    /// where it lies and acts on it.
    fn on_transport(
        &mut self,
        now: Instant,
        from: Path,
        header: &[u8; TRANSPORT_HEADER_LEN],
        receiver: u32,
        counter: u64,
        sealed: &mut [u8],
    ) {
        let (mut ctx, sessions) = self.parts();
        let touched = match ctx.indices.get(receiver).and_then(|k| sessions.get_mut(&k)) {
            Some(s) if !s.punch.path_allowed(from) => {
                ctx.out.stats.dropped_route_policy += 1;
                None
            }
            Some(s) => s
                .on_transport(&mut ctx, now, from, receiver, header, counter, sealed)
                .then_some(s.key),
            None => {
                ctx.out.stats.dropped_unknown_index += 1;
                None
            }
        };
        if let Some(key) = touched {
            self.catch_up(now, key);
        }
    }

    /// Acts on the timers of the session with `key` that are due at `now`.
    ///
    /// Input can make a deadline due at once: keys confirmed long after they were made carry
    /// an old `last_sent`, so their keepalive is overdue. Handling it here keeps the contract
    /// that `poll_timeout` never returns a deadline at or before the last `now`.
    fn catch_up(&mut self, now: Instant, key: PublicKey) {
        let (mut ctx, sessions) = self.parts();
        if let Some(session) = sessions.get_mut(&key) {
            if !session.closed
                && session
                    .poll_timeout(&ctx.config.session)
                    .is_some_and(|(at, _)| at <= now)
            {
                session.handle_timeout(&mut ctx, now);
            }
        }
    }

    fn on_stun(&mut self, from: SocketAddr, bytes: &[u8]) {
        let Ok(message) = StunMessage::parse(bytes) else {
            self.out.stats.dropped_malformed += 1;
            return;
        };
        if let StunMessage::BindingSuccess {
            transaction,
            mapped,
            ..
        } = &message
        {
            match self.stun.on_response(from, transaction, *mapped) {
                Some(outcome) => self.out.events.push_back(Event::Stun(outcome)),
                None => self.out.stats.dropped_unexpected += 1,
            }
        } else if let Some(reply) =
            crate::stun::answer(&message, bytes.len(), from, self.config.stun_other_address)
                .filter(|_| self.config.answer_stun)
        {
            self.out.send(Transmit {
                segment_size: None,
                dst: from,
                ttl: None,
                payload: reply.into(),
            });
        }
    }

    fn poll_stun(&mut self, now: Instant) {
        let out = &mut self.out;
        let mut outcomes = Vec::new();
        self.stun.poll_due(
            now,
            |dst, payload| {
                out.send(Transmit {
                    segment_size: None,
                    dst,
                    ttl: None,
                    payload: payload.into(),
                })
            },
            |outcome| outcomes.push(outcome),
        );
        self.out
            .events
            .extend(outcomes.into_iter().map(Event::Stun));
    }

    /// Acts on every deadline that has passed by `now`.
    ///
    /// Call it when the deadline from [`Self::poll_timeout`] is reached (calling it earlier is
    /// harmless), then drain `poll_transmit` and `poll_event`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.settle();
        for key in self.sessions.due(now) {
            let (mut ctx, sessions) = self.parts();
            if let Some(session) = sessions.get_mut(&key) {
                session.handle_timeout(&mut ctx, now);
            }
        }
        self.reap();
        self.poll_stun(now);
        self.rendezvous_timeout(now);
        self.after(now);
        self.settle();
    }

    // ----- output ------------------------------------------------------------------------

    /// The next datagram to send, if any. Drain it until `None` after every call that takes
    /// `now`.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit_run(1)
    }

    /// [`Self::poll_transmit`] for a runtime whose socket sends runs of datagrams with one
    /// call (segmentation offload, `UDP_SEGMENT`): the next transmit, a run of at most
    /// `max_segments` datagrams to one destination ([`Transmit::segment_size`]) where the core
    /// has them, which a bulk stream does. A run's datagrams were sealed end to end into one
    /// buffer, so sending it copies nothing. `max_segments` of 1 is [`Self::poll_transmit`].
    #[must_use]
    pub fn poll_transmit_run(&mut self, max_segments: usize) -> Option<Transmit> {
        if !self.sessions.is_synced() {
            self.settle();
        }
        let front = self.out.transmits.front_mut()?;
        if front.datagrams() > max_segments {
            return Some(front.split_datagrams(max_segments));
        }
        self.out.transmits.pop_front()
    }

    /// The next event for the application, if any. Drain it until `None` after every call that
    /// takes `now`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        if !self.sessions.is_synced() {
            self.settle();
        }
        self.out.events.pop_front()
    }

    /// When [`Self::handle_timeout`] should next be called, and why; `None` when nothing is
    /// pending. Read it after draining the output queues.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        debug_assert!(
            self.sessions.is_synced(),
            "poll_timeout before the output was drained"
        );
        let stun = self.stun.next_deadline().map(|at| (at, Timer::Stun));
        let daemon = self
            .daemon
            .as_ref()
            .and_then(rendezvous::Daemon::poll_timeout);
        let server = self
            .server
            .as_ref()
            .and_then(Server::poll_timeout)
            .map(|at| (at, Timer::LeaseExpiry));
        let relay = self
            .server
            .as_ref()
            .and_then(Server::relay_deadline)
            .map(|at| (at, Timer::RelayQueue));
        self.sessions
            .next_deadline()
            .into_iter()
            .chain(stun)
            .chain(daemon)
            .chain(server)
            .chain(relay)
            .min()
    }

    // ----- commands ----------------------------------------------------------------------

    /// Sends one unreliable datagram to `peer` (queued while its handshake runs).
    pub fn send_datagram(
        &mut self,
        now: Instant,
        peer: PeerId,
        data: &[u8],
    ) -> Result<(), SendError> {
        let key = self.ids.key(peer).ok_or(SendError::UnknownPeer)?;
        let (mut ctx, sessions) = self.parts();
        let session = sessions.get_mut(&key).ok_or(SendError::UnknownPeer)?;
        let result = session.send_datagram(&mut ctx, now, data);
        self.send_relayed(now);
        self.settle();
        result
    }

    /// The handle of the session with `key`, if there is one.
    pub fn peer_of(&self, key: &PublicKey) -> Option<PeerId> {
        self.sessions.get(key).map(|s| s.id)
    }

    /// Pings `peer` on the path its session uses now; the answer comes as [`Event::Pong`]
    /// (none if the ping or its answer is lost). At most 16 pings wait for their answer per
    /// session, each at most 10 s; older ones are forgotten.
    pub fn ping(&mut self, now: Instant, peer: PeerId) -> Result<(), SendError> {
        let key = self.ids.key(peer).ok_or(SendError::UnknownPeer)?;
        let (mut ctx, sessions) = self.parts();
        let session = sessions.get_mut(&key).ok_or(SendError::UnknownPeer)?;
        let result = session.ping(&mut ctx, now);
        self.send_relayed(now);
        self.settle();
        result
    }

    /// The largest datagram [`Self::send_datagram`] accepts.
    pub fn max_datagram_size(&self) -> usize {
        // A daemon's sessions may be relayed, which costs the relay's wrapping.
        let relay = if self.daemon.is_some() {
            crate::punch::RELAY_OVERHEAD
        } else {
            0
        };
        self.config
            .max_udp_payload
            .saturating_sub(crate::session::DATAGRAM_OVERHEAD + relay)
    }

    /// Closes the session with `peer`, telling it so. [`Event::SessionClosed`] follows.
    /// Unknown handles are ignored.
    pub fn close(&mut self, now: Instant, peer: PeerId) {
        let Some(key) = self.ids.key(peer) else {
            return;
        };
        let (mut ctx, sessions) = self.parts();
        if let Some(session) = sessions.get_mut(&key) {
            session.close(&mut ctx, now, CloseCode::Normal);
        }
        self.reap();
        self.after(now);
        self.settle();
    }

    /// Exposes `service` to peers: their streams for it arrive as [`Event::IncomingStream`]
    /// carrying `target` (for example `127.0.0.1:22`), which the driver connects to. Exposing
    /// a name again replaces its target. A daemon publishes the name with its rendezvous
    /// server, which refuses more than a few names per daemon.
    pub fn expose(
        &mut self,
        now: Instant,
        service: ServiceName,
        target: impl Into<String>,
    ) -> Result<(), ServiceError> {
        self.expose_with(now, service, target, ExposeOptions::default())
    }

    /// [`Self::expose`] with `options`: a UDP service (its flows are refused as streams, and
    /// its streams as flows), or a TCP service that gets the PROXY protocol header.
    pub fn expose_with(
        &mut self,
        now: Instant,
        service: ServiceName,
        target: impl Into<String>,
        mut options: ExposeOptions,
    ) -> Result<(), ServiceError> {
        if options.route.is_none() {
            options.route = self.daemon.as_ref().map(|d| d.config.route);
        }
        let route = options.route.unwrap_or_default();
        self.publish(now, Some((&service, route)))?;
        self.exposed.insert(service, target.into(), options);
        self.after(now);
        Ok(())
    }

    /// A rendezvous server's owner bound the public listener for `port` (`Ok`) or could not
    /// (`Err`, why): the daemon that asked to publish there is told. Drain the output after.
    pub(crate) fn publish_listening(
        &mut self,
        now: Instant,
        port: u16,
        result: Result<(), String>,
    ) {
        if let Some(server) = self.server.as_mut() {
            server.listening(port, result);
            self.after(now);
        }
    }

    /// The local target of the UDP `service` for a flow from `peer`, if we expose it as UDP
    /// and the peer holds a grant for it: the same check as for a stream.
    pub(crate) fn udp_target(&self, peer: PeerId, service: &ServiceName) -> Option<&str> {
        if !self.may_reach(peer, service) {
            return None;
        }
        self.exposed.udp_target(service)
    }

    /// Whether the route policy of `service`, which we expose, allows the path the session
    /// with `peer` uses now (a flow or stream on another is refused with the reason).
    pub(crate) fn route_allows(&self, peer: PeerId, service: &ServiceName) -> bool {
        let route = self.exposed.route(service).unwrap_or_default();
        self.peer_path(peer).is_none_or(|path| route.allows(path))
    }

    /// The route policy of `service`, which we expose: its own, or the daemon's.
    pub fn expose_route(&self, service: &ServiceName) -> Option<RoutePolicy> {
        self.exposed.route(service)
    }

    /// Whether `peer` holds a grant for `service` (whether or not we expose it).
    pub(crate) fn may_reach(&self, peer: PeerId, service: &ServiceName) -> bool {
        self.ids
            .key(peer)
            .is_some_and(|key| self.access.allows(&key, service))
    }

    /// Stops exposing `service`; later streams for it are refused. Returns whether it was
    /// exposed.
    pub fn unexpose(&mut self, now: Instant, service: &ServiceName) -> bool {
        let was = self.exposed.remove(service);
        if was {
            self.forget_publication(service);
            // Fewer services than the server took before: nothing to refuse.
            let _ = self.publish(now, None);
            self.after(now);
        }
        was
    }

    /// Asks the STUN server at `server` for our server-reflexive address; any RFC 5389 / 8489
    /// server will do, a burrow server included. [`Event::Stun`] brings the outcome, after
    /// retransmissions if needed (at most 9.5 s).
    pub fn stun_probe(&mut self, now: Instant, server: SocketAddr) {
        let transaction = self.rng.bytes();
        self.stun.probe(now, server, transaction);
        self.poll_stun(now);
    }

    /// Panics unless the deadline index agrees with every session's own deadline.
    #[cfg(test)]
    pub(crate) fn check_deadline_index(&self) {
        self.sessions.check(&self.config.session);
    }

    /// Number of session indices allocated: at most four per session (pending, current,
    /// previous, next), none once every session has ended.
    #[cfg(test)]
    pub(crate) fn index_count(&self) -> usize {
        self.indices.len()
    }
}
