//! The Containment Breach machine's tests: the README's flows, every bound, and random
//! operation sequences.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::waiters::State;
use super::*;
use crate::tests::origin;

const A_IP: &str = "198.51.100.1";
const B_IP: &str = "203.0.113.2";

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

fn request(kind: &str, remote_ip: &str, remote_pp: i64, local_pp: i64) -> Request {
    Request {
        remote_ip: remote_ip.into(),
        remote_peer_port: remote_pp,
        local_peer_port: local_pp,
        connection_type: kind.into(),
    }
}

/// A machine and a clock, with helpers that drain its output.
struct Harness {
    cb: Breach,
    now: Instant,
}

impl Harness {
    fn new(config: BreachConfig) -> Self {
        Self {
            cb: Breach::new(config),
            now: origin(),
        }
    }

    fn try_udp(&mut self, ip: &str, port: u16, peer_port: i64) -> UdpOutcome {
        let out = self.cb.handle_udp(self.now, addr(ip, port), peer_port);
        self.cb.check();
        out
    }

    /// A UDP request that must get its lease.
    fn udp(&mut self, ip: &str, port: u16, peer_port: i64) {
        let out = self.try_udp(ip, port, peer_port);
        assert!(!matches!(out, UdpOutcome::Refused(_)), "{out:?}");
    }

    fn connect(&mut self, ip: &str) -> ConnId {
        let id = self
            .cb
            .handle_connect(self.now, addr(ip, 50000))
            .expect("admitted");
        self.cb.check();
        id
    }

    fn send(&mut self, conn: ConnId, req: Request) {
        self.cb.handle_request(self.now, conn, &req);
        self.cb.check();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.cb.handle_timeout(self.now);
        self.cb.check();
        if let Some(at) = self.cb.poll_timeout() {
            assert!(
                at > self.now,
                "a deadline at or before now after handle_timeout"
            );
        }
    }

    /// Everything queued: responses per connection, and the closed connections.
    fn drain(&mut self) -> (BTreeMap<ConnId, Vec<Response>>, BTreeSet<ConnId>) {
        let mut responses = BTreeMap::<ConnId, Vec<Response>>::new();
        let mut closed = BTreeSet::new();
        while let Some(out) = self.cb.poll_output() {
            match out {
                Output::Respond { conn, response } => {
                    assert!(!closed.contains(&conn), "a response after Close");
                    responses.entry(conn).or_default().push(response);
                }
                Output::Close { conn } => assert!(closed.insert(conn), "closed twice"),
            }
        }
        (responses, closed)
    }

    /// The one response to `conn` in the queue (drains it).
    fn only_response(&mut self, conn: ConnId) -> Response {
        let (mut responses, _) = self.drain();
        let mut r = responses.remove(&conn).expect("a response");
        assert_eq!(r.len(), 1);
        r.remove(0)
    }
}

#[test]
fn peers_meet_in_either_order() {
    for a_first in [true, false] {
        let mut h = Harness::new(BreachConfig::default());
        let (a, b);
        if a_first {
            h.udp(A_IP, 4001, 7);
            a = h.connect(A_IP);
            h.send(a, request("Peer", B_IP, 9, 7));
            assert!(h.drain().0.is_empty(), "the first peer waits");
            h.udp(B_IP, 5002, 9);
            b = h.connect(B_IP);
            h.send(b, request("Peer", A_IP, 7, 9));
        } else {
            h.udp(B_IP, 5002, 9);
            h.udp(A_IP, 4001, 7);
            b = h.connect(B_IP);
            a = h.connect(A_IP);
            h.send(b, request("Peer", A_IP, 7, 9));
            assert!(h.drain().0.is_empty(), "the first peer waits");
            h.send(a, request("Peer", B_IP, 9, 7));
        }
        let (responses, closed) = h.drain();
        assert_eq!(
            responses[&a],
            vec![Response::meet(addr(A_IP, 4001), addr(B_IP, 5002))]
        );
        assert_eq!(
            responses[&b],
            vec![Response::meet(addr(B_IP, 5002), addr(A_IP, 4001))]
        );
        assert_eq!(closed, BTreeSet::from([a, b]));
        assert_eq!(h.cb.connections(), 0);
        assert_eq!(h.cb.waiters(), 0);
    }
}

