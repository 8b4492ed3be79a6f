//! A daemon's port mapping through the endpoint: the gateway's answer (PCP, or NAT-PMP from a
//! router that speaks only that) becomes a candidate the server hands out, a silent gateway
//! is given up, a mapping behind a second NAT is not announced, and a stopping daemon
//! removes its mapping.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::meet::{A, Net, SERVER};
use crate::config::PortMappingConfig;
use crate::event::Event;
use crate::portmap::{Failure, Protocol};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);

fn gateway() -> SocketAddr {
    SocketAddr::from((GATEWAY, 5351))
}

/// Daemon A asks the gateway; B does not.
fn net() -> Net {
    Net::with(|i, c| {
        if i == A {
            c.rendezvous.as_mut().expect("a daemon").port_mapping = Some(PortMappingConfig {
                gateway: GATEWAY,
                client: Some(Ipv4Addr::new(10, 0, 0, 1)),
                internal_port: 1000,
                upnp: false,
            });
        }
    })
}

/// A's requests to the gateway so far, taken off the network.
fn requests(net: &mut Net) -> Vec<Vec<u8>> {
    net.unrouted
        .drain(..)
        .filter(|(from, to, _)| *from == A && *to == gateway())
        .map(|(_, _, b)| b.to_vec())
        .collect()
}

/// Answers every request A sent so far as a router mapping `external` would: PCP MAP
/// requests when `pcp`, else with NAT-PMP's "unsupported version"; NAT-PMP requests with the
/// address and the mapping.
fn answer(net: &mut Net, external: SocketAddrV4, pcp: bool) -> Vec<Vec<u8>> {
    let asked = requests(net);
    for req in &asked {
        let reply = match (req[0], req[1]) {
            (2, _) if pcp => {
                let mut r = vec![2, 0x81, 0, 0];
                r.extend_from_slice(&req[4..8]);
                r.extend_from_slice(&[0; 16]);
                r.extend_from_slice(&req[24..42]);
                r.extend_from_slice(&external.port().to_be_bytes());
                r.extend_from_slice(&external.ip().to_ipv6_mapped().octets());
                r
            }
            (2, _) => vec![0, 129, 0, 1, 0, 0, 0, 5],
            (_, 0) => {
                let mut r = vec![0, 128, 0, 0, 0, 0, 0, 5];
                r.extend_from_slice(&external.ip().octets());
                r
            }
            _ => {
                let mut r = vec![0, 129, 0, 0, 0, 0, 0, 5];
                r.extend_from_slice(&req[4..6]);
                r.extend_from_slice(&external.port().to_be_bytes());
                r.extend_from_slice(&req[8..12]);
                r
            }
        };
        net.send(A, gateway(), reply);
    }
    asked
}

#[test]
fn a_mapped_port_is_announced_as_a_candidate_and_removed_on_stop() {
    let mut net = net();
    net.run_for(Duration::from_millis(100));
    // The daemon has no NAT in this network: the server sees 10.0.0.1:1000, so a mapping on
    // 10.0.0.1 is one the Internet reaches.
    let external = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 31_000);
    let asked = answer(&mut net, external, true);
    assert_eq!(asked.len(), 1, "one PCP MAP request");
    assert_eq!(asked[0][..2], [2, 1]);
    net.run_for(Duration::from_secs(2));
    assert!(net.registered(A));
    assert!(
        net.events[A].contains(&Event::PortMapped {
            external,
            protocol: Protocol::Pcp,
            announced: true
        }),
        "{:?}",
        net.events[A]
    );
    let key = net.eps[A].public_key();
    let candidates = net.eps[SERVER].registered_candidates(&key);
    assert!(
        candidates.contains(&SocketAddr::V4(external)),
        "{candidates:?}"
    );
    // Stop: a delete (lifetime 0) of the same mapping (its nonce) goes to the gateway.
    net.unrouted.clear();
    let now = net.now;
    net.eps[A].shutdown(now);
    net.run_for(Duration::from_millis(1));
    let delete = requests(&mut net);
    assert_eq!(delete.len(), 1, "{delete:?}");
    assert_eq!(delete[0][..8], [2, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(delete[0][24..36], asked[0][24..36]);
}

#[test]
fn a_nat_pmp_only_router_maps_after_refusing_pcp() {
    let mut net = net();
    net.run_for(Duration::from_millis(100));
    let external = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 31_000);
    // PCP is refused with "unsupported version"; NAT-PMP's two requests follow at once.
    assert_eq!(answer(&mut net, external, false).len(), 1);
    net.run_for(Duration::from_millis(50));
    let asked = answer(&mut net, external, false);
    assert_eq!(asked.len(), 2, "the address and the mapping: {asked:?}");
    net.run_for(Duration::from_secs(2));
    assert!(
        net.events[A].contains(&Event::PortMapped {
            external,
            protocol: Protocol::NatPmp,
            announced: true
        }),
        "{:?}",
        net.events[A]
    );
    net.unrouted.clear();
    let now = net.now;
    net.eps[A].shutdown(now);
    net.run_for(Duration::from_millis(1));
    assert_eq!(
        requests(&mut net),
        vec![vec![0, 1, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0, 0]],
        "NAT-PMP's delete: lifetime 0, suggested port 0"
    );
}

