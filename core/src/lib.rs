//! # burrow-core: the whole burrow protocol, sans-IO
//!
//! This crate holds every protocol decision burrow makes, as plain state machines. It opens no
//! sockets, reads no clock, starts no threads, runs no async code and asks the OS for no
//! randomness. Time and a random seed come in as arguments; datagrams to send, events for the
//! application and the next deadline come out as values. The runtime crates (tokio, smol, mio),
//! the simulator and the tests all drive the same [`Endpoint`] the same way.
//!
//! ## The run loop (the contract every driver follows)
//!
//! A runtime drives one [`node::Node`]: the [`Endpoint`] (the protocol), the
//! [`forward::Forwarder`] (which local TCP or unix connection rides which stream), the
//! [`forward::udp::UdpForwarder`] (which local UDP flow rides which session datagrams) and
//! what `burrow status` shows, behind one output. The runtime owns the sockets and nothing
//! else.
//!
//! ```text
//! let Started { mut node, listeners, .. } = node_config.start(udp_addr, listeners, seed, clock, route)?;
//! loop {
//!     // 1. Drain: the last output of every drain is the next deadline.
//!     let deadline = loop {
//!         match node.poll_output() {
//!             Output::Transmit(t)   => send t.payload to t.dst (with t.ttl if set; batch runs),
//!             Output::Action(a)     => perform a on a local socket (connect, read once, write,
//!                                      shut down, close),
//!             Output::Udp(a)        => open a flow's UDP socket, send on it or on a UDP
//!                                      listener, or close it,
//!             Output::Log(line)     => log line at line.level(),
//!             Output::StunResult{..} => answer whoever asked for that probe,
//!             Output::Save{path, contents} => replace the file at path (atomically, mode 0600),
//!             Output::Hook(h)       => hand h to whoever runs the configured hooks,
//!             Output::Listen{..} | Output::ListenUdp{..} => bind a published port's TCP
//!                                      listener or UDP socket, report it with
//!                                      handle_listening / handle_udp_listening,
//!             Output::Unlisten{..} | Output::UnlistenUdp{..} => close it,
//!             Output::Timeout(at)   => break at,
//!         }
//!     };
//!     // 2. Sleep until a datagram, a local socket report, a command or the deadline.
//!     wait_for(udp_socket, local_sockets, commands, deadline);
//!     // 3. Read the clock once, make the calls for what woke us with it, and go back to 1.
//!     let now = Instant::now();
//!     match what_woke_us {
//!         Datagram(from, bytes)  => node.handle_input(now, from, &bytes),
//!         Deadline               => node.handle_timeout(now),
//!         // The forwarder's half: what local sockets did, reported back.
//!         Accepted(listener, s)  => if let Some(conn) = node.handle_accept_from(now, listener, origin) { keep s as conn },
//!         Connected(conn)        => node.handle_connected(now, conn),
//!         ConnectFailed(conn, e) => node.handle_connect_failed(now, conn, &e),
//!         Read(conn, bytes)      => node.handle_read(now, conn, bytes),
//!         Eof(conn)              => node.handle_eof(now, conn),
//!         Written(conn, n)       => node.handle_written(now, conn, n),
//!         Failed(conn, e)        => node.handle_conn_error(now, conn, &e),
//!         UdpListener(l, from, d) => node.handle_udp_recv_from(now, l, from, &d),
//!         FlowDatagram(flow, d)  => node.handle_udp_recv(now, flow, &d),
//!         FlowFailed(flow, e)    => node.handle_udp_error(now, flow, &e),
//!         Status(reply)          => reply(node.status()),
//!         StunProbe(server, r)   => remember (node.stun_probe(now, server), r),
//!         Shutdown               => { node.shutdown(now); drain and send once more; break }
//!     }
//! }
//! ```
//!
//! Rules that keep this simple and deterministic:
//!
//! - After **any** input, drain [`node::Node::poll_output`] until it returns
//!   [`node::Output::Timeout`] before sleeping (the "single mutation" invariant); until then the
//!   deadline may be stale. Several inputs may be fed before one drain (a batch of datagrams).
//! - Local sockets move bytes only when told: read a connection once per
//!   [`forward::Action::Read`] (at most [`node::Node::read_chunk`] bytes), and report each
//!   write as it leaves. That is the backpressure between local sockets and streams.
//! - `now` never goes backwards between calls. The endpoint never asks for a deadline at or
//!   before the last `now` unless output is queued; calling `handle_timeout` early is harmless.
//! - Bytes from the network never produce an error or a panic: malformed, unauthenticated,
//!   replayed or unexpected packets are dropped and counted in [`Endpoint::stats`]. Commands
//!   return small error enums that say what the caller can do next; conditions that end a
//!   session arrive as [`Event::SessionClosed`] with a [`CloseReason`].
//! - Given the same configuration, seed, inputs and instants, an endpoint produces the same
//!   outputs byte for byte. The simulator relies on it.
//! - [`Transmit::ttl`] asks the driver to send that one datagram with a limited IP TTL; the core
//!   never touches socket options. A driver whose socket has segmentation offload tells the
//!   node how many datagrams one send carries ([`node::Node::set_max_segments`]) and gets
//!   bulk data as runs ([`Transmit::segment_size`]) sealed end to end, sent without a copy.
//! - A driver feeds each datagram from its receive buffer with
//!   [`node::Node::handle_input_in_place`], which decrypts it where it lies; the copying
//!   `handle_input` is for tests and simulators.
//!
//! The simulator and core's own tests drive a bare [`Endpoint`] the same way, with its three
//! outputs: [`Endpoint::poll_transmit`] and [`Endpoint::poll_event`] until both are `None`,
//! then [`Endpoint::poll_timeout`]. What `burrow status` shows is built in [`status`].
//!
//! ## What is public
//!
//! The protocol's modules are private; what drivers, tools and tests use is re-exported here or
//! grouped in a few public modules:
//!
//! - the crate root: [`Endpoint`] and what goes in and out of it ([`Config`], [`Transmit`],
//!   [`Event`], [`Timer`], [`Stats`], [`Path`], [`RoutePolicy`], [`ProbeOutcome`]), the ids
//!   ([`PeerId`], [`StreamId`]), the keys ([`PublicKey`], [`SecretKey`]) and the errors;
//! - [`config`]: the endpoint's configuration, section by section;
//! - [`node`]: the [`node::Node`] a runtime drives, and how to start one;
//! - [`forward`]: the [`forward::Forwarder`] between local connections and streams (the node
//!   uses it; the simulator drives it directly);
//! - [`rendezvous`]: the server's configuration and events, and [`rendezvous::ServiceName`];
//! - [`status`]: what `burrow status` shows;
//! - [`breach`]: the Containment Breach API (`burrow server --cb-listen`), a state machine of
//!   its own beside the endpoint, with the same verbs.
//!
//! ## Layers, bottom up (private modules)
//!
//! - `wire`: the hand-encoded data-plane header (also the AEAD associated data) and the
//!   versioned postcard bodies of control messages.
//! - `crypto`: static keys, `Noise_IK_25519_ChaChaPoly_BLAKE2s`, transport AEAD with an explicit
//!   64-bit counter, the sliding replay window, and stateless handshake cookies. The transport
//!   AEAD is ring's ChaCha20-Poly1305 (cargo feature `ring`, on by default: assembly picked at
//!   run time), or the pure-Rust `chacha20poly1305` crate with feature `pure-rust-crypto` or
//!   without `ring`; the bytes on the wire are the same.
//! - `session`: one encrypted session per peer: handshake retries, key generations, rekeying,
//!   keepalives and the idle timeout.
//! - `stream` and `congestion`: reliable, ordered, multiplexed streams with loss recovery,
//!   congestion control and flow control.
//! - `rendezvous` (public in part, see above): registration with a token, leases, service
//!   lookup and introductions, the server's registry, and its relay policy (who may relay to
//!   whom, per-token rate limits).
//! - `punch`: how a session finds its way to the peer, all in one module. Introduced daemons
//!   punch a direct path (TTL-limited probes first; every timing rule, the probe TTL included,
//!   is in `punch/schedule.rs`); when punching has not succeeded within
//!   [`config::SessionConfig::relay_after`] their handshakes also go through the server, which
//!   forwards packets sealed with the daemons' own keys and cannot read them. A relayed session
//!   keeps looking for a direct path and moves to it once proven both ways; a direct path that
//!   goes silent falls back to the relay. [`RoutePolicy`] restricts a daemon to either way.
//! - `endpoint`: [`Endpoint`] itself, which owns the sessions, the rendezvous client (and, in
//!   `burrow server`, the rendezvous server) and dispatches between them.
#![warn(missing_docs)]
#![warn(unreachable_pub)]
#![warn(unnameable_types)]
#![forbid(unsafe_code)]

