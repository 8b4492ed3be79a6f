//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and 2) that an
//! exposed service may ask for ahead of each connection's data: the connecting client's
//! address, as the opening side saw it ([`Origin`]).
//!
//! Only the encoder lives here, about sixty lines: the forwarder writes one header per
//! connection and never reads one, so a crate with a parser and TLVs would bring more than
//! it gives.

use std::net::{IpAddr, SocketAddr};

use super::{Origin, ProxyVersion};

/// The twelve bytes every version-2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The header for a connection from `origin` (`None`: unknown, as from an opener that did
/// not say, or addresses of two families).
pub fn header(version: ProxyVersion, origin: Option<Origin>) -> Vec<u8> {
    let addrs = origin.and_then(|o| o.same_family());
    match version {
        ProxyVersion::V1 => v1(addrs).into_bytes(),
        ProxyVersion::V2 => v2(addrs),
    }
}

fn v1(addrs: Option<(SocketAddr, SocketAddr)>) -> String {
    match addrs {
        Some((src, dst)) => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
        }
        None => "PROXY UNKNOWN\r\n".into(),
    }
}

fn v2(addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    let Some((src, dst)) = addrs else {
        // LOCAL: the receiver uses the connection's own addresses.
        out.extend_from_slice(&[0x20, 0x00, 0, 0]);
        return out;
    };
    let (family, len) = if src.is_ipv4() {
        (0x11, 12u16)
    } else {
        (0x21, 36u16)
    };
    // Version 2, command PROXY; TCP over IPv4 or IPv6.
    out.extend_from_slice(&[0x21, family]);
    out.extend_from_slice(&len.to_be_bytes());
    for a in [src, dst] {
        match a.ip() {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(client: &str, local: &str) -> Option<Origin> {
        Some(Origin {
            client: client.parse().unwrap(),
            local: local.parse().unwrap(),
        })
    }

    /// The spec's own examples (section 2.1).
    #[test]
    fn v1_lines_match_the_spec() {
        let o = origin("192.168.0.1:56324", "192.168.0.11:443");
        assert_eq!(
            header(ProxyVersion::V1, o),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        );
        let o = origin("[2001:db8::1]:56324", "[::1]:443");
        assert_eq!(
            header(ProxyVersion::V1, o),
            b"PROXY TCP6 2001:db8::1 ::1 56324 443\r\n"
        );
        assert_eq!(header(ProxyVersion::V1, None), b"PROXY UNKNOWN\r\n");
        // A v4-mapped client on a dual-stack listener is an IPv4 client.
        let o = origin("[::ffff:10.1.2.3]:5", "[::ffff:127.0.0.1]:6");
        assert_eq!(
            header(ProxyVersion::V1, o),
            b"PROXY TCP4 10.1.2.3 127.0.0.1 5 6\r\n"
        );
        // The longest line the spec allows is 107 bytes.
        let o = origin(
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        );
        assert_eq!(header(ProxyVersion::V1, o).len(), 104);
    }

    #[test]
    fn v2_headers_match_the_spec() {
        let o = origin("192.168.0.1:56324", "192.168.0.11:443");
        let h = header(ProxyVersion::V2, o);
        assert_eq!(
            &h[..12],
            b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
        );
        assert_eq!(h[12], 0x21, "version 2, PROXY");
        assert_eq!(h[13], 0x11, "TCP over IPv4");
        assert_eq!(&h[14..16], &[0, 12]);
        assert_eq!(&h[16..20], &[192, 168, 0, 1]);
        assert_eq!(&h[20..24], &[192, 168, 0, 11]);
        assert_eq!(&h[24..26], &56324u16.to_be_bytes());
        assert_eq!(&h[26..28], &443u16.to_be_bytes());
        assert_eq!(h.len(), 16 + 12);

        let o = origin("[2001:db8::1]:1", "[::1]:2");
        let h = header(ProxyVersion::V2, o);
        assert_eq!((h[12], h[13]), (0x21, 0x21), "TCP over IPv6");
        assert_eq!(&h[14..16], &[0, 36]);
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(
            &h[16..32],
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(&h[48..52], &[0, 1, 0, 2]);

        let h = header(ProxyVersion::V2, None);
        assert_eq!(
            &h[12..],
            &[0x20, 0, 0, 0],
            "LOCAL, unspecified, no addresses"
        );
    }
}
