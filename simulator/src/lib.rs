//! # burrow-sim: a deterministic network and NAT simulator
//!
//! Runs sans-IO protocol nodes (burrow endpoints, the rendezvous server, or the toy nodes in
//! [`toy`]) on virtual time, with no threads and no sockets. A run depends only on the scenario
//! and a `u64` seed.
//!
//! - [`clock`]: the fixed origin, the virtual clock and the `(time, seq)` event queue.
//! - [`link`]: latency, jitter, random and Gilbert-Elliott loss, duplication, reordering, MTU,
//!   bandwidth with a drop-tail queue.
//! - [`nat`]: RFC 4787 NAT boxes (mapping, filtering, port allocation, binding timeout and
//!   refresh, hairpinning) and the Linux conntrack clash.
//! - [`topology`]: sites, hosts, nested NATs, uplinks with router hop counts.
//! - [`scenario`]: [`Sim`], the runner: nodes, stepping, bounded runs, livelock detection.
//! - [`trace`]: the deterministic text trace and its hash.
//! - [`endpoint`]: [`EndpointNode`], a real `burrow_core::Endpoint` as a node, and the [`Sim`]
//!   helpers for its commands.
//! - [`local`]: in-memory local sockets for a forwarder hosted by an [`EndpointNode`]: TCP
//!   piping end to end in virtual time.
//! - [`showcase`]: the `burrow-sim demo` run: a public server and two daemons behind NATs.
//! - [`demo`]: named scenarios and the speed benchmark used by the `burrow-sim` binary.
//!
//! ```
//! use std::time::Duration;
//! use burrow_sim::{NatConfig, Network, Sim, toy::ScriptedNode};
//!
//! let mut net = Network::new();
//! let server = net.add_public_host("server", [198, 51, 100, 1]);
//! let (_, alice) = net.add_natted_host("alice", None, [203, 0, 113, 1], NatConfig::linux(), [192, 168, 1, 2]);
//! let (_, bob) = net.add_natted_host("bob", None, [203, 0, 113, 2], NatConfig::symmetric(), [192, 168, 1, 2]);
//! let mut sim = Sim::new(net, 7);
//! let dst = sim.network().host_addr(server, 3478);
//! sim.add_node(server, 3478, ScriptedNode::new().echo());
//! let a = sim.add_node(alice, 5000, ScriptedNode::new().send_at(Duration::ZERO, dst, b"a"));
//! let b = sim.add_node(bob, 5000, ScriptedNode::new().send_at(Duration::ZERO, dst, b"b"));
//! sim.run_for(Duration::from_secs(1))?;
//! assert_eq!(sim.node::<ScriptedNode>(a).received().len(), 1);
//! # let _ = b;
//! # Ok::<(), burrow_sim::SimError>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod clock;
pub mod demo;
pub mod endpoint;
pub mod link;
pub mod local;
pub mod nat;
mod net;
mod node;
pub mod scenario;
pub mod showcase;
pub mod topology;
pub mod toy;
pub mod trace;
pub mod traversal;

pub use clock::origin;
pub use endpoint::EndpointNode;
pub use link::{GilbertElliott, LinkConfig, LinkDrop};
pub use local::{LocalClose, LocalConn, LocalService, LocalSockets};
pub use nat::{Filtering, FlowInfo, Mapping, NatBox, NatConfig, PortAllocation, Unsolicited};
pub use net::NetStats;
pub use node::Node;
pub use scenario::{NodeId, Sim, SimConfig, SimError, SimErrorKind};
pub use topology::{Attachment, HostId, NatId, Network, SiteId, Uplink};
pub use trace::{Trace, TraceMode, fnv1a64};