#[test]
fn peers_behind_one_ip_are_told_apart_by_peer_port() {
    let mut h = Harness::new(BreachConfig::default());
    h.udp(A_IP, 4001, 1);
    h.udp(A_IP, 4002, 2);
    let (x, y) = (h.connect(A_IP), h.connect(A_IP));
    h.send(x, request("Peer", A_IP, 2, 1));
    h.send(y, request("Peer", A_IP, 1, 2));
    let (r, _) = h.drain();
    assert_eq!(r[&x][0], Response::meet(addr(A_IP, 4001), addr(A_IP, 4002)));
    assert_eq!(r[&y][0], Response::meet(addr(A_IP, 4002), addr(A_IP, 4001)));
}

#[test]
fn a_request_before_its_udp_packet_waits_for_it_then_times_out() {
    let mut h = Harness::new(BreachConfig::default());
    let a = h.connect(A_IP);
    h.send(a, request("Server", "", 0, 7));
    assert!(matches!(h.cb.state(a), Some(State::AwaitingUdp { .. })));
    h.advance(Duration::from_secs(1));
    h.udp(A_IP, 4001, 7);
    assert_eq!(
        h.cb.state(a),
        Some(State::Server {
            local: (A_IP.parse().unwrap(), 7)
        })
    );
    // Without the datagram: an error once the grace is over.
    let b = h.connect(B_IP);
    h.send(b, request("Peer", A_IP, 7, 9));
    h.advance(Duration::from_millis(1999));
    assert!(h.drain().0.is_empty());
    h.advance(Duration::from_millis(1));
    let r = h.only_response(b);
    assert!(
        r.error
            .contains("no lease for peer port 9 from 203.0.113.2"),
        "{r:?}"
    );
    assert_eq!(h.cb.connections(), 1);
}

#[test]
fn a_server_hears_of_each_client_and_stays() {
    let mut h = Harness::new(BreachConfig::default());
    h.udp(A_IP, 4001, 80);
    let server = h.connect(A_IP);
    h.send(server, request("Server", "", 0, 80));
    assert!(h.drain().0.is_empty(), "registration is silent");
    for (i, client_port) in [(1, 6001), (2, 6002)] {
        h.udp(B_IP, client_port, i);
        let client = h.connect(B_IP);
        h.send(client, request("Client", A_IP, 80, i));
        let (r, closed) = h.drain();
        assert_eq!(
            r[&client],
            vec![Response::meet(addr(B_IP, client_port), addr(A_IP, 4001))]
        );
        assert_eq!(
            r[&server],
            vec![Response::meet(addr(A_IP, 4001), addr(B_IP, client_port))]
        );
        assert_eq!(
            closed,
            BTreeSet::from([client]),
            "the server's connection stays"
        );
    }
    assert_eq!(h.cb.connections(), 1);
}

#[test]
fn a_client_of_an_unknown_server_gets_an_error_at_once() {
    let mut h = Harness::new(BreachConfig::default());
    // Even before its own UDP packet: the server is unknown either way.
    let c = h.connect(B_IP);
    h.send(c, request("Client", A_IP, 80, 1));
    let (r, closed) = h.drain();
    assert!(r[&c][0].error.contains("no Server registered"), "{r:?}");
    assert_eq!(r[&c][0].source_port, 0);
    assert!(closed.contains(&c));
    // A server that closed its connection is unknown again.
    h.udp(A_IP, 4001, 80);
    let s = h.connect(A_IP);
    h.send(s, request("Server", "", 0, 80));
    h.cb.handle_closed(h.now, s);
    h.udp(B_IP, 6001, 1);
    let c = h.connect(B_IP);
    h.send(c, request("Client", A_IP, 80, 1));
    assert!(h.only_response(c).error.contains("no Server registered"));
}

#[test]
fn waiters_get_a_timeout_error_when_their_lease_expires() {
    let mut h = Harness::new(BreachConfig {
        lease_timeout: Duration::from_secs(3),
        ..BreachConfig::default()
    });
    h.udp(A_IP, 4001, 7);
    let peer = h.connect(A_IP);
    h.send(peer, request("Peer", B_IP, 9, 7));
    h.udp(A_IP, 4002, 80);
    let server = h.connect(A_IP);
    h.send(server, request("Server", "", 0, 80));
    // A UDP renewal moves the peer's lease; KeepAlive moves the server's.
    h.advance(Duration::from_secs(2));
    h.udp(A_IP, 4001, 7);
    h.send(server, request("KeepAlive", "", 0, 80));
    h.advance(Duration::from_millis(2999));
    assert!(h.drain().0.is_empty());
    assert_eq!(h.cb.waiters(), 2);
    h.advance(Duration::from_millis(1));
    let (r, closed) = h.drain();
    for conn in [peer, server] {
        assert!(r[&conn][0].error.starts_with("timeout"), "{r:?}");
        assert!(closed.contains(&conn));
    }
    assert_eq!(h.cb.leases(), 0);
    assert_eq!(h.cb.stats().leases_expired, 2);
}

