//! Static X25519 keys: what identifies a daemon or a server.
//!
//! Keys print and parse as standard base64 of their 32 bytes (44 characters), like WireGuard's,
//! so they can be pasted into config files and command lines.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Length in bytes of an X25519 key.
pub(crate) const KEY_LEN: usize = 32;

/// A static X25519 public key: the identity of a daemon or a server.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub(crate) fn to_dalek(self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight characters tell keys apart in logs without filling the line.
        let text = self.to_string();
        write!(f, "PublicKey({}…)", &text[..8])
    }
}

/// Why a key string was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyParseError {
    /// The text is not standard base64.
    NotBase64,
    /// The text decodes to a number of bytes other than 32.
    WrongLength(usize),
}

impl fmt::Display for KeyParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBase64 => f.write_str(
                "key is not valid base64 (expected 44 characters as printed by `burrow keygen`)",
            ),
            Self::WrongLength(n) => write!(f, "key decodes to {n} bytes; an X25519 key has 32"),
        }
    }
}

impl std::error::Error for KeyParseError {}

fn decode_key(text: &str) -> Result<[u8; KEY_LEN], KeyParseError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| KeyParseError::NotBase64)?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| KeyParseError::WrongLength(len))
}

impl FromStr for PublicKey {
    type Err = KeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        decode_key(text).map(Self)
    }
}

/// A static X25519 secret key. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct SecretKey(x25519_dalek::StaticSecret);

impl SecretKey {
    /// Builds a key from 32 bytes, which must come from a cryptographically secure source.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(x25519_dalek::StaticSecret::from(bytes))
    }

    /// The raw secret bytes, for saving the key to a file.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// X25519 Diffie-Hellman with `peer`.
    pub(crate) fn diffie_hellman(&self, peer: &PublicKey) -> [u8; KEY_LEN] {
        self.0.diffie_hellman(&peer.to_dalek()).to_bytes()
    }

    /// The secret as base64, for writing a key file.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.to_bytes())
    }
}

impl FromStr for SecretKey {
    type Err = KeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        decode_key(text).map(Self::from_bytes)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {:?})", self.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_base64() {
        let secret = SecretKey::from_bytes([7; 32]);
        let public = secret.public_key();
        let text = public.to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(text.parse::<PublicKey>().unwrap(), public);
        let again: SecretKey = secret.to_base64().parse().unwrap();
        assert_eq!(again.public_key(), public);
    }

    #[test]
    fn bad_key_text_is_a_clear_error() {
        assert_eq!(
            "not a key!".parse::<PublicKey>(),
            Err(KeyParseError::NotBase64)
        );
        assert_eq!(
            "AAAA".parse::<PublicKey>(),
            Err(KeyParseError::WrongLength(3))
        );
        assert!(!format!("{:?}", SecretKey::from_bytes([1; 32])).contains("AQEB"));
    }

    #[test]
    fn diffie_hellman_agrees() {
        let a = SecretKey::from_bytes([1; 32]);
        let b = SecretKey::from_bytes([2; 32]);
        assert_eq!(
            a.diffie_hellman(&b.public_key()),
            b.diffie_hellman(&a.public_key())
        );
    }
}
