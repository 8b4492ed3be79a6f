//! Handshake DoS protection with MACs and cookies, as in WireGuard (whitepaper section 5.4.4 to
//! 5.4.7).
//!
//! Every handshake message ends with two MACs over the bytes before them:
//!
//! ```text
//! message = body || mac1 || mac2
//! mac1 = MAC(HASH("mac1----" || responder_public), body)
//! mac2 = MAC(cookie, body || mac1)      or 16 zero bytes without a valid cookie
//! ```
//!
//! `mac1` lets the responder drop messages from anyone who does not know its public key before it
//! spends a Diffie-Hellman ([`MacKeys::verify_mac1`]). Under load the responder also requires a
//! valid `mac2`: otherwise it answers with a cookie reply ([`CookieChecker::seal_reply`]) instead
//! of processing the handshake. The cookie is `MAC(secret, source address)`, so only a sender that
//! receives packets at that address can learn it, and the responder keeps no per-sender state.
//! The initiator opens the reply ([`CookieJar::open_reply`]), and its retries carry a `mac2`
//! ([`CookieJar::mac2`]).
//!
//! `MAC` is keyed BLAKE2s with 16 bytes of output; `HASH` is BLAKE2s-256. The cookie reply is the
//! cookie sealed with XChaCha20-Poly1305 under `HASH("cookie--" || responder_public)`, a random
//! 24-byte nonce and, as associated data, the `mac1` of the message it answers: an attacker who
//! did not see that message cannot forge a reply, and a reply cannot be used for another message.
//!
//! Time and randomness come from the caller: `now` arguments, a closure for a fresh secret, and
//! the nonce.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroize;

use super::keys::PublicKey;
use super::noise::TAG_LEN;

/// Length of `mac1`, `mac2` and cookies.
pub(crate) const MAC_LEN: usize = 16;

/// Length of the nonce at the front of a cookie reply.
pub(crate) const COOKIE_NONCE_LEN: usize = 24;

/// Length of a sealed cookie reply: nonce, encrypted cookie, tag.
pub(crate) const COOKIE_REPLY_LEN: usize = COOKIE_NONCE_LEN + MAC_LEN + TAG_LEN;

/// How long the responder's cookie secret lives; cookies made with it stop verifying after that.
pub(crate) const COOKIE_SECRET_LIFETIME: Duration = Duration::from_secs(120);

/// How long an initiator uses a cookie after receiving it.
pub(crate) const COOKIE_LIFETIME: Duration = Duration::from_secs(120);

const LABEL_MAC1: &[u8] = b"mac1----";
const LABEL_COOKIE: &[u8] = b"cookie--";

/// A cookie reply was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum CookieError {
    /// The reply is not [`COOKIE_REPLY_LEN`] bytes.
    Malformed,
    /// The reply does not authenticate for the `mac1` we sent.
    Decrypt,
}

impl fmt::Display for CookieError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed cookie reply",
            Self::Decrypt => "cookie reply did not authenticate",
        })
    }
}

impl std::error::Error for CookieError {}

/// The `mac1` key for one responder's public key. Both sides compute it: the initiator from the
/// key it pins, the responder from its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MacKeys {
    mac1_key: [u8; 32],
}

impl MacKeys {
    /// Derives `HASH("mac1----" || responder)`.
    pub(crate) fn new(responder: &PublicKey) -> Self {
        Self {
            mac1_key: hash(LABEL_MAC1, responder),
        }
    }

    /// `mac1` over `msg`, the message bytes before `mac1`.
    pub(crate) fn mac1(&self, msg: &[u8]) -> [u8; MAC_LEN] {
        mac(&self.mac1_key, &[msg])
    }

    /// Whether `mac` is the `mac1` of `msg` (compared in constant time).
    pub(crate) fn verify_mac1(&self, msg: &[u8], mac: &[u8; MAC_LEN]) -> bool {
        verify(&self.mac1_key, &[msg], mac)
    }
}

struct Secret {
    bytes: [u8; 32],
    born: Instant,
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// The responder's side: verifies `mac1` and `mac2`, makes cookies and seals cookie replies.
///
/// It holds one random secret, replaced [`COOKIE_SECRET_LIFETIME`] after it was made the next
/// time a cookie is needed. There is no grace period: a cookie stops verifying when its secret
/// expires, at most 120 s after it was made (WireGuard behaves the same); the initiator then gets a
/// new cookie reply.
pub(crate) struct CookieChecker {
    mac_keys: MacKeys,
    cookie_key: [u8; 32],
    secret: Option<Secret>,
}

impl CookieChecker {
    /// A checker for the responder whose static public key is `local`.
    pub(crate) fn new(local: &PublicKey) -> Self {
        Self {
            mac_keys: MacKeys::new(local),
            cookie_key: hash(LABEL_COOKIE, local),
            secret: None,
        }
    }

