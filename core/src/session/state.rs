//! The per-peer session state machine.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::handshake::{self, HandshakePayload};
use super::keypair::{Keypair, OpenError};
use super::keys::{Keys, Slot};
use super::liveness::Liveness;
use super::streams::Streams;
use super::{Context, DATAGRAM_OVERHEAD, Note, STREAM_OVERHEAD};
use crate::config::SessionConfig;
use crate::crypto::cookie::CookieJar;
use crate::crypto::noise::{InitiatorHandshake, ResponderHandshake};
use crate::crypto::{PublicKey, SecretKey};
use crate::error::{CloseReason, SendError};
use crate::event::{Event, PeerId};
use crate::path::Path;
use crate::punch::{self, Agent, Outgoing, RELAY_OVERHEAD};
use crate::timer::Timer;
use crate::transmit::Transmit;
use crate::wire::control::{CloseCode, Control};
use crate::wire::header::{COOKIE_NONCE_LEN, MAC_LEN, SEALED_COOKIE_LEN};
use crate::wire::payload::{Payload, PayloadKind};

/// Our handshake in flight.
struct Pending {
    state: InitiatorHandshake,
    local_index: u32,
    mac1: [u8; MAC_LEN],
    /// When the first attempt of this handshake went out.
    started: Instant,
    next_attempt: Instant,
    attempts: u32,
}

/// One peer's session: key generations, our handshake in flight, and the timers that follow
/// from them. Every deadline is derived from this state in [`Session::poll_timeout`].
pub(crate) struct Session {
    /// The application's handle for this session.
    pub(crate) id: PeerId,
    /// The peer's static key.
    pub(crate) key: PublicKey,
    /// The way to the peer: the path in use, candidates, relay, punching and the relayed
    /// search for a direct path.
    pub(crate) punch: Agent,
    /// Our cookie from the peer (when it is under load) and the MAC keys for its static key.
    cookies: CookieJar,
    pending: Option<Pending>,
    /// Key generations: current, previous, and next (awaiting confirmation).
    keys: Keys,
    /// Creation time, then the time of the last authenticated packet from the peer.
    last_received: Instant,
    last_sent: Instant,
    /// Newest handshake timestamp from this peer: of an initiation we accepted or a response
    /// we took. Initiations not newer are replays (or from a previous life of the peer).
    last_init_timestamp: u64,
    /// The peer's endpoint instance, once a handshake told us.
    peer_instance: Option<u64>,
    connected: bool,
    /// Whether the application knows this session's handle (it called connect, or saw
    /// `Connected`); only then does it hear `SessionClosed`.
    pub(crate) announced: bool,
    queue: VecDeque<Bytes>,
    /// The streams of this session, behind their mux.
    pub(crate) streams: Streams,
    /// Set once the session has ended; the endpoint then removes it.
    pub(crate) closed: bool,
    /// Probes of a peer that went silent while the session is in use (`liveness.rs`).
    liveness: Liveness,
}

/// Silence after which a connected session starts a handshake to find out whether the peer
/// lost our session (it restarted) or the path broke. Two keepalive intervals and a retry, so
/// that one lost keepalive does not cost a handshake.
fn silence_limit(cfg: &SessionConfig) -> Duration {
    cfg.keepalive_interval * 2 + cfg.handshake_retry
}

impl Session {
    pub(crate) fn new(
        ctx: &Context<'_>,
        id: PeerId,
        key: PublicKey,
        path: Path,
        now: Instant,
    ) -> Self {
        Self {
            punch: Agent::new(path),
            streams: Streams::new(ctx, &key, now),
            id,
            key,
            cookies: CookieJar::new(&key),
            pending: None,
            keys: Keys::default(),
            last_received: now,
            last_sent: now,
            last_init_timestamp: 0,
            peer_instance: None,
            connected: false,
            announced: false,
            queue: VecDeque::new(),
            closed: false,
            liveness: Liveness::default(),
        }
    }

    /// The newest handshake timestamp heard from the peer (0 if none): initiations not newer
    /// than it are replays.
    pub(crate) fn handshake_timestamp(&self) -> u64 {
        self.last_init_timestamp
    }

    /// Whether a handshake has completed and data can flow.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    // ----- handshakes -------------------------------------------------------------------

