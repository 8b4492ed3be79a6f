//! The data-plane packet layouts, encoded by hand.
//!
//! All integers are big-endian. Every packet starts with the same four bytes:
//!
//! ```text
//!  0        1        2        3
//! +--------+--------+--------+--------+
//! | 0xB | v |  kind  |    reserved (0)  |
//! +--------+--------+--------+--------+
//! ```
//!
//! The high nibble of byte 0 is `0xB` and the low nibble the version (1). STUN messages start
//! with two zero bits, so the two never collide (RFC 7983 demultiplexing). Then, per kind:
//!
//! ```text
//! Initiation (1):  sender u32 | noise message 1 (e, s, payload) | mac1 [16] | mac2 [16]
//! Response   (2):  sender u32 | receiver u32 | noise message 2 (e, payload) | mac1 [16] | mac2 [16]
//! Cookie     (3):  receiver u32 | nonce [24] | sealed cookie [32]
//! Transport  (4):  receiver u32 | counter u64 | ciphertext | tag [16]
//! Probe      (5):  anything (ignored): a TTL-limited hole-punching packet
//! ```
//!
//! `sender` and `receiver` are the random session indices each side picks, so that a packet finds
//! its keys without trial decryption. The first 16 bytes of a transport packet (the fixed part
//! above plus receiver and counter) are the AEAD associated data, so none of them can be altered
//! in flight. `mac1` covers everything before it and `mac2` everything before it; see
//! [`crate::crypto::cookie`].

use std::fmt;

/// The magic high nibble of every burrow packet's first byte.
pub(crate) const MAGIC: u8 = 0xB0;
/// The wire version this code speaks.
pub(crate) const VERSION: u8 = 1;
/// Length of the common prefix: magic/version, kind, two reserved bytes.
pub(crate) const PREFIX_LEN: usize = 4;
/// Length of a transport packet's header, which is also its AEAD associated data.
pub(crate) const TRANSPORT_HEADER_LEN: usize = PREFIX_LEN + 4 + 8;
/// Length of one handshake MAC.
pub(crate) const MAC_LEN: usize = 16;
/// Length of the nonce in a cookie reply.
pub(crate) const COOKIE_NONCE_LEN: usize = 24;
/// Length of the sealed cookie in a cookie reply (16-byte cookie plus 16-byte tag).
pub(crate) const SEALED_COOKIE_LEN: usize = 32;
/// Total length of a cookie reply.
pub(crate) const COOKIE_REPLY_LEN: usize = PREFIX_LEN + 4 + COOKIE_NONCE_LEN + SEALED_COOKIE_LEN;
/// Bytes an initiation adds around its Noise message.
pub(crate) const INITIATION_FRAMING: usize = PREFIX_LEN + 4 + 2 * MAC_LEN;
/// Bytes a response adds around its Noise message.
pub(crate) const RESPONSE_FRAMING: usize = PREFIX_LEN + 8 + 2 * MAC_LEN;

/// What a packet is, from byte 1 of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PacketKind {
    /// Noise IK message 1.
    Initiation = 1,
    /// Noise IK message 2.
    Response = 2,
    /// A stateless cookie sent instead of a response when the responder is under load.
    CookieReply = 3,
    /// An encrypted transport packet.
    Transport = 4,
    /// A hole-punching probe: sent with a small TTL to open our own NAT's mapping toward a
    /// peer candidate, and meant to die before reaching the peer. Carries nothing; a receiver
    /// counts and drops it.
    Probe = 5,
}

/// Why bytes are not a burrow packet. Never returned to a caller of `handle_input`; the endpoint
/// counts it and drops the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum WireError {
    /// Shorter than its kind's fixed layout.
    Truncated,
    /// Byte 0 does not carry burrow's magic nibble.
    NotBurrow,
    /// A burrow packet of a version this code does not speak.
    UnsupportedVersion(u8),
    /// Byte 1 names no known packet kind.
    UnknownKind(u8),
    /// Reserved bits are set.
    Reserved,
    /// A control body that does not decode.
    BadControl,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("packet truncated"),
            Self::NotBurrow => f.write_str("not a burrow packet"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported burrow wire version {v}"),
            Self::UnknownKind(k) => write!(f, "unknown packet kind {k}"),
            Self::Reserved => f.write_str("reserved header bits set"),
            Self::BadControl => f.write_str("malformed control message"),
        }
    }
}

impl std::error::Error for WireError {}

