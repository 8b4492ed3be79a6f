//! Seal + open of 1200-byte packets through burrow's session layer, as a ratio to the bare
//! AEAD crate the core uses (ring by default, chacha20poly1305 with `pure-rust-crypto`) in the
//! same run, and full Noise IK handshakes per second.
//!
//! Run: `cargo bench -p burrow-core --bench session` (add `-- --quick` for a short run).
//! Prints a table; figures are medians over interleaved rounds, so both sides of a ratio see
//! the same machine noise.

// A benchmark measures wall time; the clock rule of core/clippy.toml is for the library.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use burrow_core::{Config, Endpoint, Event, PeerId, SecretKey};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

const PACKET: usize = 1200;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

/// Moves every datagram between the two endpoints until both are quiet.
fn pump(now: Instant, a: &mut Endpoint, b: &mut Endpoint) {
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            b.handle_input(now, addr("10.0.0.1:1"), &t.payload);
            moved = true;
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_input(now, addr("10.0.0.2:2"), &t.payload);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn connected_pair(now: Instant, seed: u8) -> (Endpoint, Endpoint, PeerId) {
    let unix = Duration::from_secs(1_800_000_000);
    let mut a = Endpoint::new(
        Config::new(SecretKey::from_bytes([1; 32])),
        [seed; 32],
        now,
        unix,
    );
    let mut b = Endpoint::new(
        Config::new(SecretKey::from_bytes([2; 32])),
        [seed ^ 0xFF; 32],
        now,
        unix,
    );
    let peer = a
        .connect(now, b.public_key(), addr("10.0.0.2:2"))
        .expect("distinct keys");
    pump(now, &mut a, &mut b);
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    assert!(a.is_connected(peer), "handshake completed");
    (a, b, peer)
}

/// Seconds to push `n` datagrams that fill 1200-byte packets from A to B, through the whole
/// session layer: framing, sealing, parsing, replay check, opening, event delivery.
fn session_round(n: usize) -> f64 {
    let now = burrow_now();
    let (mut a, mut b, peer) = connected_pair(now, 7);
    let body = vec![0x5A; a.max_datagram_size()];
    let from = addr("10.0.0.1:1");
    let start = Instant::now();
    for _ in 0..n {
        a.send_datagram(now, peer, &body).expect("session is up");
        let t = a.poll_transmit().expect("one packet");
        debug_assert_eq!(t.payload.len(), PACKET);
        b.handle_input(now, from, &t.payload);
        match b.poll_event() {
            Some(Event::Datagram { data, .. }) => assert_eq!(data.len(), body.len()),
            other => panic!("expected the datagram, got {other:?}"),
        }
    }
    start.elapsed().as_secs_f64()
}

/// Whether the core seals with ring (see core/src/crypto/aead.rs).
const RING: bool = cfg!(all(feature = "ring", not(feature = "pure-rust-crypto")));

/// Seconds for ring to seal and open `n` packets of the same ciphertext size with a 16-byte
/// associated data, in place, with no framing at all.
#[cfg(feature = "ring")]
fn bare_ring_round(n: usize) -> f64 {
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce as RingNonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[3u8; 32]).expect("key"));
    let ad = [0u8; 16];
    let mut buf = vec![0x5Au8; PACKET - 16 - 16];
    let nonce = |i: u64| {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&i.to_le_bytes());
        RingNonce::assume_unique_for_key(nonce)
    };
    let start = Instant::now();
    for i in 0..n as u64 {
        let tag = key
            .seal_in_place_separate_tag(nonce(i), Aad::from(&ad), &mut buf)
            .expect("seal");
        key.open_in_place_separate_tag(nonce(i), Aad::from(&ad), tag, &mut buf, 0..)
            .expect("open");
    }
    std::hint::black_box(&buf);
    start.elapsed().as_secs_f64()
}

#[cfg(not(feature = "ring"))]
fn bare_ring_round(_n: usize) -> f64 {
    f64::NAN
}

/// Seconds for the bare chacha20poly1305 crate to seal and open `n` packets of the same
/// ciphertext size with a 16-byte associated data, in place, with no framing at all.
fn bare_round(n: usize) -> f64 {
    let cipher = ChaCha20Poly1305::new(&[3u8; 32].into());
    let ad = [0u8; 16];
    let mut buf = vec![0x5Au8; PACKET - 16 - 16];
    let start = Instant::now();
    for i in 0..n as u64 {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&i.to_le_bytes());
        let nonce = Nonce::from(nonce);
        let tag = cipher
            .encrypt_inout_detached(&nonce, &ad, buf.as_mut_slice().into())
            .expect("seal");
        cipher
            .decrypt_inout_detached(&nonce, &ad, buf.as_mut_slice().into(), &tag)
            .expect("open");
    }
    std::hint::black_box(&buf);
    start.elapsed().as_secs_f64()
}

