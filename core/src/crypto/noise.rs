//! `Noise_IK_25519_ChaChaPoly_BLAKE2s`, byte-compatible with revision 34 of the Noise Protocol
//! Framework specification.
//!
//! ```text
//! IK:
//!   <- s
//!   ...
//!   -> e, es, s, ss      (initiate / respond)
//!   <- e, ee, se         (write_response / read_response)
//! ```
//!
//! The handshake is two function calls per side and holds no clock, socket or RNG: ephemeral keys
//! come in as [`SecretKey`]s the caller drew from its seeded CSPRNG. Transport encryption uses
//! [`CipherState`] (see [`aead`](super::aead)) with an explicit 64-bit counter (the Noise nonce), so packets may arrive out of
//! order; the [`replay`](super::replay) window decides which counters are acceptable.
//!
//! Every Diffie-Hellman output that depends on a key from the network is checked: an all-zero
//! output (a low-order point) fails the handshake with [`HandshakeError::Decrypt`].

use std::fmt;

use blake2::{Blake2s256, Digest};
use hmac::digest::KeyInit;
use hmac::{Mac, SimpleHmac};
use zeroize::Zeroize;

pub(crate) use super::aead::{CipherState, TAG_LEN};
use super::keys::{KEY_LEN, PublicKey, SecretKey};

/// The Noise protocol name; hashed into the initial handshake state.
pub(crate) const PROTOCOL_NAME: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";

/// Length of BLAKE2s output, Noise's `HASHLEN`.
pub(crate) const HASH_LEN: usize = 32;

/// Bytes of handshake message 1 besides the payload: ephemeral key, encrypted static key with its
/// tag, and the payload's tag.
pub(crate) const INITIATION_OVERHEAD: usize = 32 + 32 + 16 + 16;

/// Bytes of handshake message 2 besides the payload: ephemeral key and the payload's tag.
pub(crate) const RESPONSE_OVERHEAD: usize = 32 + 16;

/// The largest Noise message (spec section 3); longer handshake messages are malformed.
pub(crate) const MAX_MESSAGE_LEN: usize = 65535;

/// Why a handshake message was refused.
///
/// Deliberately coarse: a peer learns nothing about which check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum HandshakeError {
    /// The message has the wrong length for its position in the handshake.
    Malformed,
    /// The message did not authenticate (wrong keys, tampering, or a low-order public key).
    Decrypt,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed handshake message",
            Self::Decrypt => "handshake message did not authenticate",
        })
    }
}

impl std::error::Error for HandshakeError {}

/// Keys for a finished handshake.
#[derive(Debug)]
pub(crate) struct TransportKeys {
    /// Encrypts what we send.
    pub(crate) send: CipherState,
    /// Decrypts what we receive.
    pub(crate) recv: CipherState,
    /// The final handshake hash `h`: a unique, public identifier of this handshake that both
    /// sides share (for channel binding; read by the tests only).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) handshake_hash: [u8; HASH_LEN],
}

/// Whether `key` is a low-order point, with which every Diffie-Hellman output is zero.
///
/// Such a key can never complete a handshake; reject it when it is configured.
#[cfg(test)]
pub(crate) fn is_low_order(key: &PublicKey) -> bool {
    // Any clamped scalar is a multiple of the cofactor 8, which sends every point of small order
    // to the identity, whose u-coordinate is zero.
    is_zero(&SecretKey::from_bytes([1; KEY_LEN]).diffie_hellman(key))
}

