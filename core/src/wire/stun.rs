//! STUN (RFC 8489, formerly RFC 5389) Binding messages, sharing burrow's UDP port.
//!
//! burrow speaks just enough STUN to be a standard server-reflexive address oracle and to use
//! any standard STUN server: Binding requests and success responses with XOR-MAPPED-ADDRESS
//! (MAPPED-ADDRESS is read too, for RFC 3489-era servers), SOFTWARE, and FINGERPRINT. For
//! `burrow netcheck` it also speaks two attributes of RFC 5780 (NAT behaviour discovery):
//! CHANGE-REQUEST on requests and OTHER-ADDRESS on responses. Unknown comprehension-optional
//! attributes are skipped; nothing here ever panics on input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed magic cookie of every RFC 5389 STUN message, at bytes 4..8.
pub(crate) const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Length of the STUN message header.
pub(crate) const HEADER_LEN: usize = 20;
/// Binding request message type.
pub(crate) const BINDING_REQUEST: u16 = 0x0001;
/// Binding success response message type.
pub(crate) const BINDING_SUCCESS: u16 = 0x0101;

const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
/// RFC 5780 section 7.2: ask for the answer from another address (flags: 0x4 IP, 0x2 port).
const ATTR_CHANGE_REQUEST: u16 = 0x0003;
/// RFC 5780 section 7.4: the server's other address, the one a change request answers from.
const ATTR_OTHER_ADDRESS: u16 = 0x802C;
/// CHANGE-REQUEST's "change IP" and "change port" flags.
const CHANGE_IP_AND_PORT: u32 = 0x06;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_SOFTWARE: u16 = 0x8022;
const ATTR_FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Whether `bytes` is shaped like a STUN message: two leading zero bits, a length that is a
/// multiple of four and matches the datagram, and the magic cookie (RFC 8489 section 6,
/// RFC 7983).
pub(crate) fn is_stun(bytes: &[u8]) -> bool {
    if bytes.len() < HEADER_LEN || bytes[0] & 0xC0 != 0 {
        return false;
    }
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    length % 4 == 0
        && HEADER_LEN + length == bytes.len()
        && u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) == MAGIC_COOKIE
}

/// A STUN transaction id: 96 random bits chosen by the requester.
pub(crate) type TransactionId = [u8; 12];

/// The STUN messages burrow understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StunMessage {
    /// A Binding request.
    BindingRequest {
        /// The requester's transaction id.
        transaction: TransactionId,
        /// It carries a CHANGE-REQUEST with either flag set: answer from the other address.
        /// burrow's alternate socket has one other address, so the two flags mean the same.
        change: bool,
    },
    /// A Binding success response.
    BindingSuccess {
        /// The transaction it answers.
        transaction: TransactionId,
        /// The requester's address as the server saw it (server-reflexive), if present.
        mapped: Option<SocketAddr>,
        /// The server's other address (RFC 5780 OTHER-ADDRESS), if it has one.
        other: Option<SocketAddr>,
    },
}

/// Why a datagram is not a STUN message burrow acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum StunError {
    /// Not STUN at all (see [`is_stun`]).
    NotStun,
    /// An attribute runs past the end of the message.
    Truncated,
    /// A message type burrow does not handle (errors, indications, other methods).
    Unsupported(u16),
    /// The FINGERPRINT attribute does not match the message.
    BadFingerprint,
}

impl StunMessage {
    /// Parses a datagram. Never panics.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, StunError> {
        if !is_stun(bytes) {
            return Err(StunError::NotStun);
        }
        let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
        let transaction: TransactionId = bytes[8..20].try_into().expect("header is 20 bytes");
        let mut mapped = None;
        let mut xor_mapped = None;
        let mut other = None;
        let mut change = false;
        let mut at = HEADER_LEN;
        while at < bytes.len() {
            if at + 4 > bytes.len() {
                return Err(StunError::Truncated);
            }
            let attr = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            let len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
            let value = bytes
                .get(at + 4..at + 4 + len)
                .ok_or(StunError::Truncated)?;
            match attr {
                ATTR_MAPPED_ADDRESS => mapped = decode_address(value, None),
                ATTR_XOR_MAPPED_ADDRESS => xor_mapped = decode_address(value, Some(&transaction)),
                ATTR_OTHER_ADDRESS => other = decode_address(value, None),
                ATTR_CHANGE_REQUEST => {
                    change = value.len() == 4 && value[3] & CHANGE_IP_AND_PORT as u8 != 0;
                }
                ATTR_FINGERPRINT => {
                    let expected =
                        crc32(&with_length(&bytes[..at], at + 8 - HEADER_LEN)) ^ FINGERPRINT_XOR;
                    if value.len() != 4 || value != expected.to_be_bytes() {
                        return Err(StunError::BadFingerprint);
                    }
                }
                _ => {}
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        match kind {
            BINDING_REQUEST => Ok(StunMessage::BindingRequest {
                transaction,
                change,
            }),
            BINDING_SUCCESS => Ok(StunMessage::BindingSuccess {
                transaction,
                mapped: xor_mapped.or(mapped),
                other,
            }),
            other => Err(StunError::Unsupported(other)),
        }
    }

    /// Encodes the message, with SOFTWARE on responses and FINGERPRINT always.
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_with(true)
    }

