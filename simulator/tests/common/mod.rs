//! Shared helpers for the simulator's integration tests.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use burrow_sim::toy::ScriptedNode;
use burrow_sim::{NodeId, Sim};

pub const NAT_IP: [u8; 4] = [203, 0, 113, 1];
pub const S1: [u8; 4] = [198, 51, 100, 1];
pub const S2: [u8; 4] = [198, 51, 100, 2];
pub const LAN_A: [u8; 4] = [192, 168, 1, 2];
pub const LAN_B: [u8; 4] = [192, 168, 1, 3];

pub fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Source addresses a scripted node has seen, in order of first arrival.
pub fn sources(sim: &Sim, node: NodeId) -> Vec<SocketAddr> {
    sim.node::<ScriptedNode>(node).sources()
}

/// Arrival times of everything a scripted node received.
pub fn arrivals(sim: &Sim, node: NodeId) -> Vec<Duration> {
    sim.node::<ScriptedNode>(node)
        .received()
        .iter()
        .map(|r| r.at)
        .collect()
}

/// The only source a scripted node has seen.
pub fn only_source(sim: &Sim, node: NodeId) -> SocketAddr {
    let s = sources(sim, node);
    assert_eq!(s.len(), 1, "expected one source, got {s:?}");
    s[0]
}
