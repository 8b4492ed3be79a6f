//! Which host candidates the server passes on. A daemon announces its own LAN addresses so a
//! peer behind the same NAT can reach it directly; an attacker holding a token could announce
//! anyone's address instead and have the daemons it is introduced to send punch packets there
//! (a reflection). The server only passes on addresses that can be the announcing daemon's own,
//! judged from the address its packets come from (its reflexive address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether `candidate` can be an address of the daemon whose packets come from `reflexive`:
/// its reflexive IP itself (no NAT), a private or carrier-grade-shared IPv4 address (a LAN
/// behind a NAT), an IPv6 unique-local address, or an IPv6 address in the reflexive address's
/// /64. Loopback only when the daemon itself talks to the server over loopback. Never port 0,
/// an unspecified, multicast, broadcast or link-local address, nor another public address.
pub(crate) fn plausible_host(candidate: SocketAddr, reflexive: SocketAddr) -> bool {
    if candidate.port() == 0 {
        return false;
    }
    let (ip, from) = (candidate.ip(), reflexive.ip());
    if ip == from {
        return true;
    }
    if ip.is_loopback() {
        return from.is_loopback();
    }
    match (ip, from) {
        (IpAddr::V4(ip), _) => lan_v4(ip),
        (IpAddr::V6(ip), IpAddr::V6(from)) => unique_local(ip) || same_64(ip, from),
        (IpAddr::V6(ip), IpAddr::V4(_)) => unique_local(ip),
    }
}

/// RFC 1918 private space and RFC 6598 shared (carrier-grade NAT) space.
fn lan_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private() || (a == 100 && (64..128).contains(&b))
}

/// fc00::/7 (RFC 4193).
fn unique_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xfe00 == 0xfc00
}

fn same_64(a: Ipv6Addr, b: Ipv6Addr) -> bool {
    a.segments()[..4] == b.segments()[..4] && !a.is_multicast() && !a.is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(candidate: &str, reflexive: &str) -> bool {
        plausible_host(candidate.parse().unwrap(), reflexive.parse().unwrap())
    }

    #[test]
    fn lan_and_own_addresses_pass() {
        let from = "203.0.113.7:40000";
        assert!(ok("192.168.1.20:7000", from));
        assert!(ok("10.1.2.3:7000", from));
        assert!(ok("172.20.0.5:7000", from));
        assert!(ok("100.64.3.2:7000", from), "behind a carrier NAT");
        assert!(ok("203.0.113.7:7000", from), "no NAT: its own address");
        assert!(ok("127.0.0.1:7000", "127.0.0.1:5000"), "all on one machine");
        assert!(ok("[fd00::5]:7000", from));
        assert!(ok("[2001:db8:1:2::9]:7000", "[2001:db8:1:2::1]:40000"));
    }

    #[test]
    fn third_party_and_special_addresses_are_dropped() {
        let from = "203.0.113.7:40000";
        assert!(
            !ok("198.51.100.9:53", from),
            "someone else's public address"
        );
        assert!(!ok("127.0.0.1:22", from), "the server's own loopback");
        assert!(!ok("0.0.0.0:7000", from));
        assert!(!ok("255.255.255.255:7000", from));
        assert!(!ok("224.0.0.1:7000", from));
        assert!(!ok("169.254.1.1:7000", from));
        assert!(!ok("192.168.1.20:0", from));
        assert!(!ok("[2001:db8:9::1]:7000", "[2001:db8:1:2::1]:40000"));
        assert!(
            !ok("[2001:db8:1:2::9]:7000", from),
            "global IPv6 seen over IPv4"
        );
        assert!(!ok("[ff02::1]:7000", "[ff02::2]:40000"));
    }
}
