//! One in-memory network for core's tests: N machines on virtual time, datagrams routed by
//! `Transmit::dst`, seeded loss, duplication and reordering, an attacker's hooks (drop, filter,
//! inject, replay), and bounded driving.
//!
//! What a node is stays open: anything with the sans-IO verbs implements [`Machine`] (an
//! [`Endpoint`], a stream `Mux` with a fixed peer, a rendezvous server or client, an endpoint
//! with a forwarder and fake local sockets). Each suite keeps a thin adapter.
//!
//! Driving is bounded twice, as in quinn's `drive_bounded`: every run ends at a virtual-time
//! limit and within a step budget, and a machine that asks for a deadline at or before the
//! `now` of the `handle_timeout` call that just ran (after its output was drained) fails the
//! test at once: that is a busy loop.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::Endpoint;
use crate::event::Event;
use crate::transmit::Transmit;

/// A sans-IO state machine the network can drive.
pub(crate) trait Machine {
    /// What it tells its application.
    type Event: Clone + Debug;

    /// A datagram arrived from `from`.
    fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]);
    /// Its deadline passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send. `now` is for machines that build packets lazily.
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit>;
    /// The next event for its application.
    fn poll_event(&mut self, now: Instant) -> Option<Self::Event>;
    /// When it next wants `handle_timeout`.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Internal consistency checks, run after every drain.
    fn check(&self) {}
}

impl Machine for Endpoint {
    type Event = Event;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        Endpoint::handle_input(self, now, from, bytes);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        // Runs, as a runtime with segmentation offload takes them; the network splits them.
        Endpoint::poll_transmit_run(self, crate::transmit::MAX_RUN_SEGMENTS)
    }

    fn poll_event(&mut self, _now: Instant) -> Option<Event> {
        Endpoint::poll_event(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Endpoint::poll_timeout(self).map(|(at, _)| at)
    }

    fn check(&self) {
        self.check_deadline_index();
    }
}

/// One machine on the network and what the network saw of it.
pub(crate) struct Host<M: Machine> {
    pub(crate) m: M,
    /// Where it sends from and receives at.
    pub(crate) addr: SocketAddr,
    /// Rewrites the source its datagrams arrive from (a NAT rebinding); it is reachable there
    /// too.
    pub(crate) seen_as: Option<SocketAddr>,
    /// Every event, in order.
    pub(crate) events: Vec<M::Event>,
    /// `handle_timeout` calls per virtual second since the network's origin.
    pub(crate) timeouts: BTreeMap<u64, u32>,
    /// Drop this many of its next datagrams.
    pub(crate) drop_next: u32,
    /// Send this many of its next datagrams twice.
    pub(crate) dup_next: u32,
}

/// Link impairments, the same on every path. Probabilities are in parts per million and
/// drawn from the network's seeded generator.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Link {
    /// One-way delay.
    pub(crate) latency: Duration,
    /// Extra delay, uniform below this: reordering.
    pub(crate) jitter: Duration,
    /// Each copy of a datagram is lost with this probability.
    pub(crate) loss_ppm: u32,
    /// A datagram is sent twice with this probability.
    pub(crate) dup_ppm: u32,
}

impl Link {
    /// No loss, duplication or reordering.
    pub(crate) fn clean(latency: Duration) -> Self {
        Self {
            latency,
            jitter: Duration::ZERO,
            loss_ppm: 0,
            dup_ppm: 0,
        }
    }
}

/// Where a datagram in flight came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Sent by a machine (or re-sent by the attacker); the index into [`Net::sent`].
    Sent(usize),
    /// Bytes the test made up or altered.
    Forged,
}

/// A datagram in flight.
#[derive(Clone, Debug)]
pub(crate) struct Flight {
    pub(crate) to: usize,
    pub(crate) from: SocketAddr,
    pub(crate) bytes: Bytes,
    pub(crate) origin: Origin,
}

/// One datagram a machine sent to another machine.
#[derive(Clone, Debug)]
pub(crate) struct Sent {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) transmit: Transmit,
    /// Whether these bytes have reached the receiver's `handle_input` already.
    pub(crate) delivered: bool,
}

/// Decides whether a datagram from one host to another is delivered.
pub(crate) type Filter = Box<dyn FnMut(usize, usize, &[u8]) -> bool>;

/// What one step did.
#[derive(Debug)]
pub(crate) enum Step<E> {
    /// A datagram reached host `to`; the events it caused.
    Delivered {
        flight: Flight,
        /// Whether these exact bytes had reached the receiver before.
        replay: bool,
        events: Vec<E>,
    },
    /// Deadlines passed; each host whose `handle_timeout` ran, with the events it caused.
    Timeout(Vec<(usize, Vec<E>)>),
}

