//! Which path a session uses: relay fallback, direct-path challenges while relayed, and the
//! packet sizes each path allows.
//!
//! A session introduced by the rendezvous server may use the server as a relay. While punching
//! it uses the relay from [`crate::config::SessionConfig::relay_after`] on; once relayed it
//! sends rounds of path challenges to the peer's candidates (backing off), and the first
//! challenge answered from a direct address proves that path both ways: our challenge got in,
//! the answer got out. When data waits for acknowledgement for
//! [`crate::config::SessionConfig::path_timeout`], a direct path is given up for the relay and a
//! handshake checks on the peer (a restarted peer answers it as a new instance). Either side's
//! move shows the other the way: every authenticated packet (other than a challenge or its
//! answer) moves the receiver onto the path it came by.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Context;
use super::state::{DATAGRAM_OVERHEAD, STREAM_OVERHEAD, Session};
use crate::config::SessionConfig;
use crate::path::Path;
use crate::timer::Timer;
use crate::wire::header::TRANSPORT_HEADER_LEN;
use crate::wire::payload::{PayloadKind, RELAY_PREFIX_LEN};

/// What a relayed packet costs on top of the daemons' own packet: the header, tag and relay
/// prefix of the session with the relay.
pub(crate) const RELAY_OVERHEAD: usize =
    TRANSPORT_HEADER_LEN + crate::crypto::noise::TAG_LEN + RELAY_PREFIX_LEN;

/// The search for a direct path while relayed.
///
/// Each round is a small punch: TTL-limited probes to the peer's candidates (and the predicted
/// ports above its reflexive one, see [`super::state::PREDICTED_PORTS`]) open our own NAT
/// toward them without reaching the peer's NAT, and `punch_lead` later the challenges follow at
/// full TTL. Both sides start their rounds when the session is up on the relay, which happens
/// on both within one relay trip, and use the same intervals, so their rounds line up and
/// each side's NAT is open before the other's challenge arrives. Were a challenge to reach a
/// Linux NAT first, it would leave a conntrack entry that remaps our own packets to that peer
/// (the clash); the intervals grow past the 30 s in which such entries expire unless
/// refreshed, so one left over from failed punching does not block every later round.
#[derive(Clone, Debug, Default)]
pub(crate) struct Probing {
    /// The nonce of the latest round of challenges.
    nonce: Option<u64>,
    /// When the next step goes out (`None`: not probing).
    next: Option<Instant>,
    /// Whether the next step is a round's challenges (after its probes went out).
    challenge_next: bool,
    /// Rounds sent so far: the probes' TTL climbs one hop a round.
    rounds: u8,
    /// The delay from the start of the next round to the one after.
    interval: Duration,
}

impl Session {
    /// Whether this handshake attempt should also go through the relay.
    pub(super) fn relay_due(&self, now: Instant, attempts: u32) -> bool {
        if self.relay.is_none() || self.path.is_relay() {
            return false;
        }
        if self.connected {
            // A liveness or rekey handshake on a direct path whose first attempt went
            // unanswered: the path may have died.
            attempts >= 1
        } else {
            self.relay_from.is_some_and(|at| now >= at)
        }
    }

    /// Where punching and the relayed rounds send: the peer's candidates, then the predicted
    /// ports above its reflexive one. Never used on a direct path.
    pub(super) fn punch_targets(&self) -> Vec<std::net::SocketAddr> {
        let mut targets = self.candidates.clone();
        targets.extend(super::state::predicted_ports(&self.candidates));
        targets
    }

    /// Whether packets that came by `from` may be taken: the route policy's word.
    pub(crate) fn path_allowed(&self, from: Path) -> bool {
        match from {
            Path::Direct(_) => self.direct_allowed,
            Path::Relay(_) => self.relay.is_some() || self.path.is_relay(),
        }
    }

    /// Starts or stops the search for a direct path after the path changed.
    pub(super) fn on_path_change(&mut self, ctx: &Context<'_>, now: Instant) {
        // Rounds start once the session is up, which happens on both sides within one relay
        // trip, so that their rounds line up.
        let search = self.connected
            && self.path.is_relay()
            && self.direct_allowed
            && !self.candidates.is_empty();
        // The first round waits one interval: punching has only just failed (or the direct
        // path only just died).
        let first = ctx.config.session.path_probe_min;
        self.probing = Probing {
            nonce: None,
            next: search.then_some(now + first),
            challenge_next: false,
            rounds: 0,
            interval: first * 2,
        };
    }

