//! The server's relay policy: who may relay to whom, and how fast.
//!
//! The relay forwards packets between two daemons that both hold a live registration; it
//! never sees inside them (they are sealed with the daemons' own session keys). Each token
//! has a byte budget refilled at [`RelayLimits::bytes_per_sec`] up to
//! [`RelayLimits::burst`]: a token bucket, so one token's daemons cannot take the server's
//! bandwidth from the others.
//!
//! The limit shapes rather than drops: a packet over the budget waits in its token's queue
//! (at most [`RelayLimits::queue`] bytes per token and [`RelayLimits::queue_total`] for all
//! tokens together) and leaves, in order, at the instant the bucket holds it; the server
//! hands that instant out as a deadline. Only a packet that finds the queue full is dropped,
//! and counted. A congestion-controlled sender over the relay then sees the limit as a
//! bottleneck with a short queue (delay, then few losses) rather than as random loss.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::crypto::PublicKey;

/// Per-token relay limits (a directory tenant's rate may be its own, set by the server's
/// operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Sustained bytes per second one token's daemons may relay, together.
    pub bytes_per_sec: u64,
    /// Bytes a token may relay at once after a quiet spell.
    pub burst: u64,
    /// Bytes of one token's packets that may wait for its budget; a packet past it is dropped.
    pub queue: u64,
    /// Bytes of all tokens' packets that may wait together (the server's memory bound).
    pub queue_total: u64,
}

impl Default for RelayLimits {
    /// 16 MiB/s sustained, 1 MiB bursts: plenty for interactive use and bulk transfers of a
    /// few daemons, and a bound on what one token costs the server. A token's queue holds
    /// 256 KiB (16 ms at the limit), all queues together 8 MiB.
    fn default() -> Self {
        Self {
            bytes_per_sec: 16 << 20,
            burst: 1 << 20,
            queue: 256 << 10,
            queue_total: 8 << 20,
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
    /// The sender's token is over its rate limit and its queue is full: dropped.
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

    /// When `token`'s bucket will hold `len` bytes (now or earlier when it does already).
    fn ready_at(&self, limits: RelayLimits, token: &str, len: u64) -> Option<Instant> {
        let bucket = self.buckets.get(token)?;
        let cost = u128::from(len) * NANOS;
        if bucket.nano_bytes >= cost {
            return Some(bucket.at);
        }
        let rate = u128::from(limits.bytes_per_sec.max(1));
        let nanos = (cost - bucket.nano_bytes).div_ceil(rate);
        Some(bucket.at + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }

    /// Forgets tokens that no registration holds any more.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(&str) -> bool) {
        self.buckets.retain(|t, _| live(t));
    }
}

/// A relayed packet waiting for its token's budget.
#[derive(Debug)]
pub(crate) struct Held {
    /// The daemon that sent it.
    pub(crate) from: PublicKey,
    /// The daemon it goes to.
    pub(crate) to: PublicKey,
    /// The packet as it came (sealed by the daemons).
    pub(crate) packet: Vec<u8>,
}

/// What the shaper did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shaped {
    /// Within the budget and nothing waiting before it: forward it now.
    Now,
    /// Over the budget: it waits in the token's queue (see [`RelayShaper::release`]).
    Queued,
    /// Over the budget and the queue is full: dropped.
    Dropped,
}

/// One token's waiting packets.
#[derive(Debug, Default)]
struct TokenQueue {
    packets: VecDeque<Held>,
    bytes: u64,
}

/// Token buckets with a bounded queue per token: the relay's rate limit.
#[derive(Debug, Default)]
pub(crate) struct RelayShaper {
    budget: RelayBudget,
    queues: BTreeMap<String, TokenQueue>,
    /// Bytes waiting in every queue.
    total: u64,
}

impl RelayShaper {
    /// Decides about `packet` from `from` to `to`, of `token`'s daemons: forward now, queue
    /// (a copy is kept), or drop. Packets of a token leave in the order they came.
    pub(crate) fn offer(
        &mut self,
        limits: RelayLimits,
        token: &str,
        now: Instant,
        from: PublicKey,
        to: PublicKey,
        packet: &[u8],
    ) -> Shaped {
        let len = packet.len() as u64;
        if len > limits.burst {
            // The bucket never holds it: it could only block the queue.
            return Shaped::Dropped;
        }
        let waiting = self.queues.get(token).map_or(0, |q| q.bytes);
        if waiting == 0 && self.budget.take(limits, token, now, len) {
            return Shaped::Now;
        }
        if waiting + len > limits.queue || self.total + len > limits.queue_total {
            return Shaped::Dropped;
        }
        let q = self.queues.entry(token.to_owned()).or_default();
        q.packets.push_back(Held {
            from,
            to,
            packet: packet.to_vec(),
        });
        q.bytes += len;
        self.total += len;
        Shaped::Queued
    }

