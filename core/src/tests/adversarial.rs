//! Adversarial tests of the session layer: endpoints on the test network, where an attacker
//! can drop, duplicate, delay, replay, forge and mutate datagrams, with invariants checked
//! after every call, plus targeted attacks (cookie floods, forged handshake messages, index
//! collisions, counter limits, unconfirmed handshakes) and regressions for the bugs found.
//!
//! The network ([`super::net::Net`]) routes by `Transmit::dst` (a session whose path was moved
//! elsewhere really loses its packets), calls `handle_timeout` only on the endpoint whose
//! deadline is due, and fails as soon as `poll_timeout` returns a deadline at or before the
//! `now` of the `handle_timeout` call that just ran (a busy loop). [`Net`] here adds what the
//! checker knows of each application and checks every event.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::net::{self, Link, Machine, Origin, Step};
use super::pair::key;
use crate::Endpoint;
use crate::config::Config;
use crate::crypto::cookie::{CookieChecker, CookieJar, MacKeys};
use crate::crypto::{PublicKey, SecretKey};
use crate::error::CloseReason;
use crate::event::{Event, PeerId};
use crate::session::handshake::{self, HandshakePayload};
use crate::transmit::Transmit;
use crate::wire::header::PacketKind;
use crate::wire::header::{self, MAC_LEN};

/// Wall-clock time at the origin of virtual time.
const UNIX: Duration = Duration::from_secs(1_800_000_000);
/// Node indices in two-node nets.
const A: usize = 0;
const B: usize = 1;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn attacker() -> SocketAddr {
    addr("10.6.6.6:666")
}

fn kind(bytes: &[u8]) -> Option<u8> {
    bytes.get(1).copied()
}

fn is_kind(bytes: &[u8], k: PacketKind) -> bool {
    kind(bytes) == Some(k as u8)
}

/// Tiny deterministic generator for loss decisions and forged bytes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.next() as u8;
        }
        out
    }
}

/// One endpoint and what the checker knows about its application.
struct Node {
    ep: Endpoint,
    config: Config,
    /// The application's handle for its peer: from `connect` or `Connected`, until closed.
    handle: Option<PeerId>,
    connected: BTreeSet<PeerId>,
    closed: BTreeSet<PeerId>,
    peer_keys: BTreeMap<PeerId, PublicKey>,
    /// Payload ids delivered to this node's application, across restarts.
    delivered: BTreeSet<u64>,
    restarts: u8,
}

impl Machine for Node {
    type Event = Event;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.ep.handle_input(now, from, bytes);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        self.ep.poll_transmit()
    }

    fn poll_event(&mut self, _now: Instant) -> Option<Event> {
        self.ep.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout().map(|(at, _)| at)
    }

    fn check(&self) {
        self.ep.check_deadline_index();
    }
}

/// Endpoints on the test network, with the checker's view of their applications.
struct Net {
    net: net::Net<Node>,
    /// Every application payload id ever sent, with its sender.
    sent_ids: BTreeMap<u64, usize>,
    next_id: u64,
}

impl Deref for Net {
    type Target = net::Net<Node>;

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
    fn new(configs: Vec<Config>) -> Self {
        let origin = super::origin();
        let mut net = net::Net::new(origin, Link::clean(Duration::from_millis(10)), 0);
        for (i, config) in configs.into_iter().enumerate() {
            let node = Node {
                ep: Endpoint::new(config.clone(), [i as u8 + 1; 32], origin, UNIX),
                config,
                handle: None,
                connected: BTreeSet::new(),
                closed: BTreeSet::new(),
                peer_keys: BTreeMap::new(),
                delivered: BTreeSet::new(),
                restarts: 0,
            };
            net.add(
                node,
                SocketAddr::from(([10, 0, 0, i as u8 + 1], 1000 + i as u16)),
            );
        }
        Self {
            net,
            sent_ids: BTreeMap::new(),
            next_id: 0,
        }
    }

    /// A (key 1) and B (key 2) with default configs.
    fn pair() -> Self {
        Self::new(vec![Config::new(key(1)), Config::new(key(2))])
    }

    fn public(&self, i: usize) -> PublicKey {
        self.hosts[i].m.ep.public_key()
    }

    fn ep(&mut self, i: usize) -> &mut Endpoint {
        &mut self.hosts[i].m.ep
    }

    /// Drains node `i`'s output, checking every event.
    fn drain(&mut self, i: usize) -> Vec<Event> {
        let events = self.net.drain(i);
        for e in &events {
            self.check_event(i, e);
        }
        events
    }

    /// The event invariants: `Connected` at most once per handle, nothing for a handle after
    /// its `SessionClosed`, datagrams only from a peer's application, each delivered once.
    fn check_event(&mut self, i: usize, e: &Event) {
        let at = self.at();
        let node = &mut self.net.hosts[i].m;
        match e {
            Event::Connected { peer, key, .. } => {
                assert!(
                    !node.closed.contains(peer),
                    "node {i} at {at:?}: Connected for closed {peer}"
                );
                assert!(
                    node.connected.insert(*peer),
                    "node {i} at {at:?}: Connected twice for {peer}"
                );
                node.peer_keys.insert(*peer, *key);
                node.handle = Some(*peer);
            }
            Event::Datagram { peer, data } => {
                assert!(
                    !node.closed.contains(peer) && node.connected.contains(peer),
                    "node {i} at {at:?}: Datagram for {peer}, which is closed or never connected"
                );
                assert!(
                    data.len() >= 9 && data[0] == 0xDA,
                    "foreign bytes delivered"
                );
                let id = u64::from_be_bytes(data[1..9].try_into().expect("8 bytes"));
                let sender = *self
                    .sent_ids
                    .get(&id)
                    .unwrap_or_else(|| panic!("node {i}: delivered id {id} nobody sent"));
                assert_ne!(sender, i, "node {i} got its own datagram back");
                let expected = self.public(sender);
                let node = &mut self.net.hosts[i].m;
                assert_eq!(node.peer_keys.get(peer), Some(&expected), "wrong peer");
                assert!(
                    node.delivered.insert(id),
                    "node {i} at {at:?}: datagram {id} delivered twice"
                );
            }
            Event::PathChanged { peer, .. } => {
                assert!(
                    !node.closed.contains(peer),
                    "node {i}: PathChanged for closed {peer}"
                );
            }
            Event::SessionClosed { peer, .. } => {
                assert!(
                    node.closed.insert(*peer),
                    "node {i} at {at:?}: SessionClosed twice for {peer}"
                );
                if node.handle == Some(*peer) {
                    node.handle = None;
                }
            }
            _ => {}
        }
    }

