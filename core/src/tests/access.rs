//! Access control at the destination (see `crate::access`): only keys the rendezvous server
//! introduced reach a daemon, each only the service it was introduced for; peer mode and the
//! allow-list reach every service; a grant ends with its session.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use super::net::{Link, Net};
use super::pair::key;
use crate::config::{Config, PeerPolicy, RendezvousConfig};
use crate::crypto::PublicKey;
use crate::event::{Event, PeerId};
use crate::rendezvous::{ServerConfig, ServiceName};
use crate::service::UNKNOWN_SERVICE;
use crate::session::{HOLD_UNAUTHORIZED, MAX_HELD};
use crate::stream::StreamId;
use crate::{Endpoint, ReadOutcome};

// The server is host 0.
const A: usize = 1;
const B: usize = 2;
/// An endpoint that never registered and holds no token.
const STRANGER: usize = 3;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal")
}

fn name(s: &str) -> ServiceName {
    ServiceName::parse(s).expect("literal")
}

/// A server, daemons A and B with one token, and a stranger, 10 ms apart. `a_peers`
/// replaces A's peer policy when given.
fn lab(a_peers: Option<PeerPolicy>) -> Net<Endpoint> {
    lab_with(|n, config| {
        if let (1, Some(policy)) = (n, a_peers.clone()) {
            config.peers = policy;
        }
    })
}

/// The same, with `adjust` changing daemon `n`'s config (n = 1 for A, 2 for B).
fn lab_with(adjust: impl Fn(u8, &mut Config)) -> Net<Endpoint> {
    let now = super::origin();
    let mut net = Net::new(now, Link::clean(Duration::from_millis(10)), 1);
    let unix = Duration::from_secs(1_800_000_000);
    let server = Config::server(key(9), ServerConfig::default());
    net.add(Endpoint::new(server, [9; 32], now, unix), addr(SERVER_ADDR));
    for (n, at) in [(1u8, "10.0.0.1:1000"), (2, "10.0.0.2:2000")] {
        let mut config = daemon_config(n);
        adjust(n, &mut config);
        net.add(Endpoint::new(config, [n; 32], now, unix), addr(at));
    }
    let stranger = Config::new(key(5));
    net.add(
        Endpoint::new(stranger, [5; 32], now, unix),
        addr("10.0.0.5:5000"),
    );
    net.run_for(Duration::from_secs(2));
    for i in [A, B] {
        assert!(registered(&net, i), "host {i}: {:?}", net.hosts[i].events);
    }
    net
}

const SERVER_ADDR: &str = "10.0.0.9:7000";

/// Daemon `n`'s configuration: key `n`, the lab's server and token.
fn daemon_config(n: u8) -> Config {
    let rendezvous = RendezvousConfig::new(key(9).public_key(), addr(SERVER_ADDR), "token");
    Config::daemon(key(n), rendezvous)
}

fn registered(net: &Net<Endpoint>, i: usize) -> bool {
    net.hosts[i]
        .events
        .iter()
        .any(|e| matches!(e, Event::Registered { .. }))
}

fn public(net: &Net<Endpoint>, i: usize) -> PublicKey {
    net.hosts[i].m.public_key()
}

/// Exposes `names` on host `i`.
fn expose(net: &mut Net<Endpoint>, i: usize, names: &[&str]) {
    for n in names {
        net.with(i, |ep, now| ep.expose(now, name(n), format!("target{n}")))
            .expect("expose");
    }
    net.run_for(Duration::from_secs(1));
}

