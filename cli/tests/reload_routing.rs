//! `[[peer]]` entries and a `[[connect]]`'s `route` changed by a config reload, without a
//! restart, through the real binary on loopback: a `[[peer]]` added by SIGHUP is met and its
//! service reached; removed by `burrow reload`, it is let go (its listener closes, the
//! session ends, and the other side's meeting waits again); a direct-only connect to another
//! daemon's relay-only service fails until a reload makes it `any`, after which it is
//! relayed.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::*;

/// A daemon's key file (made now) and its public key.
fn daemon_key(dir: &Path, name: &str) -> (String, String) {
    let file = dir.join(format!("{name}.key"));
    // With --out, keygen prints the public key alone on stdout.
    let public = run(&["keygen", "--out", path(&file)]).expect("keygen");
    (path(&file).to_string(), public.trim().to_string())
}

/// The daemon config of `name` with `tail` after the common part.
fn text(server: &(Proc, String, String), name: &str, key: &str, tail: &str) -> String {
    format!(
        "server = \"{}\"\nserver_key = \"{}\"\ntoken = \"tok\"\nkey_file = \"{key}\"\n\
         state_dir = \"{name}\"\nudp = \"127.0.0.1:0\"\n{tail}",
        server.1, server.2
    )
}

fn status(state: &Path) -> serde_json::Value {
    let text = run(&["status", "--json", "--state-dir", path(state)]).expect("status");
    serde_json::from_str(&text).expect("JSON status")
}

/// Polls `burrow status` of `state` until `ok` holds, for at most [`WAIT`].
fn until(state: &Path, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let json = status(state);
        if ok(&json) {
            return json;
        }
        assert!(start.elapsed() < WAIT, "{what}: {json}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn peers_and_connect_routes_change_on_reload() {
    let dir = temp_dir("reload-routing");
    let server = server_with(&dir, &["--peer-wait", "2"]);
    let target = echo();
    let (a_key, a_public) = daemon_key(&dir, "a");
    let (b_key, b_public) = daemon_key(&dir, "b");
    let (c_key, _) = daemon_key(&dir, "c");
    let a_config = dir.join("a.toml");
    let b_config = dir.join("b.toml");
    let c_config = dir.join("c.toml");
    // A meets B in peer mode; C exposes a relay-only service.
    std::fs::write(
        &a_config,
        text(
            &server,
            "a",
            &a_key,
            &format!(
                "[[expose]]\nname = \"/a/echo\"\ntarget = \"{target}\"\n\
                 [[peer]]\nkey = \"{b_public}\"\nallow = [\"/a/echo\"]\n"
            ),
        ),
    )
    .unwrap();
    std::fs::write(
        &c_config,
        text(
            &server,
            "c",
            &c_key,
            &format!(
                "[[expose]]\nname = \"/c/relayed\"\ntarget = \"{target}\"\nroute = \"relay\"\n"
            ),
        ),
    )
    .unwrap();
    // B starts with no [[peer]], and a direct-only connect to C's service.
    let relayed = free_port();
    let b_connect = |route: &str| {
        format!("[[connect]]\nname = \"/c/relayed\"\nlisten = \"{relayed}\"\nroute = \"{route}\"\n")
    };
    std::fs::write(&b_config, text(&server, "b", &b_key, &b_connect("direct"))).unwrap();
    let a = spawn(&["daemon", "-c", path(&a_config)]);
    running_and_registered(&a.stderr);
    let c = spawn(&["daemon", "-c", path(&c_config)]);
    running_and_registered(&c.stderr);
    let mut b = spawn(&["daemon", "-c", path(&b_config)]);
    running_and_registered(&b.stderr);
    // A waits for B, which does not ask yet.
    wait_for(&a.stderr, "peer mode: not met yet");

    // The direct-only connect to the relay-only service fails, saying why.
    assert_eq!(ask(relayed, "never"), "");
    let why = "/c/relayed is exposed relay-only and this connect is direct-only";
    wait_for(&b.stderr, why);

    // SIGHUP: B now names A, reaches /a/echo through it, and /a/relayed may take any path.
    let listen = free_port();
    let peer = format!(
        "[[peer]]\nkey = \"{a_public}\"\nconnect = [{{ name = \"/a/echo\", listen = \"{listen}\" }}]\n"
    );
    std::fs::write(
        &b_config,
        text(&server, "b", &b_key, &format!("{}{peer}", b_connect("any"))),
    )
    .unwrap();
    let check = run(&["check", "-c", path(&b_config)]);
    assert!(check.is_ok(), "{check:?}");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &b.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let line = wait_for(&b.stderr, "reloaded the config");
    println!("{line}");
    assert!(
        line.contains(&format!("[[peer]] {a_public} met"))
            && line.contains("route of /c/relayed")
            && line.contains("1 added (/a/echo)"),
        "{line}"
    );
    assert!(!line.contains("takes a restart"), "{line}");
    let met = wait_for(&b.stderr, "met a peer in peer mode");
    assert!(met.contains(&a_public), "{met}");
    assert_eq!(ask_until_answered(listen, "peer"), "peer\n");
    assert_eq!(ask_until_answered(relayed, "relayed"), "relayed\n");
    let json = until(&dir.join("b"), "met", |j| {
        j["meetings"][0]["state"] == "met"
    });
    until(&dir.join("a"), "A met B, its error cleared", |j| {
        j["meetings"][0]["state"] == "met" && j["meetings"][0]["last_error"].is_null()
    });
    let service = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "/c/relayed")
        .cloned()
        .expect("/c/relayed");
    assert_eq!(service["route"], "relay", "{json}");

    // `burrow reload`: B lets A go. Its listener closes, the session ends, and A's meeting
    // waits for B again (the server's 2 s wait ends with B never asking).
    std::fs::write(&b_config, text(&server, "b", &b_key, &b_connect("any"))).unwrap();
    let out = run(&["reload", "--state-dir", path(&dir.join("b"))]).expect("reload");
    println!("{out}");
    assert!(
        out.contains(&format!("[[peer]] {a_public} let go")) && out.contains("1 removed (/a/echo)"),
        "{out}"
    );
    // The listener's task lets its socket go as the runtime gets to it.
    let start = Instant::now();
    loop {
        match TcpStream::connect(listen) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            other => assert!(
                start.elapsed() < WAIT,
                "the peer's listener is open: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let json = until(&dir.join("b"), "no meeting and no session with A", |j| {
        j["meetings"].as_array().is_some_and(|m| m.is_empty())
            && !j["peers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["key"] == a_public.as_str() && p["connected"] == true)
    });
    println!("{}", json["meetings"]);
    // A met B (its meeting error cleared); now its new meeting fails again.
    let json = until(&dir.join("a"), "A waits for B again", |j| {
        j["meetings"][0]["state"] == "waiting" && j["meetings"][0]["last_error"].is_string()
    });
    println!("{}", json["meetings"]);
    b.assert_running("B after two reloads");
}
