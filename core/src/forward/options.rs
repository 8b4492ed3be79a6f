//! How a service is forwarded: its transport ([`Protocol`]), whether the connecting client's
//! address is sent ahead of its connections ([`ProxyVersion`]), and that address as it
//! travels in a stream's header ([`Origin`]).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// The transport a service is forwarded over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP connections (or unix sockets) over reliable streams.
    #[default]
    Tcp,
    /// UDP datagrams over the session's unreliable datagrams, one flow per source address.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            other => Err(format!("`{other}` is not one of tcp, udp")),
        }
    }
}

/// A PROXY protocol version (HAProxy's `proxy-protocol.txt`): the header the exposing side
/// writes to its local target before a connection's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProxyVersion {
    /// The human-readable line, `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary header with its 12-byte signature.
    V2,
}

impl fmt::Display for ProxyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        })
    }
}

impl FromStr for ProxyVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" | "1" => Ok(Self::V1),
            "v2" | "2" => Ok(Self::V2),
            other => Err(format!("`{other}` is not one of v1, v2")),
        }
    }
}

/// A public TCP port of the rendezvous server to publish an exposed service on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PublishPort {
    /// Whichever free port of its range the server picks.
    Any,
    /// This port.
    Port(u16),
    /// The server's SNI port, under the host name made of the path's last segment and the
    /// server's domain (`/web/blog` as `blog.DOMAIN`): for a TLS service, which the server
    /// routes by the name its clients ask for without terminating TLS.
    Sni,
}

impl PublishPort {
    /// The port asked for, `None` for any (or the SNI port).
    pub fn port(self) -> Option<u16> {
        match self {
            Self::Any | Self::Sni => None,
            Self::Port(p) => Some(p),
        }
    }
}

impl fmt::Display for PublishPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Sni => f.write_str("sni"),
            Self::Port(p) => write!(f, "{p}"),
        }
    }
}

impl FromStr for PublishPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "any" => Ok(Self::Any),
            "sni" => Ok(Self::Sni),
            port => match port.parse::<u16>() {
                Ok(p) if p > 0 => Ok(Self::Port(p)),
                _ => Err(format!(
                    "`{s}` is neither a port (1-65535) nor `any` nor `sni`"
                )),
            },
        }
    }
}

/// How one exposed service is forwarded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExposeOptions {
    /// TCP (streams) or UDP (flows of datagrams).
    pub protocol: Protocol,
    /// Send the connecting client's address ahead of each connection (TCP only).
    pub proxy_protocol: Option<ProxyVersion>,
    /// Which paths may carry the service (`None`: the daemon's route policy). A connecting
    /// daemon learns it from the server's introduction and combines it with its own (the
    /// stricter side wins); a stream or flow that arrives on a path it does not allow is
    /// refused with the reason.
    pub route: Option<crate::path::RoutePolicy>,
    /// Ask the rendezvous server to publish the service on one of its public TCP ports
    /// (TCP only): connections there reach it through the daemon's session with the server.
    pub publish: Option<PublishPort>,
}

impl ExposeOptions {
    /// A UDP service.
    pub fn udp() -> Self {
        Self {
            protocol: Protocol::Udp,
            ..Self::default()
        }
    }
}

/// Where a forwarded TCP connection came from on the connecting side: the client's address
/// and the local address it connected to (the listener's). Carried in the stream's header so
/// the exposing side can hand it on with the PROXY protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The client that connected.
    pub client: SocketAddr,
    /// The address it connected to.
    pub local: SocketAddr,
}

impl Origin {
    /// Both addresses in one family: IPv4-mapped IPv6 addresses become IPv4 when the other
    /// is IPv4 (or mapped too). `None` when the families still differ.
    pub(crate) fn same_family(&self) -> Option<(SocketAddr, SocketAddr)> {
        let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        let (c, l) = (canon(self.client), canon(self.local));
        match (c, l) {
            (SocketAddr::V4(_), SocketAddr::V4(_)) => Some((c, l)),
            (SocketAddr::V6(_), SocketAddr::V6(_)) => Some((self.client, self.local)),
            _ if self.client.is_ipv6() && self.local.is_ipv6() => Some((self.client, self.local)),
            _ => None,
        }
    }
}
