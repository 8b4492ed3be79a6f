//! Cryptography: static keys, the Noise IK handshake, the transport AEAD (its backend chosen
//! in `aead`), replay protection and handshake cookies.

pub(crate) mod aead;
pub(crate) mod cookie;
pub(crate) mod keys;
pub(crate) mod noise;
pub(crate) mod replay;

#[cfg(test)]
mod interop_tests;

pub use keys::{KeyParseError, PublicKey, SecretKey};
/// The session tests size a replay burst by it.
#[cfg(test)]
pub(crate) use replay::REPLAY_WINDOW;