/// A parsed view of one datagram; every slice borrows from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    /// Noise IK message 1.
    Initiation {
        /// The initiator's index for this handshake.
        sender: u32,
        /// The Noise message.
        noise: &'a [u8],
        /// Bytes covered by mac1 (everything before it).
        mac1_input: &'a [u8],
        /// mac1.
        mac1: &'a [u8; MAC_LEN],
        /// mac2 (zero unless the sender holds a cookie).
        mac2: &'a [u8; MAC_LEN],
    },
    /// Noise IK message 2.
    Response {
        /// The responder's index for the new session.
        sender: u32,
        /// The initiator's index this answers.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
        /// Bytes covered by mac1.
        mac1_input: &'a [u8],
        /// mac1.
        mac1: &'a [u8; MAC_LEN],
        /// mac2.
        mac2: &'a [u8; MAC_LEN],
    },
    /// A cookie for the initiator to put in mac2 of its next attempt.
    CookieReply {
        /// The initiator's index this answers.
        receiver: u32,
        /// The XChaCha20 nonce.
        nonce: &'a [u8; COOKIE_NONCE_LEN],
        /// The sealed cookie.
        sealed: &'a [u8; SEALED_COOKIE_LEN],
    },
    /// An encrypted transport packet.
    Transport {
        /// The header: the AEAD associated data.
        header: &'a [u8; TRANSPORT_HEADER_LEN],
        /// The receiver's session index.
        receiver: u32,
        /// The packet counter, which is also the AEAD nonce.
        counter: u64,
        /// Ciphertext followed by the 16-byte tag.
        sealed: &'a [u8],
    },
    /// A hole-punching probe.
    Probe,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4-byte slice"))
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> &[u8; N] {
    bytes[at..at + N].try_into().expect("slice of length N")
}

/// Whether `bytes` starts like a burrow packet (magic nibble), of any version.
pub(crate) fn is_burrow(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|b| b & 0xF0 == MAGIC)
}

impl<'a> Packet<'a> {
    /// Parses and length-checks a datagram. Never panics, whatever the bytes.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        if bytes.len() < PREFIX_LEN {
            return Err(WireError::Truncated);
        }
        if !is_burrow(bytes) {
            return Err(WireError::NotBurrow);
        }
        let version = bytes[0] & 0x0F;
        if version != VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        if bytes[2] != 0 || bytes[3] != 0 {
            return Err(WireError::Reserved);
        }
        let p = PREFIX_LEN;
        match bytes[1] {
            1 => {
                if bytes.len() < INITIATION_FRAMING {
                    return Err(WireError::Truncated);
                }
                let mac1_at = bytes.len() - 2 * MAC_LEN;
                Ok(Packet::Initiation {
                    sender: u32_at(bytes, p),
                    noise: &bytes[p + 4..mac1_at],
                    mac1_input: &bytes[..mac1_at],
                    mac1: array_at(bytes, mac1_at),
                    mac2: array_at(bytes, mac1_at + MAC_LEN),
                })
            }
            2 => {
                if bytes.len() < RESPONSE_FRAMING {
                    return Err(WireError::Truncated);
                }
                let mac1_at = bytes.len() - 2 * MAC_LEN;
                Ok(Packet::Response {
                    sender: u32_at(bytes, p),
                    receiver: u32_at(bytes, p + 4),
                    noise: &bytes[p + 8..mac1_at],
                    mac1_input: &bytes[..mac1_at],
                    mac1: array_at(bytes, mac1_at),
                    mac2: array_at(bytes, mac1_at + MAC_LEN),
                })
            }
            3 => {
                if bytes.len() != COOKIE_REPLY_LEN {
                    return Err(WireError::Truncated);
                }
                Ok(Packet::CookieReply {
                    receiver: u32_at(bytes, p),
                    nonce: array_at(bytes, p + 4),
                    sealed: array_at(bytes, p + 4 + COOKIE_NONCE_LEN),
                })
            }
            4 => {
                if bytes.len() < TRANSPORT_HEADER_LEN + MAC_LEN {
                    return Err(WireError::Truncated);
                }
                Ok(Packet::Transport {
                    header: array_at(bytes, 0),
                    receiver: u32_at(bytes, p),
                    counter: u64::from_be_bytes(*array_at(bytes, p + 4)),
                    sealed: &bytes[TRANSPORT_HEADER_LEN..],
                })
            }
            5 => Ok(Packet::Probe),
            other => Err(WireError::UnknownKind(other)),
        }
    }
}

/// Appends the common four-byte prefix for `kind`.
pub(crate) fn emit_prefix(kind: PacketKind, out: &mut Vec<u8>) {
    out.extend_from_slice(&[MAGIC | VERSION, kind as u8, 0, 0]);
}

/// The header (and associated data) of a transport packet.
pub(crate) fn transport_header(receiver: u32, counter: u64) -> [u8; TRANSPORT_HEADER_LEN] {
    let mut h = [0u8; TRANSPORT_HEADER_LEN];
    h[0] = MAGIC | VERSION;
    h[1] = PacketKind::Transport as u8;
    h[4..8].copy_from_slice(&receiver.to_be_bytes());
    h[8..16].copy_from_slice(&counter.to_be_bytes());
    h
}

/// Starts an initiation: prefix and sender index. The caller appends the Noise message, then
/// mac1 over everything so far, then mac2.
pub(crate) fn begin_initiation(sender: u32, out: &mut Vec<u8>) {
    emit_prefix(PacketKind::Initiation, out);
    out.extend_from_slice(&sender.to_be_bytes());
}

