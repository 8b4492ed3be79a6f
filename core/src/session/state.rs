//! The per-peer session state: the `Session` struct, closing, and the deadlines derived from
//! it. The rest of its methods are grouped by concern in `establish.rs` (handshakes),
//! `transport.rs` (receiving and sending) and `paths.rs` (punching and path checks).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::keys::Keys;
use super::liveness::Liveness;
use super::streams::Streams;
use super::{Context, Note};
use crate::config::SessionConfig;
use crate::crypto::PublicKey;
use crate::crypto::cookie::CookieJar;
use crate::crypto::noise::InitiatorHandshake;
use crate::error::CloseReason;
use crate::event::{Event, PeerId};
use crate::path::Path;
use crate::punch::Agent;
use crate::timer::Timer;
use crate::wire::control::{CloseCode, Control};
use crate::wire::header::MAC_LEN;
use crate::wire::payload::PayloadKind;

/// Our handshake in flight.
pub(super) struct Pending {
    pub(super) state: InitiatorHandshake,
    pub(super) local_index: u32,
    pub(super) mac1: [u8; MAC_LEN],
    /// When the first attempt of this handshake went out.
    pub(super) started: Instant,
    pub(super) next_attempt: Instant,
    pub(super) attempts: u32,
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
    pub(super) cookies: CookieJar,
    pub(super) pending: Option<Pending>,
    /// While set and not reached, our first handshake waits for the peer's (see
    /// [`Session::yield_first_handshake`]); `start_handshake` sends nothing before it.
    pub(super) first_attempt_at: Option<Instant>,
    /// Transport packets under our pending handshake's index that came before its response
    /// (a responder's 0.5-RTT data overtook it); replayed once the response is in. At most
    /// [`super::establish::EARLY_PACKETS`].
    pub(super) early: Vec<super::establish::Early>,
    /// Key generations: current, previous, and next (awaiting confirmation).
    pub(super) keys: Keys,
    /// Creation time, then the time of the last authenticated packet from the peer.
    pub(super) last_received: Instant,
    /// When an authenticated packet last came straight from the peer (not through the relay).
    pub(super) direct_received: Option<Instant>,
    /// The path the stream layer's packet size was found for (see `send_mux_packets`).
    pub(super) sized_for: Option<Path>,
    pub(super) last_sent: Instant,
    /// Newest handshake timestamp from this peer: of an initiation we accepted or a response
    /// we took. Initiations not newer are replays (or from a previous life of the peer).
    pub(super) last_init_timestamp: u64,
    /// The peer's endpoint instance, once a handshake told us.
    pub(super) peer_instance: Option<u64>,
    /// This session's number, given by the responder of the handshake that started it
    /// ([`super::handshake::NEW_SESSION`] before that, or with a peer that predates session
    /// numbers). A rekey names it; an answer with another number means the peer no longer
    /// has this session.
    pub(super) number: u64,
    pub(super) connected: bool,
    /// Whether the application knows this session's handle (it called connect, or saw
    /// `Connected`); only then does it hear `SessionClosed`.
    pub(crate) announced: bool,
    pub(super) queue: VecDeque<Bytes>,
    /// The streams of this session, behind their mux.
    pub(crate) streams: Streams,
    /// Set once the session has ended; the endpoint then removes it.
    pub(crate) closed: bool,
    /// Probes of a peer that went silent while the session is in use (`liveness.rs`).
    pub(super) liveness: Liveness,
    /// Pings awaiting their answer (`ping.rs`).
    pub(super) pings: super::ping::Pings,
    /// Whether our keepalive holds a direct path (our static key is the smaller one): see
    /// [`Session::keepalive_at`].
    pub(super) keeps_path: bool,
    /// Every keepalive is an ack-eliciting ping (the session to the rendezvous server), so a
    /// peer that vanished is noticed at the first unanswered keepalive (`liveness.rs`), not
    /// at the idle timeout.
    pub(crate) pings_keepalive: bool,
    /// The source (see [`source_of`]) of the initiation that made this session, until the
    /// session is up: while set, the session is a half-open handshake held for that source.
    pub(crate) opened_by: Option<IpAddr>,
}