    /// When the first waiting packet can leave: the earliest instant a token's bucket holds
    /// the packet at the head of its queue. `None` when nothing waits.
    pub(crate) fn poll_timeout(&self, limits: &dyn Fn(&str) -> RelayLimits) -> Option<Instant> {
        self.queues
            .iter()
            .filter_map(|(token, q)| {
                let head = q.packets.front()?;
                self.budget
                    .ready_at(limits(token), token, head.packet.len() as u64)
            })
            .min()
    }

    /// Takes every waiting packet whose token's budget holds it by `now`, in order per token.
    pub(crate) fn release(
        &mut self,
        limits: &dyn Fn(&str) -> RelayLimits,
        now: Instant,
        out: &mut Vec<Held>,
    ) {
        for (token, q) in &mut self.queues {
            let limits = limits(token);
            while let Some(head) = q.packets.front() {
                let len = head.packet.len() as u64;
                if !self.budget.take(limits, token, now, len) {
                    break;
                }
                q.bytes -= len;
                self.total -= len;
                out.extend(q.packets.pop_front());
            }
        }
        self.queues.retain(|_, q| !q.packets.is_empty());
    }

    /// Forgets tokens that no registration holds any more, with their waiting packets.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(&str) -> bool) {
        self.budget.retain(&mut live);
        let mut freed = 0;
        self.queues.retain(|t, q| {
            let keep = live(t);
            if !keep {
                freed += q.bytes;
            }
            keep
        });
        self.total -= freed;
    }

    /// Bytes waiting in every queue.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMITS: RelayLimits = RelayLimits {
        bytes_per_sec: 1000,
        burst: 500,
        queue: 0,
        queue_total: 0,
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
            queue: 0,
            queue_total: 0,
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

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    /// A sender at twice the limit, 1200-byte packets evenly spaced for 10 s, the shaper's
    /// deadlines honoured: what leaves is the limit (within the burst), every packet is
    /// forwarded, queued or counted as dropped, and none is dropped while the queue has room.
    #[test]
    fn a_sender_at_twice_the_limit_gets_the_limit_and_only_the_excess_is_dropped() {
        let limits = RelayLimits {
            bytes_per_sec: 1 << 20,
            burst: 64 << 10,
            queue: 128 << 10,
            queue_total: 1 << 20,
        };
        const PACKET: usize = 1200;
        let t0 = crate::tests::origin();
        let gap = Duration::from_nanos(1_000_000_000 * PACKET as u64 / (2 << 20));
        let mut shaper = RelayShaper::default();
        let (mut offered, mut now_sent, mut released, mut dropped) = (0u64, 0u64, 0u64, 0u64);
        let mut out = Vec::new();
        let mut next_packet = t0;
        let end = t0 + Duration::from_secs(10);
        let mut max_delay = Duration::ZERO;
        let mut queued_at: VecDeque<Instant> = VecDeque::new();
        while next_packet < end {
            // Time moves to whichever comes first: the next packet or the shaper's deadline.
            let now = shaper
                .poll_timeout(&|_| limits)
                .filter(|at| *at < next_packet)
                .unwrap_or(next_packet);
            shaper.release(&|_| limits, now, &mut out);
            for _ in out.drain(..) {
                released += PACKET as u64;
                let at = queued_at.pop_front().expect("released in order");
                max_delay = max_delay.max(now - at);
            }
            if now == next_packet {
                offered += PACKET as u64;
                match shaper.offer(limits, "t", now, key(1), key(2), &[0; PACKET]) {
                    Shaped::Now => now_sent += PACKET as u64,
                    Shaped::Queued => queued_at.push_back(now),
                    Shaped::Dropped => {
                        dropped += PACKET as u64;
                        assert!(
                            shaper.queued_bytes() + PACKET as u64 > limits.queue,
                            "dropped with room in the queue"
                        );
                    }
                }
                next_packet += gap;
            }
        }
        let carried = now_sent + released;
        let limit_bytes = 10 * limits.bytes_per_sec;
        assert_eq!(offered, carried + dropped + shaper.queued_bytes());
        assert!(
            carried >= limit_bytes * 99 / 100,
            "carried {carried} of the {limit_bytes} the limit allows"
        );
        assert!(carried <= limit_bytes + limits.burst);
        // Twice the limit: about half is over it; the queue and burst absorb the rest.
        let excess = offered - limit_bytes;
        assert!(
            dropped <= excess,
            "dropped {dropped}, the sender was only {excess} over"
        );
        // A packet waits at most a queue's worth at the limit.
        let bound = Duration::from_secs_f64(limits.queue as f64 / limits.bytes_per_sec as f64);
        assert!(max_delay <= bound + gap, "waited {max_delay:?}");
    }