/// Writes handshake message 1 (`-> e, es, s, ss, payload`), appending it to `out`, and returns
/// the state that reads the response.
///
/// `ephemeral` must be fresh from a CSPRNG for every call. The message is
/// [`INITIATION_OVERHEAD`] + `payload.len()` bytes. If `remote` is a low-order point (see
/// [`is_low_order`]) the message is still written, but under keys only we know, so it reveals
/// nothing and [`InitiatorHandshake::read_response`] fails.
pub(crate) fn initiate(
    local: &SecretKey,
    remote: &PublicKey,
    ephemeral: &SecretKey,
    prologue: &[u8],
    payload: &[u8],
    out: &mut Vec<u8>,
) -> InitiatorHandshake {
    let mut state = SymmetricState::new(prologue, remote);
    let e_pub = ephemeral.public_key();
    out.extend_from_slice(e_pub.as_bytes());
    state.mix_hash(e_pub.as_bytes());

    let mut es = ephemeral.diffie_hellman(remote);
    let poisoned = is_zero(&es);
    if poisoned {
        // Keep the initiator's identity and payload secret: derive the keys from our own
        // ephemeral secret instead of the public all-zero output.
        let mut secret = ephemeral.to_bytes();
        es = hash(&[b"burrow low-order remote", &secret]);
        secret.zeroize();
    }
    state.mix_key(&es);
    es.zeroize();
    state.encrypt_and_hash(local.public_key().as_bytes(), out);

    // Zero exactly when `es` was; then the chaining key already holds our secret from above.
    let mut ss = local.diffie_hellman(remote);
    state.mix_key(&ss);
    ss.zeroize();
    state.encrypt_and_hash(payload, out);

    InitiatorHandshake {
        state,
        local: local.clone(),
        ephemeral: ephemeral.clone(),
        poisoned,
    }
}

/// The initiator between sending message 1 and reading message 2. Cloning it lets a caller try
/// a response without consuming the handshake, so a forged response cannot cancel it.
#[derive(Clone)]
pub(crate) struct InitiatorHandshake {
    state: SymmetricState,
    local: SecretKey,
    ephemeral: SecretKey,
    poisoned: bool,
}

impl InitiatorHandshake {
    /// Reads handshake message 2 (`<- e, ee, se, payload`), appends its decrypted payload to
    /// `payload_out` and returns the transport keys (ours sends with Split's first key).
    ///
    /// # Errors
    ///
    /// [`HandshakeError::Malformed`] if `msg` is shorter than [`RESPONSE_OVERHEAD`] or longer
    /// than [`MAX_MESSAGE_LEN`]; [`HandshakeError::Decrypt`] if it does not authenticate. On
    /// error `payload_out` is unchanged.
    pub(crate) fn read_response(
        mut self,
        msg: &[u8],
        payload_out: &mut Vec<u8>,
    ) -> Result<TransportKeys, HandshakeError> {
        check_len(msg, RESPONSE_OVERHEAD)?;
        if self.poisoned {
            return Err(HandshakeError::Decrypt);
        }
        let (re, ciphertext) = split_key(msg);
        self.state.mix_hash(re.as_bytes());
        self.state.mix_dh(&self.ephemeral, &re)?;
        self.state.mix_dh(&self.local, &re)?;
        self.state.decrypt_and_hash(ciphertext, payload_out)?;
        let (k1, k2) = self.state.split();
        Ok(TransportKeys {
            send: CipherState::new(k1),
            recv: CipherState::new(k2),
            handshake_hash: self.state.h,
        })
    }
}

impl fmt::Debug for InitiatorHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitiatorHandshake")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// Reads handshake message 1 as the responder whose static key is `local`.
///
/// The caller learns the initiator's static key from [`ResponderHandshake::remote_static`] and
/// decides (by its own allow-list) whether to answer.
///
/// # Errors
///
/// [`HandshakeError::Malformed`] if `msg` is shorter than [`INITIATION_OVERHEAD`] or longer than
/// [`MAX_MESSAGE_LEN`]; [`HandshakeError::Decrypt`] if it was not made for `local`, was
/// tampered with, or carries a low-order key.
pub(crate) fn respond(
    local: &SecretKey,
    prologue: &[u8],
    msg: &[u8],
) -> Result<ResponderHandshake, HandshakeError> {
    check_len(msg, INITIATION_OVERHEAD)?;
    let mut state = SymmetricState::new(prologue, &local.public_key());
    let (re, rest) = split_key(msg);
    state.mix_hash(re.as_bytes());
    state.mix_dh(local, &re)?;

    let (encrypted_static, encrypted_payload) = rest.split_at(KEY_LEN + TAG_LEN);
    let mut static_bytes = Vec::with_capacity(KEY_LEN);
    state.decrypt_and_hash(encrypted_static, &mut static_bytes)?;
    let rs = PublicKey::from_bytes(
        static_bytes
            .try_into()
            // decrypt_and_hash appended exactly len - TAG_LEN = 32 bytes.
            .expect("decrypted static key is 32 bytes"),
    );
    state.mix_dh(local, &rs)?;

    let mut payload = Vec::with_capacity(encrypted_payload.len() - TAG_LEN);
    state.decrypt_and_hash(encrypted_payload, &mut payload)?;
    Ok(ResponderHandshake {
        state,
        re,
        rs,
        payload,
    })
}