/// The source an address counts as for per-source limits: the IP, or for IPv6 its /64 (one
/// subscriber usually holds a whole /64).
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
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
            first_attempt_at: None,
            keys: Keys::default(),
            last_received: now,
            direct_received: None,
            sized_for: None,
            last_sent: now,
            last_init_timestamp: 0,
            early: Vec::new(),
            peer_instance: None,
            number: super::handshake::NEW_SESSION,
            connected: false,
            announced: false,
            queue: VecDeque::new(),
            closed: false,
            liveness: Liveness::default(),
            pings: Default::default(),
            keeps_path: ctx.identity.secret.public_key() < key,
            pings_keepalive: false,
            opened_by: None,
        }
    }

    /// The newest handshake timestamp heard from the peer (0 if none): initiations not newer
    /// than it are replays.
    pub(crate) fn handshake_timestamp(&self) -> u64 {
        self.last_init_timestamp
    }

    /// The source this session is a half-open handshake for: it was made by answering an
    /// initiation from there, and is neither up nor ended.
    pub(crate) fn half_open_source(&self) -> Option<IpAddr> {
        self.opened_by.filter(|_| !self.connected && !self.closed)
    }

    /// Whether a handshake has completed and data can flow.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected
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

    /// The keepalive interval in force (configured, or learned from a lost direct path).
    pub(crate) fn keepalive(&self, cfg: &SessionConfig) -> Duration {
        self.liveness.keepalive(cfg, self.last_sent)
    }

    /// When the next keepalive is due on an otherwise quiet session.
    ///
    /// On a direct path with a relay to fall back to, one side holds the path: the smaller key
    /// keeps the interval and its keepalive asks for an answer (an ack-eliciting ping, see
    /// [`Self::keepalive_pings`]), the other waits two intervals and a retry, so that the
    /// ping and its answer reset it first. When both sides sent keepalives at about the same
    /// time, each reopened the NAT the other's had expired in, so a NAT that forgets faster
    /// than the interval went unnoticed and the path was closed for part of every interval
    /// (a send then went unanswered and fell back to the relay). One side's ping reaches the
    /// other's NAT only while that NAT remembers the mapping: when it forgot, the ping goes
    /// unanswered, the session falls back, learns a shorter interval (`liveness.rs`) and the
    /// search after the fallback finds the path again.
    fn keepalive_at(&self, cfg: &SessionConfig) -> Instant {
        let interval = self.liveness.keepalive(cfg, self.last_sent);
        let interval = if self.punch.fallback().is_some() && !self.keeps_path {
            interval * 2 + cfg.handshake_retry
        } else {
            interval
        };
        self.last_sent + interval
    }

    /// Whether the keepalive due now is an ack-eliciting ping (see [`Self::keepalive_at`]).
    fn keepalive_pings(&self) -> bool {
        self.pings_keepalive || (self.keeps_path && self.punch.fallback().is_some())
    }

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

    pub(super) fn end(&mut self, ctx: &mut Context<'_>, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        ctx.out.ended = true;
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
                if let Some(at) = self.first_attempt_at {
                    consider(at, Timer::Handshake);
                }
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
            consider(self.keepalive_at(cfg), Timer::KeepAlive);
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
            if let Some(at) = self.streams.held_deadline() {
                consider(at, Timer::HeldStream);
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
            if let Some(at) = self.first_attempt_at {
                // Our first handshake waits for the peer's; when the wait is over, ours goes.
                if now >= at {
                    self.start_handshake(ctx, now);
                }
            } else if old_keys || silent || no_keys {
                self.start_handshake(ctx, now);
            } else if self.keys.current.is_none() && self.keys.next.is_none() {
                // Nothing left: an answered initiation that was never confirmed, or a peer
                // that restarted and went away. Forget it.
                return self.end(ctx, CloseReason::HandshakeTimeout);
            }
        }
        self.path_timeout(ctx, now);
        let sealable = self
            .keys
            .current
            .as_ref()
            .is_some_and(|k| k.sent() < cfg.reject_after_packets);
        let keepalive_due = sealable && now >= self.keepalive_at(&cfg);
        if keepalive_due && self.keepalive_pings() {
            // Sent by the flush below.
            self.streams.mux.ping();
        }
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
        if keepalive_due && now >= self.keepalive_at(&cfg) {
            self.send_payload(ctx, now, &[]);
        }
    }
}
