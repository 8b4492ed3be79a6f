//! UDP forwarding through the real binary on loopback, on each runtime: many clients at once
//! from distinct source ports each get their own answers from a UDP echo service, the flows
//! show in `burrow status`; and `dig` resolves a name through the tunnel against dnsmasq
//! (when dnsmasq and dig are installed: CI installs them, elsewhere the test says why it
//! skips); a target given by host name is looked up.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[macro_use]
mod common;

use common::dns::{dig, dnsmasq};
use common::*;

/// A UDP echo service; returns its address and the source addresses it has seen.
fn udp_echo() -> (SocketAddr, Arc<Mutex<BTreeSet<SocketAddr>>>) {
    udp_echo_at(UdpSocket::bind("127.0.0.1:0").expect("bind"))
}

/// [`udp_echo`] on `socket`.
fn udp_echo_at(socket: UdpSocket) -> (SocketAddr, Arc<Mutex<BTreeSet<SocketAddr>>>) {
    let addr = socket.local_addr().expect("bound");
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            record.lock().unwrap().insert(from);
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    (addr, seen)
}

/// A server, a daemon exposing `target` over UDP as `name`, and one connecting to it on a
/// local UDP port, on one runtime.
struct Tunnel {
    _server: Proc,
    _exposer: Proc,
    _connector: Proc,
    /// The connecting daemon's UDP listener.
    listen: SocketAddr,
    /// The connecting daemon's state directory (its control socket).
    state: PathBuf,
    /// Everything's files; removed after the processes above are stopped.
    _dir: TempDir,
}

impl Tunnel {
    fn new(test: &str, runtime: &str, target: &str) -> Self {
        let dir = temp_dir(&format!("{test}-{runtime}"));
        let (server, addr, public) = server(&dir);
        let common = |state: &str| {
            [
                "--server",
                &addr,
                "--server-key",
                &public,
                "--token",
                "tok",
                "--state-dir",
                path(&dir.join(state)),
                "--udp",
                "127.0.0.1:0",
                "--runtime",
                runtime,
            ]
            .map(String::from)
        };
        let name = format!("/udp/{test}");
        let mut args = vec![
            "expose".to_string(),
            name.clone(),
            target.to_string(),
            "--protocol".into(),
            "udp".into(),
        ];
        args.extend(common("a"));
        let exposer = spawn(&args);
        running_and_registered(&exposer.stderr);
        let mut args = vec![
            "connect".to_string(),
            name,
            "127.0.0.1:0".into(),
            "--protocol".into(),
            "udp".into(),
        ];
        args.extend(common("b"));
        let connector = spawn(&args);
        running_and_registered(&connector.stderr);
        let listen = listening(&connector);
        Self {
            _server: server,
            _exposer: exposer,
            _connector: connector,
            listen,
            state: dir.join("b"),
            _dir: dir,
        }
    }
}

/// Sends `msg` from `socket` to `to` and waits for the answer, sending again after each
/// second of silence (the tunnel may still be coming up), for at most [`WAIT`].
fn exchange(socket: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Vec<u8> {
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    loop {
        socket.send_to(msg, to).expect("send");
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => return buf[..n].to_vec(),
            Err(_) if start.elapsed() < WAIT => continue,
            Err(e) => panic!("no answer to {:?}: {e}", String::from_utf8_lossy(msg)),
        }
    }
}

on_every_runtime!(
    concurrent_udp_flows_are_kept_apart,
    dig_resolves_through_the_tunnel,
    idle_udp_flows_are_cleaned_up_on_both_sides,
    a_host_name_target_is_looked_up,
    reload_starts_and_stops_udp_connects,
);

/// [`exchange`] until the answer is `msg` itself (a late answer to an earlier resend on the
/// same socket is skipped), for at most [`WAIT`].
fn echoed(socket: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let start = Instant::now();
    loop {
        let answer = exchange(socket, to, msg);
        if answer == msg || start.elapsed() > WAIT {
            return answer;
        }
    }
}