    /// The `mac1` key of this responder.
    #[cfg(test)]
    pub(crate) fn mac_keys(&self) -> &MacKeys {
        &self.mac_keys
    }

    /// Whether `mac1` is valid for `msg` (the bytes before `mac1`).
    pub(crate) fn verify_mac1(&self, msg: &[u8], mac1: &[u8; MAC_LEN]) -> bool {
        self.mac_keys.verify_mac1(msg, mac1)
    }

    /// The cookie for `src` at `now`, making a new secret with `fresh_secret` (32 bytes from the
    /// caller's CSPRNG) if there is none or it has expired.
    pub(crate) fn cookie(
        &mut self,
        now: Instant,
        fresh_secret: impl FnOnce() -> [u8; 32],
        src: SocketAddr,
    ) -> [u8; MAC_LEN] {
        if self.live_secret(now).is_none() {
            self.secret = Some(Secret {
                bytes: fresh_secret(),
                born: now,
            });
        }
        let secret = self.live_secret(now).expect("secret made just above");
        cookie_of(secret, src)
    }

    /// Whether `mac2` is valid for `msg` (the bytes before `mac2`, including `mac1`) from `src`:
    /// made with the cookie of `src` under the current, unexpired secret. Does not make a secret;
    /// without one nothing verifies.
    pub(crate) fn verify_mac2(
        &self,
        now: Instant,
        src: SocketAddr,
        msg: &[u8],
        mac2: &[u8; MAC_LEN],
    ) -> bool {
        let Some(secret) = self.live_secret(now) else {
            return false;
        };
        let mut cookie = cookie_of(secret, src);
        let ok = verify(&cookie, &[msg], mac2);
        cookie.zeroize();
        ok
    }

    /// The cookie reply to a message from `src` whose `mac1` was `mac1`: `nonce` (24 random bytes
    /// from the caller) followed by the sealed cookie and its tag.
    pub(crate) fn seal_reply(
        &mut self,
        now: Instant,
        fresh_secret: impl FnOnce() -> [u8; 32],
        src: SocketAddr,
        mac1: &[u8; MAC_LEN],
        nonce: [u8; COOKIE_NONCE_LEN],
    ) -> [u8; COOKIE_REPLY_LEN] {
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        reply[..COOKIE_NONCE_LEN].copy_from_slice(&nonce);
        let mut cookie = self.cookie(now, fresh_secret, src);
        let body = &mut reply[COOKIE_NONCE_LEN..COOKIE_NONCE_LEN + MAC_LEN];
        body.copy_from_slice(&cookie);
        cookie.zeroize();
        let tag = XChaCha20Poly1305::new(&self.cookie_key.into())
            .encrypt_inout_detached(&XNonce::from(nonce), mac1, body.into())
            // Only plaintexts of 256 GiB or more fail; this one is 16 bytes.
            .expect("16-byte plaintext");
        reply[COOKIE_NONCE_LEN + MAC_LEN..].copy_from_slice(&tag);
        reply
    }

    fn live_secret(&self, now: Instant) -> Option<&[u8; 32]> {
        self.secret
            .as_ref()
            .filter(|s| now.saturating_duration_since(s.born) < COOKIE_SECRET_LIFETIME)
            .map(|s| &s.bytes)
    }
}

impl fmt::Debug for CookieChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieChecker")
            .field("secret_born", &self.secret.as_ref().map(|s| s.born))
            .finish_non_exhaustive()
    }
}

/// The initiator's side for one responder: opens cookie replies and keeps the last cookie for
/// [`COOKIE_LIFETIME`] to compute `mac2`.
pub(crate) struct CookieJar {
    mac_keys: MacKeys,
    cookie_key: [u8; 32],
    cookie: Option<([u8; MAC_LEN], Instant)>,
}

impl CookieJar {
    /// A jar for the responder whose static public key is `responder`.
    pub(crate) fn new(responder: &PublicKey) -> Self {
        Self {
            mac_keys: MacKeys::new(responder),
            cookie_key: hash(LABEL_COOKIE, responder),
            cookie: None,
        }
    }

    /// The `mac1` key of the responder.
    pub(crate) fn mac_keys(&self) -> &MacKeys {
        &self.mac_keys
    }

