//! Publishing on the server through the real binary: a server with a public port range, a
//! daemon exposing an echo service with `--publish`, and a plain TCP client (no burrow on its
//! side) connecting to the server's public port gets the echo; the port closes when the
//! daemon stops. Refusals (out of the range, over the token's limit) show in `burrow status`,
//! and the PROXY protocol gives the service the public client's address.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

#[macro_use]
mod common;

use common::*;

/// Two free consecutive loopback ports, the first returned.
fn free_ports() -> u16 {
    loop {
        let first = free_port().port();
        let Some(second) = first.checked_add(1) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", second)).is_ok()
            && TcpListener::bind(("127.0.0.1", first)).is_ok()
        {
            return first;
        }
    }
}

/// `burrow server` on `runtime` publishing ports `first`-`last`, at most `limit` per token;
/// returns it with its address and public key.
fn publishing_server(
    dir: &Path,
    runtime: &str,
    (first, last): (u16, u16),
    limit: usize,
) -> (Proc, String, String) {
    let range = format!("{first}-{last}");
    let limit = limit.to_string();
    server_with(
        dir,
        &[
            "--publish-ports",
            &range,
            "--publish-limit",
            &limit,
            "--runtime",
            runtime,
        ],
    )
}

/// `burrow status` of the daemon with `state`, until it contains every one of `needles`.
fn status_until(state: &Path, needles: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let status = run(&["status", "--state-dir", path(state)]).unwrap_or_default();
        if needles.iter().all(|n| status.contains(n)) {
            return status;
        }
        assert!(
            start.elapsed() < WAIT,
            "status never showed {needles:?}:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn a_plain_tcp_client_reaches_a_published_echo(runtime: &str) {
    let dir = temp_dir(&format!("publish-{runtime}"));
    let port = free_ports();
    let (mut server, addr, public) = publishing_server(&dir, runtime, (port, port + 1), 4);
    let echo = echo();
    let state = dir.join("a");
    let daemon = spawn(&[
        "expose",
        "/pub/echo",
        &echo.to_string(),
        "--publish",
        &port.to_string(),
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
        "--runtime",
        runtime,
    ]);
    running_and_registered(&daemon.stderr);
    let public_addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for(
        &daemon.stderr,
        &format!("/pub/echo published on {public_addr}"),
    );
    let line = wait_for(&server.stderr, "published /pub/echo of daemon");
    assert!(line.contains(&format!("on TCP port {port}")), "{line}");
    status_until(&state, &[&format!("published on {public_addr}")]);
    for i in 0..3 {
        let reply = ask(public_addr, &format!("hello {i}"));
        assert_eq!(reply, format!("hello {i}\n"), "{runtime}: the echo answers");
    }
    // The daemon stops: the server stops listening.
    daemon.terminate();
    wait_for(&server.stderr, "stopped publishing /pub/echo");
    let start = Instant::now();
    while TcpStream::connect(public_addr).is_ok() {
        assert!(start.elapsed() < WAIT, "the public port stays open");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.assert_running("the server");
}

on_every_runtime!(a_plain_tcp_client_reaches_a_published_echo);

/// A service that answers each connection with the first line it received (the PROXY v1
/// header, when the daemon sends one).
fn first_line_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("bound");
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut reader = BufReader::new(&stream);
                let _ = reader.read_line(&mut line);
                let _ = (&stream).write_all(line.as_bytes());
            });
        }
    });
    addr
}

