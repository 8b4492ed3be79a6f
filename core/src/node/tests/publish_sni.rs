//! Paths published on the server's SNI port, through two nodes: the port bound at start,
//! each TLS connection routed by the name of its ClientHello to its daemon with its first
//! bytes untouched, and every other connection (a name nobody publishes, not TLS, too slow,
//! too large) closed with one log line saying why; names over the token's limit refused.

use super::publish_setup::{run, server_and_daemon_with};
use super::*;
use crate::forward::sni::MAX_HELLO;
use crate::forward::sni::sample::{hello, records};
use crate::forward::{ExposeOptions, Origin, PublishPort};
use crate::rendezvous::{PublishConfig, SniConfig};

/// The server (host 0) routing TLS names `*.example.test` on port 443, at most 2
/// publications per token, and a daemon (host 1) asking to publish `/web/blog`, `/web/shop`
/// (one too many) and `/web/bad_name` (no host-name label) there.
fn server_and_daemon(now: Instant) -> Net {
    let publish = PublishConfig {
        ports: None,
        max_per_token: 2,
        sni: Some(SniConfig {
            port: 443,
            domain: "example.test".into(),
        }),
    };
    let sni = ExposeOptions {
        publish: Some(PublishPort::Sni),
        ..ExposeOptions::default()
    };
    server_and_daemon_with(
        now,
        publish,
        &[
            ("/web/bad_name", "127.0.0.1:6", sni),
            ("/web/blog", "127.0.0.1:7", sni),
            ("/web/shop", "127.0.0.1:8", sni),
            ("/web/zoo", "127.0.0.1:9", sni),
        ],
    )
}

/// The connections node `i` was told to open, with their targets.
fn connects(net: &Net, i: usize) -> Vec<(ConnId, String)> {
    net.outputs(i)
        .into_iter()
        .filter_map(|o| match o {
            Output::Action(Action::Connect { conn, target }) => Some((*conn, target.clone())),
            _ => None,
        })
        .collect()
}