    /// Handles the earliest delivery or deadline no later than `limit`, checking every event
    /// it causes. False if none.
    fn step(&mut self, limit: Instant) -> bool {
        let Some(at) = self.next_at().filter(|at| *at <= limit) else {
            return false;
        };
        assert!(at >= self.now, "time went backwards");
        self.now = at;
        let Some((&(fat, _), flight)) = self.flights.first_key_value() else {
            self.fire_and_check();
            return true;
        };
        if fat != at {
            self.fire_and_check();
            return true;
        }
        let i = flight.to;
        let node = &self.hosts[i].m;
        let handles: Vec<(PeerId, Option<SocketAddr>, bool)> = node
            .peer_keys
            .keys()
            .map(|&p| (p, node.ep.peer_addr(p), node.ep.is_connected(p)))
            .collect();
        let Step::Delivered {
            flight,
            replay,
            events,
        } = self.deliver_next()
        else {
            unreachable!("deliver_next delivers");
        };
        for e in &events {
            self.check_event(i, e);
        }
        if flight.origin == Origin::Forged {
            assert!(
                !events.iter().any(|e| matches!(e, Event::Datagram { .. })),
                "node {i}: forged bytes delivered a datagram"
            );
        }
        if replay {
            // A copy of bytes the node has already processed must change nothing.
            assert!(
                events.is_empty(),
                "node {i} at {:?}: a replayed {:?} packet from {} caused {events:?}",
                self.at(),
                kind(&flight.bytes),
                flight.from
            );
            for (p, addr, connected) in handles {
                assert_eq!(
                    self.hosts[i].m.ep.peer_addr(p),
                    addr,
                    "node {i} at {:?}: a replayed {:?} packet from {} moved {p}'s path",
                    self.at(),
                    kind(&flight.bytes),
                    flight.from
                );
                assert_eq!(self.hosts[i].m.ep.is_connected(p), connected);
            }
        }
        true
    }

    fn fire_and_check(&mut self) {
        let Step::Timeout(fired) = self.fire() else {
            unreachable!("fire fires");
        };
        for (i, events) in fired {
            for e in &events {
                self.check_event(i, e);
            }
        }
    }

