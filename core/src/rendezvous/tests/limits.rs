//! A path's limit of connections (`burrow admin create PATH --max-connections N`) through
//! the protocol: the server counts the connecting daemons introduced to the path, refuses
//! one more with a reason that names the limit, frees a place when a connecting daemon's
//! registration ends, and shows the count in the tree.

use std::time::Duration;

use super::authority::{admin, daemon, lookup, server_config};
use super::*;
use crate::rendezvous::directory::{AdminAnswer, AdminCommand};

const SECOND: Duration = Duration::from_secs(1);

/// Creates `path` as acme's master (daemon `master`) with `max_connections`: its server
/// and client tokens.
fn create(
    h: &mut Harness,
    master: usize,
    path: &str,
    max_connections: Option<u32>,
) -> (String, String) {
    let command = AdminCommand::Create {
        name: name(path),
        fixed: false,
        max_connections,
    };
    match admin(h, master, "M", command) {
        Ok(AdminAnswer::Created {
            server_token,
            client_token,
            ..
        }) => (server_token, client_token),
        other => panic!("{other:?}"),
    }
}

/// The detail of daemon `i`'s last failed request.
fn last_detail(h: &Harness, i: usize) -> String {
    h.events(i)
        .into_iter()
        .rev()
        .filter_map(|e| match e {
            ClientEvent::RequestFailed { detail, .. } => Some(detail),
            _ => None,
        })
        .next()
        .unwrap_or_default()
}

/// `path`'s (connections, limit) as the tree shows them.
fn shown(h: &mut Harness, master: usize, path: &str) -> (u32, Option<u32>) {
    match admin(h, master, "M", AdminCommand::Tree { after: None }) {
        Ok(AdminAnswer::Tree { paths, .. }) => paths
            .into_iter()
            .find(|p| p.name == name(path))
            .map(|p| (p.connections, p.max_connections))
            .expect("the path is in the tree"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_path_at_its_limit_refuses_another_daemon_until_one_stops() {
    let mut h = Harness::new(server_config(false));
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    let (server_token, client_token) = create(&mut h, master, "/web", Some(2));
    let exposer = daemon(&mut h, &server_token, &[], &["/web"]);
    let clients: Vec<usize> = (0..3)
        .map(|_| daemon(&mut h, &client_token, &[], &[]))
        .collect();
    h.run(SECOND);
    assert_eq!(shown(&mut h, master, "/web"), (0, Some(2)));

    assert_eq!(lookup(&mut h, clients[0], "/web"), Ok(key(exposer)));
    assert_eq!(
        lookup(&mut h, clients[0], "/web"),
        Ok(key(exposer)),
        "a daemon that holds a place looks the path up again in it"
    );
    assert_eq!(lookup(&mut h, clients[1], "/web"), Ok(key(exposer)));
    assert_eq!(shown(&mut h, master, "/web"), (2, Some(2)));
    assert_eq!(lookup(&mut h, clients[2], "/web"), Err(ErrorCode::TooMany));
    let detail = last_detail(&h, clients[2]);
    assert!(
        detail.contains("path /web is at its limit of 2 connections"),
        "{detail}"
    );
    // A path without a limit of its own is not held back by it.
    let other = daemon(&mut h, "C", &[], &[]);
    let ssh = daemon(&mut h, "S", &[], &["/ssh"]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, other, "/ssh"), Ok(key(ssh)));

    // The first client stops: its place is free at once.
    h.with(clients[0], |c, now| c.stop(now));
    h.run(SECOND);
    assert_eq!(shown(&mut h, master, "/web"), (1, Some(2)));
    assert_eq!(lookup(&mut h, clients[2], "/web"), Ok(key(exposer)));
    assert_eq!(shown(&mut h, master, "/web"), (2, Some(2)));

    // The exposing daemon stops: every introduction to it ends.
    h.with(exposer, |c, now| c.stop(now));
    h.run(SECOND);
    assert_eq!(shown(&mut h, master, "/web"), (0, Some(2)));
}

#[test]
fn a_limit_of_zero_is_refused_and_a_deleted_path_forgets_its_connections() {
    let mut h = Harness::new(server_config(false));
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    let zero = AdminCommand::Create {
        name: name("/web"),
        fixed: false,
        max_connections: Some(0),
    };
    assert_eq!(admin(&mut h, master, "M", zero), Err(ErrorCode::Malformed));
    let (server_token, client_token) = create(&mut h, master, "/web", Some(1));
    let exposer = daemon(&mut h, &server_token, &[], &["/web"]);
    let client = daemon(&mut h, &client_token, &["M"], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, client, "/web"), Ok(key(exposer)));
    let delete = AdminCommand::Delete { name: name("/web") };
    assert!(admin(&mut h, master, "M", delete).is_ok());
    // Created again, the path starts with no connections, and the same daemon (still
    // registered with the master token) takes the one place.
    let (server_token, _) = create(&mut h, master, "/web", Some(1));
    let exposer = daemon(&mut h, &server_token, &[], &["/web"]);
    h.run(SECOND);
    assert_eq!(shown(&mut h, master, "/web"), (0, Some(1)));
    assert_eq!(lookup(&mut h, client, "/web"), Ok(key(exposer)));
    assert_eq!(shown(&mut h, master, "/web"), (1, Some(1)));
}

/// A destination's word that its session with a source ended (`SourceLeft`: the source may
/// have vanished without one of its own) frees that source's place, and only the places held
/// through that destination; not while an introduction of the source to it is still
/// unacknowledged, when the word is about an earlier session and the source is back.
#[test]
fn a_destinations_word_frees_a_vanished_sources_place_but_not_a_returning_ones() {
    use crate::rendezvous::messages::ClientMessage;
    let mut h = Harness::new(server_config(false));
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    let (server_token, client_token) = create(&mut h, master, "/web", Some(1));
    let exposer = daemon(&mut h, &server_token, &[], &["/web"]);
    let first = daemon(&mut h, &client_token, &[], &[]);
    let second = daemon(&mut h, &client_token, &[], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, first, "/web"), Ok(key(exposer)));
    assert_eq!(lookup(&mut h, second, "/web"), Err(ErrorCode::TooMany));
    // Another daemon's word, or the exposer's about a key it was never introduced to, frees
    // nothing.
    h.with(second, |c, _| c.source_left(key(first)));
    h.with(exposer, |c, _| c.source_left(key(second)));
    h.run(SECOND);
    assert_eq!(shown(&mut h, master, "/web"), (1, Some(1)));
    h.with(exposer, |c, _| c.source_left(key(first)));
    h.run(SECOND);
    assert_eq!(shown(&mut h, master, "/web"), (0, Some(1)));
    assert_eq!(lookup(&mut h, second, "/web"), Ok(key(exposer)));

    // The word crosses a new introduction of the same source, still unacknowledged: the
    // place stays.
    h.set_online(exposer, false);
    h.with(second, |c, now| c.lookup(now, name("/web")));
    h.run(SECOND);
    let (now, addr) = (h.now, h.addr(exposer));
    let word = ClientMessage::SourceLeft {
        source: key(second),
    };
    h.server_mut()
        .handle_message(now, key(exposer), addr, word, None);
    assert_eq!(shown(&mut h, master, "/web"), (1, Some(1)));
}
