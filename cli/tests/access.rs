//! Access control through the real binary: a key the server never introduced reaches nothing,
//! directly or through the server's relay (a modified daemon in the test process),
//! tenants (tokens) do not see each other's names, secrets come from files or the environment,
//! and a server without a token refuses to start unless told `--open`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use burrow_core::rendezvous::ServiceName;
use burrow_core::{Config, Endpoint, Event, PublicKey, SecretKey};

mod common;

use common::*;

/// A TCP service that counts the connections it accepts (and echoes them).
fn counting_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("bound");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            seen.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut rd = stream.try_clone().expect("clone");
                let mut wr = stream;
                let _ = std::io::copy(&mut rd, &mut wr);
            });
        }
    });
    (addr, count)
}

/// Writes `text` to `dir/name` with `mode`.
fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path(&p).to_string()
}

/// `burrow server` with the tokens in a token file.
fn server_with_token_file(dir: &Path, tokens: &str) -> (Proc, String, String) {
    let key = dir.join("server.key");
    keygen(&key);
    let file = secret_file(dir, "tokens", tokens, 0o600);
    let server = spawn(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--key",
        path(&key),
        "--token-file",
        &file,
    ]);
    let public = wait_for(&server.stdout, "server public key:");
    let addr = wait_for(&server.stdout, "listening on udp");
    let word = |l: String| l.rsplit(' ').next().expect("word").to_string();
    (server, word(addr), word(public))
}

/// A daemon process (`expose` or `connect`) with its own state directory; `token` is the
/// command line's token arguments.
fn daemon(
    dir: &Path,
    state: &str,
    server: &(Proc, String, String),
    cmd: &[&str],
    token: &[&str],
    env: Option<&str>,
) -> Proc {
    let state_dir = dir.join(state);
    let mut args: Vec<&str> = cmd.to_vec();
    args.extend(["--server", &server.1, "--server-key", &server.2]);
    args.extend(token);
    args.extend(["--state-dir", path(&state_dir), "--udp", "127.0.0.1:0"]);
    spawn_env(&args, env.map(|t| ("BURROW_TOKEN", t)))
}

/// An endpoint that never registered: handshakes straight with `key` at `addr`, opens a stream
/// to `service` and writes to it, for `time`. Returns whether a session came up.
fn stranger(addr: SocketAddr, key: PublicKey, service: &str, time: Duration) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let start = Instant::now();
    let secret = SecretKey::from_bytes([0x5a; 32]);
    let mut ep = Endpoint::new(Config::new(secret), [0x5b; 32], start, unix);
    let peer = ep.connect(start, key, addr).expect("connect");
    let name = ServiceName::parse(service).expect("name");
    let stream = ep.open_stream(start, peer, &name).expect("open");
    ep.stream_write(start, peer, stream, b"let me in\n")
        .expect("write");
    let mut connected = false;
    let mut buf = [0u8; 2048];
    while start.elapsed() < time {
        while let Some(t) = ep.poll_transmit() {
            let _ = socket.send_to(&t.payload, t.dst);
        }
        while let Some(e) = ep.poll_event() {
            connected |= matches!(e, Event::Connected { .. });
        }
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            ep.handle_input(Instant::now(), from, &buf[..n]);
        }
        if ep
            .poll_timeout()
            .is_some_and(|(at, _)| at <= Instant::now())
        {
            ep.handle_timeout(Instant::now());
        }
    }
    connected
}

