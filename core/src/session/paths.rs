//! A session's paths: what the punch agent wants sent, path challenges and responses, and the
//! deadlines that decide when a direct path has gone silent.

use std::time::{Duration, Instant};

use super::state::Session;
use super::{Context, DATAGRAM_OVERHEAD, Note, STREAM_OVERHEAD};
use crate::config::{Config, DEAD_PATH_PTOS, SessionConfig};
use crate::path::Path;
use crate::punch::{Outgoing, RELAY_OVERHEAD};
use crate::timer::Timer;
use crate::wire::payload::PayloadKind;

impl Session {
    // ----- paths --------------------------------------------------------------------------

    /// The path packets to the peer take.
    pub(crate) fn path(&self) -> Path {
        self.punch.path()
    }

    /// Sends what the punch agent queued: probes and initiations as they are, path challenges
    /// sealed with the current keys.
    pub(super) fn drain_punch(&mut self, ctx: &mut Context<'_>, now: Instant) {
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
        if self.on_pong(ctx, now, from, nonce) {
            return;
        }
        if !self.punch.handle_path_response(from, nonce) {
            ctx.out.stats.dropped_unexpected += 1;
            return;
        }
        ctx.out.stats.direct_upgrades += 1;
        self.move_to(ctx, now, from);
        // The answer proves the peer reachable: probe timeouts that backed off while the old
        // path was silent would hold the stream back for up to a second more.
        self.streams.mux.peer_reachable();
        // Show the peer the way at once, rather than at the next stream packet.
        self.send_payload_on(ctx, now, &[], None);
    }

    /// When data sent on this session has gone unanswered for too long (see
    /// [`Self::silence_allowed`]): the later of the last packet heard and the oldest packet
    /// still unacknowledged, plus the allowed silence (an idle session that starts sending has
    /// not been waiting all along). `None` while nothing is owed, or while a handshake is in
    /// flight (its own retries are the check then).
    fn unanswered_deadline(&self, cfg: &SessionConfig) -> Option<Instant> {
        if self.pending.is_some() {
            return None;
        }
        let since = self
            .streams
            .mux
            .awaiting_ack_since()?
            .max(self.last_received);
        Some(since + self.silence_allowed(cfg))
    }

    /// How long owed data may go unanswered on the current path. On a direct path with a relay
    /// to fall back to: [`DEAD_PATH_PTOS`] probe timeouts of the path's round trip, within
    /// `path_timeout_min..=path_timeout`; a NAT that lost its state mid-transfer (a flush, a
    /// reboot) is noticed within about a second and the fallback's fresh introduction can find
    /// the new mapping at once. Otherwise (relayed, or direct only) `path_timeout`: a relay's
    /// round trip is longer and varies more, and without a relay the check is only a handshake.
    fn silence_allowed(&self, cfg: &SessionConfig) -> Duration {
        if self.punch.fallback().is_none() {
            return cfg.path_timeout;
        }
        let floor = cfg.path_timeout_min.min(cfg.path_timeout);
        (self.streams.mux.round_trip_bound() * DEAD_PATH_PTOS).clamp(floor, cfg.path_timeout)
    }

    /// The next path deadline: a step of the relayed search for a direct path, or the moment
    /// unanswered data makes us check the path and the peer.
    pub(super) fn path_deadline(&self, cfg: &SessionConfig) -> Option<(Instant, Timer)> {
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
    pub(super) fn path_timeout(&mut self, ctx: &mut Context<'_>, now: Instant) {
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

    /// The largest application datagram. From the base packet size, room is kept for the
    /// relay's wrapping whenever the session may be relayed, so a datagram that size fits
    /// on any path. On a direct path whose size the stream layer's path MTU discovery
    /// confirmed, datagrams may be as large as its packets (a datagram and a stream packet
    /// cost the same around them); one sent so after the session moves to a smaller path is
    /// refused as too large, as a datagram the network drops would be lost.
    pub(crate) fn max_datagram(&self, config: &Config) -> usize {
        let relay = if self.punch.may_relay() {
            RELAY_OVERHEAD
        } else {
            0
        };
        let base = config
            .max_udp_payload
            .saturating_sub(DATAGRAM_OVERHEAD + relay);
        let path = self.punch.path();
        let found = if !path.is_relay() && self.sized_for == Some(path) {
            // The stream layer's confirmed packet plus its overhead is the UDP payload the
            // path carries; the datagram's overhead is the same.
            const _: () = assert!(STREAM_OVERHEAD == DATAGRAM_OVERHEAD);
            self.streams.mux.stats().packet_size
        } else {
            0
        };
        base.max(found)
    }
}
