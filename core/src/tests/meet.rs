//! Peer mode through the endpoint: two daemons that name each other with
//! [`crate::Endpoint::meet`] get a session; one that names a peer who never asks gets
//! [`Event::PeerFailed`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::pair::key;
use crate::config::{Config, RendezvousConfig};
use crate::crypto::PublicKey;
use crate::event::Event;
use crate::rendezvous::ServerConfig;
use crate::{Endpoint, ServiceError};

pub(super) const SERVER: usize = 0;
pub(super) const A: usize = 1;
pub(super) const B: usize = 2;

/// A rendezvous server and two daemons on one clean network, 10 ms apart.
pub(super) struct Net {
    pub(super) eps: Vec<Endpoint>,
    pub(super) addrs: Vec<SocketAddr>,
    pub(super) now: Instant,
    flights: VecDeque<(Instant, usize, SocketAddr, Bytes)>,
    pub(super) events: Vec<Vec<Event>>,
    /// Datagrams to addresses of no endpoint: (sender, destination, bytes).
    pub(super) unrouted: Vec<(usize, SocketAddr, Bytes)>,
}

impl Net {
    fn new() -> Self {
        Self::with(|_, _| {})
    }

    /// As [`Self::new`], with `change` applied to each daemon's configuration (its index).
    pub(super) fn with(mut change: impl FnMut(usize, &mut Config)) -> Self {
        let now = super::origin();
        let addrs: Vec<SocketAddr> = ["10.0.0.9:7000", "10.0.0.1:1000", "10.0.0.2:2000"]
            .iter()
            .map(|a| a.parse().expect("literal"))
            .collect();
        let server_key = key(9).public_key();
        let daemon = |n| {
            let rendezvous = RendezvousConfig::new(server_key, addrs[SERVER], "token");
            Config::daemon(key(n), rendezvous)
        };
        let mut configs = [
            Config::server(key(9), ServerConfig::default()),
            daemon(1),
            daemon(2),
        ];
        for (i, c) in configs.iter_mut().enumerate().skip(1) {
            change(i, c);
        }
        let unix = Duration::from_secs(1_800_000_000);
        let eps = configs
            .into_iter()
            .enumerate()
            .map(|(i, c)| Endpoint::new(c, [i as u8 + 1; 32], now, unix))
            .collect();
        Self {
            eps,
            addrs,
            now,
            flights: VecDeque::new(),
            events: vec![Vec::new(); 3],
            unrouted: Vec::new(),
        }
    }

    fn key(&self, i: usize) -> PublicKey {
        self.eps[i].public_key()
    }

    fn drain(&mut self) {
        for i in 0..self.eps.len() {
            while let Some(t) = self.eps[i].poll_transmit() {
                if let Some(to) = self.addrs.iter().position(|a| *a == t.dst) {
                    let at = self.now + Duration::from_millis(10);
                    self.flights.push_back((at, to, self.addrs[i], t.payload));
                } else {
                    self.unrouted.push((i, t.dst, t.payload));
                }
            }
            while let Some(e) = self.eps[i].poll_event() {
                self.events[i].push(e);
            }
            self.eps[i].check_deadline_index();
        }
    }

    /// Delivers `bytes` from `from` to endpoint `to` 10 ms from now.
    pub(super) fn send(&mut self, to: usize, from: SocketAddr, bytes: Vec<u8>) {
        let at = self.now + Duration::from_millis(10);
        let i = self.flights.partition_point(|f| f.0 <= at);
        self.flights.insert(i, (at, to, from, bytes.into()));
    }

    pub(super) fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        loop {
            self.drain();
            let flight = self.flights.front().map(|f| f.0);
            let timer = self
                .eps
                .iter()
                .filter_map(|e| e.poll_timeout())
                .map(|t| t.0)
                .min();
            let Some(at) = [flight, timer].into_iter().flatten().min() else {
                break;
            };
            if at > limit {
                break;
            }
            assert!(
                at >= self.now,
                "a deadline in the past with no output queued"
            );
            self.now = at;
            if flight == Some(at) {
                let (_, to, from, bytes) = self.flights.pop_front().expect("front exists");
                self.eps[to].handle_input(at, from, &bytes);
            } else {
                for ep in &mut self.eps {
                    if ep.poll_timeout().is_some_and(|(due, _)| due <= at) {
                        ep.handle_timeout(at);
                    }
                }
            }
        }
        self.now = limit;
    }

    pub(super) fn registered(&self, i: usize) -> bool {
        self.events[i]
            .iter()
            .any(|e| matches!(e, Event::Registered { .. }))
    }
}

