//! Pacing (RFC 9002 §7.7): spread a window of packets over a round trip instead of sending it
//! in one burst, with a token bucket that allows a small burst. The rate comes from the
//! controller ([`super::Controller::pacing_rate`]) or, if it names none, from the window.

use std::time::{Duration, Instant};

/// Pacing gain over `window / srtt` (RFC 9002 suggests N = 1.25), as a fraction.
const GAIN_NUM: u64 = 5;
const GAIN_DEN: u64 = 4;
/// The bucket holds what the pacing rate sends in this interval, within the bounds below.
const BURST_INTERVAL: Duration = Duration::from_millis(2);
const MIN_BURST_PACKETS: u64 = 10;
/// At most this many packets in one burst. Only rates above about 150 MB/s reach it (2 ms of
/// 1452-byte packets); there a runtime's 1 ms timer would otherwise cap the rate: with 64,
/// BBR through the binaries on loopback lost about a tenth of its throughput.
const MAX_BURST_PACKETS: u64 = 256;

/// A send quantum is what the pacing rate sends in this long, as Linux sizes a TCP burst for
/// segmentation offload (`tcp_tso_autosize`: a millisecond of the rate).
pub(crate) const QUANTUM_INTERVAL: Duration = Duration::from_millis(1);
/// The largest send quantum: what one segmentation-offload send carries.
const MAX_QUANTUM: u64 = crate::transmit::MAX_RUN_BYTES as u64;

/// A millisecond of `rate` bytes per second, at most one segmentation-offload send: the
/// burst a sender builds at that rate.
pub(crate) fn burst_size(rate: u64) -> u64 {
    let bytes = u128::from(rate) * QUANTUM_INTERVAL.as_nanos() / 1_000_000_000;
    u64::try_from(bytes).unwrap_or(u64::MAX).min(MAX_QUANTUM)
}

/// The send quantum at `rate` bytes per second for packets of `mss` bytes: the
/// [`burst_size`], at least two packets. BBR budgets three quanta in its window so that the
/// sender's bursts (see `Mux::poll_packet`) never starve it, as Linux's
/// `bbr_quantization_budget` does.
pub(crate) fn send_quantum(rate: u64, mss: u64) -> u64 {
    burst_size(rate).max(2 * mss)
}

/// A token bucket refilled at the pacing rate.
#[derive(Clone, Debug)]
pub(crate) struct Pacer {
    tokens: u64,
    last: Instant,
}