    /// Encodes the message in at most `limit` bytes: SOFTWARE is left out of a response when
    /// it would not fit (an IPv6 answer to a minimal 20-byte request is 64 bytes with it, 52
    /// without). `None` when even that is larger. A server answers an unvalidated address with
    /// at most three times the request's size (the amplification bound of RFC 9000, section 8).
    pub(crate) fn encode_within(&self, limit: usize) -> Option<Vec<u8>> {
        let full = self.encode_with(true);
        if full.len() <= limit {
            return Some(full);
        }
        Some(self.encode_with(false)).filter(|m| m.len() <= limit)
    }

    fn encode_with(&self, software: bool) -> Vec<u8> {
        let (kind, transaction) = match self {
            StunMessage::BindingRequest { transaction, .. } => (BINDING_REQUEST, transaction),
            StunMessage::BindingSuccess { transaction, .. } => (BINDING_SUCCESS, transaction),
        };
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(transaction);
        match self {
            StunMessage::BindingRequest { change: true, .. } => {
                push_attr(
                    &mut out,
                    ATTR_CHANGE_REQUEST,
                    &CHANGE_IP_AND_PORT.to_be_bytes(),
                );
            }
            StunMessage::BindingRequest { change: false, .. } => {}
            StunMessage::BindingSuccess { mapped, other, .. } => {
                if let Some(addr) = mapped {
                    let value = encode_xor_address(*addr, transaction);
                    push_attr(&mut out, ATTR_XOR_MAPPED_ADDRESS, &value);
                }
                if let Some(addr) = other {
                    push_attr(&mut out, ATTR_OTHER_ADDRESS, &encode_address(*addr));
                }
                if software && mapped.is_some() {
                    push_attr(&mut out, ATTR_SOFTWARE, b"burrow");
                }
            }
        }
        let body_len = out.len() - HEADER_LEN + 8;
        let crc = crc32(&with_length(&out, body_len)) ^ FINGERPRINT_XOR;
        push_attr(&mut out, ATTR_FINGERPRINT, &crc.to_be_bytes());
        let len = u16::try_from(out.len() - HEADER_LEN).expect("small message");
        out[2..4].copy_from_slice(&len.to_be_bytes());
        out
    }
}

/// A copy of `prefix` with its header length field set to `len`, as FINGERPRINT requires.
fn with_length(prefix: &[u8], len: usize) -> Vec<u8> {
    let mut copy = prefix.to_vec();
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    copy[2..4].copy_from_slice(&len.to_be_bytes());
    copy
}

fn push_attr(out: &mut Vec<u8>, attr: u16, value: &[u8]) {
    out.extend_from_slice(&attr.to_be_bytes());
    out.extend_from_slice(
        &u16::try_from(value.len())
            .expect("small attribute")
            .to_be_bytes(),
    );
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - value.len() % 4) % 4, 0);
}

/// The cookie followed by the transaction id: the XOR mask for an IPv6 address.
fn xor_mask(transaction: &TransactionId) -> [u8; 16] {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(transaction);
    mask
}

