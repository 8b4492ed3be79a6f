//! Route policy per service in the simulator, with real endpoints: one daemon exposes a
//! relay-only and a direct-only service, both behind full-cone NATs where a direct path is
//! always possible. Each connecting daemon follows the policy of the service it reaches (the
//! stricter of its own and the exposing side's); a direct-only connect to the relay-only
//! service fails with a reason that says so; a service whose policy its session cannot meet
//! fails at the connecting side, and a stream opened for it anyway is refused by the exposing
//! side.

use std::time::Duration;

use burrow_core::config::RendezvousConfig;
use burrow_core::forward::ExposeOptions;
use burrow_core::rendezvous::{ServerConfig, ServiceName};
use burrow_core::{Config, Event, Path, PeerId, RoutePolicy};
use burrow_sim::endpoint::secret_key;
use burrow_sim::link::LinkConfig;
use burrow_sim::nat::NatConfig;
use burrow_sim::scenario::{NodeId, Sim};
use burrow_sim::topology::{Network, Uplink};

const SERVER_PORT: u16 = 7000;
const DAEMON_PORT: u16 = 40000;
/// The reset code of a stream refused for its service's route policy.
const ROUTE_REFUSED: u64 = 0x5E03;

fn name(text: &str) -> ServiceName {
    text.parse().expect("valid name")
}

fn relayed() -> ServiceName {
    name("/route/relayed")
}

fn direct() -> ServiceName {
    name("/route/direct")
}

fn open() -> ServiceName {
    name("/route/open")
}

/// A public server; daemon A exposes `/route/relayed` (relay only), `/route/direct` (direct
/// only) and `/route/open` (the daemon's policy, any); daemons B and C connect. Each sits
/// behind its own full-cone NAT with a 15 ms uplink.
struct World {
    sim: Sim,
    a: NodeId,
    b: NodeId,
    c: NodeId,
}

impl World {
    /// `b_routes`: the route policies B's connects set for themselves.
    fn new(seed: u64, b_routes: &[(ServiceName, RoutePolicy)]) -> Self {
        let mut net = Network::new();
        let server_host = net.add_public_host("server", [198, 51, 100, 1]);
        let mut site = |name: &str, ext: [u8; 4], lan_ip: [u8; 4]| {
            let nat = net.add_nat(&format!("{name}-nat"), None, ext, NatConfig::full_cone());
            net.set_nat_uplink(
                nat,
                Uplink::new(4, LinkConfig::new(Duration::from_millis(15))),
            );
            let lan = net.add_site(&format!("{name}-lan"), Some(nat));
            net.add_host(lan, name, lan_ip)
        };
        let a_host = site("a", [203, 0, 113, 10], [192, 168, 1, 2]);
        let b_host = site("b", [198, 18, 0, 10], [10, 0, 0, 2]);
        let c_host = site("c", [198, 18, 1, 10], [10, 0, 1, 2]);
        let mut sim = Sim::new(net, seed);
        let server_secret = secret_key(seed, "server");
        let server = sim.add_endpoint(
            server_host,
            SERVER_PORT,
            "server",
            Config::server(server_secret.clone(), ServerConfig::default()),
        );
        let server_addr = sim.node_addr(server);
        let daemon = |sim: &Sim, name: &str, host, routes: &[(ServiceName, RoutePolicy)]| {
            let mut rendezvous =
                RendezvousConfig::new(server_secret.public_key(), server_addr, "route-test");
            rendezvous.host_candidates = vec![sim.network().host_addr(host, DAEMON_PORT)];
            rendezvous.connect_routes = routes.iter().cloned().collect();
            Config::daemon(secret_key(seed, name), rendezvous)
        };
        let configs = [
            daemon(&sim, "a", a_host, &[]),
            daemon(&sim, "b", b_host, b_routes),
            daemon(&sim, "c", c_host, &[]),
        ];
        let [a_config, b_config, c_config] = configs;
        let a = sim.add_endpoint(a_host, DAEMON_PORT, "a", a_config);
        let b = sim.add_endpoint(b_host, DAEMON_PORT, "b", b_config);
        let c = sim.add_endpoint(c_host, DAEMON_PORT, "c", c_config);
        for (service, route) in [
            (relayed(), Some(RoutePolicy::Relay)),
            (direct(), Some(RoutePolicy::Direct)),
            (open(), None),
        ] {
            let options = ExposeOptions {
                route,
                ..ExposeOptions::default()
            };
            sim.endpoint_command(a, |ep, now| {
                ep.expose_with(now, service, "127.0.0.1:7", options)
            })
            .expect("expose");
        }
        sim.run_for(Duration::from_secs(1)).expect("sim");
        Self { sim, a, b, c }
    }

