//! The netcheck machine against a model NAT and a two-address server, one test per behaviour.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::wire::stun::StunMessage;

const MAIN: &str = "192.0.2.10:7000";
const OTHER: &str = "192.0.2.11:7001";
const PUBLIC_IP: [u8; 4] = [203, 0, 113, 2];
const LOCAL_IP: [u8; 4] = [10, 0, 0, 2];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A NAT in front of the host, as RFC 4787 describes them.
#[derive(Clone, Copy)]
struct Nat {
    /// One public port per socket for every destination (cone), else one per destination.
    endpoint_independent: bool,
    /// Lets in packets from anyone once a mapping exists (full cone).
    open: bool,
    hairpin: bool,
    /// No translation at all (the host is public).
    none: bool,
    /// A dropped unsolicited packet leaves state that moves the next flow to its sender to
    /// another port (Linux with an accepting input chain).
    clash: bool,
}

const CONE: Nat = Nat {
    endpoint_independent: true,
    open: false,
    hairpin: false,
    none: false,
    clash: false,
};

struct World {
    nat: Nat,
    /// (local port, destination or None for endpoint-independent) -> public port.
    mappings: BTreeMap<(u16, Option<SocketAddr>), u16>,
    /// (public port, remote) pairs the host has sent to.
    sent_to: BTreeSet<(u16, SocketAddr)>,
    /// (public port, remote) pairs a dropped packet left state for (see `Nat::clash`).
    blocked: std::cell::RefCell<BTreeSet<(u16, SocketAddr)>>,
    next_port: u16,
    /// Server addresses that drop everything (a server without a second address, say).
    deaf: BTreeSet<SocketAddr>,
    server_has_other: bool,
    /// Answers from the gateway's port-mapping protocols.
    gateway_speaks: bool,
}

impl World {
    fn new(nat: Nat) -> Self {
        Self {
            nat,
            mappings: BTreeMap::new(),
            sent_to: BTreeSet::new(),
            blocked: Default::default(),
            next_port: 40_000,
            deaf: BTreeSet::new(),
            server_has_other: true,
            gateway_speaks: false,
        }
    }

    fn local(socket: Socket) -> SocketAddr {
        let port = match socket {
            Socket::Discover => 1000,
            Socket::Test => 1001,
            Socket::V6 => 1002,
            Socket::Filter => 1003,
        };
        SocketAddr::from((LOCAL_IP, port))
    }

    fn socket_of(port: u16) -> Socket {
        match port {
            1000 => Socket::Discover,
            1001 => Socket::Test,
            1003 => Socket::Filter,
            _ => Socket::V6,
        }
    }

    /// The public address the host's `socket` uses toward `dst`.
    fn outbound(&mut self, socket: Socket, dst: SocketAddr) -> SocketAddr {
        let local = Self::local(socket);
        if self.nat.none {
            return local;
        }
        let mut key = (
            local.port(),
            (!self.nat.endpoint_independent).then_some(dst),
        );
        if let Some(port) = self.mappings.get(&key) {
            if self.blocked.borrow().contains(&(*port, dst)) {
                // The clash: this flow needs another port.
                key.1 = Some(dst);
            }
        }
        let next = &mut self.next_port;
        let port = *self.mappings.entry(key).or_insert_with(|| {
            *next += 7;
            *next
        });
        let public = SocketAddr::from((PUBLIC_IP, port));
        self.sent_to.insert((port, dst));
        public
    }

    /// The host socket a packet from `from` to our public `to` reaches, if the NAT lets it in.
    fn inbound(&self, from: SocketAddr, to: SocketAddr) -> Option<Socket> {
        if self.nat.none {
            return Some(Self::socket_of(to.port()));
        }
        let ((local, _), _) = self.mappings.iter().find(|(_, p)| **p == to.port())?;
        let allowed = self.nat.open || self.sent_to.contains(&(to.port(), from));
        if !allowed && self.nat.clash {
            self.blocked.borrow_mut().insert((to.port(), from));
        }
        allowed.then(|| Self::socket_of(*local))
    }

