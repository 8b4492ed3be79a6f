//! The transport AEAD: ChaCha20-Poly1305 with the Noise nonce layout, behind one type,
//! [`CipherState`], so that this file alone chooses the implementation.
//!
//! - `ring` (the default cargo feature): ring's assembly, which picks its SSE, AVX2 or AVX-512
//!   code from the CPU at run time, so a default build (no `-C target-cpu`) is fast. About four
//!   times the RustCrypto crate there (`cargo bench -p burrow-core --bench aead`).
//! - `pure-rust-crypto` (or a build without `ring`): the RustCrypto `chacha20poly1305` crate, pure
//!   Rust. Its SIMD code only inlines in a build for the host CPU.
//!
//! Both produce the same bytes (the snow interop tests and this file's tests check it). Both seal
//! and open in place, so the caller owns every buffer and nothing is allocated per packet.

use std::fmt;

/// Length of a ChaCha20-Poly1305 authentication tag.
pub(crate) const TAG_LEN: usize = 16;

/// A transport packet did not authenticate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AeadError;

impl fmt::Display for AeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("decryption failed")
    }
}

impl std::error::Error for AeadError {}

/// Transport key for one direction: ChaCha20-Poly1305 with the Noise nonce layout (four zero
/// bytes, then the 64-bit counter little-endian).
///
/// The key is wiped when the value drops. The type is stateless: the caller owns the counter, so
/// one `CipherState` can seal or open packets in any order.
pub(crate) struct CipherState {
    key: backend::Key,
}

impl CipherState {
    /// Wraps a 32-byte key.
    pub(crate) fn new(key: [u8; 32]) -> Self {
        let mut key = key;
        let state = Self {
            key: backend::Key::new(&key),
        };
        zeroize::Zeroize::zeroize(&mut key);
        state
    }

    /// Encrypts `buf` in place and returns the tag.
    ///
    /// `counter` is the Noise nonce and must never repeat under one key. Noise reserves
    /// `u64::MAX` for `REKEY()`; rekey long before reaching it.
    ///
    /// # Panics
    ///
    /// If `buf` is 256 GiB or longer (ChaCha20's block counter would wrap).
    pub(crate) fn seal_in_place(&self, counter: u64, ad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        self.key.seal(nonce(counter), ad, buf)
    }

    /// Decrypts `buf` in place.
    ///
    /// # Errors
    ///
    /// [`AeadError`] if the tag does not verify; the contents of `buf` are then unspecified and
    /// must be discarded.
    pub(crate) fn open_in_place(
        &self,
        counter: u64,
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        self.key.open(nonce(counter), ad, buf, tag)
    }

    /// Noise's `REKEY()`: the next key is the first 32 bytes of encrypting 32 zero bytes with
    /// nonce `u64::MAX` and no associated data. Both sides must rekey at the same point.
    #[must_use]
    #[cfg(test)]
    pub(crate) fn rekey(&self) -> Self {
        let mut key = [0u8; 32];
        let _tag = self.seal_in_place(u64::MAX, &[], &mut key);
        Self::new(key)
    }
}

impl fmt::Debug for CipherState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CipherState({})", backend::NAME)
    }
}

fn nonce(counter: u64) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_le_bytes());
    bytes
}

/// ring's ChaCha20-Poly1305.
#[cfg(all(feature = "ring", not(feature = "pure-rust-crypto")))]
mod backend {
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};

    use super::{AeadError, TAG_LEN};

    pub(super) const NAME: &str = "ring";

    pub(super) struct Key(LessSafeKey);

    impl Key {
        pub(super) fn new(key: &[u8; 32]) -> Self {
            // ring refuses only a key of the wrong length for the algorithm.
            Self(LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte ChaCha20 key"),
            ))
        }

        pub(super) fn seal(&self, nonce: [u8; 12], ad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
            let tag = self
                .0
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(ad), buf)
                // The only failure is a buffer of 2^32 ChaCha20 blocks (256 GiB).
                .expect("ChaCha20-Poly1305 plaintext below 256 GiB");
            let mut out = [0u8; TAG_LEN];
            out.copy_from_slice(tag.as_ref());
            out
        }

        pub(super) fn open(
            &self,
            nonce: [u8; 12],
            ad: &[u8],
            buf: &mut [u8],
            tag: &[u8; TAG_LEN],
        ) -> Result<(), AeadError> {
            self.0
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(ad),
                    Tag::from(*tag),
                    buf,
                    0..,
                )
                .map(|_| ())
                .map_err(|_| AeadError)
        }
    }

    impl Drop for Key {
        /// ring does not wipe its keys. Overwrite ours in place with the all-zero key; reading
        /// it back through `black_box` keeps the compiler from dropping the store as dead.
        /// (Copies left by moves are not reached, as with `zeroize`.)
        fn drop(&mut self) {
            self.0 = LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, &[0; 32]).expect("32-byte ChaCha20 key"),
            );
            std::hint::black_box(&self.0);
        }
    }
}

