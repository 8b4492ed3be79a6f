//! Cryptography: static keys, the Noise IK handshake, transport AEAD, replay protection and
//! handshake cookies.

pub(crate) mod cookie;
pub(crate) mod keys;
pub(crate) mod noise;
pub(crate) mod replay;

#[cfg(test)]
mod interop_tests;

pub(crate) use cookie::{CookieChecker, CookieError, CookieJar, MAC_LEN, MacKeys};
pub use keys::{KeyParseError, PublicKey, SecretKey};
pub(crate) use noise::{
    AeadError, CipherState, HandshakeError, InitiatorHandshake, ResponderHandshake, TAG_LEN,
    TransportKeys,
};
pub(crate) use replay::{REPLAY_WINDOW, ReplayWindow};
