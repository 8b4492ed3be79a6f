//! Where punching sends: the peer's candidates as the rendezvous server gave them, the ports
//! predicted above its reflexive one, and the first path a new session tries.

use std::net::SocketAddr;

use crate::error::ConnectError;
use crate::path::{Path, RoutePolicy};

/// Port prediction: how many ports right above the peer's server-reflexive port punching
/// also tries, on the reflexive address's IP.
///
/// A NAT with endpoint-dependent mapping gives each new destination a new external port; one
/// that allocates sequentially gives the next free one, so the mapping the peer's NAT makes
/// toward us usually lies a few ports above the reflexive port the rendezvous server saw (one
/// above, when the peer's first new destination is our reflexive address). Sending there too
/// opens our own NAT's filter for that port and reaches the peer's mapping once it exists, so
/// a peer behind such a NAT can reach us directly if our mapping is endpoint-independent.
///
/// The bound keeps this from becoming a port scan: at most this many extra addresses, one
/// TTL-limited probe and one initiation (or path challenge) each per punching attempt or
/// relayed search round (which back off to `path_probe_max`), only while no direct path is
/// up (never on a direct session), and only toward the IP the peer itself registered from. An
/// initiation can only be answered by the holder of the peer's static key, so a stranger on a
/// predicted port learns nothing and completes nothing.
pub(crate) const PREDICTED_PORTS: u16 = 8;

/// The predicted addresses for punching toward `candidates` (reflexive address first): the
/// [`PREDICTED_PORTS`] ports above the reflexive port, on a public IPv4 address only (IPv6 is
/// seldom translated; private, loopback and link-local addresses are not behind the peer's
/// NAT), and none that is a candidate already.
pub(crate) fn predicted_ports(candidates: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(SocketAddr::V4(reflexive)) = candidates.first() else {
        return Vec::new();
    };
    let ip = reflexive.ip();
    if ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
    {
        return Vec::new();
    }
    (1..=PREDICTED_PORTS)
        .map_while(|k| reflexive.port().checked_add(k))
        .map(|port| SocketAddr::new((*ip).into(), port))
        .filter(|a| !candidates.contains(a))
        .collect()
}

/// Where punching attempts and relayed search rounds send: the candidates, then the predicted
/// ports above the reflexive one. Predicted ports come last, so that a sequential NAT in front
/// of us gives the peer's reflexive address the port right after our own reflexive one.
pub(crate) fn targets(candidates: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut targets = candidates.to_vec();
    targets.extend(predicted_ports(candidates));
    targets
}

/// The path a session introduced with `candidates` starts on: the first candidate when direct
/// paths are allowed, else the relay (`relay`: the rendezvous server's address and our route
/// policy, when the relay may carry the session).
pub(crate) fn first_path(
    candidates: &[SocketAddr],
    relay: Option<(SocketAddr, RoutePolicy)>,
) -> Result<Path, ConnectError> {
    match (candidates.first(), relay) {
        (Some(&first), _) if direct_allowed(relay) => Ok(Path::Direct(first)),
        (_, Some((server, _))) => Ok(Path::Relay(server)),
        (_, None) => Err(ConnectError::NoCandidates),
    }
}

/// Whether an introduction with `relay` (see [`first_path`]) may try direct paths.
pub(crate) fn direct_allowed(relay: Option<(SocketAddr, RoutePolicy)>) -> bool {
    relay.is_none_or(|(_, route)| route.allows_direct())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn predicts_the_ports_above_a_public_reflexive_address_only() {
        let got = predicted_ports(&addrs(&["203.0.113.10:5000", "203.0.113.10:5002"]));
        assert_eq!(got.len(), usize::from(PREDICTED_PORTS) - 1);
        assert_eq!(got[0], "203.0.113.10:5001".parse().unwrap());
        assert!(!got.contains(&"203.0.113.10:5002".parse().unwrap()));
        assert!(got.iter().all(|a| a.ip() == got[0].ip() && a.port() > 5000));
        assert!(got.iter().all(|a| a.port() <= 5000 + PREDICTED_PORTS));
        // Near the top of the range: no wrap-around.
        assert_eq!(predicted_ports(&addrs(&["203.0.113.10:65534"])).len(), 1);
        // Nothing behind the peer's NAT to predict on private, loopback or IPv6 addresses.
        for first in [
            "192.168.1.2:40000",
            "127.0.0.1:40000",
            "[2001:db8::1]:40000",
        ] {
            assert!(predicted_ports(&addrs(&[first])).is_empty(), "{first}");
        }
        assert!(predicted_ports(&[]).is_empty());
    }

    #[test]
    fn targets_are_the_candidates_then_the_predictions() {
        let candidates = addrs(&["203.0.113.10:5000", "192.168.1.2:4000"]);
        let got = targets(&candidates);
        assert_eq!(got[..2], candidates[..]);
        assert_eq!(got.len(), 2 + usize::from(PREDICTED_PORTS));
    }

    #[test]
    fn the_first_path_follows_the_route_policy() {
        let c = addrs(&["203.0.113.10:5000"]);
        let server: SocketAddr = "198.51.100.1:7000".parse().unwrap();
        assert_eq!(first_path(&c, None), Ok(Path::Direct(c[0])));
        let any = Some((server, RoutePolicy::Any));
        assert_eq!(first_path(&c, any), Ok(Path::Direct(c[0])));
        let relay = Some((server, RoutePolicy::Relay));
        assert_eq!(first_path(&c, relay), Ok(Path::Relay(server)));
        assert_eq!(first_path(&[], any), Ok(Path::Relay(server)));
        assert_eq!(first_path(&[], None), Err(ConnectError::NoCandidates));
    }
}