impl Pacer {
    /// A pacer with a full bucket at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            tokens: u64::MAX,
            last: now,
        }
    }

    /// The pacing rate for a controller that names none: `1.25 * window / srtt` bytes per
    /// second.
    pub(crate) fn rate(window: u64, srtt: Duration) -> u64 {
        let nanos = srtt.as_nanos().max(1);
        let rate = u128::from(window) * u128::from(GAIN_NUM) * 1_000_000_000
            / (u128::from(GAIN_DEN) * nanos);
        u64::try_from(rate).unwrap_or(u64::MAX).max(1)
    }

    /// The bucket size for this rate, window and packet size.
    pub(crate) fn capacity(rate: u64, window: u64, mtu: u64) -> u64 {
        let burst = u128::from(rate) * BURST_INTERVAL.as_nanos() / 1_000_000_000;
        let burst = u64::try_from(burst).unwrap_or(u64::MAX);
        burst
            .clamp(MIN_BURST_PACKETS * mtu, MAX_BURST_PACKETS * mtu)
            .min(window.max(mtu))
    }

    /// When a packet of `bytes` may leave at `rate` bytes per second: `None` means now,
    /// `Some(t)` means not before `t`.
    pub(crate) fn delay(
        &mut self,
        now: Instant,
        bytes: u64,
        mtu: u64,
        rate: u64,
        window: u64,
    ) -> Option<Instant> {
        let rate = rate.max(1);
        let cap = Self::capacity(rate, window, mtu);
        let elapsed = now.saturating_duration_since(self.last);
        let refill = u128::from(rate) * elapsed.as_nanos() / 1_000_000_000;
        self.tokens = u64::try_from(refill)
            .unwrap_or(u64::MAX)
            .saturating_add(self.tokens)
            .min(cap);
        self.last = now;
        if self.tokens >= bytes {
            return None;
        }
        let missing = bytes - self.tokens;
        let nanos = (u128::from(missing) * 1_000_000_000).div_ceil(u128::from(rate));
        Some(now + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }

    /// A packet of `bytes` left now; call after [`Pacer::delay`] returned `None`.
    pub(crate) fn on_sent(&mut self, bytes: u64) {
        self.tokens = self.tokens.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_a_millisecond_of_the_rate_within_one_run_and_a_quantum_at_least_two_packets() {
        // 20 MB/s: 20 kB per millisecond.
        assert_eq!(send_quantum(20_000_000, 1200), 20_000);
        // 1 MB/s: a millisecond is under two packets.
        assert_eq!(burst_size(1_000_000), 1000);
        assert_eq!(send_quantum(1_000_000, 1200), 2400);
        // 400 MB/s: capped at what one segmentation-offload send carries.
        assert_eq!(burst_size(400_000_000), 65_000);
        assert_eq!(send_quantum(400_000_000, 1200), 65_000);
        assert_eq!(send_quantum(u64::MAX, 1200), 65_000);
        assert_eq!(send_quantum(0, 1200), 2400);
    }

    #[test]
    fn rate_is_five_quarters_of_window_per_rtt() {
        // 100 kB per 100 ms => 1 MB/s, times 1.25.
        assert_eq!(Pacer::rate(100_000, Duration::from_millis(100)), 1_250_000);
    }

    #[test]
    fn packets_are_spaced_after_the_burst() {
        let t0 = crate::tests::origin();
        let (mtu, window, srtt) = (1000, 1_000_000, Duration::from_millis(100));
        // Rate 12.5 MB/s: a 2 ms burst is 25000 bytes, within 10..=256 packets.
        assert_eq!(
            Pacer::capacity(Pacer::rate(window, srtt), window, mtu),
            25_000
        );
        // A small window's burst is at least 10 packets, but never more than the window.
        assert_eq!(
            Pacer::capacity(Pacer::rate(20_000, srtt), 20_000, mtu),
            10_000
        );
        assert_eq!(Pacer::capacity(Pacer::rate(5_000, srtt), 5_000, mtu), 5_000);
        let mut p = Pacer::new(t0);
        let mut now = t0;
        let mut sent_times = Vec::new();
        for _ in 0..30 {
            if let Some(at) = p.delay(now, mtu, mtu, Pacer::rate(window, srtt), window) {
                assert!(at > now);
                now = at;
                assert_eq!(
                    p.delay(now, mtu, mtu, Pacer::rate(window, srtt), window),
                    None
                );
            }
            p.on_sent(mtu);
            sent_times.push(now - t0);
        }
        // The burst of 25 packets goes at once, then one per 80 us (1000 B at 12.5 MB/s).
        assert!(sent_times[..25].iter().all(|t| t.is_zero()));
        assert_eq!(sent_times[25], Duration::from_micros(80));
        for w in sent_times[25..].windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_micros(80));
        }
    }

    #[test]
    fn idle_time_refills_at_most_one_burst() {
        let t0 = crate::tests::origin();
        let mut p = Pacer::new(t0);
        let (mtu, window, srtt) = (1000, 1_000_000, Duration::from_millis(10));
        let cap = Pacer::capacity(Pacer::rate(window, srtt), window, mtu);
        // 125 MB/s: 2 ms is 250 packets, under the 256 bound; 1 GB/s is held to it.
        assert_eq!(cap, 250_000);
        assert_eq!(Pacer::capacity(1_000_000_000, 10_000_000, mtu), 256_000);
        let later = t0 + Duration::from_secs(10);
        let mut n = 0;
        while p
            .delay(later, mtu, mtu, Pacer::rate(window, srtt), window)
            .is_none()
        {
            p.on_sent(mtu);
            n += 1;
        }
        assert_eq!(n, 250);
    }
}
