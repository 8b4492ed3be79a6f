//! `burrow netcheck` against `burrow server` on loopback (no NAT here: the real-NAT suite
//! checks each NAT profile), and the server's second STUN socket under hostile input.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;

/// A server with the given `--netcheck-udp` value; its address and the netcheck line.
fn server_netcheck(dir: &std::path::Path, netcheck: &str) -> (Proc, String, Option<String>) {
    let (server, addr, _) = server_with(dir, &["--netcheck-udp", netcheck]);
    let alt = (netcheck != "off").then(|| {
        wait_for(&server.stdout, "netcheck stun on udp")
            .rsplit(' ')
            .next()
            .expect("addr")
            .to_string()
    });
    (server, addr, alt)
}

/// The JSON value of `key` (a string unquoted, or the literal).
fn json(out: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    match &v[key] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn netcheck_on_loopback_finds_no_nat_and_both_server_addresses() {
    let dir = temp_dir("netcheck-ok");
    let (mut server, addr, alt) = server_netcheck(&dir, "auto");
    let alt = alt.expect("auto binds a second address");
    // Hostile input to the second socket first: garbage, a STUN answer, an oversize datagram.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    for bytes in [vec![0u8; 3], vec![0xff; 1500], vec![0x01; 65_000]] {
        let _ = junk.send_to(&bytes, &alt);
    }
    let out = run(&["netcheck", "--server", &addr, "--json", "--no-port-mapping"])
        .expect("netcheck succeeds");
    assert_eq!(json(&out, "no_nat"), "true", "{out}");
    assert_eq!(json(&out, "server_other"), alt, "{out}");
    assert_eq!(json(&out, "mapping"), "endpoint-independent", "{out}");
    // Loopback lets everything in; both addresses share one IP.
    assert_eq!(json(&out, "filtering"), "other-ports-allowed", "{out}");
    assert_eq!(json(&out, "gateway"), "null", "{out}");
    assert!(json(&out, "verdict").starts_with("no NAT"), "{out}");
    let text = run(&["netcheck", "--server", &addr, "--no-port-mapping"]).expect("text");
    for line in [
        "UDP:          yes",
        "NAT:          none",
        "Mapping:      endpoint-independent",
        "Direct paths: no NAT",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    server.assert_running("server after hostile datagrams and two checks");
}

#[test]
fn netcheck_says_what_a_server_without_a_second_address_cannot_tell() {
    let dir = temp_dir("netcheck-off");
    let (_server, addr, _) = server_netcheck(&dir, "off");
    let out = run(&["netcheck", "--server", &addr, "--json", "--no-port-mapping"])
        .expect("still succeeds: UDP works");
    assert_eq!(json(&out, "server_other"), "null", "{out}");
    assert_eq!(json(&out, "mapping"), "unknown", "{out}");
    assert!(json(&out, "verdict").contains("--netcheck-udp"), "{out}");
}

#[test]
fn netcheck_against_nothing_fails_in_bounded_time_and_bad_values_are_refused() {
    let nobody = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = nobody.local_addr().unwrap().to_string();
    drop(nobody);
    let started = Instant::now();
    let err = run(&["netcheck", "--server", &addr, "--no-port-mapping"]).unwrap_err();
    assert!(err.contains("no answer from"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let err = run(&["netcheck"]).unwrap_err();
    assert!(err.contains("--server"), "{err}");
    let err = run(&["netcheck", "--server", "no-such-host.invalid:7000"]).unwrap_err();
    assert!(err.contains("no-such-host.invalid"), "{err}");
    let dir = temp_dir("netcheck-bad");
    let key = dir.join("server.key");
    keygen(&key);
    let err = run(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--key",
        path(&key),
        "--open",
        "--netcheck-udp",
        "nonsense",
    ])
    .unwrap_err();
    assert!(err.contains("`auto`, `off` or an IP:PORT"), "{err}");
    // The second address already taken: the server says which flag to change.
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let err = run(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--key",
        path(&key),
        "--open",
        "--netcheck-udp",
        &taken_addr,
    ])
    .unwrap_err();
    assert!(
        err.contains("--netcheck-udp") && err.contains("cannot bind"),
        "{err}"
    );
}