    /// Runs `d` of virtual time, ending exactly `d` later.
    fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        for _ in 0..2_000_000 {
            if !self.step(limit) {
                self.now = limit;
                return;
            }
        }
        panic!("no quiescence within two million steps: a timer loop");
    }

    // ----- the attacker --------------------------------------------------------------------

    /// The most recent captured datagram from `from` of kind `k`.
    fn last_captured(&self, from: usize, k: PacketKind) -> usize {
        self.sent
            .iter()
            .rposition(|c| c.from == from && is_kind(&c.transmit.payload, k))
            .unwrap_or_else(|| panic!("node {from} sent no {k:?}"))
    }

    fn first_captured(&self, from: usize, k: PacketKind) -> usize {
        self.sent
            .iter()
            .position(|c| c.from == from && is_kind(&c.transmit.payload, k))
            .unwrap_or_else(|| panic!("node {from} sent no {k:?}"))
    }

    /// The bytes of captured datagram `k`.
    fn captured(&self, k: usize) -> Bytes {
        self.sent[k].transmit.payload.clone()
    }

    /// The flight `raw` picks, counting in the order the flights were sent.
    fn pick_flight(&self, raw: usize) -> Option<(Instant, u64)> {
        let mut keys: Vec<(Instant, u64)> = self.flights.keys().copied().collect();
        keys.sort_by_key(|&(_, seq)| seq);
        (!keys.is_empty()).then(|| keys[pick(raw, keys.len())])
    }

    // ----- the applications ----------------------------------------------------------------

    fn connect(&mut self, i: usize, j: usize) -> PeerId {
        let (now, key, to) = (self.now, self.public(j), self.hosts[j].addr);
        let node = &mut self.hosts[i].m;
        let peer = node.ep.connect(now, key, to).expect("not our key");
        node.handle = Some(peer);
        node.peer_keys.insert(peer, key);
        self.drain(i);
        self.check_deadline(i, false);
        peer
    }

    /// Node `i` sends a fresh datagram on its handle; returns its id if accepted.
    fn send(&mut self, i: usize) -> Option<u64> {
        let peer = self.hosts[i].m.handle?;
        let id = self.next_id;
        self.next_id += 1;
        let mut data = vec![0xDA];
        data.extend_from_slice(&id.to_be_bytes());
        data.extend_from_slice(&[i as u8; 7]);
        let now = self.now;
        let accepted = self.ep(i).send_datagram(now, peer, &data).is_ok();
        if accepted {
            self.sent_ids.insert(id, i);
        }
        self.drain(i);
        self.check_deadline(i, false);
        accepted.then_some(id)
    }

    fn close(&mut self, i: usize) {
        if let Some(peer) = self.hosts[i].m.handle {
            let now = self.now;
            self.ep(i).close(now, peer);
            self.drain(i);
            self.check_deadline(i, false);
        }
    }

    /// Node `i` restarts: same key and address, fresh state, new seed.
    fn restart(&mut self, i: usize) {
        let (now, unix) = (self.now, UNIX + self.at());
        let node = &mut self.hosts[i].m;
        node.restarts += 1;
        let seed = [0x80 | (i as u8) << 4 | node.restarts; 32];
        node.ep = Endpoint::new(node.config.clone(), seed, now, unix);
        // Handles are per endpoint: the new one starts counting again.
        node.handle = None;
        node.connected.clear();
        node.closed.clear();
        node.peer_keys.clear();
    }

    fn closes(&self, i: usize) -> Vec<CloseReason> {
        self.hosts[i]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::SessionClosed { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn connected_events(&self, i: usize) -> usize {
        self.hosts[i]
            .events
            .iter()
            .filter(|e| matches!(e, Event::Connected { .. }))
            .count()
    }

    /// Liveness: with a clean link, node `A` (re)connects when it has no session, and within
    /// `bound` both sides deliver a fresh datagram to each other.
    fn settle(&mut self, bound: Duration) {
        self.drop_next = 0;
        self.filter = None;
        let start = self.now;
        let mut probes: [BTreeSet<u64>; 2] = Default::default();
        loop {
            let done = [A, B].map(|i| {
                probes[i]
                    .iter()
                    .any(|id| self.hosts[1 - i].m.delivered.contains(id))
            });
            if done == [true, true] {
                return;
            }
            assert!(
                self.now < start + bound,
                "not live {bound:?} after the attack ended (A->B {}, B->A {}): A {:?} B {:?}\n\
                 A events {:?}\nB events {:?}",
                done[A],
                done[B],
                self.hosts[A].m.ep,
                self.hosts[B].m.ep,
                self.hosts[A]
                    .events
                    .iter()
                    .rev()
                    .take(6)
                    .collect::<Vec<_>>(),
                self.hosts[B]
                    .events
                    .iter()
                    .rev()
                    .take(6)
                    .collect::<Vec<_>>(),
            );
            if self.hosts[A].m.handle.is_none() {
                self.connect(A, B);
            }
            for i in [A, B] {
                let node = &self.hosts[i].m;
                let live = node.handle.is_some_and(|h| node.ep.is_connected(h));
                if live && !done[i] {
                    if let Some(id) = self.send(i) {
                        probes[i].insert(id);
                    }
                }
            }
            self.run_for(Duration::from_secs(1));
        }
    }

    /// No busy loop: over `d` of idle time, at most `per_second` `handle_timeout` calls in any
    /// virtual second and `total` overall, per node.
    fn assert_quiet(&mut self, d: Duration, per_second: u32, total: u32) {
        let from = self.at().as_secs();
        self.run_for(d);
        for (i, host) in self.hosts.iter().enumerate() {
            let calls: Vec<u32> = host.timeouts.range(from..).map(|(_, n)| *n).collect();
            let (max, sum) = (
                calls.iter().copied().max().unwrap_or(0),
                calls.iter().sum::<u32>(),
            );
            assert!(
                max <= per_second && sum <= total,
                "node {i}: {sum} handle_timeout calls in {d:?}, up to {max} in one second"
            );
            let ep = &host.m.ep;
            assert!(
                ep.index_count() <= 4 * ep.session_count(),
                "node {i}: {} indices for {} sessions",
                ep.index_count(),
                ep.session_count()
            );
        }
    }
}

// ----- the random-interaction proptest ---------------------------------------------------------

/// One step of the random interaction. `usize` fields pick an element of a collection the way
/// `proptest::sample::Index` does (a fixed-point fraction of its length), so that shrunk
/// cases can be written down as regression tests.
#[derive(Clone, Debug)]
enum Op {
    Connect(bool),
    Send(bool),
    DropNext,
    Duplicate(usize),
    Reorder(usize, u16),
    Replay(usize, bool),
    InjectRandom(bool, bool, Vec<u8>),
    InjectMutated(usize, usize, u8, bool),
    Advance(u32),
    Close(bool),
    RestartB,
}

fn pick(raw: usize, len: usize) -> usize {
    ((len as u128 * raw as u128) >> usize::BITS) as usize
}

fn side(a: bool) -> usize {
    if a { A } else { B }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(Op::Connect),
        6 => any::<bool>().prop_map(Op::Send),
        2 => Just(Op::DropNext),
        2 => any::<usize>().prop_map(Op::Duplicate),
        2 => (any::<usize>(), 1u16..5000).prop_map(|(i, ms)| Op::Reorder(i, ms)),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(i, att)| Op::Replay(i, att)),
        1 => (any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(to_a, burrow, bytes)| Op::InjectRandom(to_a, burrow, bytes)),
        2 => (any::<usize>(), any::<usize>(), 1u8..=255, any::<bool>())
            .prop_map(|(i, at, x, att)| Op::InjectMutated(i, at, x, att)),
        6 => (1u32..=200).prop_map(Op::Advance),
        3 => (200u32..=200_000).prop_map(Op::Advance),
        1 => any::<bool>().prop_map(Op::Close),
        1 => Just(Op::RestartB),
    ]
}

