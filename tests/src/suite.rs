//! The loopback end-to-end suite, generic over the runtime. [`crate::loopback_suite!`]
//! instantiates every test for one [`LoopbackNode`] type; each test is bounded by
//! [`crate::loopback::LIMIT`] and passes or fails on data and states, never on timing.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use crate::loopback::{
    LoopbackNode, Tunnel, client, echo_service, noise, reply_after_eof_service, round_trip,
    source_service, unix_echo_service, wait_for,
};
use crate::ports::RefusingAddr;

/// Instantiates the loopback suite for a runtime: `loopback_suite!(NodeType);` in a test
/// file defines one `#[test]` per suite function.
#[macro_export]
macro_rules! loopback_suite {
    ($node:ty) => {
        $crate::loopback_suite!(@tests $node;
            sixty_four_mib_echo_matches_sha256,
            hundred_concurrent_connections,
            half_close_client_still_receives_the_reply,
            unreachable_target_resets_the_client,
            unix_socket_target,
            restarted_daemon_reconnects_by_itself,
            restarted_exposing_daemon_is_found_again,
            server_restart_during_direct_transfer_completes,
            tunnel_death_resets_the_local_client,
            shutdown_frees_the_local_listeners_port,
        );
    };
    (@tests $node:ty; $($test:ident,)*) => {
        $(
            #[test]
            fn $test() {
                $crate::loopback::bounded($crate::suite::$test::<$node>);
            }
        )*
    };
}

/// Streams `len` bytes of noise through an echo connection to `addr`; returns the SHA-256 of
/// what came back and of what was sent, and the byte count. `pause` runs after `at` bytes
/// came back, while the writer waits (used to restart the server mid-transfer).
fn echo_stream(
    addr: std::net::SocketAddr,
    len: usize,
    at: usize,
    pause: impl FnOnce(),
) -> (Vec<u8>, Vec<u8>, usize) {
    let mut rd = client(addr);
    let mut wr = rd.try_clone().expect("clone");
    let data = noise(len, 0x9E37_79B9_7F4A_7C15);
    let sent = Sha256::digest(&data).to_vec();
    let (go, resume) = mpsc::channel::<()>();
    let first = (2 * at).min(len);
    let writer = std::thread::spawn(move || {
        for chunk in data[..first].chunks(256 * 1024) {
            wr.write_all(chunk).expect("write");
        }
        resume.recv().expect("the reader says when to go on");
        for chunk in data[first..].chunks(256 * 1024) {
            wr.write_all(chunk).expect("write");
        }
        wr.shutdown(Shutdown::Write).expect("half-close");
    });
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    let mut pause = Some(pause);
    loop {
        if total >= at {
            if let Some(p) = pause.take() {
                p();
                let _ = go.send(());
            }
        }
        let n = rd.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n;
    }
    if let Some(p) = pause.take() {
        p();
        let _ = go.send(());
    }
    writer.join().expect("writer");
    (hasher.finalize().to_vec(), sent, total)
}

/// 64 MiB through the tunnel and back; the SHA-256 matches.
pub fn sixty_four_mib_echo_matches_sha256<N: LoopbackNode>() {
    let echo = echo_service();
    let tunnel = Tunnel::<N>::start(&[("/e2e/echo", echo.to_string())]);
    let (got, sent, total) = echo_stream(tunnel.listen_addr("/e2e/echo"), 64 << 20, 0, || {});
    assert_eq!(total, 64 << 20);
    assert_eq!(got, sent, "SHA-256 of what came back");
    tunnel.shutdown();
}