    /// A burst past the bucket but within the queue loses nothing: it leaves at the limit's
    /// pace, in order, released at the deadlines the shaper hands out.
    #[test]
    fn a_burst_within_the_queue_is_delayed_not_dropped() {
        let limits = RelayLimits {
            bytes_per_sec: 10_000,
            burst: 1_000,
            queue: 5_000,
            queue_total: 5_000,
        };
        let t0 = crate::tests::origin();
        let mut shaper = RelayShaper::default();
        let verdicts: Vec<Shaped> = (0..7u8)
            .map(|i| shaper.offer(limits, "t", t0, key(1), key(2), &[i; 1000]))
            .collect();
        assert_eq!(verdicts[0], Shaped::Now);
        assert!(verdicts[1..6].iter().all(|v| *v == Shaped::Queued));
        assert_eq!(verdicts[6], Shaped::Dropped, "past the queue");
        // Another token's queue is its own, but the total bounds both.
        assert_eq!(
            shaper.offer(limits, "u", t0, key(3), key(2), &[0; 1000]),
            Shaped::Now
        );
        assert_eq!(
            shaper.offer(limits, "u", t0, key(3), key(2), &[0; 1000]),
            Shaped::Dropped
        );
        let mut out = Vec::new();
        let mut now = t0;
        while let Some(at) = shaper.poll_timeout(&|_| limits) {
            assert!(at > now, "a deadline that is not in the future");
            now = at;
            shaper.release(&|_| limits, now, &mut out);
        }
        let order: Vec<u8> = out.iter().map(|h| h.packet[0]).collect();
        assert_eq!(order, [1, 2, 3, 4, 5]);
        assert_eq!(now - t0, Duration::from_millis(500), "at 10 kB/s");
        assert_eq!(shaper.queued_bytes(), 0);
    }

    #[test]
    fn a_forgotten_token_frees_its_queue() {
        let limits = RelayLimits {
            bytes_per_sec: 1,
            burst: 100,
            queue: 100,
            queue_total: 100,
        };
        let t0 = crate::tests::origin();
        let mut shaper = RelayShaper::default();
        assert_eq!(
            shaper.offer(limits, "t", t0, key(1), key(2), &[0; 100]),
            Shaped::Now
        );
        assert_eq!(
            shaper.offer(limits, "t", t0, key(1), key(2), &[0; 101]),
            Shaped::Dropped,
            "larger than the burst: the bucket never holds it"
        );
        assert_eq!(
            shaper.offer(limits, "t", t0, key(1), key(2), &[0; 50]),
            Shaped::Queued
        );
        shaper.retain(|t| t != "t");
        assert_eq!(shaper.queued_bytes(), 0);
        assert_eq!(shaper.poll_timeout(&|_| limits), None);
    }
}