/// Seconds to move `total` bytes over one stream between two endpoints on a perfect in-memory
/// link: encryption, the session, ACKs, congestion control, pacing and flow control all
/// included. Virtual time follows the wall clock so pacing and RTT see real durations.
fn stream_round(total: usize) -> f64 {
    let start_now = burrow_now();
    let (mut a, mut b, peer) = connected_pair(start_now, 9);
    let b_peer = PeerId(0);
    let chunk = vec![0xA5u8; 256 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let (mut written, mut read) = (0usize, 0usize);
    let service: burrow_core::rendezvous::ServiceName = "/bench/sink".parse().expect("valid name");
    b.expose(start_now, service.clone(), "sink")
        .expect("no rendezvous to refuse it");
    let stream = a.open_stream(start_now, peer, &service).expect("open");
    let (a_addr, b_addr) = (addr("10.0.0.1:1"), addr("10.0.0.2:2"));
    let start = Instant::now();
    while read < total {
        let now = Instant::now();
        while written < total {
            let end = (total - written).min(chunk.len());
            match a.stream_write(now, peer, stream, &chunk[..end]) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            b.handle_input(now, a_addr, &t.payload);
            moved = true;
        }
        while b.poll_event().is_some() {}
        while let Ok(burrow_core::ReadOutcome::Data(n)) =
            b.stream_read(now, b_peer, stream, &mut buf)
        {
            read += n;
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_input(now, b_addr, &t.payload);
            moved = true;
        }
        while a.poll_event().is_some() {}
        if !moved {
            if let Some((at, _)) = a.poll_timeout() {
                if at <= Instant::now() {
                    a.handle_timeout(Instant::now());
                }
            }
            if let Some((at, _)) = b.poll_timeout() {
                if at <= Instant::now() {
                    b.handle_timeout(Instant::now());
                }
            }
        }
    }
    start.elapsed().as_secs_f64()
}

/// Seconds for `n` complete handshakes between fresh endpoints.
fn handshake_round(n: usize) -> f64 {
    let now = burrow_now();
    let start = Instant::now();
    for i in 0..n {
        let (a, _, _) = connected_pair(now, i as u8);
        std::hint::black_box(a);
    }
    start.elapsed().as_secs_f64()
}

fn dh_round(n: usize) -> f64 {
    let a = x25519_dalek::StaticSecret::from([1u8; 32]);
    let b = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([2u8; 32]));
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(a.diffie_hellman(std::hint::black_box(&b)));
    }
    start.elapsed().as_secs_f64()
}

/// The bench's own clock origin: the endpoints run on a frozen virtual instant.
fn burrow_now() -> Instant {
    Instant::now()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, n, hs) = if quick {
        (3, 20_000, 200)
    } else {
        (7, 100_000, 1_000)
    };
    let mut bare = Vec::new();
    let mut bare_ring = Vec::new();
    let mut session = Vec::new();
    let mut handshakes = Vec::new();
    let mut dh = Vec::new();
    let mut streams = Vec::new();
    let stream_bytes = if quick { 16 << 20 } else { 64 << 20 };
    for _ in 0..rounds {
        bare.push(bare_round(n));
        bare_ring.push(bare_ring_round(n));
        session.push(session_round(n));
        streams.push(stream_round(stream_bytes));
        handshakes.push(handshake_round(hs));
        dh.push(dh_round(hs * 10));
    }
    let bytes = (n * PACKET) as f64;
    let (bare_rust, bare_ring, session) = (median(bare), median(bare_ring), median(session));
    // The ratios are to the crate the core seals with.
    let bare = if RING { bare_ring } else { bare_rust };
    let (handshakes, dh) = (median(handshakes), median(dh));
    println!(
        "burrow session bench: {n} packets of {PACKET} bytes, seal+open, median of {rounds} interleaved rounds; core AEAD: {}",
        if RING { "ring" } else { "chacha20poly1305" }
    );
    println!("| path | packets/s | MB/s | ns/packet |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, secs) in [
        ("bare chacha20poly1305 (in place)", bare_rust),
        ("bare ring (in place)", bare_ring),
        ("burrow session layer", session),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            n as f64 / secs,
            bytes / secs / 1e6,
            secs / n as f64 * 1e9
        );
    }
    println!("ratio session / bare: {:.3} (goal >= 0.9)", bare / session);
    let stream = median(streams);
    let bare_rate = bytes / bare;
    let stream_rate = stream_bytes as f64 / stream;
    println!(
        "one stream, {} MiB in memory, encrypted, acked, congestion-controlled: {:.0} MB/s; ratio to bare seal+open: {:.3} (goal >= 0.6)",
        stream_bytes >> 20,
        stream_rate / 1e6,
        stream_rate / bare_rate
    );
    println!(
        "handshakes: {:.0}/s (Noise IK, both sides, one core); x25519 DH alone: {:.0}/s",
        hs as f64 / handshakes,
        (hs * 10) as f64 / dh
    );
}