/// Host `i` looks `service` up and waits for its session: the peer handle.
fn look_up(net: &mut Net<Endpoint>, i: usize, service: &str) -> PeerId {
    net.with(i, |ep, now| ep.connect_service(now, name(service)))
        .expect("connect_service");
    net.run_for(Duration::from_secs(3));
    net.hosts[i]
        .events
        .iter()
        .find_map(|e| match e {
            Event::ServiceReady { service: s, peer } if *s == name(service) => Some(*peer),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{service} not ready: {:?}", net.hosts[i].events))
}

/// Host `i` opens a stream to `service` at `peer`, writes a few bytes, and waits past the
/// time a destination holds a stream for an introduction that may still come.
fn open(net: &mut Net<Endpoint>, i: usize, peer: PeerId, service: &str) -> StreamId {
    let stream = open_only(net, i, peer, service);
    net.run_for(HOLD_UNAUTHORIZED + Duration::from_secs(1));
    stream
}

/// Host `i` opens a stream to `service` at `peer` and writes a few bytes; runs nothing.
fn open_only(net: &mut Net<Endpoint>, i: usize, peer: PeerId, service: &str) -> StreamId {
    net.with(i, |ep, now| {
        let stream = ep.open_stream(now, peer, &name(service)).expect("open");
        ep.stream_write(now, peer, stream, b"secret request")
            .expect("write");
        stream
    })
}

/// The services host `i` was asked to connect streams for.
fn incoming(net: &Net<Endpoint>, i: usize) -> Vec<(PeerId, ServiceName)> {
    net.hosts[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::IncomingStream { peer, service, .. } => Some((*peer, service.clone())),
            _ => None,
        })
        .collect()
}

/// Whether host `i` saw `stream` reset with `UNKNOWN_SERVICE`.
fn refused(net: &Net<Endpoint>, i: usize, stream: StreamId) -> bool {
    net.hosts[i].events.iter().any(|e| {
        matches!(e, Event::StreamReset { stream: s, code, .. }
            if *s == stream && *code == UNKNOWN_SERVICE)
    })
}

fn count(net: &Net<Endpoint>, i: usize, f: impl Fn(&Event) -> bool) -> usize {
    net.hosts[i].events.iter().filter(|e| f(e)).count()
}

#[test]
fn a_key_that_never_registered_gets_no_session_with_a_daemon() {
    let mut net = lab(None);
    expose(&mut net, A, &["/a"]);
    let (a_key, a_addr) = (public(&net, A), net.hosts[A].addr);
    let peer = net.with(STRANGER, |ep, now| ep.connect(now, a_key, a_addr).unwrap());
    // Streams written while the handshake runs would leave once it completes: it never does.
    net.with(STRANGER, |ep, now| {
        let s = ep.open_stream(now, peer, &name("/a")).unwrap();
        ep.stream_write(now, peer, s, b"GET /").unwrap();
    });
    net.run_for(Duration::from_secs(20));
    let connected = count(&net, STRANGER, |e| matches!(e, Event::Connected { .. }));
    assert_eq!(connected, 0, "{:?}", net.hosts[STRANGER].events);
    assert!(incoming(&net, A).is_empty());
    let stats = net.hosts[A].m.stats();
    assert!(stats.dropped_unknown_peer >= 3, "{stats:?}");
    // Logged once, however many initiations came.
    let rejected = count(
        &net,
        A,
        |e| matches!(e, Event::PeerRejected { key, .. } if *key == public(&net, STRANGER)),
    );
    assert_eq!(rejected, 1);
}

#[test]
fn an_introduced_source_reaches_only_the_service_it_looked_up() {
    let mut net = lab(None);
    expose(&mut net, A, &["/a", "/b"]);
    let peer = look_up(&mut net, B, "/a");
    let allowed = open(&mut net, B, peer, "/a");
    assert_eq!(incoming(&net, A).len(), 1);
    assert!(!refused(&net, B, allowed));
    // Over the same session, a service it never looked up is refused like an unknown one.
    let denied = open(&mut net, B, peer, "/b");
    let again = open(&mut net, B, peer, "/b");
    assert!(refused(&net, B, denied) && refused(&net, B, again));
    let services: Vec<_> = incoming(&net, A).into_iter().map(|(_, s)| s).collect();
    assert_eq!(services, vec![name("/a")]);
    assert_eq!(net.hosts[A].m.stats().streams_unauthorized, 2);
    let b_key = public(&net, B);
    let reported = count(&net, A, |e| {
        matches!(e, Event::StreamUnauthorized { key, service, .. }
            if *key == b_key && *service == name("/b"))
    });
    assert_eq!(reported, 1, "{:?}", net.hosts[A].events);
    // Looking /b up too grants it.
    look_up(&mut net, B, "/b");
    open(&mut net, B, peer, "/b");
    assert_eq!(incoming(&net, A).len(), 2);
}

/// A stream can reach the destination before the server's introduction that authorises it
/// (the source heard its own introduction first, and its session was up already): the
/// destination holds it, and admits it when the introduction comes (found through the
/// binary: about one tunnel-bench run in 80 had its first connection reset).
#[test]
fn a_stream_that_outruns_its_introduction_waits_for_it() {
    let mut net = lab(None);
    expose(&mut net, A, &["/a", "/b"]);
    let peer = look_up(&mut net, B, "/a");
    // /b before its introduction: held, not refused.
    let early = open_only(&mut net, B, peer, "/b");
    net.run_for(Duration::from_secs(1));
    assert!(!refused(&net, B, early));
    assert_eq!(incoming(&net, A).len(), 0);
    // The introduction for /b arrives: the held stream goes through.
    look_up(&mut net, B, "/b");
    let services: Vec<_> = incoming(&net, A).into_iter().map(|(_, s)| s).collect();
    assert_eq!(services, vec![name("/b")]);
    net.run_for(HOLD_UNAUTHORIZED);
    assert!(!refused(&net, B, early));
    assert_eq!(net.hosts[A].m.stats().streams_unauthorized, 0);
}

/// Held streams are bounded: past [`MAX_HELD`] a stream is refused at once, and every held
/// one is refused when its wait ends, as a service we do not expose would be.
#[test]
fn held_streams_are_bounded_and_refused_when_their_wait_ends() {
    let mut net = lab(None);
    expose(&mut net, A, &["/a", "/b"]);
    let peer = look_up(&mut net, B, "/a");
    let streams: Vec<StreamId> = (0..=MAX_HELD)
        .map(|_| open_only(&mut net, B, peer, "/b"))
        .collect();
    net.run_for(Duration::from_secs(1));
    let refused_now = streams.iter().filter(|s| refused(&net, B, **s)).count();
    assert_eq!(refused_now, 1, "one over the bound is refused at once");
    net.run_for(HOLD_UNAUTHORIZED);
    assert!(streams.iter().all(|s| refused(&net, B, *s)));
    assert!(incoming(&net, A).is_empty());
    assert_eq!(
        net.hosts[A].m.stats().streams_unauthorized,
        streams.len() as u64
    );
}

#[test]
fn the_destination_reaches_none_of_the_sources_services() {
    let mut net = lab(None);
    expose(&mut net, A, &["/a"]);
    expose(&mut net, B, &["/b-own"]);
    let peer = look_up(&mut net, B, "/a");
    open(&mut net, B, peer, "/a");
    let (to_b, _) = incoming(&net, A)[0].clone();
    let stream = open(&mut net, A, to_b, "/b-own");
    assert!(refused(&net, A, stream));
    assert!(incoming(&net, B).is_empty());
    assert_eq!(net.hosts[B].m.stats().streams_unauthorized, 1);
}

#[test]
fn a_grant_ends_with_its_session() {
    let mut net = lab(None);
    expose(&mut net, A, &["/a"]);
    let peer = look_up(&mut net, B, "/a");
    open(&mut net, B, peer, "/a");
    net.with(B, |ep, now| ep.close(now, peer));
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        net.hosts[A].m.session_count(),
        1,
        "only the server's is left"
    );
    // Straight to A's port without asking the server again: refused.
    let before = net.hosts[A].m.stats().dropped_unknown_peer;
    let (a_key, a_addr) = (public(&net, A), net.hosts[A].addr);
    net.with(B, |ep, now| ep.connect(now, a_key, a_addr).unwrap());
    net.run_for(Duration::from_secs(5));
    assert!(net.hosts[A].m.stats().dropped_unknown_peer > before);
    assert_eq!(net.hosts[A].m.session_count(), 1);
}

