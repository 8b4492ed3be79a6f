//! Services: the names daemons expose, and the header that opens every stream with the name
//! of the service it is for.
//!
//! The opener of a stream writes `[version = 1][length: u8][name bytes]` before any data, or,
//! when it knows where the connection came from (a TCP client of its listener),
//! `[version = 2][length: u8][name bytes][origin length: u8][origin]`, the origin being the
//! client's address and port then the listener's (12 bytes for IPv4, 36 for IPv6, each port
//! big-endian; no other length is valid). The receiving endpoint reads and checks that header
//! itself, so the application only ever sees [`crate::Event::IncomingStream`] for a service it
//! exposes, with the local target it gave; a stream for anything else is reset with
//! [`UNKNOWN_SERVICE`]. Both versions are read, so openers from before version 2 still
//! work; a daemon from before version 2 refuses a version-2 stream with [`BAD_HEADER`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::forward::{ExposeOptions, Origin, Protocol, ProxyVersion, PublishPort};
use crate::rendezvous::ServiceName;

/// Version byte of the stream header without an origin.
pub(crate) const HEADER_VERSION: u8 = 1;
/// Version byte of the stream header with an origin.
pub(crate) const HEADER_VERSION_ORIGIN: u8 = 2;
/// The longest service name (as `ServiceName` allows).
const MAX_NAME: usize = 128;
/// Length of an IPv4 origin: two addresses and two ports.
const ORIGIN_V4: usize = 2 * (4 + 2);
/// Length of an IPv6 origin.
const ORIGIN_V6: usize = 2 * (16 + 2);
/// Reset code for a stream whose service this endpoint does not expose.
pub(crate) const UNKNOWN_SERVICE: u64 = 0x5E01;
/// Reset code for a stream whose header does not parse.
pub(crate) const BAD_HEADER: u64 = 0x5E02;
/// Reset code for a stream whose service's route policy does not allow the path its
/// session uses now (a relay-only service on a direct path, or the other way round).
pub(crate) const ROUTE_REFUSED: u64 = 0x5E03;

/// The stream header for `name`, with where the connection came from when known.
pub(crate) fn header(name: &ServiceName, origin: Option<Origin>) -> Vec<u8> {
    let bytes = name.as_str().as_bytes();
    let len = u8::try_from(bytes.len()).expect("service names are at most 128 bytes");
    let mut out = Vec::with_capacity(3 + bytes.len() + ORIGIN_V6);
    let version = match origin {
        Some(_) => HEADER_VERSION_ORIGIN,
        None => HEADER_VERSION,
    };
    out.extend_from_slice(&[version, len]);
    out.extend_from_slice(bytes);
    if let Some(origin) = origin {
        let (client, local) = origin
            .same_family()
            .unwrap_or((origin.client, origin.local));
        let (client, local) = match (client, local) {
            (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
                (client, local)
            }
            // Mixed families that do not map: both as IPv6 (v4-mapped).
            _ => (v6(client), v6(local)),
        };
        let at = out.len();
        out.push(0);
        for a in [client, local] {
            match a.ip() {
                IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
            }
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        out[at] = (out.len() - at - 1) as u8;
    }
    out
}

fn v6(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    }
}

/// The origin encoded in `bytes` (of a valid length).
fn parse_origin(bytes: &[u8]) -> Option<Origin> {
    let half = bytes.len() / 2;
    let addr = |b: &[u8]| -> SocketAddr {
        let (ip, port) = b.split_at(b.len() - 2);
        let port = u16::from_be_bytes([port[0], port[1]]);
        let ip = match <[u8; 4]>::try_from(ip) {
            Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            Err(_) => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(ip).expect("checked length"),
            )),
        };
        SocketAddr::new(ip, port)
    };
    match bytes.len() {
        ORIGIN_V4 | ORIGIN_V6 => Some(Origin {
            client: addr(&bytes[..half]),
            local: addr(&bytes[half..]),
        }),
        _ => None,
    }
}

/// A header being read: how many more bytes it needs, and the parsed name once complete.
#[derive(Debug, Default)]
pub(crate) struct HeaderReader {
    bytes: Vec<u8>,
}

/// What a header read so far amounts to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderState {
    /// Read this many more bytes.
    Need(usize),
    /// Complete and valid: the service, and the origin a version-2 header carried.
    Done(ServiceName, Option<Origin>),
    /// Not a valid header.
    Bad,
}

