//! Paths published on the server's public TCP ports: granted once the listener is bound,
//! refused out of range, when taken, over the token's limit or when publishing is off, and
//! unpublished when the registration ends or drops the path.

use std::time::Duration;

use super::*;
use crate::rendezvous::config::PublishConfig;

const SECOND: Duration = Duration::from_secs(1);

fn publishing(max_per_token: usize) -> ServerConfig {
    ServerConfig {
        publish: PublishConfig {
            ports: Some((20000, 20010)),
            max_per_token,
            sni: None,
        },
        ..ServerConfig::default()
    }
}

/// Daemon `i` asks to publish `path` on TCP `port`; returns the request id.
fn publish(h: &mut Harness, i: usize, path: &str, port: Option<u16>) -> u64 {
    publish_as(h, i, path, port, false)
}

/// [`publish`], on a UDP port when `udp`.
fn publish_as(h: &mut Harness, i: usize, path: &str, port: Option<u16>, udp: bool) -> u64 {
    let request = h.with(i, |c, now| c.publish(now, name(path), port, udp));
    h.run(SECOND);
    request
}

/// The port the server answered `request` of daemon `i` with.
fn published(h: &Harness, i: usize, request: u64) -> Option<u16> {
    h.events(i).into_iter().find_map(|e| match e {
        ClientEvent::Published {
            request: r, port, ..
        } if r == request => Some(port),
        _ => None,
    })
}

/// Why the server refused `request` of daemon `i`.
fn refused(h: &Harness, i: usize, request: u64) -> Option<(ErrorCode, String)> {
    h.events(i).into_iter().find_map(|e| match e {
        ClientEvent::RequestFailed {
            request: r,
            code,
            detail,
        } if r == request => Some((code, detail)),
        _ => None,
    })
}

/// The ports the server was asked to listen on, and to stop listening on, in order.
fn listens(h: &Harness) -> (Vec<(u16, PublicKey, ServiceName)>, Vec<u16>) {
    let mut listen = Vec::new();
    let mut unlisten = Vec::new();
    for (_, e) in h.server_events() {
        match e {
            ServerEvent::Listen {
                port, key, service, ..
            } => listen.push((port, key, service)),
            ServerEvent::Unlisten { port, .. } => unlisten.push(port),
            _ => {}
        }
    }
    (listen, unlisten)
}

/// The listener for `port` is bound.
fn bound(h: &mut Harness, port: u16) {
    h.server_mut().listening(port, Ok(()));
    h.run(SECOND);
}

#[test]
fn a_publication_is_answered_once_its_listener_is_bound() {
    let mut h = Harness::new(publishing(4));
    let a = h.add(&["/web"]);
    h.run(SECOND);
    let request = publish(&mut h, a, "/web", Some(20001));
    assert_eq!(listens(&h).0, vec![(20001, key(a), name("/web"))]);
    assert_eq!(
        published(&h, a, request),
        None,
        "not before the listener is bound"
    );
    bound(&mut h, 20001);
    assert_eq!(published(&h, a, request), Some(20001));
    assert!(h.server().publication(20001).unwrap().binding.is_none());
    // Asked again (after registering again, say): the same port, no second listener.
    let again = publish(&mut h, a, "/web", None);
    assert_eq!(published(&h, a, again), Some(20001));
    assert_eq!(listens(&h).0.len(), 1);
    // "any" picks the first free port of the range.
    let b = h.add(&["/api"]);
    h.run(SECOND);
    let request = publish(&mut h, b, "/api", None);
    assert_eq!(listens(&h).0[1].0, 20000);
    bound(&mut h, 20000);
    assert_eq!(published(&h, b, request), Some(20000));
}

