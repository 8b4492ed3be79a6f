//! The NAT traversal matrix: two daemons behind NATs of every kind, one rendezvous server (which
//! relays), and for each pair whether they got a direct path or the relay, how long the first
//! tunnelled byte took, and whether that matches what RFC 4787 permits.
//!
//! Each run: a public server; daemon A exposes `/matrix/echo` and daemon B asks for it one
//! second in, or once both are registered if loss delayed that; B opens a stream and writes
//! one byte as soon as the service is ready. "First byte" is the time from B's request to A
//! reading that byte.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use burrow_core::config::RendezvousConfig;
use burrow_core::rendezvous::{ServerConfig, ServiceName};
use burrow_core::{Config, Event, Path, ReadOutcome};

use crate::endpoint::secret_key;
use crate::link::LinkConfig;
use crate::nat::{Filtering, Mapping, NatConfig, PortAllocation, Unsolicited};
use crate::scenario::{NodeId, Sim, SimConfig};
use crate::topology::{Network, Uplink};
use crate::trace::TraceMode;

const SERVER_PORT: u16 = 7000;
const DAEMON_PORT: u16 = 40000;
const SERVICE: &str = "/matrix/echo";
/// One-way latency of each site's uplink; the peer-to-peer RTT is four of these.
const UPLINK_DELAY: Duration = Duration::from_millis(15);
/// One-way latency of a site's LAN.
const LAN_DELAY: Duration = Duration::from_micros(200);
/// One-way latency of the link from a home NAT to the carrier NAT in front of it.
const INNER_LINK_DELAY: Duration = Duration::from_millis(2);
/// One-way latency of the server's uplink (the default link's).
const SERVER_UPLINK_DELAY: Duration = Duration::from_millis(5);
/// When B asks for the service at the earliest (both daemons registered, normally; with loss
/// a registration may take longer, and B waits for both).
const ASK_AT: Duration = Duration::from_secs(1);

/// A kind of site: one NAT, or a home NAT behind a carrier-grade NAT.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Short name for the matrix.
    pub name: &'static str,
    /// The NATs from the host outwards.
    pub nats: Vec<NatConfig>,
}

impl Profile {
    /// The profiles of the matrix: every RFC 4787 mapping/filtering combination that occurs in
    /// practice, each port allocation (preserving, sequential, random) with both an
    /// endpoint-independent and an endpoint-dependent mapping, the Linux conntrack clash, and
    /// a carrier-grade NAT.
    pub fn all() -> Vec<Profile> {
        let p = |name, nats| Profile { name, nats };
        vec![
            p("full-cone", vec![NatConfig::full_cone()]),
            p("restricted", vec![NatConfig::restricted_cone()]),
            p("port-restricted", vec![NatConfig::port_restricted_cone()]),
            p(
                "cone-sequential",
                vec![
                    NatConfig::port_restricted_cone()
                        .with_port_allocation(PortAllocation::Sequential),
                ],
            ),
            p(
                "cone-random",
                vec![
                    NatConfig::port_restricted_cone().with_port_allocation(PortAllocation::Random),
                ],
            ),
            p(
                "linux-drop",
                vec![NatConfig {
                    unsolicited: Unsolicited::Drop,
                    ..NatConfig::linux()
                }],
            ),
            p("linux-clash", vec![NatConfig::linux()]),
            p(
                "addr-dependent",
                vec![NatConfig::new(
                    Mapping::AddressDependent,
                    Filtering::AddressDependent,
                )],
            ),
            p("symmetric", vec![NatConfig::symmetric()]),
            p(
                "symmetric-seq",
                vec![NatConfig::symmetric().with_port_allocation(PortAllocation::Sequential)],
            ),
            // As in the real-NAT lab: a Linux home NAT right behind a Linux carrier NAT, which
            // takes unsolicited packets into conntrack.
            p(
                "cgn",
                vec![
                    NatConfig {
                        unsolicited: Unsolicited::Drop,
                        ..NatConfig::linux()
                    },
                    NatConfig::linux(),
                ],
            ),
        ]
    }

    /// Whether every NAT maps endpoint-independently (one external port for all peers).
    fn mapping_independent(&self) -> bool {
        self.nats
            .iter()
            .all(|n| n.mapping == Mapping::EndpointIndependent)
    }