fn apply(net: &mut Net, op: &Op) {
    match op {
        Op::Connect(a) => {
            let i = side(*a);
            net.connect(i, 1 - i);
        }
        Op::Send(a) => {
            net.send(side(*a));
        }
        Op::DropNext => net.drop_next += 1,
        Op::Duplicate(ix) => {
            if let Some(key) = net.pick_flight(*ix) {
                let f = net.flights[&key].clone();
                net.push_flight(f.to, f.from, f.bytes, f.origin);
            }
        }
        Op::Reorder(ix, ms) => {
            if let Some((at, seq)) = net.pick_flight(*ix) {
                let f = net.flights.remove(&(at, seq)).expect("picked");
                let later = at + Duration::from_millis(u64::from(*ms));
                net.flights.insert((later, seq), f);
            }
        }
        Op::Replay(ix, from_attacker) => {
            if !net.sent.is_empty() {
                let k = pick(*ix, net.sent.len());
                net.replay(k, from_attacker.then(attacker));
            }
        }
        Op::InjectRandom(to_a, burrow, bytes) => {
            let mut bytes = bytes.clone();
            if *burrow && bytes.len() >= 4 {
                bytes[0] = 0xB1;
                bytes[1] = bytes[1] % 4 + 1;
                bytes[2] = 0;
                bytes[3] = 0;
            }
            net.inject(side(*to_a), attacker(), bytes);
        }
        Op::InjectMutated(ix, at, x, from_attacker) => {
            if !net.sent.is_empty() {
                let c = &net.sent[pick(*ix, net.sent.len())];
                let mut bytes = c.transmit.payload.to_vec();
                let pos = pick(*at, bytes.len());
                bytes[pos] ^= x;
                let (to, from) = (c.to, net.hosts[c.from].addr);
                let from = if *from_attacker { attacker() } else { from };
                // A flipped mac2 leaves a handshake message valid: that is a replay, not a
                // forgery, and the replay checks apply to it.
                let mac2_of_handshake =
                    matches!(kind(&bytes), Some(1 | 2)) && pos >= bytes.len() - MAC_LEN;
                if mac2_of_handshake {
                    let k = pick(*ix, net.sent.len());
                    net.push_flight(to, from, bytes.into(), Origin::Sent(k));
                } else {
                    net.inject(to, from, bytes);
                }
            }
        }
        Op::Advance(ms) => net.run_for(Duration::from_millis(u64::from(*ms))),
        Op::Close(a) => net.close(side(*a)),
        Op::RestartB => net.restart(B),
    }
}

/// Runs an attack, then checks liveness and quiescence.
fn run_interaction(ops: &[Op]) {
    let mut net = Net::pair();
    for op in ops {
        apply(&mut net, op);
    }
    // Let what is in flight land (the attacker's packets too), then a clean network.
    net.run_for(Duration::from_secs(1));
    net.settle(Duration::from_secs(120));
    let closes_before = (net.closes(A).len(), net.closes(B).len());
    // Keepalives every 15 s and a rekey every two minutes: a few calls a minute.
    net.assert_quiet(Duration::from_secs(600), 4, 150);
    assert_eq!(
        (net.closes(A).len(), net.closes(B).len()),
        closes_before,
        "a healthy idle session closed: A {:?} B {:?}",
        net.closes(A),
        net.closes(B)
    );
    for i in [A, B] {
        assert_eq!(net.hosts[i].m.ep.session_count(), 1);
    }
}

proptest! {
    // ADVERSARIAL_CASES=5000 for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("ADVERSARIAL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    /// Whatever the attacker does, nothing is delivered twice or made up, events stay
    /// consistent, timers never spin, and once it stops both sides talk again.
    #[test]
    fn random_interaction_keeps_the_session_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        run_interaction(&ops);
    }
}

// ----- targeted attacks ------------------------------------------------------------------------

/// A valid-mac1 initiation whose Noise message is garbage: what anyone who knows `to`'s public
/// key can send without doing any Diffie-Hellman.
fn forged_initiation(rng: &mut XorShift, to: &PublicKey) -> Vec<u8> {
    let mut packet = Vec::new();
    header::begin_initiation(rng.next() as u32, &mut packet);
    let noise: [u8; crate::crypto::noise::INITIATION_OVERHEAD + HandshakePayload::LEN] =
        rng.bytes();
    packet.extend_from_slice(&noise);
    let mac1 = MacKeys::new(to).mac1(&packet);
    packet.extend_from_slice(&mac1);
    packet.extend_from_slice(&[0; MAC_LEN]);
    packet
}

/// A genuine initiation from `from` (any key) to `to`.
fn initiation_from(
    net: &Net,
    from: &SecretKey,
    to: &PublicKey,
    sender: u32,
    ephemeral: [u8; 32],
    instance: u64,
) -> handshake::Initiation {
    handshake::initiation(
        net.now,
        from,
        to,
        &SecretKey::from_bytes(ephemeral),
        sender,
        HandshakePayload {
            timestamp: u64::try_from((UNIX + net.at()).as_nanos()).expect("fits"),
            instance,
            session: Some(crate::session::handshake::NEW_SESSION),
        },
        &CookieJar::new(to),
    )
}

fn random_source(rng: &mut XorShift) -> SocketAddr {
    let [a, b, c, d, p1, p2]: [u8; 6] = rng.bytes();
    SocketAddr::from(([a | 1, b, c, d], u16::from_be_bytes([p1, p2]) | 1))
}

#[test]
fn handshake_through_fifty_percent_loss_both_ways_eventually_connects() {
    for seed in 1..=12u64 {
        let mut net = Net::pair();
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        net.filter = Some(Box::new(move |_, _, _| rng.next() % 100 >= 50));
        net.connect(A, B);
        let deadline = net.now + Duration::from_secs(600);
        while !(net.connected_events(A) >= 1 && net.connected_events(B) >= 1) {
            assert!(
                net.now < deadline,
                "seed {seed}: not connected in 10 minutes"
            );
            if net.hosts[A].m.handle.is_none() {
                // The application retries after HandshakeTimeout.
                net.connect(A, B);
            }
            net.run_for(Duration::from_secs(1));
        }
        // Then, with the loss gone, data flows.
        net.settle(Duration::from_secs(60));
    }
}

