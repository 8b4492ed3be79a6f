//! Cryptography: static keys, the Noise IK handshake, transport AEAD, replay protection and
//! handshake cookies.

pub mod keys;

pub use keys::{KeyParseError, PublicKey, SecretKey};