/// A source killed without a word (no Close, no Unregister) that starts again with the same
/// key: the server introduces its new life before its first handshake reaches the
/// destination, which then ends the old session (`PeerRestarted`). That must not take the
/// new introduction's grant with it (found through the binary: every stream of the restarted
/// daemon was refused until the session died).
#[test]
fn a_source_that_restarts_without_a_word_reaches_its_service_again() {
    let mut net = lab(None);
    expose(&mut net, A, &["/a"]);
    let peer = look_up(&mut net, B, "/a");
    open(&mut net, B, peer, "/a");
    assert_eq!(incoming(&net, A).len(), 1);
    let (now, unix) = (net.now, Duration::from_secs(1_800_000_100));
    net.hosts[B].m = Endpoint::new(daemon_config(2), [42; 32], now, unix);
    net.hosts[B].events.clear();
    net.run_for(Duration::from_secs(2));
    assert!(registered(&net, B));
    let peer = look_up(&mut net, B, "/a");
    let stream = open(&mut net, B, peer, "/a");
    assert!(!refused(&net, B, stream), "{:?}", net.hosts[A].events);
    assert_eq!(incoming(&net, A).len(), 2);
    assert!(
        count(&net, A, |e| matches!(
            e,
            Event::SessionClosed {
                reason: crate::CloseReason::PeerRestarted,
                ..
            }
        )) >= 1
    );
}

