//! A path published on the server, through two nodes: the server's listener, a public
//! connection opened as a stream to the daemon (with the public client's address for the
//! PROXY protocol), the server's key kept to the published path, and the listener closed
//! when the daemon stops.

use super::publish_setup::{run, server_and_daemon_with};
use super::*;
use crate::forward::{ExposeOptions, Origin, ProxyVersion, PublishPort};
use crate::rendezvous::PublishConfig;

/// The server (host 0) publishing ports 20000-20010, and a daemon (host 1) exposing `/web`
/// (published on 20001, PROXY protocol v1) and `/private` (not published).
fn server_and_daemon(now: Instant) -> Net {
    let publish = PublishConfig {
        ports: Some((20000, 20010)),
        max_per_token: 4,
        sni: None,
    };
    let web = ExposeOptions {
        proxy_protocol: Some(ProxyVersion::V1),
        publish: Some(PublishPort::Port(20001)),
        ..ExposeOptions::default()
    };
    server_and_daemon_with(
        now,
        publish,
        &[
            ("/web", "127.0.0.1:7", web),
            ("/private", "127.0.0.1:8", ExposeOptions::default()),
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

#[test]
fn a_published_port_carries_public_connections_to_the_daemon_and_nothing_else() {
    let now = crate::tests::origin();
    let mut net = server_and_daemon(now);
    run(&mut net, Duration::from_secs(2));
    let listens: Vec<(ListenerId, SocketAddr)> = net
        .outputs(0)
        .into_iter()
        .filter_map(|o| match o {
            Output::Listen { listener, addr } => Some((*listener, *addr)),
            _ => None,
        })
        .collect();
    assert_eq!(listens.len(), 1, "one public listener");
    let (listener, public) = listens[0];
    assert_eq!(
        public,
        addr("10.0.0.9:20001"),
        "the server's IP, the port asked for"
    );
    let status = net.node(1).status();
    assert!(
        status.published[0].1.starts_with("asking"),
        "published only once bound: {:?}",
        status.published
    );
    let t = net.now;
    net.node(0).handle_listening(t, listener, Ok(public));
    run(&mut net, Duration::from_secs(1));
    let status = net.node(1).status();
    assert_eq!(
        status.published,
        vec![(
            "/web".to_string(),
            "published on 10.0.0.9:20001".to_string()
        )]
    );

    // A public client connects: a stream to the daemon, whose service hears the client.
    let origin = Origin {
        client: addr("198.51.100.7:5555"),
        local: public,
    };
    let t = net.now;
    let conn = net
        .node(0)
        .handle_accept_from(t, listener, Some(origin))
        .expect("a session to the daemon carries it");
    net.node(0)
        .handle_read(t, conn, bytes::Bytes::copy_from_slice(b"GET /"));
    run(&mut net, Duration::from_secs(1));
    let opened = connects(&net, 1);
    assert_eq!(opened.len(), 1, "{opened:?}");
    let (local, target) = opened[0].clone();
    assert_eq!(target, "127.0.0.1:7");
    let t = net.now;
    net.node(1).handle_connected(t, local);
    run(&mut net, Duration::from_secs(1));
    let bytes = written(&net, 1, local);
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(
        text, "PROXY TCP4 198.51.100.7 10.0.0.9 5555 20001\r\nGET /",
        "the PROXY header names the public client, then its bytes"
    );

    // The server's key reaches the published path only.
    let t = net.now;
    let server = &mut net.node(0).ep;
    let peer = server.peer_of(&key(1).public_key()).expect("a session");
    server
        .open_stream(t, peer, &ServiceName::parse("/private").unwrap())
        .expect("opened");
    run(&mut net, Duration::from_secs(10));
    assert_eq!(connects(&net, 1).len(), 1, "nothing connects to /private");

    // The daemon stops: the server stops listening and resets the public connection.
    let t = net.now;
    net.node(1).shutdown(t);
    run(&mut net, Duration::from_secs(1));
    let outputs = net.outputs(0);
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Unlisten { listener: l } if *l == listener)),
        "the listener is closed"
    );
    assert!(outputs.iter().any(|o| matches!(
        o,
        Output::Action(Action::Close { conn: c, abort: true, .. }) if *c == conn
    )));
    // A connection accepted on it now is refused.
    let t = net.now;
    assert!(net.node(0).handle_accept(t, listener).is_none());
}

#[test]
fn a_listener_the_server_cannot_bind_is_a_refusal_on_the_daemon() {
    let now = crate::tests::origin();
    let mut net = server_and_daemon(now);
    run(&mut net, Duration::from_secs(2));
    let listener = net
        .outputs(0)
        .into_iter()
        .find_map(|o| match o {
            Output::Listen { listener, .. } => Some(*listener),
            _ => None,
        })
        .expect("asked to listen");
    let t = net.now;
    net.node(0)
        .handle_listening(t, listener, Err("Address already in use".into()));
    run(&mut net, Duration::from_secs(1));
    let status = net.node(1).status();
    assert_eq!(
        status.published,
        vec![(
            "/web".to_string(),
            "publish refused: the server cannot listen on port 20001: Address already in use"
                .to_string()
        )]
    );
    let t = net.now;
    assert!(net.node(0).handle_accept(t, listener).is_none());
}