#[test]
fn refusals_say_why() {
    let mut h = Harness::new(publishing(4));
    let a = h.add(&["/web", "/api"]);
    let b = h.add(&["/other"]);
    h.run(SECOND);
    let cases: [(usize, &str, Option<u16>, &str); 5] = [
        (
            a,
            "/web",
            Some(30000),
            "port 30000 outside the server's range 20000-20010",
        ),
        (
            a,
            "/web",
            Some(0),
            "port 0 outside the server's range 20000-20010",
        ),
        (
            a,
            "/web",
            Some(19999),
            "port 19999 outside the server's range 20000-20010",
        ),
        (
            a,
            "/nope",
            Some(20001),
            "/nope is not a path this daemon's registration exposes",
        ),
        // Another daemon's path: only the daemon that holds it may publish it.
        (
            b,
            "/web",
            Some(20001),
            "/web is not a path this daemon's registration exposes",
        ),
    ];
    for (i, path, port, want) in cases {
        let request = publish(&mut h, i, path, port);
        let (code, detail) = refused(&h, i, request).expect("refused");
        assert_eq!((code, detail.as_str()), (ErrorCode::PublishRefused, want));
    }
    // A port another daemon holds.
    let first = publish(&mut h, b, "/other", Some(20005));
    bound(&mut h, 20005);
    assert_eq!(published(&h, b, first), Some(20005));
    let request = publish(&mut h, a, "/web", Some(20005));
    let (_, detail) = refused(&h, a, request).expect("refused");
    assert_eq!(detail, "port 20005 is taken by another published path");
    assert_eq!(listens(&h).0.len(), 1, "no refusal listens");
    let refusals = h.count_server(|e| matches!(e, ServerEvent::PublishRefused { .. }));
    assert_eq!(refusals, 6, "each refusal is logged");
}

#[test]
fn a_server_without_a_range_publishes_nothing() {
    let mut h = Harness::new(ServerConfig::default());
    let a = h.add(&["/web"]);
    h.run(SECOND);
    let request = publish(&mut h, a, "/web", None);
    let (code, detail) = refused(&h, a, request).expect("refused");
    assert_eq!(code, ErrorCode::PublishRefused);
    assert!(detail.contains("without --publish-ports"), "{detail}");
}

#[test]
fn a_token_holds_at_most_its_limit_of_ports() {
    let mut h = Harness::new(publishing(2));
    let a = h.add(&["/a", "/b"]);
    let b = h.add(&["/c"]);
    h.run(SECOND);
    for (i, path) in [(a, "/a"), (a, "/b")] {
        publish(&mut h, i, path, None);
    }
    let request = publish(&mut h, b, "/c", None);
    let (code, detail) = refused(&h, b, request).expect("refused");
    assert_eq!(code, ErrorCode::TooMany);
    assert_eq!(detail, "token at its limit of 2 published ports");
    // Another tenant has its own limit.
    let mut config = ClientConfig::new("other tenant");
    config.services = vec![name("/c")];
    let c = h.add_with(config);
    h.run(SECOND);
    let request = publish(&mut h, c, "/c", None);
    assert!(refused(&h, c, request).is_none());
    assert_eq!(listens(&h).0.len(), 3);
}

#[test]
fn publications_end_with_the_registration_or_the_path() {
    let mut h = Harness::new(publishing(4));
    let a = h.add(&["/a", "/b"]);
    h.run(SECOND);
    publish(&mut h, a, "/a", Some(20001));
    publish(&mut h, a, "/b", Some(20002));
    bound(&mut h, 20001);
    bound(&mut h, 20002);
    // The daemon stops exposing /b: its port goes, /a's stays.
    h.with(a, |c, now| {
        c.set_services(now, vec![name("/a")], vec![]).unwrap()
    });
    h.run(SECOND);
    assert_eq!(listens(&h).1, vec![20002]);
    assert!(h.server().publication(20001).is_some());
    // Unregistering ends the rest.
    h.with(a, |c, now| c.stop(now));
    h.run(SECOND);
    assert_eq!(listens(&h).1, vec![20002, 20001]);
    assert_eq!(h.server().publications().count(), 0);
}

