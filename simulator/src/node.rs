//! The interface between the simulator and the protocol code it runs.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use burrow_core::Transmit;

/// A sans-IO protocol node bound to one UDP address (host IP + port) in the simulation.
///
/// It is the core's run-loop contract reduced to what the network sees: after every call into the
/// node the simulator drains [`Node::poll_transmit`] until it returns `None`, then reads
/// [`Node::poll_timeout`]. Real endpoints and the rendezvous server implement it through a thin
/// wrapper; application commands go through [`crate::Sim::with_node`] or
/// [`crate::Sim::schedule`].
pub trait Node {
    /// A datagram from `from` arrived at virtual time `now`.
    fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]);
    /// [`Node::handle_input`], with the IP TTL the datagram arrived with (the simulator's hop
    /// model sets it, as a runtime reading `IP_RECVTTL` would). The default ignores it.
    fn handle_input_with_ttl(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        ttl: Option<u8>,
    ) {
        let _ = ttl;
        self.handle_input(now, from, bytes);
    }
    /// The deadline returned by [`Node::poll_timeout`] has passed; `now` is the virtual time.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send, if any.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// When the node next wants [`Node::handle_timeout`], if ever.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Hands lines about what the node did since the last call (for instance the events a real
    /// endpoint reported) to `sink`, which adds them to the trace at the current virtual time.
    ///
    /// Called after every call into the node, only while a trace is being recorded, so nodes
    /// should format nothing until asked. The default reports nothing.
    fn drain_notes(&mut self, sink: &mut dyn FnMut(fmt::Arguments<'_>)) {
        let _ = sink;
    }
}

/// `Node` plus downcasting, implemented for every `'static` node.
pub(crate) trait AnyNode: Node {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Node + Any> AnyNode for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
