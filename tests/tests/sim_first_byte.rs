//! Issue 16: how many relay round trips a relayed connection's first bytes cost. "The
//! request" is the local client's TCP connect at the connecting daemon's listener (B, with
//! `relay_first`); from it the scenario times the client's first byte at the service behind
//! the exposing daemon (A), and the service's first byte back at the client (a server-first
//! protocol such as SSH: the service speaks at once). A relay round trip is B to the server to
//! A and back; simulated time is deterministic, so the counts are asserted.
//!
//! Where the round trips go (seed 1, 80.8 ms relay RTT): lookup at the server 0.25,
//! introductions at both daemons 0.5, both initiate through the relay. B (smaller key) answers
//! A's at 1.0 and is up as it answers (0.5-RTT data through the relay), so the stream opens at
//! 1.0, reaches A at 1.5 and the banner is back at 2.0. When B holds the larger key its own
//! handshake would win the tie-break: up only when A's response is back at 1.5, stream at A
//! 2.0, banner back 2.5. So B, which asked for the introduction, holds its first handshake
//! back for A's (`Session::yield_first_handshake`), answers it at 1.0, and the counts are the
//! same in both key orders.

use std::time::Duration;

use burrow_core::config::RendezvousConfig;
use burrow_core::forward::{ForwardConfig, ListenerId};
use burrow_core::rendezvous::{ServerConfig, ServiceName};
use burrow_core::{Config, Event, Path};
use burrow_sim::endpoint::secret_key;
use burrow_sim::link::LinkConfig;
use burrow_sim::local::LocalService;
use burrow_sim::nat::NatConfig;
use burrow_sim::scenario::{NodeId, Sim, SimConfig};
use burrow_sim::topology::{Network, Uplink};
use burrow_sim::trace::TraceMode;

const SERVER_PORT: u16 = 7000;
const DAEMON_PORT: u16 = 40000;
const SERVICE: &str = "/fb/banner";
const TARGET: &str = "127.0.0.1:22";
const BANNER: &[u8] = b"SSH-2.0-burrow-sim\r\n";

struct World {
    sim: Sim,
    a: NodeId,
    b: NodeId,
    listener: ListenerId,
}

impl World {
    /// `a_relay_first`: whether A starts on the relay too (B always does).
    fn new(seed: u64, trace: TraceMode, nat: NatConfig, a_relay_first: bool) -> Self {
        let mut net = Network::new();
        let server_host = net.add_public_host("server", [198, 51, 100, 1]);
        let mut site = |name: &str, ext: [u8; 4], lan_ip: [u8; 4]| {
            let nat = net.add_nat(&format!("{name}-nat"), None, ext, nat.clone());
            net.set_nat_uplink(
                nat,
                Uplink::new(4, LinkConfig::new(Duration::from_millis(15))),
            );
            let lan = net.add_site(&format!("{name}-lan"), Some(nat));
            net.add_host(lan, name, lan_ip)
        };
        let a_host = site("a", [203, 0, 113, 10], [192, 168, 1, 2]);
        let b_host = site("b", [198, 18, 0, 10], [10, 0, 0, 2]);
        let mut sim = Sim::with_config(net, SimConfig::new(seed).trace(trace));
        let server_secret = secret_key(seed, "server");
        let server = sim.add_endpoint(
            server_host,
            SERVER_PORT,
            "server",
            Config::server(server_secret.clone(), ServerConfig::default()),
        );
        let server_addr = sim.node_addr(server);
        let daemon = |sim: &mut Sim, who: &str, host, relay_first: bool| {
            let mut rendezvous =
                RendezvousConfig::new(server_secret.public_key(), server_addr, "fb-test");
            rendezvous.host_candidates = vec![sim.network().host_addr(host, DAEMON_PORT)];
            let mut config = Config::daemon(secret_key(seed, who), rendezvous);
            config.session.relay_first = relay_first;
            sim.add_forwarding_endpoint(host, DAEMON_PORT, who, config, ForwardConfig::default())
        };
        let a = daemon(&mut sim, "a", a_host, a_relay_first);
        let b = daemon(&mut sim, "b", b_host, true);
        let service: ServiceName = SERVICE.parse().expect("valid name");
        sim.endpoint_command(a, |ep, now| ep.expose(now, service.clone(), TARGET))
            .expect("expose");
        sim.local_target(a, TARGET, LocalService::Source(BANNER.to_vec().into()));
        let listener = sim.forward_listen(b, service);
        sim.run_for(Duration::from_secs(2)).expect("sim");
        Self {
            sim,
            a,
            b,
            listener,
        }
    }
}

/// What one run measured, in simulated time since the client's connect.
#[derive(Debug)]
struct FirstBytes {
    /// B to the server to A and back.
    relay_rtt: Duration,
    /// The client's first byte at A's service.
    to_service: Duration,
    /// The service's first byte back at B's client.
    to_client: Duration,
    /// B's path when its client got that byte.
    path_then: Option<Path>,
    /// Whether B holds the larger key (its handshake would win the tie-break, so it holds
    /// its first one back for A's).
    b_larger: bool,
    /// When B's path to A was first direct.
    direct: Option<Duration>,
}