    /// Whether the outermost filtering lets in a peer's packets from a port we never sent to.
    fn filtering_open_to_other_ports(&self) -> bool {
        self.nats
            .iter()
            .all(|n| n.filtering != Filtering::AddressAndPortDependent)
    }

    /// Whether the port this site's mapping gets toward a new peer can be predicted from its
    /// reflexive port: every NAT that maps endpoint-dependently allocates sequentially, so the
    /// mapping toward the peer lies just above the reflexive port (within
    /// `burrow_core`'s `PREDICTED_PORTS`, since the peer's reflexive address is the first new
    /// destination punching sends to).
    fn mapping_predictable(&self) -> bool {
        self.nats.iter().all(|n| {
            n.mapping == Mapping::EndpointIndependent
                || n.port_allocation == PortAllocation::Sequential
        })
    }
}

/// What RFC 4787 allows for a pair, with port prediction: a direct path needs both mappings
/// endpoint-independent, or one side's mapping endpoint-independent and either its filtering
/// open to the other side's unknown port, or the other side's port predictable (sequential
/// allocation: punching also sends to the ports just above the reflexive one, which opens even
/// an address-and-port-dependent filter for the port the other side's NAT picks). Two
/// endpoint-dependent mappings stay relayed: each side's prediction creates further mappings
/// on its own NAT, so neither side's guess matches the port the other side sends from.
pub fn direct_possible(a: &Profile, b: &Profile) -> bool {
    match (a.mapping_independent(), b.mapping_independent()) {
        (true, true) => true,
        (true, false) => a.filtering_open_to_other_ports() || b.mapping_predictable(),
        (false, true) => b.filtering_open_to_other_ports() || a.mapping_predictable(),
        (false, false) => false,
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A direct path carried the first byte after this long.
    Direct(Duration),
    /// The relay carried the first byte after `first_byte`; where a direct path exists the
    /// session moved to it `upgraded` after the connect request.
    Relay {
        /// From the connect request to the first byte.
        first_byte: Duration,
        /// From the connect request to the move to a direct path, if it came within
        /// [`UPGRADE_WAIT`] of the first byte.
        upgraded: Option<Duration>,
    },
    /// Nothing got through; the text says how far it got.
    Fail(String),
}

/// How long a relayed run keeps going after its first byte to see whether the session finds
/// a direct path.
pub const UPGRADE_WAIT: Duration = Duration::from_secs(120);

impl Outcome {
    /// The time to the first tunnelled byte, on whichever path carried it.
    pub fn first_byte(&self) -> Option<Duration> {
        match self {
            Outcome::Direct(t) => Some(*t),
            Outcome::Relay { first_byte, .. } => Some(*first_byte),
            Outcome::Fail(_) => None,
        }
    }

    /// Whether the session ended up on a direct path.
    pub fn ends_direct(&self) -> bool {
        matches!(
            self,
            Outcome::Direct(_)
                | Outcome::Relay {
                    upgraded: Some(_),
                    ..
                }
        )
    }
}

/// One cell of the matrix.
#[derive(Clone, Debug)]
pub struct PairResult {
    /// A's profile name.
    pub a: &'static str,
    /// B's profile name.
    pub b: &'static str,
    /// The seed.
    pub seed: u64,
    /// What happened.
    pub outcome: Outcome,
    /// Whether RFC 4787 permits a direct path here.
    pub direct_possible: bool,
    /// The peer-to-peer round-trip time of the topology.
    pub rtt: Duration,
    /// The round-trip time through the relay (A, server, B, server, A), from the links'
    /// latencies (jitter aside).
    pub relay_rtt: Duration,
}

impl PairResult {
    /// Whether the outcome is the one expected: a working path always, ending direct exactly
    /// where RFC 4787 permits it and relayed elsewhere.
    pub fn as_expected(&self) -> bool {
        !matches!(self.outcome, Outcome::Fail(_))
            && self.outcome.ends_direct() == self.direct_possible
    }
}

impl fmt::Display for PairResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match &self.outcome {
            Outcome::Direct(t) => format!(
                "direct  {:>6.1} ms ({:.1} RTT)",
                t.as_secs_f64() * 1e3,
                t.as_secs_f64() / self.rtt.as_secs_f64()
            ),
            Outcome::Relay {
                first_byte,
                upgraded,
            } => {
                let then = match upgraded {
                    Some(u) => format!(", direct after {:.1} s", u.as_secs_f64()),
                    None => String::new(),
                };
                format!(
                    "relay   {:>6.1} ms ({:.1} RTT){then}",
                    first_byte.as_secs_f64() * 1e3,
                    first_byte.as_secs_f64() / self.rtt.as_secs_f64()
                )
            }
            Outcome::Fail(why) => format!("fail    {why}"),
        };
        let mark = if self.as_expected() {
            ""
        } else {
            "  << unexpected"
        };
        write!(f, "{:<16} {:<16} {outcome}{mark}", self.a, self.b)
    }
}

