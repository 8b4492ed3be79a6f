//! NAT-PMP (RFC 6886) for one UDP port: the external-address request (opcode 0), the UDP
//! mapping request (opcode 1) and their responses.

use std::net::Ipv4Addr;

/// The external-address request.
pub(super) fn address_request() -> Vec<u8> {
    vec![0, 0]
}

/// A UDP mapping request for `internal` (suggesting `suggested` outside) for `lifetime`
/// seconds; 0 deletes the mapping.
pub(super) fn map_request(internal: u16, suggested: u16, lifetime: u32) -> Vec<u8> {
    let mut map = vec![0, 1, 0, 0];
    map.extend_from_slice(&internal.to_be_bytes());
    map.extend_from_slice(&suggested.to_be_bytes());
    map.extend_from_slice(&lifetime.to_be_bytes());
    map
}

/// A NAT-PMP response, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// The external address.
    Address(Ipv4Addr),
    /// A UDP mapping: our port, the external port, the lifetime granted.
    Mapping {
        internal: u16,
        external: u16,
        lifetime: u32,
    },
    /// Any response with a non-zero result code: 1 unsupported version (what a NAT-PMP-only
    /// router says to a PCP request), 2 not authorised, 3 network failure, 4 out of
    /// resources, 5 unsupported opcode.
    Refused(u16),
}

/// Reads a NAT-PMP response; `None` for anything else (another version, a request, a short
/// message, a TCP mapping).
pub(super) fn decode(bytes: &[u8]) -> Option<Answer> {
    let [0, op, r0, r1, ..] = *bytes else {
        return None;
    };
    let result = u16::from_be_bytes([r0, r1]);
    let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    match (op, bytes.len(), result) {
        (128.., 8.., 1..) => Some(Answer::Refused(result)),
        (128, 12.., 0) => Some(Answer::Address(Ipv4Addr::new(
            bytes[8], bytes[9], bytes[10], bytes[11],
        ))),
        (129, 16.., 0) => Some(Answer::Mapping {
            internal: u16_at(8),
            external: u16_at(10),
            lifetime: u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
        }),
        _ => None,
    }
}

/// What a NAT-PMP result code means.
pub(super) fn result_name(code: u16) -> &'static str {
    match code {
        1 => "unsupported version",
        2 => "not authorised",
        3 => "network failure",
        4 => "out of resources",
        5 => "unsupported opcode",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_and_answers_have_the_rfc_layouts() {
        assert_eq!(address_request(), [0, 0]);
        assert_eq!(
            map_request(4000, 4000, 7200),
            [0, 1, 0, 0, 0x0f, 0xa0, 0x0f, 0xa0, 0, 0, 0x1c, 0x20]
        );
        assert_eq!(
            decode(&[0, 128, 0, 0, 0, 0, 0, 9, 203, 0, 113, 2]),
            Some(Answer::Address(Ipv4Addr::new(203, 0, 113, 2)))
        );
        assert_eq!(
            decode(&[
                0, 129, 0, 0, 0, 0, 0, 9, 0x0f, 0xa0, 0x79, 0x18, 0, 0, 0x0e, 0x10
            ]),
            Some(Answer::Mapping {
                internal: 4000,
                external: 31000,
                lifetime: 3600
            })
        );
        // The answer a NAT-PMP-only router gives a PCP request.
        assert_eq!(
            decode(&[0, 129, 0, 1, 0, 0, 0, 9]),
            Some(Answer::Refused(1))
        );
        for junk in [
            &[0, 129, 0, 0][..],
            &[0, 130, 0, 0, 0, 0, 0, 9, 0, 1, 0, 2, 0, 0, 0, 9],
            &[2, 129, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0, 1, 0, 0, 0x0f, 0xa0, 0x0f, 0xa0, 0, 0, 0x1c, 0x20],
            &[],
        ] {
            assert_eq!(decode(junk), None, "{junk:?}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode(&bytes);
        }
    }
}
