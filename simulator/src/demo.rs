//! Named scenarios for the `burrow-sim` binary and the speed benchmark.
//!
//! Every scenario is a function of the seed only, so `burrow-sim trace <name> --seed N` prints the
//! same bytes on every run.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::link::{GilbertElliott, LinkConfig};
use crate::nat::{NatConfig, Unsolicited};
use crate::scenario::{Sim, SimConfig, SimError};
use crate::topology::{Attachment, Network, Uplink};
use crate::toy::ScriptedNode;
use crate::trace::TraceMode;

/// A named, seed-parameterised scenario.
pub struct Scenario {
    /// Name used on the command line.
    pub name: &'static str,
    /// One-line description.
    pub about: &'static str,
    /// Virtual time the scenario runs for.
    pub duration: Duration,
    build: fn(&SimConfig) -> Sim,
}

impl Scenario {
    /// Builds the scenario's simulation (not yet run).
    pub fn build(&self, cfg: &SimConfig) -> Sim {
        (self.build)(cfg)
    }

    /// Builds and runs the scenario for its duration.
    pub fn run(&self, seed: u64, trace: TraceMode) -> Result<Sim, SimError> {
        let mut sim = self.build(&SimConfig::new(seed).trace(trace));
        sim.run_for(self.duration)?;
        Ok(sim)
    }
}

/// All named scenarios.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "echo",
        about: "a public client pings a public echo server five times",
        duration: Duration::from_secs(1),
        build: echo,
    },
    Scenario {
        name: "nat-echo",
        about: "a client behind a Linux NAT behind a carrier-grade NAT pings a public echo server",
        duration: Duration::from_secs(1),
        build: nat_echo,
    },
    Scenario {
        name: "lossy",
        about: "100 datagrams through a NAT over a jittery, bursty-lossy, duplicating uplink",
        duration: Duration::from_secs(3),
        build: lossy,
    },
    Scenario {
        name: "clash",
        about: "the Linux conntrack clash: an early probe makes the host leave from another port",
        duration: Duration::from_secs(1),
        build: clash,
    },
    Scenario {
        name: "ttl",
        about: "probes with TTL 2, 3, 4 and 64 towards a host behind a NAT 3 hops away",
        duration: Duration::from_secs(5),
        build: ttl,
    },
];

/// Looks up a scenario by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const SERVER: [u8; 4] = [198, 51, 100, 1];

fn echo(cfg: &SimConfig) -> Sim {
    let mut net = Network::new();
    let server = net.add_public_host("server", SERVER);
    let client = net.add_public_host("client", [192, 0, 2, 10]);
    let mut sim = Sim::with_config(net, cfg.clone());
    sim.add_node(server, 7, ScriptedNode::new().echo());
    let dst = sim.network().host_addr(server, 7);
    let node =
        ScriptedNode::new().send_series(Duration::ZERO, Duration::from_millis(50), 5, dst, 32);
    sim.add_node(client, 40000, node);
    sim
}

fn nat_echo(cfg: &SimConfig) -> Sim {
    let mut net = Network::new();
    let server = net.add_public_host("server", SERVER);
    let cgn = net.add_nat("cgn", None, ip(203, 0, 113, 1), NatConfig::symmetric());
    let (_, client) = net.add_natted_host(
        "client",
        Some(cgn),
        ip(100, 64, 0, 2),
        NatConfig::linux(),
        ip(192, 168, 1, 2),
    );
    let mut sim = Sim::with_config(net, cfg.clone());
    sim.add_node(server, 7, ScriptedNode::new().echo());
    let dst = sim.network().host_addr(server, 7);
    let node =
        ScriptedNode::new().send_series(Duration::ZERO, Duration::from_millis(50), 5, dst, 32);
    sim.add_node(client, 40000, node);
    sim
}

fn lossy(cfg: &SimConfig) -> Sim {
    let mut net = Network::new();
    let server = net.add_public_host("server", SERVER);
    let (nat, client) = net.add_natted_host(
        "client",
        None,
        ip(203, 0, 113, 1),
        NatConfig::port_restricted_cone(),
        ip(192, 168, 1, 2),
    );
    let link = LinkConfig::new(Duration::from_millis(20))
        .jitter(Duration::from_millis(15))
        .loss(0.05)
        .burst_loss(GilbertElliott::new(0.02, 0.3, 0.8))
        .duplicate(0.02)
        .reorder(0.05, Duration::from_millis(30));
    net.set_nat_uplink(nat, Uplink::new(3, link));
    let mut sim = Sim::with_config(net, cfg.clone());
    sim.add_node(server, 7, ScriptedNode::new().echo());
    let dst = sim.network().host_addr(server, 7);
    let node =
        ScriptedNode::new().send_series(Duration::ZERO, Duration::from_millis(10), 100, dst, 200);
    sim.add_node(client, 40000, node);
    sim
}

fn clash(cfg: &SimConfig) -> Sim {
    let mut net = Network::new();
    let peer = net.add_public_host("peer", SERVER);
    let (_, host) = net.add_natted_host(
        "host",
        None,
        ip(203, 0, 113, 1),
        NatConfig::linux().with_unsolicited(Unsolicited::Conntrack),
        ip(192, 168, 1, 2),
    );
    let mut sim = Sim::with_config(net, cfg.clone());
    let nat_addr = SocketAddr::new(ip(203, 0, 113, 1), 5000);
    let peer_addr = sim.network().host_addr(peer, 6000);
    // The peer's punch arrives first and creates a local conntrack entry 5000 <-> peer:6000 ...
    sim.add_node(
        peer,
        6000,
        ScriptedNode::new().send_at(Duration::ZERO, nat_addr, b"early punch"),
    );
    // ... so the host's own punch, from 5000, has to leave from another port.
    let node = ScriptedNode::new().send_at(Duration::from_millis(100), peer_addr, b"late punch");
    sim.add_node(host, 5000, node);
    sim
}

