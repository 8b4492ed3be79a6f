//! Real [`burrow_core::Endpoint`]s as simulation nodes.
//!
//! [`EndpointNode`] wraps one endpoint bound to one simulated UDP address. It follows the core's
//! run-loop contract: after every call it drains `poll_event` and keeps each event with the
//! virtual time it was reported at, so scenarios and tests can look at what happened afterwards.
//! Application commands go through the [`Sim`] helpers in this module ([`Sim::connect`],
//! [`Sim::send_datagram`], ...), which call the endpoint at the current virtual time and then let
//! the simulator drain its output.
//!
//! Keys and RNG seeds come from the simulation seed and the node's name
//! ([`secret_key`], [`endpoint_seed`]), so a run depends only on (scenario, seed).
//!
//! ```
//! use std::time::Duration;
//! use burrow_core::{Config, Event};
//! use burrow_sim::endpoint::secret_key;
//! use burrow_sim::{NatConfig, Network, Sim};
//!
//! let mut net = Network::new();
//! let srv_host = net.add_public_host("server", [198, 51, 100, 1]);
//! let (_, home) = net.add_natted_host("daemon", None, [203, 0, 113, 1], NatConfig::linux(), [192, 168, 1, 2]);
//! let mut sim = Sim::new(net, 1);
//! let server_key = secret_key(sim.seed(), "server");
//! let server = sim.add_endpoint(srv_host, 7000, "server", Config::new(server_key.clone()));
//! let daemon = sim.add_endpoint(home, 40000, "daemon", Config::new(secret_key(sim.seed(), "daemon")));
//! let peer = sim.connect(daemon, server_key.public_key(), sim.node_addr(server)).unwrap();
//! sim.run_until(Duration::from_secs(5), |s| s.endpoint(daemon).is_connected(peer))?;
//! sim.send_datagram(daemon, peer, b"hello").unwrap();
//! sim.run_for(Duration::from_secs(1))?;
//! assert_eq!(sim.endpoint(server).datagrams(), vec![b"hello".to_vec()]);
//! # Ok::<(), burrow_sim::SimError>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use burrow_core::ProbeOutcome;
use burrow_core::forward::{ConnId, ForwardConfig, Forwarder, ListenerId};
use burrow_core::rendezvous::ServiceName;
use burrow_core::{
    Config, ConnectError, Endpoint, Event, PeerId, PublicKey, SecretKey, SendError, Transmit,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::clock::origin;
use crate::local::LocalSockets;
use crate::node::Node;
use crate::scenario::{NodeId, Sim};
use crate::topology::HostId;
use crate::trace::fnv1a64;

/// Wall-clock time (since the Unix epoch) at the simulation origin, given to endpoints as
/// `unix_now` (2025-06-15T16:26:40Z, a fixed value so runs are reproducible).
pub const UNIX_AT_ORIGIN: Duration = Duration::from_secs(1_750_004_800);

/// 32 bytes derived from the simulation seed, a node name and a purpose.
fn derive(seed: u64, name: &str, purpose: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&fnv1a64(name.as_bytes()).to_le_bytes());
    key[16..24].copy_from_slice(&fnv1a64(purpose.as_bytes()).to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    let mut out = [0u8; 32];
    rng.fill_bytes(&mut out);
    out
}

/// The static key of the node called `name` in a run with seed `seed`.
pub fn secret_key(seed: u64, name: &str) -> SecretKey {
    SecretKey::from_bytes(derive(seed, name, "static key"))
}

/// The RNG seed of the endpoint called `name`, started for the `life`-th time (0 for the first
/// start, 1 after one restart, ...) in a run with seed `seed`.
pub fn endpoint_seed(seed: u64, name: &str, life: u32) -> [u8; 32] {
    derive(seed, name, &format!("endpoint rng {life}"))
}

/// One event an endpoint reported, with the virtual time (since origin) it was reported at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// Virtual time of the call that produced the event.
    pub at: Duration,
    /// The event.
    pub event: Event,
}

/// A [`burrow_core::Endpoint`] bound to one simulated address, with the log of its events.
pub struct EndpointNode {
    name: String,
    ep: Endpoint,
    life: u32,
    events: Vec<Logged>,
    /// Events already written to the trace.
    noted: usize,
    echo: bool,
    echo_failures: u64,
    /// Timer calls that produced nothing and left a deadline at or before `now`.
    stalls: u64,
    /// The endpoint's transmits, drained after every call.
    out: VecDeque<Transmit>,
    /// Virtual time of the latest call.
    now: Instant,
    /// The hosted forwarder, if any, and the configuration to restart it with.
    fwd: Option<(Forwarder, ForwardConfig)>,
    /// The in-memory local sockets the forwarder's actions are carried out on.
    local: LocalSockets,
}