    /// `node` asks for `service`; the outcome once known (within 10 s): the peer it is
    /// ready on, or the reason it failed.
    fn connect(&mut self, node: NodeId, service: ServiceName) -> Result<PeerId, String> {
        let seen = self.sim.endpoint(node).events().len();
        self.sim
            .endpoint_command(node, |ep, now| ep.connect_service(now, service.clone()))
            .expect("connect_service");
        let deadline = self.sim.now() + Duration::from_secs(10);
        let mut outcome = None;
        let _ = self.sim.run_until(deadline, |s| {
            let events = &s.endpoint(node).events()[seen..];
            outcome = events.iter().find_map(|l| match &l.event {
                Event::ServiceReady { service: s, peer } if *s == service => Some(Ok(*peer)),
                Event::ServiceFailed { service: s, reason } if *s == service => {
                    Some(Err(reason.clone()))
                }
                _ => None,
            });
            outcome.is_some()
        });
        outcome.unwrap_or_else(|| Err("no outcome within 10 s".into()))
    }

    fn path(&self, node: NodeId, peer: PeerId) -> Option<Path> {
        self.sim.endpoint(node).endpoint().peer_path(peer)
    }
}

#[test]
fn a_direct_only_connect_to_a_relay_only_service_fails_saying_why() {
    for seed in 0..2 {
        let mut w = World::new(seed, &[(relayed(), RoutePolicy::Direct)]);
        let b = w.b;
        let err = w.connect(b, relayed()).expect_err("no path satisfies both");
        assert!(
            err.contains("/route/relayed is exposed relay-only and this connect is direct-only"),
            "seed {seed}: {err}"
        );
        let ep = w.sim.endpoint(b).endpoint();
        assert_eq!(
            ep.stats().relayed_out,
            0,
            "seed {seed}: nothing was punched"
        );
        assert_eq!(ep.service_route(&relayed()), Some(RoutePolicy::Direct));
        // The other services of the same daemon are still reached, each its own way.
        let peer = w.connect(b, direct()).expect("direct-only service");
        assert!(
            matches!(w.path(b, peer), Some(Path::Direct(_))),
            "seed {seed}"
        );
    }
}

#[test]
fn mixed_services_on_one_daemon_each_follow_their_own_policy() {
    for seed in 0..2 {
        let mut w = World::new(seed, &[]);
        let (b, c) = (w.b, w.c);
        let to_relayed = w.connect(b, relayed()).expect("relay-only service");
        let to_direct = w.connect(c, direct()).expect("direct-only service");
        // Long enough for the relayed session's search to have found a direct path many
        // times over between two full-cone NATs.
        w.sim.run_for(Duration::from_secs(40)).expect("sim");
        assert!(
            matches!(w.path(b, to_relayed), Some(Path::Relay(_))),
            "seed {seed}: B reaches the relay-only service through the relay"
        );
        assert!(
            matches!(w.path(c, to_direct), Some(Path::Direct(_))),
            "seed {seed}: C reaches the direct-only service directly"
        );
        let bs = w.sim.endpoint(b).endpoint();
        assert_eq!(bs.stats().direct_upgrades, 0, "seed {seed}");
        assert_eq!(bs.service_route(&relayed()), Some(RoutePolicy::Relay));
        let cs = w.sim.endpoint(c).endpoint();
        assert_eq!(cs.stats().relayed_out, 0, "seed {seed}");
        assert_eq!(cs.service_route(&direct()), Some(RoutePolicy::Direct));
        // A's sessions hold the same: one relayed (to B), one direct (to C).
        let ea = w.sim.endpoint(w.a).endpoint();
        let paths: Vec<Path> = [b, c]
            .iter()
            .filter_map(|n| {
                let key = w.sim.endpoint(*n).endpoint().public_key();
                ea.peer_path(ea.peer_of(&key)?)
            })
            .collect();
        assert!(
            matches!(paths[..], [Path::Relay(_), Path::Direct(_)]),
            "seed {seed}: {paths:?}"
        );
    }
}

#[test]
fn a_service_its_session_cannot_carry_fails_and_its_streams_are_refused() {
    for seed in 0..2 {
        let mut w = World::new(seed, &[]);
        let b = w.b;
        // The service of A's daemon policy comes first: the session goes direct.
        let peer = w.connect(b, open()).expect("any-path service");
        assert!(
            matches!(w.path(b, peer), Some(Path::Direct(_))),
            "seed {seed}"
        );
        let err = w.connect(b, relayed()).expect_err("the session is direct");
        assert!(
            err.contains("the session to its daemon is direct now") && err.contains("relay-only"),
            "seed {seed}: {err}"
        );
        // A stream opened for it anyway (B's introduction granted it at A) is refused by A,
        // with the route code.
        let stream = w
            .sim
            .endpoint_command(b, |ep, now| ep.open_stream(now, peer, &relayed()))
            .expect("open_stream");
        w.sim.run_for(Duration::from_secs(1)).expect("sim");
        let reset = w.sim.endpoint(b).events().iter().any(|l| {
            matches!(l.event, Event::StreamReset { stream: s, code, .. }
                if s == stream && code == ROUTE_REFUSED)
        });
        assert!(reset, "seed {seed}: A refused the stream for its route");
        let a = w.sim.endpoint(w.a).endpoint();
        assert_eq!(a.stats().streams_route_refused, 1, "seed {seed}");
        assert!(
            !w.sim
                .endpoint(w.a)
                .events()
                .iter()
                .any(|l| matches!(&l.event, Event::IncomingStream { service, .. } if *service == relayed())),
            "seed {seed}: never handed to A's application"
        );
    }
}
