//! The simulation runner: nodes on hosts, the event loop, run bounds and errors.
//!
//! ```
//! use std::time::Duration;
//! use burrow_sim::{NatConfig, Network, Sim, toy::ScriptedNode};
//!
//! let mut net = Network::new();
//! let server = net.add_public_host("server", [198, 51, 100, 1]);
//! let (_, alice) = net.add_natted_host("alice", None, [203, 0, 113, 1], NatConfig::linux(), [192, 168, 1, 2]);
//! let mut sim = Sim::new(net, 42);
//! let srv = sim.add_node(server, 3478, ScriptedNode::new().echo());
//! let dst = sim.network().host_addr(server, 3478);
//! let a = sim.add_node(alice, 5000, ScriptedNode::new().send_at(Duration::ZERO, dst, b"hi"));
//! sim.run_until(Duration::from_secs(1), |s| !s.node::<ScriptedNode>(a).received().is_empty())?;
//! # let _ = srv;
//! # Ok::<(), burrow_sim::SimError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::net::{Ev, NetStats, Packet, World, tr};
use crate::node::{AnyNode, Node};
use crate::topology::{HostId, Network};
use crate::trace::{Trace, TraceMode};

/// A node in a simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub(crate) u32);

/// Bounds and options of a run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of every random draw in the network.
    pub seed: u64,
    /// Virtual time no event may pass; reaching it is an error.
    pub max_time: Duration,
    /// Events the run may process; exceeding it is an error.
    pub max_events: u64,
    /// Consecutive timer calls after which a node that keeps asking for a deadline at or before
    /// `now` without sending anything is reported as livelocked.
    pub livelock_limit: u32,
    /// Trace recording.
    pub trace: TraceMode,
}

impl SimConfig {
    /// Defaults: 1 h of virtual time, 50 million events, livelock after 1000 spins, no trace.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            max_time: Duration::from_secs(3600),
            max_events: 50_000_000,
            livelock_limit: 1000,
            trace: TraceMode::Off,
        }
    }

    /// Sets the trace mode.
    pub fn trace(mut self, mode: TraceMode) -> Self {
        self.trace = mode;
        self
    }
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimErrorKind {
    /// A node kept asking to be woken at or before `now` without producing output.
    Livelock {
        /// The node's name (`host:port`).
        node: String,
        /// Consecutive fruitless wake-ups.
        spins: u32,
    },
    /// The run processed [`SimConfig::max_events`] events.
    EventLimit(u64),
    /// An event was due after [`SimConfig::max_time`].
    TimeLimit(Duration),
    /// [`Sim::run_until`]'s predicate was still false at its time limit (or the network went idle).
    Timeout {
        /// The limit given to `run_until`.
        limit: Duration,
    },
}

/// A failed run, with the seed that reproduces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError {
    /// Seed of the run.
    pub seed: u64,
    /// Virtual time of the failure (since origin).
    pub at: Duration,
    /// What went wrong.
    pub kind: SimErrorKind,
}

impl fmt::Display for SimErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Livelock { node, spins } => write!(
                f,
                "livelock: node {node} asked for a deadline at or before now {spins} times in a row without sending"
            ),
            Self::EventLimit(n) => write!(f, "event limit of {n} reached"),
            Self::TimeLimit(t) => write!(f, "virtual time limit of {t:?} reached"),
            Self::Timeout { limit } => write!(f, "condition not met by {limit:?}"),
        }
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:?} (seed {})", self.kind, self.at, self.seed)
    }
}

impl std::error::Error for SimError {}

struct Slot {
    node: Box<dyn AnyNode>,
    host: HostId,
    port: u16,
    name: String,
    /// When this node's pending timer event fires, if one is pending.
    scheduled: Option<Duration>,
    spins: u32,
}

type Action = Box<dyn FnOnce(&mut Sim)>;

/// A simulation: a [`Network`], nodes bound to host addresses, and virtual time.
///
/// Each step takes the earliest event (a datagram reaching a NAT box or host, a node deadline, or
/// a scheduled action), sets `now` to its time, handles it, then drains the output of every node
/// it called. Runs depend only on the network, the nodes and the seed.
pub struct Sim {
    cfg: SimConfig,
    clock: Clock,
    w: World,
    nodes: Vec<Slot>,
    bindings: BTreeMap<(HostId, u16), NodeId>,
    actions: Vec<Option<Action>>,
    events: u64,
}

impl Sim {
    /// A simulation of `net` with default bounds and the given seed.
    pub fn new(net: Network, seed: u64) -> Self {
        Self::with_config(net, SimConfig::new(seed))
    }