    /// Opens a cookie reply to the message whose `mac1` we sent as `sent_mac1`, and keeps the
    /// cookie from `now` on (replacing any earlier one).
    ///
    /// # Errors
    ///
    /// [`CookieError::Malformed`] if `reply` is not [`COOKIE_REPLY_LEN`] bytes,
    /// [`CookieError::Decrypt`] if it does not authenticate for `sent_mac1`. The jar is then
    /// unchanged.
    pub(crate) fn open_reply(
        &mut self,
        now: Instant,
        reply: &[u8],
        sent_mac1: &[u8; MAC_LEN],
    ) -> Result<(), CookieError> {
        if reply.len() != COOKIE_REPLY_LEN {
            return Err(CookieError::Malformed);
        }
        let (nonce, rest) = reply.split_at(COOKIE_NONCE_LEN);
        let (sealed, tag) = rest.split_at(MAC_LEN);
        let mut cookie = [0u8; MAC_LEN];
        cookie.copy_from_slice(sealed);
        // Lengths checked above: the slices are 24 and 16 bytes.
        let nonce = XNonce::try_from(nonce).expect("24-byte nonce");
        let tag = chacha20poly1305::Tag::try_from(tag).expect("16-byte tag");
        XChaCha20Poly1305::new(&self.cookie_key.into())
            .decrypt_inout_detached(&nonce, sent_mac1, (&mut cookie[..]).into(), &tag)
            .map_err(|_| CookieError::Decrypt)?;
        self.cookie = Some((cookie, now));
        Ok(())
    }

    /// `mac2` for `msg` (the bytes before `mac2`, including `mac1`), or `None` without a cookie
    /// received within [`COOKIE_LIFETIME`] before `now` (send 16 zero bytes then).
    pub(crate) fn mac2(&self, now: Instant, msg: &[u8]) -> Option<[u8; MAC_LEN]> {
        let (cookie, received) = self.cookie.as_ref()?;
        (now.saturating_duration_since(*received) < COOKIE_LIFETIME).then(|| mac(cookie, &[msg]))
    }

    /// Forgets the cookie.
    pub(crate) fn clear(&mut self) {
        if let Some((cookie, _)) = self.cookie.as_mut() {
            cookie.zeroize();
        }
        self.cookie = None;
    }
}

impl Drop for CookieJar {
    fn drop(&mut self) {
        self.clear();
    }
}

impl fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieJar")
            .field("cookie_received", &self.cookie.as_ref().map(|(_, at)| *at))
            .finish_non_exhaustive()
    }
}

/// The cookie of `src`: a MAC of its IP address then port, big-endian (6 bytes for IPv4, 18 for
/// IPv6).
fn cookie_of(secret: &[u8; 32], src: SocketAddr) -> [u8; MAC_LEN] {
    let port = src.port().to_be_bytes();
    match src {
        SocketAddr::V4(a) => mac(secret, &[&a.ip().octets(), &port]),
        SocketAddr::V6(a) => mac(secret, &[&a.ip().octets(), &port]),
    }
}

fn hash(label: &[u8], key: &PublicKey) -> [u8; 32] {
    Blake2s256::new()
        .chain_update(label)
        .chain_update(key.as_bytes())
        .finalize()
        .into()
}

fn keyed(key: &[u8], parts: &[&[u8]]) -> Blake2sMac<U16> {
    // Keyed BLAKE2s takes keys of 1 to 32 bytes; ours are 16 or 32.
    let mut mac = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("BLAKE2s key length");
    for part in parts {
        Mac::update(&mut mac, part);
    }
    mac
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    keyed(key, parts).finalize().into_bytes().into()
}

