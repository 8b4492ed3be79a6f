//! Driving a session's handshakes: our initiations and their retries, the peer's initiations
//! and our responses, responses and cookie replies to ours, and what a completed handshake
//! changes (keys, the peer's instance, the path, `Connected`). The messages themselves are
//! built and checked in `handshake.rs`.

use std::time::Instant;

use bytes::Bytes;

use super::handshake::{self, HandshakePayload, NEW_SESSION};
use super::keypair::Keypair;
use super::state::{Pending, Session};
use super::streams::Streams;
use super::{Context, Note};
use crate::crypto::noise::ResponderHandshake;
use crate::crypto::{PublicKey, SecretKey};
use crate::error::CloseReason;
use crate::event::Event;
use crate::path::Path;
use crate::punch;
use crate::punch::agent::TieBreak;
use crate::wire::header::{COOKIE_NONCE_LEN, SEALED_COOKIE_LEN};

/// Most transport packets kept for a handshake whose response has not come yet.
pub(super) const EARLY_PACKETS: usize = 4;

/// A transport packet under our pending handshake's index that came before its response.
pub(crate) struct Early {
    pub(super) from: Path,
    pub(super) local_index: u32,
    pub(super) header: [u8; crate::wire::header::TRANSPORT_HEADER_LEN],
    pub(super) counter: u64,
    pub(super) sealed: Vec<u8>,
}

/// An authenticated initiation we are about to answer.
pub(crate) struct Answering {
    /// The path it came by.
    pub(crate) from: Path,
    /// The Noise state that writes our response.
    pub(crate) responder: ResponderHandshake,
    /// The initiator's index, which our response names.
    pub(crate) remote_index: u32,
    /// The session number it named (see `HandshakePayload::session`).
    pub(crate) resumes: Option<u64>,
}

impl Session {
    // ----- handshakes -------------------------------------------------------------------

    /// Starts a handshake unless one is already in flight, or our first one waits for the
    /// peer's until later (see [`Self::yield_first_handshake`]).
    pub(crate) fn start_handshake(&mut self, ctx: &mut Context<'_>, now: Instant) {
        if self.first_attempt_at.is_some_and(|at| now < at) {
            return;
        }
        self.first_attempt_at = None;
        if self.pending.is_none() {
            self.send_initiation(ctx, now, now, 0);
        }
    }

    /// Holds our first handshake back until `until`, so that the peer's, already on its way
    /// through the relay, is the one that makes the session.
    ///
    /// For a relay-first session we asked for while our key is the larger: the tie-break
    /// ([`punch::agent::tie_break`]) would make our handshake win, and we learn the session
    /// is up only from the peer's response, a relay round trip after the peer had it. As the
    /// responder we are up as we answer (0.5-RTT data), so the stream we open reaches the
    /// peer half a relay round trip sooner, and a service that speaks first is heard a whole
    /// one sooner. While we hold back we have no handshake in flight, so the tie-break
    /// answers whatever comes; if nothing does by `until`, ours goes as usual.
    pub(crate) fn yield_first_handshake(&mut self, until: Instant) {
        if self.pending.is_none() && !self.connected && self.keys.current.is_none() {
            self.first_attempt_at = Some(until);
        }
    }

