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

    /// Whether packets may travel by `path` under this policy.
    pub fn allows(self, path: Path) -> bool {
        match path {
            Path::Direct(_) => self.allows_direct(),
            Path::Relay(_) => self.allows_relay(),
        }
    }

    /// The stricter of two policies (connet's rule: the stricter side wins): `any` gives way
    /// to the other; `direct` and `relay` together are a conflict (`None`), since no path
    /// satisfies both.
    pub fn combine(self, other: RoutePolicy) -> Option<RoutePolicy> {
        match (self, other) {
            (RoutePolicy::Any, p) | (p, RoutePolicy::Any) => Some(p),
            (a, b) if a == b => Some(a),
            _ => None,
        }
    }

    /// How the policy reads in an error: `direct-only`, `relay-only` or `any-path`.
    pub fn describe(self) -> &'static str {
        match self {
            RoutePolicy::Any => "any-path",
            RoutePolicy::Direct => "direct-only",
            RoutePolicy::Relay => "relay-only",
        }
    }

    /// Its byte on the wire (rendezvous messages' route trailers): 0 any, 1 direct, 2 relay.
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            RoutePolicy::Any => 0,
            RoutePolicy::Direct => 1,
            RoutePolicy::Relay => 2,
        }
    }

    /// The policy a wire byte names; `None` for any other byte.
    pub(crate) fn from_byte(byte: u8) -> Option<RoutePolicy> {
        match byte {
            0 => Some(RoutePolicy::Any),
            1 => Some(RoutePolicy::Direct),
            2 => Some(RoutePolicy::Relay),
            _ => None,
        }
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
    fn the_stricter_side_wins_and_direct_with_relay_conflicts() {
        use RoutePolicy::*;
        for p in [Any, Direct, Relay] {
            assert_eq!(Any.combine(p), Some(p));
            assert_eq!(p.combine(Any), Some(p));
            assert_eq!(p.combine(p), Some(p));
            assert_eq!(RoutePolicy::from_byte(p.to_byte()), Some(p));
        }
        assert_eq!(Direct.combine(Relay), None);
        assert_eq!(Relay.combine(Direct), None);
        assert!((3..=255).all(|b| RoutePolicy::from_byte(b).is_none()));
        let a: SocketAddr = "192.0.2.1:5".parse().unwrap();
        assert!(Relay.allows(Path::Relay(a)) && !Relay.allows(Path::Direct(a)));
        assert!(Direct.allows(Path::Direct(a)) && !Direct.allows(Path::Relay(a)));
    }

    #[test]
    fn path_names_its_address() {
        let a: SocketAddr = "192.0.2.1:5".parse().unwrap();
        assert_eq!(Path::Direct(a).addr(), a);
        assert!(Path::Relay(a).is_relay());
        assert_eq!(Path::Relay(a).to_string(), "relay via 192.0.2.1:5");
    }
}
