//! `burrow-sim demo`: real burrow endpoints through NATs, on virtual time.
//!
//! A public burrow server (answering STUN) and two daemons, each behind its own NAT on a lossy
//! uplink. Each daemon asks the server for its reflexive address over STUN, connects with a
//! Noise IK handshake, then sends a few pings that the server's application echoes back. The
//! report is a timeline of what happened, per-node figures (handshake time, RTT, datagrams
//! delivered, endpoint counters) and a verdict.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use burrow_core::ProbeOutcome;
use burrow_core::{Config, Event, PeerId, PublicKey, Stats};

use crate::endpoint::{ShowEvent, secret_key, short_key};
use crate::link::LinkConfig;
use crate::nat::{NatConfig, PortAllocation};
use crate::scenario::{NodeId, Sim, SimConfig, SimError};
use crate::topology::{Network, Uplink};
use crate::trace::TraceMode;

/// Pings each daemon sends once connected.
pub const PINGS: u32 = 5;
/// Time between two pings.
const PING_INTERVAL: Duration = Duration::from_millis(200);
/// How long after its last ping a daemon waits for the echo.
const PONG_GRACE: Duration = Duration::from_secs(2);
/// The whole demo must finish within this much virtual time.
const LIMIT: Duration = Duration::from_secs(60);
/// The server's UDP port.
pub const SERVER_PORT: u16 = 7000;

/// What a demo run produced.
#[derive(Debug)]
pub struct DemoReport {
    /// The human-readable report: set-up, timeline, figures and verdict.
    pub text: String,
    /// The packet trace (with endpoint events as notes), when asked for.
    pub trace: Option<String>,
    /// What went wrong; empty on success.
    pub failures: Vec<String>,
}

impl DemoReport {
    /// Whether every daemon reached the server and exchanged datagrams.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One daemon's progress through the demo.
struct Daemon {
    name: &'static str,
    node: NodeId,
    setup: String,
    /// Events of the node already looked at.
    cursor: usize,
    mapped: Option<(SocketAddr, Duration)>,
    connect_at: Option<Duration>,
    peer: Option<PeerId>,
    handshake: Option<Duration>,
    /// Round-trip time of each ping, once echoed.
    rtts: Vec<Option<Duration>>,
    last_ping_at: Option<Duration>,
    closed: Option<String>,
}

impl Daemon {
    fn done(&self, now: Duration) -> bool {
        self.closed.is_some()
            || self.rtts.iter().all(Option::is_some) && !self.rtts.is_empty()
            || self.last_ping_at.is_some_and(|t| now >= t + PONG_GRACE)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A ping: sequence number and send time (nanoseconds since origin).
fn ping(seq: u32, at: Duration) -> Vec<u8> {
    let mut p = b"ping".to_vec();
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(at.as_nanos() as u64).to_be_bytes());
    p
}

fn parse_ping(data: &[u8]) -> Option<(u32, Duration)> {
    let rest = data.strip_prefix(b"ping")?;
    let seq = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let at = u64::from_be_bytes(rest.get(4..12)?.try_into().ok()?);
    Some((seq, Duration::from_nanos(at)))
}

struct Demo {
    sim: Sim,
    server: NodeId,
    server_addr: SocketAddr,
    server_key: PublicKey,
    daemons: Vec<Daemon>,
    server_cursor: usize,
    timeline: Vec<(Duration, String)>,
}

impl Demo {
    fn build(seed: u64, trace: TraceMode) -> Self {
        let mut net = Network::new();
        let srv_host = net.add_public_host("server", ip(198, 51, 100, 1));
        net.set_site_uplink(
            net.host_site(srv_host),
            Uplink::new(2, LinkConfig::new(Duration::from_millis(3))),
        );
        let lossy = |ms: u64, jitter: u64| {
            LinkConfig::new(Duration::from_millis(ms))
                .jitter(Duration::from_millis(jitter))
                .loss(0.01)
        };
        let (alice_nat, alice_host) = net.add_natted_host(
            "alice",
            None,
            ip(203, 0, 113, 10),
            NatConfig::linux(),
            ip(192, 168, 1, 2),
        );
        net.set_nat_uplink(alice_nat, Uplink::new(3, lossy(12, 2)));
        let bob_nat_cfg =
            NatConfig::port_restricted_cone().with_port_allocation(PortAllocation::Random);
        let (bob_nat, bob_host) = net.add_natted_host(
            "bob",
            None,
            ip(203, 0, 113, 20),
            bob_nat_cfg,
            ip(10, 0, 0, 2),
        );
        net.set_nat_uplink(bob_nat, Uplink::new(5, lossy(30, 6)));

        let mut sim = Sim::with_config(net, SimConfig::new(seed).trace(trace));
        let key = secret_key(seed, "server");
        let server_key = key.public_key();
        let mut cfg = Config::new(key);
        cfg.answer_stun = true;
        let server = sim.add_echo_endpoint(srv_host, SERVER_PORT, "server", cfg);
        let server_addr = sim.node_addr(server);
        let mut daemons = Vec::new();
        for (name, host, setup) in [
            (
                "alice",
                alice_host,
                "192.168.1.2:40000 behind a Linux NAT (conntrack) at 203.0.113.10, 12+-2 ms, 1% loss",
            ),
            (
                "bob",
                bob_host,
                "10.0.0.2:40000 behind a port-restricted cone NAT (random ports) at 203.0.113.20, 30+-6 ms, 1% loss",
            ),
        ] {
            let node = sim.add_endpoint(host, 40000, name, Config::new(secret_key(seed, name)));
            daemons.push(Daemon {
                name,
                node,
                setup: setup.to_owned(),
                cursor: 0,
                mapped: None,
                connect_at: None,
                peer: None,
                handshake: None,
                rtts: Vec::new(),
                last_ping_at: None,
                closed: None,
            });
        }
        Self {
            sim,
            server,
            server_addr,
            server_key,
            daemons,
            server_cursor: 0,
            timeline: Vec::new(),
        }
    }