    pub(super) fn send_initiation(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        started: Instant,
        attempts: u32,
    ) {
        if let Some(old) = self.pending.take() {
            ctx.indices.free(old.local_index);
        }
        self.early.clear();
        let local_index = ctx.indices.allocate(ctx.rng, self.key);
        let ephemeral = SecretKey::from_bytes(ctx.rng.bytes());
        let resumes = self.session_to_name();
        let payload = HandshakePayload {
            timestamp: ctx.identity.unix_nanos(now),
            instance: ctx.identity.instance,
            session: Some(resumes),
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
        if self.punch.is_punching(self.connected) {
            ctx.out.stats.punch.attempts += 1;
        }
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

    /// Whether we answer an authenticated initiation stamped `timestamp` that came by `from`:
    /// the tie-break for simultaneous initiation, [`punch::agent::tie_break`].
    ///
    /// An initiation we decline whatever path it came by still counts as heard: its sender
    /// never sends that message again, only newer ones, so its timestamp becomes the floor.
    /// Otherwise a copy replayed once our own attempts have gone unanswered (when we would
    /// answer it) would be taken as fresh, and answering it moves the path to whoever replayed
    /// it. One declined for its path only (the relay) raises nothing: the sender's same message
    /// may also come straight, and that copy we answer.
    pub(crate) fn yields_to_initiation(
        &mut self,
        local: &PublicKey,
        from: Path,
        timestamp: u64,
    ) -> bool {
        let pending = self.pending.as_ref().map(|p| p.attempts);
        match punch::agent::tie_break(local, &self.key, pending, from) {
            TieBreak::Answer => true,
            TieBreak::Decline => {
                self.last_init_timestamp = self.last_init_timestamp.max(timestamp);
                false
            }
            TieBreak::DeclineOnPath => false,
        }
    }

    /// Whether an initiation stamped `timestamp` is newer than every handshake heard from the
    /// peer (WireGuard's rule: a TAI64N timestamp must exceed the last one accepted from that
    /// key). Checked before anything else about the initiation, so a replay is only ever
    /// dropped as one.
    pub(crate) fn is_fresh_initiation(&self, timestamp: u64) -> bool {
        timestamp > self.last_init_timestamp
    }

    /// The session number our next initiation names: the one the peer is on as far as we
    /// know. That is the session we answered it with while the keys wait for its
    /// confirmation (both sides initiated at once, or it started a new session while we still
    /// had an old one), else the session we have, else none ([`NEW_SESSION`]).
    fn session_to_name(&self) -> u64 {
        match (&self.keys.next, self.keys.next_session) {
            (Some(_), Some(answered)) => answered,
            _ if self.connected => self.number,
            _ => NEW_SESSION,
        }
    }

    /// Whether an initiation naming session `number` continues a session of ours: the one we
    /// have, or the one we answered the peer with whose keys still wait for its
    /// confirmation (its initiator is on it).
    fn has_session(&self, number: u64) -> bool {
        (self.connected && number == self.number)
            || (self.keys.next.is_some() && self.keys.next_session == Some(number))
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

    /// Answers an accepted initiation. An introduced session not up yet, with no handshake
    /// of ours left in flight, answering through the relay, is up on the new keys at once
    /// (0.5-RTT data); otherwise they wait in `next` for confirmation.
    ///
    /// `resumes` (in [`Answering`]) is the session number the initiation named: keys for the session we have
    /// if it is that one, else for a new session with a number of our own. Either way the
    /// session we have carries on until the initiator's first packet confirms the keys (see
    /// `on_transport`): an initiation proves the peer's key, not that it still wants what we
    /// answer.
    ///
    /// Our own handshake in flight is abandoned, unless
    /// [`punch::agent::keeps_own_handshake`] says the larger key keeps it until the session
    /// is up.
    pub(crate) fn respond(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        initiation: Answering,
        local: &PublicKey,
    ) {
        let Answering {
            from,
            responder,
            remote_index,
            resumes,
        } = initiation;
        // Our held-back first handshake is not needed: this one makes the session.
        self.first_attempt_at = None;
        let keep_ours = punch::agent::keeps_own_handshake(local, &self.key, self.connected);
        if !keep_ours {
            if let Some(pending) = self.pending.take() {
                ctx.indices.free(pending.local_index);
            }
        }
        let local_index = ctx.indices.allocate(ctx.rng, self.key);
        let ephemeral = SecretKey::from_bytes(ctx.rng.bytes());
        let session = match resumes {
            // A peer from before session numbers: its keys continue whatever we have.
            None => None,
            Some(number) if number != NEW_SESSION && self.has_session(number) => Some(number),
            Some(_) => Some(new_session_number(ctx)),
        };
        let payload = HandshakePayload {
            timestamp: ctx.identity.unix_nanos(now),
            instance: ctx.identity.instance,
            session,
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
        ctx.out.stats.handshakes_completed += 1;
        let half_rtt = !self.connected
            && self.pending.is_none()
            && from.is_relay()
            && self.punch.was_introduced();
        if half_rtt {
            // 0.5-RTT data (issue 16): a session that is not up yet, answering the only
            // handshake that can complete (none of ours is in flight, or it was just
            // abandoned, and the initiator keeps its own), is up on these keys at once, so
            // what waits for it (a stream's open and first bytes) leaves right behind the
            // response instead of a round trip later, after the initiator's first packet. Noise IK's responder may send after its
            // message: the keys are the final ones; only their forward secrecy against a
            // replayed initiation is weaker until the initiator is heard, as for any
            // answered initiation. Only through the relay, for a peer the server introduced:
            // the server relays only between introduced daemons and only what the peer's
            // own session with it sealed, so the initiation is the peer's and no replay, and
            // no stranger's initiation gets past the half-open limits this way.
            if let Some(number) = session {
                self.number = number;
            }
            self.keys.install_current(ctx.indices, keypair);
            self.streams.mux.peer_reachable();
            self.move_to(ctx, now, from);
            self.last_received = now;
            self.transmit(ctx, now, Bytes::from(packet));
            self.established(ctx, now);
            self.flush_queue(ctx, now);
            self.flush_mux(ctx, now);
            return;
        }
        self.keys.set_next(ctx.indices, keypair, session);
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
        if let Some(number) = payload.session {
            if self.connected && number != self.number {
                // The peer's keys belong to another session than ours: we rekeyed a session
                // it no longer has (its Close has not reached us, or it forgot it), or we
                // named the new session it started with us. Either way ours is over.
                self.start_over(ctx, now, CloseReason::PeerReset);
            }
            self.number = number;
        }
        ctx.out.stats.handshakes_completed += 1;
        let keypair = Keypair::new(keys, pending.local_index, remote_index, true, now);
        self.keys.install_current(ctx.indices, keypair);
        self.streams.mux.peer_reachable();
        self.move_to(ctx, now, from);
        self.last_received = now;
        self.established(ctx, now);
        self.flush_queue(ctx, now);
        self.flush_mux(ctx, now);
        // The responder's packets that overtook its response, now that their keys are here.
        for mut e in std::mem::take(&mut self.early) {
            self.on_transport(
                ctx,
                now,
                e.from,
                e.local_index,
                &e.header,
                e.counter,
                &mut e.sealed,
            );
        }
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
                self.start_over(ctx, now, CloseReason::PeerRestarted);
            }
            _ => {}
        }
    }

    /// Ends the session's life so far because the peer no longer has it (`reason`): the
    /// application hears it closed, and the peer's new session takes its place under a new
    /// handle, with fresh streams, once its handshake completes.
    pub(super) fn start_over(&mut self, ctx: &mut Context<'_>, now: Instant, reason: CloseReason) {
        ctx.out.events.push_back(Event::SessionClosed {
            peer: self.id,
            key: self.key,
            reason,
        });
        ctx.out.notes.push_back(Note::Down(self.key, reason));
        ctx.ids.release(self.id);
        self.id = ctx.ids.assign(self.key);
        self.connected = false;
        self.announced = false;
        self.number = NEW_SESSION;
        self.queue.clear();
        self.streams = Streams::new(ctx, &self.key, now);
        // The old keys belong to the session that ended; the peer no longer takes them.
        self.keys.forget_old(ctx.indices);
    }

    /// Sends on `path` from now on: an authenticated packet came by it. A connected session
    /// tells the application.
    pub(super) fn move_to(&mut self, ctx: &mut Context<'_>, now: Instant, path: Path) {
        let was_direct = !self.punch.path().is_relay();
        let changed = self
            .punch
            .nominate(&ctx.config.session, now, path, self.connected);
        if changed && was_direct && path.is_relay() && self.connected {
            ctx.out.notes.push_back(Note::LeftDirect(self.key));
            self.liveness.path_lost(&ctx.config.session, now);
        }
        if changed && self.connected {
            self.note_direct(ctx, now);
            ctx.out.events.push_back(Event::PathChanged {
                peer: self.id,
                path,
            });
        }
    }

    /// Counts the first direct path of an introduced session, with how long it took.
    fn note_direct(&mut self, ctx: &mut Context<'_>, now: Instant) {
        if let Some(took) = self.punch.first_direct(now) {
            ctx.out.stats.punch.time_to_direct.observe(took);
        }
    }

    /// Counts how an introduced session came up: direct, or relayed and why.
    pub(crate) fn note_punch_outcome(&mut self, ctx: &mut Context<'_>, now: Instant) {
        if !self.punch.was_introduced() {
            return;
        }
        if self.punch.path().is_relay() {
            let reason = self
                .punch
                .why_relayed()
                .map_or(punch::why::CandidateOutcome::NeverTried, |w| w.reason);
            ctx.out.stats.punch.relayed.count(reason);
        } else {
            ctx.out.stats.punch.direct += 1;
            self.note_direct(ctx, now);
        }
    }

    pub(super) fn established(&mut self, ctx: &mut Context<'_>, now: Instant) {
        if !self.connected {
            self.connected = true;
            self.opened_by = None;
            self.punch
                .restart_search(&ctx.config.session, now, self.connected);
            self.announced = true;
            self.note_punch_outcome(ctx, now);
            ctx.out.notes.push_back(Note::Up(self.key));
            ctx.out.events.push_back(Event::Connected {
                peer: self.id,
                key: self.key,
                path: self.punch.path(),
            });
        }
    }
}

/// A number for a session we start as responder: random, so that a number from a session
/// that ended (ours or a previous life's) is not mistaken for it, and never [`NEW_SESSION`].
fn new_session_number(ctx: &mut Context<'_>) -> u64 {
    loop {
        let number = u64::from_le_bytes(ctx.rng.bytes());
        if number != NEW_SESSION {
            return number;
        }
    }
}
