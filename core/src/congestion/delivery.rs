//! Delivery-rate sampling (draft-cheng-iccrg-delivery-rate-estimation): each packet remembers
//! how much had been delivered, and when, at the moment it was sent; its acknowledgement then
//! yields the rate at which data was delivered over the packet's flight.
//!
//! The interval is the longer of the send phase and the ack phase, so neither a burst of sends
//! nor a burst of compressed ACKs makes the rate look higher than the path's.

use std::time::{Duration, Instant};

/// The connection's delivery state at the moment one packet was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SendSnapshot {
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    app_limited: bool,
}

/// One delivery-rate sample, from the most recently sent packet an ACK acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateSample {
    /// Bytes delivered in total when that packet was sent: the sample's round-trip marker.
    pub(crate) prior_delivered: u64,
    /// Bytes delivered during the interval.
    pub(crate) delivered: u64,
    /// The interval the rate is measured over.
    pub(crate) interval: Duration,
    /// The sender had nothing to send during the interval, so the rate is only a lower bound.
    pub(crate) app_limited: bool,
}

impl RateSample {
    /// The delivery rate in bytes per second; `None` for an interval too short to trust
    /// (shorter than `min_rtt`: a flight cannot be delivered faster than a round trip).
    pub(crate) fn rate(&self, min_rtt: Duration) -> Option<u64> {
        if self.interval.is_zero() || self.interval < min_rtt {
            return None;
        }
        let rate = u128::from(self.delivered) * 1_000_000_000 / self.interval.as_nanos();
        Some(u64::try_from(rate).unwrap_or(u64::MAX))
    }
}

/// The sample being assembled from the packets of one ACK.
#[derive(Clone, Copy, Debug)]
struct Pending {
    newest_sent: Instant,
    prior_delivered: u64,
    interval: Duration,
    app_limited: bool,
}

/// The connection-wide delivery counters that [`SendSnapshot`]s are taken from.
#[derive(Clone, Debug)]
pub(crate) struct DeliveryRate {
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    /// While nonzero, the sender is application-limited until this many bytes are delivered.
    app_limited_until: u64,
    pending: Option<Pending>,
}

