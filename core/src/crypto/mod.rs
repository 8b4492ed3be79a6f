//! Cryptography: static keys, the Noise IK handshake, transport AEAD, replay protection and
//! handshake cookies.

pub mod cookie;
pub mod keys;
pub mod noise;
pub mod replay;

#[cfg(test)]
mod interop_tests;

pub use cookie::{CookieChecker, CookieError, CookieJar, MAC_LEN, MacKeys};
pub use keys::{KeyParseError, PublicKey, SecretKey};
pub use noise::{
    AeadError, CipherState, HandshakeError, InitiatorHandshake, ResponderHandshake, TAG_LEN,
    TransportKeys,
};
pub use replay::{REPLAY_WINDOW, ReplayWindow};
