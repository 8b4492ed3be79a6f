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
//! ```text
//! let mut ep = Endpoint::new(config, seed, now, unix_now);
//! loop {
//!     // 1. Drain output until both queues are empty.
//!     while let Some(t) = ep.poll_transmit() { send t.payload to t.dst (with t.ttl if set) }
//!     while let Some(e) = ep.poll_event()    { act on e (e.g. deliver data, log a close) }
//!     // 2. Sleep until a datagram arrives, the application has a command, or the deadline.
//!     let deadline = ep.poll_timeout();      // Option<(Instant, Timer)>
//!     wait_for(socket, app_commands, deadline);
//!     // 3. Read the clock once, make exactly one call with it, and go back to 1.
//!     let now = Instant::now();
//!     match what_woke_us {
//!         Datagram(from, bytes) => ep.handle_input(now, from, &bytes),
//!         Deadline               => ep.handle_timeout(now),
//!         Command(c)             => c.apply(&mut ep, now), // connect, send, close, ...
//!     }
//! }
//! ```
//!
//! Rules that keep this simple and deterministic:
//!
//! - After **any** `handle_*` call or command, drain [`Endpoint::poll_transmit`] and
//!   [`Endpoint::poll_event`] until both return `None` before reading
//!   [`Endpoint::poll_timeout`] (the "single mutation" invariant). Until then the deadline may be
//!   stale.
//! - `now` never goes backwards between calls. `poll_timeout` never returns a deadline at or
//!   before the last `now` unless output is queued; calling `handle_timeout` early is harmless.
//! - Bytes from the network never produce an error or a panic: malformed, unauthenticated,
//!   replayed or unexpected packets are dropped and counted in [`Endpoint::stats`]. Commands
//!   return small error enums that say what the caller can do next; conditions that end a
//!   session arrive as [`Event::SessionClosed`] with a [`CloseReason`].
//! - Given the same configuration, seed, inputs and instants, an endpoint produces the same
//!   outputs byte for byte. The simulator relies on it.
//! - [`Transmit::ttl`] asks the driver to send that one datagram with a limited IP TTL; the core
//!   never touches socket options.
//!
//! The runtimes share one start-up sequence, configuration and error types, and event log
//! lines through [`node`]; what `burrow status` shows is built in [`status`].
//!
//! ## Layers, bottom up
//!
//! - [`wire`]: the hand-encoded data-plane header (also the AEAD associated data) and the
//!   versioned postcard bodies of control messages.
//! - [`crypto`]: static keys, `Noise_IK_25519_ChaChaPoly_BLAKE2s`, transport AEAD with an explicit
//!   64-bit counter, the sliding replay window, and stateless handshake cookies.
//! - [`session`]: one encrypted session per peer: handshake retries, key generations, rekeying,
//!   keepalives and the idle timeout.
//! - [`stream`] and [`congestion`]: reliable, ordered, multiplexed streams with loss recovery,
//!   congestion control and flow control.
//! - [`rendezvous`]: registration with a token, leases, service lookup and introductions, the
//!   server's registry, and its relay policy (who may relay to whom, per-token rate limits).
//! - [`punch`]: how a session finds its way to the peer, all in one module. Introduced daemons
//!   punch a direct path (TTL-limited probes first; every timing rule, the probe TTL included,
//!   is in `punch/schedule.rs`); when punching has not succeeded within
//!   [`config::SessionConfig::relay_after`] their handshakes also go through the server, which
//!   forwards packets sealed with the daemons' own keys and cannot read them. A relayed session
//!   keeps looking for a direct path and moves to it once proven both ways; a direct path that
//!   goes silent falls back to the relay. The [`Path`] and [`RoutePolicy`] types are in
//!   [`path`]; [`RoutePolicy`] restricts a daemon to either way.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod congestion;
pub mod crypto;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod forward;
pub mod node;
pub mod path;
pub mod punch;
pub mod rendezvous;
pub mod service;
pub mod session;
pub mod stats;
pub mod status;
pub mod stream;
pub mod stun;
pub mod timer;
pub mod transmit;
pub mod wire;

mod rng;

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
pub(crate) mod tests;

pub use config::Config;
pub use crypto::{PublicKey, SecretKey};
pub use endpoint::Endpoint;
pub use error::{CloseReason, ConnectError, SendError, ServiceError, StreamError};
pub use event::{Event, PeerId};
pub use path::{Path, RoutePolicy};
pub use stats::Stats;
pub use stream::{ReadOutcome, StreamId};
pub use timer::Timer;
pub use transmit::Transmit;