/// A modified daemon in this process (`burrow_core::hostile`) with key `secret` and `token`,
/// talking to the real server at `server` (address, key): as soon as its session with the server is up
/// (and registered, when `registered`), it sends a handshake to the daemon `key` and a stream
/// to `service` through the server's relay, without an introduction, for `time`. Returns
/// whether a session with `key` came up, whether it registered, and how many packets it
/// wrapped for the relay.
fn relay_intruder(
    server: (SocketAddr, PublicKey),
    secret: SecretKey,
    token: &str,
    registered: bool,
    key: PublicKey,
    service: &str,
    time: Duration,
) -> (bool, bool, u64) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let start = Instant::now();
    let rendezvous = burrow_core::config::RendezvousConfig::new(server.1, server.0, token);
    let config = Config::daemon(secret, rendezvous);
    let mut ep = Endpoint::new(config, [0x6b; 32], start, unix);
    let name = ServiceName::parse(service).expect("name");
    let (mut up, mut is_registered, mut connected, mut sent) = (false, false, false, false);
    let mut buf = [0u8; 2048];
    while start.elapsed() < time {
        let now = Instant::now();
        if up && (is_registered || !registered) && !sent {
            sent = true;
            let peer =
                burrow_core::hostile::connect_through_relay(&mut ep, now, key).expect("a daemon");
            let stream = ep.open_stream(now, peer, &name).expect("open");
            ep.stream_write(now, peer, stream, b"let me in\n")
                .expect("write");
        }
        while let Some(t) = ep.poll_transmit() {
            let _ = socket.send_to(&t.payload, t.dst);
        }
        while let Some(e) = ep.poll_event() {
            match e {
                Event::Connected { key: k, .. } if k == server.1 => up = true,
                Event::Connected { key: k, .. } => connected |= k == key,
                Event::Registered { .. } => is_registered = true,
                _ => {}
            }
        }
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            ep.handle_input(Instant::now(), from, &buf[..n]);
            // Its output is drained first, at the top.
            continue;
        }
        if ep
            .poll_timeout()
            .is_some_and(|(at, _)| at <= Instant::now())
        {
            ep.handle_timeout(Instant::now());
        }
    }
    (connected, is_registered, ep.stats().relayed_out)
}

/// Must-show 1 (relay half) and 3 through the real server and daemon: a key that never
/// registered, then a registered daemon of the same tenant never introduced to the exposing
/// daemon, each send a handshake and a stream naming the exposed service through the
/// server's relay. The server refuses and logs both; nothing reaches the daemon or its
/// target.
///
/// The two intruders have different keys: the server reports a sender's refusals at most
/// every 10 s, so a second intruder with the first one's key would go unreported.
#[test]
fn the_servers_relay_carries_nothing_it_did_not_introduce() {
    let dir = temp_dir("relay-intruder");
    let server = server_with_token_file(&dir, "tok\n");
    let (target, accepted) = counting_echo();
    let target = target.to_string();
    let exposer = daemon(
        &dir,
        "a",
        &server,
        &["expose", "/acc/svc", &target],
        &["--token", "tok"],
        None,
    );
    let key_line = wait_for(&exposer.stdout, "daemon public key:");
    let key: PublicKey = key_line
        .rsplit(' ')
        .next()
        .expect("key")
        .parse()
        .expect("key");
    running_and_registered(&exposer.stderr);
    let server_at = (
        server.1.parse().expect("addr"),
        server.2.parse().expect("key"),
    );
    let time = Duration::from_secs(3);

    let stranger = SecretKey::from_bytes([0x6a; 32]);
    let stranger_key = stranger.public_key().to_string();
    let (connected, registered, relayed) = relay_intruder(
        server_at,
        stranger,
        "not-a-token",
        false,
        key,
        "/acc/svc",
        time,
    );
    assert!(!connected && !registered, "the stranger got in");
    assert!(relayed > 0, "the stranger sent nothing through the relay");
    let refused = wait_for(&server.0.stderr, "relay refused");
    assert!(
        refused.contains("sender holds no registration") && refused.contains(&stranger_key),
        "{refused}"
    );

    let intruder = SecretKey::from_bytes([0x7a; 32]);
    let intruder_key = intruder.public_key().to_string();
    let (connected, registered, relayed) =
        relay_intruder(server_at, intruder, "tok", true, key, "/acc/svc", time);
    assert!(
        registered && !connected,
        "registered {registered}, connected {connected}"
    );
    assert!(
        relayed > 0,
        "the registered daemon sent nothing through the relay"
    );
    let refused = wait_for(&server.0.stderr, "never introduced");
    assert!(
        refused.contains("relay refused")
            && refused.contains(&format!("of {intruder_key} to {key}")),
        "{refused}"
    );
    eprintln!("server: {refused}");

    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the target saw a connection"
    );
    // The exposing daemon never heard of either key (had the server relayed them, it would
    // have refused their handshakes itself, and logged their keys).
    let seen: Vec<String> = exposer.stderr.try_iter().collect();
    assert!(
        !seen
            .iter()
            .any(|l| l.contains(&stranger_key) || l.contains(&intruder_key)),
        "the exposing daemon heard of the intruder: {seen:#?}"
    );
}