/// Everything node `i` was told to write to `conn`, in order.
fn written(net: &Net, i: usize, conn: ConnId) -> Vec<u8> {
    net.outputs(i)
        .into_iter()
        .filter_map(|o| match o {
            Output::Action(Action::Write { conn: c, data }) if *c == conn => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// How many reads of `conn` node `i` asked for.
fn reads(net: &Net, i: usize, conn: ConnId) -> usize {
    net.outputs(i)
        .into_iter()
        .filter(|o| matches!(o, Output::Action(Action::Read { conn: c }) if *c == conn))
        .count()
}

/// Whether node `i` closed `conn` with a reset.
fn reset(net: &Net, i: usize, conn: ConnId) -> bool {
    net.outputs(i).into_iter().any(
        |o| matches!(o, Output::Action(Action::Close { conn: c, abort: true, .. }) if *c == conn),
    )
}

/// The log lines of node `i` containing `needle`.
fn logged(net: &Net, i: usize, needle: &str) -> Vec<String> {
    net.outputs(i)
        .into_iter()
        .filter_map(|o| match o {
            Output::Log(line) => Some(line.to_string()),
            _ => None,
        })
        .filter(|l| l.contains(needle))
        .collect()
}

fn origin(port: u16) -> Option<Origin> {
    Some(Origin {
        client: SocketAddr::new("198.51.100.7".parse().unwrap(), port),
        local: addr("10.0.0.9:443"),
    })
}

/// The server's SNI listener, reported bound.
fn bound(net: &mut Net) -> ListenerId {
    run(net, Duration::from_millis(1));
    let listens: Vec<(ListenerId, SocketAddr)> = net
        .outputs(0)
        .into_iter()
        .filter_map(|o| match o {
            Output::Listen { listener, addr } => Some((*listener, *addr)),
            _ => None,
        })
        .collect();
    assert_eq!(
        listens.len(),
        1,
        "one listener, for the SNI port: {listens:?}"
    );
    assert_eq!(listens[0].1, addr("10.0.0.9:443"));
    let t = net.now;
    net.node(0)
        .handle_listening(t, listens[0].0, Ok(listens[0].1));
    listens[0].0
}

#[test]
fn tls_connections_reach_the_path_their_name_asks_for_and_others_are_closed() {
    let now = crate::tests::origin();
    let mut net = server_and_daemon(now);
    let listener = bound(&mut net);
    run(&mut net, Duration::from_secs(3));
    let mut published = net.node(1).status().published;
    published.sort();
    assert_eq!(
        published,
        vec![
            (
                "/web/bad_name".to_string(),
                "publish refused: the last segment of /web/bad_name is not a host-name label \
                 (letters, digits and '-')"
                    .to_string()
            ),
            ("/web/blog".into(), "published on 10.0.0.9:443".into()),
            ("/web/shop".into(), "published on 10.0.0.9:443".into()),
            (
                "/web/zoo".into(),
                "publish refused: token at its limit of 2 published ports".into()
            ),
        ]
    );
    assert_eq!(
        logged(&net, 0, "as blog.example.test on the SNI port 443").len(),
        1,
        "the server logs where it publishes"
    );

    // A ClientHello for shop.example.test in three reads: nothing is routed until it is whole.
    let tls = hello(Some("Shop.Example.Test"), 700);
    let t = net.now;
    let conn = net
        .node(0)
        .handle_accept_from(t, listener, origin(5555))
        .unwrap();
    net.node(0)
        .handle_read(t, conn, bytes::Bytes::copy_from_slice(&tls[..3]));
    net.node(0)
        .handle_read(t, conn, bytes::Bytes::copy_from_slice(&tls[3..400]));
    run(&mut net, Duration::from_secs(1));
    assert!(
        connects(&net, 1).is_empty(),
        "routed before the name is known"
    );
    assert_eq!(
        reads(&net, 0, conn),
        3,
        "read again while the hello is partial"
    );
    let t = net.now;
    net.node(0)
        .handle_read(t, conn, bytes::Bytes::copy_from_slice(&tls[400..]));
    run(&mut net, Duration::from_secs(1));
    let opened = connects(&net, 1);
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].1, "127.0.0.1:8", "the shop's target");
    let t = net.now;
    net.node(1).handle_connected(t, opened[0].0);
    run(&mut net, Duration::from_secs(1));
    assert_eq!(written(&net, 1, opened[0].0), tls, "the hello, untouched");
    // The service answers: the bytes come back to the public connection.
    let t = net.now;
    net.node(1).handle_read(
        t,
        opened[0].0,
        bytes::Bytes::copy_from_slice(b"server hello"),
    );
    run(&mut net, Duration::from_secs(1));
    assert_eq!(written(&net, 0, conn), b"server hello");

    // A name nobody publishes, plain HTTP, and a client that closes early: each closed with
    // a reset and one line saying why.
    let t = net.now;
    let nobody = net
        .node(0)
        .handle_accept_from(t, listener, origin(6001))
        .unwrap();
    net.node(0).handle_read(
        t,
        nobody,
        bytes::Bytes::copy_from_slice(&hello(Some("nobody.example.test"), 0)),
    );
    let http = net
        .node(0)
        .handle_accept_from(t, listener, origin(6002))
        .unwrap();
    net.node(0).handle_read(
        t,
        http,
        bytes::Bytes::copy_from_slice(b"GET / HTTP/1.1\r\n\r\n"),
    );
    let early = net
        .node(0)
        .handle_accept_from(t, listener, origin(6003))
        .unwrap();
    net.node(0)
        .handle_read(t, early, bytes::Bytes::copy_from_slice(&tls[..10]));
    net.node(0).handle_eof(t, early);
    run(&mut net, Duration::from_secs(1));
    for c in [nobody, http, early] {
        assert!(reset(&net, 0, c), "{c} closed");
    }
    assert_eq!(
        logged(&net, 0, "sni: refused a connection from 198.51.100.7:6001"),
        vec![
            "sni: refused a connection from 198.51.100.7:6001: no path is published as \
             nobody.example.test"
        ]
    );
    assert_eq!(
        logged(&net, 0, "198.51.100.7:6002"),
        vec![
            "sni: refused a connection from 198.51.100.7:6002: not a TLS connection (no TLS \
             handshake record)"
        ]
    );
    assert_eq!(logged(&net, 0, "198.51.100.7:6003").len(), 1);
    assert_eq!(
        connects(&net, 1).len(),
        1,
        "none of them reached the daemon"
    );

    // A client that sends part of a hello and stops is closed after SNI_WAIT; one that
    // sends records without end is closed at MAX_HELLO bytes.
    let t = net.now;
    let slow = net
        .node(0)
        .handle_accept_from(t, listener, origin(6004))
        .unwrap();
    net.node(0)
        .handle_read(t, slow, bytes::Bytes::copy_from_slice(&tls[..100]));
    let mut endless = vec![1, 0, 0x40, 0];
    endless.extend(std::iter::repeat_n(0, 16 * 1024));
    let endless = records(&endless, 1);
    let large = net
        .node(0)
        .handle_accept_from(t, listener, origin(6005))
        .unwrap();
    for chunk in endless[..MAX_HELLO + 100].chunks(1000) {
        net.node(0)
            .handle_read(t, large, bytes::Bytes::copy_from_slice(chunk));
    }
    run(&mut net, SNI_WAIT - Duration::from_secs(1));
    assert!(!reset(&net, 0, slow), "closed before SNI_WAIT");
    assert!(reset(&net, 0, large), "closed at MAX_HELLO");
    run(&mut net, Duration::from_secs(2));
    assert!(reset(&net, 0, slow), "closed after SNI_WAIT");
    assert_eq!(
        logged(&net, 0, "198.51.100.7:6004"),
        vec![
            "sni: refused a connection from 198.51.100.7:6004: no whole TLS ClientHello within 10 s"
        ]
    );

    // The daemon stops: its names are no longer routed.
    let t = net.now;
    net.node(1).shutdown(t);
    run(&mut net, Duration::from_secs(1));
    assert_eq!(logged(&net, 0, "stopped publishing /web/blog").len(), 1);
    let t = net.now;
    let after = net
        .node(0)
        .handle_accept_from(t, listener, origin(6006))
        .unwrap();
    net.node(0).handle_read(
        t,
        after,
        bytes::Bytes::copy_from_slice(&hello(Some("blog.example.test"), 0)),
    );
    run(&mut net, Duration::from_secs(1));
    assert!(reset(&net, 0, after));
}

#[test]
fn many_connections_waiting_for_their_hello_are_bounded() {
    let now = crate::tests::origin();
    let mut net = server_and_daemon(now);
    let listener = bound(&mut net);
    run(&mut net, Duration::from_secs(1));
    let t = net.now;
    let conns: Vec<ConnId> = (0..=MAX_SNIFFING)
        .map(|i| {
            let port = 10_000 + i as u16;
            net.node(0)
                .handle_accept_from(t, listener, origin(port))
                .unwrap()
        })
        .collect();
    run(&mut net, Duration::from_millis(10));
    let closed: Vec<&ConnId> = conns.iter().filter(|c| reset(&net, 0, **c)).collect();
    assert_eq!(
        closed,
        vec![&conns[MAX_SNIFFING]],
        "only the one over the bound"
    );
}

#[test]
fn an_sni_port_the_server_cannot_bind_refuses_publishing_there() {
    let now = crate::tests::origin();
    let mut net = server_and_daemon(now);
    run(&mut net, Duration::from_millis(1));
    let listener = net
        .outputs(0)
        .into_iter()
        .find_map(|o| match o {
            Output::Listen { listener, .. } => Some(*listener),
            _ => None,
        })
        .expect("asked to listen at start");
    let t = net.now;
    net.node(0)
        .handle_listening(t, listener, Err("Permission denied".into()));
    run(&mut net, Duration::from_secs(3));
    let published = net.node(1).status().published;
    assert!(
        published.iter().any(|(p, s)| p == "/web/blog"
            && s == "publish refused: the server cannot listen on its SNI port 443: Permission denied"),
        "{published:?}"
    );
    assert_eq!(
        logged(&net, 0, "nothing can be published with publish = \"sni\"").len(),
        1,
        "the server says so"
    );
}
