//! The flow header inside a session datagram: which UDP flow a datagram belongs to, and the
//! few messages that open and end flows.
//!
//! Every forwarded datagram is one session datagram (unreliable, never retransmitted) that
//! starts with a type byte and the flow's id, a QUIC variable-length integer (1, 2, 4 or 8
//! bytes, at most 2^62 - 1). Flow ids are chosen by the side that opens the flow (the one
//! with the UDP listener, the *opener*); the high nibble of the type says which way a message
//! goes, so the two sides' ids never mix:
//!
//! | type | direction | after the flow id |
//! | --- | --- | --- |
//! | `0x01` OPEN | opener to exposer | name length (1 byte, 1..=128), service name, payload |
//! | `0x02` DATA | opener to exposer | payload |
//! | `0x03` END | opener to exposer | nothing: the opener forgot the flow |
//! | `0x11` REPLY | exposer to opener | payload |
//! | `0x12` ACCEPT | exposer to opener | nothing: the flow is open, DATA may follow |
//! | `0x13` CLOSE | exposer to opener | a reason byte ([`CloseWhy`]) |
//!
//! The opener sends OPEN (with the service name) until it hears ACCEPT or REPLY, so a lost
//! OPEN costs nothing but its own datagram; afterwards DATA, 1 + 1..8 bytes of header. Any
//! other type, a truncated header, a zero-length or non-UTF-8 or invalid name are malformed:
//! dropped and counted, never an error.

use crate::rendezvous::ServiceName;

/// Largest flow id (QUIC's varint limit).
pub const MAX_FLOW_ID: u64 = (1 << 62) - 1;
/// Most bytes a DATA or REPLY header takes (type and an 8-byte id).
pub const MAX_DATA_HEADER: usize = 1 + 8;

const OPEN: u8 = 0x01;
const DATA: u8 = 0x02;
const END: u8 = 0x03;
const REPLY: u8 = 0x11;
const ACCEPT: u8 = 0x12;
const CLOSE: u8 = 0x13;

/// Why the exposing side ended (or never opened) a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseWhy {
    /// It knows no such flow (it expired there, or the side restarted): open it again.
    Unknown,
    /// Not a UDP service it exposes, or one the peer holds no grant for (the two are not
    /// told apart, as for streams).
    Refused,
    /// The service has as many flows as it allows.
    Limit,
    /// Its local socket failed.
    Failed,
    /// The service's route policy does not allow the path the session uses now (a
    /// relay-only service on a direct path, or the other way round).
    Route,
    /// A reason this version does not know.
    Other(u8),
}

impl CloseWhy {
    fn to_byte(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Refused => 1,
            Self::Limit => 2,
            Self::Failed => 3,
            Self::Route => 4,
            Self::Other(b) => b,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::Unknown,
            1 => Self::Refused,
            2 => Self::Limit,
            3 => Self::Failed,
            4 => Self::Route,
            b => Self::Other(b),
        }
    }
}

/// One flow message, borrowing its payload from the datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowMsg<'a> {
    /// Opener to exposer: the first datagrams of a flow, until it is accepted.
    Open {
        /// The opener's id for the flow.
        flow: u64,
        /// The service it is for.
        service: ServiceName,
        /// The datagram.
        payload: &'a [u8],
    },
    /// Opener to exposer: a datagram of an accepted flow.
    Data {
        /// The flow.
        flow: u64,
        /// The datagram.
        payload: &'a [u8],
    },
    /// Opener to exposer: the opener forgot the flow (idle, or shutting down).
    End {
        /// The flow.
        flow: u64,
    },
    /// Exposer to opener: a datagram from the service.
    Reply {
        /// The flow.
        flow: u64,
        /// The datagram.
        payload: &'a [u8],
    },
    /// Exposer to opener: the flow is open.
    Accept {
        /// The flow.
        flow: u64,
    },
    /// Exposer to opener: the flow is gone or was refused.
    Close {
        /// The flow.
        flow: u64,
        /// Why.
        why: CloseWhy,
    },
}

/// A datagram that is not a flow message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