impl fmt::Debug for EndpointNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointNode")
            .field("name", &self.name)
            .field("endpoint", &self.ep)
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl EndpointNode {
    /// A fresh endpoint called `name`, started at virtual time `now` with RNG seed `seed`.
    pub fn new(name: &str, config: Config, seed: [u8; 32], now: Instant) -> Self {
        let unix_now = UNIX_AT_ORIGIN + now.saturating_duration_since(origin());
        Self {
            name: name.to_owned(),
            ep: Endpoint::new(config, seed, now, unix_now),
            life: 0,
            events: Vec::new(),
            noted: 0,
            echo: false,
            echo_failures: 0,
            stalls: 0,
            out: VecDeque::new(),
            now,
            fwd: None,
            local: LocalSockets::default(),
        }
    }

    /// Makes the node host a [`Forwarder`] whose local connections are in-memory
    /// ([`crate::local`]): every endpoint event goes to it, and its actions are carried out by
    /// fake sockets, at the virtual time of the call that produced them.
    pub fn with_forwarder(mut self, config: ForwardConfig) -> Self {
        self.fwd = Some((Forwarder::new(config.clone()), config));
        self
    }

    /// The hosted forwarder, if any.
    pub fn forwarder(&self) -> Option<&Forwarder> {
        self.fwd.as_ref().map(|(f, _)| f)
    }

    /// The in-memory local sockets (connections and targets).
    pub fn local(&self) -> &LocalSockets {
        &self.local
    }

    pub(crate) fn local_mut(&mut self) -> &mut LocalSockets {
        &mut self.local
    }

    /// `Forwarder::listen`.
    ///
    /// # Panics
    ///
    /// If the node hosts no forwarder.
    pub fn listen(&mut self, service: ServiceName) -> ListenerId {
        self.hosted().listen(service)
    }

    /// A local connection arrives on `listener` at virtual time `now`: the forwarder's handle
    /// for it, or `None` for a listener it does not know.
    ///
    /// # Panics
    ///
    /// If the node hosts no forwarder.
    pub fn local_accept(&mut self, now: Instant, listener: ListenerId) -> Option<ConnId> {
        self.now = now;
        let (fwd, _) = self.fwd.as_mut().expect("the node hosts a forwarder");
        let conn = fwd.handle_accept(now, &mut self.ep, listener);
        if let Some(conn) = conn {
            self.local.accepted(conn, listener);
        }
        self.collect();
        conn
    }

    /// Runs `f` on the local sockets, the forwarder and the endpoint at virtual time `now`
    /// (the local application did something), then drains everything it caused.
    pub(crate) fn local_io<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut LocalSockets, &mut Forwarder, &mut Endpoint) -> R,
    ) -> R {
        self.now = now;
        let (fwd, _) = self.fwd.as_mut().expect("the node hosts a forwarder");
        let r = f(&mut self.local, fwd, &mut self.ep);
        self.collect();
        r
    }

    fn hosted(&mut self) -> &mut Forwarder {
        &mut self.fwd.as_mut().expect("the node hosts a forwarder").0
    }

    /// Makes the node's application echo every datagram it receives back to its sender (a ping
    /// responder).
    pub fn with_echo(mut self) -> Self {
        self.echo = true;
        self
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times this node was restarted.
    pub fn restarts(&self) -> u32 {
        self.life
    }

    /// The endpoint, for queries (`stats`, `peer_addr`, ...). Commands go through
    /// [`EndpointNode::command`] or the [`Sim`] helpers so their events are logged.
    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// Every event so far, in order.
    pub fn events(&self) -> &[Logged] {
        &self.events
    }

    /// Whether the session with `peer` has completed a handshake.
    pub fn is_connected(&self, peer: PeerId) -> bool {
        self.ep.is_connected(peer)
    }

    /// The first `Connected` event's peer and time, if any.
    pub fn first_connected(&self) -> Option<(PeerId, Duration)> {
        self.events.iter().find_map(|l| match l.event {
            Event::Connected { peer, .. } => Some((peer, l.at)),
            _ => None,
        })
    }

    /// The payloads of every datagram received, in order.
    pub fn datagrams(&self) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter_map(|l| match &l.event {
                Event::Datagram { data, .. } => Some(data.to_vec()),
                _ => None,
            })
            .collect()
    }

    /// The number of datagrams received.
    pub fn datagram_count(&self) -> usize {
        self.events
            .iter()
            .filter(|l| matches!(l.event, Event::Datagram { .. }))
            .count()
    }

    /// The outcomes of finished STUN probes, with their times.
    pub fn stun_outcomes(&self) -> Vec<(Duration, ProbeOutcome)> {
        self.events
            .iter()
            .filter_map(|l| match l.event {
                Event::Stun(o) => Some((l.at, o)),
                _ => None,
            })
            .collect()
    }

    /// Echo replies the application could not send (only with [`EndpointNode::with_echo`]).
    pub fn echo_failures(&self) -> u64 {
        self.echo_failures
    }

    /// Timer calls after which the endpoint had nothing to send or report yet asked to be woken
    /// at or before the same instant again: breaches of the core's `poll_timeout` contract
    /// (the simulator fails the run as a livelock only after many in a row).
    pub fn stalls(&self) -> u64 {
        self.stalls
    }

    /// Runs a command on the endpoint at virtual time `now` and logs the events it produced.
    /// Use it inside [`Sim::with_node`], which then drains the endpoint's transmits.
    pub fn command<R>(&mut self, now: Instant, f: impl FnOnce(&mut Endpoint, Instant) -> R) -> R {
        self.now = now;
        let r = f(&mut self.ep, now);
        self.collect();
        r
    }

    /// Drains `poll_event`, logging each event and acting as the application where it is
    /// configured to (echo), then drains `poll_transmit`. Returns whether there was any output.
    ///
    /// With a hosted forwarder, every event goes to it too and its actions are carried out on
    /// the local sockets, until neither the endpoint nor the forwarder has anything left.
    fn collect(&mut self) -> bool {
        let at = self.now.saturating_duration_since(origin());
        let before = (self.events.len(), self.out.len());
        let mut acted = false;
        loop {
            let mut busy = false;
            while let Some(event) = self.ep.poll_event() {
                busy = true;
                if let (true, Event::Datagram { peer, data }) = (self.echo, &event) {
                    if self.ep.send_datagram(self.now, *peer, data).is_err() {
                        self.echo_failures += 1;
                    }
                }
                if let Some((fwd, _)) = &mut self.fwd {
                    fwd.handle_event(self.now, &mut self.ep, &event);
                }
                self.events.push(Logged { at, event });
            }
            if let Some((fwd, _)) = &mut self.fwd {
                while let Some(action) = fwd.poll_action() {
                    busy = true;
                    acted = true;
                    self.local.perform(self.now, fwd, &mut self.ep, action);
                }
            }
            if !busy {
                break;
            }
        }
        // Runs, as a runtime with segmentation offload takes them, split as the kernel would.
        while let Some(t) = self.ep.poll_transmit_run(burrow_core::MAX_RUN_SEGMENTS) {
            self.out.extend(t.into_datagrams());
        }
        acted || (self.events.len(), self.out.len()) != before
    }
}

