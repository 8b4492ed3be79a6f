//! The per-source cap on half-open handshakes (`SessionConfig::max_half_open_per_source`): an
//! attacker behind one address that sends genuine initiations from ever new keys and never
//! confirms one holds at most the cap in sessions, whether or not it answers cookie replies,
//! while another address is answered at once and the cap frees up as the responder gives up.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::pair::key;
use crate::config::Config;
use crate::crypto::SecretKey;
use crate::crypto::cookie::CookieJar;
use crate::event::Event;
use crate::session::handshake::{self, HandshakePayload};
use crate::session::source_of;
use crate::wire::Packet;
use crate::wire::header::PacketKind;
use crate::{Endpoint, Transmit};

const UNIX: Duration = Duration::from_secs(1_800_000_000);

/// The endpoint under attack, driven by hand: every transmit it makes is collected.
struct Target {
    ep: Endpoint,
    origin: Instant,
    now: Instant,
    out: Vec<Transmit>,
    events: Vec<Event>,
}

impl Target {
    fn new(config: Config) -> Self {
        let origin = super::origin();
        Self {
            ep: Endpoint::new(config, [9; 32], origin, UNIX),
            origin,
            now: origin,
            out: Vec::new(),
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        self.out
            .extend(std::iter::from_fn(|| self.ep.poll_transmit()));
        self.events
            .extend(std::iter::from_fn(|| self.ep.poll_event()));
    }

    fn input(&mut self, from: SocketAddr, bytes: &[u8]) -> Vec<Transmit> {
        let before = self.out.len();
        self.ep.handle_input(self.now, from, bytes);
        self.drain();
        self.out[before..].to_vec()
    }

    /// Moves virtual time on by `d`, handling every deadline on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some((at, _)) = self.ep.poll_timeout().filter(|(at, _)| *at <= end) {
            self.now = self.now.max(at);
            self.ep.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }
}

/// One attacking key: a genuine initiator that never confirms.
struct Attacker {
    secret: SecretKey,
    jar: CookieJar,
    mac1: [u8; 16],
}

impl Attacker {
    fn new(n: u32, target: &Target) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        bytes[31] = 0xA7;
        Self {
            secret: SecretKey::from_bytes(bytes),
            jar: CookieJar::new(&target.ep.public_key()),
            mac1: [0; 16],
        }
    }

    /// A fresh initiation (mac2 set if the jar holds a cookie).
    fn initiation(&mut self, target: &Target, sender: u32) -> Vec<u8> {
        let elapsed = target.now - target.origin;
        let init = handshake::initiation(
            target.now,
            &self.secret,
            &target.ep.public_key(),
            &SecretKey::from_bytes([sender as u8 | 1; 32]),
            sender,
            HandshakePayload {
                timestamp: u64::try_from((UNIX + elapsed).as_nanos()).expect("fits"),
                instance: 1,
                session: Some(crate::session::handshake::NEW_SESSION),
            },
            &self.jar,
        );
        self.mac1 = init.mac1;
        init.packet
    }

    /// Takes the cookie out of `reply`, a cookie reply to our last initiation.
    fn take_cookie(&mut self, now: Instant, reply: &[u8]) {
        let Ok(Packet::CookieReply { nonce, sealed, .. }) = Packet::parse(reply) else {
            panic!("not a cookie reply");
        };
        let mut body = nonce.to_vec();
        body.extend_from_slice(sealed);
        self.jar
            .open_reply(now, &body, &self.mac1)
            .expect("the reply is for our mac1");
    }
}

fn is_kind(t: &Transmit, kind: PacketKind) -> bool {
    t.payload.get(1) == Some(&(kind as u8))
}

fn flood_addr(n: u32) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 66], 1024 + (n % 60_000) as u16))
}