/// The responder after reading message 1: who the initiator is and what it sent.
pub(crate) struct ResponderHandshake {
    state: SymmetricState,
    re: PublicKey,
    rs: PublicKey,
    payload: Vec<u8>,
}

impl ResponderHandshake {
    /// The initiator's static public key.
    ///
    /// Message 1 proves the sender holds the matching secret (its payload is keyed by `ss`), but
    /// it can be replayed verbatim: put a timestamp or similar in the payload to refuse replays.
    pub(crate) fn remote_static(&self) -> PublicKey {
        self.rs
    }

    /// The decrypted payload of message 1.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Writes handshake message 2 (`<- e, ee, se, payload`), appending it to `out`, and returns
    /// the transport keys (ours sends with Split's second key).
    ///
    /// `ephemeral` must be fresh from a CSPRNG. The message is [`RESPONSE_OVERHEAD`] +
    /// `payload.len()` bytes.
    pub(crate) fn write_response(
        mut self,
        ephemeral: &SecretKey,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> TransportKeys {
        let e_pub = ephemeral.public_key();
        out.extend_from_slice(e_pub.as_bytes());
        self.state.mix_hash(e_pub.as_bytes());
        // Neither output can be zero: respond() checked that `re` and `rs` are not low-order
        // (our clamped scalars then give non-zero results).
        let mut ee = ephemeral.diffie_hellman(&self.re);
        self.state.mix_key(&ee);
        ee.zeroize();
        let mut se = ephemeral.diffie_hellman(&self.rs);
        self.state.mix_key(&se);
        se.zeroize();
        self.state.encrypt_and_hash(payload, out);
        let (k1, k2) = self.state.split();
        TransportKeys {
            send: CipherState::new(k2),
            recv: CipherState::new(k1),
            handshake_hash: self.state.h,
        }
    }
}

impl fmt::Debug for ResponderHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponderHandshake")
            .field("remote_static", &self.rs)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

fn check_len(msg: &[u8], min: usize) -> Result<(), HandshakeError> {
    if msg.len() < min || msg.len() > MAX_MESSAGE_LEN {
        return Err(HandshakeError::Malformed);
    }
    Ok(())
}

/// Splits a public key off the front of a message already checked to be long enough.
fn split_key(msg: &[u8]) -> (PublicKey, &[u8]) {
    let (key, rest) = msg.split_at(KEY_LEN);
    // split_at(KEY_LEN) returns exactly KEY_LEN bytes.
    let key: [u8; KEY_LEN] = key.try_into().expect("32-byte key");
    (PublicKey::from_bytes(key), rest)
}

fn is_zero(bytes: &[u8; 32]) -> bool {
    // Not secret-dependent in a way that matters (the result is public), but avoid early exit.
    bytes.iter().fold(0u8, |acc, b| acc | b) == 0
}

fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut hasher = Blake2s256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut mac = <SimpleHmac<Blake2s256> as KeyInit>::new_from_slice(key)
        // HMAC accepts keys of any length.
        .expect("HMAC key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Noise's `HKDF(ck, ikm, 2)`.
fn hkdf2(chaining_key: &[u8; HASH_LEN], ikm: &[u8]) -> ([u8; HASH_LEN], [u8; HASH_LEN]) {
    let mut temp_key = hmac(chaining_key, &[ikm]);
    let out1 = hmac(&temp_key, &[&[1]]);
    let out2 = hmac(&temp_key, &[&out1, &[2]]);
    temp_key.zeroize();
    (out1, out2)
}

/// Noise's `SymmetricState` (with its `CipherState` inlined as `k` and `n`).
#[derive(Clone)]
struct SymmetricState {
    ck: [u8; HASH_LEN],
    h: [u8; HASH_LEN],
    k: Option<[u8; 32]>,
    n: u64,
}

impl SymmetricState {
    /// `InitializeSymmetric(PROTOCOL_NAME)`, `MixHash(prologue)`, then IK's pre-message `<- s`.
    fn new(prologue: &[u8], responder_static: &PublicKey) -> Self {
        // The name is 33 bytes, longer than HASHLEN, so h = HASH(name).
        let h = hash(&[PROTOCOL_NAME.as_bytes()]);
        let mut state = Self {
            ck: h,
            h,
            k: None,
            n: 0,
        };
        state.mix_hash(prologue);
        state.mix_hash(responder_static.as_bytes());
        state
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.h = hash(&[&self.h, data]);
    }

    fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, k) = hkdf2(&self.ck, ikm);
        self.ck = ck;
        self.k = Some(k);
        self.n = 0;
    }

