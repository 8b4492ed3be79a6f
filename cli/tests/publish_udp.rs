//! A UDP service published on the server through the real binary, on each runtime: a server
//! with a public port range, a daemon exposing a UDP service with `--protocol udp --publish
//! PORT`, and plain UDP clients (no burrow on their side) sending to the server's public UDP
//! port: each source gets its own answers from a UDP echo, `dig` gets dnsmasq's answer, and
//! the port is closed when the daemon stops.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

#[macro_use]
mod common;

use common::dns::{dig, dnsmasq};
use common::*;

on_every_runtime!(
    udp_clients_reach_a_published_echo_each_on_its_own_flow,
    dig_resolves_at_the_servers_public_udp_port,
);

/// A UDP echo service; returns its address.
fn udp_echo() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("bound");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    addr
}

/// A loopback UDP port nothing is bound to (bound, noted, let go).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

/// A server on `runtime` publishing the one port `port`, and a daemon exposing the UDP
/// `target` as `name` published there; returns both once the daemon says it is published.
fn published(dir: &Path, runtime: &str, name: &str, target: SocketAddr, port: u16) -> (Proc, Proc) {
    let range = format!("{port}-{port}");
    let (server, addr, public) =
        server_with(dir, &["--publish-ports", &range, "--runtime", runtime]);
    let daemon = spawn(&[
        "expose",
        name,
        &target.to_string(),
        "--protocol",
        "udp",
        "--publish",
        &port.to_string(),
        "--server",
        &addr,
        "--server-key",
        &public,
        "--token",
        "tok",
        "--state-dir",
        path(&dir.join("a")),
        "--udp",
        "127.0.0.1:0",
        "--runtime",
        runtime,
    ]);
    running_and_registered(&daemon.stderr);
    let at = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for(&daemon.stderr, &format!("{name} published on {at}"));
    let line = wait_for(&server.stderr, &format!("published {name} of daemon"));
    assert!(line.contains(&format!("on UDP port {port}")), "{line}");
    (server, daemon)
}

/// Sends `msg` (`client I round R`) to `to` until its echo comes back (the first datagrams
/// may be dropped while the server's flow opens), for at most [`WAIT`]. A late echo of this
/// client's earlier resends is skipped; another client's datagram fails the test.
fn echoed(socket: &UdpSocket, to: SocketAddr, client: usize, msg: &str) {
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let start = Instant::now();
    let mine = format!("client {client} ");
    let mut buf = [0u8; 2048];
    loop {
        socket.send_to(msg.as_bytes(), to).expect("send");
        while let Ok((n, _)) = socket.recv_from(&mut buf) {
            let got = String::from_utf8_lossy(&buf[..n]);
            if got == msg {
                return;
            }
            assert!(
                got.starts_with(&mine),
                "another client's datagram came back: {got:?}"
            );
        }
        assert!(start.elapsed() < WAIT, "no echo of {msg:?}");
    }
}

fn udp_clients_reach_a_published_echo_each_on_its_own_flow(runtime: &str) {
    let dir = temp_dir(&format!("publish-udp-{runtime}"));
    let port = free_udp_port();
    let (mut server, daemon) = published(&dir, runtime, "/pub/echo", udp_echo(), port);
    let public = SocketAddr::from(([127, 0, 0, 1], port));
    // Clients from distinct source ports, each with messages of its own, interleaved.
    let clients: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    for round in 0..3 {
        for (i, c) in clients.iter().enumerate() {
            echoed(c, public, i, &format!("client {i} round {round}"));
        }
    }
    let status = run(&["status", "--state-dir", path(&dir.join("a"))]).unwrap_or_default();
    assert!(
        status.contains(&format!("published on {public} (UDP)")),
        "{status}"
    );
    // The daemon stops: the server stops publishing and frees the port.
    daemon.terminate();
    wait_for(&server.stderr, "stopped publishing /pub/echo");
    let start = Instant::now();
    while UdpSocket::bind(public).is_err() {
        assert!(start.elapsed() < WAIT, "the public UDP port stays bound");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.assert_running("the server");
}

fn dig_resolves_at_the_servers_public_udp_port(runtime: &str) {
    if !need(&["dnsmasq", "dig"]) {
        return;
    }
    let dns = dnsmasq();
    let dir = temp_dir(&format!("publish-dns-{runtime}"));
    let port = free_udp_port();
    let (_server, _daemon) = published(&dir, runtime, "/pub/dns", dns.addr, port);
    let public = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    loop {
        match dig(public, 1) {
            Some(a) if a == ["10.1.2.3"] => break,
            other => {
                assert!(
                    start.elapsed() < WAIT,
                    "no answer at the public port: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    // Sequential queries from one dig process: every one answered.
    const N: usize = 100;
    let started = Instant::now();
    let answers = dig(public, N).expect("dig batch");
    assert_eq!(answers.len(), N, "every query answered");
    assert!(answers.iter().all(|a| a == "10.1.2.3"), "{answers:?}");
    println!(
        "dig at the server's public UDP port on {runtime}: {:.0} qps ({N} sequential queries)",
        N as f64 / started.elapsed().as_secs_f64()
    );
}