#[test]
fn a_flood_of_forged_initiations_gets_cookies_and_a_real_peer_still_connects() {
    const THRESHOLD: u32 = 100;
    let mut b_config = Config::new(key(2));
    b_config.session.handshake_load_threshold = THRESHOLD;
    let mut net = Net::new(vec![Config::new(key(1)), b_config]);
    let b_key = net.public(B);
    let mut rng = XorShift(7);
    let flood = |net: &mut Net, rng: &mut XorShift, n: usize| {
        for _ in 0..n {
            let packet = forged_initiation(rng, &b_key);
            let from = random_source(rng);
            net.inject(B, from, packet);
        }
    };
    // 10,000 in one burst: only the first THRESHOLD cost B a Diffie-Hellman.
    flood(&mut net, &mut rng, 10_000);
    net.run_for(Duration::from_millis(20));
    let s = net.hosts[B].m.ep.stats().clone();
    assert_eq!(s.dropped_handshake, u64::from(THRESHOLD), "{s:?}");
    assert_eq!(s.dropped_no_cookie, 10_000 - u64::from(THRESHOLD), "{s:?}");
    assert_eq!(s.cookies_sent, s.dropped_no_cookie);
    assert_eq!(net.hosts[B].m.ep.session_count(), 0);
    assert!(net.hosts[B].events.is_empty());
    // Every cookie reply went to the (forged) source, and is smaller than what provoked it.
    assert_eq!(net.blackholed.len() as u64, s.cookies_sent);
    assert!(
        net.blackholed
            .iter()
            .all(|t| t.payload.len() < forged_initiation(&mut rng, &b_key).len())
    );

    // The flood goes on at 5,000 per second while A connects.
    net.connect(A, B);
    let mut seconds = 0;
    while net.connected_events(B) == 0 {
        seconds += 1;
        assert!(seconds <= 10, "A could not connect through the flood");
        for _ in 0..10 {
            flood(&mut net, &mut rng, 500);
            net.run_for(Duration::from_millis(100));
        }
    }
    let s = net.hosts[B].m.ep.stats();
    // Noise work only within the threshold per second (the window restarts on the first
    // initiation after a second has passed, so one more window than seconds elapsed).
    let windows = seconds + 2;
    assert!(
        s.dropped_handshake + s.handshakes_completed <= u64::from(THRESHOLD) * windows,
        "{s:?}"
    );
    assert!(net.hosts[A].m.ep.stats().handshakes_completed == 1);
    net.settle(Duration::from_secs(5));
}

#[test]
fn forged_responses_and_cookie_replies_do_not_break_a_pending_handshake() {
    let mut net = Net::pair();
    // Hold B's genuine responses back until the forgeries are in.
    net.filter = Some(Box::new(|from, _, bytes| {
        from != B || !is_kind(bytes, PacketKind::Response)
    }));
    net.connect(A, B);
    net.run_for(Duration::from_millis(15));
    let held = net.last_captured(B, PacketKind::Response);
    let init = net
        .captured(net.last_captured(A, PacketKind::Initiation))
        .clone();
    // An on-path attacker sees A's sender index and mac1 in the initiation.
    let a_index = u32::from_be_bytes(init[4..8].try_into().unwrap());
    let a_mac1: [u8; MAC_LEN] = init[init.len() - 2 * MAC_LEN..init.len() - MAC_LEN]
        .try_into()
        .unwrap();
    let a_key = net.public(A);
    let mut rng = XorShift(99);
    for _ in 0..20 {
        // A response with a valid mac1 (keyed by A's public key) and garbage Noise.
        let mut forged = Vec::new();
        header::begin_response(rng.next() as u32, a_index, &mut forged);
        forged.extend_from_slice(&rng.bytes::<{ 48 + HandshakePayload::LEN }>());
        let mac1 = MacKeys::new(&a_key).mac1(&forged);
        forged.extend_from_slice(&mac1);
        forged.extend_from_slice(&[0; MAC_LEN]);
        net.inject(A, attacker(), forged);
        // A response built with the attacker's own ephemeral key: Noise still fails (it lacks
        // es and ss).
        let mut noise = Vec::new();
        let e = SecretKey::from_bytes(rng.bytes());
        noise.extend_from_slice(e.public_key().as_bytes());
        noise.extend_from_slice(&rng.bytes::<{ 16 + HandshakePayload::LEN }>());
        let mut forged = Vec::new();
        header::begin_response(7, a_index, &mut forged);
        forged.extend_from_slice(&noise);
        let mac1 = MacKeys::new(&a_key).mac1(&forged);
        forged.extend_from_slice(&mac1);
        forged.extend_from_slice(&[0; MAC_LEN]);
        net.inject(A, attacker(), forged);
        // Cookie replies: random ones, and a well-formed one sealed under B's public key for
        // A's real mac1 (anyone on the path can make it; it carries a bogus cookie).
        let mut random = vec![0xB1, PacketKind::CookieReply as u8, 0, 0];
        random.extend_from_slice(&a_index.to_be_bytes());
        random.extend_from_slice(&rng.bytes::<56>());
        net.inject(A, attacker(), random);
        let reply = CookieChecker::new(&net.public(B)).seal_reply(
            net.now,
            || [9; 32],
            net.hosts[A].addr,
            &a_mac1,
            rng.bytes(),
        );
        let mut body = [0u8; 56];
        body.copy_from_slice(&reply);
        net.inject(A, attacker(), header::cookie_reply(a_index, &body));
    }
    net.run_for(Duration::from_millis(15));
    let s = net.hosts[A].m.ep.stats();
    assert_eq!(s.dropped_handshake, 40, "{s:?}");
    assert_eq!(net.connected_events(A), 0);
    // The genuine response still completes the handshake.
    net.filter = None;
    net.replay(held, None);
    net.run_for(Duration::from_millis(50));
    assert_eq!(net.connected_events(A), 1);
    assert_eq!(net.connected_events(B), 1);
    assert!(net.closes(A).is_empty());
    net.settle(Duration::from_secs(5));
}

