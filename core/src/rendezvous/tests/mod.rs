//! One [`Server`] and several [`Client`]s on the test network ([`crate::tests::net`]), with
//! seeded loss and duplication. Every message goes through its encoding, as it would on the
//! wire.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::messages::{ErrorCode, PunchRole};
use super::*;
use crate::crypto::PublicKey;
use crate::tests::net::{Link, Machine, Net};
use crate::transmit::Transmit;

const LATENCY: Duration = Duration::from_millis(20);
const LEASE: Duration = Duration::from_secs(90);

/// What a party tells its application.
#[derive(Clone, Debug)]
enum Said {
    Client(ClientEvent),
    Server(ServerEvent),
}

/// The server or one client on the test network. Every message is encoded behind the
/// sender's key (standing in for the session that authenticates it), as it would be on the
/// wire.
enum Party {
    Server {
        server: Server,
        /// Where each client is now.
        directory: BTreeMap<PublicKey, SocketAddr>,
        /// Clients whose session to the server is down: messages from them are lost.
        offline: BTreeSet<PublicKey>,
    },
    Client {
        key: PublicKey,
        client: Client,
        server: SocketAddr,
        /// Whether the session to the server is up; messages to or from it are lost if not.
        online: bool,
    },
}

impl Machine for Party {
    type Event = (Instant, Said);

    fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        match self {
            Party::Server {
                server, offline, ..
            } => {
                let key = PublicKey::from_bytes(bytes[..32].try_into().unwrap());
                if !offline.contains(&key) {
                    let msg = ClientMessage::decode(&bytes[32..]).unwrap();
                    server.handle_message(now, key, from, msg, None);
                }
            }
            Party::Client { client, online, .. } => {
                if *online {
                    client.handle_message(now, ServerMessage::decode(bytes).unwrap());
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Party::Server { server, .. } => server.handle_timeout(now),
            Party::Client { client, .. } => client.handle_timeout(now),
        }
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        match self {
            Party::Server {
                server, directory, ..
            } => {
                let (to, msg) = server.poll_message()?;
                Some(Transmit {
                    segment_size: None,
                    dst: directory[&to],
                    ttl: None,
                    payload: msg.encode().into(),
                })
            }
            Party::Client {
                key,
                client,
                server,
                online,
            } => {
                while let Some(msg) = client.poll_message() {
                    if *online {
                        let mut payload = key.as_bytes().to_vec();
                        payload.extend_from_slice(&msg.encode());
                        return Some(Transmit {
                            segment_size: None,
                            dst: *server,
                            ttl: None,
                            payload: payload.into(),
                        });
                    }
                }
                None
            }
        }
    }

    fn poll_event(&mut self, now: Instant) -> Option<(Instant, Said)> {
        match self {
            Party::Server { server, .. } => server.poll_event().map(|e| (now, Said::Server(e))),
            Party::Client { client, .. } => client.poll_event().map(|e| (now, Said::Client(e))),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Party::Server { server, .. } => server.poll_timeout(),
            Party::Client { client, .. } => client.poll_timeout(),
        }
    }
}

/// The server (host 0) and clients (client `i` is host `i + 1`).
struct Harness {
    net: Net<Party>,
}

impl Deref for Harness {
    type Target = Net<Party>;

    fn deref(&self) -> &Net<Party> {
        &self.net
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Net<Party> {
        &mut self.net
    }
}

fn key(i: usize) -> PublicKey {
    PublicKey::from_bytes([i as u8 + 1; 32])
}

fn name(text: &str) -> ServiceName {
    text.parse().unwrap()
}

fn lan(i: usize) -> SocketAddr {
    (Ipv4Addr::new(192, 168, 1, i as u8 + 10), 7000).into()
}

fn server_addr() -> SocketAddr {
    (Ipv4Addr::new(198, 51, 100, 1), 3478).into()
}

impl Harness {
    fn new(config: ServerConfig) -> Self {
        let origin = crate::tests::origin();
        let mut net = Net::new(origin, Link::clean(LATENCY), 7);
        let server = Party::Server {
            server: Server::new(config, origin, [7; 32]),
            directory: BTreeMap::new(),
            offline: BTreeSet::new(),
        };
        net.add(server, server_addr());
        Self { net }
    }

    /// Seeded loss and duplication, per 1000 messages.
    fn impair(&mut self, seed: u8, loss: u32, dup: u32) {
        self.link.loss_ppm = loss * 1000;
        self.link.dup_ppm = dup * 1000;
        self.reseed(u64::from(seed));
    }

    /// Adds a started daemon with the token "t", `services` and one LAN candidate.
    fn add(&mut self, services: &[&str]) -> usize {
        let mut config = ClientConfig::new("t");
        config.services = services.iter().map(|s| name(s)).collect();
        self.add_with(config)
    }

