//! The node's output contract (every drain ends in a timeout, transmits before what events
//! said), and what the runtimes used to do themselves: status from the node, STUN answers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::config::{Config, RendezvousConfig};
use crate::forward::{Action, ConnId, ListenerId};
use crate::rendezvous::ServerConfig;
use crate::tests::net::{self, Link, Machine};
use crate::tests::pair::key;
use crate::transmit::Transmit;

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

/// A node on the test network: its transmits go on the wire, everything else it outputs is
/// kept (shared, since outputs are not `Clone`), and its timeout is the one its last drain
/// ended in.
struct Driven {
    node: Node,
    timeout: Option<Instant>,
    outputs: VecDeque<Output>,
}

impl Machine for Driven {
    type Event = Rc<Output>;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.node.handle_input(now, from, bytes);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.node.handle_timeout(now);
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        loop {
            match self.node.poll_output() {
                Output::Transmit(t) => return Some(t),
                Output::Timeout(at) => {
                    self.timeout = Some(at);
                    return None;
                }
                other => self.outputs.push_back(other),
            }
        }
    }

    fn poll_event(&mut self, _now: Instant) -> Option<Rc<Output>> {
        self.outputs.pop_front().map(Rc::new)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timeout
    }
}

/// Nodes on a lossless network with no delay.
struct Net {
    net: net::Net<Driven>,
}

impl Deref for Net {
    type Target = net::Net<Driven>;

    fn deref(&self) -> &Self::Target {
        &self.net
    }
}

impl DerefMut for Net {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.net
    }
}

impl Net {
    fn new(now: Instant, nodes: Vec<(SocketAddr, Node)>) -> Self {
        let mut net = net::Net::new(now, Link::clean(Duration::ZERO), 0);
        for (addr, node) in nodes {
            let driven = Driven {
                node,
                timeout: None,
                outputs: VecDeque::new(),
            };
            net.add(driven, addr);
        }
        Self { net }
    }

    fn node(&mut self, i: usize) -> &mut Node {
        &mut self.hosts[i].m.node
    }

    /// Everything but transmits that node `i` has output.
    fn outputs(&self, i: usize) -> Vec<&Output> {
        self.hosts[i].events.iter().map(|o| &**o).collect()
    }

    fn answers(&self, i: usize) -> Vec<(ProbeId, SocketAddr, Option<SocketAddr>)> {
        self.outputs(i)
            .into_iter()
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
    let logs = net
        .outputs(0)
        .into_iter()
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

    let status = net.node(1).status();
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
    let registered_at_info = net
        .outputs(1)
        .into_iter()
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
    assert_eq!(net.node(0).status().peers.len(), 1);

    let now = net.now;
    let daemon = net.node(1);
    daemon.shutdown(now);
    let (outs, _) = drain(daemon);
    let daemon = net.hosts.pop().unwrap().m.node;
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::Transmit(t) if t.dst == server_addr)),
        "the server is told: {outs:?}"
    );
    assert!(daemon.status().peers.is_empty());
    let later = net.now + Duration::from_millis(10);
    for o in outs {
        if let Output::Transmit(t) = o {
            net.node(0).handle_input(later, daemon_addr, &t.payload);
        }
    }
    net.run_until(later + Duration::from_millis(10));
    assert!(net.node(0).status().peers.is_empty(), "no timeout needed");
}