/// Starts a response: prefix, sender and receiver indices. The caller appends the Noise message
/// and the two MACs.
pub(crate) fn begin_response(sender: u32, receiver: u32, out: &mut Vec<u8>) {
    emit_prefix(PacketKind::Response, out);
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&receiver.to_be_bytes());
}

/// A whole probe packet: the prefix and eight zero bytes, so that it is not mistaken for
/// anything shorter.
pub(crate) fn probe() -> [u8; PREFIX_LEN + 8] {
    let mut out = [0u8; PREFIX_LEN + 8];
    out[0] = MAGIC | VERSION;
    out[1] = PacketKind::Probe as u8;
    out
}

/// A whole cookie reply.
pub(crate) fn cookie_reply(
    receiver: u32,
    nonce_and_sealed: &[u8; COOKIE_NONCE_LEN + SEALED_COOKIE_LEN],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(COOKIE_REPLY_LEN);
    emit_prefix(PacketKind::CookieReply, &mut out);
    out.extend_from_slice(&receiver.to_be_bytes());
    out.extend_from_slice(nonce_and_sealed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn transport_header_round_trips() {
        let mut bytes = transport_header(0xDEAD_BEEF, 0x0102_0304_0506_0708).to_vec();
        bytes.extend_from_slice(&[9; 20]);
        match Packet::parse(&bytes).unwrap() {
            Packet::Transport {
                header,
                receiver,
                counter,
                sealed,
            } => {
                assert_eq!(header[..], bytes[..16]);
                assert_eq!(receiver, 0xDEAD_BEEF);
                assert_eq!(counter, 0x0102_0304_0506_0708);
                assert_eq!(sealed, &[9; 20]);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn initiation_and_response_split_macs_off_the_end() {
        let mut init = Vec::new();
        begin_initiation(7, &mut init);
        init.extend_from_slice(&[1; 100]);
        init.extend_from_slice(&[2; 16]);
        init.extend_from_slice(&[3; 16]);
        let Packet::Initiation {
            sender,
            noise,
            mac1_input,
            mac1,
            mac2,
        } = Packet::parse(&init).unwrap()
        else {
            panic!("not an initiation");
        };
        assert_eq!((sender, noise.len(), mac1_input.len()), (7, 100, 108));
        assert_eq!((mac1, mac2), (&[2; 16], &[3; 16]));

        let mut resp = Vec::new();
        begin_response(8, 9, &mut resp);
        resp.extend_from_slice(&[0; 48 + 32]);
        let Packet::Response {
            sender,
            receiver,
            noise,
            ..
        } = Packet::parse(&resp).unwrap()
        else {
            panic!("not a response");
        };
        assert_eq!((sender, receiver, noise.len()), (8, 9, 48));
    }

    #[test]
    fn cookie_reply_round_trips() {
        let mut body = [0u8; 56];
        body[0] = 5;
        body[55] = 6;
        let bytes = cookie_reply(42, &body);
        let Packet::CookieReply {
            receiver,
            nonce,
            sealed,
        } = Packet::parse(&bytes).unwrap()
        else {
            panic!("not a cookie reply");
        };
        assert_eq!((receiver, nonce[0], sealed[31]), (42, 5, 6));
    }

    #[test]
    fn foreign_and_future_packets_are_refused() {
        assert_eq!(Packet::parse(&[]), Err(WireError::Truncated));
        assert_eq!(
            Packet::parse(&[0x00, 1, 0, 0, 0x21, 0x12]),
            Err(WireError::NotBurrow)
        );
        assert_eq!(
            Packet::parse(&[0xB2, 4, 0, 0]),
            Err(WireError::UnsupportedVersion(2))
        );
        assert_eq!(
            Packet::parse(&[0xB1, 9, 0, 0]),
            Err(WireError::UnknownKind(9))
        );
        assert_eq!(Packet::parse(&[0xB1, 4, 0, 1]), Err(WireError::Reserved));
        assert_eq!(
            Packet::parse(&[0xB1, 4, 0, 0, 1, 2, 3]),
            Err(WireError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Packet::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_burrow_prefixes(kind in 0u8..8, rest in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = vec![MAGIC | VERSION, kind, 0, 0];
            bytes.extend(rest);
            let _ = Packet::parse(&bytes);
        }

        #[test]
        fn transport_round_trip(receiver: u32, counter: u64, body in proptest::collection::vec(any::<u8>(), 16..64)) {
            let mut bytes = transport_header(receiver, counter).to_vec();
            bytes.extend_from_slice(&body);
            let parsed = Packet::parse(&bytes).unwrap();
            prop_assert_eq!(parsed, Packet::Transport {
                header: &transport_header(receiver, counter),
                receiver,
                counter,
                sealed: &body,
            });
        }
    }
}
