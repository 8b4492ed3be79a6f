//! The bytes on the wire.
//!
//! Every burrow datagram starts with the fixed, hand-encoded header in [`header`]; its first byte
//! carries a magic nibble and the protocol version, so that burrow packets, STUN messages
//! ([`stun`]) and future versions can share one UDP port. Inside an encrypted transport packet a
//! kind byte says what the plaintext holds ([`payload`]); control messages there are versioned
//! postcard bodies ([`control`]).

pub(crate) mod control;
pub(crate) mod header;
pub(crate) mod payload;
pub(crate) mod stun;

pub(crate) use header::{Packet, WireError};