    /// Starts a handshake unless one is already in flight.
    pub(crate) fn start_handshake(&mut self, ctx: &mut Context<'_>, now: Instant) {
        if self.pending.is_none() {
            self.send_initiation(ctx, now, now, 0);
        }
    }

    fn send_initiation(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        started: Instant,
        attempts: u32,
    ) {
        if let Some(old) = self.pending.take() {
            ctx.indices.free(old.local_index);
        }
        let local_index = ctx.indices.allocate(ctx.rng, self.key);
        let ephemeral = SecretKey::from_bytes(ctx.rng.bytes());
        let payload = HandshakePayload {
            timestamp: ctx.identity.unix_nanos(now),
            instance: ctx.identity.instance,
        };
        let init = handshake::initiation(
            now,
            &ctx.identity.secret,
            &self.key,
            &ephemeral,
            local_index,
            payload,
            &self.cookies,
        );
        let packet = Bytes::from(init.packet);
        let next_attempt =
            self.punch
                .handle_attempt(&ctx.config.session, now, attempts, self.connected, packet);
        self.pending = Some(Pending {
            state: init.state,
            local_index,
            mac1: init.mac1,
            started,
            next_attempt,
            attempts: attempts + 1,
        });
        self.drain_punch(ctx, now);
    }

    /// Whether we have a handshake in flight whose index is `index`.
    pub(crate) fn owns_pending(&self, index: u32) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.local_index == index)
    }

    /// Whether we answer an initiation that came by `from`: the tie-break for simultaneous
    /// initiation, [`punch::agent::yields_to_initiation`].
    pub(crate) fn yields_to_initiation(&self, local: &PublicKey, from: Path) -> bool {
        let pending = self.pending.as_ref().map(|p| p.attempts);
        punch::agent::yields_to_initiation(local, &self.key, pending, from)
    }

    /// Checks an initiation's payload against replay and restart. Returns false to drop it.
    pub(crate) fn admit_initiation(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        payload: &HandshakePayload,
    ) -> bool {
        if payload.timestamp <= self.last_init_timestamp {
            ctx.out.stats.dropped_handshake_replay += 1;
            return false;
        }
        self.last_init_timestamp = payload.timestamp;
        self.note_instance(ctx, now, payload.instance);
        true
    }

    /// Answers an accepted initiation; the new keys wait in `next` for confirmation.
    ///
    /// Our own handshake in flight is abandoned, unless
    /// [`punch::agent::keeps_own_handshake`] says the larger key keeps it until the session
    /// is up.
    pub(crate) fn respond(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        from: Path,
        responder: ResponderHandshake,
        remote_index: u32,
        local: &PublicKey,
    ) {
        let keep_ours = punch::agent::keeps_own_handshake(local, &self.key, self.connected);
        if !keep_ours {
            if let Some(pending) = self.pending.take() {
                ctx.indices.free(pending.local_index);
            }
        }
        let local_index = ctx.indices.allocate(ctx.rng, self.key);
        let ephemeral = SecretKey::from_bytes(ctx.rng.bytes());
        let payload = HandshakePayload {
            timestamp: ctx.identity.unix_nanos(now),
            instance: ctx.identity.instance,
        };
        let (packet, keys) = handshake::response(
            now,
            responder,
            &ephemeral,
            local_index,
            remote_index,
            payload,
            &self.cookies,
        );
        let keypair = Keypair::new(keys, local_index, remote_index, false, now);
        self.keys.set_next(ctx.indices, keypair);
        ctx.out.stats.handshakes_completed += 1;
        if self.connected {
            // An initiation proves nothing fresh (it may be a replay that the timestamp check
            // cannot catch): answer where it came from, but only the initiator's first
            // transport packet under the new keys may move the path or count as hearing it.
            self.send_on(ctx, now, from, Bytes::from(packet));
        } else {
            self.move_to(ctx, now, from);
            self.last_received = now;
            self.transmit(ctx, now, Bytes::from(packet));
        }
    }

    /// Handles the response to our handshake in flight.
    pub(crate) fn on_response(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        from: Path,
        remote_index: u32,
        noise: &[u8],
    ) {
        let Some(pending) = self.pending.as_ref() else {
            ctx.out.stats.dropped_unexpected += 1;
            return;
        };
        let mut payload = Vec::new();
        // Read with a copy of the state: a forged response (mac1 is keyed by our public key,
        // which anyone may know) must not cancel the real handshake.
        let Ok(keys) = pending.state.clone().read_response(noise, &mut payload) else {
            ctx.out.stats.dropped_handshake += 1;
            return;
        };
        let Some(payload) = HandshakePayload::decode(&payload) else {
            ctx.out.stats.dropped_handshake += 1;
            return;
        };
        let pending = self.pending.take().expect("checked above");
        // Every initiation the peer made before this response is older than it: without this,
        // a session we initiated would accept any old initiation (replayed, or delayed from
        // the peer's previous instance) and tear itself down.
        self.last_init_timestamp = self.last_init_timestamp.max(payload.timestamp);
        self.note_instance(ctx, now, payload.instance);
        ctx.out.stats.handshakes_completed += 1;
        let keypair = Keypair::new(keys, pending.local_index, remote_index, true, now);
        self.keys.install_current(ctx.indices, keypair);
        self.streams.mux.peer_reachable();
        self.move_to(ctx, now, from);
        self.last_received = now;
        self.established(ctx, now);
        self.flush_queue(ctx, now);
        self.flush_mux(ctx, now);
        if self.keys.current.as_ref().is_some_and(|k| k.sent() == 0) {
            // Confirms the new keys to the responder, which may not send until it hears us.
            self.send_payload(ctx, now, &[]);
        }
    }

    /// Takes a cookie reply for our handshake in flight; the next attempt carries mac2.
    pub(crate) fn on_cookie_reply(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        nonce: &[u8; COOKIE_NONCE_LEN],
        sealed: &[u8; SEALED_COOKIE_LEN],
    ) {
        let Some(pending) = &self.pending else {
            ctx.out.stats.dropped_unexpected += 1;
            return;
        };
        let mut reply = [0u8; COOKIE_NONCE_LEN + SEALED_COOKIE_LEN];
        reply[..COOKIE_NONCE_LEN].copy_from_slice(nonce);
        reply[COOKIE_NONCE_LEN..].copy_from_slice(sealed);
        if self.cookies.open_reply(now, &reply, &pending.mac1).is_err() {
            ctx.out.stats.dropped_unexpected += 1;
        }
    }

    /// A handshake told us the peer's instance; a different one than before means the peer
    /// restarted, so this session ends and a new one (new handle) takes its place.
    fn note_instance(&mut self, ctx: &mut Context<'_>, now: Instant, instance: u64) {
        match self.peer_instance.replace(instance) {
            Some(old) if old != instance && self.connected => {
                ctx.out.events.push_back(Event::SessionClosed {
                    peer: self.id,
                    key: self.key,
                    reason: CloseReason::PeerRestarted,
                });
                ctx.out
                    .notes
                    .push_back(Note::Down(self.key, CloseReason::PeerRestarted));
                ctx.ids.release(self.id);
                self.id = ctx.ids.assign(self.key);
                self.connected = false;
                self.announced = false;
                self.queue.clear();
                self.streams = Streams::new(ctx, &self.key, now);
                // The old keys belong to the peer's previous life; it cannot use them.
                self.keys.forget_old(ctx.indices);
            }
            _ => {}
        }
    }

    /// Sends on `path` from now on: an authenticated packet came by it. A connected session
    /// tells the application.
    fn move_to(&mut self, ctx: &mut Context<'_>, now: Instant, path: Path) {
        let changed = self
            .punch
            .nominate(&ctx.config.session, now, path, self.connected);
        if changed && self.connected {
            ctx.out.events.push_back(Event::PathChanged {
                peer: self.id,
                path,
            });
        }
    }

    fn established(&mut self, ctx: &mut Context<'_>, now: Instant) {
        if !self.connected {
            self.connected = true;
            self.punch
                .restart_search(&ctx.config.session, now, self.connected);
            self.announced = true;
            ctx.out.notes.push_back(Note::Up(self.key));
            ctx.out.events.push_back(Event::Connected {
                peer: self.id,
                key: self.key,
                path: self.punch.path(),
            });
        }
    }

    // ----- transport --------------------------------------------------------------------

    /// Handles a transport packet for one of this session's indices.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_transport(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        from: Path,
        local_index: u32,
        header: &[u8; crate::wire::header::TRANSPORT_HEADER_LEN],
        counter: u64,
        sealed: &[u8],
        scratch: &mut Vec<u8>,
    ) {
        let Some(slot) = self.keys.find(local_index) else {
            // Our pending handshake's index: no keys yet.
            ctx.out.stats.dropped_unknown_index += 1;
            return;
        };
        let keypair = self.keys.get_mut(slot);
        let newest = keypair.highest_received().is_none_or(|h| counter > h);
        let reject_after = ctx.config.session.reject_after_packets;
        match keypair.open(header, counter, sealed, scratch, reject_after) {
            Ok(()) => {}
            Err(OpenError::Replay) => return ctx.out.stats.dropped_replay += 1,
            Err(OpenError::Auth) => return ctx.out.stats.dropped_auth += 1,
            Err(OpenError::Expired) => {
                // The peer is still on keys we will no longer take: both need new ones.
                ctx.out.stats.dropped_expired += 1;
                return self.start_handshake(ctx, now);
            }
        }
        self.last_received = now;
        if slot == Slot::Next {
            let confirmed = self.keys.next.take().expect("slot was just found");
            if !self.connected {
                // Up on the keys we answered with: a handshake of ours still in flight (see
                // `respond`) is moot.
                if let Some(pending) = self.pending.take() {
                    ctx.indices.free(pending.local_index);
                }
            }
            self.keys.install_current(ctx.indices, confirmed);
            self.streams.mux.peer_reachable();
            self.established(ctx, now);
            self.flush_queue(ctx, now);
        }
        // (the stream layer is flushed after the payload below is handled)
        let payload = Payload::parse(scratch);
        // Path challenges and their answers probe a path without choosing it.
        let probing = matches!(
            payload,
            Ok(Payload::PathChallenge(_) | Payload::PathResponse(_))
        );
        if newest && !probing {
            self.move_to(ctx, now, from);
        }
        match payload {
            Ok(Payload::KeepAlive) => {}
            Ok(Payload::Datagram(data)) => ctx.out.events.push_back(Event::Datagram {
                peer: self.id,
                data: Bytes::copy_from_slice(data),
            }),
            Ok(Payload::Control(body)) => match Control::decode(body) {
                // Sealed with keys older than a handshake the peer started since: an earlier
                // session of the peer's ended (it closed, then connected again, which we took
                // as a rekey). The peer is live under the newer keys; this close is stale.
                Ok(Control::Close { .. })
                    if slot == Slot::Previous
                        && self.keys.current.as_ref().is_some_and(|k| !k.initiator) =>
                {
                    ctx.out.stats.dropped_unexpected += 1;
                }
                Ok(Control::Close { code }) => self.end(ctx, CloseReason::Peer(code)),
                Err(_) => ctx.out.stats.dropped_bad_payload += 1,
            },
            Ok(Payload::Stream(frames)) => self.streams.mux.handle_packet(now, frames),
            Ok(Payload::Rendezvous(body)) => ctx
                .out
                .notes
                .push_back(Note::Rendezvous(self.key, body.to_vec())),
            Ok(Payload::Relay { peer, packet }) => ctx.out.notes.push_back(Note::Relay {
                via: self.key,
                peer: PublicKey::from_bytes(peer),
                packet: packet.to_vec(),
            }),
            Ok(Payload::PathChallenge(nonce)) => self.answer_challenge(ctx, now, from, nonce),
            Ok(Payload::PathResponse(nonce)) => self.on_path_response(ctx, now, from, nonce),
            Err(_) => ctx.out.stats.dropped_bad_payload += 1,
        }
        self.flush_mux(ctx, now);
    }

    /// Sends (or queues, while no keys are ready) one application datagram.
    pub(crate) fn send_datagram(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        data: &[u8],
    ) -> Result<(), SendError> {
        let max = self.max_datagram(ctx);
        if data.len() > max {
            return Err(SendError::TooLarge { max });
        }
        if self.can_send(ctx) && self.queue.is_empty() {
            self.send_payload(ctx, now, &[&[PayloadKind::Datagram as u8], data]);
            return Ok(());
        }
        if self.queue.len() >= ctx.config.session.max_queued_datagrams {
            return Err(SendError::QueueFull);
        }
        self.queue.push_back(Bytes::copy_from_slice(data));
        self.start_handshake(ctx, now);
        Ok(())
    }

    fn can_send(&self, ctx: &Context<'_>) -> bool {
        self.keys
            .current
            .as_ref()
            .is_some_and(|k| k.sent() < ctx.config.session.reject_after_packets)
    }

    fn flush_queue(&mut self, ctx: &mut Context<'_>, now: Instant) {
        while self.can_send(ctx) {
            let Some(data) = self.queue.pop_front() else {
                break;
            };
            self.send_payload(ctx, now, &[&[PayloadKind::Datagram as u8], &data]);
        }
    }

    /// Seals a plaintext with the current keys and queues it; starts a rekey when the keys have
    /// carried enough packets.
    fn send_payload(&mut self, ctx: &mut Context<'_>, now: Instant, parts: &[&[u8]]) {
        self.send_payload_on(ctx, now, parts, None);
    }

    /// [`Self::send_payload`] on `path` (`None`: the session's path).
    fn send_payload_on(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        parts: &[&[u8]],
        path: Option<Path>,
    ) {
        let session = &ctx.config.session;
        let Some(keypair) = self.keys.current.as_mut() else {
            return;
        };
        let Some(packet) = keypair.seal(parts, session.reject_after_packets) else {
            // The keys are used up: only new ones can carry anything.
            self.start_handshake(ctx, now);
            return;
        };
        let rekey = keypair.sent() >= session.rekey_after_packets;
        let path = path.unwrap_or(self.punch.path());
        self.send_on(ctx, now, path, packet);
        if rekey {
            self.start_handshake(ctx, now);
        }
    }

    /// Sends a packet on the session's path.
    fn transmit(&mut self, ctx: &mut Context<'_>, now: Instant, payload: Bytes) {
        self.send_on(ctx, now, self.punch.path(), payload);
    }

    /// Sends a packet on `path`: straight to its address, or to the relay.
    fn send_on(&mut self, ctx: &mut Context<'_>, now: Instant, path: Path, payload: Bytes) {
        match path {
            Path::Direct(dst) => self.transmit_to(ctx, now, dst, None, payload),
            Path::Relay(_) => self.transmit_relay(ctx, now, payload),
        }
    }

    /// Hands a packet to the endpoint, which wraps it in our session with the relay.
    fn transmit_relay(&mut self, ctx: &mut Context<'_>, now: Instant, payload: Bytes) {
        self.last_sent = now;
        ctx.out.relayed.push_back((self.key, payload));
    }

    /// Sends one datagram straight to `dst`, with `ttl` if set.
    fn transmit_to(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        dst: SocketAddr,
        ttl: Option<u8>,
        payload: Bytes,
    ) {
        self.last_sent = now;
        ctx.out.send(Transmit { dst, ttl, payload });
    }

    /// Sends a rendezvous message body; false (and nothing sent) while the session has no
    /// keys. Rendezvous messages are retried by the layer that sends them.
    pub(crate) fn send_rendezvous(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        body: &[u8],
    ) -> bool {
        if !self.can_send(ctx) {
            return false;
        }
        self.send_payload(ctx, now, &[&[PayloadKind::Rendezvous as u8], body]);
        true
    }

    /// Wraps a packet of two daemons for the other side of the relay (`peer`: the destination
    /// when we are a daemon, the source when we are the server). False while we have no keys.
    pub(crate) fn send_relay(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        peer: &PublicKey,
        packet: &[u8],
    ) -> bool {
        if !self.can_send(ctx) {
            return false;
        }
        let kind = [PayloadKind::Relay as u8];
        self.send_payload(ctx, now, &[&kind, peer.as_bytes(), packet]);
        true
    }

    // ----- paths --------------------------------------------------------------------------

    /// The path packets to the peer take.
    pub(crate) fn path(&self) -> Path {
        self.punch.path()
    }

    /// Sends what the punch agent queued: probes and initiations as they are, path challenges
    /// sealed with the current keys.
    fn drain_punch(&mut self, ctx: &mut Context<'_>, now: Instant) {
        while let Some(out) = self.punch.poll_transmit() {
            match out {
                Outgoing::Direct { dst, ttl, payload } => {
                    self.transmit_to(ctx, now, dst, ttl, payload)
                }
                Outgoing::Relay(payload) => self.transmit_relay(ctx, now, payload),
                Outgoing::Challenge { dst, nonce } => {
                    let kind = [PayloadKind::PathChallenge as u8];
                    let parts: [&[u8]; 2] = [&kind, &nonce.to_le_bytes()];
                    self.send_payload_on(ctx, now, &parts, Some(Path::Direct(dst)));
                }
            }
        }
    }

    /// Answers a path challenge on the path it came by.
    fn answer_challenge(&mut self, ctx: &mut Context<'_>, now: Instant, from: Path, nonce: u64) {
        let kind = [PayloadKind::PathResponse as u8];
        self.send_payload_on(ctx, now, &[&kind, &nonce.to_le_bytes()], Some(from));
    }

    /// Takes the answer to one of our challenges: a direct path that works both ways.
    fn on_path_response(&mut self, ctx: &mut Context<'_>, now: Instant, from: Path, nonce: u64) {
        if !self.punch.handle_path_response(from, nonce) {
            ctx.out.stats.dropped_unexpected += 1;
            return;
        }
        ctx.out.stats.direct_upgrades += 1;
        self.move_to(ctx, now, from);
        // Show the peer the way at once, rather than at the next stream packet.
        self.send_payload_on(ctx, now, &[], None);
    }

    /// When data sent on this session has gone unanswered for `path_timeout`: the later of the
    /// last packet heard and the oldest packet still unacknowledged, plus the timeout (an idle
    /// session that starts sending has not been waiting all along). `None` while nothing is
    /// owed, or while a handshake is in flight (its own retries are the check then).
    fn unanswered_deadline(&self, cfg: &SessionConfig) -> Option<Instant> {
        if self.pending.is_some() {
            return None;
        }
        let since = self
            .streams
            .mux
            .awaiting_ack_since()?
            .max(self.last_received);
        Some(since + cfg.path_timeout)
    }

    /// The next path deadline: a step of the relayed search for a direct path, or the moment
    /// unanswered data makes us check the path and the peer.
    fn path_deadline(&self, cfg: &SessionConfig) -> Option<(Instant, Timer)> {
        if !self.connected || self.keys.current.is_none() {
            return None;
        }
        [self.punch.poll_timeout(), self.unanswered_deadline(cfg)]
            .into_iter()
            .flatten()
            .min()
            .map(|at| (at, Timer::PathCheck))
    }

    /// Acts on the path deadlines that are due.
    ///
    /// Unanswered data means the path died or the peer restarted and forgot us. A direct path
    /// is given up for the relay (when allowed), and a handshake finds out about the peer: a
    /// live peer answers it like a rekey, a restarted one as a new instance, which ends this
    /// session so that its services are looked up again at once instead of after the idle
    /// timeout.
    fn path_timeout(&mut self, ctx: &mut Context<'_>, now: Instant) {
        if !self.connected || self.keys.current.is_none() {
            return;
        }
        let unanswered = self
            .unanswered_deadline(&ctx.config.session)
            .is_some_and(|at| at <= now);
        if unanswered {
            if let Some(relay) = self.punch.fallback() {
                ctx.out.stats.relay_fallbacks += 1;
                self.move_to(ctx, now, relay);
                self.liveness.fell_back(now);
            }
            if self.punch.path().is_relay() {
                ctx.out.notes.push_back(Note::RelaySilent(self.key));
            }
            self.start_handshake(ctx, now);
        }
        self.punch.handle_timeout(&ctx.config.session, now, ctx.rng);
        self.drain_punch(ctx, now);
    }

    /// The largest application datagram: room is kept for the relay's wrapping whenever the
    /// session may be relayed, so a datagram accepted now fits later too.
    fn max_datagram(&self, ctx: &Context<'_>) -> usize {
        let relay = if self.punch.may_relay() {
            RELAY_OVERHEAD
        } else {
            0
        };
        ctx.config
            .max_udp_payload
            .saturating_sub(DATAGRAM_OVERHEAD + relay)
    }

    // ----- streams ------------------------------------------------------------------------

    /// Sends every packet the stream layer has ready (as congestion control and pacing allow)
    /// and passes its events on. Called after anything that may give it work.
    pub(crate) fn flush_mux(&mut self, ctx: &mut Context<'_>, now: Instant) {
        self.send_mux_packets(ctx, now);
        // Reading a header may free credit and queue a window update: send again until quiet.
        while self.streams.pass_events(ctx, self.id) {
            if self.streams.violated {
                ctx.out.stats.protocol_violations += 1;
                self.close(ctx, now, CloseCode::ProtocolViolation);
                return;
            }
            self.send_mux_packets(ctx, now);
        }
    }

    fn send_mux_packets(&mut self, ctx: &mut Context<'_>, now: Instant) {
        let reject_after = ctx.config.session.reject_after_packets;
        // The largest stream-layer packet on the current path.
        let relay = if self.punch.path().is_relay() {
            RELAY_OVERHEAD
        } else {
            0
        };
        let max_plaintext = 1 + ctx
            .config
            .max_udp_payload
            .saturating_sub(STREAM_OVERHEAD + relay);
        while let Some(keypair) = self.keys.current.as_mut() {
            let mux = &mut self.streams.mux;
            let packet = keypair.seal_with(max_plaintext, reject_after, |buf| {
                buf[0] = PayloadKind::Stream as u8;
                mux.poll_packet(now, &mut buf[1..]).map(|n| n + 1)
            });
            let Some(packet) = packet else { break };
            let rekey = keypair.sent() >= ctx.config.session.rekey_after_packets;
            self.transmit(ctx, now, packet);
            if rekey {
                self.start_handshake(ctx, now);
            }
        }
    }

    // ----- closing ------------------------------------------------------------------------

    /// Closes the session at the application's request, telling the peer if we can.
    pub(crate) fn close(&mut self, ctx: &mut Context<'_>, now: Instant, code: CloseCode) {
        if self.can_send(ctx) {
            let mut body = vec![PayloadKind::Control as u8];
            Control::Close { code }.encode(&mut body);
            self.send_payload(ctx, now, &[&body]);
        }
        let reason = match code {
            CloseCode::ProtocolViolation => CloseReason::ProtocolViolation,
            _ => CloseReason::Local,
        };
        self.end(ctx, reason);
    }

    // ----- liveness (see liveness.rs) ------------------------------------------------------

    /// Since when the peer owes us signs of life, if it does: the session is up, and streams
    /// are open and the last packet heard carried stream data (a receiver in mid-transfer,
    /// which has nothing else to send: from that packet on), or data awaits acknowledgement
    /// (from the later of its sending and the last packet heard, as an idle session that
    /// starts sending has not been waiting all along). Only then is a silent peer probed and
    /// given up on early; once a probe is answered, an idle session with open streams is back
    /// on the keepalive.
    fn liveness_since(&self) -> Option<Instant> {
        let mux = &self.streams.mux;
        if !self.connected || self.closed {
            return None;
        }
        if mux.has_streams() && mux.data_received_at() == Some(self.last_received) {
            return Some(self.last_received);
        }
        mux.awaiting_ack_since().map(|t| t.max(self.last_received))
    }

    /// The peer answered nothing for the liveness timeout: the session ends, so every stream's
    /// local connection is reset. The peer is told in case only its packets to us are lost.
    fn give_up(&mut self, ctx: &mut Context<'_>, now: Instant) {
        if self.can_send(ctx) {
            let mut body = vec![PayloadKind::Control as u8];
            Control::Close {
                code: CloseCode::Normal,
            }
            .encode(&mut body);
            self.send_payload(ctx, now, &[&body]);
        }
        self.end(ctx, CloseReason::PeerUnresponsive);
    }

    // ----- end of liveness -----------------------------------------------------------------

    fn end(&mut self, ctx: &mut Context<'_>, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        ctx.out.notes.push_back(Note::Down(self.key, reason));
        if self.announced {
            ctx.out.events.push_back(Event::SessionClosed {
                peer: self.id,
                key: self.key,
                reason,
            });
        }
        ctx.ids.release(self.id);
        if let Some(pending) = self.pending.take() {
            ctx.indices.free(pending.local_index);
        }
        self.keys.forget_all(ctx.indices);
    }

    // ----- timers -------------------------------------------------------------------------

    /// The next deadline of this session, derived from its state.
    pub(crate) fn poll_timeout(&self, cfg: &SessionConfig) -> Option<(Instant, Timer)> {
        if self.closed {
            return None;
        }
        let mut next: Option<(Instant, Timer)> = None;
        let mut consider = |at: Instant, timer: Timer| {
            if next.is_none_or(|(n, _)| at < n) {
                next = Some((at, timer));
            }
        };
        match &self.pending {
            Some(p) => consider(
                p.next_attempt.min(p.started + cfg.handshake_timeout),
                Timer::Handshake,
            ),
            None => {
                if let Some(current) = &self.keys.current {
                    consider(current.created + self.keys.rekey_age(cfg), Timer::Rekey);
                }
                if self.connected {
                    consider(self.last_received + silence_limit(cfg), Timer::Rekey);
                }
            }
        }
        // Only keys that can still seal have a keepalive; used-up keys wait for the rekey.
        if self
            .keys
            .current
            .as_ref()
            .is_some_and(|k| k.sent() < cfg.reject_after_packets)
        {
            consider(self.last_sent + cfg.keepalive_interval, Timer::KeepAlive);
        }
        if self.connected {
            consider(self.last_received + cfg.idle_timeout, Timer::Idle);
        }
        if let Some(since) = self.liveness_since() {
            consider(self.liveness.probe_at(cfg, since), Timer::KeepAlive);
            consider(self.liveness.give_up_at(cfg, since), Timer::Idle);
        }
        if let Some((at, timer)) = self.path_deadline(cfg) {
            consider(at, timer);
        }
        if let Some(at) = self.keys.expiry(cfg) {
            consider(at, Timer::KeyExpiry);
        }
        // The stream layer's timers only matter once its packets can go out.
        if self.keys.current.is_some() {
            if let Some((at, timer)) = self.streams.mux.poll_timeout() {
                consider(at, timer);
            }
        }
        next
    }

    /// Acts on every deadline that is due at `now`.
    pub(crate) fn handle_timeout(&mut self, ctx: &mut Context<'_>, now: Instant) {
        let cfg = ctx.config.session.clone();
        // Keys past their hard age are erased first, so nothing below uses them.
        self.keys.expire(&cfg, now, ctx.indices);
        if self.connected && now >= self.last_received + cfg.idle_timeout {
            return self.end(ctx, CloseReason::IdleTimeout);
        }
        // ----- liveness (see liveness.rs) -----
        if let Some(since) = self.liveness_since() {
            if now >= self.liveness.give_up_at(&cfg, since) {
                return self.give_up(ctx, now);
            }
            if now >= self.liveness.probe_at(&cfg, since) {
                self.liveness.probed(since);
                self.streams.mux.ping();
            }
        }
        // ----- end of liveness -----
        if let Some(p) = &self.pending {
            if now >= p.started + cfg.handshake_timeout {
                // (Reaching here, the peer was heard within the idle timeout.)
                if !(self.connected && self.keys.current.is_some()) {
                    return self.end(ctx, CloseReason::HandshakeTimeout);
                }
                // A rekey or liveness handshake failed while the peer is still heard on the
                // current keys: keep the session and try again later (rekey, silence or key
                // expiry will start the next one).
                let p = self.pending.take().expect("matched above");
                ctx.indices.free(p.local_index);
            } else if now >= p.next_attempt {
                let (started, attempts) = (p.started, p.attempts);
                self.send_initiation(ctx, now, started, attempts);
            }
        } else {
            let old_keys = self
                .keys
                .current
                .as_ref()
                .is_some_and(|k| now >= k.created + self.keys.rekey_age(&cfg));
            let silent = self.connected && now >= self.last_received + silence_limit(&cfg);
            let no_keys = self.keys.current.is_none() && (self.connected || !self.queue.is_empty());
            if old_keys || silent || no_keys {
                self.start_handshake(ctx, now);
            } else if self.keys.current.is_none() && self.keys.next.is_none() {
                // Nothing left: an answered initiation that was never confirmed, or a peer
                // that restarted and went away. Forget it.
                return self.end(ctx, CloseReason::HandshakeTimeout);
            }
        }
        self.path_timeout(ctx, now);
        if self.keys.current.is_some() {
            if self
                .streams
                .mux
                .poll_timeout()
                .is_some_and(|(at, _)| at <= now)
            {
                self.streams.mux.handle_timeout(now);
            }
            self.flush_mux(ctx, now);
        }
        if self
            .keys
            .current
            .as_ref()
            .is_some_and(|k| k.sent() < cfg.reject_after_packets)
            && now >= self.last_sent + cfg.keepalive_interval
        {
            self.send_payload(ctx, now, &[]);
        }
    }
}
