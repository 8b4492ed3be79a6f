//! The real `burrow` binary: a server, an `expose` and a `connect` process on loopback, a line
//! through the tunnel, `burrow status`, and the errors a person sees.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

mod common;

use common::*;

#[test]
fn expose_and_connect_processes_carry_a_line_and_report_status() {
    let dir = temp_dir("tunnel");
    let (_server, addr, key) = server(&dir);
    let target = echo().to_string();
    let common = |state: &str| {
        vec![
            "--server".to_string(),
            addr.clone(),
            "--server-key".into(),
            key.clone(),
            "--token".into(),
            "tok".into(),
            "--state-dir".into(),
            path(&dir.join(state)).to_string(),
            "--udp".into(),
            "127.0.0.1:0".into(),
        ]
    };
    let mut args = vec!["expose".to_string(), "/cli/echo".into(), target];
    args.extend(common("a"));
    let exposer = spawn(&args);
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    let mut args = vec![
        "connect".to_string(),
        "/cli/echo".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(common("b"));
    let connector = spawn(&args);
    let line = wait_for(&connector.stdout, "listening on");
    let listen: SocketAddr = line
        .split(' ')
        .nth(2)
        .expect("address")
        .parse()
        .expect("addr");
    wait_for(&connector.stderr, "registered with the rendezvous server");

    let mut stream = TcpStream::connect(listen).expect("connect to the listener");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(b"through the binary\n").expect("write");
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .expect("read the echo");
    assert_eq!(reply, "through the binary\n");

    let out = Command::new(BIN)
        .args(["status", "--json", "--state-dir", path(&dir.join("b"))])
        .output()
        .expect("status");
    assert!(out.status.success(), "status: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("\"name\":\"/cli/echo\""), "{text}");
    assert!(text.contains("\"state\":\"ready\""), "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON status");
    let peers = json["peers"].as_array().expect("peers");
    assert!(
        peers
            .iter()
            .any(|p| p["rtt_ms"].is_f64() && p["bytes_received"].as_u64() > Some(0)),
        "a peer with an RTT and traffic: {text}"
    );
    let human = Command::new(BIN)
        .args(["status", "--state-dir", path(&dir.join("b"))])
        .output()
        .expect("status");
    let human = String::from_utf8(human.stdout).expect("utf-8");
    assert!(human.contains("/cli/echo"), "{human}");
    assert!(human.contains("direct"), "{human}");

    // `burrow ping`: one line per ping with the path that answered and the round trip.
    let state = path(&dir.join("b")).to_string();
    let ping = |target: &str| {
        Command::new(BIN)
            .args(["ping", target, "--count", "2", "--interval", "0.2"])
            .args(["--state-dir", &state])
            .output()
            .expect("ping")
    };
    let out = ping("/cli/echo");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    assert!(out.status.success(), "ping: {out:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("ping /cli/echo seq={i}: direct ")) && line.ends_with(" ms"),
            "{line}"
        );
    }
    // A service it does not reach, and garbage: refused at once, with the reason.
    for (target, why) in [
        ("/cli/nothing", "not a service this daemon reaches"),
        ("not-a-key", "neither a service name"),
    ] {
        let out = ping(target);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{target}: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{target}: one error, not a line per ping"
        );
    }
}

#[test]
fn wrong_server_key_is_reported_in_one_line() {
    let dir = temp_dir("wrongkey");
    let (_server, addr, _key) = server(&dir);
    let other = Command::new(BIN).args(["keygen"]).output().expect("keygen");
    let other = String::from_utf8(other.stdout).expect("utf-8");
    let wrong = other
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .expect("public key")
        .to_string();
    let connector = spawn(&[
        "connect",
        "/cli/echo",
        "127.0.0.1:0",
        "--server",
        &addr,
        "--server-key",
        &wrong,
        "--token",
        "tok",
        "--state-dir",
        path(&dir.join("c")),
    ]);
    let line = wait_for(&connector.stderr, "server key does not match");
    assert!(line.contains("ERROR"), "{line}");
}

