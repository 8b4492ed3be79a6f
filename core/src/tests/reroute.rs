//! Routing changed at run time ([`crate::Endpoint::set_routing`], a reloaded config): a new
//! `[[peer]]` is met, a removed one is let go (its session closed), a changed one is met
//! anew; bad routing changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use super::meet::{A, B, Net};
use crate::ServiceError;
use crate::config::PeerConfig;
use crate::endpoint::Routing;
use crate::event::Event;
use crate::path::RoutePolicy;

fn ready(net: &Net, me: usize) -> usize {
    net.events[me]
        .iter()
        .filter(|e| matches!(e, Event::PeerReady { .. }))
        .count()
}

fn closed(net: &Net, me: usize) -> usize {
    net.events[me]
        .iter()
        .filter(|e| matches!(e, Event::SessionClosed { .. }))
        .count()
}

#[test]
fn a_new_peer_is_met_a_removed_one_let_go_and_a_changed_one_met_anew() {
    let mut net = Net::with(|_, _| {});
    net.run_for(Duration::from_secs(2));
    assert!(net.registered(A) && net.registered(B));
    let (a_key, b_key) = (net.eps[A].public_key(), net.eps[B].public_key());
    let now = net.now;
    net.eps[B].meet(now, a_key).unwrap();
    let routing = |route: Option<RoutePolicy>| Routing {
        peers: BTreeMap::from([(
            b_key,
            PeerConfig {
                allow: Vec::new(),
                route,
            },
        )]),
        ..Routing::default()
    };
    let changed = net.eps[A].set_routing(now, routing(None)).unwrap();
    assert_eq!(changed, vec![format!("[[peer]] {b_key} met")]);
    net.run_for(Duration::from_secs(5));
    assert_eq!((ready(&net, A), ready(&net, B)), (1, 1), "{:?}", net.events);
    assert_eq!(net.eps[A].routing().unwrap().peers.len(), 1);

    // The same routing again changes nothing.
    let now = net.now;
    assert!(
        net.eps[A]
            .set_routing(now, routing(None))
            .unwrap()
            .is_empty()
    );

    // Another route for it: let go and met again (B asks again when its session ends).
    let changed = net.eps[A]
        .set_routing(now, routing(Some(RoutePolicy::Relay)))
        .unwrap();
    assert_eq!(changed, vec![format!("[[peer]] {b_key} met anew")]);
    net.run_for(Duration::from_secs(10));
    assert_eq!(closed(&net, A), 1, "{:?}", net.events[A]);
    assert_eq!(ready(&net, A), 2, "{:?}", net.events[A]);
    let peer = net.eps[A].peer_of(&b_key).expect("a session again");
    assert!(net.eps[A].peer_path(peer).is_some_and(|p| p.is_relay()));

    // Removed: the session closes and A does not ask for B again.
    let now = net.now;
    let changed = net.eps[A].set_routing(now, Routing::default()).unwrap();
    assert_eq!(changed, vec![format!("[[peer]] {b_key} let go")]);
    net.run_for(Duration::from_secs(10));
    assert_eq!(closed(&net, A), 2, "{:?}", net.events[A]);
    assert_eq!(ready(&net, A), 2, "no meeting after it was let go");
    assert!(net.eps[A].peer_of(&b_key).is_none());
    assert!(net.eps[A].routing().unwrap().peers.is_empty());
}

#[test]
fn bad_routing_changes_nothing() {
    let mut net = Net::with(|_, _| {});
    net.run_for(Duration::from_secs(2));
    let now = net.now;
    let own = net.eps[A].public_key();
    let peer = |n: u8| (super::pair::key(n + 20).public_key(), PeerConfig::default());
    for peers in [
        BTreeMap::from([(own, PeerConfig::default())]),
        (0..=crate::config::MAX_PEERS as u8).map(peer).collect(),
    ] {
        let routing = Routing {
            peers,
            ..Routing::default()
        };
        assert!(matches!(
            net.eps[A].set_routing(now, routing),
            Err(ServiceError::Invalid(_))
        ));
        assert_eq!(net.eps[A].routing(), Some(Routing::default()));
    }
}