    /// A simulation with explicit bounds and trace mode.
    pub fn with_config(net: Network, cfg: SimConfig) -> Self {
        let w = World::new(net, cfg.seed, cfg.trace);
        Self {
            cfg,
            clock: Clock::new(),
            w,
            nodes: Vec::new(),
            bindings: BTreeMap::new(),
            actions: Vec::new(),
            events: 0,
        }
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }

    /// Virtual time since the origin.
    pub fn now(&self) -> Duration {
        self.w.now
    }

    /// Virtual time as an `Instant`.
    pub fn instant(&self) -> Instant {
        self.clock.instant()
    }

    /// The network (topology, NAT state).
    pub fn network(&self) -> &Network {
        &self.w.net
    }

    /// Mutable access to the network, e.g. to change link impairments or reset a NAT mid-run.
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.w.net
    }

    /// The trace so far.
    pub fn trace(&self) -> &Trace {
        &self.w.trace
    }

    /// Adds a free-form line to the trace.
    pub fn note(&mut self, msg: fmt::Arguments<'_>) {
        self.w.trace.note(self.w.now, msg);
    }

    /// Network counters so far.
    pub fn stats(&self) -> &NetStats {
        &self.w.stats
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Binds `node` to `host:port`, then drains its initial output and reads its deadline.
    ///
    /// # Panics
    ///
    /// If the address is already bound.
    pub fn add_node<T: Node + 'static>(&mut self, host: HostId, port: u16, node: T) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        if let Some(prev) = self.bindings.insert((host, port), id) {
            panic!(
                "{}:{port} is already bound by {prev:?}",
                self.w.net.host_name(host)
            );
        }
        let name = format!("{}:{port}", self.w.net.host_name(host));
        self.nodes.push(Slot {
            node: Box::new(node),
            host,
            port,
            name,
            scheduled: None,
            spins: 0,
        });
        // A node added before the run starts cannot livelock yet.
        let _ = self.after_call(id, false);
        id
    }

    /// The address a node is bound to (in its host's realm).
    pub fn node_addr(&self, id: NodeId) -> SocketAddr {
        let s = &self.nodes[id.0 as usize];
        self.w.net.host_addr(s.host, s.port)
    }

    /// The node's name (`host:port`).
    pub fn node_name(&self, id: NodeId) -> &str {
        &self.nodes[id.0 as usize].name
    }

    /// Read access to a node's concrete type.
    ///
    /// # Panics
    ///
    /// If the node is not a `T`.
    pub fn node<T: Node + 'static>(&self, id: NodeId) -> &T {
        let s = &self.nodes[id.0 as usize];
        s.node
            .as_any()
            .downcast_ref()
            .unwrap_or_else(|| panic!("node {} is not a {}", s.name, std::any::type_name::<T>()))
    }

    /// Calls `f` with the node and the current virtual time (for application commands), then
    /// drains the node's output and reads its deadline.
    ///
    /// # Panics
    ///
    /// If the node is not a `T`.
    pub fn with_node<T: Node + 'static, R>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut T, Instant) -> R,
    ) -> R {
        let now = self.clock.instant();
        let s = &mut self.nodes[id.0 as usize];
        let Some(node) = s.node.as_any_mut().downcast_mut() else {
            panic!("node {} is not a {}", s.name, std::any::type_name::<T>());
        };
        let r = f(node, now);
        let _ = self.after_call(id, false);
        r
    }

    /// Replaces the node `id` with `node` on the same address (a process restart: the old
    /// node's state is gone), then drains the new node's initial output and reads its deadline.
    pub fn replace_node<T: Node + 'static>(&mut self, id: NodeId, node: T) {
        let s = &mut self.nodes[id.0 as usize];
        s.node = Box::new(node);
        s.scheduled = None;
        s.spins = 0;
        let _ = self.after_call(id, false);
    }

    /// Runs `f` at virtual time `at` (or now, if `at` has passed), in event order.
    pub fn schedule(&mut self, at: Duration, f: impl FnOnce(&mut Sim) + 'static) {
        self.actions.push(Some(Box::new(f)));
        let at = at.max(self.w.now);
        self.w.queue.push(at, Ev::Action(self.actions.len() - 1));
    }

    fn err(&self, kind: SimErrorKind) -> SimError {
        SimError {
            seed: self.cfg.seed,
            at: self.w.now,
            kind,
        }
    }

    /// Drains a node's transmits into the network and re-arms its timer.
    fn after_call(&mut self, id: NodeId, from_timer: bool) -> Result<(), SimError> {
        let now = self.w.now;
        let s = &self.nodes[id.0 as usize];
        let (host, port) = (s.host, s.port);
        if self.w.trace.enabled() {
            let trace = &mut self.w.trace;
            let node = &mut self.nodes[id.0 as usize].node;
            node.drain_notes(&mut |line| trace.note(now, line));
        }
        let mut sent = false;
        while let Some(t) = self.nodes[id.0 as usize].node.poll_transmit() {
            sent = true;
            self.w.inject(host, port, t);
        }
        let s = &mut self.nodes[id.0 as usize];
        let deadline = s.node.poll_timeout().map(|i| self.clock.since_origin(i));
        if from_timer {
            if !sent && deadline.is_some_and(|d| d <= now) {
                s.spins += 1;
                if s.spins > self.cfg.livelock_limit {
                    let kind = SimErrorKind::Livelock {
                        node: s.name.clone(),
                        spins: s.spins,
                    };
                    return Err(self.err(kind));
                }
            } else {
                s.spins = 0;
            }
        }
        let due = deadline.map(|d| d.max(now));
        if due != s.scheduled {
            s.scheduled = due;
            if let Some(t) = due {
                self.w.queue.push(t, Ev::Timer(id.0));
            }
        }
        Ok(())
    }

    /// Processes the next event. Returns `false` if there was none.
    pub fn step(&mut self) -> Result<bool, SimError> {
        let Some((at, ev)) = self.w.queue.pop() else {
            return Ok(false);
        };
        if at > self.cfg.max_time {
            return Err(self.err(SimErrorKind::TimeLimit(self.cfg.max_time)));
        }
        self.events += 1;
        if self.events > self.cfg.max_events {
            return Err(self.err(SimErrorKind::EventLimit(self.cfg.max_events)));
        }
        self.clock.advance_to(at);
        self.w.now = self.clock.now();
        match ev {
            Ev::Timer(n) => {
                let s = &mut self.nodes[n as usize];
                if s.scheduled != Some(at) {
                    return Ok(true); // superseded by a later deadline
                }
                s.scheduled = None;
                s.node.handle_timeout(self.clock.instant());
                self.after_call(NodeId(n), true)?;
            }
            Ev::Action(i) => {
                if let Some(f) = self.actions[i].take() {
                    f(self);
                }
            }
            Ev::Arrive(stop, pkt) => {
                if let Some((host, pkt)) = self.w.on_arrive(stop, pkt) {
                    self.deliver(host, pkt);
                }
            }
            Ev::Link { link, stop, pkt } => self.w.cross(link, at, stop, pkt),
        }
        Ok(true)
    }

    fn deliver(&mut self, host: HostId, pkt: Packet) {
        let w = &mut self.w;
        let Some(&id) = self.bindings.get(&(host, pkt.dst.port())) else {
            w.stats.dropped += 1;
            w.stats.unreachable += 1;
            tr!(
                w,
                "drop",
                pkt,
                "port unreachable on host {}",
                w.net.host_name(host)
            );
            return;
        };
        w.stats.delivered += 1;
        let s = &mut self.nodes[id.0 as usize];
        tr!(w, "deliver", pkt, "to {}", s.name);
        s.node
            .handle_input_with_ttl(self.clock.instant(), pkt.src, &pkt.payload, Some(pkt.ttl));
        let _ = self.after_call(id, false);
    }

    /// Runs every event up to and including virtual time `t`, then sets the clock to `t`.
    pub fn run_until_time(&mut self, t: Duration) -> Result<(), SimError> {
        while self.w.queue.peek_time().is_some_and(|at| at <= t) {
            self.step()?;
        }
        self.clock.advance_to(t);
        self.w.now = self.clock.now();
        Ok(())
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) -> Result<(), SimError> {
        self.run_until_time(self.w.now + d)
    }

    /// Runs until `done` holds (checked before each event), returning the virtual time it
    /// became true. Fails with [`SimErrorKind::Timeout`] if it still does not hold when the next
    /// event is after `limit` (absolute virtual time) or no events remain.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<Duration, SimError> {
        loop {
            if done(self) {
                return Ok(self.w.now);
            }
            match self.w.queue.peek_time() {
                Some(at) if at <= limit => {
                    self.step()?;
                }
                _ => {
                    self.clock.advance_to(limit);
                    self.w.now = self.clock.now();
                    return Err(self.err(SimErrorKind::Timeout { limit }));
                }
            }
        }
    }

    /// Runs until no events remain (bounded by the configured limits).
    pub fn run_until_idle(&mut self) -> Result<(), SimError> {
        while self.step()? {}
        Ok(())
    }
}
