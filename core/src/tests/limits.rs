//! Resource limits under hostile input, through whole endpoints: the session cap, per-source
//! cookie demands, and a server that takes no streams.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::pair::key;
use crate::config::Config;
use crate::error::CloseReason;
use crate::event::Event;
use crate::rendezvous::ServerConfig;
use crate::{Endpoint, Transmit};

const UNIX: Duration = Duration::from_secs(1_800_000_000);

/// Endpoints on one virtual link: every transmit is delivered after 1 ms to the endpoint
/// bound at its destination, from the sender's address, until nothing moves or `until`.
struct Link {
    now: Instant,
    nodes: Vec<(SocketAddr, Endpoint, Vec<Event>)>,
}

impl Link {
    fn new(now: Instant) -> Self {
        Self {
            now,
            nodes: Vec::new(),
        }
    }

    fn add(&mut self, addr: &str, config: Config) -> usize {
        let seed = [self.nodes.len() as u8 + 1; 32];
        let ep = Endpoint::new(config, seed, self.now, UNIX);
        self.nodes
            .push((addr.parse().expect("literal"), ep, Vec::new()));
        self.nodes.len() - 1
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].0
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        let mut flights: Vec<(Instant, SocketAddr, Transmit)> = Vec::new();
        loop {
            for i in 0..self.nodes.len() {
                let (from, ep, events) = &mut self.nodes[i];
                while let Some(t) = ep.poll_transmit() {
                    flights.push((self.now + Duration::from_millis(1), *from, t));
                }
                events.extend(std::iter::from_fn(|| ep.poll_event()));
            }
            let next_flight = flights.iter().map(|f| f.0).min();
            let next_timer = self
                .nodes
                .iter()
                .filter_map(|n| n.1.poll_timeout().map(|(at, _)| at))
                .min();
            let Some(next) = [next_flight, next_timer].into_iter().flatten().min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = flights.into_iter().partition(|f| f.0 <= now);
            flights = later;
            for (_, from, t) in due {
                if let Some(node) = self.nodes.iter_mut().find(|n| n.0 == t.dst) {
                    node.1.handle_input(now, from, &t.payload);
                }
            }
            for (from, ep, events) in &mut self.nodes {
                // Drained before the deadline is read, as the run-loop contract asks.
                while let Some(t) = ep.poll_transmit() {
                    flights.push((now + Duration::from_millis(1), *from, t));
                }
                events.extend(std::iter::from_fn(|| ep.poll_event()));
                if ep.poll_timeout().is_some_and(|(at, _)| at <= now) {
                    ep.handle_timeout(now);
                }
            }
        }
        self.now = end;
    }

    fn connected(&self, i: usize) -> usize {
        self.nodes[i]
            .2
            .iter()
            .filter(|e| matches!(e, Event::Connected { .. }))
            .count()
    }
}

#[test]
fn sessions_beyond_the_cap_are_refused_and_counted() {
    let mut link = Link::new(super::origin());
    let mut config = Config::new(key(1));
    config.session.max_sessions = 2;
    let target = link.add("10.0.0.1:7000", config);
    let target_key = key(1).public_key();
    let target_addr = link.addr(target);
    for n in 0..3u8 {
        let i = link.add(&format!("10.0.0.{}:7000", n + 2), Config::new(key(10 + n)));
        link.nodes[i]
            .1
            .connect(link.now, target_key, target_addr)
            .expect("connect");
        link.run(Duration::from_secs(2));
    }
    assert_eq!(link.connected(target), 2);
    let stats = link.nodes[target].1.stats();
    assert!(stats.dropped_session_limit >= 1, "{stats:?}");
    assert_eq!(link.nodes[target].1.session_count(), 2);
}

#[test]
fn one_flooding_source_gets_cookies_while_another_is_answered() {
    let mut link = Link::new(super::origin());
    let mut config = Config::new(key(1));
    config.session.handshake_load_per_source = 3;
    let target = link.add("10.0.0.1:7000", config);
    let target_key = key(1).public_key();
    let target_addr = link.addr(target);
    // Ten peers behind one address (a NAT), all at once: past three, cookies.
    let flood: Vec<usize> = (0..10u8)
        .map(|n| {
            link.add(
                &format!("198.51.100.7:{}", 4000 + u16::from(n)),
                Config::new(key(20 + n)),
            )
        })
        .collect();
    for &i in &flood {
        link.nodes[i]
            .1
            .connect(link.now, target_key, target_addr)
            .expect("connect");
    }
    let calm = link.add("203.0.113.5:4000", Config::new(key(40)));
    link.nodes[calm]
        .1
        .connect(link.now, target_key, target_addr)
        .expect("connect");
    link.run(Duration::from_millis(100));
    let stats = link.nodes[target].1.stats().clone();
    assert!(stats.cookies_sent >= 7, "{stats:?}");
    assert_eq!(
        link.connected(calm),
        1,
        "the other source was answered at once"
    );
    // Peers that present their cookie get through; everyone is connected in the end.
    link.run(Duration::from_secs(10));
    assert_eq!(link.connected(target), 11);
}

#[test]
fn a_stream_opened_to_the_server_closes_the_session() {
    let mut link = Link::new(super::origin());
    let server = link.add(
        "192.0.2.10:7000",
        Config::server(key(1), ServerConfig::default()),
    );
    let daemon = link.add("10.0.0.2:7000", Config::new(key(2)));
    let (server_key, server_addr) = (key(1).public_key(), link.addr(server));
    let peer = link.nodes[daemon]
        .1
        .connect(link.now, server_key, server_addr)
        .expect("connect");
    link.run(Duration::from_secs(1));
    let now = link.now;
    let ep = &mut link.nodes[daemon].1;
    let stream = ep
        .open_stream(now, peer, &"/anything".parse().expect("name"))
        .expect("open");
    let _ = ep.stream_write(now, peer, stream, &[7u8; 4096]);
    link.run(Duration::from_secs(1));
    assert_eq!(link.nodes[server].1.stats().protocol_violations, 1);
    assert_eq!(link.nodes[server].1.session_count(), 0);
    assert!(
        link.nodes[daemon].2.iter().any(|e| matches!(
            e,
            Event::SessionClosed {
                reason: CloseReason::Peer(crate::wire::control::CloseCode::ProtocolViolation),
                ..
            }
        )),
        "the daemon was told why"
    );
}