    fn log(&mut self, at: Duration, who: &str, what: String) {
        self.timeline.push((at, format!("{who:<6} {what}")));
    }

    fn connect(&mut self, i: usize) {
        let now = self.sim.now();
        let d = &self.daemons[i];
        let node = d.node;
        match self.sim.connect(node, self.server_key, self.server_addr) {
            Ok(peer) => {
                let d = &mut self.daemons[i];
                d.peer = Some(peer);
                d.connect_at = Some(now);
            }
            Err(e) => self.daemons[i].closed = Some(format!("connect refused: {e}")),
        }
    }

    fn start_pings(&mut self, i: usize, peer: PeerId) {
        let now = self.sim.now();
        let node = self.daemons[i].node;
        self.daemons[i].rtts = vec![None; PINGS as usize];
        for seq in 0..PINGS {
            let at = now + PING_INTERVAL * seq;
            self.sim.schedule(at, move |sim| {
                let payload = ping(seq, sim.now());
                // A refused send shows up as a missing echo.
                let _ = sim.send_datagram(node, peer, &payload);
            });
        }
        self.daemons[i].last_ping_at = Some(now + PING_INTERVAL * (PINGS - 1));
    }

    /// Looks at a daemon's new events and acts on them as its application would.
    fn advance(&mut self, i: usize) {
        let node = self.daemons[i].node;
        let events = self.sim.endpoint(node).events()[self.daemons[i].cursor..].to_vec();
        self.daemons[i].cursor += events.len();
        let name = self.daemons[i].name;
        for l in events {
            match l.event {
                Event::Stun(ProbeOutcome::Mapped { mapped, .. }) => {
                    self.daemons[i].mapped = Some((mapped, l.at));
                    self.log(
                        l.at,
                        name,
                        format!("STUN: reflexive address {mapped} ({:.1} ms)", ms(l.at)),
                    );
                    self.log(
                        l.at,
                        name,
                        format!("handshake -> server {} (Noise IK)", self.server_addr),
                    );
                    self.connect(i);
                }
                Event::Stun(ProbeOutcome::TimedOut { .. }) => {
                    self.log(l.at, name, "STUN: no answer; connecting anyway".to_owned());
                    self.connect(i);
                }
                Event::Connected { peer, path, .. } => {
                    let addr = path.addr();
                    let took = l.at - self.daemons[i].connect_at.unwrap_or_default();
                    self.daemons[i].handshake = Some(took);
                    self.log(
                        l.at,
                        name,
                        format!(
                            "connected to server {addr} in {:.1} ms; sending {PINGS} pings",
                            ms(took)
                        ),
                    );
                    self.start_pings(i, peer);
                }
                Event::Datagram { data, .. } => {
                    if let Some((seq, sent)) = parse_ping(&data) {
                        let rtt = l.at - sent;
                        if let Some(slot) = self.daemons[i].rtts.get_mut(seq as usize) {
                            *slot = Some(rtt);
                        }
                        self.log(
                            l.at,
                            name,
                            format!("echo of ping {seq}: rtt {:.1} ms", ms(rtt)),
                        );
                    }
                }
                Event::SessionClosed { reason, .. } => {
                    self.daemons[i].closed = Some(reason.to_string());
                    self.log(l.at, name, format!("session closed: {reason}"));
                }
                ref other => self.log(l.at, name, ShowEvent(other).to_string()),
            }
        }
    }

    /// Logs the server's new events (its application echoes datagrams by itself).
    fn advance_server(&mut self) {
        let events = self.sim.endpoint(self.server).events()[self.server_cursor..].to_vec();
        self.server_cursor += events.len();
        for l in events {
            let line = match &l.event {
                Event::Connected { peer, key, path } => {
                    let who = self.who(key);
                    let addr = path.addr();
                    format!(
                        "accepted {who} as {peer} (key {}) from {addr}",
                        short_key(key)
                    )
                }
                Event::Datagram { .. } => continue,
                other => ShowEvent(other).to_string(),
            };
            self.log(l.at, "server", line);
        }
    }

    fn who(&self, key: &PublicKey) -> &'static str {
        self.daemons
            .iter()
            .find(|d| secret_key(self.sim.seed(), d.name).public_key() == *key)
            .map_or("unknown key", |d| d.name)
    }