fn ttl(cfg: &SimConfig) -> Sim {
    let mut net = Network::new();
    let prober = net.add_public_host("prober", SERVER);
    let (nat, host) = net.add_natted_host(
        "host",
        None,
        ip(203, 0, 113, 1),
        NatConfig::full_cone(),
        ip(192, 168, 1, 2),
    );
    net.set_hops_between(
        Attachment::Site(net.host_site(prober)),
        Attachment::Nat(nat),
        2,
    );
    let mut sim = Sim::with_config(net, cfg.clone());
    let prober_addr = sim.network().host_addr(prober, 7);
    let mapped = SocketAddr::new(ip(203, 0, 113, 1), 5000);
    sim.add_node(
        host,
        5000,
        ScriptedNode::new().send_at(Duration::ZERO, prober_addr, b"open"),
    );
    let s = Duration::from_secs;
    let node = ScriptedNode::new()
        .send_at_ttl(s(1), mapped, Some(2), b"ttl 2")
        .send_at_ttl(s(2), mapped, Some(3), b"ttl 3")
        .send_at_ttl(s(3), mapped, Some(4), b"ttl 4")
        .send_at(s(4), mapped, b"ttl 64");
    sim.add_node(prober, 7, node);
    sim
}

/// The benchmark scenario: a client behind a NAT sends 100 datagrams of 64 bytes, one per
/// millisecond, to a public echo server (200 deliveries in all).
pub fn speed_sim(seed: u64) -> Sim {
    let mut net = Network::new();
    let server = net.add_public_host("server", SERVER);
    let (_, client) = net.add_natted_host(
        "client",
        None,
        ip(203, 0, 113, 1),
        NatConfig::linux(),
        ip(192, 168, 1, 2),
    );
    let mut sim = Sim::new(net, seed);
    sim.add_node(server, 7, ScriptedNode::new().echo());
    let dst = sim.network().host_addr(server, 7);
    let node =
        ScriptedNode::new().send_series(Duration::ZERO, Duration::from_millis(1), 100, dst, 64);
    sim.add_node(client, 40000, node);
    sim
}

/// Totals over a batch of benchmark runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpeedTotals {
    /// Scenarios run.
    pub scenarios: u64,
    /// Datagrams delivered to nodes.
    pub delivered: u64,
    /// Events processed.
    pub events: u64,
}

/// Runs `count` benchmark scenarios (seeds `0..count`) to completion.
pub fn speed_batch(count: u64) -> Result<SpeedTotals, SimError> {
    let mut t = SpeedTotals::default();
    for seed in 0..count {
        let mut sim = speed_sim(seed);
        sim.run_until_idle()?;
        t.scenarios += 1;
        t.delivered += sim.stats().delivered;
        t.events += sim.events();
    }
    Ok(t)
}

/// Datagrams the daemon sends in an endpoint benchmark scenario.
pub const ENDPOINT_SPEED_DATAGRAMS: u32 = 100;

/// The endpoint benchmark scenario: a real daemon endpoint behind a Linux NAT connects to a real
/// public server endpoint (Noise IK) and sends it [`ENDPOINT_SPEED_DATAGRAMS`] datagrams of 64
/// bytes, one per millisecond from the start (the first ones wait for the handshake). Returns
/// the simulation and the server's node.
pub fn endpoint_speed_sim(seed: u64) -> (Sim, crate::NodeId) {
    use crate::endpoint::secret_key;
    use burrow_core::Config;

    let mut net = Network::new();
    let srv_host = net.add_public_host("server", SERVER);
    let (_, home) = net.add_natted_host(
        "daemon",
        None,
        ip(203, 0, 113, 1),
        NatConfig::linux(),
        ip(192, 168, 1, 2),
    );
    let mut sim = Sim::new(net, seed);
    let server_key = secret_key(seed, "server");
    let key = server_key.public_key();
    let server = sim.add_endpoint(srv_host, 7000, "server", Config::new(server_key));
    let daemon = sim.add_endpoint(
        home,
        40000,
        "daemon",
        Config::new(secret_key(seed, "daemon")),
    );
    let addr = sim.node_addr(server);
    let peer = sim
        .connect(daemon, key, addr)
        .expect("the server's key is not the daemon's own");
    for i in 0..ENDPOINT_SPEED_DATAGRAMS {
        sim.schedule(Duration::from_millis(u64::from(i)), move |sim| {
            // The queue holds 256 datagrams, more than the handshake can hold back.
            let _ = sim.send_datagram(daemon, peer, &[i as u8; 64]);
        });
    }
    (sim, server)
}

/// Runs `count` endpoint benchmark scenarios (seeds `0..count`), each until the server has
/// every datagram.
pub fn endpoint_speed_batch(count: u64) -> Result<SpeedTotals, SimError> {
    let mut t = SpeedTotals::default();
    let want = ENDPOINT_SPEED_DATAGRAMS as usize;
    for seed in 0..count {
        let (mut sim, server) = endpoint_speed_sim(seed);
        sim.run_until(Duration::from_secs(10), |s| {
            s.endpoint(server).datagram_count() == want
        })?;
        t.scenarios += 1;
        t.delivered += sim.stats().delivered;
        t.events += sim.events();
    }
    Ok(t)
}