/// The RustCrypto `chacha20poly1305` crate (its `zeroize` feature wipes the key on drop).
#[cfg(any(not(feature = "ring"), feature = "pure-rust-crypto"))]
mod backend {
    use chacha20poly1305::aead::AeadInOut;
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit};

    use super::{AeadError, TAG_LEN};

    pub(super) const NAME: &str = "chacha20poly1305";

    pub(super) struct Key(ChaCha20Poly1305);

    impl Key {
        pub(super) fn new(key: &[u8; 32]) -> Self {
            Self(ChaCha20Poly1305::new(&(*key).into()))
        }

        pub(super) fn seal(&self, nonce: [u8; 12], ad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
            self.0
                .encrypt_inout_detached(&nonce.into(), ad, buf.into())
                // The only failure is a buffer of 2^32 ChaCha20 blocks (256 GiB).
                .expect("ChaCha20-Poly1305 plaintext below 256 GiB")
                .into()
        }

        pub(super) fn open(
            &self,
            nonce: [u8; 12],
            ad: &[u8],
            buf: &mut [u8],
            tag: &[u8; TAG_LEN],
        ) -> Result<(), AeadError> {
            self.0
                .decrypt_inout_detached(&nonce.into(), ad, buf.into(), &(*tag).into())
                .map_err(|_| AeadError)
        }
    }
}

#[cfg(test)]
mod tests {
    use chacha20poly1305::aead::AeadInOut;
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit};

    use super::*;

    /// Whatever the backend, the bytes are the RustCrypto crate's with the Noise nonce, and
    /// what one seals the other opens.
    #[test]
    fn same_bytes_as_the_reference_crate() {
        let key = [0x2Au8; 32];
        let ours = CipherState::new(key);
        let reference = ChaCha20Poly1305::new(&key.into());
        for (len, counter) in [(0, 0), (1, 1), (63, 7), (64, 1 << 32), (65, 3), (1200, 99)]
            .into_iter()
            .chain([(1452, u64::MAX - 1), (4000, 12_345)])
        {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let ad = [counter as u8; 16];
            let mut sealed = plain.clone();
            let tag = ours.seal_in_place(counter, &ad, &mut sealed);
            let mut expected = plain.clone();
            let expected_tag = reference
                .encrypt_inout_detached(&nonce(counter).into(), &ad, expected.as_mut_slice().into())
                .unwrap();
            assert_eq!(sealed, expected, "ciphertext, {len} bytes");
            assert_eq!(tag, <[u8; TAG_LEN]>::from(expected_tag), "tag, {len} bytes");
            let mut opened = sealed.clone();
            ours.open_in_place(counter, &ad, &mut opened, &tag).unwrap();
            assert_eq!(opened, plain);
        }
    }

    #[test]
    fn tampering_fails_to_open() {
        let cipher = CipherState::new([9; 32]);
        let mut buf = *b"attack at dawn";
        let tag = cipher.seal_in_place(5, b"hdr", &mut buf);
        let sealed = buf;
        let mut wrong_tag = tag;
        wrong_tag[15] ^= 1;
        let mut flipped = sealed;
        flipped[0] ^= 0x80;
        for (counter, ad, body, tag) in [
            (6, &b"hdr"[..], sealed, tag),
            (5, &b"hdR"[..], sealed, tag),
            (5, &b"hdr"[..], flipped, tag),
            (5, &b"hdr"[..], sealed, wrong_tag),
        ] {
            let mut body = body;
            assert_eq!(
                cipher.open_in_place(counter, ad, &mut body, &tag),
                Err(AeadError)
            );
        }
        let mut body = sealed;
        cipher.open_in_place(5, b"hdr", &mut body, &tag).unwrap();
        assert_eq!(&body, b"attack at dawn");
    }

    #[test]
    fn error_and_debug_say_little() {
        assert_eq!(AeadError.to_string(), "decryption failed");
        let debug = format!("{:?}", CipherState::new([1; 32]));
        assert_eq!(debug, format!("CipherState({})", backend::NAME));
    }
}
