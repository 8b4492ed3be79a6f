//! Packetization-layer path MTU discovery (RFC 8899, done as QUIC does it, RFC 9000 §14.4).
//!
//! Every path carries the base packet size ([`super::StreamConfig::max_packet_size`], from a
//! 1200-byte UDP payload). Above it, the stream layer finds out what the path carries by
//! sending probes: a packet of one PING frame padded to the size under test. An acknowledged
//! probe raises the packet size; a probe lost [`MAX_PROBES`] times in a row marks its size as
//! too large. The search tries the ceiling first (most paths carry a 1500-byte Ethernet MTU),
//! then halves the interval between the largest size known to pass and the smallest known to
//! fail, until it is narrower than [`GRANULARITY`]. Probes are congestion-controlled like any
//! packet, but their loss is not read as congestion.
//!
//! A search starts when the stream layer has data to send on a path that allows probing (the
//! session allows it on direct paths only: the relay's size is the base), again
//! [`RAISE_INTERVAL`] after a search ended below the ceiling, and from the base whenever the
//! session moves to another path. When the path stops carrying the size in use (two probe
//! timeouts in a row, which is what a black hole looks like), the size falls back to the base
//! and a new search starts [`BLACK_HOLE_RETRY`] later.

use std::time::{Duration, Instant};

/// Probes of one size lost in a row before that size counts as too large (RFC 8899
/// `MAX_PROBES`).
pub(crate) const MAX_PROBES: u8 = 3;
/// A search ends when the sizes left to try span fewer bytes than this.
pub(crate) const GRANULARITY: usize = 20;
/// How long after a search that ended below the ceiling another one starts (RFC 8899's
/// `PMTU_RAISE_TIMER`).
pub(crate) const RAISE_INTERVAL: Duration = Duration::from_secs(600);
/// How long after falling back to the base size a new search starts.
pub(crate) const BLACK_HOLE_RETRY: Duration = Duration::from_secs(60);

/// Where the search stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Probing is off on this path.
    Disabled,
    /// The search reached the ceiling; nothing is left to find on this path.
    Done,
    /// No search runs; one may start at `from` (at once when `None`).
    Idle { from: Option<Instant> },
    /// A probe of `size` is wanted (`in_flight` false) or awaited; `attempts` were sent.
    Probing {
        size: usize,
        attempts: u8,
        in_flight: bool,
    },
}

/// The path MTU search of one session's stream layer. Sizes are stream-layer packet sizes
/// (the plaintext [`super::Mux::poll_packet`] writes).
#[derive(Clone, Debug)]
pub(crate) struct Pmtu {
    base: usize,
    ceiling: usize,
    /// The largest size confirmed on this path.
    current: usize,
    /// The smallest size known not to pass, less one (the ceiling while none is known).
    limit: usize,
    state: State,
}

impl Pmtu {
    /// A search between `base` (assumed to pass) and `ceiling`; off until
    /// [`Pmtu::on_path`] allows it.
    pub(crate) fn new(base: usize, ceiling: usize) -> Self {
        Self {
            base,
            ceiling: ceiling.max(base),
            current: base,
            limit: ceiling.max(base),
            state: State::Disabled,
        }
    }

    /// The packet size to use now.
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// The session moved to a new path (or learned the current one): back to the base size,
    /// and a search may start at once if `probe` allows it.
    pub(crate) fn on_path(&mut self, probe: bool) {
        self.current = self.base;
        self.limit = self.ceiling;
        self.state = if probe && self.ceiling > self.base {
            State::Idle { from: None }
        } else {
            State::Disabled
        };
    }

    /// The size of the probe to send now, if one is due. `now` lets a waiting search start.
    pub(crate) fn wanted(&mut self, now: Instant) -> Option<usize> {
        if let State::Idle { from } = self.state {
            if from.is_none_or(|t| t <= now) {
                self.limit = self.ceiling;
                self.next(now);
            }
        }
        match self.state {
            State::Probing {
                size,
                in_flight: false,
                ..
            } => Some(size),
            _ => None,
        }
    }

    /// A probe of `size` left.
    pub(crate) fn on_sent(&mut self, size: usize) {
        if let State::Probing {
            size: s,
            attempts,
            in_flight,
        } = &mut self.state
        {
            if *s == size {
                *attempts += 1;
                *in_flight = true;
            }
        }
    }

    /// A probe of `size` was acknowledged: the path carries it.
    pub(crate) fn on_acked(&mut self, now: Instant, size: usize) {
        if size > self.current && size <= self.limit && self.state != State::Disabled {
            self.current = size;
        }
        if matches!(self.state, State::Probing { size: s, .. } if s == size) {
            self.next(now);
        }
    }

    /// A probe of `size` was declared lost.
    pub(crate) fn on_lost(&mut self, now: Instant, size: usize) {
        let State::Probing {
            size: s,
            attempts,
            in_flight: true,
        } = self.state
        else {
            return;
        };
        if s != size {
            return;
        }
        if attempts < MAX_PROBES {
            self.state = State::Probing {
                size,
                attempts,
                in_flight: false,
            };
            return;
        }
        self.limit = size - 1;
        self.next(now);
    }

    /// Probe timeouts came `in_a_row` times: if a size above the base is in use, the path may
    /// no longer carry it, so fall back to the base and search again later.
    pub(crate) fn on_probe_timeouts(&mut self, now: Instant, in_a_row: u32) {
        if in_a_row >= 2 && self.current > self.base && self.state != State::Disabled {
            self.current = self.base;
            self.limit = self.ceiling;
            self.state = State::Idle {
                from: Some(now + BLACK_HOLE_RETRY),
            };
        }
    }