#[test]
fn a_key_pinned_at_first_use_is_handed_out_to_be_saved() {
    let now = crate::tests::origin();
    let addrs = [
        addr("10.0.0.9:7000"),
        addr("10.0.0.1:1000"),
        addr("10.0.0.2:2000"),
    ];
    let clock = (
        now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let server = start(
        Config::server(key(9), ServerConfig::default()),
        addrs[0],
        9,
        now,
    );
    let daemon = |n: u8| {
        Config::daemon(
            key(n),
            RendezvousConfig::new(key(9).public_key(), addrs[0], "t"),
        )
    };
    let service = ServiceName::parse("/s").unwrap();
    let mut a = NodeConfig::new(daemon(1), addrs[1]);
    a.expose = vec![(service.clone(), "127.0.0.1:7".into())];
    let a = a
        .start::<()>(addrs[1], Vec::new(), [1; 32], clock, |_| None)
        .unwrap();
    let mut b = NodeConfig::new(daemon(2), addrs[2]);
    b.state_dir = Some("/state".into());
    let listener = Listener {
        service: service.clone(),
        socket: (),
        addr: None,
    };
    let b = b
        .start(addrs[2], vec![listener], [2; 32], clock, |_| None)
        .unwrap();
    let listener = b.listeners[0].0;
    let mut net = Net::new(
        now,
        vec![(addrs[0], server), (addrs[1], a.node), (addrs[2], b.node)],
    );
    net.run_until(now + Duration::from_secs(2));
    let at = net.now;
    net.node(2).handle_accept(at, listener).expect("accepted");
    net.run_until(at + Duration::from_secs(3));
    let saves: Vec<(String, String)> = net
        .outputs(2)
        .into_iter()
        .filter_map(|o| match o {
            Output::Save { path, contents } => Some((path.display().to_string(), contents.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(saves.len(), 1, "one new pin, one save");
    assert_eq!(saves[0].0, "/state/known_services");
    let pins = parse_known_services(&saves[0].1).unwrap();
    assert_eq!(pins.get(&service), Some(&key(1).public_key()));
    // A node without a state directory keeps its pins in memory only.
    assert!(
        !net.outputs(1)
            .iter()
            .any(|o| matches!(o, Output::Save { .. }))
    );
}

/// Two daemons and a server on the test network: `a` exposes `exposed` (to 127.0.0.1:7), `b`
/// listens for `connected`. Returns the net (server 0, a 1, b 2) and b's listener ids.
fn two_daemons(
    now: Instant,
    exposed: &[&str],
    connected: &[&str],
) -> (Net, Vec<(ServiceName, ListenerId)>) {
    let addrs = [
        addr("10.0.0.9:7000"),
        addr("10.0.0.1:1000"),
        addr("10.0.0.2:2000"),
    ];
    let clock = (
        now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let server = start(
        Config::server(key(9), ServerConfig::default()),
        addrs[0],
        9,
        now,
    );
    let daemon = |n: u8| {
        Config::daemon(
            key(n),
            RendezvousConfig::new(key(9).public_key(), addrs[0], "t"),
        )
    };
    let name = |s: &&str| ServiceName::parse(s).unwrap();
    let mut a = NodeConfig::new(daemon(1), addrs[1]);
    a.expose = exposed
        .iter()
        .map(|s| (name(s), "127.0.0.1:7".into()))
        .collect();
    let a = a
        .start::<()>(addrs[1], Vec::new(), [1; 32], clock, |_| None)
        .unwrap();
    let listeners = connected
        .iter()
        .map(|s| Listener {
            service: name(s),
            socket: (),
            addr: Some(addr("127.0.0.1:5000")),
        })
        .collect();
    let b = NodeConfig::new(daemon(2), addrs[2])
        .start(addrs[2], listeners, [2; 32], clock, |_| None)
        .unwrap();
    let ids = connected
        .iter()
        .map(name)
        .zip(b.listeners.iter().map(|(id, ())| *id))
        .collect();
    let net = Net::new(
        now,
        vec![(addrs[0], server), (addrs[1], a.node), (addrs[2], b.node)],
    );
    (net, ids)
}

/// Opens one tunnelled connection on each of b's listeners, the exposing side connecting
/// locally at once; returns b's connection ids in listener order and a's.
fn open_each(net: &mut Net, listeners: &[(ServiceName, ListenerId)]) -> (Vec<ConnId>, Vec<ConnId>) {
    let at = net.now;
    let b_conns: Vec<ConnId> = listeners
        .iter()
        .map(|(_, l)| net.node(2).handle_accept(at, *l).expect("accepted"))
        .collect();
    let mut a_conns = Vec::new();
    for _ in 0..20 {
        let until = net.now + Duration::from_millis(200);
        net.run_until(until);
        let connects: Vec<ConnId> = net.hosts[1]
            .events
            .iter()
            .filter_map(|o| match &**o {
                Output::Action(Action::Connect { conn, .. }) => Some(*conn),
                _ => None,
            })
            .filter(|c| !a_conns.contains(c))
            .collect();
        let now = net.now;
        for conn in connects {
            net.node(1).handle_connected(now, conn);
            a_conns.push(conn);
        }
        if a_conns.len() == listeners.len() {
            break;
        }
    }
    assert_eq!(
        a_conns.len(),
        listeners.len(),
        "every connection got through"
    );
    // In listener order, as the exposing side's status names their services.
    let status = net.node(1).status();
    let a_conns = listeners
        .iter()
        .map(|(name, _)| {
            let c = status.conns.iter().find(|c| c.service == name.as_str());
            ConnId(c.expect("one connection per service").conn)
        })
        .collect();
    (b_conns, a_conns)
}

fn closed(net: &Net, i: usize) -> Vec<ConnId> {
    net.outputs(i)
        .into_iter()
        .filter_map(|o| match o {
            Output::Action(Action::Close { conn, abort, .. }) => {
                assert!(abort, "a removed service's connections are reset");
                Some(*conn)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn plan_leaves_unchanged_services_and_replaces_changed_ones() {
    let now = crate::tests::origin();
    let (mut net, _) = two_daemons(now, &["/keep", "/moved", "/gone"], &[]);
    let a = net.node(1);
    let name = |s: &str| ServiceName::parse(s).unwrap();
    let wanted = Services {
        expose: vec![
            (name("/keep"), "127.0.0.1:7".into()),
            (name("/moved"), "127.0.0.1:8".into()),
            (name("/new"), "unix:/run/new.sock".into()),
        ],
        connect: vec![(name("/far"), addr("127.0.0.1:0"))],
        connect_udp: Vec::new(),
        pins: vec![(name("/far"), key(5).public_key())],
        options: Vec::new(),
        routing: None,
    };
    let plan = a.plan(&wanted);
    assert_eq!(plan.remove, vec![name("/gone"), name("/moved")]);
    assert_eq!(
        plan.expose,
        vec![
            (name("/moved"), "127.0.0.1:8".into()),
            (name("/new"), "unix:/run/new.sock".into())
        ]
    );
    assert_eq!(plan.connect, vec![(name("/far"), addr("127.0.0.1:0"))]);
    assert_eq!(plan.unchanged, vec![name("/keep")]);
    assert_eq!(plan.pins, vec![(name("/far"), key(5).public_key())]);
    assert!(
        a.plan(&a.services()).is_empty(),
        "the running set plans nothing"
    );

    let bound = bind_listeners(&plan.connect, |_| Ok(()), |()| Ok(addr("127.0.0.1:5002"))).unwrap();
    let applied = a.apply(now, plan, bound);
    assert_eq!(
        applied.summary.to_string(),
        "2 added (/new, /far), 1 changed (/moved), 1 removed (/gone), 1 unchanged"
    );
    assert!(a.plan(&wanted).is_empty(), "applied: nothing left to do");
}

#[test]
fn removing_a_service_resets_its_connections_and_spares_the_others() {
    let now = crate::tests::origin();
    let (mut net, listeners) = two_daemons(now, &["/keep", "/gone"], &["/keep", "/gone"]);
    net.run_until(now + Duration::from_secs(2));
    let (b_conns, a_conns) = open_each(&mut net, &listeners);
    assert!(closed(&net, 1).is_empty() && closed(&net, 2).is_empty());

    // The connecting side drops /gone and adds /new, as a reloaded config would.
    let name = |s: &str| ServiceName::parse(s).unwrap();
    let wanted = Services {
        expose: Vec::new(),
        connect: vec![
            (name("/keep"), addr("127.0.0.1:5000")),
            (name("/new"), addr("127.0.0.1:5001")),
        ],
        connect_udp: Vec::new(),
        pins: Vec::new(),
        options: Vec::new(),
        routing: None,
    };
    let at = net.now;
    let b = net.node(2);
    let plan = b.plan(&wanted);
    let bound = bind_listeners(&plan.connect, |_| Ok(()), |()| Ok(addr("127.0.0.1:5001"))).unwrap();
    let applied = b.apply(at, plan, bound);
    assert_eq!(applied.closed, vec![listeners[1].1]);
    assert_eq!(applied.started.len(), 1);
    assert_eq!(
        applied.summary.to_string(),
        "1 added (/new), 1 removed (/gone), 1 unchanged"
    );
    let new_listener = applied.started[0].0;
    assert!(
        !listeners.iter().any(|(_, l)| *l == new_listener),
        "ids are not reused"
    );
    assert_eq!(
        b.handle_accept(at, listeners[1].1),
        None,
        "the old listener is gone"
    );
    net.run_until(at + Duration::from_secs(1));
    assert_eq!(
        closed(&net, 2),
        vec![b_conns[1]],
        "only /gone's connection resets"
    );
    assert_eq!(
        closed(&net, 1),
        vec![a_conns[1]],
        "and its peer's, through the stream reset"
    );
    let status = net.node(2).status();
    let services: Vec<&str> = status.services.iter().map(|s| s.name.as_str()).collect();
    assert!(!services.contains(&"/gone"), "{services:?}");

    // The exposing side drops /keep by name: its incoming connection resets at once.
    let at = net.now;
    let removed = net.node(1).remove_service(at, &name("/keep"));
    assert_eq!(
        removed,
        Some(Removed {
            exposed: true,
            listener: None
        })
    );
    assert_eq!(net.node(1).remove_service(at, &name("/keep")), None);
    net.run_until(at + Duration::from_secs(1));
    assert_eq!(closed(&net, 1), vec![a_conns[1], a_conns[0]]);
    assert_eq!(closed(&net, 2), vec![b_conns[1], b_conns[0]]);

    // Adding one by name, and again, which is refused.
    let at = net.now;
    let a = net.node(1);
    a.add_expose(at, name("/keep"), "127.0.0.1:9".into())
        .unwrap();
    assert_eq!(
        a.add_expose(at, name("/keep"), "127.0.0.1:9".into()),
        Err(AddError::Exists(name("/keep")))
    );
    assert_eq!(
        a.services().expose,
        vec![
            (name("/gone"), "127.0.0.1:7".to_string()),
            (name("/keep"), "127.0.0.1:9".to_string())
        ]
    );
}

/// A reload that only changes how a service is forwarded (TCP to UDP, a PROXY protocol
/// version) restarts it with the new options; the same options again plan nothing.
#[test]
fn plan_restarts_a_service_whose_forwarding_changed() {
    use crate::forward::{ExposeOptions, Protocol, ProxyVersion};
    let now = crate::tests::origin();
    let (mut net, _) = two_daemons(now, &["/keep", "/web"], &[]);
    let a = net.node(1);
    let name = |s: &str| ServiceName::parse(s).unwrap();
    let mut wanted = a.services();
    let proxied = ExposeOptions {
        protocol: Protocol::Tcp,
        proxy_protocol: Some(ProxyVersion::V2),
        ..ExposeOptions::default()
    };
    wanted.options = vec![
        (name("/keep"), ExposeOptions::udp()),
        (name("/web"), proxied),
    ];
    let plan = a.plan(&wanted);
    assert_eq!(plan.remove, vec![name("/keep"), name("/web")]);
    assert_eq!(
        plan.options,
        vec![
            (name("/keep"), ExposeOptions::udp()),
            (name("/web"), proxied)
        ]
    );
    let applied = a.apply(now, plan, Vec::<Listener<()>>::new());
    assert_eq!(applied.summary.changed, vec!["/keep", "/web"]);
    assert!(a.plan(&wanted).is_empty(), "applied: nothing left to do");
    let status = a.status();
    let targets: Vec<&str> = status.exposed.iter().map(|(_, t)| t.as_str()).collect();
    assert!(targets[0].ends_with("(udp)"), "{targets:?}");
    assert!(targets[1].ends_with("(proxy protocol v2)"), "{targets:?}");
}

mod publish;
mod publish_setup;
mod publish_sni;
mod publish_udp;

/// UDP connects across a reload: one kept (not closed), one removed (its socket closed), one
/// moved to another port (changed), one added; the new running set then plans nothing.
#[test]
fn plan_and_apply_udp_connects() {
    let now = crate::tests::origin();
    let (mut net, _) = two_daemons(now, &[], &[]);
    let b = net.node(2);
    let name = |s: &str| ServiceName::parse(s).unwrap();
    let start = [
        ("/keep", "127.0.0.1:5300"),
        ("/gone", "127.0.0.1:5301"),
        ("/moved", "127.0.0.1:5302"),
    ];
    let bound = start.iter().map(|(n, a)| Listener {
        service: name(n),
        socket: (),
        addr: Some(addr(a)),
    });
    let ids = b.listen_udp(bound.collect());
    let mut wanted = b.services();
    assert_eq!(wanted.connect_udp.len(), 3);
    wanted.connect_udp = vec![
        (name("/keep"), addr("127.0.0.1:5300")),
        (name("/moved"), addr("127.0.0.1:5312")),
        (name("/new"), addr("127.0.0.1:0")),
    ];
    let plan = b.plan(&wanted);
    assert_eq!(plan.remove_udp, vec![name("/gone"), name("/moved")]);
    assert_eq!(
        plan.connect_udp,
        vec![
            (name("/moved"), addr("127.0.0.1:5312")),
            (name("/new"), addr("127.0.0.1:0"))
        ]
    );
    assert_eq!(plan.unchanged, vec![name("/keep")]);
    let remove = plan.remove_udp.clone();
    // The OS gives port 0 the port 5320.
    let got = |a: &SocketAddr| {
        Ok(if a.port() == 0 {
            addr("127.0.0.1:5320")
        } else {
            *a
        })
    };
    let udp_bound = bind_listeners(&plan.connect_udp, Ok, got).unwrap();
    let mut applied = b.apply(now, plan, Vec::<Listener<()>>::new());
    let udp = b.apply_udp(now, &remove, udp_bound, &mut applied.summary);
    assert_eq!(udp.closed, vec![ids[1].0, ids[2].0]);
    assert_eq!(udp.started.len(), 2);
    assert_eq!(
        applied.summary.to_string(),
        "1 added (/new), 1 changed (/moved), 1 removed (/gone), 1 unchanged"
    );
    assert!(b.plan(&wanted).is_empty(), "applied: nothing left to do");
    // A name going from UDP to TCP is changed, not added and removed.
    let mut tcp = wanted.clone();
    tcp.connect_udp.retain(|(n, _)| *n != name("/new"));
    tcp.connect.push((name("/new"), addr("127.0.0.1:5400")));
    let plan = b.plan(&tcp);
    let remove = plan.remove_udp.clone();
    assert_eq!(remove, vec![name("/new")]);
    let bound = bind_listeners(&plan.connect, Ok, |a: &SocketAddr| Ok(*a)).unwrap();
    let mut applied = b.apply(now, plan, bound);
    let udp = b.apply_udp(
        now,
        &remove,
        Vec::<Listener<()>>::new(),
        &mut applied.summary,
    );
    assert_eq!(udp.closed.len(), 1);
    assert_eq!(
        applied.summary.to_string(),
        "0 added, 1 changed (/new), 0 removed, 2 unchanged"
    );
}