#[test]
fn a_silent_gateway_is_given_up_and_nothing_is_announced() {
    let mut net = net();
    net.run_for(Duration::from_secs(10));
    assert!(net.registered(A));
    assert!(
        net.events[A].contains(&Event::PortMappingFailed {
            reason: Failure::NoAnswer
        }),
        "{:?}",
        net.events[A]
    );
    let sent = net
        .unrouted
        .iter()
        .filter(|(_, to, _)| *to == gateway())
        .count();
    assert_eq!(
        sent, 13,
        "3 PCP requests, 5 attempts of NAT-PMP's 2, then silence"
    );
    let key = net.eps[A].public_key();
    assert_eq!(net.eps[SERVER].registered_candidates(&key).len(), 1);
}

#[test]
fn a_mapping_behind_a_second_nat_is_not_announced() {
    let mut net = net();
    net.run_for(Duration::from_millis(100));
    let external = SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 7), 31_000);
    answer(&mut net, external, true);
    net.run_for(Duration::from_secs(2));
    assert!(
        net.events[A].contains(&Event::PortMapped {
            external,
            protocol: Protocol::Pcp,
            announced: false
        }),
        "{:?}",
        net.events[A]
    );
    let key = net.eps[A].public_key();
    let candidates = net.eps[SERVER].registered_candidates(&key);
    assert!(
        !candidates.contains(&SocketAddr::V4(external)),
        "{candidates:?}"
    );
}

/// Issue 19: with UPnP-IGD on, a gateway silent to PCP and NAT-PMP makes it UPnP's turn (the
/// driver waits before that, and their failure is not reported: UPnP's outcome is); a
/// mapping UPnP reports is announced like theirs, and a stopping daemon turns it off.
#[test]
fn upnp_is_asked_after_pcp_and_nat_pmp_and_its_mapping_is_announced() {
    use crate::upnp::{Turn, UpnpEvent};
    let mut net = Net::with(|i, c| {
        if i == A {
            c.rendezvous.as_mut().expect("a daemon").port_mapping = Some(PortMappingConfig {
                gateway: GATEWAY,
                client: Some(Ipv4Addr::new(10, 0, 0, 1)),
                internal_port: 1000,
                upnp: true,
            });
        }
    });
    net.run_for(Duration::from_millis(100));
    let now = net.now;
    assert_eq!(net.eps[A].upnp(now, None), Turn::Wait, "PCP is being asked");
    // A report before UPnP's turn changes nothing.
    let external = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 31_000);
    net.eps[A].upnp(now, Some(UpnpEvent::Mapped(external)));
    net.run_for(Duration::from_secs(10));
    assert!(net.registered(A));
    assert!(
        !net.events[A].iter().any(|e| matches!(
            e,
            Event::PortMappingFailed { .. } | Event::PortMapped { .. }
        )),
        "{:?}",
        net.events[A]
    );
    let now = net.now;
    assert_eq!(net.eps[A].upnp(now, None), Turn::Ask);
    assert_eq!(
        net.eps[A].upnp(now, Some(UpnpEvent::Mapped(external))),
        Turn::Ask
    );
    net.run_for(Duration::from_secs(2));
    assert!(
        net.events[A].contains(&Event::PortMapped {
            external,
            protocol: Protocol::Upnp,
            announced: true
        }),
        "{:?}",
        net.events[A]
    );
    let key = net.eps[A].public_key();
    let candidates = net.eps[SERVER].registered_candidates(&key);
    assert!(
        candidates.contains(&SocketAddr::V4(external)),
        "{candidates:?}"
    );
    // UPnP's failure is reported, and the candidate withdrawn.
    let now = net.now;
    net.eps[A].upnp(now, Some(UpnpEvent::Failed(Failure::NoGateway)));
    net.run_for(Duration::from_secs(2));
    assert!(net.events[A].contains(&Event::PortMappingFailed {
        reason: Failure::NoGateway
    }));
    let candidates = net.eps[SERVER].registered_candidates(&key);
    assert!(
        !candidates.contains(&SocketAddr::V4(external)),
        "{candidates:?}"
    );
    let now = net.now;
    net.eps[A].shutdown(now);
    assert_eq!(net.eps[A].upnp(now, None), Turn::Off);
}