    fn add_with(&mut self, mut config: ClientConfig) -> usize {
        let i = self.hosts.len() - 1;
        config.host_candidates.push(lan(i));
        let client = Client::new(config, 1000 * i as u64, self.now).unwrap();
        let addr: SocketAddr = (Ipv4Addr::new(203, 0, 113, i as u8 + 1), 4000 + i as u16).into();
        let party = Party::Client {
            key: key(i),
            client,
            server: server_addr(),
            online: true,
        };
        self.net.add(party, addr);
        self.directory().insert(key(i), addr);
        self.with(i, |c, now| c.start(now));
        i
    }

    fn directory(&mut self) -> &mut BTreeMap<PublicKey, SocketAddr> {
        match &mut self.hosts[0].m {
            Party::Server { directory, .. } => directory,
            Party::Client { .. } => unreachable!("host 0 is the server"),
        }
    }

    fn server(&self) -> &Server {
        match &self.hosts[0].m {
            Party::Server { server, .. } => server,
            Party::Client { .. } => unreachable!("host 0 is the server"),
        }
    }

    fn server_mut(&mut self) -> &mut Server {
        match &mut self.hosts[0].m {
            Party::Server { server, .. } => server,
            Party::Client { .. } => unreachable!("host 0 is the server"),
        }
    }

    /// The server restarts with no state.
    fn restart_server(&mut self) {
        let now = self.now;
        if let Party::Server { server, .. } = &mut self.hosts[0].m {
            *server = Server::new(ServerConfig::default(), now, [7; 32]);
        }
    }

    fn client(&self, i: usize) -> &Client {
        match &self.hosts[i + 1].m {
            Party::Client { client, .. } => client,
            Party::Server { .. } => unreachable!("clients are hosts 1.."),
        }
    }

    /// Client `i`'s public address.
    fn addr(&self, i: usize) -> SocketAddr {
        self.hosts[i + 1].addr
    }

    /// Client `i`'s NAT maps it to `addr` from now on.
    fn move_to(&mut self, i: usize, addr: SocketAddr) {
        self.hosts[i + 1].addr = addr;
        self.directory().insert(key(i), addr);
    }

    /// Runs a command on client `i` at the current time, then drains.
    fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Client, Instant) -> R) -> R {
        self.net.with(i + 1, |party, now| match party {
            Party::Client { client, .. } => f(client, now),
            Party::Server { .. } => unreachable!("clients are hosts 1.."),
        })
    }

    /// Runs the network for `d` of virtual time.
    fn run(&mut self, d: Duration) {
        self.run_for(d);
    }

    fn client_events(&self, i: usize) -> Vec<(Instant, ClientEvent)> {
        self.hosts[i + 1]
            .events
            .iter()
            .filter_map(|(at, e)| match e {
                Said::Client(e) => Some((*at, e.clone())),
                Said::Server(_) => None,
            })
            .collect()
    }

    fn server_events(&self) -> Vec<(Instant, ServerEvent)> {
        self.hosts[0]
            .events
            .iter()
            .filter_map(|(at, e)| match e {
                Said::Server(e) => Some((*at, e.clone())),
                Said::Client(_) => None,
            })
            .collect()
    }

    fn events(&self, i: usize) -> Vec<ClientEvent> {
        self.client_events(i).into_iter().map(|(_, e)| e).collect()
    }

    fn introductions(&self, i: usize) -> Vec<ClientEvent> {
        self.events(i)
            .into_iter()
            .filter(|e| matches!(e, ClientEvent::Introduced { .. }))
            .collect()
    }

    fn failures(&self, i: usize) -> Vec<(Duration, u64, ErrorCode)> {
        self.client_events(i)
            .into_iter()
            .filter_map(|(at, e)| match e {
                ClientEvent::RequestFailed { request, code, .. } => {
                    Some((at - self.origin, request, code))
                }
                _ => None,
            })
            .collect()
    }

    fn count_server(&self, f: impl Fn(&ServerEvent) -> bool) -> usize {
        self.server_events().iter().filter(|(_, e)| f(e)).count()
    }

    fn set_online(&mut self, i: usize, online: bool) {
        if let Party::Client { online: o, .. } = &mut self.hosts[i + 1].m {
            *o = online;
        }
        if let Party::Server { offline, .. } = &mut self.hosts[0].m {
            if online {
                offline.remove(&key(i));
            } else {
                offline.insert(key(i));
            }
        }
        if online {
            self.with(i, |c, now| c.start(now));
        } else {
            self.with(i, |c, now| c.session_lost(now));
        }
    }
}

fn introduced(
    e: &ClientEvent,
) -> (
    Option<u64>,
    PublicKey,
    Option<ServiceName>,
    Vec<SocketAddr>,
    PunchRole,
) {
    match e {
        ClientEvent::Introduced {
            request,
            peer,
            service,
            candidates,
            role,
            ..
        } => (*request, *peer, service.clone(), candidates.clone(), *role),
        other => panic!("not an introduction: {other:?}"),
    }
}