impl<'a> FlowMsg<'a> {
    /// Parses one datagram; any bytes at all give a message or [`Malformed`].
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Malformed> {
        let (&kind, rest) = bytes.split_first().ok_or(Malformed)?;
        let (flow, rest) = read_varint(rest)?;
        Ok(match kind {
            OPEN => {
                let (&len, rest) = rest.split_first().ok_or(Malformed)?;
                let len = usize::from(len);
                if len == 0 || rest.len() < len {
                    return Err(Malformed);
                }
                let (name, payload) = rest.split_at(len);
                let service = std::str::from_utf8(name)
                    .ok()
                    .and_then(|n| ServiceName::parse(n).ok())
                    .ok_or(Malformed)?;
                Self::Open {
                    flow,
                    service,
                    payload,
                }
            }
            DATA => Self::Data {
                flow,
                payload: rest,
            },
            REPLY => Self::Reply {
                flow,
                payload: rest,
            },
            END | ACCEPT if !rest.is_empty() => return Err(Malformed),
            END => Self::End { flow },
            ACCEPT => Self::Accept { flow },
            CLOSE => match rest {
                [b] => Self::Close {
                    flow,
                    why: CloseWhy::from_byte(*b),
                },
                _ => return Err(Malformed),
            },
            _ => return Err(Malformed),
        })
    }

    /// The flow it is about.
    pub fn flow(&self) -> u64 {
        match self {
            Self::Open { flow, .. }
            | Self::Data { flow, .. }
            | Self::End { flow }
            | Self::Reply { flow, .. }
            | Self::Accept { flow }
            | Self::Close { flow, .. } => *flow,
        }
    }

    /// The header's bytes: everything but the payload, which follows it in the datagram.
    pub fn encode_header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        let (kind, flow) = match self {
            Self::Open { flow, .. } => (OPEN, flow),
            Self::Data { flow, .. } => (DATA, flow),
            Self::End { flow } => (END, flow),
            Self::Reply { flow, .. } => (REPLY, flow),
            Self::Accept { flow } => (ACCEPT, flow),
            Self::Close { flow, .. } => (CLOSE, flow),
        };
        out.push(kind);
        write_varint(&mut out, *flow);
        match self {
            Self::Open { service, .. } => {
                let name = service.as_str().as_bytes();
                out.push(u8::try_from(name.len()).expect("service names are at most 128 bytes"));
                out.extend_from_slice(name);
            }
            Self::Close { why, .. } => out.push(why.to_byte()),
            _ => {}
        }
        out
    }

    /// The payload it carries (empty for the messages without one).
    pub fn payload(&self) -> &'a [u8] {
        match self {
            Self::Open { payload, .. }
            | Self::Data { payload, .. }
            | Self::Reply { payload, .. } => payload,
            _ => &[],
        }
    }

    /// The whole datagram: header then payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_header();
        out.extend_from_slice(self.payload());
        out
    }
}

/// Appends `v` (at most [`MAX_FLOW_ID`]) as a QUIC varint.
fn write_varint(out: &mut Vec<u8>, v: u64) {
    debug_assert!(v <= MAX_FLOW_ID);
    if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&((v & MAX_FLOW_ID) | 0xC000_0000_0000_0000).to_be_bytes());
    }
}

