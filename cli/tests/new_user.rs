//! What a new user hit (issue 19), through the real binary: a wrong token is reported as the
//! server's refusal and a connection to the listener closes at once naming it; a connection
//! accepted before the daemon registered waits for the registration; an `expose` target that
//! refuses is named in the log and marked unreachable in `burrow status` until it answers;
//! and `burrow status` says the registration is lost once a killed server stops answering,
//! and registered again once it is back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::*;

/// The flags every daemon here takes: the server, its key, `token` and a state directory.
fn daemon_args(dir: &Path, state: &str, server: &str, key: &str, token: &str) -> Vec<String> {
    [
        "--server",
        server,
        "--server-key",
        key,
        "--token",
        token,
        "--state-dir",
        path(&dir.join(state)),
        "--udp",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn spawn_daemon(verb: &[&str], common: Vec<String>) -> Proc {
    let mut args: Vec<String> = verb.iter().map(|s| s.to_string()).collect();
    args.extend(common);
    spawn(&args)
}

/// `burrow status` of the daemon in `state` (human-readable).
fn status(dir: &Path, state: &str) -> String {
    run(&["status", "--state-dir", path(&dir.join(state))]).unwrap_or_default()
}

/// `burrow status` once it has a line containing every one of `needles`, or a panic after
/// `within` (only a hang reaches it).
fn status_line(dir: &Path, state: &str, needles: &[&str], within: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = status(dir, state);
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        assert!(
            start.elapsed() < within,
            "no status line with {needles:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Whether the connection ends (end of file or reset) before [`WAIT`]; `false` if a byte came.
fn closes(mut conn: &TcpStream) -> bool {
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut byte = [0u8; 1];
    match conn.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A server secret key in `dir` and its public key.
fn server_key(dir: &Path) -> (String, String) {
    let key = dir.join("server.key");
    keygen(&key);
    let public = run(&["pubkey", "--key", path(&key)]).expect("pubkey");
    (path(&key).to_string(), public.trim().to_string())
}

/// A UDP port on loopback nobody uses right now.
fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn start_server(key: &str, addr: SocketAddr) -> Proc {
    let addr = addr.to_string();
    let server = spawn(&["server", "--listen", &addr, "--key", key, "--token", "tok"]);
    wait_for(&server.stdout, "listening on udp");
    server
}

#[test]
fn a_wrong_token_is_reported_as_refused_and_connections_close_at_once_saying_why() {
    let dir = temp_dir("wrong-token");
    let (_server, addr, key) = server(&dir);
    let b = spawn_daemon(
        &["connect", "/nu/echo", "127.0.0.1:0"],
        daemon_args(&dir, "b", &addr, &key, "wrong"),
    );
    let listen = listening(&b);
    let first = wait_for(&b.stderr, "registration refused");
    let refused_at = Instant::now();
    assert!(first.contains("BadToken"), "{first}");

    // A connection to the listener is closed at once, and the log says which service and why.
    let conn = TcpStream::connect(listen).expect("connect to the listener");
    assert!(closes(&conn), "the connection is closed");
    let line = wait_for(&b.stderr, "connection failed");
    assert!(line.contains("/nu/echo"), "names the service: {line}");
    assert!(line.contains("refused the token"), "says why: {line}");

    // The status says the server refused the token, for the registration and the service.
    let text = status(&dir, "b");
    println!("{text}");
    let registered = text.lines().find(|l| l.starts_with("registered")).unwrap();
    assert!(registered.contains("BadToken"), "{text}");
    let service = text.lines().find(|l| l.starts_with("/nu/echo")).unwrap();
    assert!(service.contains("refused the token"), "{text}");
    assert!(!service.contains("NoAnswer"), "{text}");

    // No hammering: the refused registration is tried again after 30 s, not at the server's
    // eviction of the session (5 s) plus a second.
    std::thread::sleep(Duration::from_secs(12).saturating_sub(refused_at.elapsed()));
    let again: Vec<String> = b
        .stderr
        .try_iter()
        .filter(|l| l.contains("registration refused"))
        .collect();
    assert!(again.is_empty(), "refused again too soon: {again:?}");
}

/// A UDP forwarder from a local port to `server` that drops everything until opened: a
/// daemon behind it cannot reach the server until the test says so.
struct Gate {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
}

fn gate(server: SocketAddr) -> Gate {
    let front = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let back = UdpSocket::bind("127.0.0.1:0").expect("bind");
    back.connect(server).expect("connect");
    let addr = front.local_addr().unwrap();
    let open = Arc::new(AtomicBool::new(false));
    let client = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
    let (f2, b2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
    let (o1, o2, c2) = (open.clone(), open.clone(), client.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = front.recv_from(&mut buf) {
            *client.lock().unwrap() = Some(from);
            if o1.load(Ordering::SeqCst) {
                let _ = back.send(&buf[..n]);
            }
        }
    });
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            // Refused while nothing listens yet: keep waiting.
            let Ok(n) = b2.recv(&mut buf) else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let to = *c2.lock().unwrap();
            if let (true, Some(to)) = (o2.load(Ordering::SeqCst), to) {
                let _ = f2.send_to(&buf[..n], to);
            }
        }
    });
    Gate { addr, open }
}

#[test]
fn a_connection_accepted_before_the_daemon_registered_waits_for_the_registration() {
    let dir = temp_dir("late-registration");
    let (_server, addr, key) = server(&dir);
    let target = echo().to_string();
    let a = spawn_daemon(
        &["expose", "/nu/echo", &target],
        daemon_args(&dir, "a", &addr, &key, "tok"),
    );
    wait_for(&a.stderr, "registered with the rendezvous server");
    // The connecting daemon reaches the server only through the gate, closed for now.
    let gate = gate(addr.parse().unwrap());
    let b = spawn_daemon(
        &["connect", "/nu/echo", "127.0.0.1:0"],
        daemon_args(&dir, "b", &gate.addr.to_string(), &key, "tok"),
    );
    let listen = listening(&b);
    let mut conn = TcpStream::connect(listen).expect("connect to the listener");
    conn.write_all(b"accepted early\n").expect("write");
    std::thread::sleep(Duration::from_secs(2));
    let text = status(&dir, "b");
    assert!(text.contains("registered  not yet"), "{text}");
    // The server becomes reachable: the daemon registers, and the waiting connection goes
    // through.
    gate.open.store(true, Ordering::SeqCst);
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut reply = String::new();
    BufReader::new(&conn)
        .read_line(&mut reply)
        .expect("read the echo");
    assert_eq!(reply, "accepted early\n");
    wait_for(&b.stderr, "registered with the rendezvous server");
}

#[test]
fn a_refusing_expose_target_is_named_and_unready_until_it_answers() {
    let dir = temp_dir("refusing-target");
    let (_server, addr, key) = server(&dir);
    let target = free_port();
    let a = spawn_daemon(
        &["expose", "/nu/down", &target.to_string()],
        daemon_args(&dir, "a", &addr, &key, "tok"),
    );
    wait_for(&a.stderr, "registered with the rendezvous server");
    let b = spawn_daemon(
        &["connect", "/nu/down", "127.0.0.1:0"],
        daemon_args(&dir, "b", &addr, &key, "tok"),
    );
    let listen = listening(&b);
    wait_for(&b.stderr, "registered with the rendezvous server");

    for _ in 0..2 {
        let mut conn = TcpStream::connect(listen).expect("connect to the listener");
        let _ = conn.write_all(b"anyone?\n");
        assert!(closes(&conn), "the connection is closed");
    }
    // The exposing side's log names the service and the target.
    let line = wait_for(&a.stderr, "connection failed");
    assert!(line.contains("/nu/down"), "names the service: {line}");
    assert!(
        line.contains(&target.to_string()),
        "names the target: {line}"
    );
    // Its status says the target is unreachable (twice), and so does the connecting side's.
    let exposed = status_line(&dir, "a", &["/nu/down", "2 times"], WAIT);
    assert!(exposed.contains("target unreachable"), "{exposed}");
    assert!(exposed.contains(&target.to_string()), "{exposed}");
    let service = status_line(&dir, "b", &["/nu/down", "unreachable"], WAIT);
    assert!(!service.contains("ready"), "{service}");

    // The target comes up: a connection goes through and both sides say ready again.
    echo_on(target);
    assert_eq!(ask_until_answered(listen, "hello"), "hello\n");
    let exposed = status_line(&dir, "a", &["/nu/down", "ready"], WAIT);
    assert!(!exposed.contains("unreachable"), "{exposed}");
    let service = status_line(&dir, "b", &["/nu/down", "ready"], WAIT);
    assert!(!service.contains("unreachable"), "{service}");
}

#[test]
fn status_says_the_registration_is_lost_when_the_server_is_killed_and_back_when_it_returns() {
    let dir = temp_dir("server-killed");
    let (key_file, key) = server_key(&dir);
    let server_addr = free_udp();
    let mut server = start_server(&key_file, server_addr);
    let target = echo().to_string();
    let a = spawn_daemon(
        &["expose", "/nu/echo", &target],
        daemon_args(&dir, "a", &server_addr.to_string(), &key, "tok"),
    );
    wait_for(&a.stderr, "registered with the rendezvous server");
    status_line(&dir, "a", &["registered  yes"], WAIT);

    // Killed: nothing closes the session; the daemon's keepalive goes unanswered.
    server.child.kill().expect("kill the server");
    let _ = server.child.wait();
    let lost = status_line(&dir, "a", &["registered  no"], Duration::from_secs(90));
    println!("{lost}");
    assert!(lost.contains("lost since"), "{lost}");
    assert!(lost.contains("stopped answering"), "{lost}");

    // Back on the same port with the same key: registered again.
    let _server = start_server(&key_file, server_addr);
    let back = status_line(&dir, "a", &["registered  yes"], Duration::from_secs(90));
    println!("{back}");
}
