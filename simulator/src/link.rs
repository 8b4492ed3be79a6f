//! Links: latency, jitter, random and bursty loss, duplication, reordering, MTU and an optional
//! bandwidth limit with a drop-tail queue. All randomness comes from the simulation's seeded RNG,
//! and a link with an impairment set to zero draws nothing for it.

use std::fmt;
use std::time::Duration;

use rand_core::Rng;

/// Bytes of IPv4 + UDP header counted against MTU and bandwidth.
pub const IPV4_UDP_OVERHEAD: usize = 28;
/// Bytes of IPv6 + UDP header counted against MTU and bandwidth.
pub const IPV6_UDP_OVERHEAD: usize = 48;

/// Gilbert-Elliott bursty loss: a two-state Markov chain evaluated once per datagram.
///
/// Each datagram first moves the chain (good to bad with `p_enter_bad`, bad to good with
/// `p_leave_bad`), then is lost with the current state's loss probability. The mean burst length
/// is `1 / p_leave_bad` datagrams.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving from the good to the bad state, per datagram.
    pub p_enter_bad: f64,
    /// Probability of moving from the bad to the good state, per datagram.
    pub p_leave_bad: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// A chain with lossless good state and the given bad-state loss.
    pub const fn new(p_enter_bad: f64, p_leave_bad: f64, loss_bad: f64) -> Self {
        Self {
            p_enter_bad,
            p_leave_bad,
            loss_good: 0.0,
            loss_bad,
        }
    }
}

