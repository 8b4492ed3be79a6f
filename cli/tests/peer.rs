//! Peer mode from the config through the real binary on loopback: two daemons whose
//! `[[peer]]` entries name each other meet (no lookup in the server's directory) and one
//! reaches the service the other allows it; a daemon whose peer never asks for it reports
//! that in its log and `burrow status`, and asks again.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::*;

/// `burrow server` with a short peer-mode wait.
fn server_with_wait(dir: &Path, secs: u64) -> (Proc, String, String) {
    server_with(dir, &["--peer-wait", &secs.to_string()])
}

/// A daemon's key file (made now) and its public key.
fn daemon_key(dir: &Path, name: &str) -> (String, String) {
    let file = dir.join(format!("{name}.key"));
    let out = std::process::Command::new(BIN)
        .args(["keygen", "--out", path(&file)])
        .output()
        .expect("keygen");
    assert!(out.status.success(), "keygen: {out:?}");
    // With --out, keygen prints the public key alone on stdout.
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (path(&file).to_string(), public)
}

/// Writes a daemon config `name.toml` with `tail` after the common part.
fn config(
    dir: &Path,
    name: &str,
    server: &(Proc, String, String),
    key: &str,
    tail: &str,
) -> String {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "server = \"{}\"\nserver_key = \"{}\"\ntoken = \"tok\"\nkey_file = \"{key}\"\n\
             state_dir = \"{name}\"\nudp = \"127.0.0.1:0\"\n{tail}",
            server.1, server.2
        ),
    )
    .expect("config");
    let check = run(&["check", "-c", path(&file)]);
    assert!(check.is_ok(), "burrow check: {check:?}");
    path(&file).to_string()
}

fn status(state: &Path) -> serde_json::Value {
    let text = run(&["status", "--json", "--state-dir", path(state)]).expect("status");
    serde_json::from_str(&text).expect("JSON status")
}

#[test]
fn two_daemons_that_name_each_other_meet_and_one_alone_says_why() {
    let dir = temp_dir("peer");
    let server = server_with_wait(&dir, 2);
    let target = echo();
    let (a_key, a_public) = daemon_key(&dir, "a");
    let (b_key, b_public) = daemon_key(&dir, "b");
    let (c_key, _) = daemon_key(&dir, "c");
    let listen = free_port();
    let a = config(
        &dir,
        "a",
        &server,
        &a_key,
        &format!(
            "[[expose]]\nname = \"/a/echo\"\ntarget = \"{target}\"\n\
             [[peer]]\nkey = \"{b_public}\"\nallow = [\"/a/echo\"]\n"
        ),
    );
    let b = config(
        &dir,
        "b",
        &server,
        &b_key,
        &format!(
            "[[peer]]\nkey = \"{a_public}\"\n\
             connect = [{{ name = \"/a/echo\", listen = \"{listen}\" }}]\n"
        ),
    );
    // C names A, which never names C.
    let c = config(
        &dir,
        "c",
        &server,
        &c_key,
        &format!("[[peer]]\nkey = \"{a_public}\"\n"),
    );
    let a = spawn(&["daemon", "-c", &a]);
    running_and_registered(&a.stderr);
    let b = spawn(&["daemon", "-c", &b]);
    running_and_registered(&b.stderr);
    let line = wait_for(&b.stderr, "met a peer in peer mode");
    assert!(line.contains(&a_public), "{line}");

    let mut stream = TcpStream::connect(listen).expect("connect to B's listener");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(b"peer to peer\n").expect("write");
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).expect("echo");
    assert_eq!(reply, "peer to peer\n");
    let json = status(&dir.join("b"));
    let meeting = &json["meetings"][0];
    assert_eq!(meeting["key"], a_public.as_str(), "{json}");
    assert_eq!(meeting["state"], "met", "{json}");
    let human = run(&["status", "--state-dir", path(&dir.join("b"))]).expect("status");
    println!("{human}");
    assert!(
        human.contains("PEER MODE") && human.contains("met"),
        "{human}"
    );

    // One-sided: A never asks for C, so the server's 2 s wait ends with an error, shown in
    // C's log and status; C asks again (the error stays until they meet).
    let c = spawn(&["daemon", "-c", &c]);
    running_and_registered(&c.stderr);
    let line = wait_for(&c.stderr, "peer mode: not met yet");
    println!("{line}");
    assert!(line.contains("did not ask for this daemon"), "{line}");
    let start = Instant::now();
    let json = loop {
        let json = status(&dir.join("c"));
        if json["meetings"][0]["last_error"].is_string() {
            break json;
        }
        assert!(start.elapsed() < WAIT, "no error in status: {json}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(json["meetings"][0]["state"], "waiting", "{json}");
    assert!(
        json["meetings"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("did not ask for this daemon within 2 s")),
        "{json}"
    );
    // And again after the next wait: it keeps asking.
    wait_for(&c.stderr, "peer mode: not met yet");
    // A never met C: no session between them.
    let a_status = status(&dir.join("a"));
    let c_public = status(&dir.join("c"))["public_key"].clone();
    let peers = a_status["peers"].as_array().expect("peers");
    assert!(!peers.iter().any(|p| p["key"] == c_public), "{a_status}");
}