#[test]
fn peers_met_in_peer_mode_reach_every_service() {
    let mut net = lab(None);
    expose(&mut net, A, &["/a", "/b"]);
    let (a_key, b_key) = (public(&net, A), public(&net, B));
    net.with(A, |ep, now| ep.meet(now, b_key)).unwrap();
    net.with(B, |ep, now| ep.meet(now, a_key)).unwrap();
    net.run_for(Duration::from_secs(5));
    let peer = net.hosts[B]
        .events
        .iter()
        .find_map(|e| match e {
            Event::PeerReady { peer, .. } => Some(*peer),
            _ => None,
        })
        .expect("met");
    open(&mut net, B, peer, "/a");
    open(&mut net, B, peer, "/b");
    assert_eq!(incoming(&net, A).len(), 2);
    assert_eq!(net.hosts[A].m.stats().streams_unauthorized, 0);
}

/// `[[peer]]` from the configuration: both sides name each other and meet at start; the
/// exposing side's entry lists what the other may reach (here `/a`, not `/b`), and the
/// connecting side reaches `/a` through the meeting with no lookup.
#[test]
fn configured_peers_meet_and_reach_only_what_they_are_allowed() {
    use crate::config::PeerConfig;
    let (a_key, b_key) = (key(1).public_key(), key(2).public_key());
    let mut net = lab_with(|n, config| {
        let r = config.rendezvous.as_mut().expect("a daemon");
        if n == 1 {
            let allow = vec![name("/a")];
            r.peers.insert(b_key, PeerConfig { allow, route: None });
        } else {
            r.peers.insert(a_key, PeerConfig::default());
            r.peer_services.insert(name("/a"), a_key);
            r.peer_services.insert(name("/b"), a_key);
        }
    });
    expose(&mut net, A, &["/a", "/b"]);
    for i in [A, B] {
        net.with(i, |ep, now| ep.meet_configured(now));
    }
    let peer = look_up(&mut net, B, "/a");
    open(&mut net, B, peer, "/a");
    let b_stream = open(&mut net, B, peer, "/b");
    let got: Vec<ServiceName> = incoming(&net, A).into_iter().map(|(_, s)| s).collect();
    assert_eq!(got, [name("/a")]);
    assert!(refused(&net, B, b_stream), "/b is not allowed");
    assert_eq!(net.hosts[A].m.stats().streams_unauthorized, 1);
    assert_eq!(count(&net, B, |e| matches!(e, Event::PeerReady { .. })), 1);
}