#[test]
fn keepalive_only_on_a_servers_connection() {
    let mut h = Harness::new(BreachConfig::default());
    h.udp(A_IP, 4001, 80);
    let c = h.connect(A_IP);
    h.send(c, request("KeepAlive", "", 0, 80));
    assert!(h.only_response(c).error.contains("KeepAlive"));
    let s = h.connect(A_IP);
    h.send(s, request("Server", "", 0, 80));
    h.send(s, request("Peer", B_IP, 1, 80));
    assert!(h.only_response(s).error.contains("only KeepAlive"));
}

#[test]
fn bad_requests_get_an_error_and_close() {
    let mut h = Harness::new(BreachConfig::default());
    h.udp(A_IP, 4001, 7);
    let cases: [(Request, &str); 4] = [
        (request("Relay", B_IP, 1, 7), "unknown ConnectionType"),
        (request("Peer", "not-an-ip", 1, 7), "not an IP address"),
        (request("Client", "", 1, 7), "not an IP address"),
        (request("Peer", A_IP, 7, 7), "itself"),
    ];
    for (req, needle) in cases {
        let c = h.connect(A_IP);
        h.send(c, req);
        let (r, closed) = h.drain();
        assert!(r[&c][0].error.contains(needle), "{needle}: {r:?}");
        assert!(closed.contains(&c));
    }
    let c = h.connect(A_IP);
    h.cb.handle_malformed(h.now, c, Malformed::TooLong);
    assert!(h.only_response(c).error.contains("longer than 1024"));
    let c = h.connect(A_IP);
    h.cb.handle_malformed(h.now, c, Malformed::Invalid("expected value".into()));
    assert!(h.only_response(c).error.contains("malformed request"));
    assert_eq!(h.cb.connections(), 0);
    assert_eq!(h.cb.stats().malformed, 2);
}

#[test]
fn a_waiting_connection_takes_no_second_request() {
    let mut h = Harness::new(BreachConfig::default());
    h.udp(A_IP, 4001, 7);
    let c = h.connect(A_IP);
    h.send(c, request("Peer", B_IP, 9, 7));
    h.send(c, request("Peer", B_IP, 9, 7));
    assert!(
        h.only_response(c)
            .error
            .contains("one request per connection")
    );
    assert_eq!(h.cb.waiters(), 0);
}

#[test]
fn a_newer_registration_replaces_the_older() {
    let mut h = Harness::new(BreachConfig::default());
    h.udp(A_IP, 4001, 80);
    let old = h.connect(A_IP);
    h.send(old, request("Server", "", 0, 80));
    let new = h.connect(A_IP);
    h.send(new, request("Server", "", 0, 80));
    assert!(h.only_response(old).error.contains("replaced"));
    let p1 = h.connect(A_IP);
    h.send(p1, request("Peer", B_IP, 9, 80));
    let p2 = h.connect(A_IP);
    h.send(p2, request("Peer", B_IP, 9, 80));
    assert!(h.only_response(p1).error.contains("replaced"));
    assert_eq!(h.cb.waiters(), 2);
}

#[test]
fn ipv4_mapped_addresses_are_the_same_peer() {
    let mut h = Harness::new(BreachConfig::default());
    let _ =
        h.cb.handle_udp(h.now, "[::ffff:198.51.100.1]:4001".parse().unwrap(), 7);
    let a = h.connect(A_IP);
    h.send(a, request("Peer", "::ffff:203.0.113.2", 9, 7));
    h.udp(B_IP, 5002, 9);
    let b =
        h.cb.handle_connect(h.now, "[::ffff:203.0.113.2]:1".parse().unwrap())
            .unwrap();
    h.send(b, request("Peer", A_IP, 7, 9));
    let (r, _) = h.drain();
    assert_eq!(r[&a][0], Response::meet(addr(A_IP, 4001), addr(B_IP, 5002)));
    assert_eq!(r[&b][0].source_ip, B_IP);
}

// Bounds: each one pushed past its limit.

