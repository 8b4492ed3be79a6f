//! Sessions end to end through the [`Pair`] harness: handshakes, data, bad input, rekeying,
//! keepalives, timeouts, restarts, cookies and path changes.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::pair::{Pair, Side, key};
use crate::Endpoint;
use crate::config::{Config, PeerPolicy};
use crate::error::CloseReason;
use crate::event::Event;
use crate::wire::control::CloseCode;
use crate::wire::header::PacketKind;

fn closes(events: &[Event]) -> Vec<CloseReason> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SessionClosed { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

fn is_transport(payload: &[u8]) -> bool {
    payload.get(1) == Some(&(PacketKind::Transport as u8))
}

#[test]
fn handshake_completes_and_datagrams_flow_both_ways() {
    let mut pair = Pair::pair();
    let (a_peer, b_peer) = pair.connect();
    let now = pair.now;
    pair.a()
        .send_datagram(now, a_peer, b"hello from a")
        .unwrap();
    pair.b()
        .send_datagram(now, b_peer, b"hello from b")
        .unwrap();
    pair.run_for(Duration::from_millis(50));
    assert_eq!(
        pair.datagrams(Side::B),
        vec![Bytes::from_static(b"hello from a")]
    );
    assert_eq!(
        pair.datagrams(Side::A),
        vec![Bytes::from_static(b"hello from b")]
    );
    assert_eq!(pair.a().stats().handshakes_completed, 1);
    assert_eq!(pair.b().stats().handshakes_completed, 1);
    // The responder learned who we are from the handshake itself.
    let a_key = pair.a().public_key();
    assert!(
        pair.b_events()
            .iter()
            .any(|e| matches!(e, Event::Connected { key: k, .. } if *k == a_key))
    );
}

#[test]
fn datagrams_sent_before_the_handshake_are_queued_and_delivered_in_order() {
    let mut pair = Pair::pair();
    let (b_key, b_addr, now) = (pair.b().public_key(), pair.b_addr(), pair.now);
    let peer = pair.a().connect(now, b_key, b_addr).unwrap();
    for i in 0..5u8 {
        pair.a().send_datagram(now, peer, &[i; 100]).unwrap();
    }
    pair.run_for(Duration::from_millis(100));
    let got: Vec<u8> = pair.datagrams(Side::B).iter().map(|d| d[0]).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
}

#[test]
fn wrong_responder_key_fails_the_handshake_with_a_clear_event() {
    let mut pair = Pair::pair();
    let wrong = key(9).public_key();
    let (b_addr, now) = (pair.b_addr(), pair.now);
    let peer = pair.a().connect(now, wrong, b_addr).unwrap();
    pair.a().send_datagram(now, peer, b"secret").unwrap();
    pair.run_for(Duration::from_secs(60));
    assert_eq!(closes(pair.a_events()), vec![CloseReason::HandshakeTimeout]);
    assert!(
        pair.b_events().is_empty(),
        "B delivered or reported something: {:?}",
        pair.b_events()
    );
    assert!(
        pair.b().stats().dropped_bad_mac >= 3,
        "every attempt is dropped at mac1"
    );
    assert_eq!(pair.a().session_count(), 0);
    assert_eq!(pair.a().poll_timeout(), None, "nothing left to do");
}

#[test]
fn unknown_initiator_key_is_rejected_and_nothing_is_delivered() {
    let mut b_config = Config::new(key(2));
    b_config.peers = PeerPolicy::Authorized(BTreeSet::from([key(7).public_key()]));
    let mut pair = Pair::with_configs(Config::new(key(1)), b_config);
    let (b_key, b_addr, now) = (pair.b().public_key(), pair.b_addr(), pair.now);
    let peer = pair.a().connect(now, b_key, b_addr).unwrap();
    pair.a().send_datagram(now, peer, b"let me in").unwrap();
    pair.run_for(Duration::from_secs(60));
    let a_key = pair.a().public_key();
    assert!(
        pair.b_events()
            .iter()
            .all(|e| matches!(e, Event::PeerRejected { key, .. } if *key == a_key))
    );
    assert!(!pair.b_events().is_empty());
    assert!(pair.b().stats().dropped_unknown_peer >= 1);
    assert_eq!(pair.b().session_count(), 0);
    assert_eq!(closes(pair.a_events()), vec![CloseReason::HandshakeTimeout]);
}

#[test]
fn replayed_transport_packets_are_dropped_and_counted() {
    let mut pair = Pair::pair();
    let (a_peer, _) = pair.connect();
    let now = pair.now;
    pair.a().send_datagram(now, a_peer, b"once").unwrap();
    pair.run_for(Duration::from_millis(50));
    let transports: Vec<Bytes> = pair
        .sent_by(Side::A)
        .into_iter()
        .filter(|t| is_transport(t))
        .collect();
    assert!(
        transports.len() >= 2,
        "keepalive confirmation and the datagram"
    );
    for payload in &transports {
        pair.put_on_link(Side::A, payload.clone());
    }
    pair.run_for(Duration::from_millis(50));
    assert_eq!(pair.datagrams(Side::B), vec![Bytes::from_static(b"once")]);
    assert_eq!(pair.b().stats().dropped_replay, transports.len() as u64);
}

#[test]
fn packets_older_than_the_replay_window_are_dropped() {
    let mut pair = Pair::pair();
    let (a_peer, _) = pair.connect();
    // Hold the first datagram back, deliver a window's worth and more later ones, then
    // release it.
    pair.filter = Some(Box::new(|from, _, t| {
        from != Side::A.index() || !is_transport(t)
    }));
    let now = pair.now;
    pair.a().send_datagram(now, a_peer, b"late").unwrap();
    pair.collect();
    let held = pair.sent.last().expect("sent").transmit.payload.clone();
    pair.filter = None;
    let later = crate::crypto::REPLAY_WINDOW as usize + 100;
    for i in 0..later {
        let now = pair.now;
        pair.a()
            .send_datagram(now, a_peer, &i.to_be_bytes())
            .unwrap();
    }
    pair.run_for(Duration::from_millis(100));
    assert_eq!(pair.datagrams(Side::B).len(), later);
    pair.put_on_link(Side::A, held);
    pair.run_for(Duration::from_millis(100));
    assert_eq!(
        pair.datagrams(Side::B).len(),
        later,
        "a packet behind the window was delivered"
    );
    assert_eq!(pair.b().stats().dropped_replay, 1);
}

#[test]
fn truncated_and_tampered_packets_are_never_delivered() {
    let mut pair = Pair::pair();
    let (a_peer, _) = pair.connect();
    let now = pair.now;
    // Keep the genuine datagram off the link: only forgeries made from it reach B.
    pair.filter = Some(Box::new(|from, _, t| {
        from != Side::A.index() || !is_transport(t)
    }));
    pair.a().send_datagram(now, a_peer, b"genuine").unwrap();
    pair.collect();
    let genuine = pair.sent.last().expect("sent").transmit.payload.clone();
    for i in 0..genuine.len() {
        let mut forged = genuine.to_vec();
        forged[i] ^= 0x40;
        pair.put_on_link(Side::A, forged.into());
        pair.put_on_link(Side::A, genuine.slice(..i));
    }
    pair.run_for(Duration::from_millis(50));
    assert!(pair.datagrams(Side::B).is_empty());
    let s = pair.b().stats();
    let dropped = s.dropped_malformed + s.dropped_auth + s.dropped_unknown_index + s.dropped_replay;
    assert_eq!(dropped, 2 * genuine.len() as u64, "{s:?}");
}

#[test]
fn replayed_initiation_is_dropped_and_does_not_disturb_the_session() {
    let mut pair = Pair::pair();
    let (a_peer, _) = pair.connect();
    let init = pair
        .sent_by(Side::A)
        .into_iter()
        .find(|t| t[1] == PacketKind::Initiation as u8)
        .expect("A initiated");
    pair.put_on_link(Side::A, init);
    pair.run_for(Duration::from_millis(50));
    assert_eq!(pair.b().stats().dropped_handshake_replay, 1);
    let now = pair.now;
    pair.a().send_datagram(now, a_peer, b"still here").unwrap();
    pair.run_for(Duration::from_millis(50));
    assert_eq!(
        pair.datagrams(Side::B),
        vec![Bytes::from_static(b"still here")]
    );
}

#[test]
fn sessions_rekey_by_time_without_losing_data() {
    let mut pair = Pair::pair();
    let (a_peer, b_peer) = pair.connect();
    for i in 0..600u32 {
        let now = pair.now;
        pair.a()
            .send_datagram(now, a_peer, &i.to_be_bytes())
            .unwrap();
        pair.b()
            .send_datagram(now, b_peer, &i.to_be_bytes())
            .unwrap();
        pair.run_for(Duration::from_secs(1));
    }
    assert_eq!(pair.datagrams(Side::B).len(), 600);
    assert_eq!(pair.datagrams(Side::A).len(), 600);
    assert!(closes(pair.a_events()).is_empty() && closes(pair.b_events()).is_empty());
    // Ten minutes at one rekey per two minutes.
    let rekeys = pair.a().stats().handshakes_completed;
    assert!(
        (4..=7).contains(&rekeys),
        "{rekeys} handshakes in ten minutes"
    );
}

#[test]
fn sessions_rekey_by_packet_count_without_losing_data() {
    let mut a_config = Config::new(key(1));
    a_config.session.rekey_after_packets = 20;
    let mut pair = Pair::with_configs(a_config, Config::new(key(2)));
    let (a_peer, _) = pair.connect();
    for i in 0..200u32 {
        let now = pair.now;
        pair.a()
            .send_datagram(now, a_peer, &i.to_be_bytes())
            .unwrap();
        pair.run_for(Duration::from_millis(5));
    }
    pair.run_for(Duration::from_millis(100));
    let got: Vec<u32> = pair
        .datagrams(Side::B)
        .iter()
        .map(|d| u32::from_be_bytes(d[..4].try_into().unwrap()))
        .collect();
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    assert!(
        pair.a().stats().handshakes_completed >= 8,
        "{:?}",
        pair.a().stats()
    );
}

#[test]
fn keepalives_hold_an_idle_session_open() {
    let mut pair = Pair::pair();
    pair.connect();
    pair.run_for(Duration::from_secs(600));
    assert!(closes(pair.a_events()).is_empty() && closes(pair.b_events()).is_empty());
    // Roughly one keepalive per interval each way; nothing like a busy loop.
    let sent = pair.a().stats().datagrams_out;
    assert!(
        (30..=60).contains(&sent),
        "A sent {sent} datagrams in ten idle minutes"
    );
}

#[test]
fn a_vanished_peer_ends_in_idle_timeout() {
    let mut pair = Pair::pair();
    pair.connect();
    pair.filter = Some(Box::new(|_, _, _| false));
    pair.run_for(Duration::from_secs(120));
    assert_eq!(closes(pair.a_events()), vec![CloseReason::IdleTimeout]);
    assert_eq!(closes(pair.b_events()), vec![CloseReason::IdleTimeout]);
    assert_eq!((pair.a().session_count(), pair.b().session_count()), (0, 0));
    assert_eq!(pair.a().poll_timeout(), None);
}

#[test]
fn close_tells_the_peer() {
    let mut pair = Pair::pair();
    let (a_peer, _) = pair.connect();
    let now = pair.now;
    pair.a().close(now, a_peer);
    pair.run_for(Duration::from_millis(50));
    assert_eq!(closes(pair.a_events()), vec![CloseReason::Local]);
    assert_eq!(
        closes(pair.b_events()),
        vec![CloseReason::Peer(CloseCode::Normal)]
    );
    assert_eq!(
        pair.a().send_datagram(now, a_peer, b"x"),
        Err(crate::SendError::UnknownPeer)
    );
}

#[test]
fn a_restarted_peer_gets_a_new_session() {
    let mut pair = Pair::pair();
    let (a_peer, _) = pair.connect();
    // B restarts: same key, fresh state, new instance.
    let now = pair.now;
    *pair.b() = Endpoint::new(
        Config::new(key(2)),
        [0xC; 32],
        now,
        Duration::from_secs(1_800_000_100),
    );
    pair.run_for(Duration::from_secs(40));
    let a_closes = closes(pair.a_events());
    assert_eq!(a_closes, vec![CloseReason::PeerRestarted]);
    let new_peer = pair
        .a_events()
        .iter()
        .filter_map(|e| match e {
            Event::Connected { peer, .. } => Some(*peer),
            _ => None,
        })
        .last()
        .unwrap();
    assert_ne!(new_peer, a_peer);
    let now = pair.now;
    pair.a()
        .send_datagram(now, new_peer, b"after restart")
        .unwrap();
    pair.run_for(Duration::from_millis(50));
    assert_eq!(
        pair.datagrams(Side::B),
        vec![Bytes::from_static(b"after restart")]
    );
}

#[test]
fn simultaneous_connect_converges_on_one_session() {
    let mut pair = Pair::pair();
    let now = pair.now;
    let (a_key, b_key, a_addr, b_addr) = (
        pair.a().public_key(),
        pair.b().public_key(),
        pair.a_addr(),
        pair.b_addr(),
    );
    let a_peer = pair.a().connect(now, b_key, b_addr).unwrap();
    let b_peer = pair.b().connect(now, a_key, a_addr).unwrap();
    pair.run_for(Duration::from_millis(200));
    let connected = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e, Event::Connected { .. }))
            .count()
    };
    assert_eq!(
        (connected(pair.a_events()), connected(pair.b_events())),
        (1, 1)
    );
    let now = pair.now;
    pair.a().send_datagram(now, a_peer, b"a").unwrap();
    pair.b().send_datagram(now, b_peer, b"b").unwrap();
    pair.run_for(Duration::from_millis(50));
    assert_eq!(pair.datagrams(Side::B).len(), 1);
    assert_eq!(pair.datagrams(Side::A).len(), 1);
}