/// `burrow status --json` of the daemon with `state`, once `ok` accepts it.
fn status_json(
    state: &std::path::Path,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let text = run(&["status", "--json", "--state-dir", path(state)]).unwrap_or_default();
        if let Ok(status) = serde_json::from_str(&text) {
            if ok(&status) {
                return status;
            }
        }
        assert!(start.elapsed() < WAIT, "status never fit:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The address the UDP `[[connect]]` `name` listens on, from `status`.
fn udp_listen(status: &serde_json::Value, name: &str) -> Option<SocketAddr> {
    let services = status["services"].as_array()?;
    let s = services
        .iter()
        .find(|s| s["name"] == format!("{name} (udp)"))?;
    s["listen"][0].as_str()?.parse().ok()
}

/// A reload (`burrow reload`) starts an added UDP `[[connect]]` and stops a removed one (its
/// port is free again, its flows are gone); the one left as it was keeps its flow: the same
/// client's next datagram opens none.
fn reload_starts_and_stops_udp_connects(runtime: &str) {
    let dir = temp_dir(&format!("udp-reload-{runtime}"));
    let (_server, addr, key) = server(&dir);
    let (echo, _) = udp_echo();
    let config = |state: &str, entries: &str| {
        format!(
            "server = \"{addr}\"\nserver_key = \"{key}\"\ntoken = \"tok\"\nudp = \"127.0.0.1:0\"\n\
             runtime = \"{runtime}\"\nstate_dir = \"{}\"\n{entries}",
            path(&dir.join(state))
        )
    };
    let entry = |kind: &str, name: &str, key: &str, value: &str| {
        format!("[[{kind}]]\nname = \"{name}\"\n{key} = \"{value}\"\nprotocol = \"udp\"\n")
    };
    let exposes: String = ["/u/one", "/u/two", "/u/three"]
        .iter()
        .map(|n| entry("expose", n, "target", &echo.to_string()))
        .collect();
    std::fs::write(dir.join("a.toml"), config("a", &exposes)).unwrap();
    let a = spawn(&["daemon", "-c", path(&dir.join("a.toml"))]);
    running_and_registered(&a.stderr);
    let connect = |n: &str| entry("connect", n, "listen", "127.0.0.1:0");
    let b_config = dir.join("b.toml");
    std::fs::write(
        &b_config,
        config("b", &(connect("/u/one") + &connect("/u/three"))),
    )
    .unwrap();
    let mut b = spawn(&["daemon", "-c", path(&b_config)]);
    running_and_registered(&b.stderr);
    let state = dir.join("b");
    let status = status_json(&state, |s| udp_listen(s, "/u/three").is_some());
    let (one, three) = (
        udp_listen(&status, "/u/one").unwrap(),
        udp_listen(&status, "/u/three").unwrap(),
    );
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    assert_eq!(echoed(&client, one, b"one"), b"one");
    assert_eq!(echoed(&client, three, b"three"), b"three");
    let opened = |s: &serde_json::Value| s["udp"]["flows_opened"].as_u64().unwrap_or(0);
    let before = opened(&status_json(&state, |_| true));

    std::fs::write(
        &b_config,
        config("b", &(connect("/u/one") + &connect("/u/two"))),
    )
    .unwrap();
    let reloaded = run(&["reload", "--state-dir", path(&state)]).expect("reload");
    assert_eq!(
        reloaded.trim(),
        "reloaded: 1 added (/u/two), 1 removed (/u/three), 1 unchanged"
    );
    b.assert_running("the daemon after the reload");
    UdpSocket::bind(three).expect("the removed service's port is free");
    assert_eq!(echoed(&client, one, b"one again"), b"one again");
    let status = status_json(&state, |s| udp_listen(s, "/u/two").is_some());
    assert_eq!(
        opened(&status),
        before,
        "the kept service's flow carried on"
    );
    let flows = status["flows"].as_array().expect("flows");
    assert!(
        flows.iter().all(|f| f["service"] != "/u/three"),
        "the removed service's flow is gone: {flows:?}"
    );
    let two = udp_listen(&status, "/u/two").unwrap();
    assert_eq!(echoed(&client, two, b"two"), b"two");
    assert_eq!(opened(&status_json(&state, |_| true)), before + 1);
}

/// A UDP target given as `localhost:PORT` is looked up (off the daemon's loop) for the flow,
/// which then reaches the service: before, only an IP:PORT was taken.
fn a_host_name_target_is_looked_up(runtime: &str) {
    let (echo, seen) = udp_echo();
    // `localhost` may name ::1 first: the same port there answers too (when it can be had).
    let v6 = UdpSocket::bind(("::1", echo.port())).ok().map(udp_echo_at);
    let tunnel = Tunnel::new("named", runtime, &format!("localhost:{}", echo.port()));
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    assert_eq!(exchange(&socket, tunnel.listen, b"by name"), b"by name");
    let seen_v6 = v6.map_or(0, |(_, s)| s.lock().unwrap().len());
    assert_eq!(
        seen.lock().unwrap().len() + seen_v6,
        1,
        "one flow, one socket"
    );
}

fn concurrent_udp_flows_are_kept_apart(runtime: &str) {
    let (echo, seen) = udp_echo();
    let tunnel = Tunnel::new("flows", runtime, &echo.to_string());
    const CLIENTS: usize = 32;
    const ROUNDS: usize = 5;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let to = tunnel.listen;
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
                for r in 0..ROUNDS {
                    let msg = format!("client {c} round {r}");
                    let answer = exchange(&socket, to, msg.as_bytes());
                    // A stale answer to an earlier resend is ours too; another client's never.
                    let text = String::from_utf8(answer).expect("utf-8");
                    assert!(
                        text.starts_with(&format!("client {c} round ")),
                        "client {c} got {text:?}"
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    // One flow, so one source port at the service, per client.
    assert_eq!(seen.lock().unwrap().len(), CLIENTS, "{seen:?}");
    let status = run(&["status", "--state-dir", path(&tunnel.state)]).expect("status");
    println!("{status}");
    assert!(
        status.contains(&format!("udp flows: {CLIENTS} opened")),
        "{status}"
    );
    assert_eq!(status.matches(" out ").count(), CLIENTS, "{status}");
}

fn dig_resolves_through_the_tunnel(runtime: &str) {
    if !need(&["dnsmasq", "dig"]) {
        return;
    }
    let dns = dnsmasq();
    let tunnel = Tunnel::new("dns", runtime, &dns.addr.to_string());
    let start = Instant::now();
    let answer = loop {
        match dig(tunnel.listen, 1) {
            Some(a) if a == ["10.1.2.3"] => break a,
            other => {
                assert!(
                    start.elapsed() < WAIT,
                    "no answer through the tunnel: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(answer, ["10.1.2.3"]);
    // Queries per second, one at a time from one dig process: direct, then through the tunnel.
    const N: usize = 300;
    let qps = |to: SocketAddr| {
        let start = Instant::now();
        let answers = dig(to, N).expect("dig batch");
        let took = start.elapsed();
        assert_eq!(answers.len(), N, "every query answered");
        assert!(answers.iter().all(|a| a == "10.1.2.3"), "{answers:?}");
        N as f64 / took.as_secs_f64()
    };
    let direct = qps(dns.addr);
    let tunneled = qps(tunnel.listen);
    println!(
        "dig qps on {runtime}: direct {direct:.0}, through the tunnel {tunneled:.0} ({N} sequential queries each)"
    );
}

/// `burrow status` of the daemon with `state` until it contains `needle`.
fn status_until(state: &std::path::Path, needle: &str) -> String {
    status_until_any(state, &[needle])
}

/// `burrow status` of the daemon with `state` until it contains one of `needles`.
fn status_until_any(state: &std::path::Path, needles: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let status = run(&["status", "--state-dir", path(state)]).unwrap_or_default();
        if needles.iter().any(|n| status.contains(n)) {
            return status;
        }
        assert!(
            start.elapsed() < WAIT,
            "status never showed one of {needles:?}:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Both daemons with `udp_flow_timeout = 1` (config files): a flow that answered once shows
/// in both daemons' status, then, idle past a second, is forgotten by both (counted as
/// expired, no flow row left); a new datagram from the same client opens a new flow.
fn idle_udp_flows_are_cleaned_up_on_both_sides(runtime: &str) {
    let (echo, seen) = udp_echo();
    let dir = temp_dir(&format!("udp-idle-{runtime}"));
    let (_server, addr, public) = server(&dir);
    let config = |state: &str, entry: String| {
        let file = dir.join(format!("{state}.toml"));
        std::fs::write(
            &file,
            format!(
                "server = \"{addr}\"\nserver_key = \"{public}\"\ntoken = \"tok\"\n\
                 state_dir = \"{}\"\nudp = \"127.0.0.1:0\"\nudp_flow_timeout = 1\n{entry}",
                path(&dir.join(state))
            ),
        )
        .expect("config");
        file
    };
    let a = config(
        "a",
        format!("[[expose]]\nname = \"/udp/idle\"\ntarget = \"{echo}\"\nprotocol = \"udp\"\n"),
    );
    let b = config(
        "b",
        "[[connect]]\nname = \"/udp/idle\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"udp\"\n".into(),
    );
    let exposer = spawn(&["daemon", "-c", path(&a), "--runtime", runtime]);
    running_and_registered(&exposer.stderr);
    let connector = spawn(&["daemon", "-c", path(&b), "--runtime", runtime]);
    running_and_registered(&connector.stderr);
    let listen = listening(&connector);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    assert_eq!(exchange(&socket, listen, b"ping"), b"ping");
    let (state_a, state_b) = (dir.join("a"), dir.join("b"));
    // Both sides forget it once it is idle past its second: counted, and no row left. The
    // connector's timer runs from the client's datagram, the exposer's from the service's
    // answer, a moment later: the exposer forgets it at its own timeout, or when the
    // connector's END reaches it first (a loaded machine): either is counted.
    let b_status = status_until(&state_b, "1 opened, 1 expired");
    let a_status = status_until_any(
        &state_a,
        &[
            "1 opened, 1 expired, 0 ended",
            "1 opened, 0 expired, 1 ended",
        ],
    );
    for status in [&a_status, &b_status] {
        let rows = status
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains("/udp/idle"));
        assert_eq!(rows.count(), 0, "{runtime}: a flow row is left:\n{status}");
    }
    println!("{runtime}: connector after the idle timeout:\n{b_status}\nexposer:\n{a_status}");
    // The same client again: a new flow (and a new socket toward the service).
    assert_eq!(exchange(&socket, listen, b"again"), b"again");
    status_until(&state_b, "2 opened, 1 expired");
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "one service-side socket per flow"
    );
}
