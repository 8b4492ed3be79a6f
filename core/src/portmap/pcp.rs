//! PCP's MAP opcode (RFC 6887 sections 7 and 11) for one UDP port: the 60-byte request and
//! the response, with no options sent and any received ignored.
//!
//! ```text
//! request:  version 2 | R=0,opcode 1 | reserved(2) | lifetime(4) | client IP(16)
//!           nonce(12) | protocol 17 | reserved(3) | internal port(2) | suggested port(2)
//!           suggested external IP(16)
//! response: version 2 | R=1,opcode 1 | reserved | result | lifetime(4) | epoch(4) | reserved(12)
//!           nonce(12) | protocol | reserved(3) | internal port(2) | assigned port(2)
//!           assigned external IP(16)
//! ```
//! IPv4 addresses travel IPv4-mapped (`::ffff:a.b.c.d`); `::ffff:0.0.0.0` means "no
//! preference".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};

/// PCP's version number.
pub(super) const VERSION: u8 = 2;
const OP_MAP: u8 = 1;
const RESPONSE_BIT: u8 = 0x80;
const UDP: u8 = 17;
/// Length of a MAP request or response without options.
pub(super) const MAP_LEN: usize = 60;
/// Longest PCP message (RFC 6887 section 7).
const MAX_LEN: usize = 1100;

/// A MAP request for one UDP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MapRequest {
    /// Identifies the mapping: the same for its renewals and its deletion.
    pub nonce: [u8; 12],
    /// Our address on the link to the server (it checks it against the packet's source).
    pub client: Ipv4Addr,
    /// Our UDP port.
    pub internal_port: u16,
    /// The external address we would like (`0.0.0.0:0`: none): the one we had, on renewal.
    pub suggested: SocketAddrV4,
    /// Seconds asked for; 0 deletes the mapping.
    pub lifetime: u32,
}

impl MapRequest {
    /// The request's bytes.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAP_LEN);
        out.extend_from_slice(&[VERSION, OP_MAP, 0, 0]);
        out.extend_from_slice(&self.lifetime.to_be_bytes());
        out.extend_from_slice(&self.client.to_ipv6_mapped().octets());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&[UDP, 0, 0, 0]);
        out.extend_from_slice(&self.internal_port.to_be_bytes());
        out.extend_from_slice(&self.suggested.port().to_be_bytes());
        out.extend_from_slice(&self.suggested.ip().to_ipv6_mapped().octets());
        out
    }
}

/// A MAP response, as read; whether it answers our request is the caller's check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MapResponse {
    /// 0 on success, else the error (see [`result_name`]).
    pub result: u8,
    /// Seconds granted (on an error: how long the error is likely to last).
    pub lifetime: u32,
    /// The server's epoch (seconds since it lost its state).
    pub epoch: u32,
    /// The request's nonce, echoed.
    pub nonce: [u8; 12],
    /// The IP protocol mapped.
    pub protocol: u8,
    /// The internal port, echoed.
    pub internal_port: u16,
    /// The external port and address assigned (an IPv4 address comes back as itself).
    pub external_port: u16,
    /// The external address assigned.
    pub external_ip: IpAddr,
}

impl MapResponse {
    /// Whether it answers `req`: same nonce, UDP, same internal port.
    pub(super) fn answers(&self, req: &MapRequest) -> bool {
        self.nonce == req.nonce && self.protocol == UDP && self.internal_port == req.internal_port
    }

    /// Its bytes (for tests and the simulator's routers).
    #[cfg(test)]
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION, OP_MAP | RESPONSE_BIT, 0, self.result];
        out.extend_from_slice(&self.lifetime.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&[self.protocol, 0, 0, 0]);
        out.extend_from_slice(&self.internal_port.to_be_bytes());
        out.extend_from_slice(&self.external_port.to_be_bytes());
        let ip = match self.external_ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        out.extend_from_slice(&ip.octets());
        out
    }
}

/// Reads a MAP response; `None` for anything else (another version or opcode, a request, a
/// short, overlong or misaligned message).
pub(super) fn decode(bytes: &[u8]) -> Option<MapResponse> {
    if bytes.len() < MAP_LEN || bytes.len() > MAX_LEN || bytes.len() % 4 != 0 {
        return None;
    }
    if bytes[0] != VERSION || bytes[1] != OP_MAP | RESPONSE_BIT {
        return None;
    }
    let u32_at =
        |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let mut nonce = [0; 12];
    nonce.copy_from_slice(&bytes[24..36]);
    let mut ip = [0; 16];
    ip.copy_from_slice(&bytes[44..60]);
    let ip = Ipv6Addr::from(ip);
    Some(MapResponse {
        result: bytes[3],
        lifetime: u32_at(4),
        epoch: u32_at(8),
        nonce,
        protocol: bytes[36],
        internal_port: u16_at(40),
        external_port: u16_at(42),
        external_ip: ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4),
    })
}