#[test]
fn under_load_the_responder_demands_a_cookie_first() {
    let mut b_config = Config::new(key(2));
    b_config.session.handshake_load_threshold = 0;
    let mut pair = Pair::with_configs(Config::new(key(1)), b_config);
    let (b_key, b_addr, now) = (pair.b().public_key(), pair.b_addr(), pair.now);
    let peer = pair.a().connect(now, b_key, b_addr).unwrap();
    pair.run_for(Duration::from_secs(5));
    assert!(pair.a().is_connected(peer));
    let s = pair.b().stats();
    assert_eq!((s.cookies_sent, s.dropped_no_cookie), (1, 1), "{s:?}");
}

#[test]
fn a_nat_rebinding_moves_the_session_to_the_new_address() {
    let mut pair = Pair::pair();
    let (a_peer, b_peer) = pair.connect();
    let rebound: std::net::SocketAddr = "10.0.0.2:3333".parse().unwrap();
    pair.hosts[Side::B.index()].seen_as = Some(rebound);
    let now = pair.now;
    pair.b()
        .send_datagram(now, b_peer, b"from the new port")
        .unwrap();
    pair.run_for(Duration::from_millis(50));
    assert!(
        pair.a_events()
            .iter()
            .any(|e| matches!(e, Event::PathChanged { path, .. } if path.addr() == rebound))
    );
    assert_eq!(pair.a().peer_addr(a_peer), Some(rebound));
}

