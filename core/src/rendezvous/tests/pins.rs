//! A fixed path's pinned client keys pushed to the daemon exposing it
//! ([`ServerMessage::Pins`]): after it registers, before the introduction of a newly pinned
//! key, after the master's reload, with a master's own key while it is introduced, and
//! through loss.

use std::time::Duration;

use super::authority::{admin, daemon, lookup, server_config};
use super::*;
use crate::rendezvous::directory::AdminCommand;

const SECOND: Duration = Duration::from_secs(1);

/// The pins daemon `i` was told of for /ssh, in order.
fn pins(h: &Harness, i: usize) -> Vec<Vec<PublicKey>> {
    h.events(i)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Pins { name: n, clients } if n == name("/ssh") => Some(clients),
            _ => None,
        })
        .collect()
}

#[test]
fn the_exposing_daemon_learns_a_fixed_paths_pins_before_each_new_client() {
    let mut h = Harness::new(server_config(true));
    let exposer = daemon(&mut h, "S", &[], &["/ssh"]);
    let first = daemon(&mut h, "C", &[], &[]);
    let second = daemon(&mut h, "C", &[], &[]);
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    assert_eq!(pins(&h, exposer), [Vec::new()], "at registration: none yet");

    assert_eq!(lookup(&mut h, first, "/ssh"), Ok(key(exposer)));
    assert_eq!(pins(&h, exposer).last(), Some(&vec![key(first)]));
    // Told before the introduction: the pins come first among the exposer's events.
    let events = h.events(exposer);
    let told = events
        .iter()
        .position(|e| matches!(e, ClientEvent::Pins { clients, .. } if !clients.is_empty()));
    let introduced = events
        .iter()
        .position(|e| matches!(e, ClientEvent::Introduced { .. }));
    assert!(told < introduced, "{events:?}");
    // The same key again changes nothing; another is refused and changes nothing.
    assert_eq!(lookup(&mut h, first, "/ssh"), Ok(key(exposer)));
    assert_eq!(lookup(&mut h, second, "/ssh"), Err(ErrorCode::NotPinned));
    assert_eq!(pins(&h, exposer).len(), 2);

    // The master reloads: the exposer hears at once that no key is pinned.
    let reload = AdminCommand::Reload { name: name("/ssh") };
    assert!(admin(&mut h, master, "M", reload).is_ok());
    assert_eq!(pins(&h, exposer).last(), Some(&Vec::new()));
    assert_eq!(lookup(&mut h, second, "/ssh"), Ok(key(exposer)));
    assert_eq!(pins(&h, exposer).last(), Some(&vec![key(second)]));
    // The master's own connection is never pinned in the store, but the destination is told
    // to admit it.
    assert_eq!(lookup(&mut h, master, "/ssh"), Ok(key(exposer)));
    let mut both = vec![key(second), key(master)];
    both.sort();
    let mut told = pins(&h, exposer).last().cloned().unwrap_or_default();
    told.sort();
    assert_eq!(told, both);
    let acme = "acme".parse().unwrap();
    let stored = h.server().directory().path(&acme, &name("/ssh")).unwrap();
    assert!(!stored.clients.contains(&key(master)));
}

#[test]
fn pins_reach_the_exposing_daemon_through_loss() {
    let mut h = Harness::new(server_config(true));
    let exposer = daemon(&mut h, "S", &[], &["/ssh"]);
    let client = daemon(&mut h, "C", &[], &[]);
    h.run(SECOND);
    h.impair(7, 300, 100);
    let request = h.with(client, |c, now| c.lookup(now, name("/ssh")));
    h.run(15 * SECOND);
    assert!(
        h.events(client).iter().any(|e| matches!(e,
            ClientEvent::Introduced { request: Some(r), .. } if *r == request)),
        "{:?}",
        h.events(client)
    );
    assert_eq!(pins(&h, exposer).last(), Some(&vec![key(client)]));
}
