//! Link impairments seen end to end: MTU, bandwidth and queueing, loss, duplication.

mod common;

use std::time::Duration;

use burrow_sim::toy::ScriptedNode;
use burrow_sim::{LinkConfig, Network, Sim, Uplink};
use common::*;

fn pair(up: LinkConfig, seed: u64) -> (Sim, burrow_sim::HostId, burrow_sim::NodeId) {
    let mut net = Network::new();
    let a = net.add_public_host("a", S1);
    let b = net.add_public_host("b", S2);
    net.set_site_uplink(net.host_site(a), Uplink::new(2, up));
    let mut sim = Sim::new(net, seed);
    let rx = sim.add_node(b, 1, ScriptedNode::new());
    (sim, a, rx)
}

#[test]
fn oversized_datagrams_are_dropped() {
    let (mut sim, a, rx) = pair(LinkConfig::default(), 1);
    let dst = addr(S2, 1);
    let big = vec![0u8; 1473]; // 1473 + 28 = 1501 > 1500
    let ok = vec![0u8; 1472];
    sim.add_node(
        a,
        1,
        ScriptedNode::new()
            .send_at(ms(0), dst, &big)
            .send_at(ms(1), dst, &ok),
    );
    sim.run_for(secs(1)).unwrap();
    let got: Vec<usize> = sim
        .node::<ScriptedNode>(rx)
        .received()
        .iter()
        .map(|r| r.payload.len())
        .collect();
    assert_eq!(got, [1472]);
    assert_eq!(sim.stats().link_drops, 1);
}

#[test]
fn bandwidth_limits_goodput() {
    // 1 Mbit/s uplink with a 10-packet queue, offered 2 Mbit/s for 5 s (1250-byte packets
    // every 5 ms): about 100 packets/s get through.
    let up = LinkConfig::default().bandwidth(1_000_000, 12_500);
    let (mut sim, a, rx) = pair(up, 1);
    let node = ScriptedNode::new().send_series(ms(0), ms(5), 1000, addr(S2, 1), 1222);
    sim.add_node(a, 1, node);
    sim.run_for(secs(6)).unwrap();
    let got = sim.node::<ScriptedNode>(rx).received().len();
    assert!((500..=512).contains(&got), "delivered {got}");
    // Queueing delay is bounded by the queue: at most 10 packets x 10 ms behind.
    let r = sim.node::<ScriptedNode>(rx).received();
    let last = r.last().unwrap().at;
    assert!(last < secs(5) + ms(130), "last arrival {last:?}");
}

#[test]
fn loss_and_duplication_are_counted() {
    let up = LinkConfig::default().loss(0.2).duplicate(0.1);
    let (mut sim, a, rx) = pair(up, 9);
    let node = ScriptedNode::new().send_series(ms(0), ms(1), 1000, addr(S2, 1), 10);
    sim.add_node(a, 1, node);
    sim.run_for(secs(3)).unwrap();
    let got = sim.node::<ScriptedNode>(rx).received().len();
    // ~800 survive, ~10 % of those are doubled.
    assert!((820..=940).contains(&got), "received {got}");
    assert!((150..=250).contains(&sim.stats().link_drops));
}

#[test]
fn jitter_reorders() {
    let up = LinkConfig::new(ms(10)).jitter(ms(20));
    let (mut sim, a, rx) = pair(up, 4);
    let mut node = ScriptedNode::new();
    for i in 0..100u8 {
        node = node.send_at(Duration::from_millis(u64::from(i)), addr(S2, 1), &[i]);
    }
    sim.add_node(a, 1, node);
    sim.run_for(secs(1)).unwrap();
    let order: Vec<u8> = sim
        .node::<ScriptedNode>(rx)
        .received()
        .iter()
        .map(|r| r.payload[0])
        .collect();
    assert_eq!(order.len(), 100);
    assert!(order.windows(2).any(|w| w[0] > w[1]), "no reordering");
}
