//! Where punching sends: the peer's candidates as the rendezvous server gave them, the ports
//! predicted above its reflexive one, and the first path a new session tries.

use std::net::{IpAddr, SocketAddr};

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
    let Some(reflexive) = public_v4_reflexive(candidates) else {
        return Vec::new();
    };
    let ip = reflexive.ip();
    (1..=PREDICTED_PORTS)
        .map_while(|k| reflexive.port().checked_add(k))
        .map(|port| SocketAddr::new((*ip).into(), port))
        .filter(|a| !candidates.contains(a))
        .collect()
}

/// The first candidate (the reflexive address) when it is a public IPv4 address: only there
/// does a NAT of the peer's choose the ports, so only there are ports worth predicting.
fn public_v4_reflexive(candidates: &[SocketAddr]) -> Option<std::net::SocketAddrV4> {
    let Some(SocketAddr::V4(reflexive)) = candidates.first() else {
        return None;
    };
    let ip = reflexive.ip();
    let special = ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast();
    (!special).then_some(*reflexive)
}

/// Most preserved-port guesses per introduction (see [`preserved_ports`]).
pub(crate) const PRESERVED_PORTS: usize = 2;

/// Port preservation: the peer's own local ports (those of its host candidates) on its
/// reflexive IP, at most [`PRESERVED_PORTS`] of them, none the reflexive address itself.
///
/// A NAT that keeps the inside port when it is free (Linux `masquerade`, most home routers)
/// maps the peer's new flows there, even when the reflexive port the server saw is another:
/// the server's flow can hold an older mapping (a NAT whose rule changed from fully-random to
/// plain masquerade keeps its conntrack entries, and the daemon's keepalives keep that one
/// alive), or took another port in a clash. Sending there opens our NAT for the port the
/// peer's packets to us will come from. `candidates` are the introduction's, before
/// [`usable`] drops host candidates on other LANs: only their ports are used, on the IP the
/// peer registered from.
pub(crate) fn preserved_ports(candidates: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(reflexive) = public_v4_reflexive(candidates) else {
        return Vec::new();
    };
    let mut out: Vec<SocketAddr> = Vec::new();
    for c in &candidates[1..] {
        let guess = SocketAddr::new((*reflexive.ip()).into(), c.port());
        if out.len() < PRESERVED_PORTS && c.port() != reflexive.port() && !out.contains(&guess) {
            out.push(guess);
        }
    }
    out
}

/// Bytes of probes, initiations and challenges one session may send to the peer's host
/// candidates (addresses other than the IP it registered from), over its whole life. A peer
/// on our LAN answers within the first attempts, well inside it; an attacker announcing
/// someone's LAN address as its own gets at most this much sent there per introduced key.
pub(crate) const HOST_BUDGET: usize = 4096;

/// The candidates of an introduction that punching may use: the peer's reflexive address, and
/// its host candidates only where they can be reached on a LAN we share with it: both of us
/// register from the same public IP (behind one NAT), or the candidate is in the same private
/// subnet (/24 for IPv4, /64 for IPv6 unique-local) as one of our own host addresses, or on
/// loopback when we have a loopback address ourselves. Anything else would send punch packets
/// to an address the peer only claims (a reflection); the server filters too, but a daemon
/// does not take its word for it.
pub(crate) fn usable(
    candidates: Vec<SocketAddr>,
    own_reflexive: Option<SocketAddr>,
    own_hosts: &[SocketAddr],
) -> Vec<SocketAddr> {
    let Some(&reflexive) = candidates.first() else {
        return candidates;
    };
    let shared_public = own_reflexive.is_some_and(|own| own.ip() == reflexive.ip());
    let on_our_lan = |c: &SocketAddr| own_hosts.iter().any(|own| same_lan(c.ip(), own.ip()));
    let mut out = vec![reflexive];
    out.extend(
        candidates[1..]
            .iter()
            .filter(|c| c.ip() == reflexive.ip() || shared_public || on_our_lan(c))
            .copied(),
    );
    out
}

/// Whether `a` is on the same LAN as our address `own`: the same private /24 (or shared
/// carrier-grade /24), the same unique-local /64, or both loopback.
fn same_lan(a: IpAddr, own: IpAddr) -> bool {
    match (a, own) {
        (IpAddr::V4(a), IpAddr::V4(own)) => {
            let private = |ip: std::net::Ipv4Addr| {
                let [x, y, ..] = ip.octets();
                ip.is_private() || (x == 100 && (64..128).contains(&y))
            };
            (a.is_loopback() && own.is_loopback())
                || (private(a) && a.octets()[..3] == own.octets()[..3])
        }
        (IpAddr::V6(a), IpAddr::V6(own)) => {
            (a.is_loopback() && own.is_loopback())
                || (a.segments()[0] & 0xfe00 == 0xfc00 && a.segments()[..4] == own.segments()[..4])
        }
        _ => false,
    }
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
    fn host_candidates_only_on_a_lan_we_share() {
        let given = addrs(&[
            "203.0.113.10:4000",
            "192.168.1.20:7000",
            "10.9.9.9:7000",
            "198.51.100.1:53",
            "203.0.113.10:7000",
        ]);
        let own_hosts = addrs(&["192.168.1.5:7000"]);
        // Another site: only the reflexive address, its own IP, and our own subnet.
        let other_site = usable(given.clone(), "198.51.100.77:5000".parse().ok(), &own_hosts);
        assert_eq!(
            other_site,
            addrs(&[
                "203.0.113.10:4000",
                "192.168.1.20:7000",
                "203.0.113.10:7000"
            ])
        );
        let far = usable(given.clone(), None, &addrs(&["172.16.0.2:7000"]));
        assert_eq!(far, addrs(&["203.0.113.10:4000", "203.0.113.10:7000"]));
        // Behind the same NAT (same public IP): every host candidate.
        let same_nat = usable(given.clone(), "203.0.113.10:5001".parse().ok(), &own_hosts);
        assert_eq!(same_nat, given);
        // One machine.
        let lo = usable(
            addrs(&["127.0.0.1:4000", "127.0.0.1:7000"]),
            None,
            &addrs(&["127.0.0.1:9000"]),
        );
        assert_eq!(lo.len(), 2);
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
    fn preserved_ports_are_the_host_ports_on_the_reflexive_ip() {
        let given = addrs(&[
            "203.0.113.10:61000",
            "10.1.0.11:40000",
            "172.17.0.1:40000",
            "[fd00::1]:40001",
            "10.1.0.11:41000",
        ]);
        assert_eq!(
            preserved_ports(&given),
            addrs(&["203.0.113.10:40000", "203.0.113.10:40001"]),
            "deduplicated, bounded, on the reflexive IP"
        );
        // The port the server saw is no guess; nothing on a private reflexive address.
        assert!(preserved_ports(&addrs(&["203.0.113.10:40000", "10.1.0.11:40000"])).is_empty());
        assert!(preserved_ports(&addrs(&["192.168.1.2:4000", "10.1.0.11:40000"])).is_empty());
        assert!(preserved_ports(&[]).is_empty());
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
