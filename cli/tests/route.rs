//! Route policy per service through the real binary on loopback: one daemon exposes a
//! relay-only and a direct-only service from its config file; a direct-only `burrow connect`
//! to the relay-only one fails with an error that says why (in its log and `burrow status`),
//! and two other daemons each reach one of the services the way it allows, shown in
//! `burrow status` on both sides.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Instant;

mod common;

use common::*;

/// `burrow status --json` of the daemon with state directory `state`.
fn status(state: &Path) -> serde_json::Value {
    let text = run(&["status", "--json", "--state-dir", path(state)]).expect("status");
    serde_json::from_str(&text).expect("JSON status")
}

/// The session (in `json`, a status) that carries the first service we connect to.
fn service_peer(json: &serde_json::Value) -> serde_json::Value {
    let peer = &json["services"][0]["peer"];
    let peers = json["peers"].as_array().expect("peers");
    let found = peers.iter().find(|p| p["peer"] == *peer);
    found
        .cloned()
        .unwrap_or_else(|| panic!("no session for the service: {json}"))
}

/// Sends a line through `listen` and returns the echo ("" if the connection was closed).
fn through(listen: SocketAddr, line: &str) -> String {
    let mut stream = TcpStream::connect(listen).expect("connect to the listener");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let _ = stream.write_all(format!("{line}\n").as_bytes());
    let mut reply = String::new();
    let _ = BufReader::new(&stream).read_line(&mut reply);
    reply
}

#[test]
fn each_service_follows_its_own_route_and_a_conflict_says_why() {
    let dir = temp_dir("route");
    let (_server, addr, public) = server(&dir);
    let target = echo();
    let config = dir.join("a.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{addr}\"\nserver_key = \"{public}\"\ntoken = \"tok\"\n\
             state_dir = \"a\"\nudp = \"127.0.0.1:0\"\n\
             [[expose]]\nname = \"/r/relayed\"\ntarget = \"{target}\"\nroute = \"relay\"\n\
             [[expose]]\nname = \"/r/direct\"\ntarget = \"{target}\"\nroute = \"direct\"\n"
        ),
    )
    .expect("config");
    let check = run(&["check", "-c", path(&config)]).expect("burrow check");
    assert!(check.contains("2 exposed"), "{check}");
    let exposer = spawn(&["daemon", "-c", path(&config)]);
    running_and_registered(&exposer.stderr);
    let connect = |state: &str, name: &str, route: &str| {
        let state = dir.join(state);
        let daemon = spawn(&[
            "connect",
            name,
            "127.0.0.1:0",
            "--server",
            &addr,
            "--server-key",
            &public,
            "--token",
            "tok",
            "--state-dir",
            path(&state),
            "--udp",
            "127.0.0.1:0",
            "--route",
            route,
        ]);
        running_and_registered(&daemon.stderr);
        let listen = listening(&daemon);
        (daemon, listen, state)
    };

    // Direct-only against relay-only: no path satisfies both.
    let (conflict, listen, state) = connect("b", "/r/relayed", "direct");
    assert_eq!(through(listen, "never"), "", "the connection is closed");
    let why = "/r/relayed is exposed relay-only and this connect is direct-only";
    let line = wait_for(&conflict.stderr, why);
    println!("{line}");
    let start = Instant::now();
    let service = loop {
        let json = status(&state);
        let service = json["services"][0].clone();
        if service["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(why))
        {
            break service;
        }
        assert!(start.elapsed() < WAIT, "no route error in status: {json}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(service["route"], "direct", "{service}");
    let human = run(&["status", "--state-dir", path(&state)]).expect("status");
    assert!(human.contains(why), "{human}");

    // Any against relay-only: relayed, though a direct path exists on loopback.
    let (_relayed, listen, relayed_state) = connect("c", "/r/relayed", "any");
    assert_eq!(through(listen, "by the relay"), "by the relay\n");
    // Any against direct-only: direct.
    let (_direct, listen, direct_state) = connect("d", "/r/direct", "any");
    assert_eq!(through(listen, "straight"), "straight\n");
    for (state, route, relayed) in [
        (&relayed_state, "relay", true),
        (&direct_state, "direct", false),
    ] {
        let json = status(state);
        assert_eq!(json["services"][0]["route"], route, "{json}");
        assert_eq!(service_peer(&json)["relayed"], relayed, "{json}");
        assert_eq!(service_peer(&json)["connected"], true, "{json}");
    }
    // Still so a while later: the relayed session never moved to the direct path.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(through(listen, "again"), "again\n");
    assert_eq!(service_peer(&status(&relayed_state))["relayed"], true);
    let json = status(&dir.join("a"));
    let routes = json["exposed_routes"].to_string();
    assert!(
        routes.contains("[\"/r/relayed\",\"relay\"]")
            && routes.contains("[\"/r/direct\",\"direct\"]"),
        "{json}"
    );
    let human = run(&["status", "--state-dir", path(&dir.join("a"))]).expect("status");
    println!("{human}");
    assert!(human.contains("ROUTE"), "{human}");
}
