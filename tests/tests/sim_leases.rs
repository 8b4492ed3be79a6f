//! Registrations and leases on the rendezvous server, end to end in the simulator with real
//! endpoints: renewal holds a registration, expiry removes it and its names, a server restart
//! is survived by the direct sessions it introduced, unknown names and bad tokens fail at once
//! with a reason, and a registration replayed by someone on the path changes nothing.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use burrow_core::config::RendezvousConfig;
use burrow_core::rendezvous::{ServerConfig, ServerEvent, ServiceName, TokenLimits, TokenPolicy};
use burrow_core::{Config, Event, PeerId, SecretKey, Transmit};
use burrow_sim::Node;
use burrow_sim::endpoint::{EndpointNode, endpoint_seed, secret_key};
use burrow_sim::link::LinkConfig;
use burrow_sim::nat::NatConfig;
use burrow_sim::scenario::{NodeId, Sim};
use burrow_sim::topology::{HostId, Network, SiteId, Uplink};

const SERVER_PORT: u16 = 7000;
const DAEMON_PORT: u16 = 40000;
const TOKEN: &str = "lease-test";
const LEASE: Duration = Duration::from_secs(30);

/// A server on a public host, daemon A behind a port-restricted cone NAT, daemon B behind a
/// Linux NAT; 15 ms each uplink.
struct World {
    sim: Sim,
    server: NodeId,
    server_secret: SecretKey,
    server_addr: SocketAddr,
    a: NodeId,
    b: NodeId,
    a_site: SiteId,
}

fn server_config(secret: &SecretKey, tokens: TokenPolicy) -> Config {
    Config::server(
        secret.clone(),
        ServerConfig {
            lease: LEASE,
            tokens,
            ..ServerConfig::default()
        },
    )
}

fn only_token(token: &str) -> TokenPolicy {
    let limits = TokenLimits {
        max_services: 8,
        max_registrations: 8,
    };
    TokenPolicy::Only(BTreeMap::from([(token.to_string(), limits)]))
}

fn daemon_config(seed: u64, name: &str, w: (&SecretKey, SocketAddr), host: SocketAddr) -> Config {
    let mut rendezvous = RendezvousConfig::new(w.0.public_key(), w.1, TOKEN);
    rendezvous.host_candidates = vec![host];
    Config::daemon(secret_key(seed, name), rendezvous)
}

/// Builds the world; `a_node` makes daemon A's node from its config (a plain endpoint, or one
/// wrapped in a [`Tap`]).
fn world_with<N: Node + 'static>(
    seed: u64,
    tokens: TokenPolicy,
    a_node: impl FnOnce(Config, [u8; 32], Instant) -> N,
) -> World {
    let mut net = Network::new();
    let server_host = net.add_public_host("server", [198, 51, 100, 1]);
    let mut site = |name: &str, ext: [u8; 4], nat: NatConfig| -> (SiteId, HostId) {
        let nat = net.add_nat(&format!("{name}-nat"), None, ext, nat);
        net.set_nat_uplink(
            nat,
            Uplink::new(4, LinkConfig::new(Duration::from_millis(15))),
        );
        let lan = net.add_site(&format!("{name}-lan"), Some(nat));
        (lan, net.add_host(lan, name, [192, 168, 1, 2]))
    };
    let (a_site, a_host) = site("a", [203, 0, 113, 10], NatConfig::port_restricted_cone());
    let (_, b_host) = site("b", [198, 18, 0, 10], NatConfig::linux());
    let mut sim = Sim::new(net, seed);
    let server_secret = secret_key(seed, "server");
    let server = sim.add_endpoint(
        server_host,
        SERVER_PORT,
        "server",
        server_config(&server_secret, tokens),
    );
    let server_addr = sim.node_addr(server);
    let w = (&server_secret, server_addr);
    let a_addr = sim.network().host_addr(a_host, DAEMON_PORT);
    let b_addr = sim.network().host_addr(b_host, DAEMON_PORT);
    let a_seed = endpoint_seed(seed, "a", 0);
    let node = a_node(daemon_config(seed, "a", w, a_addr), a_seed, sim.instant());
    let a = sim.add_node(a_host, DAEMON_PORT, node);
    let b = sim.add_endpoint(
        b_host,
        DAEMON_PORT,
        "b",
        daemon_config(seed, "b", w, b_addr),
    );
    World {
        sim,
        server,
        server_secret,
        server_addr,
        a,
        b,
        a_site,
    }
}

