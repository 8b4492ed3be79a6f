//! Two endpoints on the test network: the harness for handshake, session and stream tests.
//! Time is virtual; every run is a function of the seeds.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::net::{Link, Net, Origin};
use crate::Endpoint;
use crate::config::Config;
use crate::crypto::SecretKey;
use crate::event::Event;

/// Which endpoint of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    A,
    B,
}

impl Side {
    /// The host index on the network.
    pub(crate) fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Two endpoints, A (host 0) and B (host 1), on a 10 ms link.
pub(crate) type Pair = Net<Endpoint>;

pub(crate) fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes([n; 32])
}

impl Net<Endpoint> {
    /// Two endpoints with keys `[1; 32]` (A) and `[2; 32]` (B), default configs.
    pub(crate) fn pair() -> Self {
        Self::with_configs(Config::new(key(1)), Config::new(key(2)))
    }

    pub(crate) fn with_configs(a: Config, b: Config) -> Self {
        let now = super::origin();
        let unix = Duration::from_secs(1_800_000_000);
        let mut net = Net::new(now, Link::clean(Duration::from_millis(10)), 0);
        net.add(
            Endpoint::new(a, [0xA; 32], now, unix),
            "10.0.0.1:1000".parse().expect("literal"),
        );
        net.add(
            Endpoint::new(b, [0xB; 32], now, unix),
            "10.0.0.2:2000".parse().expect("literal"),
        );
        net
    }

    pub(crate) fn endpoint(&mut self, side: Side) -> &mut Endpoint {
        &mut self.hosts[side.index()].m
    }

    pub(crate) fn a(&mut self) -> &mut Endpoint {
        self.endpoint(Side::A)
    }

    pub(crate) fn b(&mut self) -> &mut Endpoint {
        self.endpoint(Side::B)
    }

    pub(crate) fn a_addr(&self) -> SocketAddr {
        self.hosts[0].addr
    }

    pub(crate) fn b_addr(&self) -> SocketAddr {
        self.hosts[1].addr
    }

    pub(crate) fn events(&self, side: Side) -> &Vec<Event> {
        &self.hosts[side.index()].events
    }

    pub(crate) fn a_events(&self) -> &Vec<Event> {
        self.events(Side::A)
    }

    pub(crate) fn b_events(&self) -> &Vec<Event> {
        self.events(Side::B)
    }

    /// Moves every queued transmit onto the link and every event into the event logs.
    pub(crate) fn collect(&mut self) {
        self.drain_all();
    }

    /// Datagrams `side` sent to the other, before loss and filters.
    pub(crate) fn sent_by(&self, side: Side) -> Vec<Bytes> {
        self.sent
            .iter()
            .filter(|s| s.from == side.index())
            .map(|s| s.transmit.payload.clone())
            .collect()
    }

    /// Delivers `payload` to the other side as if `from` had sent it now.
    pub(crate) fn put_on_link(&mut self, from: Side, payload: Bytes) {
        let src = self.source(from.index());
        self.push_flight(from.other().index(), src, payload, Origin::Forged);
    }

    /// A connects to B and the pair runs until both sides report `Connected`.
    pub(crate) fn connect(&mut self) -> (crate::PeerId, crate::PeerId) {
        let b_key = self.b().public_key();
        let b_addr = self.b_addr();
        let now = self.now;
        let a_peer = self.a().connect(now, b_key, b_addr).expect("valid key");
        self.run_for(Duration::from_millis(100));
        let b_peer = self
            .b_events()
            .iter()
            .find_map(|e| match e {
                Event::Connected { peer, .. } => Some(*peer),
                _ => None,
            })
            .expect("B saw Connected");
        assert!(
            self.a_events()
                .iter()
                .any(|e| matches!(e, Event::Connected { peer, .. } if *peer == a_peer))
        );
        (a_peer, b_peer)
    }

    /// Datagrams delivered to `side` so far.
    pub(crate) fn datagrams(&self, side: Side) -> Vec<Bytes> {
        self.events(side)
            .iter()
            .filter_map(|e| match e {
                Event::Datagram { data, .. } => Some(data.clone()),
                _ => None,
            })
            .collect()
    }
}
