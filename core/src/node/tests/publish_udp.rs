//! A UDP service published on the server, through two nodes: the server's UDP socket on the
//! public port, each public source one flow to the daemon over the server's session, the
//! service's answers back to the source they belong to, and the socket closed when the
//! daemon stops. A port of the range holds one publication, TCP or UDP.

use super::publish_setup::{run, server_and_daemon_with};
use super::*;
use crate::forward::udp::{UdpAction, UdpListenerId};
use crate::forward::{ExposeOptions, Protocol, PublishPort};
use crate::rendezvous::PublishConfig;

/// The server (host 0) publishing ports 20000-20010, and a daemon (host 1) exposing the UDP
/// service `/dns` (published on `dns_port`) and the TCP service `/web` (on 20001).
fn server_and_daemon(now: Instant, dns_port: u16) -> Net {
    let publish = PublishConfig {
        ports: Some((20000, 20010)),
        max_per_token: 4,
        sni: None,
    };
    let dns = ExposeOptions {
        protocol: Protocol::Udp,
        publish: Some(PublishPort::Port(dns_port)),
        ..ExposeOptions::default()
    };
    let web = ExposeOptions {
        publish: Some(PublishPort::Port(20001)),
        ..ExposeOptions::default()
    };
    server_and_daemon_with(
        now,
        publish,
        &[("/dns", "127.0.0.1:53", dns), ("/web", "127.0.0.1:80", web)],
    )
}

/// The UDP sockets node 0 (the server) was asked to bind.
fn udp_listens(net: &Net) -> Vec<(UdpListenerId, SocketAddr)> {
    net.outputs(0)
        .into_iter()
        .filter_map(|o| match o {
            Output::ListenUdp { listener, addr } => Some((*listener, *addr)),
            _ => None,
        })
        .collect()
}