fn world(seed: u64, tokens: TokenPolicy) -> World {
    world_with(seed, tokens, |config, seed, now| {
        EndpointNode::new("a", config, seed, now)
    })
}

fn service() -> ServiceName {
    "/lease/echo".parse().expect("valid name")
}

impl World {
    /// Runs until `pick` finds something among `node`'s events logged from now on.
    fn wait_for<T>(
        &mut self,
        node: NodeId,
        limit: Duration,
        pick: impl FnMut(&Event) -> Option<T>,
    ) -> Option<T> {
        let seen = self.sim.endpoint(node).events().len();
        self.wait_from(node, seen, limit, pick)
    }

    /// Like [`World::wait_for`], looking at `node`'s events from index `seen` on.
    fn wait_from<T>(
        &mut self,
        node: NodeId,
        seen: usize,
        limit: Duration,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> Option<T> {
        let deadline = self.sim.now() + limit;
        let mut found = None;
        self.sim
            .run_until(deadline, |s| {
                found = s.endpoint(node).events()[seen..]
                    .iter()
                    .find_map(|l| pick(&l.event));
                found.is_some()
            })
            .ok();
        found
    }

    fn expose(&mut self, node: NodeId) {
        self.sim
            .endpoint_command(node, |ep, now| ep.expose(now, service(), "127.0.0.1:7"))
            .expect("expose");
    }

    /// Asks B for the service; returns what came of it within `limit`, and how long it took.
    fn ask(&mut self, limit: Duration) -> (Option<Result<PeerId, String>>, Duration) {
        let asked = self.sim.now();
        // The answer may come within the call (a session to the service's daemon is up).
        let seen = self.sim.endpoint(self.b).events().len();
        self.sim
            .endpoint_command(self.b, |ep, now| ep.connect_service(now, service()))
            .expect("connect_service");
        let outcome = self.wait_from(self.b, seen, limit, |e| match e {
            Event::ServiceReady { peer, .. } => Some(Ok(*peer)),
            Event::ServiceFailed { reason, .. } => Some(Err(reason.clone())),
            _ => None,
        });
        (outcome, self.sim.now() - asked)
    }

    fn server_events(&self) -> Vec<&ServerEvent> {
        self.sim
            .endpoint(self.server)
            .events()
            .iter()
            .filter_map(|l| match &l.event {
                Event::Rendezvous(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn registrations(&self) -> usize {
        self.server_events()
            .iter()
            .filter(|e| matches!(e, ServerEvent::Registered { .. }))
            .count()
    }

    /// Registrations of daemon A's key in the server's log.
    fn registrations_of_a(&self, a: &burrow_core::PublicKey) -> usize {
        self.server_events()
            .iter()
            .filter(|e| matches!(e, ServerEvent::Registered { key, .. } if key == a))
            .count()
    }

    fn expiries(&self) -> usize {
        self.server_events()
            .iter()
            .filter(|e| matches!(e, ServerEvent::Expired { .. }))
            .count()
    }

    /// Cuts (or restores) site A's uplink both ways.
    fn cut_a(&mut self, cut: bool) {
        let site = self.a_site;
        for up in [true, false] {
            let link = self.sim.network_mut().site_link_mut(site, up);
            *link = link.clone().loss(if cut { 1.0 } else { 0.0 });
        }
    }
}

/// Renewal: with a 30 s lease, ten minutes later A is still registered (no expiry, one
/// registration) and B finds its service.
#[test]
fn renewal_holds_a_registration_for_ten_minutes() {
    for seed in [1, 2] {
        let mut w = world(seed, TokenPolicy::AnyToken);
        w.expose(w.a);
        w.sim.run_for(Duration::from_secs(600)).expect("runs");
        assert_eq!(w.expiries(), 0, "seed {seed}: {:?}", w.server_events());
        let (outcome, took) = w.ask(Duration::from_secs(10));
        assert!(
            matches!(outcome, Some(Ok(_))),
            "seed {seed}: {outcome:?} after {took:?}"
        );
    }
}

/// Expiry: A falls silent (its uplink is cut); within the lease plus a little the server
/// expires it, and B asking for A's name then gets an immediate, clear error.
#[test]
fn an_expired_lease_removes_the_name_and_askers_fail_at_once() {
    for seed in [3, 4] {
        let mut w = world(seed, TokenPolicy::AnyToken);
        w.expose(w.a);
        w.sim.run_for(Duration::from_secs(5)).expect("runs");
        w.cut_a(true);
        let cut_at = w.sim.now();
        w.sim
            .run_until(cut_at + LEASE + Duration::from_secs(5), |s| {
                s.endpoint(w.server)
                    .events()
                    .iter()
                    .any(|l| matches!(l.event, Event::Rendezvous(ServerEvent::Expired { .. })))
            })
            .unwrap_or_else(|e| panic!("seed {seed}: no expiry: {e}"));
        let expired_after = w.sim.now() - cut_at;
        assert!(expired_after <= LEASE + Duration::from_secs(1));
        let (outcome, took) = w.ask(Duration::from_secs(10));
        let Some(Err(reason)) = outcome else {
            panic!("seed {seed}: expected a failure, got {outcome:?}");
        };
        assert!(
            reason.to_lowercase().contains("unknown"),
            "seed {seed}: {reason}"
        );
        // One round trip to the server (60 ms here), not a timeout.
        assert!(took < Duration::from_millis(500), "seed {seed}: {took:?}");
        eprintln!(
            "seed {seed}: expired {expired_after:?} after the cut; B told in {took:?}: {reason}"
        );

        // A comes back: it re-registers by itself and B finds it again.
        w.cut_a(false);
        let (outcome, _) = loop {
            w.sim.run_for(Duration::from_secs(5)).expect("runs");
            let r = w.ask(Duration::from_secs(10));
            if matches!(r.0, Some(Ok(_))) || w.sim.now() > cut_at + Duration::from_secs(300) {
                break r;
            }
        };
        assert!(matches!(outcome, Some(Ok(_))), "seed {seed}: {outcome:?}");
        // A's application heard that its registration lapsed, then that it was back.
        let a_events: Vec<&Event> = w.sim.endpoint(w.a).events()[..]
            .iter()
            .map(|l| &l.event)
            .skip_while(|e| !matches!(e, Event::RegistrationLost))
            .collect();
        assert!(!a_events.is_empty(), "seed {seed}: no RegistrationLost");
        assert!(
            a_events
                .iter()
                .any(|e| matches!(e, Event::Registered { .. })),
            "seed {seed}: no Registered after RegistrationLost"
        );
    }
}

/// Unknown service: an immediate error naming the service, one server round trip.
#[test]
fn an_unknown_service_fails_at_once() {
    let mut w = world(5, TokenPolicy::AnyToken);
    w.sim.run_for(Duration::from_secs(2)).expect("runs");
    let (outcome, took) = w.ask(Duration::from_secs(10));
    let Some(Err(reason)) = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert!(took < Duration::from_millis(500), "{took:?}: {reason}");
    eprintln!("unknown service: told in {took:?}: {reason}");
}

/// Wrong token: registration is refused with a reason the daemon reports; nothing registers.
#[test]
fn a_wrong_token_is_refused_with_a_reason() {
    let mut w = world(6, only_token("the-right-one"));
    let refused = w.wait_for(w.a, Duration::from_secs(5), |e| match e {
        Event::RegistrationFailed { reason } => Some(reason.clone()),
        _ => None,
    });
    let reason = refused.expect("A reports the refusal");
    assert!(reason.contains("token"), "{reason}");
    assert_eq!(w.registrations(), 0);
    // B (same bad token) cannot use the server either.
    let (outcome, _) = w.ask(Duration::from_secs(10));
    assert!(!matches!(outcome, Some(Ok(_))), "{outcome:?}");
}

/// Server restart: A and B have a direct session the server introduced; the server restarts
/// (same key, no state). Datagrams on the direct session keep flowing throughout, and both
/// daemons register again by themselves.
#[test]
fn a_server_restart_keeps_direct_sessions_and_daemons_reregister() {
    for seed in [7, 8] {
        let mut w = world(seed, TokenPolicy::AnyToken);
        w.expose(w.a);
        w.sim.run_for(Duration::from_secs(1)).expect("runs");
        let (outcome, _) = w.ask(Duration::from_secs(10));
        let Some(Ok(peer)) = outcome else {
            panic!("seed {seed}: {outcome:?}");
        };
        assert_ne!(
            w.sim.endpoint(w.b).endpoint().peer_addr(peer),
            Some(w.server_addr)
        );
        let before = w.registrations();
        assert_eq!(before, 2, "seed {seed}");

        // B sends a datagram every 100 ms for 60 s; the server restarts 5 s in.
        let start = w.sim.now();
        for i in 0..600u32 {
            let b = w.b;
            w.sim
                .schedule(start + Duration::from_millis(100) * i, move |s| {
                    let _ = s.send_datagram(b, peer, format!("tick {i}").as_bytes());
                });
        }
        let secret = w.server_secret.clone();
        let server = w.server;
        w.sim.schedule(start + Duration::from_secs(5), move |s| {
            s.restart_endpoint(server, server_config(&secret, TokenPolicy::AnyToken));
        });
        w.sim.run_for(Duration::from_secs(61)).expect("runs");
        let got = w
            .sim
            .endpoint(w.a)
            .datagrams()
            .iter()
            .filter(|d| d.starts_with(b"tick "))
            .count();
        assert_eq!(
            got, 600,
            "seed {seed}: direct datagrams lost across the restart"
        );
        // The restarted server's log starts afresh: both daemons registered with it again.
        assert_eq!(w.registrations(), 2, "seed {seed}: {:?}", w.server_events());
        // Each daemon's application heard that its registration was lost, then back.
        for node in [w.a, w.b] {
            let events: Vec<&Event> = w.sim.endpoint(node).events()[..]
                .iter()
                .map(|l| &l.event)
                .skip_while(|e| !matches!(e, Event::RegistrationLost))
                .collect();
            assert!(
                events.iter().any(|e| matches!(e, Event::Registered { .. })),
                "seed {seed}: no RegistrationLost then Registered"
            );
        }
        let (again, _) = w.ask(Duration::from_secs(10));
        assert!(matches!(again, Some(Ok(_))), "seed {seed}: {again:?}");
    }
}

/// An endpoint node that also keeps a copy of every datagram it sends, and can be told to
/// send a recorded one again (as an on-path attacker would).
struct Tap {
    inner: EndpointNode,
    sent: Vec<Transmit>,
    replay: VecDeque<Transmit>,
}

impl Node for Tap {
    fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.inner.handle_input(now, from, bytes);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.replay.pop_front() {
            return Some(t);
        }
        let t = self.inner.poll_transmit()?;
        self.sent.push(t.clone());
        Some(t)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn drain_notes(&mut self, sink: &mut dyn FnMut(fmt::Arguments<'_>)) {
        self.inner.drain_notes(sink);
    }
}

/// Replayed registration: everything A sent the server in its first second (handshake
/// initiation, registration, renewals) is sent again, much later, from A's own address. The
/// server drops all of it as replays: no new registration, no new session, A's lease and
/// sessions unaffected.
#[test]
fn a_replayed_registration_changes_nothing() {
    let mut w = world_with(9, TokenPolicy::AnyToken, |config, seed, now| Tap {
        inner: EndpointNode::new("a", config, seed, now),
        sent: Vec::new(),
        replay: VecDeque::new(),
    });
    w.sim.run_for(Duration::from_secs(1)).expect("runs");
    let a_key = secret_key(9, "a").public_key();
    assert_eq!(w.registrations_of_a(&a_key), 1, "{:?}", w.server_events());
    let server_addr = w.server_addr;
    let recorded: Vec<Transmit> = w.sim.with_node(w.a, |t: &mut Tap, _| {
        t.sent
            .iter()
            .filter(|t| t.dst == server_addr)
            .cloned()
            .collect()
    });
    assert!(recorded.len() >= 2, "initiation and registration at least");
    w.sim.run_for(Duration::from_secs(40)).expect("runs");
    let stats_before = w.sim.endpoint(w.server).endpoint().stats().clone();
    let sessions_before = w.sim.endpoint(w.server).endpoint().session_count();
    // `with_node` drains the node's output right after the closure.
    w.sim.with_node(w.a, |t: &mut Tap, _| {
        t.replay.extend(recorded.iter().cloned())
    });
    w.sim.run_for(Duration::from_secs(5)).expect("runs");
    let stats = w.sim.endpoint(w.server).endpoint().stats();
    let dropped = (stats.dropped_replay + stats.dropped_handshake_replay)
        - (stats_before.dropped_replay + stats_before.dropped_handshake_replay);
    assert_eq!(dropped as usize, recorded.len(), "{stats:?}");
    assert_eq!(w.registrations_of_a(&a_key), 1, "{:?}", w.server_events());
    assert_eq!(w.expiries(), 0);
    assert_eq!(
        w.sim.endpoint(w.server).endpoint().session_count(),
        sessions_before
    );
    // A is still registered and reachable.
    w.sim
        .with_node(w.a, |t: &mut Tap, now| {
            t.inner
                .command(now, |ep, now| ep.expose(now, service(), "127.0.0.1:7"))
        })
        .expect("expose");
    let (outcome, _) = w.ask(Duration::from_secs(10));
    assert!(matches!(outcome, Some(Ok(_))), "{outcome:?}");
}
