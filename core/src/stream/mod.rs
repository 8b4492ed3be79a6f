//! Reliable, ordered, multiplexed byte streams inside an encrypted session.
//!
//! [`Mux`] owns everything inside a decrypted packet: packet numbers, frames, acknowledgements,
//! loss recovery (RFC 9002), congestion control and pacing ([`crate::congestion`]), per-stream
//! and per-connection flow control, stream lifecycles (FIN as a TCP half-close, RESET,
//! STOP_SENDING). (Unreliable datagrams bypass it: the session seals them on their own.) The session layer encrypts what
//! [`Mux::poll_packet`] writes and hands decrypted payloads to [`Mux::handle_packet`].
//!
//! Drive it like every core machine: after any `handle_*` call or command, call
//! [`Mux::poll_packet`] until it returns `None` and [`Mux::poll_event`] until it returns
//! `None`, then sleep until [`Mux::poll_timeout`] and call [`Mux::handle_timeout`].

mod ack;
mod assembler;
mod flow;
mod frame;
mod incoming;
mod mux;
mod outgoing;
mod pmtu;
mod ranges;
mod recovery;
mod recv;
mod send;
mod types;

#[cfg(test)]
mod tests;

pub(crate) use assembler::Limited;
pub use mux::Mux;
pub use types::{CongestionControl, ReadOutcome, Role, StreamConfig, StreamEvent, StreamId};
pub use types::{MuxStats, OpenError, ReadError, WriteError};