/// Reads a QUIC varint from the front of `bytes`.
fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8]), Malformed> {
    let first = *bytes.first().ok_or(Malformed)?;
    let len = 1usize << (first >> 6);
    if bytes.len() < len {
        return Err(Malformed);
    }
    let mut v = u64::from(first & 0x3F);
    for &b in &bytes[1..len] {
        v = (v << 8) | u64::from(b);
    }
    Ok((v, &bytes[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> ServiceName {
        s.parse().unwrap()
    }

    #[test]
    fn messages_read_back() {
        let svc = name("/home/dns");
        for flow in [
            0,
            63,
            64,
            16_383,
            16_384,
            (1 << 30) - 1,
            1 << 30,
            MAX_FLOW_ID,
        ] {
            for msg in [
                FlowMsg::Open {
                    flow,
                    service: svc.clone(),
                    payload: b"query",
                },
                FlowMsg::Open {
                    flow,
                    service: svc.clone(),
                    payload: b"",
                },
                FlowMsg::Data {
                    flow,
                    payload: b"q",
                },
                FlowMsg::End { flow },
                FlowMsg::Reply {
                    flow,
                    payload: b"answer",
                },
                FlowMsg::Accept { flow },
                FlowMsg::Close {
                    flow,
                    why: CloseWhy::Limit,
                },
            ] {
                let bytes = msg.encode();
                assert_eq!(FlowMsg::decode(&bytes), Ok(msg.clone()), "{bytes:?}");
                assert!(msg.encode_header().len() <= MAX_DATA_HEADER + 1 + 128);
            }
        }
        assert_eq!(
            FlowMsg::Data {
                flow: MAX_FLOW_ID,
                payload: b""
            }
            .encode_header()
            .len(),
            MAX_DATA_HEADER
        );
    }

    #[test]
    fn hostile_datagrams_are_malformed() {
        let cases: &[&[u8]] = &[
            &[],
            &[0x01],                      // no flow id
            &[0x02, 0x40],                // truncated 2-byte id
            &[0x02, 0xC0, 0, 0, 0, 0, 0], // truncated 8-byte id
            &[0x01, 5],                   // OPEN without a name length
            &[0x01, 5, 0],                // empty name
            &[0x01, 5, 4, b'/', b'a'],    // name shorter than its length
            &[0x01, 5, 2, b'a', b'b'],    // not a service name
            &[0x01, 5, 2, 0xFF, 0xFE],    // not UTF-8
            &[0x01, 5, 200, b'/'],        // oversized name length
            &[0x03, 5, 0],                // END with a tail
            &[0x12, 5, 1],                // ACCEPT with a tail
            &[0x13, 5],                   // CLOSE without a reason
            &[0x13, 5, 1, 1],             // CLOSE with a tail
            &[0x00, 5],                   // unknown types
            &[0x04, 5],
            &[0x10, 5],
            &[0xFF, 5],
        ];
        for bytes in cases {
            assert_eq!(FlowMsg::decode(bytes), Err(Malformed), "{bytes:?}");
        }
        // An unknown close reason is kept, not refused: newer peers may add some.
        assert_eq!(
            FlowMsg::decode(&[0x13, 5, 9]),
            Ok(FlowMsg::Close {
                flow: 5,
                why: CloseWhy::Other(9)
            })
        );
        // The route refusal (4) reads back as itself; an older peer keeps it as Other(4).
        let close = FlowMsg::Close {
            flow: 5,
            why: CloseWhy::Route,
        };
        assert_eq!(close.encode(), vec![0x13, 5, 4]);
        assert_eq!(FlowMsg::decode(&[0x13, 5, 4]), Ok(close));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(msg) = FlowMsg::decode(&bytes) {
                // What decodes re-encodes to a datagram that decodes the same.
                prop_assert!(msg.flow() <= MAX_FLOW_ID);
                let again = msg.encode();
                prop_assert_eq!(FlowMsg::decode(&again), Ok(msg));
            }
        }

        #[test]
        fn truncated_messages_never_decode_to_more(
            flow in 0..=MAX_FLOW_ID,
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            cut in 0usize..200,
        ) {
            let msg = FlowMsg::Open { flow, service: name("/p/q"), payload: &payload };
            let bytes = msg.encode();
            let cut = cut.min(bytes.len());
            match FlowMsg::decode(&bytes[..cut]) {
                Ok(FlowMsg::Open { flow: f, service, payload: p }) => {
                    prop_assert_eq!(f, flow);
                    prop_assert_eq!(service, name("/p/q"));
                    prop_assert!(payload.starts_with(p));
                }
                Ok(other) => prop_assert!(false, "{:?}", other),
                Err(Malformed) => prop_assert!(cut < msg.encode_header().len()),
            }
        }

        #[test]
        fn flow_ids_read_back(flow in 0..=MAX_FLOW_ID, payload in proptest::collection::vec(any::<u8>(), 0..32)) {
            let msg = FlowMsg::Reply { flow, payload: &payload };
            let bytes = msg.encode();
            prop_assert_eq!(FlowMsg::decode(&bytes), Ok(msg));
        }
    }
}
