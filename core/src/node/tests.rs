//! The node's output contract (every drain ends in a timeout, transmits before what events
//! said), and what the runtimes used to do themselves: status from the node, STUN answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::config::{Config, RendezvousConfig};
use crate::rendezvous::ServerConfig;
use crate::tests::pair::key;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn start(config: Config, udp_addr: SocketAddr, seed: u8, now: Instant) -> Node {
    let config = NodeConfig::new(config, udp_addr);
    let clock = (
        now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let started = config
        .start::<()>(udp_addr, Vec::new(), [seed; 32], clock, |_| None)
        .unwrap();
    started.node
}

/// Everything one drain gives, up to and including its timeout.
fn drain(node: &mut Node) -> (Vec<Output>, Instant) {
    let mut outs = Vec::new();
    loop {
        match node.poll_output() {
            Output::Timeout(at) => return (outs, at),
            out => outs.push(out),
        }
    }
}

/// Nodes on a lossless network with no delay, driven until `until` in virtual time.
struct Net {
    nodes: Vec<(SocketAddr, Node)>,
    outputs: Vec<Vec<Output>>,
    now: Instant,
}

impl Net {
    fn new(now: Instant, nodes: Vec<(SocketAddr, Node)>) -> Self {
        let outputs = nodes.iter().map(|_| Vec::new()).collect();
        Self {
            nodes,
            outputs,
            now,
        }
    }

    fn run_until(&mut self, until: Instant) {
        loop {
            let mut next = until;
            let mut wire = Vec::new();
            for (i, (from, node)) in self.nodes.iter_mut().enumerate() {
                let (outs, at) = drain(node);
                for out in outs {
                    match out {
                        Output::Transmit(t) => wire.push((*from, t)),
                        other => self.outputs[i].push(other),
                    }
                }
                next = next.min(at);
            }
            if !wire.is_empty() {
                for (from, t) in wire {
                    if let Some((_, node)) = self.nodes.iter_mut().find(|(a, _)| *a == t.dst) {
                        node.handle_input(self.now, from, &t.payload);
                    }
                }
                continue;
            }
            if next >= until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            for (_, node) in &mut self.nodes {
                node.handle_timeout(self.now);
            }
        }
    }

    fn answers(&self, i: usize) -> Vec<(ProbeId, SocketAddr, Option<SocketAddr>)> {
        self.outputs[i]
            .iter()
            .filter_map(|o| match *o {
                Output::StunResult {
                    probe,
                    server,
                    mapped,
                } => Some((probe, server, mapped)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_drain_ends_in_a_timeout_after_the_transmits() {
    let now = crate::tests::origin();
    let mut node = start(Config::new(key(1)), addr("10.0.0.1:1000"), 1, now);
    let (outs, at) = drain(&mut node);
    assert!(outs.is_empty(), "a plain peer has nothing to say: {outs:?}");
    assert!(at > now, "the deadline is ahead of the last input");

    node.stun_probe(now, addr("10.0.0.2:3478"));
    let first = node.poll_output();
    assert!(
        matches!(&first, Output::Transmit(t) if t.dst == addr("10.0.0.2:3478")),
        "{first:?}"
    );
    let (rest, at) = drain(&mut node);
    assert!(rest.is_empty(), "{rest:?}");
    assert!(at > now && at <= now + Duration::from_secs(1), "{at:?}");
    // Asking again after the drain ended gives the same timeout, and nothing else.
    assert!(matches!(node.poll_output(), Output::Timeout(t) if t == at));
}

#[test]
fn stun_probes_are_answered_with_their_ids() {
    let now = crate::tests::origin();
    let (a_addr, b_addr) = (addr("10.0.0.1:1000"), addr("10.0.0.2:3478"));
    let mut b_config = Config::new(key(2));
    b_config.answer_stun = true;
    let mut a = start(Config::new(key(1)), a_addr, 1, now);
    let first = a.stun_probe(now, b_addr);
    let second = a.stun_probe(now, b_addr);
    assert_ne!(first, second);
    let b = start(b_config, b_addr, 2, now);
    let mut net = Net::new(now, vec![(a_addr, a), (b_addr, b)]);
    net.run_until(now + Duration::from_secs(1));
    assert_eq!(
        net.answers(0),
        vec![
            (first, b_addr, Some(a_addr)),
            (second, b_addr, Some(a_addr))
        ]
    );
    let logs = net.outputs[0]
        .iter()
        .filter(|o| matches!(o, Output::Log(_)));
    assert_eq!(
        logs.count(),
        0,
        "a STUN outcome is an answer, not a log line"
    );
}

#[test]
fn stun_probes_to_a_silent_server_are_answered_none() {
    let now = crate::tests::origin();
    let (a_addr, silent) = (addr("10.0.0.1:1000"), addr("10.0.0.9:3478"));
    let mut a = start(Config::new(key(1)), a_addr, 1, now);
    let probe = a.stun_probe(now, silent);
    let mut net = Net::new(now, vec![(a_addr, a)]);
    net.run_until(now + Duration::from_secs(5));
    assert_eq!(net.answers(0), vec![], "still retrying");
    net.run_until(now + Duration::from_secs(20));
    assert_eq!(net.answers(0), vec![(probe, silent, None)]);
}

#[test]
fn status_comes_from_the_node_and_registration_is_logged_once() {
    let now = crate::tests::origin();
    let (server_addr, daemon_addr) = (addr("10.0.0.9:7000"), addr("10.0.0.1:1000"));
    let server = start(
        Config::server(key(9), ServerConfig::default()),
        server_addr,
        9,
        now,
    );
    let rendezvous = RendezvousConfig::new(key(9).public_key(), server_addr, "t");
    let daemon = start(Config::daemon(key(1), rendezvous), daemon_addr, 1, now);
    let mut net = Net::new(now, vec![(server_addr, server), (daemon_addr, daemon)]);
    net.run_until(now + Duration::from_secs(2));

    let status = net.nodes[1].1.status();
    assert_eq!(status.udp_addr, Some(daemon_addr));
    assert_eq!(status.public_key, key(1).public_key().to_string());
    assert_eq!(status.registered, Some(daemon_addr));
    assert_eq!(status.registration_error, None);
    let server_key = key(9).public_key().to_string();
    assert!(
        status
            .peers
            .iter()
            .any(|p| p.key == server_key && p.connected),
        "{status:?}"
    );

    // Renewals later on are not news: one registration line at Info.
    net.run_until(now + Duration::from_secs(3600));
    let registered_at_info = net.outputs[1]
        .iter()
        .filter(|o| {
            matches!(o, Output::Log(l)
                if l.level() == Level::Info && matches!(l.event(), Event::Registered { .. }))
        })
        .count();
    assert_eq!(registered_at_info, 1);
}

#[test]
fn shutdown_tells_the_server_at_once() {
    let now = crate::tests::origin();
    let (server_addr, daemon_addr) = (addr("10.0.0.9:7000"), addr("10.0.0.1:1000"));
    let server = start(
        Config::server(key(9), ServerConfig::default()),
        server_addr,
        9,
        now,
    );
    let rendezvous = RendezvousConfig::new(key(9).public_key(), server_addr, "t");
    let daemon = start(Config::daemon(key(1), rendezvous), daemon_addr, 1, now);
    let mut net = Net::new(now, vec![(server_addr, server), (daemon_addr, daemon)]);
    net.run_until(now + Duration::from_secs(2));
    assert_eq!(net.nodes[0].1.status().peers.len(), 1);

    let (_, daemon) = &mut net.nodes[1];
    daemon.shutdown(net.now);
    let (outs, _) = drain(daemon);
    let (_, daemon) = net.nodes.pop().unwrap();
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::Transmit(t) if t.dst == server_addr)),
        "the server is told: {outs:?}"
    );
    assert!(daemon.status().peers.is_empty());
    let later = net.now + Duration::from_millis(10);
    for o in outs {
        if let Output::Transmit(t) = o {
            net.nodes[0].1.handle_input(later, daemon_addr, &t.payload);
        }
    }
    net.run_until(later + Duration::from_millis(10));
    assert!(
        net.nodes[0].1.status().peers.is_empty(),
        "no timeout needed"
    );
}