/// Knobs of a run besides the two profiles.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Random loss on every uplink, each way.
    pub loss: f64,
    /// Force every punching probe to this TTL (instead of the adaptive 2..=7 climb), to show
    /// what TTL-limited first probes are for.
    pub probe_ttl: Option<u8>,
    /// A 2 ms uplink at A and a 30 ms LAN at B, so A's first packets reach B's NAT before B's
    /// own have left it.
    pub skewed: bool,
    /// Both daemons start on the relay at once (`SessionConfig::relay_first`).
    pub relay_first: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            loss: 0.0,
            probe_ttl: None,
            skewed: false,
            relay_first: false,
        }
    }
}

/// Runs one pair with one seed and link `loss` on every uplink.
pub fn run_pair(a: &Profile, b: &Profile, seed: u64, loss: f64) -> PairResult {
    run_pair_with(
        a,
        b,
        seed,
        RunOptions {
            loss,
            ..RunOptions::default()
        },
    )
}

/// Runs one pair with one seed and `options`.
pub fn run_pair_with(a: &Profile, b: &Profile, seed: u64, options: RunOptions) -> PairResult {
    let loss = options.loss;
    let mut net = Network::new();
    let server_host = net.add_public_host("server", [198, 51, 100, 1]);
    let link = LinkConfig::new(UPLINK_DELAY)
        .jitter(Duration::from_millis(1))
        .loss(loss);
    let mut site =
        |name: &str, ip: [u8; 4], profile: &Profile, uplink: LinkConfig, lan_delay: Duration| {
            let mut behind = None;
            let mut outer = None;
            for (i, nat) in profile.nats.iter().enumerate().rev() {
                let ext = [ip[0], ip[1], ip[2], ip[3] + i as u8];
                let id = net.add_nat(&format!("{name}-nat{i}"), behind, ext, nat.clone());
                if behind.is_none() {
                    outer = Some(id);
                } else {
                    // The home NAT's uplink plugs straight into the carrier NAT: the
                    // carrier NAT is the next hop, as in the real-NAT lab.
                    net.set_nat_uplink(id, Uplink::new(0, LinkConfig::new(INNER_LINK_DELAY)));
                }
                behind = Some(id);
            }
            net.set_nat_uplink(outer.expect("a profile has a NAT"), Uplink::new(4, uplink));
            let lan = net.add_site(&format!("{name}-lan"), behind);
            net.set_site_lan(lan, LinkConfig::new(lan_delay));
            net.add_host(lan, name, [192, 168, 1, 2])
        };
    // Skewed: A is close to the core and B sits behind a slow LAN, so A's packets reach B's NAT
    // before B's own first packet has left it (the situation that triggers the clash).
    let (a_up, b_lan) = if options.skewed {
        (
            LinkConfig::new(Duration::from_millis(2)).loss(loss),
            Duration::from_millis(30),
        )
    } else {
        (link.clone(), Duration::from_micros(200))
    };
    let a_host = site("a", [203, 0, 113, 10], a, a_up, Duration::from_micros(200));
    let b_host = site("b", [198, 18, 0, 10], b, link, b_lan);
    let labels = (a.name, b.name, direct_possible(a, b));
    let mut result = run_on(net, [server_host, a_host, b_host], seed, options, labels);
    // One way from a host to the core: its LAN, 2 ms per NAT behind another, the uplink.
    let one_way = |p: &Profile, lan: Duration, up: Duration| {
        lan + INNER_LINK_DELAY * (p.nats.len() as u32 - 1) + up
    };
    let (a_way, b_way) = if options.skewed {
        (
            one_way(a, LAN_DELAY, Duration::from_millis(2)),
            one_way(b, Duration::from_millis(30), UPLINK_DELAY),
        )
    } else {
        (
            one_way(a, LAN_DELAY, UPLINK_DELAY),
            one_way(b, LAN_DELAY, UPLINK_DELAY),
        )
    };
    result.relay_rtt = (a_way + b_way + SERVER_UPLINK_DELAY * 2) * 2;
    result
}