impl HeaderReader {
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
    }

    pub(crate) fn state(&self) -> HeaderState {
        let (version, len, rest) = match self.bytes.as_slice() {
            [] => return HeaderState::Need(2),
            [v, ..] if *v != HEADER_VERSION && *v != HEADER_VERSION_ORIGIN => {
                return HeaderState::Bad;
            }
            [_] => return HeaderState::Need(1),
            [v, len, rest @ ..] => (*v, usize::from(*len), rest),
        };
        // No longer name parses: refuse it now rather than buffer up to 255 bytes of it.
        if len > MAX_NAME {
            return HeaderState::Bad;
        }
        if rest.len() < len {
            return HeaderState::Need(len - rest.len());
        }
        let (name, rest) = rest.split_at(len);
        let Some(name) = std::str::from_utf8(name)
            .ok()
            .and_then(|text| ServiceName::parse(text).ok())
        else {
            return HeaderState::Bad;
        };
        if version == HEADER_VERSION {
            // Callers read exactly what `Need` asks for, so nothing follows.
            return match rest {
                [] => HeaderState::Done(name, None),
                _ => HeaderState::Bad,
            };
        }
        let Some((&origin_len, origin)) = rest.split_first() else {
            return HeaderState::Need(1);
        };
        let origin_len = usize::from(origin_len);
        if origin_len != ORIGIN_V4 && origin_len != ORIGIN_V6 {
            return HeaderState::Bad;
        }
        if origin.len() < origin_len {
            return HeaderState::Need(origin_len - origin.len());
        }
        match (origin.len() == origin_len).then(|| parse_origin(origin)) {
            Some(Some(origin)) => HeaderState::Done(name, Some(origin)),
            _ => HeaderState::Bad,
        }
    }
}

/// The services this endpoint exposes, where their connections go locally, and how.
#[derive(Clone, Debug, Default)]
pub(crate) struct Exposed(BTreeMap<ServiceName, (String, ExposeOptions)>);

impl Exposed {
    pub(crate) fn insert(&mut self, name: ServiceName, target: String, options: ExposeOptions) {
        self.0.insert(name, (target, options));
    }

    pub(crate) fn remove(&mut self, name: &ServiceName) -> bool {
        self.0.remove(name).is_some()
    }

    /// The target of a TCP service, and its PROXY protocol version if it sends one. A UDP
    /// service has none: a stream for it is refused as for an unknown name.
    pub(crate) fn target(&self, name: &ServiceName) -> Option<(&str, Option<ProxyVersion>)> {
        self.0
            .get(name)
            .filter(|(_, o)| o.protocol == Protocol::Tcp)
            .map(|(t, o)| (t.as_str(), o.proxy_protocol))
    }

