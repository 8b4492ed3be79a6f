//! The server's relay policy: who may relay to whom, and how fast.
//!
//! The relay forwards packets between two daemons that both hold a live registration; it
//! never sees inside them (they are sealed with the daemons' own session keys). Each token
//! has a byte budget refilled at [`RelayLimits::bytes_per_sec`] up to
//! [`RelayLimits::burst`]: a token bucket, so one token's daemons cannot take the server's
//! bandwidth from the others.

use std::collections::BTreeMap;
use std::time::Instant;

/// Per-token relay limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Sustained bytes per second one token's daemons may relay, together.
    pub bytes_per_sec: u64,
    /// Bytes a token may relay at once after a quiet spell.
    pub burst: u64,
}

impl Default for RelayLimits {
    /// 16 MiB/s sustained, 1 MiB bursts: plenty for interactive use and bulk transfers of a
    /// few daemons, and a bound on what one token costs the server.
    fn default() -> Self {
        Self {
            bytes_per_sec: 16 << 20,
            burst: 1 << 20,
        }
    }
}

/// Why a packet was not relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RelayRefusal {
    /// The sender or the destination holds no live registration.
    NotRegistered,
    /// The server never introduced the two daemons to each other (or one of them registered
    /// again since): the relay is only for introduced pairs.
    NotIntroduced,
    /// The sender's token is over its rate limit.
    RateLimited,
}

/// One token's byte budget, in bytes times 10^9 so that refills lose no fraction of a byte.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    nano_bytes: u128,
    at: Instant,
}

const NANOS: u128 = 1_000_000_000;

/// Token buckets by token.
#[derive(Debug, Default)]
pub(crate) struct RelayBudget {
    buckets: BTreeMap<String, Bucket>,
}

impl RelayBudget {
    /// Takes `len` bytes from `token`'s budget if it has them.
    pub(crate) fn take(
        &mut self,
        limits: RelayLimits,
        token: &str,
        now: Instant,
        len: u64,
    ) -> bool {
        let cap = u128::from(limits.burst) * NANOS;
        let bucket = match self.buckets.get_mut(token) {
            Some(b) => b,
            None => self.buckets.entry(token.to_owned()).or_insert(Bucket {
                nano_bytes: cap,
                at: now,
            }),
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_nanos();
        bucket.nano_bytes = bucket
            .nano_bytes
            .saturating_add(elapsed.saturating_mul(u128::from(limits.bytes_per_sec)))
            .min(cap);
        bucket.at = bucket.at.max(now);
        let cost = u128::from(len) * NANOS;
        if bucket.nano_bytes < cost {
            return false;
        }
        bucket.nano_bytes -= cost;
        true
    }

    /// Forgets tokens that no registration holds any more.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(&str) -> bool) {
        self.buckets.retain(|t, _| live(t));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMITS: RelayLimits = RelayLimits {
        bytes_per_sec: 1000,
        burst: 500,
    };

    #[test]
    fn a_bucket_starts_full_and_refills_at_the_rate() {
        let t0 = crate::tests::origin();
        let mut b = RelayBudget::default();
        assert!(b.take(LIMITS, "t", t0, 500));
        assert!(!b.take(LIMITS, "t", t0, 1));
        // 100 ms refill 100 bytes.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(LIMITS, "t", t1, 100));
        assert!(!b.take(LIMITS, "t", t1, 1));
        // Never more than the burst, however long the quiet.
        let t2 = t1 + Duration::from_secs(60);
        assert!(!b.take(LIMITS, "t", t2, 501));
        assert!(b.take(LIMITS, "t", t2, 500));
    }

    #[test]
    fn tokens_have_their_own_buckets() {
        let t0 = crate::tests::origin();
        let mut b = RelayBudget::default();
        assert!(b.take(LIMITS, "a", t0, 500));
        assert!(b.take(LIMITS, "b", t0, 500));
        assert!(!b.take(LIMITS, "a", t0, 1));
        b.retain(|t| t == "b");
        assert!(
            b.take(LIMITS, "a", t0, 500),
            "a forgotten token starts full"
        );
    }

    #[test]
    fn refills_lose_no_fraction_of_a_byte() {
        // 1 byte per second, a packet of 1 byte every 400 ms: over 4 s exactly four bytes
        // refill, plus the one left of the burst; rounding each refill down would give fewer.
        let slow = RelayLimits {
            bytes_per_sec: 1,
            burst: 2,
        };
        let t0 = crate::tests::origin();
        let mut b = RelayBudget::default();
        assert!(b.take(slow, "t", t0, 1));
        let mut now = t0;
        let mut got = 0;
        for _ in 0..10 {
            now += Duration::from_millis(400);
            if b.take(slow, "t", now, 1) {
                got += 1;
            }
        }
        assert_eq!(got, 5);
    }
}