/// One direction of a link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per datagram (reorders datagrams sent
    /// closer together than the jitter).
    pub jitter: Duration,
    /// Independent loss probability per datagram.
    pub loss: f64,
    /// Optional bursty loss on top of `loss`.
    pub burst_loss: Option<GilbertElliott>,
    /// Probability that a datagram is delivered twice (the copy gets its own delay).
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay`.
    pub reorder: f64,
    /// Extra delay for held-back datagrams.
    pub reorder_delay: Duration,
    /// Largest IP packet (payload + IP/UDP header) the link carries; larger ones are dropped.
    pub mtu: usize,
    /// Serialization rate in bits per second; `None` means unlimited.
    pub bandwidth_bps: Option<u64>,
    /// Drop-tail queue size in bytes, used with `bandwidth_bps`.
    pub queue_bytes: usize,
}

impl Default for LinkConfig {
    /// 5 ms one way, no impairments, MTU 1500, unlimited bandwidth (64 KiB queue if limited).
    fn default() -> Self {
        Self::new(Duration::from_millis(5))
    }
}

impl LinkConfig {
    /// A clean link with the given one-way latency.
    pub const fn new(latency: Duration) -> Self {
        Self {
            latency,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst_loss: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            mtu: 1500,
            bandwidth_bps: None,
            queue_bytes: 64 * 1024,
        }
    }

    /// A LAN hop: 200 µs, clean.
    pub const fn lan() -> Self {
        Self::new(Duration::from_micros(200))
    }

    /// A zero-delay, lossless link.
    pub const fn ideal() -> Self {
        Self::new(Duration::ZERO)
    }

    /// Sets the jitter.
    pub const fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the independent loss probability.
    pub const fn loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    /// Sets Gilbert-Elliott bursty loss.
    pub const fn burst_loss(mut self, ge: GilbertElliott) -> Self {
        self.burst_loss = Some(ge);
        self
    }

    /// Sets the duplication probability.
    pub const fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }

    /// Holds back a fraction `p` of datagrams by `extra`.
    pub const fn reorder(mut self, p: f64, extra: Duration) -> Self {
        self.reorder = p;
        self.reorder_delay = extra;
        self
    }

    /// Sets the MTU (IP packet size).
    pub const fn mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }

    /// Limits the link to `bps` bits per second with a drop-tail queue of `queue_bytes`.
    pub const fn bandwidth(mut self, bps: u64, queue_bytes: usize) -> Self {
        self.bandwidth_bps = Some(bps);
        self.queue_bytes = queue_bytes;
        self
    }
}

/// Why a link dropped a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkDrop {
    /// Larger than the MTU.
    Mtu,
    /// Independent random loss.
    Loss,
    /// Gilbert-Elliott loss.
    BurstLoss,
    /// The bandwidth queue was full.
    QueueFull,
}

impl fmt::Display for LinkDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkDrop::Mtu => "exceeds mtu",
            LinkDrop::Loss => "lost",
            LinkDrop::BurstLoss => "burst-lost",
            LinkDrop::QueueFull => "queue full",
        })
    }
}

/// What a link did with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkVerdict {
    /// Arrives at the far end at `first`, and again at `dup` if duplicated.
    Pass {
        first: Duration,
        dup: Option<Duration>,
    },
    /// Dropped.
    Drop(LinkDrop),
}

/// A link direction: its configuration and the state impairments keep between datagrams.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    pub(crate) cfg: LinkConfig,
    bad: bool,
    busy_until: Duration,
}

/// A uniform draw in `[0, 1)`.
fn unit(rng: &mut impl Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// True with probability `p`; draws from the RNG only when `0 < p < 1`.
fn chance(rng: &mut impl Rng, p: f64) -> bool {
    if p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        unit(rng) < p
    }
}

impl Link {
    pub(crate) fn new(cfg: LinkConfig) -> Self {
        Self {
            cfg,
            bad: false,
            busy_until: Duration::ZERO,
        }
    }

    /// Whether the link has a bandwidth limit (and so must be entered in time order).
    pub(crate) fn is_rate_limited(&self) -> bool {
        self.cfg.bandwidth_bps.is_some()
    }

    /// Sends one IP packet of `wire_len` bytes that enters the link at `t`.
    pub(crate) fn send(&mut self, rng: &mut impl Rng, t: Duration, wire_len: usize) -> LinkVerdict {
        let cfg = &self.cfg;
        if wire_len > cfg.mtu {
            return LinkVerdict::Drop(LinkDrop::Mtu);
        }
        let depart = match cfg.bandwidth_bps {
            Some(bps) if bps > 0 => {
                let backlog = self.busy_until.saturating_sub(t);
                let backlog_bytes = backlog.as_nanos() * u128::from(bps) / 8_000_000_000;
                if backlog_bytes + wire_len as u128 > cfg.queue_bytes as u128 {
                    return LinkVerdict::Drop(LinkDrop::QueueFull);
                }
                let ser_ns = (wire_len as u128 * 8 * 1_000_000_000).div_ceil(u128::from(bps));
                let start = self.busy_until.max(t);
                self.busy_until = start + Duration::from_nanos(ser_ns as u64);
                self.busy_until
            }
            _ => t,
        };
        if chance(rng, cfg.loss) {
            return LinkVerdict::Drop(LinkDrop::Loss);
        }
        if let Some(ge) = cfg.burst_loss {
            if self.bad {
                if chance(rng, ge.p_leave_bad) {
                    self.bad = false;
                }
            } else if chance(rng, ge.p_enter_bad) {
                self.bad = true;
            }
            let p = if self.bad { ge.loss_bad } else { ge.loss_good };
            if chance(rng, p) {
                return LinkVerdict::Drop(LinkDrop::BurstLoss);
            }
        }
        let first = depart + self.delay(rng);
        let dup = chance(rng, self.cfg.duplicate).then(|| depart + self.delay(rng));
        LinkVerdict::Pass { first, dup }
    }

    fn delay(&self, rng: &mut impl Rng) -> Duration {
        let cfg = &self.cfg;
        let mut d = cfg.latency;
        if !cfg.jitter.is_zero() {
            let span = cfg.jitter.as_nanos().min(u128::from(u64::MAX - 1)) as u64;
            d += Duration::from_nanos(rng.next_u64() % (span + 1));
        }
        if chance(rng, cfg.reorder) {
            d += cfg.reorder_delay;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn mtu_drops_oversized() {
        let mut l = Link::new(LinkConfig::ideal().mtu(1280));
        assert_eq!(
            l.send(&mut rng(), Duration::ZERO, 1281),
            LinkVerdict::Drop(LinkDrop::Mtu)
        );
        assert!(matches!(
            l.send(&mut rng(), Duration::ZERO, 1280),
            LinkVerdict::Pass { .. }
        ));
    }

    #[test]
    fn loss_rate_is_roughly_right() {
        let mut l = Link::new(LinkConfig::ideal().loss(0.25));
        let mut r = rng();
        let lost = (0..10_000)
            .filter(|_| matches!(l.send(&mut r, Duration::ZERO, 100), LinkVerdict::Drop(_)))
            .count();
        assert!((2_200..2_800).contains(&lost), "lost {lost}");
    }

    #[test]
    fn burst_loss_is_bursty() {
        let mut l = Link::new(LinkConfig::ideal().burst_loss(GilbertElliott::new(0.01, 0.2, 1.0)));
        let mut r = rng();
        let lost: Vec<bool> = (0..20_000)
            .map(|_| matches!(l.send(&mut r, Duration::ZERO, 100), LinkVerdict::Drop(_)))
            .collect();
        let n = lost.iter().filter(|&&x| x).count();
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count();
        // Stationary loss ~ 0.01 / 0.21 ~ 4.8 %, mean burst length 1 / 0.2 = 5.
        assert!((600..1400).contains(&n), "lost {n}");
        let mean_burst = n as f64 / bursts as f64;
        assert!((3.5..7.0).contains(&mean_burst), "mean burst {mean_burst}");
    }

    #[test]
    fn bandwidth_serializes_and_tail_drops() {
        // 1 Mbit/s: a 1250-byte packet takes 10 ms. Queue holds two packets.
        let mut l = Link::new(LinkConfig::ideal().bandwidth(1_000_000, 2500));
        let mut r = rng();
        let mut arrivals = Vec::new();
        for _ in 0..4 {
            arrivals.push(l.send(&mut r, Duration::ZERO, 1250));
        }
        let ms = |m| LinkVerdict::Pass {
            first: Duration::from_millis(m),
            dup: None,
        };
        assert_eq!(arrivals[0], ms(10));
        assert_eq!(arrivals[1], ms(20));
        assert_eq!(arrivals[2], LinkVerdict::Drop(LinkDrop::QueueFull));
        assert_eq!(arrivals[3], LinkVerdict::Drop(LinkDrop::QueueFull));
        // Once the queue drains, packets pass again.
        assert_eq!(l.send(&mut r, Duration::from_millis(20), 1250), ms(30));
    }

    #[test]
    fn duplication_and_jitter() {
        let mut l = Link::new(
            LinkConfig::new(Duration::from_millis(10))
                .jitter(Duration::from_millis(5))
                .duplicate(1.0),
        );
        let LinkVerdict::Pass { first, dup } = l.send(&mut rng(), Duration::ZERO, 10) else {
            panic!("dropped")
        };
        let dup = dup.expect("duplicated");
        for t in [first, dup] {
            assert!(t >= Duration::from_millis(10) && t <= Duration::from_millis(15));
        }
    }
}