#[test]
fn publications_end_with_the_lease() {
    let mut h = Harness::new(publishing(4));
    let a = h.add(&["/a"]);
    h.run(SECOND);
    publish(&mut h, a, "/a", Some(20003));
    bound(&mut h, 20003);
    h.set_online(a, false);
    h.run(LEASE + 10 * SECOND);
    assert_eq!(listens(&h).1, vec![20003]);
    assert_eq!(h.server().publications().count(), 0);
}

#[test]
fn a_port_the_server_cannot_bind_is_refused_and_freed() {
    let mut h = Harness::new(publishing(4));
    let a = h.add(&["/a"]);
    h.run(SECOND);
    let request = publish(&mut h, a, "/a", Some(20004));
    h.server_mut()
        .listening(20004, Err("address already in use".into()));
    h.run(SECOND);
    let (code, detail) = refused(&h, a, request).expect("refused");
    assert_eq!(code, ErrorCode::PublishRefused);
    assert_eq!(
        detail,
        "the server cannot listen on port 20004: address already in use"
    );
    assert_eq!(h.server().publications().count(), 0);
    // A late or stray report changes nothing.
    h.server_mut().listening(20004, Ok(()));
    h.server_mut().listening(20009, Ok(()));
    assert_eq!(h.server().publications().count(), 0);
}

#[test]
fn another_port_replaces_the_publication() {
    let mut h = Harness::new(publishing(1));
    let a = h.add(&["/a"]);
    h.run(SECOND);
    publish(&mut h, a, "/a", Some(20001));
    bound(&mut h, 20001);
    // Within the limit of one: the old port is given up for the new one.
    let request = publish(&mut h, a, "/a", Some(20002));
    bound(&mut h, 20002);
    assert_eq!(published(&h, a, request), Some(20002));
    assert_eq!(listens(&h).1, vec![20001]);
    let ports: Vec<u16> = h.server().publications().map(|(p, _)| *p).collect();
    assert_eq!(ports, vec![20002]);
}

#[test]
fn an_unregistered_daemon_publishes_nothing() {
    let mut h = Harness::new(publishing(4));
    let a = h.add(&["/a"]);
    h.run(SECOND);
    let now = h.now;
    let stranger = key(40);
    let at = h.addr(a);
    h.directory().insert(stranger, at);
    let msg = ClientMessage::Publish {
        request: 9,
        name: name("/a"),
        port: Some(20001),
    };
    h.server_mut()
        .handle_message(now, stranger, server_addr(), msg, None);
    assert!(h.server().publications().next().is_none());
    let said: Vec<_> = std::iter::from_fn(|| h.server_mut().poll_message()).collect();
    assert!(
        said.iter().any(|(k, m)| *k == stranger
            && matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::NotRegistered,
                    ..
                }
            )),
        "{said:?}"
    );
}

/// A UDP publication is one of the token's ports like a TCP one: the server is asked for a
/// UDP socket, and the limit counts both kinds.
#[test]
fn udp_ports_count_toward_the_tokens_limit() {
    let mut h = Harness::new(publishing(1));
    let a = h.add(&["/dns", "/web"]);
    h.run(SECOND);
    let dns = publish_as(&mut h, a, "/dns", None, true);
    let udp: Vec<bool> = h
        .server_events()
        .into_iter()
        .filter_map(|(_, e)| match e {
            ServerEvent::Listen { udp, .. } => Some(udp),
            _ => None,
        })
        .collect();
    assert_eq!(udp, vec![true], "a UDP socket asked for");
    bound(&mut h, 20000);
    assert_eq!(published(&h, a, dns), Some(20000));
    let web = publish(&mut h, a, "/web", None);
    let (code, why) = refused(&h, a, web).expect("refused");
    assert_eq!(code, ErrorCode::TooMany);
    assert!(why.contains("limit of 1 published ports"), "{why}");
    // Asking again for the same path on the same kind of port is the same answer.
    let again = publish_as(&mut h, a, "/dns", None, true);
    assert_eq!(published(&h, a, again), Some(20000));
}