    /// The server's (or gateway's) answers to one datagram from public `src`.
    fn serve(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        if self.deaf.contains(&dst) {
            return vec![];
        }
        if dst == addr(MAIN) {
            let req = StunMessage::parse(payload).unwrap();
            let other = self.server_has_other.then(|| addr(OTHER));
            return crate::stun::answer(&req, payload.len(), src, other)
                .map(|r| (dst, r))
                .into_iter()
                .collect();
        }
        if dst == addr(OTHER) && self.server_has_other {
            return answer_alternate(payload, src, addr(OTHER), addr(MAIN))
                .map(|(via, r)| match via {
                    AnswerFrom::Same => (addr(OTHER), r),
                    AnswerFrom::Other => (addr(MAIN), r),
                })
                .into_iter()
                .collect();
        }
        if dst.port() == 5351 && self.gateway_speaks {
            return match payload[0] {
                0 => vec![(dst, vec![0, 128, 0, 0, 0, 0, 0, 1, 203, 0, 113, 2])],
                _ => {
                    let mut r = vec![2, 0x80, 0, 0];
                    r.resize(24, 0);
                    vec![(dst, r)]
                }
            };
        }
        vec![]
    }
}

/// Runs a check to its end through `world`; every datagram takes 5 ms each way.
fn run(world: &mut World, config: NetcheckConfig) -> (Report, Duration) {
    let t0 = crate::tests::origin();
    let mut now = t0;
    let mut check = Netcheck::new(config, now, [7; 32]);
    let mut inbox: Vec<(Instant, Socket, SocketAddr, Vec<u8>)> = Vec::new();
    for _ in 0..10_000 {
        while let Some(t) = check.poll_transmit() {
            let public = world.outbound(t.socket, t.dst);
            if t.dst.ip() == std::net::IpAddr::from(PUBLIC_IP) {
                // Hairpin: to our own public address.
                if world.nat.hairpin {
                    if let Some(s) = world.inbound(public, t.dst) {
                        inbox.push((now + Duration::from_millis(1), s, public, t.payload));
                    }
                }
                continue;
            }
            if world.nat.none && t.dst == World::local(Socket::Test) {
                inbox.push((now, Socket::Test, public, t.payload));
                continue;
            }
            for (from, reply) in world.serve(public, t.dst, &t.payload) {
                if let Some(s) = world.inbound(from, public) {
                    inbox.push((now + Duration::from_millis(10), s, from, reply));
                }
            }
        }
        inbox.sort_by_key(|(at, ..)| *at);
        let next_in = inbox.first().map(|(at, ..)| *at);
        match (next_in, check.poll_timeout()) {
            (None, None) => break,
            (Some(at), timeout) if timeout.is_none_or(|t| at <= t) => {
                let (at, socket, from, bytes) = inbox.remove(0);
                now = at;
                check.handle_input(now, socket, from, &bytes);
            }
            (_, Some(t)) => {
                now = t;
                check.handle_timeout(now);
            }
            (Some(_), None) => unreachable!(),
        }
    }
    assert!(check.is_done(), "the check ends");
    (check.report().clone(), now - t0)
}

fn config() -> NetcheckConfig {
    NetcheckConfig {
        server: addr(MAIN),
        server_v6: None,
        gateway: None,
        test_local: Some(World::local(Socket::Test)),
        upnp: false,
    }
}

#[test]
fn a_cone_nat_that_filters_is_endpoint_independent_and_closed() {
    let (report, took) = run(&mut World::new(CONE), config());
    assert_eq!(report.mapping, Some(Mapping::EndpointIndependent));
    assert_eq!(report.filtering, Some(Filtering::Closed));
    assert_eq!(report.hairpin, Some(false));
    assert_eq!(report.server_other, Some(addr(OTHER)));
    assert_eq!(report.public_v4.map(|a| a.ip()), Some(PUBLIC_IP.into()));
    assert!(!report.no_nat());
    assert!(
        report.verdict().starts_with("cone NAT"),
        "{}",
        report.verdict()
    );
    assert_eq!(report.unsolicited_moves_mapping, Some(false));
    // Two waits that get no answer (filtering, hairpin) and a few round trips.
    assert!(took < 3 * GIVE_UP, "{took:?}");
    let text = report.to_string();
    assert!(
        text.contains("Mapping:      endpoint-independent"),
        "{text}"
    );
    assert!(text.contains("Filtering:    closed"), "{text}");
}

