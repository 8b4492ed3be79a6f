//! A daemon's port mapping through the endpoint: the gateway's answer becomes a candidate the
//! server hands out, a silent gateway is given up, a mapping behind a second NAT is not
//! announced, and a stopping daemon removes its mapping.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::meet::{A, Net, SERVER};
use crate::config::PortMappingConfig;
use crate::event::Event;
use crate::portmap::Failure;

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
                internal_port: 1000,
            });
        }
    })
}

/// Answers every NAT-PMP request A sent so far as a router mapping `external`.
fn answer(net: &mut Net, external: SocketAddrV4) -> Vec<Vec<u8>> {
    let asked: Vec<Vec<u8>> = net
        .unrouted
        .drain(..)
        .filter(|(from, to, _)| *from == A && *to == gateway())
        .map(|(_, _, b)| b.to_vec())
        .collect();
    for req in &asked {
        let reply = match req[1] {
            0 => {
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
    let asked = answer(&mut net, external);
    assert_eq!(asked.len(), 2, "the address and the mapping");
    net.run_for(Duration::from_secs(2));
    assert!(net.registered(A));
    assert!(
        net.events[A].contains(&Event::PortMapped {
            external,
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
    // Stop: a delete (lifetime 0) for our port goes to the gateway.
    net.unrouted.clear();
    let now = net.now;
    net.eps[A].shutdown(now);
    net.run_for(Duration::from_millis(1));
    let delete: Vec<_> = net
        .unrouted
        .iter()
        .filter(|(_, to, _)| *to == gateway())
        .map(|(_, _, b)| b.to_vec())
        .collect();
    assert_eq!(
        delete,
        vec![vec![0, 1, 0, 0, 0x03, 0xe8, 0x03, 0xe8, 0, 0, 0, 0]]
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
    assert_eq!(sent, 10, "5 attempts of 2 requests, then silence");
    let key = net.eps[A].public_key();
    assert_eq!(net.eps[SERVER].registered_candidates(&key).len(), 1);
}

#[test]
fn a_mapping_behind_a_second_nat_is_not_announced() {
    let mut net = net();
    net.run_for(Duration::from_millis(100));
    let external = SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 7), 31_000);
    answer(&mut net, external);
    net.run_for(Duration::from_secs(2));
    assert!(
        net.events[A].contains(&Event::PortMapped {
            external,
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