/// Two daemons on one LAN behind one NAT without hairpinning: only their host candidates can
/// connect them, and they must.
pub fn run_same_nat(seed: u64, options: RunOptions) -> PairResult {
    let mut net = Network::new();
    let server_host = net.add_public_host("server", [198, 51, 100, 1]);
    let link = LinkConfig::new(UPLINK_DELAY)
        .jitter(Duration::from_millis(1))
        .loss(options.loss);
    let nat = net.add_nat(
        "office-nat",
        None,
        [203, 0, 113, 10],
        NatConfig::linux().with_hairpinning(false),
    );
    net.set_nat_uplink(nat, Uplink::new(4, link));
    let lan = net.add_site("office", Some(nat));
    let a_host = net.add_host(lan, "a", [192, 168, 1, 2]);
    let b_host = net.add_host(lan, "b", [192, 168, 1, 3]);
    run_on(
        net,
        [server_host, a_host, b_host],
        seed,
        options,
        ("same-nat", "same-nat", true),
    )
}

/// The common part of every run: server, daemons, service, first byte.
fn run_on(
    net: Network,
    [server_host, a_host, b_host]: [crate::topology::HostId; 3],
    seed: u64,
    options: RunOptions,
    (a_name, b_name, possible): (&'static str, &'static str, bool),
) -> PairResult {
    let mut sim = Sim::with_config(net, SimConfig::new(seed).trace(TraceMode::Off));
    let server_secret = secret_key(seed, "server");
    let server = sim.add_endpoint(
        server_host,
        SERVER_PORT,
        "server",
        Config::server(server_secret.clone(), ServerConfig::default()),
    );
    let server_addr = sim.node_addr(server);
    let daemon = |name: &str, host_addr: SocketAddr| {
        let mut rendezvous =
            RendezvousConfig::new(server_secret.public_key(), server_addr, "matrix");
        rendezvous.host_candidates = vec![host_addr];
        let mut config = Config::daemon(secret_key(seed, name), rendezvous);
        config.session.relay_first = options.relay_first;
        if let Some(ttl) = options.probe_ttl {
            config.session.punch_ttl_start = ttl;
            config.session.punch_ttl_ceiling = ttl;
        }
        config
    };
    let a_addr = sim.network().host_addr(a_host, DAEMON_PORT);
    let b_addr = sim.network().host_addr(b_host, DAEMON_PORT);
    let node_a = sim.add_endpoint(a_host, DAEMON_PORT, "a", daemon("a", a_addr));
    let node_b = sim.add_endpoint(b_host, DAEMON_PORT, "b", daemon("b", b_addr));
    let service: ServiceName = SERVICE.parse().expect("valid name");
    let rtt = UPLINK_DELAY * 4;
    let relay_rtt = (UPLINK_DELAY + SERVER_UPLINK_DELAY) * 4;
    let result = |outcome| PairResult {
        a: a_name,
        b: b_name,
        seed,
        outcome,
        direct_possible: possible,
        rtt,
        relay_rtt,
    };
    let svc = service.clone();
    let _ = sim.endpoint_command(node_a, |ep, now| ep.expose(now, svc, "127.0.0.1:7"));
    if let Err(e) = sim.run_until_time(ASK_AT) {
        return result(Outcome::Fail(format!("sim: {e}")));
    }
    let registered = |s: &Sim, n| {
        s.endpoint(n)
            .events()
            .iter()
            .any(|l| matches!(l.event, Event::Registered { .. }))
    };
    let _ = sim.run_until(ASK_AT + Duration::from_secs(30), |s| {
        registered(s, node_a) && registered(s, node_b)
    });
    let asked = sim.now();
    let svc = service.clone();
    let _ = sim.endpoint_command(node_b, |ep, now| ep.connect_service(now, svc));
    let ready = wait_for(&mut sim, node_b, Duration::from_secs(30), |e| match e {
        Event::ServiceReady { peer, .. } => Some(*peer),
        _ => None,
    });
    let Some(peer) = ready else {
        let why = failure(&sim, node_b);
        return result(Outcome::Fail(why));
    };
    let svc = service.clone();
    let opened = sim.endpoint_command(node_b, |ep, now| {
        let stream = ep.open_stream(now, peer, &svc)?;
        ep.stream_write(now, peer, stream, b"!")
    });
    if let Err(e) = opened {
        return result(Outcome::Fail(format!("open: {e}")));
    }
    let incoming = wait_for(&mut sim, node_a, Duration::from_secs(10), |e| match e {
        Event::IncomingStream { peer, stream, .. } => Some((*peer, *stream)),
        _ => None,
    });
    let Some((a_peer, stream)) = incoming else {
        return result(Outcome::Fail("service ready, but no stream arrived".into()));
    };
    // The byte may come in a later packet than the header: read at each readable edge.
    let deadline = sim.now() + Duration::from_secs(10);
    let mut first_byte = None;
    while first_byte.is_none() && sim.now() < deadline {
        let read = sim.endpoint_command(node_a, |ep, now| {
            ep.stream_read(now, a_peer, stream, &mut [0u8; 8])
        });
        match read {
            Ok(ReadOutcome::Data(_)) => first_byte = Some(sim.now()),
            Ok(ReadOutcome::Blocked) => {
                let left = deadline - sim.now();
                let readable = wait_for(&mut sim, node_a, left, |e| match e {
                    Event::StreamReadable { stream: s, .. } if *s == stream => Some(()),
                    _ => None,
                });
                if readable.is_none() {
                    break;
                }
            }
            other => return result(Outcome::Fail(format!("read: {other:?}"))),
        }
    }
    let Some(at) = first_byte else {
        return result(Outcome::Fail(
            "the stream arrived but its byte did not".into(),
        ));
    };
    let first_byte = at - asked;
    let path = |sim: &Sim| sim.endpoint(node_b).endpoint().peer_path(peer);
    match path(&sim) {
        Some(Path::Direct(addr)) if addr == server_addr => result(Outcome::Fail(
            "a direct path to the server's address".into(),
        )),
        Some(Path::Direct(_)) => result(Outcome::Direct(first_byte)),
        Some(Path::Relay(_)) => {
            // Keep going: the daemons look for a direct path while relayed.
            let mut upgraded = None;
            let _ = sim.run_until(sim.now() + UPGRADE_WAIT, |s| {
                if matches!(path(s), Some(Path::Direct(_))) {
                    upgraded = Some(s.now() - asked);
                }
                upgraded.is_some()
            });
            result(Outcome::Relay {
                first_byte,
                upgraded,
            })
        }
        None => result(Outcome::Fail("the session ended".into())),
    }
}