    fn run(&mut self) -> Result<(), SimError> {
        for i in 0..self.daemons.len() {
            let (node, name) = (self.daemons[i].node, self.daemons[i].name);
            self.log(
                Duration::ZERO,
                name,
                format!("STUN probe -> {}", self.server_addr),
            );
            self.sim.stun_probe(node, self.server_addr);
        }
        loop {
            for i in 0..self.daemons.len() {
                self.advance(i);
            }
            self.advance_server();
            let now = self.sim.now();
            if self.daemons.iter().all(|d| d.done(now)) || now > LIMIT || !self.sim.step()? {
                return Ok(());
            }
        }
    }
}

fn stats_line(s: &Stats) -> String {
    let dropped = s.dropped_malformed
        + s.dropped_bad_mac
        + s.dropped_no_cookie
        + s.dropped_handshake
        + s.dropped_handshake_replay
        + s.dropped_unknown_peer
        + s.dropped_unexpected
        + s.dropped_unknown_index
        + s.dropped_replay
        + s.dropped_auth
        + s.dropped_expired
        + s.dropped_bad_payload;
    format!(
        "datagrams out {} in {}, bytes out {} in {}, handshakes {}, stun {}, dropped {dropped}",
        s.datagrams_out,
        s.datagrams_in,
        s.bytes_out,
        s.bytes_in,
        s.handshakes_completed,
        s.stun_received
    )
}

/// Runs the demo with `seed`; `trace` also records the packet trace.
pub fn run(seed: u64, trace: bool) -> DemoReport {
    let mode = if trace {
        TraceMode::Full
    } else {
        TraceMode::Off
    };
    let mut demo = Demo::build(seed, mode);
    let mut failures = Vec::new();
    if let Err(e) = demo.run() {
        failures.push(format!("simulation failed: {e}"));
    }
    let mut t = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        t,
        "burrow-sim demo (seed {seed}): real burrow endpoints through simulated NATs, virtual time\n"
    );
    let _ = writeln!(
        t,
        "  server {}  public, answers STUN, echoes datagrams, key {}",
        demo.server_addr,
        short_key(&demo.server_key)
    );
    for d in &demo.daemons {
        let _ = writeln!(t, "  {:<6} {}", d.name, d.setup);
    }
    let _ = writeln!(t, "\ntimeline (ms since start):");
    for (at, line) in &demo.timeline {
        let _ = writeln!(t, "  {:>8.1}  {line}", ms(*at));
    }
    let _ = writeln!(t, "\nsummary:");
    for d in &demo.daemons {
        let stats = demo.sim.endpoint(d.node).endpoint().stats();
        let got: Vec<Duration> = d.rtts.iter().flatten().copied().collect();
        let rtt = if got.is_empty() {
            "rtt -".to_owned()
        } else {
            let min = got.iter().min().copied().unwrap_or_default();
            let max = got.iter().max().copied().unwrap_or_default();
            let avg = got.iter().sum::<Duration>() / got.len() as u32;
            format!(
                "rtt min/avg/max {:.1}/{:.1}/{:.1} ms",
                ms(min),
                ms(avg),
                ms(max)
            )
        };
        let _ = writeln!(
            t,
            "  {:<6} reflexive {}, handshake {}, echoed {}/{PINGS}, {rtt}",
            d.name,
            d.mapped.map_or("-".to_owned(), |(a, _)| a.to_string()),
            d.handshake
                .map_or("-".to_owned(), |h| format!("{:.1} ms", ms(h))),
            got.len(),
        );
        let _ = writeln!(t, "         {}", stats_line(stats));
        match (&d.closed, d.handshake, got.len()) {
            (Some(why), _, _) => failures.push(format!("{}: session closed: {why}", d.name)),
            (None, None, _) => failures.push(format!("{}: never connected to the server", d.name)),
            (None, Some(_), 0) => failures.push(format!("{}: no ping was echoed", d.name)),
            _ => {}
        }
        if d.mapped.is_none() {
            failures.push(format!("{}: STUN probe got no answer", d.name));
        }
    }
    let server = demo.sim.endpoint(demo.server);
    let _ = writeln!(
        t,
        "  server sessions {}, datagrams echoed {}",
        server.endpoint().session_count(),
        server.datagram_count()
    );
    let _ = writeln!(t, "         {}", stats_line(server.endpoint().stats()));
    let n = demo.sim.stats();
    let _ = writeln!(
        t,
        "  network sent {}, delivered {}, dropped {} (link loss {}, NAT filter {}), virtual time {:.1} ms",
        n.sent,
        n.delivered,
        n.dropped,
        n.link_drops,
        n.nat_drops,
        ms(demo.sim.now())
    );
    let verdict = if failures.is_empty() {
        "ok: both daemons learned their reflexive address, completed a handshake and exchanged datagrams with the server".to_owned()
    } else {
        format!("FAILED: {}", failures.join("; "))
    };
    let _ = writeln!(t, "\n{verdict}");
    DemoReport {
        text: t,
        trace: trace.then(|| demo.sim.trace().text().to_owned()),
        failures,
    }
}
