//! NewReno as specified for QUIC (RFC 9002 §7 and Appendix B).

use std::time::Instant;

use super::{Controller, RttEstimator};

/// NewReno: slow start, congestion avoidance, one reduction per recovery period, and a
/// collapse to the minimum window on persistent congestion.
#[derive(Clone, Debug)]
pub(crate) struct NewReno {
    max_datagram: u64,
    window: u64,
    ssthresh: u64,
    recovery_start: Option<Instant>,
    /// Bytes acknowledged in congestion avoidance since the window last grew.
    acked_in_ca: u64,
}

impl NewReno {
    /// A controller for packets of at most `max_datagram` bytes, with the RFC 9002 initial
    /// window `min(10 * max_datagram, max(14720, 2 * max_datagram))`.
    pub(crate) fn new(max_datagram: u64) -> Self {
        let window = (10 * max_datagram).min((2 * max_datagram).max(14_720));
        Self {
            max_datagram,
            window,
            ssthresh: u64::MAX,
            recovery_start: None,
            acked_in_ca: 0,
        }
    }

    /// The minimum window, `2 * max_datagram` (RFC 9002 `kMinimumWindow`).
    pub(crate) fn minimum_window(&self) -> u64 {
        2 * self.max_datagram
    }

    /// The slow-start threshold (`u64::MAX` until the first loss).
    #[cfg(test)]
    pub(crate) fn ssthresh(&self) -> u64 {
        self.ssthresh
    }

    fn in_recovery(&self, sent: Instant) -> bool {
        self.recovery_start.is_some_and(|start| sent <= start)
    }
}

impl Controller for NewReno {
    fn on_ack(
        &mut self,
        _now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        _rtt: &RttEstimator,
    ) {
        if app_limited || self.in_recovery(sent) {
            return;
        }
        if self.window < self.ssthresh {
            self.window += bytes;
            return;
        }
        // Congestion avoidance: one max_datagram per window of acknowledged bytes.
        self.acked_in_ca += bytes;
        if self.acked_in_ca >= self.window {
            self.acked_in_ca -= self.window;
            self.window += self.max_datagram;
        }
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        largest_lost_sent: Instant,
        _in_flight: u64,
        persistent: bool,
    ) {
        if !self.in_recovery(largest_lost_sent) {
            self.recovery_start = Some(now);
            self.window = (self.window / 2).max(self.minimum_window());
            self.ssthresh = self.window;
            self.acked_in_ca = 0;
        }
        if persistent {
            self.window = self.minimum_window();
            self.acked_in_ca = 0;
        }
    }

    fn window(&self) -> u64 {
        self.window
    }

    #[cfg(test)]
    fn in_slow_start(&self) -> bool {
        self.window < self.ssthresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    fn rtt() -> RttEstimator {
        RttEstimator::new(100 * MS)
    }

    #[test]
    fn initial_window_follows_rfc9002() {
        assert_eq!(NewReno::new(1200).window(), 12_000);
        assert_eq!(NewReno::new(1500).window(), 14_720);
        assert_eq!(NewReno::new(9000).window(), 18_000);
    }

    #[test]
    fn slow_start_grows_by_acked_bytes_then_halves_once_per_recovery() {
        let t0 = crate::tests::origin();
        let mut cc = NewReno::new(1000);
        assert_eq!(cc.window(), 10_000);
        for i in 0..10 {
            cc.on_ack(t0 + 100 * MS, t0 + i * MS, 1000, false, &rtt());
        }
        assert_eq!(cc.window(), 20_000, "slow start doubles per round trip");
        assert!(cc.in_slow_start());

        cc.on_congestion_event(t0 + 200 * MS, t0 + 150 * MS, 0, false);
        assert_eq!(cc.window(), 10_000);
        assert_eq!(cc.ssthresh(), 10_000);
        assert!(!cc.in_slow_start());
        // A second loss of a packet sent before recovery started: no further reduction.
        cc.on_congestion_event(t0 + 210 * MS, t0 + 190 * MS, 0, false);
        assert_eq!(cc.window(), 10_000);
        // Acks for packets sent before recovery do not grow the window.
        cc.on_ack(t0 + 220 * MS, t0 + 199 * MS, 1000, false, &rtt());
        assert_eq!(cc.window(), 10_000);
        // A loss of a packet sent after recovery began starts a new period.
        cc.on_congestion_event(t0 + 400 * MS, t0 + 300 * MS, 0, false);
        assert_eq!(cc.window(), 5_000);
    }

    #[test]
    fn congestion_avoidance_adds_one_datagram_per_window() {
        let t0 = crate::tests::origin();
        let mut cc = NewReno::new(1000);
        cc.on_congestion_event(t0, t0, 0, false); // window 5000, out of slow start
        assert_eq!(cc.window(), 5_000);
        let later = t0 + 10 * MS;
        for _ in 0..4 {
            cc.on_ack(later, later, 1000, false, &rtt());
        }
        assert_eq!(cc.window(), 5_000);
        cc.on_ack(later, later, 1000, false, &rtt());
        assert_eq!(cc.window(), 6_000);
        // App-limited acks do not grow the window.
        for _ in 0..20 {
            cc.on_ack(later, later, 1000, true, &rtt());
        }
        assert_eq!(cc.window(), 6_000);
    }

    #[test]
    fn persistent_congestion_collapses_to_minimum_and_never_below() {
        let t0 = crate::tests::origin();
        let mut cc = NewReno::new(1000);
        cc.on_congestion_event(t0 + MS, t0, 0, true);
        assert_eq!(cc.window(), cc.minimum_window());
        for i in 2..10 {
            cc.on_congestion_event(t0 + i * 100 * MS, t0 + i * 100 * MS, 0, false);
            assert_eq!(cc.window(), 2_000);
        }
    }
}