#[test]
fn config_and_port_errors_are_one_actionable_line() {
    let dir = temp_dir("errors");
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "server = \"127.0.0.1:7000\"\ntoken = \"t\"\ntokn = \"x\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["daemon", "-c", path(&cfg)])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("line 3") && err.contains("tokn"), "{err}");

    std::fs::write(&cfg, "server = \"127.0.0.1:7000\"\ntoken = \"t\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["daemon", "-c", path(&cfg)])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("missing `server_key`"), "{err}");

    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().to_string();
    let key = burrow_core::SecretKey::from_bytes([5; 32])
        .public_key()
        .to_string();
    let out = Command::new(BIN)
        .args([
            "connect",
            "/x/y",
            &port,
            "--server",
            "127.0.0.1:7000",
            "--server-key",
            &key,
            "--token",
            "t",
            "--state-dir",
            path(&dir.join("d")),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("burrow: error: cannot listen on"), "{err}");
    assert!(last.contains("another program holds the port"), "{err}");
}

#[test]
fn token_prints_a_fresh_random_token_each_time() {
    let token = || {
        let out = std::process::Command::new(BIN)
            .arg("token")
            .output()
            .expect("runs");
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    };
    let (a, b) = (token(), token());
    assert_eq!(a.len(), 48, "{a}");
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
    assert_ne!(a, b);
}

/// Runs `burrow ARGS` under `umask 000` (through sh, which sets it and execs burrow).
fn under_umask_000(args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(args);
    cmd
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn key_files_are_owner_only_never_followed_and_refused_when_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("keyfiles");
    let key = dir.join("a.key");
    let out = under_umask_000(&["keygen", "--out", path(&key)])
        .output()
        .expect("keygen");
    assert!(out.status.success(), "keygen: {out:?}");
    assert_eq!(mode(&key), 0o600, "a new key under umask 000");

    // --force over a 0644 file leaves a 0600 one.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = under_umask_000(&["keygen", "--force", "--out", path(&key)])
        .output()
        .expect("keygen");
    assert!(out.status.success(), "keygen --force: {out:?}");
    assert_eq!(mode(&key), 0o600, "rewritten by --force");

    // --force over a symlink replaces the link and leaves its target alone.
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "not a key\n").expect("victim");
    let link = dir.join("link.key");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let out = Command::new(BIN)
        .args(["keygen", "--out", path(&link)])
        .output()
        .expect("keygen");
    assert!(
        !out.status.success(),
        "a symlink counts as an existing file"
    );
    let out = Command::new(BIN)
        .args(["keygen", "--force", "--out", path(&link)])
        .output()
        .expect("keygen");
    assert!(out.status.success(), "keygen --force: {out:?}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "not a key\n"
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_file(),
        "the link was replaced by a regular file"
    );
    assert_eq!(mode(&link), 0o600);

    // A key that others can read is refused, with the chmod that fixes it.
    for bad in [0o644, 0o640, 0o606] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(bad)).expect("chmod");
        let out = Command::new(BIN)
            .args(["pubkey", "--key", path(&key)])
            .output()
            .expect("pubkey");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "mode {bad:o} accepted");
        assert!(err.contains(&format!("chmod 600 {}", path(&key))), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    let out = Command::new(BIN)
        .args(["pubkey", "--key", path(&key)])
        .output()
        .expect("pubkey");
    assert!(out.status.success(), "0400 is fine: {out:?}");
}

#[test]
fn the_control_socket_is_owner_only_under_umask_000() {
    use std::os::unix::net::UnixStream;
    let dir = temp_dir("ctlmode");
    let (_server, addr, key) = server(&dir);
    let state = dir.join("state");
    let mut child = under_umask_000(&[
        "expose",
        "/cli/mode",
        "127.0.0.1:9",
        "--server",
        &addr,
        "--server-key",
        &key,
        "--token",
        "tok",
        "--state-dir",
        path(&state),
        "--udp",
        "127.0.0.1:0",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("run burrow");
    let stderr = lines(child.stderr.take().expect("piped"));
    let stdout = lines(child.stdout.take().expect("piped"));
    let daemon = Proc {
        child,
        stdout,
        stderr,
    };
    wait_for(&daemon.stderr, "registered with the rendezvous server");
    let socket = state.join("control.sock");
    assert_eq!(mode(&socket), 0o600, "control socket");
    assert_eq!(mode(&state), 0o700, "state directory it created");

    // An oversize request gets an error and the connection ends; the next client is answered.
    let mut c = UnixStream::connect(&socket).expect("connect");
    c.set_read_timeout(Some(WAIT)).expect("timeout");
    c.write_all(&vec![b'x'; 10_000]).expect("write");
    let mut reply = String::new();
    BufReader::new(&c).read_line(&mut reply).expect("reply");
    assert!(reply.contains("longer than"), "{reply}");
    let out = Command::new(BIN)
        .args(["status", "--json", "--state-dir", path(&state)])
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "status after an oversize request: {out:?}"
    );
}