#[test]
fn same_seeds_give_byte_identical_runs() {
    let run = || {
        let mut pair = Pair::pair();
        let (a_peer, _) = pair.connect();
        for i in 0..10u8 {
            let now = pair.now;
            pair.a().send_datagram(now, a_peer, &[i; 64]).unwrap();
            pair.run_for(Duration::from_secs(30));
        }
        pair.sent
            .iter()
            .map(|s| s.transmit.payload.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever arrives, the endpoint neither panics nor delivers it, and counts it once.
    #[test]
    fn arbitrary_datagrams_are_counted_never_delivered(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
        burrow_prefix: bool,
    ) {
        let mut pair = Pair::pair();
        pair.connect();
        let before = pair.b().stats().clone();
        let events_before = pair.b_events().len();
        let n = datagrams.len() as u64;
        for mut d in datagrams {
            if burrow_prefix && d.len() >= 2 {
                d[0] = 0xB1;
                d[1] = (d[1] % 4) + 1;
            }
            pair.put_on_link(Side::A, d.into());
        }
        pair.run_for(Duration::from_millis(20));
        let s = pair.b().stats();
        let dropped = |s: &crate::Stats| s.dropped_malformed + s.dropped_bad_mac + s.dropped_unknown_index
            + s.dropped_auth + s.dropped_replay + s.stun_received + s.dropped_unexpected;
        prop_assert_eq!(dropped(s) - dropped(&before), n);
        prop_assert_eq!(pair.b_events().len(), events_before);
    }
}

#[test]
fn stun_probes_learn_the_address_a_server_sees() {
    let mut b_config = Config::new(key(2));
    b_config.answer_stun = true;
    let mut pair = Pair::with_configs(Config::new(key(1)), b_config);
    let seen_as: std::net::SocketAddr = "198.51.100.20:4000".parse().unwrap();
    pair.hosts[Side::A.index()].addr = seen_as;
    let (now, b_addr) = (pair.now, pair.b_addr());
    pair.a().stun_probe(now, b_addr);
    pair.run_for(Duration::from_secs(1));
    let outcome = crate::stun::ProbeOutcome::Mapped {
        server: b_addr,
        mapped: seen_as,
    };
    assert_eq!(*pair.a_events(), vec![Event::Stun(outcome)]);
    assert_eq!(pair.a().poll_timeout(), None, "the probe is finished");
}

#[test]
fn stun_probes_to_a_silent_server_time_out() {
    let mut pair = Pair::pair(); // B does not answer STUN
    let (now, b_addr) = (pair.now, pair.b_addr());
    pair.a().stun_probe(now, b_addr);
    pair.run_for(Duration::from_secs(20));
    assert_eq!(
        *pair.a_events(),
        vec![Event::Stun(crate::stun::ProbeOutcome::TimedOut {
            server: b_addr
        })]
    );
    assert_eq!(pair.b().stats().stun_received, 5);
}

/// A daemon whose route policy is relay-only answers no direct handshake, not even from a key
/// no server introduced; its server's own session is direct and still allowed.
#[test]
fn relay_only_daemon_refuses_direct_handshakes_from_strangers() {
    use crate::config::RendezvousConfig;
    use crate::path::RoutePolicy;
    let server = key(9).public_key();
    let stranger = Config::new(key(1));
    let mut rendezvous = RendezvousConfig::new(server, "10.0.0.9:7000".parse().unwrap(), "t");
    rendezvous.route = RoutePolicy::Relay;
    let mut daemon = Config::daemon(key(2), rendezvous);
    // Admitted by key, so that the route policy is what refuses it.
    daemon.peers = PeerPolicy::AnyKey;
    let mut pair = Pair::with_configs(stranger, daemon);
    let (now, b_key, b_addr) = (pair.now, pair.b().public_key(), pair.b_addr());
    pair.a().connect(now, b_key, b_addr).unwrap();
    pair.run_for(Duration::from_secs(3));
    assert!(
        !pair
            .a_events()
            .iter()
            .any(|e| matches!(e, Event::Connected { .. })),
        "{:?}",
        pair.a_events()
    );
    assert!(pair.b().stats().dropped_route_policy > 0);
}

/// A ping comes back as `Pong` with the path that answered and the round trip; it moves
/// nothing. Pings need the session up, and the ones awaiting an answer are bounded.
#[test]
fn a_ping_times_the_current_path_and_waits_for_the_session() {
    use crate::error::SendError;
    use crate::path::Path;
    let mut pair = Pair::pair();
    let (b_key, b_addr, now) = (pair.b().public_key(), pair.b_addr(), pair.now);
    let early = pair.a().connect(now, b_key, b_addr).expect("valid key");
    assert_eq!(pair.a().ping(now, early), Err(SendError::NotConnected));
    pair.run_for(Duration::from_millis(100));
    let now = pair.now;
    pair.a().ping(now, early).expect("connected");
    pair.run_for(Duration::from_millis(100));
    let pongs: Vec<_> = pair
        .a_events()
        .iter()
        .filter_map(|e| match e {
            Event::Pong { peer, path, rtt } => Some((*peer, *path, *rtt)),
            _ => None,
        })
        .collect();
    // The test link takes 10 ms each way.
    assert_eq!(
        pongs,
        vec![(early, Path::Direct(b_addr), Duration::from_millis(20))]
    );
    assert_eq!(pair.a().stats().direct_upgrades, 0, "a pong is no upgrade");
    // Unanswered pings are bounded: B's answers are lost for a while.
    pair.filter = Some(Box::new(|from, _, _| from != Side::B.index()));
    for _ in 0..40 {
        let now = pair.now;
        pair.a().ping(now, early).expect("connected");
    }
    pair.run_for(Duration::from_millis(100));
    pair.filter = None;
    let now = pair.now;
    pair.a().ping(now, early).expect("connected");
    pair.run_for(Duration::from_millis(100));
    let count = |pair: &Pair| {
        pair.a_events()
            .iter()
            .filter(|e| matches!(e, Event::Pong { .. }))
            .count()
    };
    assert_eq!(
        count(&pair),
        2,
        "the lost ones never answer; the new one does"
    );
    assert_eq!(
        pair.a().ping(now, crate::PeerId(999)),
        Err(SendError::UnknownPeer)
    );
}