#[test]
fn refusals_and_the_client_address_show_through_a_config_file() {
    let dir = temp_dir("publish-refusals");
    let port = free_ports();
    let (_server, addr, public) = publishing_server(&dir, "tokio", (port, port + 1), 1);
    let service = first_line_echo();
    let state = dir.join("a");
    let config = dir.join("a.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{addr}\"\nserver_key = \"{public}\"\ntoken = \"tok\"\n\
             state_dir = \"{}\"\nudp = \"127.0.0.1:0\"\n\
             [[expose]]\nname = \"/a/web\"\ntarget = \"{service}\"\nproxy_protocol = \"v1\"\npublish = {port}\n\
             [[expose]]\nname = \"/b/web\"\ntarget = \"{service}\"\npublish = 1\n\
             [[expose]]\nname = \"/c/web\"\ntarget = \"{service}\"\npublish = \"any\"\n",
            path(&state)
        ),
    )
    .expect("config");
    let checked = run(&["check", "-c", path(&config)]);
    assert!(checked.is_ok(), "{checked:?}");
    let daemon = spawn(&["daemon", "-c", path(&config)]);
    running_and_registered(&daemon.stderr);
    let public_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let status = status_until(
        &state,
        &[
            &format!("published on {public_addr}"),
            &format!(
                "publish refused: port 1 outside the server's range {port}-{}",
                port + 1
            ),
            "publish refused: token at its limit of 1 published ports",
        ],
    );
    println!("{status}");
    // The PROXY protocol header carries the public client's address.
    let start = Instant::now();
    let (me, seen) = loop {
        if let Ok(mut conn) = TcpStream::connect(public_addr) {
            conn.set_read_timeout(Some(WAIT)).expect("timeout");
            let me = conn.local_addr().expect("local");
            let _ = conn.write_all(b"hello\n");
            let mut line = String::new();
            let _ = BufReader::new(&conn).read_line(&mut line);
            if !line.is_empty() {
                break (me, line);
            }
        }
        assert!(start.elapsed() < WAIT, "the published port never answered");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        seen,
        format!("PROXY TCP4 127.0.0.1 127.0.0.1 {} {port}\r\n", me.port()),
        "the service hears of the public client"
    );
}

/// The daemon's config with one published path, `name`, on `port`.
fn one_published(dir: &Path, addr: &str, public: &str, name: &str, port: u16) -> String {
    let echo = echo();
    format!(
        "server = \"{addr}\"\nserver_key = \"{public}\"\ntoken = \"tok\"\n\
         state_dir = \"{}\"\nudp = \"127.0.0.1:0\"\n\
         [[expose]]\nname = \"{name}\"\ntarget = \"{echo}\"\npublish = {port}\n",
        path(&dir.join("a"))
    )
}

/// A reload that swaps a published path for another on the same port: the server closes the
/// port and binds it again, and the new path is served there (the runtime's loop closes a
/// listener before it binds the next, not whenever its task happens to be dropped).
fn a_port_republished_by_a_reload_serves_the_new_path(runtime: &str) {
    let dir = temp_dir(&format!("republish-{runtime}"));
    let port = free_ports();
    let (mut server, addr, public) = publishing_server(&dir, runtime, (port, port), 4);
    let config = dir.join("a.toml");
    let write = |name: &str| {
        std::fs::write(&config, one_published(&dir, &addr, &public, name, port)).expect("config")
    };
    write("/pub/one");
    let state = dir.join("a");
    let daemon = spawn(&["daemon", "-c", path(&config), "--runtime", runtime]);
    running_and_registered(&daemon.stderr);
    let public_addr = SocketAddr::from(([127, 0, 0, 1], port));
    status_until(&state, &[&format!("published on {public_addr}")]);
    assert_eq!(ask(public_addr, "one"), "one\n");
    for round in 0..3 {
        let name = if round % 2 == 0 {
            "/pub/two"
        } else {
            "/pub/one"
        };
        write(name);
        let out = run(&["reload", "--state-dir", path(&state)]).expect("reload");
        assert!(out.contains(name), "{out}");
        let line = wait_for(&server.stderr, &format!("published {name} of daemon"));
        assert!(line.contains(&format!("on TCP port {port}")), "{line}");
        status_until(&state, &[name, &format!("published on {public_addr}")]);
        let status = run(&["status", "--state-dir", path(&state)]).unwrap_or_default();
        assert!(!status.contains("publish refused"), "{runtime}: {status}");
        assert_eq!(ask(public_addr, "again"), "again\n", "{runtime}: {name}");
    }
    server.assert_running("the server");
}

on_every_runtime!(a_port_republished_by_a_reload_serves_the_new_path);