    /// Answers a path challenge on the path it came by.
    pub(super) fn answer_challenge(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        from: Path,
        nonce: u64,
    ) {
        let kind = [PayloadKind::PathResponse as u8];
        self.send_payload_on(ctx, now, &[&kind, &nonce.to_le_bytes()], Some(from));
    }

    /// Takes the answer to one of our challenges: a direct path that works both ways.
    pub(super) fn on_path_response(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        from: Path,
        nonce: u64,
    ) {
        let current = self.probing.nonce == Some(nonce);
        if !current || from.is_relay() || !self.path.is_relay() {
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
        let since = self.mux.awaiting_ack_since()?.max(self.last_received);
        Some(since + cfg.path_timeout)
    }

    /// The next path deadline: a round of challenges while relayed, or the moment unanswered
    /// data makes us check the path and the peer.
    pub(super) fn path_deadline(&self, cfg: &SessionConfig) -> Option<(Instant, Timer)> {
        if !self.connected || self.current.is_none() {
            return None;
        }
        let round = self.probing.next.filter(|_| self.path.is_relay());
        [round, self.unanswered_deadline(cfg)]
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
    pub(super) fn path_timeout(&mut self, ctx: &mut Context<'_>, now: Instant) {
        if !self.connected || self.current.is_none() {
            return;
        }
        let unanswered = self
            .unanswered_deadline(&ctx.config.session)
            .is_some_and(|at| at <= now);
        if unanswered {
            if let (Path::Direct(_), Some(relay)) = (self.path, self.relay) {
                ctx.out.stats.relay_fallbacks += 1;
                self.move_to(ctx, now, Path::Relay(relay));
            }
            if self.path.is_relay() {
                ctx.out.notes.push_back(super::Note::RelaySilent(self.key));
            }
            self.start_handshake(ctx, now);
        }
        if self.path.is_relay() && self.probing.next.is_some_and(|at| at <= now) {
            self.probe_round(ctx, now);
        }
    }

    /// One step of the search for a direct path: a round's TTL-limited probes, or its
    /// challenges.
    fn probe_round(&mut self, ctx: &mut Context<'_>, now: Instant) {
        let cfg = &ctx.config.session;
        if !self.probing.challenge_next {
            let ttl = cfg
                .punch_ttl_start
                .saturating_add(self.probing.rounds)
                .min(cfg.punch_ttl_ceiling);
            self.probing.rounds = self.probing.rounds.saturating_add(1);
            self.probing.challenge_next = true;
            self.probing.next = Some(now + cfg.punch_lead);
            let probe = Bytes::copy_from_slice(&crate::wire::header::probe());
            for dst in self.punch_targets() {
                self.transmit_to(ctx, now, dst, Some(ttl), probe.clone());
            }
            return;
        }
        let nonce = ctx.rng.u64();
        let interval = self.probing.interval;
        self.probing.nonce = Some(nonce);
        self.probing.challenge_next = false;
        self.probing.next = Some(now + interval.saturating_sub(cfg.punch_lead));
        self.probing.interval = (interval * 2).min(cfg.path_probe_max);
        let kind = [PayloadKind::PathChallenge as u8];
        for dst in self.punch_targets() {
            self.send_payload_on(
                ctx,
                now,
                &[&kind, &nonce.to_le_bytes()],
                Some(Path::Direct(dst)),
            );
        }
    }

    /// The largest application datagram: room is kept for the relay's wrapping whenever the
    /// session may be relayed, so a datagram accepted now fits later too.
    pub(super) fn max_datagram(&self, ctx: &Context<'_>) -> usize {
        let relay = if self.relay.is_some() || self.path.is_relay() {
            RELAY_OVERHEAD
        } else {
            0
        };
        ctx.config
            .max_udp_payload
            .saturating_sub(DATAGRAM_OVERHEAD + relay)
    }

    /// The largest stream-layer packet on the current path.
    pub(super) fn mux_packet_size(&self, ctx: &Context<'_>) -> usize {
        let relay = if self.path.is_relay() {
            RELAY_OVERHEAD
        } else {
            0
        };
        ctx.config
            .max_udp_payload
            .saturating_sub(STREAM_OVERHEAD + relay)
    }
}