impl DeliveryRate {
    /// Counters at zero, starting at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            delivered: 0,
            delivered_time: now,
            first_sent_time: now,
            app_limited_until: 0,
            pending: None,
        }
    }

    /// Bytes delivered over the connection's lifetime.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// A packet is sent at `now` with `in_flight` bytes already in flight; returns what the
    /// packet must remember.
    pub(crate) fn on_sent(&mut self, now: Instant, in_flight: u64) -> SendSnapshot {
        if in_flight == 0 {
            // Nothing in flight: the new flight's intervals start here, not at an old ACK.
            self.first_sent_time = now;
            self.delivered_time = now;
        }
        self.snapshot()
    }

    /// The delivery state as it is, for a packet that does not count toward bytes in flight.
    pub(crate) fn snapshot(&self) -> SendSnapshot {
        SendSnapshot {
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
            app_limited: self.app_limited_until != 0,
        }
    }

    /// The sender has nothing more to send while `in_flight` bytes are in flight: samples
    /// taken until those are delivered measure the application, not the path.
    pub(crate) fn on_app_limited(&mut self, in_flight: u64) {
        self.app_limited_until = (self.delivered + in_flight).max(1);
    }

    /// A packet of `bytes` sent at `sent` with `snapshot` was acknowledged at `now`.
    pub(crate) fn on_acked(&mut self, now: Instant, sent: Instant, bytes: u64, s: SendSnapshot) {
        self.delivered += bytes;
        self.delivered_time = now;
        if self.pending.is_some_and(|p| p.newest_sent > sent) {
            return;
        }
        let send_elapsed = sent.saturating_duration_since(s.first_sent_time);
        let ack_elapsed = now.saturating_duration_since(s.delivered_time);
        self.pending = Some(Pending {
            newest_sent: sent,
            prior_delivered: s.delivered,
            interval: send_elapsed.max(ack_elapsed),
            app_limited: s.app_limited,
        });
        // The next packet's send phase starts where this one's ended.
        self.first_sent_time = sent;
    }

    /// The sample of the ACK whose packets were just passed to [`DeliveryRate::on_acked`].
    pub(crate) fn take_sample(&mut self) -> Option<RateSample> {
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        let p = self.pending.take()?;
        Some(RateSample {
            prior_delivered: p.prior_delivered,
            delivered: self.delivered - p.prior_delivered,
            interval: p.interval,
            app_limited: p.app_limited,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_paced_flight_measures_the_send_rate() {
        let t0 = crate::tests::origin();
        let mut d = DeliveryRate::new(t0);
        // Ten 1000-byte packets, one per ms, each acknowledged 50 ms later.
        let snaps: Vec<_> = (0..10)
            .map(|i| d.on_sent(t0 + i * MS, u64::from(i) * 1000))
            .collect();
        let mut last = None;
        for (i, s) in (0..10).zip(&snaps) {
            d.on_acked(t0 + 50 * MS + i * MS, t0 + i * MS, 1000, *s);
            let rs = d.take_sample().unwrap();
            assert_eq!(rs.delivered, u64::from(i + 1) * 1000);
            assert!(!rs.app_limited);
            last = Some(rs);
        }
        // The last sample spans the whole flight: 10 kB over 59 ms (the ack phase, longer than
        // the 9 ms send phase).
        let last = last.unwrap();
        assert_eq!(last.interval, 59 * MS);
        assert_eq!(last.rate(50 * MS), Some(10_000_000_000_000 / 59_000_000));
        assert_eq!(last.rate(100 * MS), None, "shorter than min_rtt");
    }

    #[test]
    fn a_compressed_ack_burst_does_not_inflate_the_rate() {
        let t0 = crate::tests::origin();
        let mut d = DeliveryRate::new(t0);
        let first = d.on_sent(t0, 0);
        d.on_acked(t0 + 50 * MS, t0, 1000, first);
        d.take_sample();
        // A second flight sent over 40 ms whose ACKs all arrive at once.
        let snaps: Vec<_> = (0..4)
            .map(|i| {
                let at = t0 + 50 * MS + i * 10 * MS;
                (at, d.on_sent(at, u64::from(i) * 1000))
            })
            .collect();
        for (sent, s) in &snaps {
            d.on_acked(t0 + 140 * MS, *sent, 1000, *s);
        }
        let rs = d.take_sample().unwrap();
        // Send phase: the last packet left 30 ms after the flight's first; ack phase: 90 ms
        // since the previous ACK; the longer wins.
        assert_eq!(rs.interval, 90 * MS);
        assert_eq!(rs.delivered, 4000);
        assert_eq!(rs.prior_delivered, 1000);
    }

    #[test]
    fn app_limited_marks_samples_until_the_flight_is_delivered() {
        let t0 = crate::tests::origin();
        let mut d = DeliveryRate::new(t0);
        let a = d.on_sent(t0, 0);
        d.on_app_limited(1000);
        let b = d.on_sent(t0 + MS, 1000);
        d.on_acked(t0 + 50 * MS, t0, 1000, a);
        assert!(!d.take_sample().unwrap().app_limited);
        let c = d.on_sent(t0 + 50 * MS, 1000);
        d.on_acked(t0 + 51 * MS, t0 + MS, 1000, b);
        assert!(d.take_sample().unwrap().app_limited);
        // Delivered (2000) passed the mark (1000): packets sent from now on are not limited.
        let e = d.on_sent(t0 + 52 * MS, 1000);
        d.on_acked(t0 + 100 * MS, t0 + 50 * MS, 1000, c);
        assert!(
            d.take_sample().unwrap().app_limited,
            "c was sent while limited"
        );
        d.on_acked(t0 + 102 * MS, t0 + 52 * MS, 1000, e);
        assert!(!d.take_sample().unwrap().app_limited);
    }
}