#[test]
fn leases_are_bounded_in_total_and_per_ip() {
    let mut h = Harness::new(BreachConfig {
        max_leases: 5,
        max_leases_per_ip: 3,
        ..BreachConfig::default()
    });
    for pp in 0..3 {
        assert_eq!(h.try_udp(A_IP, 4000, pp), UdpOutcome::Leased);
    }
    assert_eq!(
        h.try_udp(A_IP, 4000, 3),
        UdpOutcome::Refused(LeaseRefused::IpFull)
    );
    // Renewing a held lease is never refused.
    assert_eq!(h.try_udp(A_IP, 4009, 0), UdpOutcome::Renewed);
    for pp in 0..2 {
        assert_eq!(h.try_udp(B_IP, 5000, pp), UdpOutcome::Leased);
    }
    assert_eq!(
        h.try_udp("192.0.2.9", 1, 0),
        UdpOutcome::Refused(LeaseRefused::Full)
    );
    assert_eq!(h.cb.leases(), 5);
    assert_eq!(h.cb.stats().leases_refused, 2);
    // Expiry frees them.
    h.advance(Duration::from_secs(90));
    assert_eq!(h.cb.leases(), 0);
    assert_eq!(h.try_udp("192.0.2.9", 1, 0), UdpOutcome::Leased);
}

#[test]
fn connections_are_bounded_in_total_and_per_ip() {
    let mut h = Harness::new(BreachConfig {
        max_connections: 5,
        max_connections_per_ip: 3,
        ..BreachConfig::default()
    });
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(h.connect(A_IP));
    }
    assert_eq!(
        h.cb.handle_connect(h.now, addr(A_IP, 1)),
        Err(ConnectRefused::IpFull)
    );
    h.connect(B_IP);
    h.connect(B_IP);
    assert_eq!(
        h.cb.handle_connect(h.now, addr("192.0.2.9", 1)),
        Err(ConnectRefused::Full)
    );
    assert_eq!(h.cb.stats().connections_refused, 2);
    h.cb.handle_closed(h.now, a[0]);
    h.connect(A_IP);
}

#[test]
fn a_connection_that_sends_nothing_is_closed() {
    let mut h = Harness::new(BreachConfig::default());
    let c = h.connect(A_IP);
    h.advance(Duration::from_millis(9999));
    assert!(h.drain().1.is_empty());
    h.advance(Duration::from_millis(1));
    assert!(h.only_response(c).error.contains("no request within"));
    assert_eq!(h.cb.connections(), 0);
    assert_eq!(h.cb.poll_timeout(), None);
}

#[test]
fn waiters_are_bounded() {
    let mut h = Harness::new(BreachConfig {
        max_waiters: 3,
        ..BreachConfig::default()
    });
    for pp in 0..2 {
        h.udp(A_IP, 4000, pp);
        let c = h.connect(A_IP);
        h.send(c, request("Peer", B_IP, 1, pp));
    }
    // A third waits for its UDP packet: that is a waiter too.
    let awaiting = h.connect(A_IP);
    h.send(awaiting, request("Server", "", 0, 50));
    for req in [request("Peer", B_IP, 1, 51), request("Server", "", 0, 52)] {
        h.udp(A_IP, 4000, req.local_peer_port);
        let c = h.connect(A_IP);
        h.send(c, req);
        assert!(h.only_response(c).error.contains("too many waiting"));
    }
    assert_eq!(h.cb.waiters(), 3);
    // The one waiting for UDP keeps its slot when the packet comes.
    h.udp(A_IP, 4000, 50);
    assert!(h.drain().0.is_empty());
    assert!(matches!(h.cb.state(awaiting), Some(State::Server { .. })));
    // A meeting still works when full: it frees a slot.
    h.udp(B_IP, 5000, 1);
    let b = h.connect(B_IP);
    h.send(b, request("Peer", A_IP, 0, 1));
    assert!(!h.only_response(b).is_error());
    assert_eq!(h.cb.waiters(), 2);
}

// Random operation sequences.

#[derive(Clone, Debug)]
enum Op {
    Udp {
        ip: u8,
        port: u16,
        pp: i64,
    },
    Connect {
        ip: u8,
    },
    Request {
        conn: usize,
        kind: u8,
        remote_ip: u8,
        remote_pp: i64,
        local_pp: i64,
    },
    Malformed {
        conn: usize,
    },
    Close {
        conn: usize,
    },
    Advance {
        ms: u64,
    },
}

