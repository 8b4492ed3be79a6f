//! Amplification: for every kind of datagram anyone can send without holding a session, what a
//! fresh endpoint sends back. The source address of such a datagram is not validated, so every
//! reply could be aimed at a third party: no reply may be larger than its request, except a STUN
//! answer, which may be up to three times (RFC 9000, section 8). The test prints the table.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::pair::key;
use crate::Endpoint;
use crate::config::Config;
use crate::crypto::SecretKey;
use crate::crypto::cookie::{CookieJar, MacKeys};
use crate::session::handshake::{self, HandshakePayload};
use crate::wire::header::{self, MAC_LEN};
use crate::wire::stun::StunMessage;

const UNIX: Duration = Duration::from_secs(1_800_000_000);

/// Feeds `request` from `from` to `ep` and returns the bytes sent back to `from` (and checks
/// nothing went anywhere else).
fn reply_bytes(ep: &mut Endpoint, now: Instant, from: SocketAddr, request: &[u8]) -> usize {
    ep.handle_input(now, from, request);
    let mut total = 0;
    while let Some(t) = ep.poll_transmit() {
        assert_eq!(
            t.dst, from,
            "a reply to an unauthenticated datagram went elsewhere"
        );
        total += t.payload.len();
    }
    while ep.poll_event().is_some() {}
    total
}

/// A daemon-like endpoint (no STUN answers) and a server-like one (answers STUN), fresh.
fn endpoints(now: Instant, load_threshold: u32) -> (Endpoint, Endpoint) {
    let mut daemon = Config::new(key(1));
    daemon.session.handshake_load_threshold = load_threshold;
    let mut server = Config::new(key(2));
    server.answer_stun = true;
    // Its answers also name a second STUN address (netcheck), which must fit the bound too.
    server.stun_other_address = Some("[2001:db8::10]:3479".parse().expect("literal"));
    server.session.handshake_load_threshold = load_threshold;
    (
        Endpoint::new(daemon, [1; 32], now, UNIX),
        Endpoint::new(server, [2; 32], now, UNIX),
    )
}

fn forged_initiation(to: &crate::crypto::PublicKey) -> Vec<u8> {
    let mut packet = Vec::new();
    header::begin_initiation(7, &mut packet);
    packet.extend_from_slice(
        &[0x5A; crate::crypto::noise::INITIATION_OVERHEAD + HandshakePayload::LEN],
    );
    let mac1 = MacKeys::new(to).mac1(&packet);
    packet.extend_from_slice(&mac1);
    packet.extend_from_slice(&[0; MAC_LEN]);
    packet
}

fn genuine_initiation(now: Instant, to: &crate::crypto::PublicKey) -> Vec<u8> {
    // A key nobody introduced: anyone can make one.
    let stranger = SecretKey::from_bytes([0x77; 32]);
    handshake::initiation(
        now,
        &stranger,
        to,
        &SecretKey::from_bytes([0x66; 32]),
        9,
        HandshakePayload {
            timestamp: u64::try_from(UNIX.as_nanos()).expect("fits") + 1,
            instance: 1,
            session: Some(crate::session::handshake::NEW_SESSION),
        },
        &CookieJar::new(to),
    )
    .packet
}

#[test]
fn no_unauthenticated_reply_is_larger_than_its_request_stun_at_most_three_times() {
    let now = super::origin();
    let v4: SocketAddr = "198.51.100.9:4000".parse().expect("literal");
    let v6: SocketAddr = "[2001:db8::9]:4000".parse().expect("literal");
    let stun = StunMessage::BindingRequest {
        transaction: [3; 12],
        change: false,
    };
    let stun_min = {
        // The smallest request a STUN client may send: the 20-byte header alone.
        let mut m = stun.encode();
        m.truncate(20);
        m[2..4].copy_from_slice(&[0, 0]);
        m
    };
    let daemon_key = key(1).public_key();
    let server_key = key(2).public_key();

    // (what, at the server?, under handshake load?, source, request)
    let cases: Vec<(&str, bool, bool, SocketAddr, Vec<u8>)> = vec![
        (
            "STUN Binding, 20 B, IPv4",
            true,
            false,
            v4,
            stun_min.clone(),
        ),
        (
            "STUN Binding, 20 B, IPv6",
            true,
            false,
            v6,
            stun_min.clone(),
        ),
        ("STUN Binding + FINGERPRINT", true, false, v6, stun.encode()),
        ("STUN at a daemon", false, false, v4, stun_min),
        (
            "forged initiation",
            false,
            false,
            v4,
            forged_initiation(&daemon_key),
        ),
        (
            "forged initiation, under load",
            false,
            true,
            v4,
            forged_initiation(&daemon_key),
        ),
        (
            "forged initiation at the server, under load",
            true,
            true,
            v4,
            forged_initiation(&server_key),
        ),
        (
            "initiation from an unknown key",
            false,
            false,
            v4,
            genuine_initiation(now, &daemon_key),
        ),
        (
            "initiation from an unknown key, at the server",
            true,
            false,
            v4,
            genuine_initiation(now, &server_key),
        ),
        (
            "truncated initiation",
            false,
            true,
            v4,
            forged_initiation(&daemon_key)[..60].to_vec(),
        ),
        ("response for no handshake", false, false, v4, {
            let mut p = Vec::new();
            header::begin_response(1, 2, &mut p);
            p.extend_from_slice(&[1; 80]);
            p
        }),
        (
            "cookie reply for no handshake",
            false,
            false,
            v4,
            header::cookie_reply(5, &[0; 56]),
        ),
        ("transport for no session", false, false, v4, {
            let mut p = header::transport_header(5, 1).to_vec();
            p.extend_from_slice(&[0; 40]);
            p
        }),
        ("probe", false, false, v4, header::probe().to_vec()),
        ("garbage", true, false, v4, vec![0xB1; 300]),
    ];
    println!(
        "{:<48} {:>8} {:>9} {:>6}",
        "unauthenticated request", "bytes in", "bytes out", "ratio"
    );
    for (what, at_server, loaded, from, request) in cases {
        let (mut daemon, mut server) = endpoints(now, if loaded { 0 } else { 1000 });
        let ep = if at_server { &mut server } else { &mut daemon };
        let out = reply_bytes(ep, now, from, &request);
        let ratio = out as f64 / request.len() as f64;
        println!("{what:<48} {:>8} {out:>9} {ratio:>6.2}", request.len());
        let bound = if what.starts_with("STUN") { 3.0 } else { 1.0 };
        assert!(
            ratio <= bound,
            "{what}: {out} bytes out for {} in",
            request.len()
        );
    }
}