#[test]
fn one_source_holds_at_most_the_cap_of_half_open_handshakes() {
    let config = Config::new(key(1));
    let cap = config.session.max_half_open_per_source;
    assert_eq!(cap, 64, "the documented default");
    let per_second = config.session.handshake_load_per_source;
    let mut target = Target::new(config);
    let flood_ip = flood_addr(0).ip();

    // Ten seconds of genuine initiations from new keys at half the per-source cookie rate,
    // never confirmed: the rate alone never asks for a cookie, so the cap is what bounds them.
    let rate = per_second / 2;
    let total = rate * 10;
    let mut attackers = Vec::new();
    let (mut responses, mut cookies) = (0, 0);
    for n in 0..total {
        let mut attacker = Attacker::new(n, &target);
        let packet = attacker.initiation(&target, n);
        for t in target.input(flood_addr(n), &packet) {
            assert_eq!(t.dst, flood_addr(n));
            if is_kind(&t, PacketKind::Response) {
                responses += 1;
            } else if is_kind(&t, PacketKind::CookieReply) {
                cookies += 1;
                attacker.take_cookie(target.now, &t.payload);
            }
        }
        attackers.push(attacker);
        assert!(target.ep.half_open_from(flood_ip) <= cap);
        target.advance(Duration::from_secs(1) / rate);
    }
    let ep = &target.ep;
    println!(
        "{total} initiations from {flood_ip}: {} half-open held, {responses} answered, \
         {cookies} cookie replies",
        ep.half_open_from(flood_ip)
    );
    assert_eq!(ep.half_open_from(flood_ip), cap);
    assert_eq!(ep.half_open_count(), cap);
    assert_eq!(ep.session_count(), cap);
    assert_eq!(responses, cap as u32);
    assert_eq!(cookies, total - cap as u32);
    assert_eq!(ep.stats().dropped_no_cookie, u64::from(cookies));
    assert_eq!(ep.stats().handshakes_completed, cap as u64);

    // Presenting the cookie proves the address, but opens nothing more: dropped after the
    // Diffie-Hellman, counted.
    let mut with_cookie = 0;
    for (n, attacker) in attackers.iter_mut().enumerate().skip(cap) {
        let packet = attacker.initiation(&target, 100_000 + n as u32);
        let answer = target.input(flood_addr(n as u32), &packet);
        assert!(answer.is_empty(), "{answer:?}");
        with_cookie += 1;
    }
    let ep = &target.ep;
    assert_eq!(ep.stats().dropped_half_open_limit, with_cookie);
    assert_eq!(ep.half_open_from(flood_ip), cap);
    assert_eq!(ep.session_count(), cap);

    // Another source gets through at once: a real peer completes its handshake.
    let other: SocketAddr = "203.0.113.5:4000".parse().expect("literal");
    let mut peer = Endpoint::new(Config::new(key(2)), [2; 32], target.now, UNIX);
    let target_addr: SocketAddr = "192.0.2.1:7000".parse().expect("literal");
    peer.connect(target.now, target.ep.public_key(), target_addr)
        .expect("connect");
    let mut to_target: Vec<Transmit> = std::iter::from_fn(|| peer.poll_transmit()).collect();
    // Initiation, response, confirmation.
    for _ in 0..2 {
        for t in std::mem::take(&mut to_target) {
            for answer in target.input(other, &t.payload) {
                peer.handle_input(target.now, target_addr, &answer.payload);
            }
        }
        to_target.extend(std::iter::from_fn(|| peer.poll_transmit()));
        while peer.poll_event().is_some() {}
    }
    let peer_key = peer.public_key();
    let Some(&Event::Connected { peer: id, .. }) = target
        .events
        .iter()
        .find(|e| matches!(e, Event::Connected { key, .. } if *key == peer_key))
    else {
        panic!("the other source's handshake did not complete");
    };
    assert!(target.ep.is_connected(id));
    assert_eq!(target.ep.peer_addr(id), Some(other));
    assert_eq!(target.ep.half_open_from(other.ip()), 0, "confirmed");
    assert_eq!(target.ep.half_open_from(flood_ip), cap);

    // Unconfirmed sessions are given up after the handshake timeout; the cap frees up.
    target.advance(Duration::from_secs(31));
    assert_eq!(target.ep.half_open_count(), 0);
    assert_eq!(target.ep.half_open_from(flood_ip), 0);
    let mut late = Attacker::new(1_000_000, &target);
    let packet = late.initiation(&target, 7);
    let answer = target.input(flood_addr(7), &packet);
    assert!(answer.iter().any(|t| is_kind(t, PacketKind::Response)));
    assert_eq!(target.ep.half_open_from(flood_ip), 1);
}

#[test]
fn an_ipv6_source_counts_by_its_slash_64() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("literal");
    let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().expect("literal");
    let c: IpAddr = "2001:db8:1:3::1".parse().expect("literal");
    assert_eq!(source_of(a), source_of(b));
    assert_ne!(source_of(a), source_of(c));
    let v4: IpAddr = "198.51.100.66".parse().expect("literal");
    let mapped: IpAddr = "::ffff:198.51.100.66".parse().expect("literal");
    assert_eq!(source_of(v4), v4);
    assert_eq!(source_of(mapped), v4);
}