/// Machines on a virtual network the test controls completely.
pub(crate) struct Net<M: Machine> {
    pub(crate) hosts: Vec<Host<M>>,
    pub(crate) origin: Instant,
    pub(crate) now: Instant,
    pub(crate) link: Link,
    /// Datagrams in flight, by (arrival, sequence).
    pub(crate) flights: BTreeMap<(Instant, u64), Flight>,
    seq: u64,
    rng: ChaCha8Rng,
    /// Every datagram a machine sent to another machine, before loss and filters.
    pub(crate) sent: Vec<Sent>,
    /// Datagrams to addresses no host has.
    pub(crate) blackholed: Vec<Transmit>,
    /// Drop this many of the next datagrams any machine sends.
    pub(crate) drop_next: u32,
    /// Returns false to drop a datagram (from host, to host, payload).
    pub(crate) filter: Option<Filter>,
    /// Steps one `run_for` may take before the test fails.
    pub(crate) max_steps: u64,
    /// Datagrams handed to `handle_input`.
    pub(crate) delivered: u64,
}

impl<M: Machine> Net<M> {
    /// An empty network at virtual-time origin `now`, with a clean link and a seeded
    /// generator for impairments.
    pub(crate) fn new(now: Instant, link: Link, seed: u64) -> Self {
        Self {
            hosts: Vec::new(),
            origin: now,
            now,
            link,
            flights: BTreeMap::new(),
            seq: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            sent: Vec::new(),
            blackholed: Vec::new(),
            drop_next: 0,
            filter: None,
            max_steps: 2_000_000,
            delivered: 0,
        }
    }

    /// Adds a machine at `addr`; returns its index.
    pub(crate) fn add(&mut self, m: M, addr: SocketAddr) -> usize {
        self.hosts.push(Host {
            m,
            addr,
            seen_as: None,
            events: Vec::new(),
            timeouts: BTreeMap::new(),
            drop_next: 0,
            dup_next: 0,
        });
        self.hosts.len() - 1
    }

    /// Restarts the impairment generator from `seed`.
    pub(crate) fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Virtual time since the origin.
    pub(crate) fn at(&self) -> Duration {
        self.now - self.origin
    }

    /// The host reachable at `addr`.
    pub(crate) fn host_at(&self, addr: SocketAddr) -> Option<usize> {
        self.hosts
            .iter()
            .position(|h| h.addr == addr || h.seen_as == Some(addr))
    }