/// A `[[peer]]` the other side never names: the server's wait ends with an error
/// ([`Event::PeerFailed`], and [`Event::ServiceFailed`] for the services reached through it),
/// and the daemon asks again, so they meet as soon as the other side asks too.
#[test]
fn a_configured_peer_that_never_asks_fails_and_is_asked_again() {
    use crate::config::PeerConfig;
    let a_key = key(1).public_key();
    let mut net = lab_with(|n, config| {
        if n == 2 {
            let r = config.rendezvous.as_mut().expect("a daemon");
            r.peers.insert(a_key, PeerConfig::default());
            r.peer_services.insert(name("/a"), a_key);
        }
    });
    expose(&mut net, A, &["/a"]);
    net.with(B, |ep, now| ep.meet_configured(now));
    net.with(B, |ep, now| ep.connect_service(now, name("/a")))
        .expect("connect_service");
    let wait = ServerConfig::default().peer_wait;
    net.run_for(wait + Duration::from_secs(5));
    let failed = |net: &Net<Endpoint>| {
        count(
            net,
            B,
            |e| matches!(e, Event::PeerFailed { reason, .. } if reason.contains("PeerTimeout")),
        )
    };
    assert_eq!(failed(&net), 1, "{:?}", net.hosts[B].events);
    assert!(
        failure(&net, B).is_some_and(|f| f.contains("PeerTimeout")),
        "the service says why"
    );
    // Asked again at once: A names B now, and they meet.
    let b_key = key(2).public_key();
    net.with(A, |ep, now| ep.meet(now, b_key)).unwrap();
    net.run_for(Duration::from_secs(5));
    assert_eq!(count(&net, B, |e| matches!(e, Event::PeerReady { .. })), 1);
    assert_eq!(failed(&net), 1);
}

#[test]
fn an_allow_listed_key_reaches_every_service_without_the_server() {
    let stranger = key(5).public_key();
    let mut net = lab(Some(PeerPolicy::Authorized(BTreeSet::from([stranger]))));
    expose(&mut net, A, &["/a"]);
    let (a_key, a_addr) = (public(&net, A), net.hosts[A].addr);
    let peer = net.with(STRANGER, |ep, now| ep.connect(now, a_key, a_addr).unwrap());
    let stream = open(&mut net, STRANGER, peer, "/a");
    assert_eq!(incoming(&net, A).len(), 1);
    // And the data arrives.
    let (from, _) = incoming(&net, A)[0].clone();
    let mut buf = [0u8; 64];
    let read = net.with(A, |ep, now| ep.stream_read(now, from, stream, &mut buf));
    assert_eq!(read, Ok(ReadOutcome::Data(14)));
}

