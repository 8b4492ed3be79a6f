//! A dead peer is noticed in seconds (issue 13). Daemon A exposes a large source, a local
//! client on daemon B downloads it through the forwarders, and mid-transfer A either
//! vanishes (its process is gone: no close, nothing more on the wire) or stops politely.
//! B's client must then see a reset, never a clean end: within the liveness timeout (5 s of
//! virtual time) when A vanished, within one round trip when A closed.

use std::time::Duration;

use burrow_core::config::RendezvousConfig;
use burrow_core::forward::{ConnId, ForwardConfig, ListenerId};
use burrow_core::rendezvous::{ServerConfig, ServerEvent, ServiceName};
use burrow_core::{CloseReason, Config, Event};
use burrow_sim::endpoint::secret_key;
use burrow_sim::link::LinkConfig;
use burrow_sim::local::{LocalClose, LocalService};
use burrow_sim::scenario::{NodeId, Sim};
use burrow_sim::topology::{Network, Uplink};
use burrow_sim::toy::ScriptedNode;

const SERVER_PORT: u16 = 7000;
const DAEMON_PORT: u16 = 40000;
const TARGET: &str = "127.0.0.1:8080";
/// The download: far more than the link carries before A goes away.
const TOTAL: usize = 64 << 20;

fn name() -> ServiceName {
    "/live/download".parse().expect("valid name")
}

/// A public server and two daemons on public hosts, each behind a 20 ms, 20 Mbit/s uplink.
struct World {
    sim: Sim,
    server: NodeId,
    a: NodeId,
    b: NodeId,
    listener: ListenerId,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut net = Network::new();
        let mut host = |name: &str, ip: [u8; 4]| {
            let site = net.add_site(&format!("{name}-site"), None);
            let mut link = LinkConfig::new(Duration::from_millis(20));
            link.bandwidth_bps = Some(20_000_000);
            net.set_site_uplink(site, Uplink::new(2, link));
            net.add_host(site, name, ip)
        };
        let (srv, a, b) = (
            host("server", [198, 51, 100, 1]),
            host("a", [203, 0, 113, 10]),
            host("b", [198, 18, 0, 10]),
        );
        let mut sim = Sim::new(net, seed);
        let server_secret = secret_key(seed, "server");
        let server = sim.add_endpoint(
            srv,
            SERVER_PORT,
            "server",
            Config::server(server_secret.clone(), ServerConfig::default()),
        );
        let rendezvous = RendezvousConfig::new(
            server_secret.public_key(),
            sim.node_addr(server),
            "liveness",
        );
        let mut daemon = |host, who: &str| {
            let config = Config::daemon(secret_key(seed, who), rendezvous.clone());
            sim.add_forwarding_endpoint(host, DAEMON_PORT, who, config, ForwardConfig::default())
        };
        let (a, b) = (daemon(a, "a"), daemon(b, "b"));
        sim.endpoint_command(a, |ep, now| ep.expose(now, name(), TARGET))
            .expect("expose");
        let data = vec![0x5A; TOTAL].into();
        sim.local_target(a, TARGET, LocalService::Source(data));
        let listener = sim.forward_listen(b, name());
        sim.run_for(Duration::from_secs(2)).expect("sim");
        Self {
            sim,
            server,
            a,
            b,
            listener,
        }
    }

    /// A client on B starts the download and runs until it has 1 MiB of it.
    fn download(&mut self) -> ConnId {
        let client = self.sim.local_accept(self.b, self.listener);
        let b = self.b;
        self.sim
            .run_until(Duration::from_secs(30), |s| {
                s.local_conn(b, client).received().len() >= 1 << 20
            })
            .expect("the download starts");
        client
    }

    /// Runs until B's client is closed (at most `limit` of virtual time); how it ended.
    fn until_closed(&mut self, client: ConnId, limit: Duration) -> LocalClose {
        let b = self.b;
        self.sim
            .run_until(limit, |s| s.local_conn(b, client).closed().is_some())
            .expect("sim");
        let conn = self.sim.local_conn(b, client);
        let received = conn.received().len();
        assert!(
            received < TOTAL,
            "the transfer was cut short: {received} bytes"
        );
        conn.closed()
            .cloned()
            .expect("the client's connection ended")
    }

    /// Why B's session with A closed.
    fn b_close_reason(&self) -> Option<CloseReason> {
        self.sim
            .endpoint(self.b)
            .events()
            .iter()
            .find_map(|l| match l.event {
                Event::SessionClosed { reason, key, .. }
                    if key == self.sim.endpoint(self.a).endpoint().public_key() =>
                {
                    Some(reason)
                }
                _ => None,
            })
    }
}

#[test]
fn a_vanished_exposing_daemon_resets_the_download_within_five_seconds() {
    for seed in 1..=3 {
        let mut w = World::new(seed);
        let a_key = w.sim.endpoint(w.a).endpoint().public_key();
        let client = w.download();
        // A's process is gone: no close, no packets, nothing answers at its address.
        let vanished = w.sim.now();
        w.sim.replace_node(w.a, ScriptedNode::new());
        let closed = w.until_closed(client, Duration::from_secs(60));
        let took = closed.at - vanished;
        println!("seed {seed}: the client was reset {took:?} after A vanished");
        assert!(closed.abort, "a reset, never a clean end: {closed:?}");
        assert!(took <= Duration::from_secs(5), "reset after {took:?}");
        let reason = w
            .sim
            .endpoint(w.b)
            .events()
            .iter()
            .find_map(|l| match l.event {
                Event::SessionClosed { reason, key, .. } if key == a_key => Some(reason),
                _ => None,
            });
        assert_eq!(reason, Some(CloseReason::PeerUnresponsive));
    }
}

#[test]
fn a_stopping_exposing_daemon_resets_the_download_within_one_round_trip() {
    for seed in 1..=3 {
        let mut w = World::new(seed);
        let client = w.download();
        let a_key = w.sim.endpoint(w.a).endpoint().public_key();
        let peer = w
            .sim
            .endpoint(w.b)
            .events()
            .iter()
            .find_map(|l| match l.event {
                Event::ServiceReady { peer, .. } => Some(peer),
                _ => None,
            })
            .expect("B found the service");
        let rtt = w
            .sim
            .endpoint(w.b)
            .endpoint()
            .peer_rtt(peer)
            .expect("B's session with A");
        let stopped = w.sim.now();
        w.sim.endpoint_command(w.a, |ep, now| ep.shutdown(now));
        let closed = w.until_closed(client, Duration::from_secs(60));
        let took = closed.at - stopped;
        println!("seed {seed}: the client was reset {took:?} after A stopped (RTT {rtt:?})");
        assert!(closed.abort, "a reset, never a clean end: {closed:?}");
        // One way is half a round trip; the queue on A's uplink may hold the close behind
        // the data already sent, so allow the full round trip.
        assert!(took <= rtt, "reset after {took:?}, RTT {rtt:?}");
        assert!(
            matches!(w.b_close_reason(), Some(CloseReason::Peer(_))),
            "{:?}",
            w.b_close_reason()
        );
        // The server forgot A's registration at once: A unregistered before closing.
        let unregistered = w
            .sim
            .endpoint(w.server)
            .events()
            .iter()
            .find(|l| matches!(l.event, Event::Rendezvous(ServerEvent::Unregistered { key }) if key == a_key))
            .map(|l| l.at);
        let at = unregistered.expect("the server heard A unregister");
        assert!(at - stopped <= rtt, "unregistered after {:?}", at - stopped);
    }
}