    /// The source address host `i`'s datagrams arrive from.
    pub(crate) fn source(&self, i: usize) -> SocketAddr {
        self.hosts[i].seen_as.unwrap_or(self.hosts[i].addr)
    }

    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.next_u32() % 1_000_000 < ppm
    }

    /// Puts `bytes` in flight to host `to` as if sent from `from` now.
    pub(crate) fn push_flight(
        &mut self,
        to: usize,
        from: SocketAddr,
        bytes: Bytes,
        origin: Origin,
    ) {
        self.push_flight_after(Duration::ZERO, to, from, bytes, origin);
    }

    fn push_flight_after(
        &mut self,
        extra: Duration,
        to: usize,
        from: SocketAddr,
        bytes: Bytes,
        origin: Origin,
    ) {
        let jitter_ns = self.link.jitter.as_nanos() as u64;
        let jitter = if jitter_ns > 0 {
            Duration::from_nanos(self.rng.next_u64() % jitter_ns)
        } else {
            Duration::ZERO
        };
        self.seq += 1;
        let at = self.now + self.link.latency + jitter + extra;
        self.flights.insert(
            (at, self.seq),
            Flight {
                to,
                from,
                bytes,
                origin,
            },
        );
    }

    /// Delivers `bytes` to host `to` as if `from` sent them now (an attacker's datagram).
    pub(crate) fn inject(&mut self, to: usize, from: SocketAddr, bytes: impl Into<Bytes>) {
        self.push_flight(to, from, bytes.into(), Origin::Forged);
    }

    /// Re-sends captured datagram `k` to its receiver, from `from` (its sender by default).
    pub(crate) fn replay(&mut self, k: usize, from: Option<SocketAddr>) {
        let s = &self.sent[k];
        let (to, bytes) = (s.to, s.transmit.payload.clone());
        let from = from.unwrap_or_else(|| self.source(self.sent[k].from));
        self.push_flight(to, from, bytes, Origin::Sent(k));
    }

    /// Routes a datagram host `from` sent: by destination, through the drop counters, the
    /// filter, and the link's loss and duplication.
    pub(crate) fn route(&mut self, from: usize, t: Transmit) {
        let Some(to) = self.host_at(t.dst) else {
            self.blackholed.push(t);
            return;
        };
        self.sent.push(Sent {
            from,
            to,
            transmit: t.clone(),
            delivered: false,
        });
        let k = self.sent.len() - 1;
        if self.drop_next > 0 {
            self.drop_next -= 1;
            return;
        }
        if self.hosts[from].drop_next > 0 {
            self.hosts[from].drop_next -= 1;
            return;
        }
        if let Some(filter) = &mut self.filter {
            if !filter(from, to, &t.payload) {
                return;
            }
        }
        let copies = if self.hosts[from].dup_next > 0 {
            self.hosts[from].dup_next -= 1;
            2
        } else if self.chance(self.link.dup_ppm) {
            2
        } else {
            1
        };
        let src = self.source(from);
        for _ in 0..copies {
            if self.chance(self.link.loss_ppm) {
                continue;
            }
            self.push_flight(to, src, t.payload.clone(), Origin::Sent(k));
        }
    }

    /// Drains host `i`'s output until it has none (the run-loop contract): datagrams onto the
    /// network, events into its log. Returns the new events.
    pub(crate) fn drain(&mut self, i: usize) -> Vec<M::Event> {
        let now = self.now;
        let mut new = Vec::new();
        for _ in 0..1_000_000 {
            let mut busy = false;
            while let Some(t) = self.hosts[i].m.poll_transmit(now) {
                busy = true;
                for datagram in t.into_datagrams() {
                    self.route(i, datagram);
                }
            }
            while let Some(e) = self.hosts[i].m.poll_event(now) {
                busy = true;
                new.push(e);
            }
            if !busy {
                self.hosts[i].events.extend(new.iter().cloned());
                self.hosts[i].m.check();
                return new;
            }
        }
        panic!("host {i}: output never ends");
    }

    /// Drains every host.
    pub(crate) fn drain_all(&mut self) {
        for i in 0..self.hosts.len() {
            self.drain(i);
        }
    }

    /// Runs a command on host `i` at the current time, then drains it.
    pub(crate) fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut M, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.hosts[i].m, now);
        self.drain(i);
        self.check_deadline(i, false);
        r
    }

    /// After a call at `now` and draining: no deadline in the past; after `handle_timeout`
    /// (`strict`) none at `now` either.
    pub(crate) fn check_deadline(&self, i: usize, strict: bool) {
        if let Some(at) = self.hosts[i].m.poll_timeout() {
            let ok = if strict {
                at > self.now
            } else {
                at >= self.now
            };
            assert!(
                ok,
                "host {i} at {:?}: poll_timeout returns {:?} after draining (strict: {strict}): \
                 a busy loop",
                self.at(),
                at.saturating_duration_since(self.origin),
            );
        }
    }

    /// The earliest delivery or deadline.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        let flight = self.flights.keys().next().map(|(at, _)| *at);
        let timer = self.hosts.iter().filter_map(|h| h.m.poll_timeout()).min();
        flight.into_iter().chain(timer).min()
    }

    /// Hands the earliest datagram in flight to its receiver's `handle_input` and drains it.
    pub(crate) fn deliver_next(&mut self) -> Step<M::Event> {
        let (_, flight) = self.flights.pop_first().expect("a datagram in flight");
        let i = flight.to;
        let replay = match flight.origin {
            Origin::Sent(k) => std::mem::replace(&mut self.sent[k].delivered, true),
            Origin::Forged => false,
        };
        let now = self.now;
        self.delivered += 1;
        self.hosts[i]
            .m
            .handle_input(now, flight.from, &flight.bytes);
        let events = self.drain(i);
        self.check_deadline(i, false);
        Step::Delivered {
            flight,
            replay,
            events,
        }
    }

    /// Calls `handle_timeout` on every host whose deadline has passed, draining each.
    pub(crate) fn fire(&mut self) -> Step<M::Event> {
        let now = self.now;
        let mut fired = Vec::new();
        for i in 0..self.hosts.len() {
            if self.hosts[i].m.poll_timeout().is_some_and(|at| at <= now) {
                self.hosts[i].m.handle_timeout(now);
                let second = self.at().as_secs();
                *self.hosts[i].timeouts.entry(second).or_default() += 1;
                let events = self.drain(i);
                self.check_deadline(i, true);
                fired.push((i, events));
            }
        }
        Step::Timeout(fired)
    }

    /// Handles the earliest delivery or deadline no later than `limit`. None if there is none.
    pub(crate) fn step(&mut self, limit: Instant) -> Option<Step<M::Event>> {
        self.drain_all();
        let at = self.next_at().filter(|at| *at <= limit)?;
        assert!(
            at >= self.now,
            "a deadline in the past with no output queued ({:?} before now)",
            self.now - at
        );
        self.now = at;
        if self
            .flights
            .keys()
            .next()
            .is_some_and(|(fat, _)| *fat == at)
        {
            Some(self.deliver_next())
        } else {
            Some(self.fire())
        }
    }

    /// Runs for `d` of virtual time (bounded in steps), ending exactly `d` later.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        self.run_until(limit);
    }

    /// Runs until `limit` (bounded in steps), then sets the clock to it.
    pub(crate) fn run_until(&mut self, limit: Instant) {
        for _ in 0..self.max_steps {
            if self.step(limit).is_none() {
                self.now = self.now.max(limit);
                return;
            }
        }
        panic!(
            "no quiescence within {} steps at {:?}: a timer loop",
            self.max_steps,
            self.at()
        );
    }
}