fn verify(key: &[u8], parts: &[&[u8]], expected: &[u8; MAC_LEN]) -> bool {
    // Mac::verify compares in constant time.
    keyed(key, parts).verify(&(*expected).into()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use crate::tests::origin;

    fn responder() -> PublicKey {
        SecretKey::from_bytes([2; 32]).public_key()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn mac1_verifies_only_for_the_right_key_and_bytes() {
        let keys = MacKeys::new(&responder());
        let mac1 = keys.mac1(b"handshake");
        assert!(keys.verify_mac1(b"handshake", &mac1));
        assert!(!keys.verify_mac1(b"handshakE", &mac1));
        let mut bad = mac1;
        bad[0] ^= 1;
        assert!(!keys.verify_mac1(b"handshake", &bad));
        let other = MacKeys::new(&SecretKey::from_bytes([3; 32]).public_key());
        assert!(!other.verify_mac1(b"handshake", &mac1));
        assert_eq!(CookieChecker::new(&responder()).mac_keys(), &keys);
    }

    #[test]
    fn cookie_reply_round_trip_gives_a_valid_mac2() {
        let now = origin();
        let src = addr("192.0.2.7:4000");
        let mut checker = CookieChecker::new(&responder());
        let mut jar = CookieJar::new(&responder());
        let msg = b"handshake body";
        let mac1 = jar.mac_keys().mac1(msg);
        assert!(checker.verify_mac1(msg, &mac1));
        assert_eq!(jar.mac2(now, msg), None);

        let reply = checker.seal_reply(now, || [42; 32], src, &mac1, [9; 24]);
        assert_eq!(&reply[..24], &[9; 24]);
        jar.open_reply(now, &reply, &mac1).unwrap();

        let mut with_mac1 = msg.to_vec();
        with_mac1.extend_from_slice(&mac1);
        let later = now + Duration::from_secs(5);
        let mac2 = jar.mac2(later, &with_mac1).unwrap();
        assert!(checker.verify_mac2(later, src, &with_mac1, &mac2));
        // Bound to the source address and the bytes.
        assert!(!checker.verify_mac2(later, addr("192.0.2.7:4001"), &with_mac1, &mac2));
        assert!(!checker.verify_mac2(later, addr("192.0.2.8:4000"), &with_mac1, &mac2));
        assert!(!checker.verify_mac2(later, src, msg, &mac2));
        assert!(!checker.verify_mac2(later, src, &with_mac1, &[0; 16]));
    }

    #[test]
    fn reply_for_another_mac1_or_tampered_fails() {
        let now = origin();
        let src = addr("[2001:db8::1]:51820");
        let mut checker = CookieChecker::new(&responder());
        let mut jar = CookieJar::new(&responder());
        let reply = checker.seal_reply(now, || [1; 32], src, &[7; 16], [3; 24]);
        assert_eq!(
            jar.open_reply(now, &reply, &[8; 16]),
            Err(CookieError::Decrypt)
        );
        for i in 0..reply.len() {
            let mut bad = reply;
            bad[i] ^= 0x10;
            assert_eq!(
                jar.open_reply(now, &bad, &[7; 16]),
                Err(CookieError::Decrypt)
            );
        }
        assert_eq!(
            jar.open_reply(now, &reply[1..], &[7; 16]),
            Err(CookieError::Malformed)
        );
        assert_eq!(
            jar.mac2(now, b"x"),
            None,
            "failed replies leave the jar empty"
        );
        // A reply sealed for another responder's key does not open either.
        let mut other = CookieJar::new(&SecretKey::from_bytes([5; 32]).public_key());
        assert_eq!(
            other.open_reply(now, &reply, &[7; 16]),
            Err(CookieError::Decrypt)
        );
        jar.open_reply(now, &reply, &[7; 16]).unwrap();
    }

    #[test]
    fn secret_rotation_invalidates_old_cookies() {
        let t0 = origin();
        let src = addr("198.51.100.1:9");
        let mut checker = CookieChecker::new(&responder());
        let mut draws = 0u8;
        let mut fresh = || {
            draws += 1;
            [draws; 32]
        };
        let cookie = checker.cookie(t0, &mut fresh, src);
        let msg = b"m";
        let mac2 = mac(&cookie, &[msg]);
        let almost = t0 + COOKIE_SECRET_LIFETIME - Duration::from_millis(1);
        assert_eq!(
            checker.cookie(almost, &mut fresh, src),
            cookie,
            "same secret"
        );
        assert!(checker.verify_mac2(almost, src, msg, &mac2));
        let expired = t0 + COOKIE_SECRET_LIFETIME;
        assert!(
            !checker.verify_mac2(expired, src, msg, &mac2),
            "expired secret"
        );
        let new_cookie = checker.cookie(expired, &mut fresh, src);
        assert_ne!(new_cookie, cookie);
        assert!(!checker.verify_mac2(expired, src, msg, &mac2));
        assert!(checker.verify_mac2(expired, src, msg, &mac(&new_cookie, &[msg])));
        assert_eq!(draws, 2);
    }

    #[test]
    fn no_secret_verifies_nothing() {
        let checker = CookieChecker::new(&responder());
        assert!(!checker.verify_mac2(origin(), addr("127.0.0.1:1"), b"m", &[0; 16]));
    }

    #[test]
    fn jar_cookie_expires_after_its_lifetime() {
        let t0 = origin();
        let mut checker = CookieChecker::new(&responder());
        let mut jar = CookieJar::new(&responder());
        let reply = checker.seal_reply(t0, || [1; 32], addr("127.0.0.1:1"), &[7; 16], [3; 24]);
        jar.open_reply(t0, &reply, &[7; 16]).unwrap();
        assert!(
            jar.mac2(t0 + COOKIE_LIFETIME - Duration::from_millis(1), b"m")
                .is_some()
        );
        assert!(jar.mac2(t0 + COOKIE_LIFETIME, b"m").is_none());
        jar.open_reply(t0, &reply, &[7; 16]).unwrap();
        jar.clear();
        assert!(jar.mac2(t0, b"m").is_none());
    }

    #[test]
    fn cookie_binds_ip_then_port() {
        let secret = [4; 32];
        let v4 = addr("1.2.3.4:258");
        assert_eq!(cookie_of(&secret, v4), mac(&secret, &[&[1, 2, 3, 4, 1, 2]]));
        let mut v6 = [0u8; 18];
        v6[15] = 1;
        v6[17] = 1;
        assert_eq!(cookie_of(&secret, addr("[::1]:1")), mac(&secret, &[&v6]));
    }
}