#[test]
fn a_cone_nat_whose_dropped_packets_move_the_next_mapping_says_so() {
    let nat = Nat {
        clash: true,
        ..CONE
    };
    let (report, _) = run(&mut World::new(nat), config());
    // The mapping test's socket never met an unsolicited packet: still a cone.
    assert_eq!(report.mapping, Some(Mapping::EndpointIndependent));
    assert_eq!(report.filtering, Some(Filtering::Closed));
    assert_eq!(report.unsolicited_moves_mapping, Some(true));
    assert!(
        report.verdict().contains("moves a mapping"),
        "{}",
        report.verdict()
    );
    assert!(
        report.to_string().contains("that dropped packet moved"),
        "{report}"
    );
}

#[test]
fn a_symmetric_nat_varies_by_destination() {
    let nat = Nat {
        endpoint_independent: false,
        ..CONE
    };
    let (report, _) = run(&mut World::new(nat), config());
    match report.mapping {
        Some(Mapping::VariesByDestination {
            toward_main,
            toward_other,
        }) => assert_ne!(toward_main, toward_other),
        other => panic!("{other:?}"),
    }
    assert_eq!(report.filtering, Some(Filtering::Closed));
    assert!(
        report.verdict().starts_with("symmetric NAT"),
        "{}",
        report.verdict()
    );
    assert_eq!(report.mapping_name(), "varies-by-destination");
}

#[test]
fn a_full_cone_nat_is_open_and_a_hairpinning_one_says_so() {
    let nat = Nat {
        open: true,
        hairpin: true,
        ..CONE
    };
    let (report, _) = run(&mut World::new(nat), config());
    assert_eq!(report.mapping, Some(Mapping::EndpointIndependent));
    assert_eq!(report.filtering, Some(Filtering::Open));
    assert_eq!(report.hairpin, Some(true));
    assert!(
        report.verdict().starts_with("easy NAT"),
        "{}",
        report.verdict()
    );
}

#[test]
fn no_nat_is_recognised() {
    let nat = Nat {
        none: true,
        open: true,
        ..CONE
    };
    let (report, _) = run(&mut World::new(nat), config());
    assert!(report.no_nat());
    assert_eq!(report.mapping, Some(Mapping::EndpointIndependent));
    assert!(
        report.verdict().starts_with("no NAT"),
        "{}",
        report.verdict()
    );
}

#[test]
fn a_server_without_a_second_address_tests_what_it_can() {
    let mut world = World::new(CONE);
    world.server_has_other = false;
    let (report, _) = run(&mut world, config());
    assert!(report.public_v4.is_some());
    assert_eq!(report.server_other, None);
    assert_eq!(
        (report.mapping, report.filtering, report.hairpin),
        (None, None, None)
    );
    assert!(
        report.verdict().contains("--netcheck-udp"),
        "{}",
        report.verdict()
    );
}

#[test]
fn a_silent_server_gives_up_in_bounded_time_with_the_reason() {
    let mut world = World::new(CONE);
    world.deaf.insert(addr(MAIN));
    let v6 = NetcheckConfig {
        server_v6: Some(addr("[2001:db8::10]:7000")),
        ..config()
    };
    let (report, took) = run(&mut world, v6);
    assert_eq!(report.public_v4, None);
    assert_eq!(report.public_v6, Some(None));
    assert_eq!(took, GIVE_UP);
    assert!(
        report.verdict().starts_with("no UDP answer"),
        "{}",
        report.verdict()
    );
}

#[test]
fn the_gateways_port_mapping_protocols_are_reported() {
    let mut world = World::new(CONE);
    world.gateway_speaks = true;
    let with_gateway = NetcheckConfig {
        gateway: Some("10.0.0.1".parse().unwrap()),
        ..config()
    };
    let (report, _) = run(&mut world, with_gateway.clone());
    assert!(report.port_mapping.nat_pmp && report.port_mapping.pcp);
    assert_eq!(report.port_mapping.upnp, None);
    assert!(
        report.to_string().contains("NAT-PMP yes, PCP yes"),
        "{report}"
    );
    world.gateway_speaks = false;
    let (report, _) = run(&mut World::new(CONE), with_gateway);
    assert!(!report.port_mapping.any());
}