#[test]
fn register_reports_the_reflexive_address() {
    let mut h = Harness::new(ServerConfig::default());
    let a = h.add(&["/toronto/mysql"]);
    h.run(Duration::from_secs(1));
    assert_eq!(
        h.events(a),
        [ClientEvent::Registered {
            reflexive: h.addr(a),
            lease: LEASE
        }]
    );
    assert_eq!(h.client(a).reflexive(), Some(h.addr(a)));
    let reg = h.server().registration(&key(a)).unwrap();
    assert_eq!(reg.services(), [name("/toronto/mysql")]);
    assert_eq!(reg.host_candidates(), [lan(a)]);
    assert_eq!(h.server().registrations().count(), 1);
}

#[test]
fn renewals_keep_a_registration_for_ten_minutes() {
    let mut h = Harness::new(ServerConfig::default());
    let a = h.add(&["/a"]);
    h.run(Duration::from_secs(600));
    assert!(h.server().registration(&key(a)).is_some());
    assert!(h.client(a).is_registered());
    assert_eq!(
        h.count_server(|e| matches!(e, ServerEvent::Expired { .. })),
        0
    );
    assert_eq!(h.events(a).len(), 1, "{:?}", h.events(a));
}

#[test]
fn a_silent_daemon_expires_at_the_lease_and_its_waiter_fails() {
    let mut h = Harness::new(ServerConfig::default());
    let a = h.add(&[]);
    let b = h.add(&["/b"]);
    h.run(Duration::from_secs(50));
    // b renewed at ~30 s; its lease ends at ~120 s.
    let b_expires = h.server().registration(&key(b)).unwrap().expires() - h.origin;
    assert!(b_expires > Duration::from_secs(119) && b_expires < Duration::from_secs(121));
    h.set_online(b, false);
    let request = h.with(a, |c, now| c.connect_peer(now, key(b)));
    h.run(Duration::from_secs(100));
    let failures = h.failures(a);
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (at, r, code) = failures[0];
    assert_eq!((r, code), (request, ErrorCode::LeaseExpired));
    assert!(
        at >= b_expires && at < b_expires + Duration::from_secs(1),
        "{at:?}"
    );
    let expired: Vec<_> = h
        .server_events()
        .iter()
        .filter(|(_, e)| *e == ServerEvent::Expired { key: key(b) })
        .map(|(t, _)| *t - h.origin)
        .collect();
    assert_eq!(expired, [b_expires]);
    assert!(h.server().registration(&key(b)).is_none());
    // b's name is free again.
    let c = h.add(&["/b"]);
    h.run(Duration::from_secs(1));
    assert!(h.client(c).is_registered());
}

#[test]
fn an_unknown_service_fails_at_once() {
    let mut h = Harness::new(ServerConfig::default());
    let a = h.add(&[]);
    h.run(Duration::from_secs(1));
    let request = h.with(a, |c, now| c.lookup(now, name("/nope")));
    h.run(Duration::from_millis(100));
    assert_eq!(
        h.failures(a),
        [(
            Duration::from_millis(1040),
            request,
            ErrorCode::UnknownService
        )]
    );
    assert_eq!(h.client(a).pending_requests(), 0);
}

fn limited(tokens: &[(&str, usize, usize)]) -> ServerConfig {
    ServerConfig {
        tokens: TokenPolicy::Only(
            tokens
                .iter()
                .map(|&(t, services, regs)| {
                    let limits = TokenLimits {
                        max_services: services,
                        max_registrations: regs,
                    };
                    (t.to_string(), limits)
                })
                .collect(),
        ),
        ..ServerConfig::default()
    }
}