    /// `MixKey(DH(secret, public))`, refusing an all-zero output.
    fn mix_dh(&mut self, secret: &SecretKey, public: &PublicKey) -> Result<(), HandshakeError> {
        let mut dh = secret.diffie_hellman(public);
        let zero = is_zero(&dh);
        if !zero {
            self.mix_key(&dh);
        }
        dh.zeroize();
        if zero {
            return Err(HandshakeError::Decrypt);
        }
        Ok(())
    }

    fn encrypt_and_hash(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(plaintext);
        if let Some(k) = self.k {
            let tag = CipherState::new(k).seal_in_place(self.n, &self.h, &mut out[start..]);
            out.extend_from_slice(&tag);
            self.n += 1;
        }
        self.h = hash(&[&self.h, &out[start..]]);
    }

    /// Appends the plaintext to `out`; on error `out` is left as it was.
    fn decrypt_and_hash(
        &mut self,
        ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), HandshakeError> {
        let start = out.len();
        match self.k {
            Some(k) => {
                let body_len = ciphertext
                    .len()
                    .checked_sub(TAG_LEN)
                    .ok_or(HandshakeError::Malformed)?;
                let (body, tag) = ciphertext.split_at(body_len);
                // split_at(len - TAG_LEN) leaves exactly TAG_LEN bytes.
                let tag: &[u8; TAG_LEN] = tag.try_into().expect("16-byte tag");
                out.extend_from_slice(body);
                if CipherState::new(k)
                    .open_in_place(self.n, &self.h, &mut out[start..], tag)
                    .is_err()
                {
                    out[start..].zeroize();
                    out.truncate(start);
                    return Err(HandshakeError::Decrypt);
                }
                self.n += 1;
            }
            None => out.extend_from_slice(ciphertext),
        }
        self.h = hash(&[&self.h, ciphertext]);
        Ok(())
    }

    /// `Split()`: the initiator-to-responder and responder-to-initiator keys.
    fn split(&self) -> ([u8; 32], [u8; 32]) {
        hkdf2(&self.ck, &[])
    }
}