/// 100 connections at once, each gets its own bytes back, and all close cleanly.
pub fn hundred_concurrent_connections<N: LoopbackNode>() {
    let echo = echo_service();
    let tunnel = Tunnel::<N>::start(&[("/e2e/echo", echo.to_string())]);
    let addr = tunnel.listen_addr("/e2e/echo");
    let clients: Vec<_> = (0..100u64)
        .map(|i| {
            std::thread::spawn(move || {
                let data = noise(10_000 + i as usize * 100, i + 1);
                let back = round_trip(addr, &data).expect("round trip");
                assert!(back == data, "connection {i} got its own bytes back");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    wait_for(tunnel.connector(), "connections closed", |s| {
        s.conns.is_empty()
    });
    tunnel.shutdown();
}

/// The client half-closes; the service answers after its end of file; the answer arrives.
pub fn half_close_client_still_receives_the_reply<N: LoopbackNode>() {
    let service = reply_after_eof_service();
    let tunnel = Tunnel::<N>::start(&[("/e2e/reply", service.to_string())]);
    let request = noise(300_000, 42);
    let reply = round_trip(tunnel.listen_addr("/e2e/reply"), &request).expect("round trip");
    let head = b"received 300000 bytes\n";
    assert!(
        reply.starts_with(head),
        "{:?}",
        String::from_utf8_lossy(&reply[..40.min(reply.len())])
    );
    let mut reversed = request;
    reversed.reverse();
    assert!(
        reply[head.len()..] == reversed[..],
        "the whole reply after our EOF"
    );
    tunnel.shutdown();
}

/// A target nothing listens on: the client sees a reset, not a clean end.
///
/// The target must stay unreachable for the whole test. A port bound and let go (as this test
/// once did) can be taken by a listener of a test running in parallel, and then the connect
/// succeeds and the client waits for data that never comes.
pub fn unreachable_target_resets_the_client<N: LoopbackNode>() {
    let closed = RefusingAddr::new();
    let tunnel = Tunnel::<N>::start(&[("/e2e/nothing", closed.addr().to_string())]);
    let mut s = client(tunnel.listen_addr("/e2e/nothing"));
    let _ = s.write_all(b"anyone?");
    let mut buf = Vec::new();
    let got = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "no data from a target that is not there");
    assert!(
        matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the client sees a reset, not a clean end: {got:?}"
    );
    tunnel.shutdown();
}

/// Once a node's shutdown returns, its local listeners are closed: their port can be bound
/// again at once (the async runtimes used to drop the accept task and let the runtime close
/// the socket later).
pub fn shutdown_frees_the_local_listeners_port<N: LoopbackNode>() {
    let mut tunnel = Tunnel::<N>::start(&[("/e2e/free", source_service().to_string())]);
    let addr = tunnel.listen_addr("/e2e/free");
    tunnel.stop_connector();
    std::net::TcpListener::bind(addr).expect("the port is free once shutdown returns");
    tunnel.shutdown();
}

/// A TCP listener in front of a unix-socket target.
pub fn unix_socket_target<N: LoopbackNode>() {
    let path = std::env::temp_dir().join(format!(
        "burrow-e2e-{}-{}.sock",
        std::process::id(),
        std::any::type_name::<N>().len()
    ));
    unix_echo_service(&path).expect("bind the unix socket");
    let target = format!("unix:{}", path.display());
    let tunnel = Tunnel::<N>::start(&[("/e2e/unix", target)]);
    let data = noise(1 << 20, 7);
    let back = round_trip(tunnel.listen_addr("/e2e/unix"), &data).expect("round trip");
    assert!(
        back == data,
        "1 MiB through a TCP listener to a unix-socket target"
    );
    tunnel.shutdown();
    let _ = std::fs::remove_file(&path);
}

/// A daemon stopped and started again with the same key registers by itself, and new
/// connections through it work.
pub fn restarted_daemon_reconnects_by_itself<N: LoopbackNode>() {
    let echo = echo_service();
    let mut tunnel = Tunnel::<N>::start(&[("/e2e/echo", echo.to_string())]);
    let before = noise(50_000, 1);
    let back = round_trip(tunnel.listen_addr("/e2e/echo"), &before).expect("before restart");
    assert!(back == before);
    tunnel.restart_connector();
    tunnel.wait_registered();
    let after = noise(50_000, 2);
    let back = round_trip(tunnel.listen_addr("/e2e/echo"), &after).expect("after restart");
    assert!(back == after, "a new connection after the restart");
    tunnel.shutdown();
}

/// The exposing daemon restarts (same key, a new port): daemon B's session to it is dead, but
/// B notices unanswered data within seconds, finds the new instance (through the relay until
/// it has a path) and looks the service up again, so new connections work again. The ones
/// made into the dead session in the meantime fail, and the client retries, as a client of
/// any restarted service would.
pub fn restarted_exposing_daemon_is_found_again<N: LoopbackNode>() {
    let echo = echo_service();
    let mut tunnel = Tunnel::<N>::start(&[("/e2e/echo", echo.to_string())]);
    let addr = tunnel.listen_addr("/e2e/echo");
    let before = noise(50_000, 3);
    assert!(round_trip(addr, &before).expect("before restart") == before);
    tunnel.restart_exposer();
    tunnel.wait_registered();
    let after = noise(50_000, 4);
    let mut failures = Vec::new();
    let worked = (0..30).any(|_| match round_trip(addr, &after) {
        Ok(back) if back == after => true,
        other => {
            failures.push(format!("{:?}", other.map(|b| b.len())));
            std::thread::sleep(std::time::Duration::from_secs(1));
            false
        }
    });
    assert!(worked, "no round trip after the restart: {failures:?}");
    eprintln!("found again after {} failed attempts", failures.len());
    tunnel.shutdown();
}

/// The server restarts (same key, same port) while a direct tunnel carries a transfer: the
/// transfer completes intact.
pub fn server_restart_during_direct_transfer_completes<N: LoopbackNode>() {
    let echo = echo_service();
    let mut tunnel = Tunnel::<N>::start(&[("/e2e/echo", echo.to_string())]);
    let addr = tunnel.listen_addr("/e2e/echo");
    let server = tunnel.server().udp_addr();
    let tunnel_ref = &mut tunnel;
    let (got, sent, total) = echo_stream(addr, 16 << 20, 2 << 20, || {
        let status = tunnel_ref.connector().status();
        let peer = status
            .peers
            .iter()
            .find(|p| p.addr != Some(server) && p.connected)
            .expect("a session with daemon A");
        assert!(!peer.relayed, "the transfer runs on a direct path");
        tunnel_ref.restart_server();
    });
    assert_eq!(total, 16 << 20);
    assert_eq!(got, sent, "SHA-256 of what came back across the restart");
    tunnel.shutdown();
}

/// Reads a download until it ends; how it ended (`Ok` is a clean end of file).
fn read_until_end(mut s: std::net::TcpStream) -> std::io::Result<usize> {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A tunnel that dies mid-download never passes for a complete download: the local client
/// sees a reset, not a clean end of file, when the exposing daemon stops and when its own
/// (connecting) daemon stops.
pub fn tunnel_death_resets_the_local_client<N: LoopbackNode>() {
    let source = source_service();
    let mut tunnel = Tunnel::<N>::start(&[("/e2e/download", source.to_string())]);
    let addr = tunnel.listen_addr("/e2e/download");
    let started = |addr| {
        let mut s = client(addr);
        let mut first = vec![0u8; 1 << 20];
        s.read_exact(&mut first).expect("the first MiB");
        s
    };
    let assert_reset = |what: &str, end: std::io::Result<usize>| {
        assert!(
            matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{what}: the client sees a reset, not a clean end: {end:?}"
        );
    };

    // The exposing daemon stops: its peer hears of it, and resets its client.
    let s = started(addr);
    tunnel.stop_exposer();
    assert_reset("the exposing daemon stopped", read_until_end(s));

    // Daemon A again; then the connecting daemon stops under its own client.
    tunnel.restart_exposer_after_stop();
    tunnel.wait_registered();
    let s = (0..30)
        .find_map(|_| {
            let mut s = client(addr);
            let mut first = vec![0u8; 1 << 20];
            match s.read_exact(&mut first) {
                Ok(()) => Some(s),
                Err(_) => {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    None
                }
            }
        })
        .expect("a download through the exposing daemon's new instance");
    tunnel.stop_connector();
    assert_reset("the connecting daemon stopped", read_until_end(s));
    tunnel.shutdown();
}