    /// The target of a UDP service.
    pub(crate) fn udp_target(&self, name: &ServiceName) -> Option<&str> {
        self.0
            .get(name)
            .filter(|(_, o)| o.protocol == Protocol::Udp)
            .map(|(t, _)| t.as_str())
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &ServiceName> {
        self.0.keys()
    }

    /// The route policy of an exposed service (`any` when it set none), `None` when we do
    /// not expose it.
    pub(crate) fn route(&self, name: &ServiceName) -> Option<crate::path::RoutePolicy> {
        self.0.get(name).map(|(_, o)| o.route.unwrap_or_default())
    }

    /// The services to publish on the rendezvous server's public ports, and where.
    pub(crate) fn to_publish(&self) -> impl Iterator<Item = (&ServiceName, PublishPort)> {
        self.0
            .iter()
            .filter_map(|(name, (_, o))| Some((name, o.publish?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_header_reads_back_byte_by_byte() {
        let name = ServiceName::parse("/toronto/mysql").unwrap();
        let v4 = Origin {
            client: "192.0.2.7:40001".parse().unwrap(),
            local: "127.0.0.1:5432".parse().unwrap(),
        };
        let v6 = Origin {
            client: "[2001:db8::7]:40001".parse().unwrap(),
            local: "[::1]:5432".parse().unwrap(),
        };
        for origin in [None, Some(v4), Some(v6)] {
            let bytes = header(&name, origin);
            let mut reader = HeaderReader::default();
            for (i, b) in bytes.iter().enumerate() {
                assert!(matches!(reader.state(), HeaderState::Need(n) if n <= bytes.len() - i));
                reader.push(&[*b]);
            }
            assert_eq!(reader.state(), HeaderState::Done(name.clone(), origin));
        }
    }

    /// Reads a header the way the session does: only as many bytes as `Need` asks for.
    fn read_as_session(bytes: &[u8]) -> (HeaderState, usize) {
        let mut reader = HeaderReader::default();
        let mut at = 0;
        loop {
            match reader.state() {
                HeaderState::Need(n) if at < bytes.len() => {
                    let end = (at + n).min(bytes.len());
                    reader.push(&bytes[at..end]);
                    at = end;
                }
                state => return (state, at),
            }
        }
    }

    /// proptest's shrunk failure: a version-1 header whose name length (167) is past any
    /// service name used to be read in full before it was refused.
    #[test]
    fn regression_a_name_length_past_128_is_refused_at_once() {
        let mut bytes = vec![1u8, 167];
        bytes.extend(std::iter::repeat_n(0u8, 200));
        assert_eq!(read_as_session(&bytes), (HeaderState::Bad, 2));
        assert_eq!(read_as_session(&[2, 129]), (HeaderState::Bad, 2));
    }

    #[test]
    fn mapped_and_mixed_origins_keep_one_family() {
        let name = ServiceName::parse("/a").unwrap();
        let mapped = Origin {
            client: "[::ffff:192.0.2.7]:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
        };
        let (state, _) = read_as_session(&header(&name, Some(mapped)));
        let want = Origin {
            client: "192.0.2.7:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
        };
        assert_eq!(state, HeaderState::Done(name.clone(), Some(want)));
        let mixed = Origin {
            client: "[2001:db8::1]:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
        };
        let (state, _) = read_as_session(&header(&name, Some(mixed)));
        let HeaderState::Done(_, Some(o)) = state else {
            panic!("{state:?}");
        };
        assert!(o.client.is_ipv6() && o.local.is_ipv6());
    }

    /// Hostile version-2 headers: every origin length but the two valid ones, a truncated
    /// origin, and a stream that ends early are refused or wait; none reads past the header.
    #[test]
    fn version_two_headers_resist_breaking() {
        let name = ServiceName::parse("/a").unwrap();
        for origin_len in 0..=255u8 {
            let mut bytes = vec![2, 2, b'/', b'a', origin_len];
            bytes.extend(std::iter::repeat_n(7u8, 300));
            let (state, read) = read_as_session(&bytes);
            match usize::from(origin_len) {
                ORIGIN_V4 | ORIGIN_V6 => {
                    assert!(matches!(state, HeaderState::Done(ref n, Some(_)) if *n == name));
                    assert_eq!(read, 5 + usize::from(origin_len), "reads no data");
                }
                _ => assert_eq!(state, HeaderState::Bad, "origin length {origin_len}"),
            }
        }
        // Truncated: waits for exactly the rest.
        let full = header(
            &name,
            Some(Origin {
                client: "10.0.0.1:1".parse().unwrap(),
                local: "10.0.0.2:2".parse().unwrap(),
            }),
        );
        for cut in 0..full.len() {
            let mut reader = HeaderReader::default();
            reader.push(&full[..cut]);
            assert!(
                matches!(reader.state(), HeaderState::Need(n) if n <= full.len() - cut),
                "cut at {cut}"
            );
        }
        // More bytes than asked for in one push (a careless reader) are refused, not parsed.
        let mut reader = HeaderReader::default();
        reader.push(&[&full[..], b"x"].concat());
        assert_eq!(reader.state(), HeaderState::Bad);
        let mut reader = HeaderReader::default();
        reader.push(&[1, 2, b'/', b'a', b'x']);
        assert_eq!(reader.state(), HeaderState::Bad);
    }

    #[test]
    fn bad_headers_are_refused() {
        for bad in [
            &[3u8, 1, b'/'][..],
            &[1, 3, b'x', b'y', b'z'],
            &[1, 2, 0xFF, 0xFE],
        ] {
            let mut reader = HeaderReader::default();
            reader.push(bad);
            assert_eq!(reader.state(), HeaderState::Bad, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut reader = HeaderReader::default();
            reader.push(&bytes);
            let _ = reader.state();
            let (state, read) = read_as_session(&bytes);
            // Never more than the longest valid header is read, whatever the bytes.
            prop_assert!(read <= 2 + 128 + 1 + ORIGIN_V6, "{state:?} after {read}");
        }

        #[test]
        fn headers_with_origins_read_back(
            a in any::<[u8; 16]>(), b in any::<[u8; 16]>(), p in any::<u16>(), q in any::<u16>(),
            v4 in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let ip = |x: [u8; 16]| -> IpAddr {
                if v4 { IpAddr::V4(Ipv4Addr::new(x[0], x[1], x[2], x[3])) }
                else { IpAddr::V6(Ipv6Addr::from(x)) }
            };
            let origin = Origin {
                client: SocketAddr::new(ip(a), p),
                local: SocketAddr::new(ip(b), q),
            };
            let name = ServiceName::parse("/x/y").unwrap();
            let bytes = [header(&name, Some(origin)), tail].concat();
            let (state, read) = read_as_session(&bytes);
            let HeaderState::Done(n, Some(o)) = state else {
                return Err(TestCaseError::fail(format!("{state:?}")));
            };
            prop_assert_eq!(n, name);
            prop_assert_eq!(read, header(&ServiceName::parse("/x/y").unwrap(), Some(origin)).len());
            // Mapped IPv6 addresses may come back as IPv4; the rest exactly.
            prop_assert_eq!(o.client.port(), p);
            prop_assert_eq!(o.local.ip().to_canonical(), origin.local.ip().to_canonical());
        }
    }
}
