//! How packets reach a peer: straight to its address, or through a relay.

use std::fmt;
use std::net::SocketAddr;

/// The way a session's packets travel.
///
/// A session starts on the path its handshake came by. A direct path is an address the peer's
/// authenticated packets come from (its NAT mapping); a relayed path wraps every packet in the
/// session with the rendezvous server, which forwards it to the peer without being able to
/// read it. A relayed session keeps probing the peer's candidates and moves to a direct path
/// once one is proven both ways; a direct session whose path goes silent falls back to the
/// relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Path {
    /// Straight to this address.
    Direct(SocketAddr),
    /// Through the relay (our rendezvous server) at this address.
    Relay(SocketAddr),
}

impl Path {
    /// The address datagrams on this path go to: the peer's, or the relay's.
    pub fn addr(self) -> SocketAddr {
        match self {
            Path::Direct(addr) | Path::Relay(addr) => addr,
        }
    }

    /// Whether the path goes through a relay.
    pub fn is_relay(self) -> bool {
        matches!(self, Path::Relay(_))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Direct(addr) => write!(f, "direct {addr}"),
            Path::Relay(addr) => write!(f, "relay via {addr}"),
        }
    }
}

/// Which paths a daemon may use to reach the peers it is introduced to (connet's route
/// policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RoutePolicy {
    /// Punch a direct path; use the relay when punching has not succeeded within
    /// [`crate::config::SessionConfig::relay_after`], keep trying direct, and fall back to the
    /// relay when a direct path dies.
    #[default]
    Any,
    /// Direct paths only: never relay (the connection fails where no direct path exists).
    Direct,
    /// Relay only: never send to the peer's own addresses.
    Relay,
}

impl RoutePolicy {
    /// Whether the relay may carry traffic.
    pub fn allows_relay(self) -> bool {
        self != RoutePolicy::Direct
    }

    /// Whether direct paths may be tried.
    pub fn allows_direct(self) -> bool {
        self != RoutePolicy::Relay
    }
}

impl std::str::FromStr for RoutePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "any" => Ok(RoutePolicy::Any),
            "direct" => Ok(RoutePolicy::Direct),
            "relay" => Ok(RoutePolicy::Relay),
            other => Err(format!(
                "unknown route policy {other:?}: use any, direct or relay"
            )),
        }
    }
}

impl fmt::Display for RoutePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoutePolicy::Any => "any",
            RoutePolicy::Direct => "direct",
            RoutePolicy::Relay => "relay",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_policy_parses_what_it_prints() {
        for p in [RoutePolicy::Any, RoutePolicy::Direct, RoutePolicy::Relay] {
            assert_eq!(p.to_string().parse::<RoutePolicy>(), Ok(p));
        }
        assert!("both".parse::<RoutePolicy>().is_err());
    }

    #[test]
    fn path_names_its_address() {
        let a: SocketAddr = "192.0.2.1:5".parse().unwrap();
        assert_eq!(Path::Direct(a).addr(), a);
        assert!(Path::Relay(a).is_relay());
        assert_eq!(Path::Relay(a).to_string(), "relay via 192.0.2.1:5");
    }
}
