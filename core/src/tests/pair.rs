//! Two endpoints joined by a virtual link: the harness for handshake, session and stream
//! tests. Time is virtual; every run is a function of the seeds.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::Endpoint;
use crate::config::Config;
use crate::crypto::SecretKey;
use crate::event::Event;
use crate::transmit::Transmit;

/// Which endpoint of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    A,
    B,
}

/// Decides what happens to a datagram on the link: deliver it or not.
pub(crate) type Filter = Box<dyn FnMut(Side, &Transmit) -> bool>;

pub(crate) struct Pair {
    pub(crate) a: Endpoint,
    pub(crate) b: Endpoint,
    pub(crate) a_addr: SocketAddr,
    pub(crate) b_addr: SocketAddr,
    pub(crate) now: Instant,
    /// One-way delay of the link.
    pub(crate) latency: Duration,
    /// Datagrams in flight: (arrival, receiving side, source address, bytes).
    in_flight: VecDeque<(Instant, Side, SocketAddr, Bytes)>,
    pub(crate) a_events: Vec<Event>,
    pub(crate) b_events: Vec<Event>,
    /// Every datagram each side sent, in order, for replay and tamper tests.
    pub(crate) sent: Vec<(Side, Transmit)>,
    /// Returns false to drop a datagram.
    pub(crate) filter: Option<Filter>,
    /// Rewrites the source address B's datagrams arrive from (a NAT rebinding).
    pub(crate) b_seen_as: Option<SocketAddr>,
}

pub(crate) fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes([n; 32])
}

impl Pair {
    /// Two endpoints with keys `[1; 32]` (A) and `[2; 32]` (B), default configs.
    pub(crate) fn new() -> Self {
        Self::with_configs(Config::new(key(1)), Config::new(key(2)))
    }

    pub(crate) fn with_configs(a: Config, b: Config) -> Self {
        let now = super::origin();
        let unix = Duration::from_secs(1_800_000_000);
        Self {
            a: Endpoint::new(a, [0xA; 32], now, unix),
            b: Endpoint::new(b, [0xB; 32], now, unix),
            a_addr: "10.0.0.1:1000".parse().expect("literal"),
            b_addr: "10.0.0.2:2000".parse().expect("literal"),
            now,
            latency: Duration::from_millis(10),
            in_flight: VecDeque::new(),
            a_events: Vec::new(),
            b_events: Vec::new(),
            sent: Vec::new(),
            filter: None,
            b_seen_as: None,
        }
    }

    pub(crate) fn endpoint(&mut self, side: Side) -> &mut Endpoint {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Moves every queued transmit onto the link and every event into the event logs.
    pub(crate) fn collect(&mut self) {
        for side in [Side::A, Side::B] {
            while let Some(t) = self.endpoint(side).poll_transmit() {
                self.sent.push((side, t.clone()));
                if self.filter.as_mut().is_none_or(|f| f(side, &t)) {
                    self.put_on_link(side, t.payload);
                }
            }
            while let Some(e) = self.endpoint(side).poll_event() {
                match side {
                    Side::A => self.a_events.push(e),
                    Side::B => self.b_events.push(e),
                }
            }
        }
    }

    /// Delivers `payload` as if `from` had sent it now.
    pub(crate) fn put_on_link(&mut self, from: Side, payload: Bytes) {
        let (to, src) = match from {
            Side::A => (Side::B, self.a_addr),
            Side::B => (Side::A, self.b_seen_as.unwrap_or(self.b_addr)),
        };
        self.in_flight
            .push_back((self.now + self.latency, to, src, payload));
    }

    /// Handles the earliest delivery or deadline no later than `limit`. False if none.
    pub(crate) fn step(&mut self, limit: Instant) -> bool {
        self.collect();
        let delivery = self.in_flight.front().map(|(at, ..)| *at);
        let deadline = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .map(|(at, _)| at)
            .min();
        let next = [delivery, deadline].into_iter().flatten().min();
        let Some(at) = next.filter(|at| *at <= limit) else {
            return false;
        };
        assert!(
            at >= self.now,
            "a deadline in the past with no output queued"
        );
        self.now = at;
        if delivery == Some(at) {
            let (_, to, from, bytes) = self.in_flight.pop_front().expect("front exists");
            let now = self.now;
            self.endpoint(to).handle_input(now, from, &bytes);
        } else {
            let now = self.now;
            self.a.handle_timeout(now);
            self.b.handle_timeout(now);
        }
        self.collect();
        self.a.check_deadline_index();
        self.b.check_deadline_index();
        true
    }

    /// Runs for `d` of virtual time (bounded in steps), ending exactly `d` later.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        for _ in 0..1_000_000 {
            if !self.step(limit) {
                self.now = limit;
                return;
            }
        }
        panic!("no quiescence within a million steps: a timer loop");
    }

    /// A connects to B and the pair runs until both sides report `Connected`.
    pub(crate) fn connect(&mut self) -> (crate::PeerId, crate::PeerId) {
        let b_key = self.b.public_key();
        let b_addr = self.b_addr;
        let now = self.now;
        let a_peer = self.a.connect(now, b_key, b_addr).expect("valid key");
        self.run_for(Duration::from_millis(100));
        let b_peer = self
            .b_events
            .iter()
            .find_map(|e| match e {
                Event::Connected { peer, .. } => Some(*peer),
                _ => None,
            })
            .expect("B saw Connected");
        assert!(
            self.a_events
                .iter()
                .any(|e| matches!(e, Event::Connected { peer, .. } if *peer == a_peer))
        );
        (a_peer, b_peer)
    }

    /// Datagrams delivered to `side` so far.
    pub(crate) fn datagrams(&self, side: Side) -> Vec<Bytes> {
        let events = match side {
            Side::A => &self.a_events,
            Side::B => &self.b_events,
        };
        events
            .iter()
            .filter_map(|e| match e {
                Event::Datagram { data, .. } => Some(data.clone()),
                _ => None,
            })
            .collect()
    }
}