/// What a PCP result code means (RFC 6887 section 7.4).
pub(super) fn result_name(code: u16) -> &'static str {
    match code {
        1 => "unsupported version",
        2 => "not authorised",
        3 => "malformed request",
        4 => "unsupported opcode",
        5 => "unsupported option",
        6 => "malformed option",
        7 => "network failure",
        8 => "out of resources",
        9 => "unsupported protocol",
        10 => "user over quota",
        11 => "cannot provide the external address",
        12 => "address mismatch (a NAT between us and the router)",
        13 => "too many remote peers",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NONCE: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    fn request() -> MapRequest {
        MapRequest {
            nonce: NONCE,
            client: Ipv4Addr::new(10, 1, 0, 11),
            internal_port: 4000,
            suggested: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4000),
            lifetime: 7200,
        }
    }

    #[test]
    fn a_map_request_has_the_rfc_layout() {
        let bytes = request().encode();
        assert_eq!(bytes.len(), MAP_LEN);
        assert_eq!(bytes[..8], [2, 1, 0, 0, 0, 0, 0x1c, 0x20]);
        // The client address IPv4-mapped.
        assert_eq!(
            bytes[8..24],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 0, 11]
        );
        assert_eq!(bytes[24..36], NONCE);
        assert_eq!(bytes[36..40], [17, 0, 0, 0]);
        assert_eq!(bytes[40..44], [0x0f, 0xa0, 0x0f, 0xa0]);
        // No external address preference: ::ffff:0.0.0.0.
        assert_eq!(
            bytes[44..60],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]
        );
    }

    #[test]
    fn a_response_is_read_and_matched_to_its_request() {
        let resp = MapResponse {
            result: 0,
            lifetime: 3600,
            epoch: 77,
            nonce: NONCE,
            protocol: 17,
            internal_port: 4000,
            external_port: 31000,
            external_ip: IpAddr::V4(Ipv4Addr::new(11, 0, 113, 18)),
        };
        let read = decode(&resp.encode()).expect("a MAP response");
        assert_eq!(read, resp);
        assert!(read.answers(&request()));
        // Options after the opcode's fields are skipped.
        let mut with_option = resp.encode();
        with_option.extend_from_slice(&[0x81, 0, 0, 0]);
        assert_eq!(decode(&with_option), Some(resp));
        // Another nonce, another port, TCP: not ours.
        for other in [
            MapResponse {
                nonce: [0; 12],
                ..resp
            },
            MapResponse {
                internal_port: 4001,
                ..resp
            },
            MapResponse {
                protocol: 6,
                ..resp
            },
        ] {
            assert!(!other.answers(&request()));
        }
    }

    #[test]
    fn what_is_not_a_map_response_is_refused() {
        let good = MapResponse {
            result: 0,
            lifetime: 1,
            epoch: 1,
            nonce: NONCE,
            protocol: 17,
            internal_port: 1,
            external_port: 1,
            external_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
        .encode();
        let mut cases = vec![
            good[..59].to_vec(),
            [good.clone(), vec![0; 2]].concat(),
            [good.clone(), vec![0; 1100]].concat(),
            request().encode(),
            vec![],
        ];
        let mut v1 = good.clone();
        v1[0] = 1;
        cases.push(v1);
        let mut announce = good.clone();
        announce[1] = 0x80;
        cases.push(announce);
        for c in cases {
            assert_eq!(decode(&c), None, "{c:?}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_response_reads_back(
            result in any::<u8>(), lifetime in any::<u32>(), epoch in any::<u32>(),
            nonce in any::<[u8; 12]>(), protocol in any::<u8>(), internal_port in any::<u16>(),
            external_port in any::<u16>(), ip in any::<[u8; 16]>(),
        ) {
            let ip = Ipv6Addr::from(ip);
            let resp = MapResponse {
                result, lifetime, epoch, nonce, protocol, internal_port, external_port,
                external_ip: ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4),
            };
            prop_assert_eq!(decode(&resp.encode()), Some(resp));
        }
    }
}