const IPS: [&str; 3] = [A_IP, B_IP, "::ffff:198.51.100.1"];
const KINDS: [&str; 5] = ["Peer", "Client", "Server", "KeepAlive", "bogus"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3u8, 1..4u16, 0..3i64).prop_map(|(ip, port, pp)| Op::Udp { ip, port, pp }),
        3 => (0..3u8).prop_map(|ip| Op::Connect { ip }),
        5 => (0..16usize, 0..5u8, 0..3u8, 0..3i64, 0..3i64).prop_map(
            |(conn, kind, remote_ip, remote_pp, local_pp)| Op::Request {
                conn, kind, remote_ip, remote_pp, local_pp
            }
        ),
        1 => (0..16usize).prop_map(|conn| Op::Malformed { conn }),
        1 => (0..16usize).prop_map(|conn| Op::Close { conn }),
        2 => (0..20_000u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

proptest! {
    #[test]
    fn random_operations_keep_every_bound_and_answer_every_waiter(
        ops in proptest::collection::vec(op(), 1..120)
    ) {
        let config = BreachConfig {
            lease_timeout: Duration::from_secs(30),
            max_leases: 5,
            max_leases_per_ip: 3,
            max_connections: 6,
            max_connections_per_ip: 4,
            max_waiters: 4,
            request_timeout: Duration::from_secs(10),
            udp_grace: Duration::from_secs(2),
        };
        let mut h = Harness::new(config.clone());
        // Every id ever accepted, and the ones the core still holds open.
        let mut accepted: Vec<ConnId> = Vec::new();
        let mut open = BTreeSet::new();
        let mut answered = BTreeSet::new();
        let mut hung_up = BTreeSet::new();
        let ip = |i: u8| -> IpAddr { IPS[usize::from(i)].parse().unwrap() };
        for op in ops {
            match op {
                Op::Udp { ip: i, port, pp } => {
                    let _ = h.cb.handle_udp(h.now, SocketAddr::new(ip(i), port), pp);
                }
                Op::Connect { ip: i } => {
                    if let Ok(id) = h.cb.handle_connect(h.now, SocketAddr::new(ip(i), 9)) {
                        prop_assert!(open.insert(id));
                        accepted.push(id);
                    }
                }
                Op::Request { conn, kind, remote_ip, remote_pp, local_pp } => {
                    if let Some(&id) = accepted.get(conn) {
                        let req = request(
                            KINDS[usize::from(kind)],
                            IPS[usize::from(remote_ip)],
                            remote_pp,
                            local_pp,
                        );
                        h.cb.handle_request(h.now, id, &req);
                    }
                }
                Op::Malformed { conn } => {
                    if let Some(&id) = accepted.get(conn) {
                        h.cb.handle_malformed(h.now, id, Malformed::TooLong);
                    }
                }
                Op::Close { conn } => {
                    if let Some(&id) = accepted.get(conn) {
                        h.cb.handle_closed(h.now, id);
                        if open.remove(&id) {
                            hung_up.insert(id);
                        }
                    }
                }
                Op::Advance { ms } => {
                    h.now += Duration::from_millis(ms);
                    h.cb.handle_timeout(h.now);
                }
            }
            h.cb.check();
            let (responses, closed) = h.drain();
            for conn in responses.keys() {
                prop_assert!(open.contains(conn), "a response to a connection not open");
            }
            answered.extend(responses.keys().copied());
            for conn in &closed {
                prop_assert!(open.remove(conn), "closed a connection not open");
                prop_assert!(answered.contains(conn), "closed without a response");
            }
            prop_assert_eq!(open.len(), h.cb.connections());
            // Time moves only in `Advance`, which fires the timers: no deadline is ever due.
            if let Some(at) = h.cb.poll_timeout() {
                prop_assert!(at > h.now, "a deadline at or before now");
            }
        }
        // Without more UDP, every lease and so every waiter ends; each got an answer.
        h.now += config.lease_timeout + config.request_timeout + config.udp_grace;
        h.cb.handle_timeout(h.now);
        h.cb.check();
        let (responses, closed) = h.drain();
        answered.extend(responses.keys().copied());
        for conn in &closed {
            prop_assert!(open.remove(conn));
        }
        prop_assert!(open.is_empty(), "connections left open: {open:?}");
        prop_assert_eq!(h.cb.connections(), 0);
        prop_assert_eq!(h.cb.leases(), 0);
        prop_assert_eq!(h.cb.poll_timeout(), None);
        for id in accepted {
            prop_assert!(answered.contains(&id) || hung_up.contains(&id), "{id} never answered");
        }
    }
}
