//! Asking the gateway whether it speaks a port-mapping protocol: NAT-PMP (RFC 6886), PCP
//! (RFC 6887) and UPnP-IGD's discovery (SSDP). Only the questions that change nothing on the
//! router are asked: NAT-PMP's external-address request, PCP's ANNOUNCE, and an SSDP search.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The port NAT-PMP and PCP servers listen on (RFC 6886 section 3.1, RFC 6887 section 19.1).
pub(super) const PORT_MAPPING_PORT: u16 = 5351;
/// SSDP's multicast group and port (UPnP Device Architecture 1.1, section 1.3).
pub(super) const SSDP: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 255, 255, 250)), 1900);

/// NAT-PMP: version 0, opcode 0 (what is your external address?).
pub(super) fn nat_pmp_request() -> Vec<u8> {
    vec![0, 0]
}

/// PCP ANNOUNCE (opcode 0) from `client`: a 24-byte request header with lifetime 0, which a
/// PCP server answers and which maps nothing (RFC 6887 section 14.1).
pub(super) fn pcp_announce(client: Ipv4Addr) -> Vec<u8> {
    let mut out = vec![2, 0, 0, 0];
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&client.to_ipv6_mapped().octets());
    out
}

/// An SSDP search for Internet gateway devices: the port mapper's own.
pub(super) fn ssdp_search() -> Vec<u8> {
    crate::portmap::upnp::ssdp_search()
}

/// What a datagram from port 5351 or 1900 says about the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// A NAT-PMP response (version 0, a response opcode), whatever its result code: a server
    /// that says "unsupported version" to our PCP request speaks NAT-PMP.
    NatPmp,
    /// A PCP response (version 2, the response bit set).
    Pcp,
    /// An SSDP answer naming an Internet gateway device.
    Upnp,
}

/// Reads a datagram that came from `from`; `None` for anything else.
pub(super) fn classify(from: SocketAddr, bytes: &[u8]) -> Option<Answer> {
    match from.port() {
        PORT_MAPPING_PORT => match bytes {
            [0, op, ..] if op & 0x80 != 0 && bytes.len() >= 8 => Some(Answer::NatPmp),
            [2, op, ..] if op & 0x80 != 0 && bytes.len() >= 24 => Some(Answer::Pcp),
            _ => None,
        },
        1900 => {
            let text = std::str::from_utf8(bytes.get(..bytes.len().min(2048))?).ok()?;
            let ok = text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200");
            let gateway = text
                .lines()
                .any(|l| l.to_ascii_lowercase().contains("internetgatewaydevice"));
            (ok && gateway).then_some(Answer::Upnp)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 1, 0, 1], port))
    }

    #[test]
    fn requests_have_the_rfc_layouts() {
        assert_eq!(nat_pmp_request(), [0, 0]);
        let pcp = pcp_announce(Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(pcp.len(), 24);
        assert_eq!(&pcp[..8], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            &pcp[8..],
            &Ipv4Addr::new(10, 1, 0, 2).to_ipv6_mapped().octets()
        );
        let ssdp = String::from_utf8(ssdp_search()).unwrap();
        assert!(ssdp.starts_with("M-SEARCH * HTTP/1.1\r\n"));
        assert!(ssdp.ends_with("\r\n\r\n"));
    }

    #[test]
    fn answers_are_told_apart_by_port_version_and_content() {
        // NAT-PMP external address response: version 0, opcode 128, result 0, epoch, IP.
        let pmp = [0, 128, 0, 0, 0, 0, 0, 9, 203, 0, 113, 2];
        assert_eq!(classify(at(5351), &pmp), Some(Answer::NatPmp));
        // A NAT-PMP-only router's "unsupported version" answer to PCP still says NAT-PMP.
        assert_eq!(
            classify(at(5351), &[0, 128, 0, 1, 0, 0, 0, 0]),
            Some(Answer::NatPmp)
        );
        let mut pcp = vec![2, 0x80, 0, 0];
        pcp.resize(24, 0);
        assert_eq!(classify(at(5351), &pcp), Some(Answer::Pcp));
        let ssdp =
            b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n";
        assert_eq!(classify(at(1900), ssdp), Some(Answer::Upnp));
        // Our own requests echoed back, short answers, other ports, other devices: nothing.
        assert_eq!(classify(at(5351), &nat_pmp_request()), None);
        assert_eq!(classify(at(5351), &[2, 0x80, 0]), None);
        assert_eq!(classify(at(5350), &pmp), None);
        assert_eq!(
            classify(at(1900), b"HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n"),
            None
        );
        assert_eq!(classify(at(1900), &ssdp_search()), None);
    }

    proptest! {
        #[test]
        fn classify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000), port in prop_oneof![Just(5351u16), Just(1900u16), any::<u16>()]) {
            let _ = classify(at(port), &bytes);
        }
    }
}