impl FirstBytes {
    fn rtts(&self, d: Duration) -> f64 {
        d.as_secs_f64() / self.relay_rtt.as_secs_f64()
    }
}

fn first_bytes(seed: u64) -> FirstBytes {
    first_bytes_with(seed, true)
}

fn first_bytes_with(seed: u64, a_relay_first: bool) -> FirstBytes {
    let mut w = World::new(
        seed,
        TraceMode::Off,
        NatConfig::port_restricted_cone(),
        a_relay_first,
    );
    let start = w.sim.now();
    let (a, b) = (w.a, w.b);
    let conn = w.sim.local_accept(b, w.listener);
    assert!(w.sim.local_write(b, conn, b"x"));
    let (mut to_service, mut to_client, mut path_then) = (None, None, None);
    let path = |s: &Sim| {
        let peer = s.endpoint(b).events().iter().find_map(|l| match l.event {
            Event::ServiceReady { peer, .. } => Some(peer),
            _ => None,
        })?;
        s.endpoint(b).endpoint().peer_path(peer)
    };
    let _ = w.sim.run_until(start + Duration::from_secs(10), |s| {
        let at = s.now() - start;
        let target = s.endpoint(a).local().conns().map(|(_, c)| c).next();
        if to_service.is_none() && target.is_some_and(|t| !t.received().is_empty()) {
            to_service = Some(at);
        }
        if to_client.is_none() && !s.local_conn(b, conn).received().is_empty() {
            to_client = Some(at);
            path_then = path(s);
        }
        to_service.is_some() && to_client.is_some()
    });
    let to_service = to_service.expect("the client's byte reached the service");
    let to_client = to_client.expect("the service's byte reached the client");
    let mut direct = None;
    let _ = w.sim.run_until(start + Duration::from_secs(30), |s| {
        if matches!(path(s), Some(Path::Direct(_))) {
            direct = Some(s.now() - start);
        }
        direct.is_some()
    });
    // B to the server to A: half a relay round trip (A's grant, from the introduction).
    let when = |n, f: &dyn Fn(&Event) -> bool| {
        w.sim
            .endpoint(n)
            .events()
            .iter()
            .find(|l| l.at >= start && f(&l.event))
            .map(|l| l.at - start)
            .expect("the event happened")
    };
    let at_a = when(a, &|e| matches!(e, Event::AccessGranted { .. }));
    let b_key = secret_key(seed, "b").public_key();
    let a_key = secret_key(seed, "a").public_key();
    FirstBytes {
        relay_rtt: at_a * 2,
        to_service,
        to_client,
        path_then,
        b_larger: b_key > a_key,
        direct,
    }
}

/// Relay first between two cone NATs, in both key orders (seeds whose keys put B first and
/// last): the client's first byte reaches the service within 1.5 relay RTTs of its connect,
/// the service's first byte is back at the client within 2, over the relay, and the pair then
/// moves to the direct path.
#[test]
fn a_relayed_first_byte_within_two_relay_rtts_of_the_connect_then_direct() {
    let mut orders = [false, false];
    let mut wrong = Vec::new();
    for seed in 1..=6 {
        let r = first_bytes(seed);
        orders[usize::from(r.b_larger)] = true;
        let line = format!(
            "seed {seed}: B's key the {}; relay RTT {:?}; client's byte at the service {:.2} RTT, service's byte at the client {:.2} RTT over {:?}; direct {:?} after the connect",
            if r.b_larger { "larger" } else { "smaller" },
            r.relay_rtt,
            r.rtts(r.to_service),
            r.rtts(r.to_client),
            r.path_then,
            r.direct,
        );
        println!("{line}");
        // A millisecond for the hosts' LANs along the way.
        let slack = Duration::from_millis(1);
        let ok = r.to_service <= r.relay_rtt * 3 / 2 + slack
            && r.to_client <= r.relay_rtt * 2 + slack
            && matches!(r.path_then, Some(Path::Relay(_)))
            && r.direct
                .is_some_and(|d| d <= r.to_client + Duration::from_secs(2));
        if !ok {
            wrong.push(line);
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(orders, [true, true], "both key orders ran");
}

/// B holds its first handshake back for A's only so long: when A's does not come (A punches
/// first and joins the relay only after `relay_after`, 2 s), B's own goes after the wait
/// (twice its server RTT and the punching lead) and the first bytes still cross well within
/// a second, where waiting for A's relayed handshake would have cost over two.
#[test]
fn a_held_back_first_handshake_still_goes_when_the_peer_sends_none() {
    let mut larger = 0;
    for seed in 1..=6 {
        let r = first_bytes_with(seed, false);
        if !r.b_larger {
            continue;
        }
        larger += 1;
        println!(
            "seed {seed}: relay RTT {:?}; client's byte at the service after {:?}, service's byte at the client after {:?} over {:?}",
            r.relay_rtt, r.to_service, r.to_client, r.path_then
        );
        assert!(
            r.to_client < Duration::from_secs(1),
            "seed {seed}: the service's byte took {:?}",
            r.to_client
        );
    }
    assert!(larger > 0, "a seed gave B the larger key");
}