    /// Picks the next size to probe, or ends the search.
    fn next(&mut self, now: Instant) {
        let (size, worth) = if self.limit == self.ceiling && self.current < self.ceiling {
            // Most paths carry the ceiling: try it first.
            (self.ceiling, true)
        } else {
            let span = self.limit.saturating_sub(self.current);
            (self.current + span.div_ceil(2), span >= GRANULARITY)
        };
        self.state = if size > self.current && worth {
            State::Probing {
                size,
                attempts: 0,
                in_flight: false,
            }
        } else if self.current < self.ceiling {
            State::Idle {
                from: Some(now + RAISE_INTERVAL),
            }
        } else {
            State::Done
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: usize = 1168;
    const CEILING: usize = 1420;

    fn t0() -> Instant {
        crate::tests::origin()
    }

    /// Runs a search against a path that carries `mtu`; returns the sizes probed.
    fn search(p: &mut Pmtu, mtu: usize, now: Instant) -> Vec<usize> {
        let mut probed = Vec::new();
        while let Some(size) = p.wanted(now) {
            probed.push(size);
            p.on_sent(size);
            if size <= mtu {
                p.on_acked(now, size);
            } else {
                p.on_lost(now, size);
            }
            assert!(probed.len() < 64, "the search does not end: {probed:?}");
        }
        probed
    }

    #[test]
    fn off_until_the_path_allows_it_and_never_on_a_relay() {
        let mut p = Pmtu::new(BASE, CEILING);
        assert_eq!(p.wanted(t0()), None);
        p.on_path(false);
        assert_eq!(p.wanted(t0()), None);
        assert_eq!(p.current(), BASE);
    }

    #[test]
    fn a_path_that_carries_the_ceiling_takes_one_probe() {
        let mut p = Pmtu::new(BASE, CEILING);
        p.on_path(true);
        assert_eq!(search(&mut p, 1500, t0()), vec![CEILING]);
        assert_eq!(p.current(), CEILING);
        // Nothing more to find: no probe later either.
        assert_eq!(p.wanted(t0() + RAISE_INTERVAL * 2), None);
    }

    #[test]
    fn a_smaller_path_is_found_within_the_granularity_and_retried_later() {
        for mtu in [1170, 1200, 1300, 1372, 1400, 1419] {
            let mut p = Pmtu::new(BASE, CEILING);
            p.on_path(true);
            let probed = search(&mut p, mtu, t0());
            let found = p.current();
            assert!(
                found <= mtu && mtu - found < GRANULARITY,
                "{mtu}: {found} {probed:?}"
            );
            // Each failing size is tried MAX_PROBES times.
            let failed = probed.iter().filter(|&&s| s > mtu).count();
            assert_eq!(failed % usize::from(MAX_PROBES), 0, "{probed:?}");
            assert!(probed.len() <= 3 * 8 + 8, "{mtu}: {probed:?}");
            // Below the ceiling, a new search starts after the raise interval, and finds a
            // path that now carries more.
            assert_eq!(p.wanted(t0() + RAISE_INTERVAL / 2), None);
            let again = search(&mut p, 1500, t0() + RAISE_INTERVAL);
            assert_eq!(p.current(), CEILING, "{mtu}: {probed:?} then {again:?}");
        }
    }

    #[test]
    fn a_lost_probe_is_sent_again_before_its_size_is_given_up() {
        let mut p = Pmtu::new(BASE, CEILING);
        p.on_path(true);
        let now = t0();
        for _ in 0..MAX_PROBES - 1 {
            assert_eq!(p.wanted(now), Some(CEILING));
            p.on_sent(CEILING);
            // No second probe while one is in flight.
            assert_eq!(p.wanted(now), None);
            p.on_lost(now, CEILING);
        }
        assert_eq!(p.wanted(now), Some(CEILING));
        p.on_sent(CEILING);
        // Late news of an earlier attempt counts too.
        p.on_acked(now, CEILING);
        assert_eq!(p.current(), CEILING);
    }

    #[test]
    fn a_black_hole_falls_back_to_the_base_and_searches_again_later() {
        let mut p = Pmtu::new(BASE, CEILING);
        p.on_path(true);
        search(&mut p, 1500, t0());
        assert_eq!(p.current(), CEILING);
        p.on_probe_timeouts(t0(), 1);
        assert_eq!(p.current(), CEILING);
        p.on_probe_timeouts(t0(), 2);
        assert_eq!(p.current(), BASE);
        assert_eq!(p.wanted(t0() + BLACK_HOLE_RETRY / 2), None);
        search(&mut p, 1300, t0() + BLACK_HOLE_RETRY);
        assert!((1300 - GRANULARITY..=1300).contains(&p.current()));
    }

    #[test]
    fn stale_or_foreign_answers_change_nothing() {
        let mut p = Pmtu::new(BASE, CEILING);
        p.on_path(true);
        // An ACK for a size never probed above the limit, or a loss without a probe.
        p.on_lost(t0(), CEILING);
        assert_eq!(p.wanted(t0()), Some(CEILING));
        p.on_acked(t0(), CEILING + 100);
        assert_eq!(p.current(), BASE);
        // A new path forgets what the old one carried.
        p.on_sent(CEILING);
        p.on_acked(t0(), CEILING);
        assert_eq!(p.current(), CEILING);
        p.on_path(true);
        assert_eq!(p.current(), BASE);
    }
}