fn decode_address(value: &[u8], xor: Option<&TransactionId>) -> Option<SocketAddr> {
    if value.len() < 4 {
        return None;
    }
    let mask = xor.map(xor_mask).unwrap_or([0; 16]);
    let port = u16::from_be_bytes([value[2], value[3]]) ^ u16::from_be_bytes([mask[0], mask[1]]);
    let ip = match (value[1], value.len()) {
        (0x01, 8) => {
            let raw: [u8; 4] = std::array::from_fn(|i| value[4 + i] ^ mask[i]);
            IpAddr::V4(Ipv4Addr::from(raw))
        }
        (0x02, 20) => {
            let raw: [u8; 16] = std::array::from_fn(|i| value[4 + i] ^ mask[i]);
            IpAddr::V6(Ipv6Addr::from(raw))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// An address attribute's value in the clear (MAPPED-ADDRESS's layout, as OTHER-ADDRESS uses).
fn encode_address(addr: SocketAddr) -> Vec<u8> {
    encode_masked(addr, [0; 16])
}

fn encode_xor_address(addr: SocketAddr, transaction: &TransactionId) -> Vec<u8> {
    encode_masked(addr, xor_mask(transaction))
}

fn encode_masked(addr: SocketAddr, mask: [u8; 16]) -> Vec<u8> {
    let port = addr.port() ^ u16::from_be_bytes([mask[0], mask[1]]);
    let mut value = vec![0];
    match addr.ip() {
        IpAddr::V4(ip) => {
            value.push(0x01);
            value.extend_from_slice(&port.to_be_bytes());
            value.extend(ip.octets().iter().zip(mask).map(|(b, m)| b ^ m));
        }
        IpAddr::V6(ip) => {
            value.push(0x02);
            value.extend_from_slice(&port.to_be_bytes());
            value.extend(ip.octets().iter().zip(mask).map(|(b, m)| b ^ m));
        }
    }
    value
}

/// CRC-32 (IEEE 802.3, reflected), as FINGERPRINT uses.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    /// RFC 5769 section 2.2: sample IPv4 response (software "test vector", no integrity here
    /// since burrow uses no credentials; we check the address decoding and the fingerprint
    /// over our own encoding instead).
    #[test]
    fn rfc5769_xor_mapped_address_decodes() {
        let transaction = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let value = [0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        assert_eq!(
            decode_address(&value, Some(&transaction)),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        let v6 = [
            0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25,
            0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        ];
        assert_eq!(
            decode_address(&v6, Some(&transaction)),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
    }

    #[test]
    fn binding_messages_round_trip_with_fingerprint() {
        let transaction = [9; 12];
        for mapped in ["198.51.100.7:40000", "[2001:db8::1]:5"] {
            for other in [None, Some("192.0.2.11:3479".parse().unwrap())] {
                let msg = StunMessage::BindingSuccess {
                    transaction,
                    mapped: Some(mapped.parse().unwrap()),
                    other,
                };
                let bytes = msg.encode();
                assert!(is_stun(&bytes));
                assert_eq!(StunMessage::parse(&bytes), Ok(msg));
            }
        }
        for change in [false, true] {
            let req = StunMessage::BindingRequest {
                transaction,
                change,
            };
            assert_eq!(StunMessage::parse(&req.encode()), Ok(req));
        }
    }

    #[test]
    fn a_corrupted_fingerprint_is_refused() {
        let mut bytes = StunMessage::BindingRequest {
            transaction: [1; 12],
            change: false,
        }
        .encode();
        bytes[10] ^= 1;
        assert_eq!(StunMessage::parse(&bytes), Err(StunError::BadFingerprint));
    }

    #[test]
    fn burrow_packets_are_not_stun() {
        let mut bytes = StunMessage::BindingRequest {
            transaction: [1; 12],
            change: false,
        }
        .encode();
        assert!(is_stun(&bytes));
        bytes[0] = 0xB1;
        assert!(!is_stun(&bytes));
    }

    proptest! {
        #[test]
        fn parse_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..200), stunlike: bool) {
            if stunlike && bytes.len() >= HEADER_LEN {
                bytes[0] &= 0x3F;
                let len = ((bytes.len() - HEADER_LEN) / 4 * 4) as u16;
                bytes.truncate(HEADER_LEN + len as usize);
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
                bytes[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            }
            let _ = StunMessage::parse(&bytes);
        }

        #[test]
        fn success_round_trips(transaction: [u8; 12], ip: [u8; 4], port: u16) {
            let msg = StunMessage::BindingSuccess { transaction, mapped: Some(SocketAddr::from((ip, port))), other: None };
            prop_assert_eq!(StunMessage::parse(&msg.encode()), Ok(msg));
        }
    }
}