/// Runs until `pick` finds something in `node`'s events (new ones only), or `limit` of
/// virtual time passes.
fn wait_for<T>(
    sim: &mut Sim,
    node: NodeId,
    limit: Duration,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Option<T> {
    let seen = sim.endpoint(node).events().len();
    let deadline = sim.now() + limit;
    let mut found = None;
    let _ = sim.run_until(deadline, |s| {
        found = s.endpoint(node).events()[seen..]
            .iter()
            .find_map(|l| pick(&l.event));
        found.is_some()
    });
    found
}

fn failure(sim: &Sim, node: NodeId) -> String {
    let events = sim.endpoint(node).events();
    let last = events.iter().rev().find_map(|l| match &l.event {
        Event::ServiceFailed { reason, .. } => Some(format!("service failed: {reason}")),
        Event::SessionClosed { reason, .. } => Some(format!("session closed: {reason}")),
        _ => None,
    });
    last.unwrap_or_else(|| "no path within 30 s".into())
}

/// Runs every ordered pair of `profiles` (both start orders: B, which asks for A's service,
/// starts the session) with each seed, then two daemons behind one NAT without hairpinning.
pub fn matrix(profiles: &[Profile], seeds: &[u64], loss: f64) -> Vec<PairResult> {
    let mut out = Vec::new();
    for a in profiles {
        for b in profiles {
            for &seed in seeds {
                out.push(run_pair(a, b, seed, loss));
            }
        }
    }
    for &seed in seeds {
        let options = RunOptions {
            loss,
            ..RunOptions::default()
        };
        out.push(run_same_nat(seed, options));
    }
    out
}