/// The reason of the last `ServiceFailed` host `i` saw.
fn failure(net: &Net<Endpoint>, i: usize) -> Option<String> {
    net.hosts[i].events.iter().rev().find_map(|e| match e {
        Event::ServiceFailed { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn a_name_taken_over_by_another_key_is_refused_by_a_source_that_pinned_the_first() {
    let mut net = lab(None);
    expose(&mut net, A, &["/p"]);
    let peer = look_up(&mut net, B, "/p");
    let a_key = public(&net, A);
    let pinned = count(
        &net,
        B,
        |e| matches!(e, Event::ServiceKeyPinned { service, key } if *service == name("/p") && *key == a_key),
    );
    assert_eq!(pinned, 1, "{:?}", net.hosts[B].events);
    // A gives the name up; another daemon of the same tenant takes it.
    net.with(B, |ep, now| ep.close(now, peer));
    net.with(A, |ep, now| ep.unexpose(now, &name("/p")));
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    let c = net.add(
        Endpoint::new(
            daemon_config(3),
            [3; 32],
            now,
            Duration::from_secs(1_800_000_000),
        ),
        addr("10.0.0.3:3000"),
    );
    net.run_for(Duration::from_secs(2));
    assert!(registered(&net, c));
    expose(&mut net, c, &["/p"]);
    net.with(B, |ep, now| ep.connect_service(now, name("/p")))
        .unwrap();
    net.run_for(Duration::from_secs(3));
    let reason = failure(&net, B).expect("refused");
    assert!(
        reason.contains("is pinned for it") && reason.contains("known_services"),
        "{reason}"
    );
    let b_key = public(&net, B);
    let met = count(
        &net,
        c,
        |e| matches!(e, Event::Connected { key, .. } if *key == b_key),
    );
    assert_eq!(met, 0, "B never completed a session with C");
    let ready = count(&net, B, |e| matches!(e, Event::ServiceReady { .. }));
    assert_eq!(ready, 1, "only the first, to A");
}

#[test]
fn a_key_pinned_up_front_refuses_any_other() {
    let mut net = lab_with(|n, config| {
        if n == 2 {
            let pins = &mut config.rendezvous.as_mut().expect("daemon").pinned;
            pins.insert(name("/p"), key(7).public_key());
        }
    });
    expose(&mut net, A, &["/p"]);
    net.with(B, |ep, now| ep.connect_service(now, name("/p")))
        .unwrap();
    net.run_for(Duration::from_secs(3));
    assert!(failure(&net, B).is_some_and(|r| r.contains("is pinned")));
    let pinned = count(&net, B, |e| matches!(e, Event::ServiceKeyPinned { .. }));
    assert_eq!(pinned, 0);
    let b_key = public(&net, B);
    let met = count(
        &net,
        A,
        |e| matches!(e, Event::Connected { key, .. } if *key == b_key),
    );
    assert_eq!(met, 0, "B never completed a session with A");
}

#[test]
fn a_server_session_that_never_registers_is_closed_within_seconds() {
    let mut net = lab(None);
    let (server_key, server_addr) = (public(&net, 0), net.hosts[0].addr);
    net.with(STRANGER, |ep, now| {
        ep.connect(now, server_key, server_addr).unwrap()
    });
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.hosts[0].m.session_count(), 3, "A, B and the stranger");
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.hosts[0].m.session_count(), 2, "the stranger's is gone");
    assert_eq!(net.hosts[0].m.stats().closed_unregistered, 1);
    let evicted = count(&net, 0, |e| {
        matches!(
            e,
            Event::Rendezvous(crate::rendezvous::ServerEvent::Evicted { .. })
        )
    });
    assert_eq!(evicted, 1);
    // It was told, rather than left to time out.
    let closed = count(&net, STRANGER, |e| matches!(e, Event::SessionClosed { .. }));
    assert_eq!(closed, 1);
    // Registered daemons stay, lease after lease.
    net.run_for(Duration::from_secs(600));
    assert_eq!(net.hosts[0].m.session_count(), 2);
    assert_eq!(net.hosts[0].m.stats().closed_unregistered, 1);
}

#[test]
fn a_daemon_with_a_refused_token_is_closed_and_tries_again_later() {
    use crate::rendezvous::{TokenLimits, TokenPolicy};
    let now = super::origin();
    let mut net = Net::new(now, Link::clean(Duration::from_millis(10)), 1);
    let unix = Duration::from_secs(1_800_000_000);
    let mut server = ServerConfig::default();
    let limits = TokenLimits {
        max_services: 10,
        max_registrations: 10,
    };
    server.tokens = TokenPolicy::Only([("right".to_string(), limits)].into());
    let server = Config::server(key(9), server);
    net.add(Endpoint::new(server, [9; 32], now, unix), addr(SERVER_ADDR));
    let rendezvous = RendezvousConfig::new(key(9).public_key(), addr(SERVER_ADDR), "wrong");
    let daemon = Config::daemon(key(1), rendezvous);
    net.add(
        Endpoint::new(daemon, [1; 32], now, unix),
        addr("10.0.0.1:1000"),
    );
    net.run_for(Duration::from_secs(60));
    let stats = net.hosts[0].m.stats();
    assert!(stats.closed_unregistered >= 1, "{stats:?}");
    // Each attempt holds the server's state a few seconds at most.
    assert!(net.hosts[0].m.session_count() <= 1);
    let refused = count(&net, 1, |e| matches!(e, Event::RegistrationFailed { .. }));
    assert!(refused >= 1);
}

/// The lab with a server whose directory has tenant `acme` (master `M`) and the fixed path
/// `/ssh` (server token `S`, client token `C`); A registers with `S`, B with `C`.
fn fixed_lab() -> Net<Endpoint> {
    use crate::rendezvous::directory::{Directory, PathRecord, Records, TenantRecord, TokenHash};
    let now = super::origin();
    let mut net = Net::new(now, Link::clean(Duration::from_millis(10)), 1);
    let unix = Duration::from_secs(1_800_000_000);
    let records = Records {
        tenants: vec![TenantRecord {
            name: "acme".parse().expect("tenant"),
            master: TokenHash::of("M"),
            limits: crate::rendezvous::directory::TenantQuota::default(),
        }],
        paths: vec![PathRecord {
            tenant: "acme".parse().expect("tenant"),
            name: name("/ssh"),
            server: TokenHash::of("S"),
            client: TokenHash::of("C"),
            fixed: true,
            clients: BTreeSet::new(),
            max_connections: None,
        }],
        attachments: Vec::new(),
        daemons: Vec::new(),
    };
    let server = ServerConfig {
        directory: Directory::from_records(records).expect("directory"),
        ..ServerConfig::default()
    };
    let server = Config::server(key(9), server);
    net.add(Endpoint::new(server, [9; 32], now, unix), addr(SERVER_ADDR));
    for (n, at, token) in [(1u8, "10.0.0.1:1000", "S"), (2, "10.0.0.2:2000", "C")] {
        let rendezvous = RendezvousConfig::new(key(9).public_key(), addr(SERVER_ADDR), token);
        let config = Config::daemon(key(n), rendezvous);
        net.add(Endpoint::new(config, [n; 32], now, unix), addr(at));
    }
    net.run_for(Duration::from_secs(2));
    for i in [A, B] {
        assert!(registered(&net, i), "host {i}: {:?}", net.hosts[i].events);
    }
    net
}

/// Must-show 8 on the destination: a fixed path's daemon admits only the client keys its
/// server pinned, whatever grants it holds. The master's reload unpins B; B's session (and
/// its grant) stand, but the destination refuses B's next stream by itself. (That a new key
/// is pinned and let in after the reload is in `rendezvous::tests::pins` and the binary's
/// `a_fixed_path_refuses_a_second_client_until_the_master_reloads_it`.)
#[test]
fn a_fixed_paths_destination_refuses_a_key_its_server_did_not_pin() {
    use crate::rendezvous::directory::AdminCommand;
    let mut net = fixed_lab();
    expose(&mut net, A, &["/ssh"]);
    let peer = look_up(&mut net, B, "/ssh");
    let first = open(&mut net, B, peer, "/ssh");
    assert!(!refused(&net, B, first));
    assert_eq!(incoming(&net, A).len(), 1);

    // A is also the tenant's master here: it reloads /ssh, and its server tells it that no
    // key is pinned any more.
    net.with(A, |ep, now| {
        ep.admin(now, "M".into(), AdminCommand::Reload { name: name("/ssh") })
    })
    .expect("admin");
    net.run_for(Duration::from_secs(1));
    let denied = open(&mut net, B, peer, "/ssh");
    assert!(refused(&net, B, denied), "{:?}", net.hosts[B].events);
    assert_eq!(incoming(&net, A).len(), 1);
    assert_eq!(net.hosts[A].m.stats().streams_unauthorized, 1);
}

/// A server whose directory has tenant `acme` with `/ssh` limited to one connecting daemon
/// (server token `S`, client token `C`); A registers with `S`, B and host 3 with `C`.
fn limited_lab() -> Net<Endpoint> {
    use crate::rendezvous::directory::{Directory, PathRecord, Records, TenantRecord, TokenHash};
    let now = super::origin();
    let mut net = Net::new(now, Link::clean(Duration::from_millis(10)), 1);
    let unix = Duration::from_secs(1_800_000_000);
    let records = Records {
        tenants: vec![TenantRecord {
            name: "acme".parse().expect("tenant"),
            master: TokenHash::of("M"),
            limits: crate::rendezvous::directory::TenantQuota::default(),
        }],
        paths: vec![PathRecord {
            tenant: "acme".parse().expect("tenant"),
            name: name("/ssh"),
            server: TokenHash::of("S"),
            client: TokenHash::of("C"),
            fixed: false,
            clients: BTreeSet::new(),
            max_connections: Some(1),
        }],
        attachments: Vec::new(),
        daemons: Vec::new(),
    };
    let server = ServerConfig {
        directory: Directory::from_records(records).expect("directory"),
        ..ServerConfig::default()
    };
    net.add(
        Endpoint::new(Config::server(key(9), server), [9; 32], now, unix),
        addr(SERVER_ADDR),
    );
    let daemons = [
        (1u8, "10.0.0.1:1000", "S"),
        (2, "10.0.0.2:2000", "C"),
        (3, "10.0.0.3:3000", "C"),
    ];
    for (n, at, token) in daemons {
        let rendezvous = RendezvousConfig::new(key(9).public_key(), addr(SERVER_ADDR), token);
        let config = Config::daemon(key(n), rendezvous);
        net.add(Endpoint::new(config, [n; 32], now, unix), addr(at));
    }
    net.run_for(Duration::from_secs(2));
    net
}

/// A connecting daemon that stops connecting to a path while both daemons stay registered
/// tells the server, which frees its place in the path's limit of connections at once.
#[test]
fn a_daemon_that_stops_connecting_frees_its_place_in_the_paths_limit() {
    const C: usize = 3;
    let mut net = limited_lab();
    expose(&mut net, A, &["/ssh"]);
    look_up(&mut net, B, "/ssh");
    net.with(C, |ep, now| ep.connect_service(now, name("/ssh")))
        .expect("connect_service");
    net.run_for(Duration::from_secs(3));
    let refused = failure(&net, C).unwrap_or_default();
    assert!(refused.contains("limit of 1 connections"), "{refused}");

    // B's listener goes: its place goes with it, while A, B and their session stay.
    net.with(B, |ep, now| ep.forget_service(now, &name("/ssh")));
    net.run_for(Duration::from_secs(1));
    assert!(registered(&net, A) && registered(&net, B));
    look_up(&mut net, C, "/ssh");
    // Forgetting a service never looked up tells the server nothing (and frees nothing).
    net.with(B, |ep, now| ep.forget_service(now, &name("/ssh")));
    net.run_for(Duration::from_secs(1));
    let again = net.with(B, |ep, now| ep.connect_service(now, name("/ssh")));
    assert!(again.is_ok());
    net.run_for(Duration::from_secs(3));
    let refused = failure(&net, B).unwrap_or_default();
    assert!(
        refused.contains("limit of 1 connections"),
        "C holds it now: {refused}"
    );
}

/// A connecting daemon killed without a word that starts again with the same key and does
/// not connect again: its new life registers and renews, so only the destination can tell
/// that the old life's session died. When it does (its idle timeout), it tells the server,
/// which frees the place in the path's limit. (Before, the place stayed taken for as long
/// as the new life stayed registered.)
#[test]
fn a_source_that_vanishes_frees_its_place_in_the_paths_limit() {
    const C: usize = 3;
    let mut net = limited_lab();
    expose(&mut net, A, &["/ssh"]);
    look_up(&mut net, B, "/ssh");
    let (now, unix) = (net.now, Duration::from_secs(1_800_000_100));
    let rendezvous = RendezvousConfig::new(key(9).public_key(), addr(SERVER_ADDR), "C");
    net.hosts[B].m = Endpoint::new(Config::daemon(key(2), rendezvous), [42; 32], now, unix);
    net.hosts[B].events.clear();
    net.run_for(Duration::from_secs(2));
    assert!(registered(&net, B));
    net.with(C, |ep, now| ep.connect_service(now, name("/ssh")))
        .expect("connect_service");
    net.run_for(Duration::from_secs(3));
    let refused = failure(&net, C).unwrap_or_default();
    assert!(refused.contains("limit of 1 connections"), "{refused}");

    // Within A's idle timeout (50 s) its session with B's old life ends, and the place goes.
    net.run_for(Duration::from_secs(60));
    let b = public(&net, B);
    assert!(
        count(
            &net,
            A,
            |e| matches!(e, Event::SessionClosed { key, .. } if *key == b)
        ) >= 1
    );
    assert!(
        count(&net, B, |e| matches!(e, Event::RegistrationLost)) == 0,
        "B's new life stayed registered"
    );
    look_up(&mut net, C, "/ssh");
}