#[test]
fn answers_for_other_sockets_transactions_or_from_elsewhere_are_ignored() {
    let t0 = crate::tests::origin();
    let mut check = Netcheck::new(config(), t0, [1; 32]);
    let first = check.poll_transmit().unwrap();
    let StunMessage::BindingRequest { transaction, .. } =
        StunMessage::parse(&first.payload).unwrap()
    else {
        panic!()
    };
    let answer = |transaction| {
        StunMessage::BindingSuccess {
            transaction,
            mapped: Some(addr("203.0.113.2:1")),
            other: Some(addr(OTHER)),
        }
        .encode()
    };
    // Wrong socket, wrong transaction, wrong source, garbage: nothing changes.
    check.handle_input(t0, Socket::Test, addr(MAIN), &answer(transaction));
    check.handle_input(t0, Socket::Discover, addr(MAIN), &answer([0; 12]));
    check.handle_input(
        t0,
        Socket::Discover,
        addr("192.0.2.99:7000"),
        &answer(transaction),
    );
    check.handle_input(t0, Socket::Discover, addr(MAIN), &[0xff; 40]);
    assert_eq!(check.report().public_v4, None);
    // The real one.
    check.handle_input(t0, Socket::Discover, addr(MAIN), &answer(transaction));
    assert_eq!(check.report().public_v4, Some(addr("203.0.113.2:1")));
    // An OTHER-ADDRESS equal to the main address is not a second address.
    let mut check = Netcheck::new(config(), t0, [2; 32]);
    let first = check.poll_transmit().unwrap();
    let StunMessage::BindingRequest { transaction, .. } =
        StunMessage::parse(&first.payload).unwrap()
    else {
        panic!()
    };
    let same = StunMessage::BindingSuccess {
        transaction,
        mapped: Some(addr("203.0.113.2:1")),
        other: Some(addr(MAIN)),
    }
    .encode();
    check.handle_input(t0, Socket::Discover, addr(MAIN), &same);
    assert_eq!(check.report().server_other, None);
    // A server bound to 0.0.0.0 names its second socket 0.0.0.0:PORT: that port at the
    // address asked.
    let mut check = Netcheck::new(config(), t0, [3; 32]);
    let first = check.poll_transmit().unwrap();
    let StunMessage::BindingRequest { transaction, .. } =
        StunMessage::parse(&first.payload).unwrap()
    else {
        panic!()
    };
    let unspecified = StunMessage::BindingSuccess {
        transaction,
        mapped: Some(addr("203.0.113.2:1")),
        other: Some(addr("0.0.0.0:7001")),
    }
    .encode();
    check.handle_input(t0, Socket::Discover, addr(MAIN), &unspecified);
    assert_eq!(check.report().server_other, Some(addr("192.0.2.10:7001")));
}

#[test]
fn the_alternate_answers_change_requests_from_the_main_socket_within_the_bound() {
    let from = addr("203.0.113.2:40000");
    for change in [false, true] {
        let req = StunMessage::BindingRequest {
            transaction: [5; 12],
            change,
        }
        .encode();
        let (via, reply) = answer_alternate(&req, from, addr(OTHER), addr(MAIN)).unwrap();
        assert_eq!(
            via,
            if change {
                AnswerFrom::Other
            } else {
                AnswerFrom::Same
            }
        );
        assert!(reply.len() <= 3 * req.len());
        let Ok(StunMessage::BindingSuccess { mapped, other, .. }) = StunMessage::parse(&reply)
        else {
            panic!()
        };
        assert_eq!(mapped, Some(from));
        // Sent from the main socket, it names the alternate as the other address.
        assert_eq!(other, Some(if change { addr(OTHER) } else { addr(MAIN) }));
    }
    // Answers are never sent for answers, garbage or non-STUN.
    let success = StunMessage::BindingSuccess {
        transaction: [5; 12],
        mapped: Some(from),
        other: None,
    }
    .encode();
    assert_eq!(
        answer_alternate(&success, from, addr(OTHER), addr(MAIN)),
        None
    );
    assert_eq!(
        answer_alternate(&[0; 64], from, addr(OTHER), addr(MAIN)),
        None
    );
}
