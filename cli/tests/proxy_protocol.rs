//! The PROXY protocol through the real binary, on each runtime, with a real consumer: HAProxy
//! (when installed: CI installs it, elsewhere the test says why it skips) listens with
//! `accept-proxy` behind a daemon exposing it with `--proxy-protocol v1` or `v2`, and answers
//! each request with the source address it was given. That must be the address of the client
//! that connected to the other daemon's listener, not the exposing daemon's own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[macro_use]
mod common;

use common::*;

/// HAProxy on a loopback port, answering every HTTP request with `SOURCE_IP:SOURCE_PORT` as
/// the PROXY header told it.
struct Haproxy {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn haproxy(dir: &std::path::Path) -> Haproxy {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = format!(
        "global\n    maxconn 64\n\
         defaults\n    mode http\n    timeout connect 5s\n    timeout client 5s\n    timeout server 5s\n\
         frontend fe\n    bind 127.0.0.1:{port} accept-proxy\n\
         \x20   http-request return status 200 content-type text/plain lf-string \"%[src]:%[src_port]\"\n"
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, config).expect("config");
    let child = Command::new("haproxy")
        .args(["-db", "-f", path(&file)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < WAIT, "haproxy does not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Haproxy { child, addr }
}

/// An HTTP request to `to`; the response's body.
fn get(to: SocketAddr) -> (SocketAddr, String) {
    let mut conn = TcpStream::connect(to).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    let me = conn.local_addr().expect("local address");
    conn.write_all(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (me, body)
}

fn proxy_protocol(runtime: &str, version: &str) {
    if !need(&["haproxy"]) {
        return;
    }
    let dir = temp_dir(&format!("proxy-{version}-{runtime}"));
    let ha = haproxy(&dir);
    let (_server, addr, public) = server(&dir);
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
    let mut args = vec![
        "expose".to_string(),
        "/p/web".into(),
        ha.addr.to_string(),
        "--proxy-protocol".into(),
        version.into(),
    ];
    args.extend(common("a"));
    let exposer = spawn(&args);
    running_and_registered(&exposer.stderr);
    let mut args = vec!["connect".to_string(), "/p/web".into(), "127.0.0.1:0".into()];
    args.extend(common("b"));
    let connector = spawn(&args);
    running_and_registered(&connector.stderr);
    let listen = listening(&connector);
    for _ in 0..3 {
        let (me, seen) = get(listen);
        println!("{runtime} {version}: client {me}, HAProxy saw {seen}");
        assert_eq!(
            seen,
            me.to_string(),
            "HAProxy's source is the client's address"
        );
    }
}

fn proxy_protocol_v1_gives_haproxy_the_client_address(runtime: &str) {
    proxy_protocol(runtime, "v1");
}

fn proxy_protocol_v2_gives_haproxy_the_client_address(runtime: &str) {
    proxy_protocol(runtime, "v2");
}

on_every_runtime!(
    proxy_protocol_v1_gives_haproxy_the_client_address,
    proxy_protocol_v2_gives_haproxy_the_client_address,
);