impl Drop for SymmetricState {
    fn drop(&mut self) {
        self.ck.zeroize();
        if let Some(k) = self.k.as_mut() {
            k.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::aead::AeadError;
    use super::*;
    use proptest::prelude::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; 32])
    }

    const PROLOGUE: &[u8] = b"burrow test";

    /// Runs a whole handshake and returns (message 1, message 2, initiator keys, responder keys).
    fn handshake() -> (Vec<u8>, Vec<u8>, TransportKeys, TransportKeys) {
        let (ini, resp) = (key(1), key(2));
        let mut msg1 = Vec::new();
        let pending = initiate(
            &ini,
            &resp.public_key(),
            &key(3),
            PROLOGUE,
            b"hello",
            &mut msg1,
        );
        assert_eq!(msg1.len(), INITIATION_OVERHEAD + 5);
        let responder = respond(&resp, PROLOGUE, &msg1).unwrap();
        assert_eq!(responder.remote_static(), ini.public_key());
        assert_eq!(responder.payload(), b"hello");
        let mut msg2 = Vec::new();
        let resp_keys = responder.write_response(&key(4), b"welcome!", &mut msg2);
        assert_eq!(msg2.len(), RESPONSE_OVERHEAD + 8);
        let mut payload = vec![9];
        let ini_keys = pending.read_response(&msg2, &mut payload).unwrap();
        assert_eq!(payload, b"\x09welcome!");
        (msg1, msg2, ini_keys, resp_keys)
    }

    #[test]
    fn handshake_agrees_on_keys_and_hash() {
        let (_, _, ini, resp) = handshake();
        assert_eq!(ini.handshake_hash, resp.handshake_hash);
        let mut buf = *b"ping";
        let tag = ini.send.seal_in_place(7, b"hdr", &mut buf);
        assert_ne!(&buf, b"ping");
        resp.recv.open_in_place(7, b"hdr", &mut buf, &tag).unwrap();
        assert_eq!(&buf, b"ping");
        let tag = resp.send.seal_in_place(0, b"", &mut buf);
        ini.recv.open_in_place(0, b"", &mut buf, &tag).unwrap();
        // Each direction has its own key.
        let tag = ini.send.seal_in_place(1, b"", &mut buf);
        assert_eq!(
            ini.recv.open_in_place(1, b"", &mut buf, &tag),
            Err(AeadError)
        );
    }

    #[test]
    fn transport_rejects_wrong_counter_ad_or_tag() {
        let (_, _, ini, resp) = handshake();
        let mut buf = *b"data";
        let tag = ini.send.seal_in_place(5, b"ad", &mut buf);
        let sealed = buf;
        assert!(resp.recv.open_in_place(6, b"ad", &mut buf, &tag).is_err());
        buf = sealed;
        assert!(resp.recv.open_in_place(5, b"ae", &mut buf, &tag).is_err());
        buf = sealed;
        let mut bad_tag = tag;
        bad_tag[15] ^= 1;
        assert!(
            resp.recv
                .open_in_place(5, b"ad", &mut buf, &bad_tag)
                .is_err()
        );
        buf = sealed;
        resp.recv.open_in_place(5, b"ad", &mut buf, &tag).unwrap();
        assert_eq!(AeadError.to_string(), "decryption failed");
    }

    #[test]
    fn rekey_changes_the_key_on_both_sides_alike() {
        let (_, _, ini, resp) = handshake();
        let (send, recv) = (ini.send.rekey(), resp.recv.rekey());
        let mut buf = *b"after rekey";
        let tag = send.seal_in_place(0, b"", &mut buf);
        let sealed = buf;
        recv.open_in_place(0, b"", &mut buf, &tag).unwrap();
        buf = sealed;
        assert!(resp.recv.open_in_place(0, b"", &mut buf, &tag).is_err());
    }

    #[test]
    fn wrong_responder_key_fails_with_decrypt() {
        let mut msg1 = Vec::new();
        let _ = initiate(
            &key(1),
            &key(9).public_key(),
            &key(3),
            PROLOGUE,
            b"",
            &mut msg1,
        );
        assert_eq!(
            respond(&key(2), PROLOGUE, &msg1).unwrap_err(),
            HandshakeError::Decrypt
        );
    }

    #[test]
    fn different_prologue_fails() {
        let mut msg1 = Vec::new();
        let _ = initiate(
            &key(1),
            &key(2).public_key(),
            &key(3),
            b"v1",
            b"",
            &mut msg1,
        );
        assert_eq!(
            respond(&key(2), b"v2", &msg1).unwrap_err(),
            HandshakeError::Decrypt
        );
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let (msg1, msg2, _, _) = handshake();
        for i in 0..msg1.len() {
            let mut bad = msg1.clone();
            bad[i] ^= 0x40;
            assert!(
                respond(&key(2), PROLOGUE, &bad).is_err(),
                "message 1 byte {i}"
            );
        }
        for i in 0..msg2.len() {
            let mut msg1 = Vec::new();
            let pending = initiate(
                &key(1),
                &key(2).public_key(),
                &key(3),
                PROLOGUE,
                b"hello",
                &mut msg1,
            );
            let mut bad = msg2.clone();
            bad[i] ^= 0x40;
            let mut out = Vec::new();
            assert!(
                pending.read_response(&bad, &mut out).is_err(),
                "message 2 byte {i}"
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn truncated_and_oversized_messages_are_malformed() {
        let (msg1, msg2, _, _) = handshake();
        assert_eq!(
            respond(&key(2), PROLOGUE, &msg1[..INITIATION_OVERHEAD - 1]).unwrap_err(),
            HandshakeError::Malformed
        );
        assert_eq!(
            respond(&key(2), PROLOGUE, &vec![0; MAX_MESSAGE_LEN + 1]).unwrap_err(),
            HandshakeError::Malformed
        );
        // Dropping payload bytes keeps the length valid but breaks the tag.
        assert_eq!(
            respond(&key(2), PROLOGUE, &msg1[..msg1.len() - 1]).unwrap_err(),
            HandshakeError::Decrypt
        );
        let mut msg1 = Vec::new();
        let pending = initiate(
            &key(1),
            &key(2).public_key(),
            &key(3),
            PROLOGUE,
            b"hello",
            &mut msg1,
        );
        let short = &msg2[..RESPONSE_OVERHEAD - 1];
        assert_eq!(
            pending.read_response(short, &mut Vec::new()).unwrap_err(),
            HandshakeError::Malformed
        );
    }

    #[test]
    fn low_order_ephemeral_in_message_1_is_refused() {
        let (mut msg1, _, _, _) = handshake();
        msg1[..32].copy_from_slice(&[0; 32]); // u = 0: the point of order 2
        assert_eq!(
            respond(&key(2), PROLOGUE, &msg1).unwrap_err(),
            HandshakeError::Decrypt
        );
        let mut one = [0; 32];
        one[0] = 1; // u = 1: a point of order 4
        msg1[..32].copy_from_slice(&one);
        assert_eq!(
            respond(&key(2), PROLOGUE, &msg1).unwrap_err(),
            HandshakeError::Decrypt
        );
    }

    #[test]
    fn low_order_ephemeral_in_message_2_is_refused() {
        let (_, mut msg2, _, _) = handshake();
        msg2[..32].copy_from_slice(&[0; 32]);
        let mut msg1 = Vec::new();
        let pending = initiate(
            &key(1),
            &key(2).public_key(),
            &key(3),
            PROLOGUE,
            b"hello",
            &mut msg1,
        );
        assert_eq!(
            pending.read_response(&msg2, &mut Vec::new()).unwrap_err(),
            HandshakeError::Decrypt
        );
    }

    #[test]
    fn low_order_remote_static_leaks_nothing_and_fails() {
        let zero = PublicKey::from_bytes([0; 32]);
        assert!(is_low_order(&zero));
        assert!(!is_low_order(&key(2).public_key()));
        let mut msg1 = Vec::new();
        let pending = initiate(&key(1), &zero, &key(3), PROLOGUE, b"secret", &mut msg1);
        // Someone who knows the all-zero DH output cannot read the static key.
        let mut state = SymmetricState::new(PROLOGUE, &zero);
        state.mix_hash(&msg1[..32]);
        state.mix_key(&[0; 32]);
        assert!(
            state
                .decrypt_and_hash(&msg1[32..80], &mut Vec::new())
                .is_err()
        );
        assert_eq!(
            pending
                .read_response(&[0; 64], &mut Vec::new())
                .unwrap_err(),
            HandshakeError::Decrypt
        );
    }

    proptest! {
        #[test]
        fn respond_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = respond(&key(2), PROLOGUE, &msg);
        }

        #[test]
        fn read_response_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut msg1 = Vec::new();
            let pending = initiate(&key(1), &key(2).public_key(), &key(3), PROLOGUE, b"", &mut msg1);
            let mut out = Vec::new();
            prop_assert!(pending.read_response(&msg, &mut out).is_err());
            prop_assert!(out.is_empty());
        }

        #[test]
        fn tampering_anywhere_in_message_1_fails(index in 0usize..INITIATION_OVERHEAD + 5, flip in 1u8..) {
            let (mut msg1, _, _, _) = handshake();
            msg1[index] ^= flip;
            prop_assert!(respond(&key(2), PROLOGUE, &msg1).is_err());
        }
    }
}