#[test]
fn a_key_the_server_never_introduced_reaches_nothing() {
    let dir = temp_dir("stranger");
    let server = server_with_token_file(&dir, "tok\n");
    let (target, accepted) = counting_echo();
    let target = target.to_string();
    let exposer = daemon(
        &dir,
        "a",
        &server,
        &["expose", "/acc/svc", &target],
        &["--token", "tok"],
        None,
    );
    let key_line = wait_for(&exposer.stdout, "daemon public key:");
    let key: PublicKey = key_line
        .rsplit(' ')
        .next()
        .expect("key")
        .parse()
        .expect("key");
    let udp: SocketAddr = field(&running_and_registered(&exposer.stderr), "udp")
        .parse()
        .expect("udp");
    assert!(
        !stranger(udp, key, "/acc/svc", Duration::from_secs(3)),
        "a session came up"
    );
    let refused = wait_for(&exposer.stderr, "refused a handshake");
    assert!(refused.contains("never introduced"), "{refused}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the target saw a connection"
    );
}

#[test]
fn tenants_neither_find_nor_reach_each_others_names() {
    let dir = temp_dir("tenants");
    let server = server_with_token_file(&dir, "# two tenants\nalpha\nbeta\n");
    let (target, accepted) = counting_echo();
    let target = target.to_string();
    let alpha_file = secret_file(&dir, "alpha", "alpha\n", 0o600);
    let exposer = daemon(
        &dir,
        "a",
        &server,
        &["expose", "/acc/svc", &target],
        &["--token-file", &alpha_file],
        None,
    );
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    // Token beta, from the environment: the name does not exist for it.
    let other = daemon(
        &dir,
        "b",
        &server,
        &["connect", "/acc/svc", "127.0.0.1:0"],
        &[],
        Some("beta"),
    );
    let line = wait_for(&other.stdout, "listening on");
    let listen: SocketAddr = line.split(' ').nth(2).expect("addr").parse().expect("addr");
    let mut conn = TcpStream::connect(listen).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    let _ = conn.write_all(b"hello\n");
    let mut reply = String::new();
    let _ = BufReader::new(&conn).read_line(&mut reply);
    assert_eq!(
        reply, "",
        "token beta got an answer from token alpha's service"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    // The lookup happened when the connection arrived.
    let unknown = wait_for(&other.stderr, "service unavailable");
    assert!(unknown.contains("UnknownService"), "{unknown}");
    // The same name with token alpha works (the refusal above was the tenancy, not a fault).
    let same = daemon(
        &dir,
        "c",
        &server,
        &["connect", "/acc/svc", "127.0.0.1:0"],
        &[],
        Some("alpha"),
    );
    let line = wait_for(&same.stdout, "listening on");
    let listen: SocketAddr = line.split(' ').nth(2).expect("addr").parse().expect("addr");
    let mut conn = TcpStream::connect(listen).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(b"hello\n").expect("write");
    let mut reply = String::new();
    BufReader::new(&conn).read_line(&mut reply).expect("echo");
    assert_eq!(reply, "hello\n");
}

#[test]
fn a_server_without_a_token_refuses_to_start_unless_open() {
    let dir = temp_dir("open");
    let key = dir.join("server.key");
    keygen(&key);
    let out = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--key", path(&key)])
        .output()
        .expect("server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--token-file") && err.contains("--open"),
        "{err}"
    );
    let open = spawn(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--key",
        path(&key),
        "--open",
    ]);
    wait_for(&open.stderr, "open server (--open): any token is accepted");
}

