//! Round-trip time estimation (RFC 9002 §5).

use std::time::Duration;

/// Timer granularity (RFC 9002 `kGranularity`).
pub(crate) const GRANULARITY: Duration = Duration::from_millis(1);

/// Smoothed RTT, RTT variation and minimum RTT, per RFC 9002 §5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RttEstimator {
    latest: Duration,
    smoothed: Duration,
    var: Duration,
    min: Duration,
    has_sample: bool,
}

impl RttEstimator {
    /// An estimator that reports `initial` until the first sample (RFC 9002 §6.2.2: 333 ms).
    pub(crate) fn new(initial: Duration) -> Self {
        Self {
            latest: initial,
            smoothed: initial,
            var: initial / 2,
            min: initial,
            has_sample: false,
        }
    }

    /// Takes one RTT sample (`rtt`, measured from send to ack receipt) with the peer's reported
    /// `ack_delay`, already limited to its max_ack_delay by the caller.
    pub(crate) fn update(&mut self, ack_delay: Duration, rtt: Duration) {
        self.latest = rtt;
        if !self.has_sample {
            self.has_sample = true;
            self.min = rtt;
            self.smoothed = rtt;
            self.var = rtt / 2;
            return;
        }
        self.min = self.min.min(rtt);
        let adjusted = if rtt >= self.min + ack_delay {
            rtt - ack_delay
        } else {
            rtt
        };
        let diff = self.smoothed.abs_diff(adjusted);
        self.var = (self.var * 3 + diff) / 4;
        self.smoothed = (self.smoothed * 7 + adjusted) / 8;
    }

    /// The smoothed RTT (the initial RTT before any sample).
    pub(crate) fn get(&self) -> Duration {
        self.smoothed
    }

    /// The RTT variation.
    #[cfg(test)]
    pub(crate) fn var(&self) -> Duration {
        self.var
    }

    /// The minimum RTT seen.
    pub(crate) fn min(&self) -> Duration {
        self.min
    }

    /// The most recent sample.
    #[cfg(test)]
    pub(crate) fn latest(&self) -> Duration {
        self.latest
    }

    /// The probe timeout before backoff and without max_ack_delay:
    /// `smoothed_rtt + max(4 * rttvar, kGranularity)`.
    pub(crate) fn pto_base(&self) -> Duration {
        self.smoothed + (self.var * 4).max(GRANULARITY)
    }

    /// How long after a later packet was acknowledged an unacknowledged packet counts as lost:
    /// `max(9/8 * max(smoothed_rtt, latest_rtt), kGranularity)` (RFC 9002 §6.1.2).
    pub(crate) fn loss_delay(&self) -> Duration {
        (self.smoothed.max(self.latest) * 9 / 8).max(GRANULARITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_sample_sets_everything() {
        let mut r = RttEstimator::new(333 * MS);
        assert_eq!(r.get(), 333 * MS);
        assert_eq!(r.var(), Duration::from_micros(166_500));
        // PTO before any sample: 333 + 4 * 166.5 = 999 ms (RFC 9002 §6.2.2: about 1 s).
        assert_eq!(r.pto_base(), 999 * MS);
        r.update(10 * MS, 100 * MS);
        assert_eq!(
            (r.get(), r.var(), r.min(), r.latest()),
            (100 * MS, 50 * MS, 100 * MS, 100 * MS)
        );
    }

    #[test]
    fn later_samples_follow_rfc9002_ewma_and_subtract_ack_delay() {
        let mut r = RttEstimator::new(333 * MS);
        r.update(Duration::ZERO, 100 * MS);
        // 130 ms with 20 ms ack delay: adjusted 110 ms since 130 >= min 100 + 20.
        r.update(20 * MS, 130 * MS);
        // rttvar = 3/4 * 50 + 1/4 * |100 - 110| = 40; srtt = 7/8 * 100 + 1/8 * 110 = 101.25.
        assert_eq!(r.var(), 40 * MS);
        assert_eq!(r.get(), Duration::from_micros(101_250));
        // Ack delay that would take the sample below min_rtt is ignored.
        r.update(50 * MS, 120 * MS);
        let diff = Duration::from_micros(101_250).abs_diff(120 * MS);
        assert_eq!(r.var(), (40 * MS * 3 + diff) / 4);
        // min_rtt ignores ack delay.
        r.update(5 * MS, 90 * MS);
        assert_eq!(r.min(), 90 * MS);
    }

    #[test]
    fn loss_delay_is_nine_eighths_of_the_larger_rtt() {
        let mut r = RttEstimator::new(333 * MS);
        r.update(Duration::ZERO, 80 * MS);
        assert_eq!(r.loss_delay(), 90 * MS);
        r.update(Duration::ZERO, 160 * MS);
        assert_eq!(r.loss_delay(), 180 * MS);
        let mut tiny = RttEstimator::new(333 * MS);
        tiny.update(Duration::ZERO, Duration::from_micros(100));
        assert_eq!(tiny.loss_delay(), GRANULARITY);
    }
}