#[test]
fn a_third_peer_reusing_a_sender_index_cannot_disturb_an_established_session() {
    let mut net = Net::new(vec![
        Config::new(key(1)),
        Config::new(key(2)),
        Config::new(key(7)),
    ]);
    // M (node 2) starts with A's seed: its first sender index equals A's.
    net.hosts[2].m.ep = Endpoint::new(Config::new(key(7)), [1; 32], net.origin, UNIX);
    net.connect(A, B);
    net.run_for(Duration::from_millis(100));
    net.connect(2, B);
    net.run_for(Duration::from_millis(100));
    let a_init = &net.captured(net.first_captured(A, PacketKind::Initiation));
    let m_init = &net.captured(net.first_captured(2, PacketKind::Initiation));
    assert_eq!(a_init[4..8], m_init[4..8], "same sender index");
    assert_eq!(net.hosts[B].m.ep.session_count(), 2);
    // Data still reaches the right peer in every direction.
    for _ in 0..3 {
        net.send(A);
        net.send(2);
        net.send(B); // B's handle is its latest Connected: M.
    }
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.hosts[B].m.delivered.len(), 6);
    assert_eq!(net.hosts[2].m.delivered.len(), 3);
    // Forged transport packets at B's index for A: any counter, garbage body.
    let to_b = net
        .captured(net.last_captured(A, PacketKind::Transport))
        .clone();
    let b_index = u32::from_be_bytes(to_b[4..8].try_into().unwrap());
    let mut rng = XorShift(5);
    for counter in [0, 1, 2, 1 << 20, u64::MAX - (1 << 13) - 1, u64::MAX] {
        let mut forged = header::transport_header(b_index, counter).to_vec();
        forged.extend_from_slice(&rng.bytes::<40>());
        net.inject(B, attacker(), forged);
    }
    net.run_for(Duration::from_millis(20));
    let s = net.hosts[B].m.ep.stats();
    assert_eq!(
        s.dropped_auth + s.dropped_expired + s.dropped_replay,
        6,
        "{s:?}"
    );
    net.send(A);
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.hosts[B].m.delivered.len(), 7);
    assert_eq!(
        net.hosts[B].m.ep.peer_addr(PeerId(0)),
        Some(net.hosts[A].addr)
    );
}

#[test]
fn an_initiation_from_our_own_key_is_rejected() {
    let mut net = Net::pair();
    let b_secret = key(2);
    let b_key = net.public(B);
    let init = initiation_from(&net, &b_secret, &b_key, 42, [3; 32], 1);
    net.inject(B, attacker(), init.packet);
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.hosts[B].m.ep.stats().dropped_unknown_peer, 1);
    assert_eq!(net.hosts[B].m.ep.session_count(), 0);
    assert_eq!(net.hosts[B].m.ep.index_count(), 0);
    assert!(net.blackholed.is_empty(), "nothing answered");
    assert!(matches!(
        net.hosts[B].events.as_slice(),
        [Event::PeerRejected { key, .. }] if *key == b_key
    ));
}

#[test]
fn a_responder_that_never_sees_confirmation_forgets_the_session() {
    let mut net = Net::pair();
    // A vanishes right after its initiation: B's response and everything later are lost.
    net.filter = Some(Box::new(|from, _, bytes| {
        from == A && is_kind(bytes, PacketKind::Initiation)
    }));
    let a_peer = net.connect(A, B);
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.hosts[B].m.ep.session_count(), 1);
    net.close(A);
    assert!(!net.hosts[A].m.ep.is_connected(a_peer));
    net.run_for(Duration::from_secs(31));
    assert_eq!(net.hosts[B].m.ep.session_count(), 0);
    assert_eq!(net.hosts[B].m.ep.index_count(), 0);
    assert_eq!(net.hosts[B].m.ep.poll_timeout(), None);
    assert!(net.hosts[B].events.is_empty(), "{:?}", net.hosts[B].events);
}

#[test]
fn ten_thousand_unconfirmed_handshakes_are_reaped_after_the_handshake_timeout() {
    let mut net = Net::pair();
    let b_key = net.public(B);
    let mut rng = XorShift(11);
    // 500 new keys per second for 20 seconds: under the default load threshold, so every one
    // costs B a full handshake and a session awaiting confirmation that never comes.
    for second in 0..20u32 {
        for n in 0..500u32 {
            let secret = SecretKey::from_bytes(rng.bytes());
            let init = initiation_from(&net, &secret, &b_key, second * 500 + n, rng.bytes(), 1);
            let from = random_source(&mut rng);
            net.inject(B, from, init.packet);
        }
        net.run_for(Duration::from_secs(1));
    }
    let ep = &net.hosts[B].m.ep;
    assert_eq!(ep.stats().handshakes_completed, 10_000);
    assert_eq!(ep.session_count(), 10_000);
    assert!(
        net.hosts[B].events.is_empty(),
        "no Connected for unconfirmed keys"
    );
    net.run_for(Duration::from_secs(31));
    let ep = &net.hosts[B].m.ep;
    assert_eq!(ep.session_count(), 0);
    assert_eq!(ep.index_count(), 0);
    assert_eq!(ep.poll_timeout(), None);
    assert!(net.hosts[B].events.is_empty());
}

#[test]
fn sessions_rekey_before_the_packet_limit_without_losing_data() {
    let mut a_config = Config::new(key(1));
    a_config.session.rekey_after_packets = 10;
    a_config.session.reject_after_packets = 12;
    let mut b_config = Config::new(key(2));
    b_config.session.rekey_after_packets = 10;
    b_config.session.reject_after_packets = 12;
    let mut net = Net::new(vec![a_config, b_config]);
    net.connect(A, B);
    net.run_for(Duration::from_millis(100));
    let mut ids = Vec::new();
    // Bursts of 30 at one instant: past the hard limit before the rekey can complete.
    for _ in 0..10 {
        for _ in 0..30 {
            ids.extend(net.send(A));
            net.send(B);
        }
        net.run_for(Duration::from_secs(1));
    }
    assert_eq!(ids.len(), 300, "queued while rekeying, not refused");
    assert!(ids.iter().all(|id| net.hosts[B].m.delivered.contains(id)));
    assert_eq!(net.hosts[A].m.delivered.len(), 300);
    assert!(net.closes(A).is_empty() && net.closes(B).is_empty());
    net.assert_quiet(Duration::from_secs(300), 4, 100);
}

// ----- regressions: shrunk failures of the random interaction, and the bugs behind them ---------

