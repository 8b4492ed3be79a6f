//! Liveness of a session in use: how a session with open streams or unacknowledged data
//! notices within seconds that its peer is gone, rather than at the idle timeout.
//!
//! A receiver has nothing to send, so without probing nothing would notice a peer that
//! vanished (killed, or stopped without telling us) until `idle_timeout`. As QUIC's
//! keepalive and probe timeout do, the session sends ack-eliciting pings while it hears
//! nothing, at growing intervals (a tenth of `liveness_timeout`, then doubling), and gives up
//! once `liveness_timeout` (4 s by default) has passed without a packet from the peer. An
//! unanswered ping is data awaiting acknowledgement, so a silent direct path falls back to the
//! relay first (after three probe timeouts, at least `path_timeout_min` and at most
//! `path_timeout`, see `Session::path_timeout`); the relay then gets at
//! least 1.2 `handshake_retry` (a relayed handshake, with room for the relay's round trip) to
//! carry an answer before the session gives up. A session with nothing open keeps the
//! keepalive and idle timeout.
//!
//! This file holds the bookkeeping and the deadlines; the session calls it with the time it
//! last heard the peer (`since`).

use std::time::{Duration, Instant};

use crate::config::SessionConfig;

/// The shortest keepalive interval learning goes down to.
pub(super) const MIN_KEEPALIVE: Duration = Duration::from_secs(5);
/// After this long on a direct path without losing it, the learned keepalive interval is
/// forgotten (the NAT may have changed, or the loss had another cause), and the configured one
/// applies again; a misjudged NAT costs at most one fallback per this period.
pub(super) const KEEPALIVE_RELEARN: Duration = Duration::from_secs(3600);

/// Most probes counted in one silence: the intervals stop doubling there (far beyond any
/// sensible `liveness_timeout` anyway).
const MAX_BACKOFF: u32 = 16;

/// Probes sent during the current silence, and the latest fallback to the relay.
#[derive(Debug, Default)]
pub(super) struct Liveness {
    /// The silence the probe count belongs to: the time the peer was last heard when it
    /// started. A packet from the peer starts a new silence (and the count over).
    silence: Option<Instant>,
    /// Probes sent since `silence` started.
    probes: u32,
    /// When the session last gave a silent direct path up for the relay.
    fell_back: Option<Instant>,
    /// The keepalive interval learned from direct paths lost (a NAT forgot its mapping
    /// between keepalives), and when it was last shortened; `None`: the configured one.
    keepalive: Option<(Duration, Instant)>,
}

impl Liveness {
    /// Probes sent in the silence that started at `since`.
    fn probes_in(&self, since: Instant) -> u32 {
        if self.silence == Some(since) {
            self.probes
        } else {
            0
        }
    }

    /// When the next probe is due, for a session in use that last heard its peer at `since`:
    /// after a tenth of the timeout (400 ms by default: early, so that a silent direct path
    /// falls back to the relay early), then at doubling intervals.
    pub(super) fn probe_at(&self, cfg: &SessionConfig, since: Instant) -> Instant {
        let step = cfg.liveness_timeout / 10;
        let k = self.probes_in(since).min(MAX_BACKOFF);
        since + step * ((1u32 << (k + 1)) - 1)
    }

    /// When a session in use that last heard its peer at `since` gives up: `liveness_timeout`
    /// later, but not before the relay it fell back to during this silence had 1.2
    /// `handshake_retry` to answer (the peer may have to fall back too before the relay finds
    /// it).
    pub(super) fn give_up_at(&self, cfg: &SessionConfig, since: Instant) -> Instant {
        let at = since + cfg.liveness_timeout;
        match self.fell_back.filter(|&t| t >= since) {
            Some(t) => at.max(t + cfg.handshake_retry * 6 / 5),
            None => at,
        }
    }