pub mod breach;
pub mod config;
pub mod forward;
pub mod netcheck;
pub mod node;
pub mod rendezvous;
pub mod status;

mod access;
mod congestion;
mod crypto;
mod endpoint;
mod error;
mod event;
mod path;
mod portmap;
mod punch;
mod rng;
mod service;
mod session;
mod stats;
mod stream;
mod stun;
mod timer;
mod transmit;
mod wire;

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

#[doc(hidden)]
pub mod bench;

#[cfg(any(test, feature = "hostile"))]
#[doc(hidden)]
pub mod hostile;

#[cfg(test)]
pub(crate) mod tests;

pub use config::Config;
pub use crypto::{KeyParseError, PublicKey, SecretKey};
pub use endpoint::Endpoint;
pub use error::{CloseReason, ConnectError, SendError, ServiceError, StreamError};
pub use event::{Event, PeerId};
pub use path::{Path, RoutePolicy};
pub use portmap::Failure as PortMappingFailure;
pub use portmap::Protocol as PortMappingProtocol;
pub use portmap::upnp;
pub use punch::schedule::ProbeTtl;
pub use punch::why::{CandidateOutcome, WhyRelayed};
pub use stats::{
    Histogram, PunchStats, RelayedBy, ServerCounters, Stats, TIME_TO_DIRECT_BOUNDS_MS,
};
pub use stream::{CongestionControl, ReadOutcome, StreamId};
pub use stun::ProbeOutcome;
pub use timer::Timer;
pub use transmit::{MAX_RUN_BYTES, MAX_RUN_SEGMENTS, Transmit};
pub use wire::control::CloseCode;