impl Node for EndpointNode {
    fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.handle_input_with_ttl(now, from, bytes, None);
    }

    fn handle_input_with_ttl(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        ttl: Option<u8>,
    ) {
        self.now = now;
        self.ep.handle_input_with_ttl(now, from, bytes, ttl);
        self.collect();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.ep.handle_timeout(now);
        if !self.collect() && self.ep.poll_timeout().is_some_and(|(at, _)| at <= now) {
            self.stalls += 1;
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout().map(|(at, _timer)| at)
    }

    fn drain_notes(&mut self, sink: &mut dyn FnMut(fmt::Arguments<'_>)) {
        for l in &self.events[self.noted..] {
            sink(format_args!("{} {}", self.name, ShowEvent(&l.event)));
        }
        self.noted = self.events.len();
        for line in self.local.take_notes() {
            sink(format_args!("{} {line}", self.name));
        }
    }
}

/// Compact, one-line rendering of an event for traces and the demo.
pub struct ShowEvent<'a>(pub &'a Event);

/// The first eight characters of a key's base64 form.
pub fn short_key(key: &PublicKey) -> String {
    key.to_string().chars().take(8).collect()
}

impl fmt::Display for ShowEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Event::Connected { peer, key, path } => {
                write!(f, "connected {peer} key={} {path}", short_key(key))
            }
            Event::PathChanged { peer, path } => write!(f, "path changed {peer} now {path}"),
            Event::Datagram { peer, data } => write!(f, "datagram from {peer} len={}", data.len()),
            Event::PeerRejected { key, addr } => {
                write!(f, "rejected key={} from {addr}", short_key(key))
            }
            Event::Stun(ProbeOutcome::Mapped { server, mapped }) => {
                write!(f, "stun {server} says we are {mapped}")
            }
            Event::Stun(ProbeOutcome::TimedOut { server }) => {
                write!(f, "stun {server} timed out")
            }
            Event::SessionClosed { peer, key, reason } => {
                write!(f, "closed {peer} key={} ({reason:?})", short_key(key))
            }
            other => write!(f, "{other:?}"),
        }
    }
}