#[test]
fn token_files_are_owner_only_and_bounded() {
    let dir = temp_dir("tokenfile");
    let readable = secret_file(&dir, "readable", "tok\n", 0o644);
    let two = secret_file(&dir, "two", "a\nb\n", 0o600);
    let long = secret_file(&dir, "long", &"x".repeat(65), 0o600);
    for (file, expect) in [
        (readable.as_str(), "chmod 600"),
        (two.as_str(), "a daemon uses one"),
        (long.as_str(), "longer than 64"),
    ] {
        let out = Command::new(BIN)
            .args([
                "connect",
                "/x",
                "127.0.0.1:0",
                "--server",
                "127.0.0.1:9",
                "--server-key",
            ])
            .arg(SecretKey::from_bytes([1; 32]).public_key().to_string())
            .args(["--token-file", file, "--state-dir", path(&dir.join("s"))])
            .output()
            .expect("run");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{file}: {err}");
    }
    let out = Command::new(BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--key",
            "k",
            "--token-file",
            &readable,
        ])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

/// Reads a line through `listen` (an echo service behind the tunnel); "" when refused.
fn echo_through(listen: SocketAddr) -> String {
    let mut conn = TcpStream::connect(listen).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    let _ = conn.write_all(b"ping\n");
    let mut reply = String::new();
    let _ = BufReader::new(&conn).read_line(&mut reply);
    reply
}

#[test]
fn a_source_pins_the_first_key_and_refuses_a_new_owner_of_the_name() {
    let dir = temp_dir("pinning");
    let server = server_with_token_file(&dir, "tok\n");
    let target = echo().to_string();
    let first = daemon(
        &dir,
        "a1",
        &server,
        &["expose", "/acc/pin", &target],
        &["--token", "tok"],
        None,
    );
    let first_key = wait_for(&first.stdout, "daemon public key:");
    let first_key = first_key.rsplit(' ').next().expect("key").to_string();
    wait_for(&first.stderr, "registered with the rendezvous server");
    let source = daemon(
        &dir,
        "b",
        &server,
        &["connect", "/acc/pin", "127.0.0.1:0"],
        &["--token", "tok"],
        None,
    );
    let line = wait_for(&source.stdout, "listening on");
    let listen: SocketAddr = line.split(' ').nth(2).expect("addr").parse().expect("addr");
    assert_eq!(echo_through(listen), "ping\n");
    let known = std::fs::read_to_string(dir.join("b/known_services")).expect("known_services");
    assert!(known.contains(&format!("/acc/pin {first_key}")), "{known}");
    let mode = std::fs::metadata(dir.join("b/known_services"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A graceful stop releases the name at once; a daemon with another key takes it.
    let stopped = Command::new("kill")
        .args(["-TERM", &first.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let second = daemon(
        &dir,
        "a2",
        &server,
        &["expose", "/acc/pin", &target],
        &["--token", "tok"],
        None,
    );
    wait_for(&second.stderr, "registered with the rendezvous server");
    assert_eq!(echo_through(listen), "", "the source reached the new owner");
    // (The source's lookup right after the stop found no one; this is the one after.)
    let refused = wait_for(&source.stderr, "is pinned for it");
    assert!(
        refused.contains("service unavailable") && refused.contains(&first_key),
        "{refused}"
    );
    // Given up front, a key is enforced from the first connection.
    let pinned = daemon(
        &dir,
        "c",
        &server,
        &[
            "connect",
            "/acc/pin",
            "127.0.0.1:0",
            "--peer-key",
            &first_key,
        ],
        &["--token", "tok"],
        None,
    );
    let line = wait_for(&pinned.stdout, "listening on");
    let listen: SocketAddr = line.split(' ').nth(2).expect("addr").parse().expect("addr");
    assert_eq!(echo_through(listen), "");
    wait_for(&pinned.stderr, "is pinned for it");
}

#[test]
fn a_corrupt_known_services_file_stops_the_daemon_with_the_line() {
    let dir = temp_dir("known");
    std::fs::create_dir_all(dir.join("s")).expect("dir");
    std::fs::write(dir.join("s/known_services"), "/a not-a-key\n").expect("write");
    let out = Command::new(BIN)
        .args([
            "connect",
            "/a",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:9",
            "--token",
            "t",
        ])
        .arg("--server-key")
        .arg(SecretKey::from_bytes([1; 32]).public_key().to_string())
        .args(["--state-dir", path(&dir.join("s"))])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("known_services line 1") && err.contains("delete that line"),
        "{err}"
    );
}
