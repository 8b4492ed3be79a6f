//! TLS services published on the server's SNI port through the real binary: a server with
//! `--publish-sni PORT --sni-domain example.test`, a daemon exposing two services with
//! `publish = "sni"`, and a plain TCP client sending a TLS ClientHello for each name reaches
//! the service of that name, on every runtime; a name nobody publishes is closed and logged.
//! (Real certificates, openssl and curl: the real-NAT suite, `tests/tests/real_nat/publish.rs`.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[macro_use]
mod common;

use common::*;

/// A ClientHello record naming `host`, as a TLS 1.3 client sends it (only its SNI matters).
fn client_hello(host: &str) -> Vec<u8> {
    let h = host.as_bytes();
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&((h.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((h.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(h.len() as u16).to_be_bytes());
    ext.extend_from_slice(h);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    record.extend_from_slice(&msg);
    record
}

/// A stand-in TLS service: answers each connection with `who` and the number of bytes it
/// read first (the ClientHello, which must arrive whole and untouched), then closes.
fn named_service(who: &'static str, hello_len: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("bound");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut got = vec![0; hello_len];
            let answer = match stream.read_exact(&mut got) {
                Ok(()) => format!("{who} {}", got.len()),
                Err(e) => format!("{who} failed: {e}"),
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    addr
}

/// Sends the ClientHello for `host` to `addr`, returns what came back ("" for a reset).
fn hello_to(addr: SocketAddr, host: &str) -> String {
    let Ok(mut conn) = TcpStream::connect(addr) else {
        return String::new();
    };
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    let _ = conn.write_all(&client_hello(host));
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
}

fn tls_names_on_one_port_reach_their_own_service(runtime: &str) {
    let dir = temp_dir(&format!("publish-sni-{runtime}"));
    let sni_port = free_port().port();
    let (mut server, addr, public) = server_with(
        &dir,
        &[
            "--publish-sni",
            &sni_port.to_string(),
            "--sni-domain",
            "Example.Test",
            "--runtime",
            runtime,
        ],
    );
    let len = client_hello("blog.example.test").len();
    let blog = named_service("blog", len);
    let shop = named_service("shop", len);
    let state = dir.join("a");
    let config = dir.join("a.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{addr}\"\nserver_key = \"{public}\"\ntoken = \"tok\"\n\
             state_dir = \"{}\"\nudp = \"127.0.0.1:0\"\nruntime = \"{runtime}\"\n\
             [[expose]]\nname = \"/web/blog\"\ntarget = \"{blog}\"\npublish = \"sni\"\n\
             [[expose]]\nname = \"/web/shop\"\ntarget = \"{shop}\"\npublish = \"sni\"\n",
            path(&state)
        ),
    )
    .expect("config");
    let checked = run(&["check", "-c", path(&config)]);
    assert!(checked.is_ok(), "{checked:?}");
    let daemon = spawn(&["daemon", "-c", path(&config)]);
    running_and_registered(&daemon.stderr);
    let at = SocketAddr::from(([127, 0, 0, 1], sni_port));
    wait_for(&daemon.stderr, &format!("/web/blog published on {at}"));
    wait_for(&daemon.stderr, &format!("/web/shop published on {at}"));
    let line = wait_for(&server.stderr, "as blog.example.test on the SNI port");
    assert!(line.contains("published /web/blog of daemon"), "{line}");
    for _ in 0..2 {
        assert_eq!(hello_to(at, "blog.example.test"), format!("blog {len}"));
        assert_eq!(hello_to(at, "shop.example.test"), format!("shop {len}"));
    }
    // Nobody publishes this name: closed, and the server says why.
    assert_eq!(hello_to(at, "nope.example.test"), "", "{runtime}");
    let line = wait_for(&server.stderr, "sni: refused a connection from 127.0.0.1:");
    assert!(
        line.contains("no path is published as nope.example.test"),
        "{line}"
    );
    // The daemon stops: its names stop answering; the port stays for others.
    daemon.terminate();
    wait_for(&server.stderr, "stopped publishing /web/blog");
    let start = Instant::now();
    while !hello_to(at, "blog.example.test").is_empty() {
        assert!(start.elapsed() < WAIT, "the name still answers");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.assert_running("the server");
}

on_every_runtime!(tls_names_on_one_port_reach_their_own_service);

#[test]
fn sni_flags_are_checked() {
    let out = run(&["server", "--publish-sni", "8443", "--key", "x"]);
    let err = out.expect_err("--publish-sni needs --sni-domain");
    assert!(err.contains("--sni-domain"), "{err}");
    let out = run(&[
        "server",
        "--publish-sni",
        "8443",
        "--sni-domain",
        "bad_domain",
        "--key",
        "x",
    ]);
    let err = out.expect_err("a bad domain");
    assert!(err.contains("`bad_domain` is not a host name"), "{err}");
}