/// Commands on [`EndpointNode`]s, at the current virtual time.
///
/// # Panics
///
/// Each helper panics if the node is not an [`EndpointNode`].
impl Sim {
    /// Starts an endpoint called `name` on `host:port`, keyed and seeded from the run's seed and
    /// the name.
    pub fn add_endpoint(&mut self, host: HostId, port: u16, name: &str, config: Config) -> NodeId {
        let seed = endpoint_seed(self.seed(), name, 0);
        let node = EndpointNode::new(name, config, seed, self.instant());
        self.add_node(host, port, node)
    }

    /// Like [`Sim::add_endpoint`], for a node whose application echoes every datagram.
    pub fn add_echo_endpoint(
        &mut self,
        host: HostId,
        port: u16,
        name: &str,
        config: Config,
    ) -> NodeId {
        let seed = endpoint_seed(self.seed(), name, 0);
        let node = EndpointNode::new(name, config, seed, self.instant()).with_echo();
        self.add_node(host, port, node)
    }

    /// Restarts the endpoint `id` with `config`: all of its state is lost, the address and name
    /// stay, the RNG seed is new (a new process). The event log starts afresh; the echo setting
    /// is kept. A hosted forwarder starts afresh too (listeners must be made again); its open
    /// local connections are reset and its targets kept.
    pub fn restart_endpoint(&mut self, id: NodeId, config: Config) {
        let now = self.instant();
        let old = self.endpoint(id);
        let (name, life, echo) = (old.name.clone(), old.life + 1, old.echo);
        let fwd = old.fwd.as_ref().map(|(_, c)| c.clone());
        let mut local = old.local.clone();
        local.reset_all(now, "the process restarted");
        let seed = endpoint_seed(self.seed(), &name, life);
        let mut node = EndpointNode::new(&name, config, seed, now);
        node.life = life;
        node.echo = echo;
        if let Some(fwd) = fwd {
            node = node.with_forwarder(fwd);
        }
        // The targets are other programs: they outlive the restart. The local connections
        // were the old process's and are reset; they stay listed for the scenario to inspect.
        node.local = local;
        self.note(format_args!("{name} restarted"));
        self.replace_node(id, node);
    }

    /// Like [`Sim::add_endpoint`], for a node that hosts a [`Forwarder`] with in-memory local
    /// sockets ([`EndpointNode::with_forwarder`], [`crate::local`]).
    pub fn add_forwarding_endpoint(
        &mut self,
        host: HostId,
        port: u16,
        name: &str,
        config: Config,
        forward: ForwardConfig,
    ) -> NodeId {
        let seed = endpoint_seed(self.seed(), name, 0);
        let node = EndpointNode::new(name, config, seed, self.instant()).with_forwarder(forward);
        self.add_node(host, port, node)
    }

    /// The endpoint node `id`.
    pub fn endpoint(&self, id: NodeId) -> &EndpointNode {
        self.node::<EndpointNode>(id)
    }

    /// Runs `f` on endpoint `id` at the current virtual time, logging its events and draining
    /// its output.
    pub fn endpoint_command<R>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut Endpoint, Instant) -> R,
    ) -> R {
        self.with_node(id, |n: &mut EndpointNode, now| n.command(now, f))
    }

    /// `Endpoint::connect` on node `id`.
    pub fn connect(
        &mut self,
        id: NodeId,
        key: PublicKey,
        addr: SocketAddr,
    ) -> Result<PeerId, ConnectError> {
        self.endpoint_command(id, |ep, now| ep.connect(now, key, addr))
    }

    /// `Endpoint::send_datagram` on node `id`.
    pub fn send_datagram(
        &mut self,
        id: NodeId,
        peer: PeerId,
        data: &[u8],
    ) -> Result<(), SendError> {
        self.endpoint_command(id, |ep, now| ep.send_datagram(now, peer, data))
    }

    /// `Endpoint::close` on node `id`.
    pub fn close(&mut self, id: NodeId, peer: PeerId) {
        self.endpoint_command(id, |ep, now| ep.close(now, peer));
    }

    /// `Endpoint::stun_probe` on node `id`.
    pub fn stun_probe(&mut self, id: NodeId, server: SocketAddr) {
        self.endpoint_command(id, |ep, now| ep.stun_probe(now, server));
    }
}