/// B answers A at 10 ms, A's confirmation is lost, and A's next keepalive confirms B's keys at
/// 15.03 s. B's `last_sent` was still 10 ms, so right after that input `poll_timeout` returned
/// a KeepAlive deadline in the past (fixed in the endpoint: due timers of the touched session
/// run at once).
#[test]
fn regression_keepalive_deadline_in_the_past_after_late_confirmation() {
    use Op::*;
    run_interaction(&[Connect(false), Advance(10), DropNext, Advance(14_020)]);
}

/// B's initiation is delayed three seconds and B restarts. A connects to the new B; then the
/// dead B's initiation arrives. A's session, which A initiated, had no replay floor (0), so A
/// took it as the peer restarting and closed a healthy session with `PeerRestarted` (fixed: a
/// response's timestamp raises the floor).
#[test]
fn regression_delayed_initiation_from_a_dead_instance_closes_the_new_session() {
    use Op::*;
    run_interaction(&[Connect(false), Connect(false), Reorder(0, 2991), RestartB]);
}

/// Sessions come and go; the attacker replays one of B's initiations from an earlier session
/// just as A connects again. The replay floor had ended with the old session, so A answered
/// it: its own handshake was cancelled and its path moved to the attacker (fixed: the endpoint
/// keeps ended sessions' floors).
#[test]
fn regression_replayed_initiation_cancels_a_fresh_handshake_and_moves_its_path() {
    use Op::*;
    run_interaction(&[
        Connect(false),
        Advance(45_020),
        Close(true),
        Close(false),
        Connect(false),
        Connect(true),
        Close(false),
        Advance(30_010),
        Replay(13_527_612_320_720_337_852, true),
        Connect(true),
    ]);
}

/// A closes; its Close is delayed three seconds. A connects again, which B (still holding
/// the old session) takes as a rekey. The late Close, under what are now B's previous keys,
/// then closed the new session on B only (fixed: such a close is stale and dropped).
#[test]
fn regression_delayed_close_from_an_ended_session_closes_the_new_one() {
    use Op::*;
    run_interaction(&[Connect(false), Advance(30), Close(true), Reorder(0, 2991)]);
}

/// Both sides connect at once. B, the larger key, declines A's initiation (its own handshake
/// wins the tie-break) and A answers B's; that answer and the next are lost. The attacker's
/// copy of A's initiation, delayed three seconds, then reached a B whose own attempts had gone
/// unanswered long enough that it answers the peer's: B took it as fresh (it had never
/// *accepted* one from A, so its floor was 0) and moved its path to the attacker (fixed: an
/// initiation declined on key order raises the floor, and the freshness check comes first).
#[test]
fn regression_replayed_initiation_moves_a_handshaking_path() {
    use Op::*;
    run_interaction(&[
        Connect(true),
        Replay(0, true),
        Reorder(9_223_372_036_854_775_808, 2991),
        Connect(false),
        Connect(false),
        DropNext,
        Replay(0, false),
        DropNext,
        InjectMutated(0, 7_567_230, 199, false),
    ]);
}

/// The same as a direct scenario, without the random harness: an initiation that lost the
/// tie-break, replayed once the larger key would answer the peer's initiations, is dropped
/// as a replay and moves nothing.
#[test]
fn a_replayed_initiation_that_lost_the_tie_break_is_dropped() {
    let mut net = Net::pair();
    assert!(net.public(A) < net.public(B), "B wins the tie-break");
    // Only A's first datagram (its initiation) reaches B: A's answers to B are lost.
    let mut a_sent = 0;
    net.filter = Some(Box::new(move |from, _, _| {
        if from == A {
            a_sent += 1;
            return a_sent == 1;
        }
        true
    }));
    net.connect(A, B);
    net.connect(B, A);
    net.run_for(Duration::from_millis(100));
    let s = net.hosts[B].m.ep.stats().clone();
    assert_eq!(s.dropped_unexpected, 1, "B declined A's initiation: {s:?}");
    // B keeps retrying unanswered, until it would answer A's initiations.
    net.run_for(Duration::from_secs(5));
    let b_peer = net.hosts[B].m.handle.expect("B connected");
    assert!(!net.hosts[B].m.ep.is_connected(b_peer));
    let a_init = net.first_captured(A, PacketKind::Initiation);
    net.replay(a_init, Some(attacker()));
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.hosts[B].m.ep.stats().dropped_handshake_replay, 1);
    assert_eq!(net.hosts[B].m.ep.peer_addr(b_peer), Some(net.hosts[A].addr));
    assert!(
        net.blackholed.is_empty(),
        "nothing answered to the attacker"
    );
    net.filter = None;
    net.settle(Duration::from_secs(30));
}

/// Found by the proptest (it failed the same way before the tie-break fix above). B closes at
/// 118.05 s and its Close is delayed 2.4 s. At 120 s A, which initiated the keys, rekeys; B
/// has no session any more, so it answers with a fresh one (new stream layer) while A took
/// the answer as a rekey of its old session (old stream layer). The two stream layers
/// disagreed and both sides later closed with a protocol violation. Fixed by session numbers
/// in the handshake payload: the rekey names the session, B's answer names a new one, and A
/// starts over (`CloseReason::PeerReset`); see `tests::streams` for the scenario by hand.
/// Proptest seed: `cc 7981364c347176da6dea98d32f52ae10987a629ae7747b43ffabeb08f7e50c44`.
#[test]
fn regression_rekey_answered_by_a_fresh_session_after_a_delayed_close() {
    use Op::*;
    run_interaction(&[
        Connect(true),
        Advance(118_050),
        Close(false),
        Reorder(0, 2436),
    ]);
}