/// The UDP actions node `i` was given, in order.
fn udp_actions(net: &Net, i: usize) -> Vec<UdpAction> {
    net.outputs(i)
        .into_iter()
        .filter_map(|o| match o {
            Output::Udp(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// The server binds the published UDP port, which the daemon hears only then.
fn bound(net: &mut Net) -> (UdpListenerId, SocketAddr) {
    run(net, Duration::from_secs(2));
    let listens = udp_listens(net);
    assert_eq!(listens.len(), 1, "one public UDP socket: {listens:?}");
    let (listener, public) = listens[0];
    let t = net.now;
    net.node(0).handle_udp_listening(t, listener, Ok(public));
    run(net, Duration::from_secs(1));
    (listener, public)
}

#[test]
fn a_published_udp_port_carries_each_public_source_as_its_own_flow() {
    let now = crate::tests::origin();
    let mut net = server_and_daemon(now, 20002);
    let (listener, public) = bound(&mut net);
    assert_eq!(
        public,
        addr("10.0.0.9:20002"),
        "the server's IP, the port asked for"
    );
    let status = net.node(1).status();
    assert!(
        status.published.contains(&(
            "/dns".to_string(),
            "published on 10.0.0.9:20002 (UDP)".to_string()
        )),
        "{:?}",
        status.published
    );

    // Two public clients: two flows at the daemon, each to the service.
    let (c1, c2) = (addr("198.51.100.7:5555"), addr("198.51.100.8:5555"));
    let t = net.now;
    net.node(0)
        .handle_udp_recv_from(t, listener, c1, b"query one");
    net.node(0)
        .handle_udp_recv_from(t, listener, c2, b"query two");
    run(&mut net, Duration::from_secs(1));
    let actions = udp_actions(&net, 1);
    let opened: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            UdpAction::Open { flow, target } => Some((*flow, *target)),
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 2, "one flow per source: {actions:?}");
    assert!(opened.iter().all(|(_, t)| *t == addr("127.0.0.1:53")));
    let sent: Vec<(_, Vec<u8>)> = actions
        .iter()
        .filter_map(|a| match a {
            UdpAction::Send { flow, data } => Some((*flow, data.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 2, "{actions:?}");

    // The service answers on the second flow: the answer goes to the second client only.
    let (flow_two, _) = sent
        .iter()
        .find(|(_, d)| d == b"query two")
        .expect("the second query");
    let t = net.now;
    net.node(1).handle_udp_recv(t, *flow_two, b"answer two");
    run(&mut net, Duration::from_secs(1));
    let back: Vec<_> = udp_actions(&net, 0)
        .into_iter()
        .filter_map(|a| match a {
            UdpAction::SendTo {
                listener: l,
                to,
                data,
            } if l == listener => Some((to, data.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(back, vec![(c2, b"answer two".to_vec())]);
    let flows = net.node(0).status().flows.len();
    assert_eq!(flows, 2, "the server shows both flows");

    // The daemon stops: the server closes the UDP socket; later datagrams go nowhere.
    let t = net.now;
    net.node(1).shutdown(t);
    run(&mut net, Duration::from_secs(1));
    assert!(
        net.outputs(0)
            .iter()
            .any(|o| matches!(o, Output::UnlistenUdp { listener: l } if *l == listener)),
        "the socket is closed"
    );
    let before = udp_actions(&net, 1).len();
    let t = net.now;
    net.node(0).handle_udp_recv_from(t, listener, c1, b"late");
    run(&mut net, Duration::from_secs(1));
    assert_eq!(
        udp_actions(&net, 1).len(),
        before,
        "nothing reaches the daemon"
    );
}

#[test]
fn a_port_holds_one_publication_tcp_or_udp() {
    let now = crate::tests::origin();
    // Both services ask for 20001: the first asked (`/dns`, UDP) gets it.
    let mut net = server_and_daemon(now, 20001);
    run(&mut net, Duration::from_secs(2));
    let tcp = net
        .outputs(0)
        .iter()
        .filter(|o| matches!(o, Output::Listen { .. }))
        .count();
    assert_eq!(udp_listens(&net).len(), 1, "a UDP socket on 20001");
    assert_eq!(tcp, 0, "no TCP listener on the taken port");
    let status = net.node(1).status();
    let web = status
        .published
        .iter()
        .find(|(n, _)| n == "/web")
        .map(|(_, s)| s.clone());
    assert_eq!(
        web.as_deref(),
        Some("publish refused: port 20001 is taken by another published path")
    );
}

#[test]
fn a_udp_port_the_server_cannot_bind_is_a_refusal_on_the_daemon() {
    let now = crate::tests::origin();
    let mut net = server_and_daemon(now, 20002);
    run(&mut net, Duration::from_secs(2));
    let (listener, _) = udp_listens(&net)[0];
    let t = net.now;
    net.node(0)
        .handle_udp_listening(t, listener, Err("Address already in use".into()));
    run(&mut net, Duration::from_secs(1));
    let status = net.node(1).status();
    assert!(
        status.published.contains(&(
            "/dns".to_string(),
            "publish refused: the server cannot listen on port 20002: Address already in use"
                .to_string()
        )),
        "{:?}",
        status.published
    );
    // Datagrams on a socket that never bound are dropped.
    let t = net.now;
    net.node(0)
        .handle_udp_recv_from(t, listener, addr("198.51.100.7:1"), b"x");
    run(&mut net, Duration::from_secs(1));
    assert!(
        !udp_actions(&net, 1)
            .iter()
            .any(|a| matches!(a, UdpAction::Open { .. })),
        "no flow opened"
    );
}

/// A datagram the server forwards before the daemon has heard `Published` (the socket was
/// already reading) reaches the daemon without the grant: its flow is held, as a peer's is
/// before its introduction, and opened once the answer comes.
#[test]
fn a_flow_that_comes_before_published_is_held_then_opened() {
    let now = crate::tests::origin();
    let mut net = server_and_daemon(now, 20002);
    run(&mut net, Duration::from_secs(2));
    let (listener, public) = udp_listens(&net)[0];
    let t = net.now;
    net.node(0)
        .handle_udp_recv_from(t, listener, addr("198.51.100.7:5555"), b"early");
    run(&mut net, Duration::from_millis(500));
    let opened = |net: &Net| {
        udp_actions(net, 1)
            .iter()
            .filter(|a| matches!(a, UdpAction::Open { .. }))
            .count()
    };
    assert_eq!(opened(&net), 0, "no grant yet: held");
    assert_eq!(net.node(1).status().udp.flows_held, 1);
    let t = net.now;
    net.node(0).handle_udp_listening(t, listener, Ok(public));
    run(&mut net, Duration::from_secs(1));
    assert_eq!(opened(&net), 1, "opened once published");
    let sent: Vec<Vec<u8>> = udp_actions(&net, 1)
        .into_iter()
        .filter_map(|a| match a {
            UdpAction::Send { data, .. } => Some(data.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![b"early".to_vec()],
        "the held datagram is delivered"
    );
}