    /// Counts a probe sent in the silence that started at `since`.
    pub(super) fn probed(&mut self, since: Instant) {
        if self.silence != Some(since) {
            self.silence = Some(since);
            self.probes = 0;
        }
        self.probes = self.probes.saturating_add(1);
    }

    /// The session gave a silent direct path up for the relay at `now`.
    pub(super) fn fell_back(&mut self, now: Instant) {
        self.fell_back = Some(now);
    }

    /// The interval between keepalives on an otherwise quiet session at `now`.
    pub(super) fn keepalive(&self, cfg: &SessionConfig, now: Instant) -> Duration {
        match self.keepalive {
            Some((learned, at)) if now < at + KEEPALIVE_RELEARN => learned,
            _ => cfg.keepalive_interval,
        }
    }

    /// The direct path was lost at `now`: perhaps a NAT between us forgot its mapping before
    /// the next keepalive refreshed it, as NATs with short UDP timeouts (10-30 s) do. The
    /// keepalive interval halves, down to [`MIN_KEEPALIVE`]; returns the new interval.
    pub(super) fn path_lost(&mut self, cfg: &SessionConfig, now: Instant) -> Duration {
        let current = self.keepalive(cfg, now);
        let shorter = (current / 2).max(MIN_KEEPALIVE).min(current);
        self.keepalive = Some((shorter, now));
        shorter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_path_halves_the_keepalive_down_to_a_floor_and_an_hour_restores_it() {
        let cfg = SessionConfig::default();
        let t0 = crate::tests::origin();
        let mut l = Liveness::default();
        assert_eq!(l.keepalive(&cfg, t0), cfg.keepalive_interval);
        assert_eq!(l.path_lost(&cfg, t0), cfg.keepalive_interval / 2);
        assert_eq!(l.keepalive(&cfg, t0), cfg.keepalive_interval / 2);
        for _ in 0..10 {
            l.path_lost(&cfg, t0);
        }
        assert_eq!(l.keepalive(&cfg, t0), MIN_KEEPALIVE);
        let later = t0 + KEEPALIVE_RELEARN;
        assert_eq!(l.keepalive(&cfg, later), cfg.keepalive_interval);
    }

    #[test]
    fn probes_back_off_and_a_new_silence_starts_over() {
        let cfg = SessionConfig::default();
        let t0 = crate::tests::origin();
        let step = cfg.liveness_timeout / 10;
        let mut l = Liveness::default();
        assert_eq!(l.probe_at(&cfg, t0), t0 + step);
        l.probed(t0);
        assert_eq!(l.probe_at(&cfg, t0), t0 + step * 3);
        l.probed(t0);
        assert_eq!(l.probe_at(&cfg, t0), t0 + step * 7);
        // Heard again: the next silence probes at the first interval.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.probe_at(&cfg, t1), t1 + step);
        l.probed(t1);
        assert_eq!(l.probe_at(&cfg, t1), t1 + step * 3);
    }

    #[test]
    fn a_fallback_to_the_relay_gets_time_to_answer() {
        let cfg = SessionConfig::default();
        let t0 = crate::tests::origin();
        let mut l = Liveness::default();
        assert_eq!(l.give_up_at(&cfg, t0), t0 + cfg.liveness_timeout);
        // Early fallback: the timeout still rules.
        l.fell_back(t0 + Duration::from_secs(1));
        assert_eq!(l.give_up_at(&cfg, t0), t0 + cfg.liveness_timeout);
        // Late fallback: the relay gets one and a half retry intervals.
        let late = t0 + cfg.liveness_timeout - Duration::from_millis(100);
        l.fell_back(late);
        assert_eq!(l.give_up_at(&cfg, t0), late + cfg.handshake_retry * 6 / 5);
        // A fallback of an earlier silence does not count.
        let t1 = late + Duration::from_millis(1);
        assert_eq!(l.give_up_at(&cfg, t1), t1 + cfg.liveness_timeout);
    }
}