/// The same as a direct scenario, without the random harness.
#[test]
fn a_replayed_initiation_from_an_ended_session_is_dropped() {
    let mut net = Net::pair();
    net.connect(A, B);
    net.run_for(Duration::from_millis(100));
    let old_init = net.first_captured(A, PacketKind::Initiation);
    net.close(A);
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.hosts[B].m.ep.session_count(), 0);
    // B now connects to A; the attacker replays A's old initiation while B's handshake runs.
    net.connect(B, A);
    net.replay(old_init, Some(attacker()));
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.hosts[B].m.ep.stats().dropped_handshake_replay, 1);
    let b_peer = net.hosts[B].m.handle.expect("B connected");
    assert!(net.hosts[B].m.ep.is_connected(b_peer));
    assert_eq!(net.hosts[B].m.ep.peer_addr(b_peer), Some(net.hosts[A].addr));
    assert!(
        net.blackholed.is_empty(),
        "nothing answered to the attacker"
    );
    net.settle(Duration::from_secs(2));
}

/// An on-path attacker takes A's rekey initiation off the wire and sends it from its own
/// address. It is genuine and fresh, so B answers; but B's path must not move before an
/// authenticated transport packet comes from there, or B's traffic goes to the attacker.
#[test]
fn a_relayed_rekey_initiation_does_not_move_a_connected_path() {
    let mut net = Net::pair();
    net.connect(A, B);
    net.run_for(Duration::from_secs(1));
    net.filter = Some(Box::new(|from, _, bytes| {
        from != A || !is_kind(bytes, PacketKind::Initiation)
    }));
    // A initiated the keys, so it starts the rekey at 120 s.
    net.run_for(Duration::from_secs(120));
    let rekey = net.last_captured(A, PacketKind::Initiation);
    net.filter = None;
    net.replay(rekey, Some(attacker()));
    net.run_for(Duration::from_millis(20));
    let b_peer = net.hosts[B].m.handle.expect("B connected");
    assert_eq!(net.hosts[B].m.ep.peer_addr(b_peer), Some(net.hosts[A].addr));
    // B's data still reaches A at once.
    let id = net.send(B).expect("sent");
    net.run_for(Duration::from_millis(20));
    assert!(net.hosts[A].m.delivered.contains(&id));
    assert!(net.closes(A).is_empty() && net.closes(B).is_empty());
    net.settle(Duration::from_secs(30));
}

/// Keys that reach `reject_after_packets` while nothing else starts a rekey (the limit is below
/// `rekey_after_packets`, or the keys came from a handshake we answered) must not leave a
/// keepalive that can never be sent: its deadline stays in the past, a busy loop.
#[test]
fn exhausted_keys_neither_spin_nor_strand_the_session() {
    let mut a_config = Config::new(key(1));
    a_config.session.reject_after_packets = 3;
    let mut net = Net::new(vec![a_config, Config::new(key(2))]);
    net.connect(A, B);
    net.run_for(Duration::from_millis(100));
    // The confirmation used counter 0; two datagrams use the rest.
    net.send(A);
    net.send(A);
    net.run_for(Duration::from_secs(100));
    assert!(net.closes(A).is_empty() && net.closes(B).is_empty());
    net.settle(Duration::from_secs(5));
}

/// A packet that is the newest under the *previous* keys is still older than what came under
/// the current ones: it must not move the path back to where the peer was before.
#[test]
fn a_late_packet_under_previous_keys_does_not_move_the_path_back() {
    let mut b_config = Config::new(key(2));
    b_config.session.rekey_after_packets = 4;
    let mut net = Net::new(vec![Config::new(key(1)), b_config]);
    net.connect(A, B);
    net.run_for(Duration::from_millis(100));
    // B's next datagram (its third packet, under the first keys) is held back.
    let held = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = held.clone();
    net.filter = Some(Box::new(move |from, _, bytes| {
        if from == B && is_kind(bytes, PacketKind::Transport) && !flag.get() {
            flag.set(true);
            return false;
        }
        true
    }));
    let old_addr = net.hosts[B].addr;
    net.send(B);
    let late = net.sent.len() - 1;
    assert!(held.get());
    // Three more reach the rekey threshold; the new keys come into use.
    net.send(B);
    net.send(B);
    net.send(B);
    net.run_for(Duration::from_millis(100));
    assert!(net.hosts[B].m.ep.stats().handshakes_completed >= 2);
    // B's NAT rebinds; its next packet (new keys) moves A's path.
    let new_addr = addr("10.0.0.2:4444");
    net.hosts[B].addr = new_addr;
    net.send(B);
    net.run_for(Duration::from_millis(100));
    let a_peer = net.hosts[A].m.handle.expect("A connected");
    assert_eq!(net.hosts[A].m.ep.peer_addr(a_peer), Some(new_addr));
    // Now the held packet arrives from the old address.
    net.replay(late, Some(old_addr));
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.hosts[A].m.ep.peer_addr(a_peer), Some(new_addr));
}

/// The endpoint keeps every session's next deadline in an ordered index; after any mix of
/// commands, deliveries and timeouts on a node with several sessions, the index must say what
/// asking every session afresh says (`check_deadline` compares them after every call).
#[test]
fn the_deadline_index_agrees_with_the_sessions_after_random_operations() {
    let configs = (1..=5).map(|n| Config::new(key(n))).collect();
    let mut net = Net::new(configs);
    let mut rng = XorShift(0x5eed_1dea);
    for _ in 0..400 {
        let peer = 1 + (rng.next() % 4) as usize;
        match rng.next() % 8 {
            0 | 1 => {
                net.connect(0, peer);
            }
            2 => {
                net.connect(peer, 0);
            }
            3 | 4 => {
                net.send(0);
                net.send(peer);
            }
            5 => net.close(if rng.next() % 2 == 0 { 0 } else { peer }),
            6 => net.drop_next += 1,
            _ => net.run_for(Duration::from_millis(1 + rng.next() % 40_000)),
        }
        for i in 0..net.hosts.len() {
            net.hosts[i].m.ep.check_deadline_index();
        }
    }
    // Then idle until sessions end or settle into keepalives (checked after every timeout).
    net.run_for(Duration::from_secs(600));
    for i in 0..net.hosts.len() {
        net.hosts[i].m.ep.check_deadline_index();
    }
}