fn registration_failures(h: &Harness, i: usize) -> Vec<ErrorCode> {
    h.events(i)
        .iter()
        .filter_map(|e| match e {
            ClientEvent::RegistrationFailed { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

#[test]
fn a_wrong_token_is_refused() {
    let mut h = Harness::new(limited(&[("good", 10, 10)]));
    let a = h.add_with(ClientConfig::new("bad"));
    let b = h.add_with(ClientConfig::new("good"));
    h.run(Duration::from_secs(1));
    assert_eq!(registration_failures(&h, a), [ErrorCode::BadToken]);
    assert!(!h.client(a).is_registered());
    assert!(h.client(b).is_registered());
    // A refused client tries again later rather than hammering the server.
    h.run(Duration::from_secs(40));
    assert_eq!(
        registration_failures(&h, a),
        [ErrorCode::BadToken, ErrorCode::BadToken]
    );
}

#[test]
fn token_limits_are_enforced() {
    let mut h = Harness::new(limited(&[("t", 2, 1)]));
    let a = h.add(&["/a", "/b"]);
    let b = h.add(&[]);
    let c = h.add_with({
        let mut config = ClientConfig::new("t");
        config.services = vec![name("/c")];
        config
    });
    h.run(Duration::from_secs(1));
    assert!(h.client(a).is_registered());
    assert_eq!(registration_failures(&h, b), [ErrorCode::TooMany]);
    assert_eq!(registration_failures(&h, c), [ErrorCode::TooMany]);
}

#[test]
fn a_name_held_by_another_key_is_refused() {
    let mut h = Harness::new(ServerConfig::default());
    let a = h.add(&["/toronto/mysql"]);
    h.run(Duration::from_secs(1));
    let b = h.add(&["/toronto/mysql", "/other"]);
    h.run(Duration::from_secs(1));
    assert_eq!(registration_failures(&h, b), [ErrorCode::NameTaken]);
    // Refusal is atomic: /other was not published either.
    let other = h.with(a, |c, now| c.lookup(now, name("/other")));
    h.run(Duration::from_secs(1));
    assert_eq!(h.failures(a)[0].1, other);
    assert_eq!(h.failures(a)[0].2, ErrorCode::UnknownService);
    // The owner itself may register the name again (a re-register).
    h.with(a, |c, now| c.start(now));
    h.run(Duration::from_secs(1));
    assert_eq!(registration_failures(&h, a), []);
}

#[test]
fn client_server_introduction_reaches_both_sides() {
    let mut h = Harness::new(ServerConfig::default());
    let dest = h.add(&["/toronto/mysql"]);
    let src = h.add(&[]);
    h.run(Duration::from_secs(1));
    let request = h.with(src, |c, now| c.lookup(now, name("/toronto/mysql")));
    h.run(Duration::from_secs(1));
    let svc = Some(name("/toronto/mysql"));
    let src_intro = h.introductions(src);
    assert_eq!(src_intro.len(), 1);
    assert_eq!(
        introduced(&src_intro[0]),
        (
            Some(request),
            key(dest),
            svc.clone(),
            vec![h.addr(dest), lan(dest)],
            PunchRole::Initiator
        )
    );
    let dest_intro = h.introductions(dest);
    assert_eq!(dest_intro.len(), 1);
    assert_eq!(
        introduced(&dest_intro[0]),
        (
            None,
            key(src),
            svc,
            vec![h.addr(src), lan(src)],
            PunchRole::Responder
        )
    );
    assert_eq!(h.client(src).pending_requests(), 0);
    // Both acknowledged: the server stops retransmitting.
    assert_eq!(
        h.server().poll_timeout(),
        h.server().registrations().map(|r| r.expires()).min()
    );
}

/// Route policies per service: the server passes the exposing side's to the asker with its
/// introduction (and nothing to the exposing side, which knows it), and refuses a lookup
/// whose own policy shares no path with the service's at once, introducing no one.
#[test]
fn service_routes_reach_the_asker_and_a_conflict_is_refused_at_once() {
    use crate::path::RoutePolicy;
    let mut h = Harness::new(ServerConfig::default());
    let mut config = ClientConfig::new("t");
    config.services = vec![name("/r/relayed"), name("/r/open")];
    config.routes = vec![RoutePolicy::Relay, RoutePolicy::Any];
    let dest = h.add_with(config);
    let src = h.add(&[]);
    h.run(Duration::from_secs(1));
    let route_of = |e: &ClientEvent| match e {
        ClientEvent::Introduced { route, .. } => *route,
        other => panic!("not an introduction: {other:?}"),
    };
    h.with(src, |c, now| {
        c.lookup_with_route(now, name("/r/relayed"), RoutePolicy::Any)
    });
    h.with(src, |c, now| c.lookup(now, name("/r/open")));
    h.run(Duration::from_secs(1));
    let routes: Vec<_> = h.introductions(src).iter().map(route_of).collect();
    assert_eq!(routes, [Some(RoutePolicy::Relay), None]);
    let routes: Vec<_> = h.introductions(dest).iter().map(route_of).collect();
    assert_eq!(routes, [None, None], "the exposing side is told nothing");
    // Direct-only against relay-only: refused at once, nobody introduced.
    let request = h.with(src, |c, now| {
        c.lookup_with_route(now, name("/r/relayed"), RoutePolicy::Direct)
    });
    h.run(Duration::from_secs(1));
    assert_eq!(h.introductions(dest).len(), 2, "no third introduction");
    let failed = h.events(src).into_iter().find_map(|e| match e {
        ClientEvent::RequestFailed {
            request: r,
            code,
            detail,
        } if r == request => Some((code, detail)),
        _ => None,
    });
    assert_eq!(
        failed,
        Some((
            ErrorCode::RouteConflict,
            "/r/relayed is exposed relay-only and this connect is direct-only".to_string()
        ))
    );
    // A direct-only lookup of the any-path service goes through.
    h.with(src, |c, now| {
        c.lookup_with_route(now, name("/r/open"), RoutePolicy::Direct)
    });
    h.run(Duration::from_secs(1));
    assert_eq!(h.introductions(dest).len(), 3);
}

#[test]
fn peer_mode_introduces_when_both_ask_in_either_order() {
    for first_is_a in [true, false] {
        let mut h = Harness::new(ServerConfig::default());
        let a = h.add(&[]);
        let b = h.add(&[]);
        h.run(Duration::from_secs(1));
        let (first, second) = if first_is_a { (a, b) } else { (b, a) };
        let r1 = h.with(first, |c, now| c.connect_peer(now, key(second)));
        h.run(Duration::from_secs(10));
        // Asking again while waiting is the same request.
        assert_eq!(h.with(first, |c, now| c.connect_peer(now, key(second))), r1);
        h.run(Duration::from_secs(10));
        assert_eq!(h.introductions(first), []);
        assert!(h.failures(first).is_empty());
        let r2 = h.with(second, |c, now| c.connect_peer(now, key(first)));
        h.run(Duration::from_secs(1));
        for (me, other, request) in [(first, second, r1), (second, first, r2)] {
            let intro = h.introductions(me);
            assert_eq!(intro.len(), 1, "{first_is_a}");
            let role = if key(me) < key(other) {
                PunchRole::Initiator
            } else {
                PunchRole::Responder
            };
            assert_eq!(
                introduced(&intro[0]),
                (
                    Some(request),
                    key(other),
                    None,
                    vec![h.addr(other), lan(other)],
                    role
                )
            );
        }
        assert_eq!(
            h.count_server(|e| matches!(e, ServerEvent::Introduced { .. })),
            1
        );
    }
}

#[test]
fn peer_mode_times_out_when_only_one_side_asks() {
    let mut h = Harness::new(ServerConfig {
        peer_wait: Duration::from_secs(30),
        ..ServerConfig::default()
    });
    let a = h.add(&[]);
    let b = h.add(&[]);
    h.run(Duration::from_secs(1));
    let request = h.with(a, |c, now| c.connect_peer(now, key(b)));
    h.run(Duration::from_secs(60));
    let failures = h.failures(a);
    assert_eq!(failures.len(), 1);
    let (at, r, code) = failures[0];
    assert_eq!((r, code), (request, ErrorCode::PeerTimeout));
    assert!(
        at >= Duration::from_secs(31) && at < Duration::from_secs(32),
        "{at:?}"
    );
    assert_eq!(h.introductions(b), []);
    // An unregistered peer is waited for too, and times out the same way.
    let c_key = key(9);
    let request = h.with(a, |c, now| c.connect_peer(now, c_key));
    h.run(Duration::from_secs(60));
    assert_eq!(h.failures(a)[1].1, request);
    assert_eq!(h.failures(a)[1].2, ErrorCode::PeerTimeout);
}

#[test]
fn retransmitted_requests_do_not_introduce_twice() {
    let mut h = Harness::new(ServerConfig::default());
    h.impair(3, 0, 1000); // every message arrives twice
    let dest = h.add(&["/svc"]);
    let src = h.add(&[]);
    h.run(Duration::from_secs(1));
    h.with(src, |c, now| c.lookup(now, name("/svc")));
    let p = h.add(&[]);
    h.run(Duration::from_secs(1));
    h.with(p, |c, now| c.connect_peer(now, key(src)));
    h.with(src, |c, now| c.connect_peer(now, key(p)));
    h.run(Duration::from_secs(15));
    assert_eq!(h.introductions(src).len(), 2);
    assert_eq!(h.introductions(dest).len(), 1);
    assert_eq!(h.introductions(p).len(), 1);
    assert_eq!(
        h.count_server(|e| matches!(e, ServerEvent::Introduced { .. })),
        2
    );
}

#[test]
fn the_server_answers_a_duplicate_identically_without_side_effects() {
    let t0 = crate::tests::origin();
    let mut server = Server::new(ServerConfig::default(), t0, [7; 32]);
    let addr: SocketAddr = (Ipv4Addr::LOCALHOST, 1).into();
    for (k, svc) in [(key(0), vec![name("/svc")]), (key(1), vec![])] {
        let msg = ClientMessage::Register {
            request: 1,
            token: "t".into(),
            services: svc,
            host_candidates: vec![],
            path_tokens: vec![],
            routes: vec![],
        };
        server.handle_message(t0, k, addr, msg, None);
    }
    while server.poll_message().is_some() {}
    let lookup = ClientMessage::Lookup {
        route: Default::default(),
        request: 7,
        name: name("/svc"),
    };
    server.handle_message(t0, key(1), addr, lookup.clone(), None);
    let first: Vec<_> = std::iter::from_fn(|| server.poll_message()).collect();
    assert_eq!(first.len(), 2, "one introduction to each side");
    server.handle_message(t0 + Duration::from_millis(1), key(1), addr, lookup, None);
    let again: Vec<_> = std::iter::from_fn(|| server.poll_message()).collect();
    assert_eq!(
        again,
        [first.iter().find(|(k, _)| *k == key(1)).unwrap().clone()]
    );
    // Requests from a key that never registered are refused.
    server.handle_message(t0, key(5), addr, ClientMessage::Renew { request: 3 }, None);
    match server.poll_message() {
        Some((
            k,
            ServerMessage::Error {
                request: 3, code, ..
            },
        )) => {
            assert_eq!((k, code), (key(5), ErrorCode::NotRegistered))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn clients_register_again_after_a_server_restart() {
    let mut h = Harness::new(ServerConfig::default());
    let dest = h.add(&["/svc"]);
    let src = h.add(&[]);
    h.run(Duration::from_secs(5));
    h.restart_server();
    for i in [dest, src] {
        h.set_online(i, false);
        h.set_online(i, true);
    }
    h.run(Duration::from_secs(1));
    assert_eq!(h.server().registrations().count(), 2);
    h.with(src, |c, now| c.lookup(now, name("/svc")));
    h.run(Duration::from_secs(1));
    assert_eq!(h.introductions(src).len(), 1);
    assert_eq!(h.introductions(dest).len(), 1);
}

#[test]
fn a_restart_nobody_noticed_heals_on_the_next_request() {
    let mut h = Harness::new(ServerConfig::default());
    let dest = h.add(&["/svc"]);
    let src = h.add(&[]);
    h.run(Duration::from_secs(5));
    h.restart_server();
    // src's lookup meets NotRegistered, so it registers again and repeats the lookup; dest
    // finds out at its next renewal (30 s) and is then found.
    let r = h.with(src, |c, now| c.lookup(now, name("/svc")));
    h.run(Duration::from_secs(1));
    // Two round trips more than a plain lookup: NotRegistered, then Register/Registered.
    let failures = h.failures(src);
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].1, failures[0].2),
        (r, ErrorCode::UnknownService)
    );
    assert_eq!(failures[0].0, Duration::from_millis(5120));
    h.run(Duration::from_secs(30));
    assert!(h.events(dest).contains(&ClientEvent::LeaseLost));
    assert!(h.client(dest).is_registered());
    h.with(src, |c, now| c.lookup(now, name("/svc")));
    h.run(Duration::from_secs(1));
    assert_eq!(h.introductions(src).len(), 1);
    assert_eq!(h.introductions(dest).len(), 1);
}

#[test]
fn introduction_ids_of_a_restarted_server_are_not_taken_for_duplicates() {
    let mut h = Harness::new(ServerConfig::default());
    let dest = h.add(&["/svc"]);
    let src = h.add(&[]);
    h.run(Duration::from_secs(1));
    h.with(src, |c, now| c.lookup(now, name("/svc")));
    h.run(Duration::from_secs(1));
    // The new server numbers introductions from 1 again; nobody called session_lost.
    h.restart_server();
    h.run(Duration::from_secs(31));
    h.with(src, |c, now| c.lookup(now, name("/svc")));
    h.run(Duration::from_secs(1));
    assert_eq!(h.introductions(src).len(), 2);
    assert_eq!(h.introductions(dest).len(), 2);
}

#[test]
fn renewals_unanswered_until_the_lease_ends_lose_it() {
    let mut h = Harness::new(ServerConfig::default());
    let a = h.add(&["/a"]);
    h.run(Duration::from_secs(1));
    h.impair(1, 1000, 0);
    h.run(Duration::from_secs(95));
    assert!(h.events(a).contains(&ClientEvent::LeaseLost));
    assert!(!h.client(a).is_registered());
    h.impair(1, 0, 0);
    h.run(Duration::from_secs(40));
    assert!(h.client(a).is_registered());
    assert!(h.server().registration(&key(a)).is_some());
}

#[test]
fn the_reflexive_address_follows_nat_rebinding() {
    let mut h = Harness::new(ServerConfig::default());
    let dest = h.add(&["/svc"]);
    let src = h.add(&[]);
    h.run(Duration::from_secs(1));
    let moved: SocketAddr = (Ipv4Addr::new(198, 51, 100, 9), 5555).into();
    h.move_to(dest, moved);
    h.run(Duration::from_secs(31));
    assert_eq!(h.server().registration(&key(dest)).unwrap().addr(), moved);
    h.with(src, |c, now| c.lookup(now, name("/svc")));
    h.run(Duration::from_secs(1));
    assert_eq!(introduced(&h.introductions(src)[0]).3[0], moved);
}

#[test]
fn every_lookup_completes_through_thirty_percent_loss() {
    for seed in 1..=20 {
        let mut h = Harness::new(ServerConfig::default());
        h.impair(seed, 300, 50);
        let dest = h.add(&["/svc"]);
        let src = h.add(&[]);
        h.run(Duration::from_secs(15));
        let mut requests = Vec::new();
        for _ in 0..10 {
            requests.push(h.with(src, |c, now| c.lookup(now, name("/svc"))));
            h.run(Duration::from_secs(20));
        }
        let answered: Vec<_> = h
            .introductions(src)
            .iter()
            .map(|e| introduced(e).0.unwrap())
            .collect();
        assert_eq!(answered, requests, "seed {seed}: {:?}", h.failures(src));
        assert_eq!(h.introductions(dest).len(), 10, "seed {seed}");
    }
}

/// Each token is a tenant with a namespace of its own: a lookup under token B never finds token
/// A's name (the same "unknown service" as a name nobody publishes), both may publish the same
/// name, and peer mode never pairs daemons of different tenants.
#[test]
fn tenants_neither_see_nor_block_each_other() {
    let mut h = Harness::new(ServerConfig::default());
    let with_token = |token: &str, services: &[&str]| {
        let mut config = ClientConfig::new(token);
        config.services = services.iter().map(|s| name(s)).collect();
        config
    };
    let a = h.add_with(with_token("tenant-a", &["/home/ssh"]));
    let b = h.add_with(with_token("tenant-b", &[]));
    h.run(Duration::from_secs(1));
    let request = h.with(b, |c, now| c.lookup(now, name("/home/ssh")));
    let unknown = h.with(b, |c, now| c.lookup(now, name("/nobody/has/this")));
    h.run(Duration::from_secs(1));
    let failures = h.failures(b);
    assert_eq!(failures.len(), 2);
    assert_eq!(
        (failures[0].1, failures[0].2),
        (request, ErrorCode::UnknownService)
    );
    assert_eq!(
        (failures[1].1, failures[1].2),
        (unknown, ErrorCode::UnknownService)
    );
    assert_eq!(h.introductions(a), [], "a is never told of b");

    // The same name in tenant B is B's own, and does not disturb A's.
    let b2 = h.add_with(with_token("tenant-b", &["/home/ssh"]));
    h.run(Duration::from_secs(1));
    assert_eq!(registration_failures(&h, b2), []);
    h.with(b, |c, now| c.lookup(now, name("/home/ssh")));
    h.run(Duration::from_secs(1));
    let intro = h.introductions(b);
    assert_eq!(intro.len(), 1);
    assert_eq!(introduced(&intro[0]).1, key(b2), "found in its own tenant");
    assert_eq!(h.introductions(a), []);

    // Peer mode: a and b name each other, but live in different tenants: both time out.
    let ra = h.with(a, |c, now| c.connect_peer(now, key(b)));
    let rb = h.with(b, |c, now| c.connect_peer(now, key(a)));
    h.run(Duration::from_secs(120));
    assert!(
        h.failures(a)
            .iter()
            .any(|f| (f.1, f.2) == (ra, ErrorCode::PeerTimeout)),
        "{:?} {ra}",
        h.failures(a)
    );
    assert!(
        h.failures(b)
            .iter()
            .any(|f| (f.1, f.2) == (rb, ErrorCode::PeerTimeout))
    );
    assert_eq!(h.introductions(a), []);
}

/// The relay forwards only between daemons the server introduced to each other, and only while
/// both registrations stand; peer mode and lookups both make pairs, and a registration that
/// ends takes its pairs with it.
#[test]
fn the_relay_serves_only_introduced_pairs() {
    let mut h = Harness::new(ServerConfig::default());
    let dest = h.add(&["/home/ssh"]);
    let src = h.add(&[]);
    let stranger = h.add(&[]);
    h.run(Duration::from_secs(1));
    let now = h.now;
    let relay = |h: &mut Harness, a: usize, b: usize| {
        h.server_mut()
            .relay(now, &key(a), &key(b), &[0; 100], false)
    };
    assert_eq!(relay(&mut h, src, dest), Err(RelayRefusal::NotIntroduced));
    assert_eq!(
        relay(&mut h, stranger, dest),
        Err(RelayRefusal::NotIntroduced)
    );

    h.with(src, |c, now| c.lookup(now, name("/home/ssh")));
    h.run(Duration::from_secs(1));
    assert_eq!(relay(&mut h, src, dest), Ok(true));
    assert_eq!(relay(&mut h, dest, src), Ok(true), "both ways");
    assert_eq!(
        relay(&mut h, stranger, dest),
        Err(RelayRefusal::NotIntroduced),
        "registered in the same tenant, never introduced"
    );
    assert_eq!(
        relay(&mut h, stranger, src),
        Err(RelayRefusal::NotIntroduced)
    );

    // Peer mode pairs too.
    h.with(stranger, |c, now| c.connect_peer(now, key(src)));
    h.with(src, |c, now| c.connect_peer(now, key(stranger)));
    h.run(Duration::from_secs(1));
    assert_eq!(relay(&mut h, stranger, src), Ok(true));

    // The destination unregisters: its pairs go with it, and stay gone when it comes back.
    h.with(dest, |c, now| c.stop(now));
    h.run(Duration::from_secs(1));
    assert_eq!(relay(&mut h, src, dest), Err(RelayRefusal::NotRegistered));
    h.with(dest, |c, now| c.start(now));
    h.run(Duration::from_secs(1));
    let now = h.now;
    assert_eq!(
        h.server_mut()
            .relay(now, &key(src), &key(dest), &[0; 100], false),
        Err(RelayRefusal::NotIntroduced)
    );
}

/// A server that relays `initiations_per_sec` handshake initiations per token, a destination
/// exposing /svc and a source the server introduced to it (a lookup).
fn introduced_pair(initiations_per_sec: u64) -> (Harness, usize, usize) {
    let mut h = Harness::new(ServerConfig {
        relay_initiations_per_sec: initiations_per_sec,
        ..ServerConfig::default()
    });
    let dest = h.add(&["/svc"]);
    let src = h.add(&[]);
    h.run(Duration::from_secs(1));
    h.with(src, |c, now| c.lookup(now, name("/svc")));
    h.run(Duration::from_secs(1));
    (h, dest, src)
}

/// Relayed handshake initiations (which cost the receiver a Diffie-Hellman and cannot get a
/// cookie) are limited per token, apart from the byte budget; other packets still pass.
#[test]
fn relayed_initiations_are_limited_per_token() {
    let (mut h, dest, src) = introduced_pair(5);
    let now = h.now;
    let passed = (0..20)
        .filter(|_| {
            h.server_mut()
                .relay(now, &key(src), &key(dest), &[0; 148], true)
                .is_ok()
        })
        .count();
    assert_eq!(passed, 5);
    assert_eq!(
        h.server_mut()
            .relay(now, &key(dest), &key(src), &[0; 148], true),
        Err(RelayRefusal::RateLimited),
        "the same token's other daemon shares the limit"
    );
    assert_eq!(
        h.server_mut()
            .relay(now, &key(src), &key(dest), &[0; 1000], false),
        Ok(true)
    );
    let later = now + Duration::from_millis(400);
    assert_eq!(
        h.server_mut()
            .relay(later, &key(src), &key(dest), &[0; 148], true),
        Ok(true)
    );
}

/// The relay's limit drops packets, and says so: one report at the first drop, then at most
/// one per `RELAY_LIMIT_REPORT` per token with the drops since the last one.
#[test]
fn relay_drops_are_reported_at_most_every_ten_seconds_per_token() {
    let (mut h, dest, src) = introduced_pair(1);
    let now = h.now;
    let drops = |h: &mut Harness, at: Instant, n: usize| {
        for _ in 0..n {
            let _ = h
                .server_mut()
                .relay(at, &key(src), &key(dest), &[0; 148], true);
        }
    };
    drops(&mut h, now, 50);
    h.run(Duration::from_millis(1));
    drops(&mut h, now + super::server::RELAY_LIMIT_REPORT, 2);
    h.run(Duration::from_millis(1));
    let reports: Vec<u64> = h
        .server_events()
        .into_iter()
        .filter_map(|(_, e)| match e {
            ServerEvent::RelayLimited { key: k, dropped } if k == key(src) => Some(dropped),
            _ => None,
        })
        .collect();
    // 1 passed, 49 dropped (1 reported at once, 48 held), then 2 more (1 allowed by the
    // refilled bucket, 1 dropped): the second report carries 49.
    assert_eq!(reports, vec![1, 49]);
}

/// Drops held back by the report interval are reported once it has passed, without waiting
/// for another drop: the log's sum is the server's whole count (the real-NAT relay test
/// compares it with the metrics counter).
#[test]
fn held_relay_drops_are_reported_when_the_interval_passes() {
    let (mut h, dest, src) = introduced_pair(1);
    let now = h.now;
    for _ in 0..50 {
        let _ = h
            .server_mut()
            .relay(now, &key(src), &key(dest), &[0; 148], true);
    }
    let reports = |h: &mut Harness| -> Vec<u64> {
        h.server_events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                ServerEvent::RelayLimited { key: k, dropped } if k == key(src) => Some(dropped),
                _ => None,
            })
            .collect()
    };
    h.run(Duration::from_millis(1));
    assert_eq!(reports(&mut h), vec![1], "the first drop at once");
    h.run(super::server::RELAY_LIMIT_REPORT);
    assert_eq!(
        reports(&mut h),
        vec![1, 48],
        "the held 48 once the interval passed"
    );
    h.run(super::server::RELAY_LIMIT_REPORT * 2);
    assert_eq!(
        reports(&mut h),
        vec![1, 48],
        "nothing more: nothing was dropped"
    );
}

mod authority;
mod daemons;
mod failures;
mod import;
mod limits;
mod pins;
mod publish;
mod rattach;
mod refusal;