#[test]
fn two_daemons_that_name_each_other_get_a_session() {
    let mut net = Net::new();
    net.run_for(Duration::from_secs(2));
    assert!(net.registered(A) && net.registered(B), "{:?}", net.events);
    let (now, a_key, b_key) = (net.now, net.key(A), net.key(B));
    net.eps[A].meet(now, b_key).unwrap();
    // The other side asks a little later: the server holds the first request meanwhile.
    net.run_for(Duration::from_millis(700));
    let now = net.now;
    net.eps[B].meet(now, a_key).unwrap();
    net.run_for(Duration::from_secs(5));
    for (me, other) in [(A, b_key), (B, a_key)] {
        let ready: Vec<_> = net.events[me]
            .iter()
            .filter_map(|e| match e {
                Event::PeerReady { key, peer } => Some((*key, *peer)),
                _ => None,
            })
            .collect();
        assert_eq!(ready.len(), 1, "node {me}: {:?}", net.events[me]);
        let (key, peer) = ready[0];
        assert_eq!(key, other);
        assert!(net.eps[me].is_connected(peer));
    }
    // Asking again once connected answers at once.
    let now = net.now;
    net.eps[A].meet(now, b_key).unwrap();
    net.drain();
    let ready = net.events[A]
        .iter()
        .filter(|e| matches!(e, Event::PeerReady { .. }))
        .count();
    assert_eq!(ready, 2);
}

#[test]
fn naming_a_peer_that_never_asks_fails_with_the_servers_reason() {
    let mut net = Net::new();
    net.run_for(Duration::from_secs(2));
    let (now, b_key) = (net.now, net.key(B));
    net.eps[A].meet(now, b_key).unwrap();
    // The server waits `peer_wait` (90 s) for the other side, the client a little longer.
    net.run_for(Duration::from_secs(120));
    let failed: Vec<_> = net.events[A]
        .iter()
        .filter_map(|e| match e {
            Event::PeerFailed { key, reason } => Some((*key, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", net.events[A]);
    assert_eq!(failed[0].0, b_key);
    let met = |e: &Event| match e {
        Event::PeerReady { .. } => true,
        Event::Connected { key, .. } => *key == b_key,
        _ => false,
    };
    assert!(!net.events[A].iter().any(met), "{:?}", net.events[A]);
}

#[test]
fn meet_needs_a_rendezvous_server_and_another_key() {
    let mut net = Net::new();
    let now = net.now;
    let own = net.key(A);
    assert!(matches!(
        net.eps[A].meet(now, own),
        Err(ServiceError::Invalid(_))
    ));
    let b_key = net.key(B);
    assert_eq!(
        net.eps[SERVER].meet(now, b_key),
        Err(ServiceError::NoRendezvous)
    );
}

/// A session that is up because one side looked a service up is no meeting: when both then
/// name each other, each side's ask reaches the server, so both get `PeerReady` and the
/// meeting's grant (before, each side saw the session up and answered itself, and the side
/// that had only looked a service up never let the other in).
#[test]
fn a_session_from_a_lookup_still_meets_through_the_server() {
    let mut net = Net::new();
    net.run_for(Duration::from_secs(2));
    let svc = crate::rendezvous::ServiceName::parse("/svc").expect("literal");
    let now = net.now;
    net.eps[B].expose(now, svc.clone(), "127.0.0.1:9").unwrap();
    net.run_for(Duration::from_secs(2));
    let now = net.now;
    net.eps[A].connect_service(now, svc).unwrap();
    net.run_for(Duration::from_secs(3));
    assert!(
        net.events[A]
            .iter()
            .any(|e| matches!(e, Event::ServiceReady { .. })),
        "the lookup made a session: {:?}",
        net.events[A]
    );
    let (now, a_key, b_key) = (net.now, net.key(A), net.key(B));
    net.eps[A].meet(now, b_key).unwrap();
    net.eps[B].meet(now, a_key).unwrap();
    net.run_for(Duration::from_secs(5));
    for me in [A, B] {
        assert!(
            net.events[me]
                .iter()
                .any(|e| matches!(e, Event::PeerReady { .. })),
            "node {me} met its peer: {:?}",
            net.events[me]
        );
        assert!(
            !net.events[me]
                .iter()
                .any(|e| matches!(e, Event::PeerFailed { .. })),
            "node {me}"
        );
    }
    // The meeting is what lets B reach A's side at all (A's lookup granted B nothing).
    assert!(
        net.events[A]
            .iter()
            .any(|e| matches!(e, Event::AccessGranted { key } if *key == b_key)),
        "A granted B by the meeting: {:?}",
        net.events[A]
    );
}
