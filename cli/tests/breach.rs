//! The Containment Breach API through the binary (`burrow server --cb-listen`), driven by a
//! client written from Containment Breach's README alone: a UDP `{"PeerPort": n}`, then a
//! JSON request over TCP, answered with JSON responses.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{cb_server, temp_dir};

/// How long a response that should come may take.
const ANSWER: Duration = Duration::from_secs(10);

/// One Containment Breach peer: its UDP socket and its peer port.
struct Peer {
    udp: UdpSocket,
    peer_port: i64,
    server: SocketAddr,
}

impl Peer {
    fn new(server: SocketAddr, peer_port: i64) -> Self {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        udp.set_read_timeout(Some(ANSWER)).expect("timeout");
        Self {
            udp,
            peer_port,
            server,
        }
    }

    fn udp_port(&self) -> u16 {
        self.udp.local_addr().expect("bound").port()
    }

    /// The UDP request that tells the server our UDP address.
    fn register(&self) {
        let msg = json!({ "PeerPort": self.peer_port }).to_string();
        self.udp
            .send_to(msg.as_bytes(), self.server)
            .expect("send udp");
    }

    /// Opens a TCP connection and sends one request.
    fn request(&self, kind: &str, remote_ip: &str, remote_peer_port: i64) -> Conn {
        let mut conn = Conn::open(self.server);
        conn.send(&json!({
            "RemoteIP": remote_ip,
            "RemotePeerPort": remote_peer_port,
            "LocalPeerPort": self.peer_port,
            "ConnectionType": kind,
        }));
        conn
    }
}

/// A TCP connection to the API: requests out, one JSON response per line in.
struct Conn {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Conn {
    fn open(server: SocketAddr) -> Self {
        let stream = TcpStream::connect(server).expect("connect tcp");
        stream.set_read_timeout(Some(ANSWER)).expect("timeout");
        Self {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            stream,
        }
    }

    fn send(&mut self, request: &Value) {
        self.stream
            .write_all(request.to_string().as_bytes())
            .expect("send request");
    }

    /// The next response.
    fn response(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a response");
        assert!(!line.is_empty(), "closed without a response");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    /// Whether nothing arrives (and the connection stays open) for `wait`.
    fn quiet_for(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        let quiet = match self.reader.fill_buf() {
            // Data, or the connection closed: either way not quiet.
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        self.stream.set_read_timeout(Some(ANSWER)).expect("timeout");
        quiet
    }

    /// Reads until the server closes the connection.
    fn assert_closed(&mut self) {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
        assert!(rest.is_empty(), "more after the last response: {rest:?}");
    }
}

fn ok(response: &Value) {
    assert_eq!(response["Error"], "", "{response}");
}

/// `response` gives `me` as the source and `other` as the destination.
fn meets(response: &Value, me: &Peer, other: &Peer) {
    ok(response);
    assert_eq!(response["SourceIP"], "127.0.0.1", "{response}");
    assert_eq!(response["SourcePort"], me.udp_port(), "{response}");
    assert_eq!(response["DestIP"], "127.0.0.1", "{response}");
    assert_eq!(response["DestPort"], other.udp_port(), "{response}");
}

/// A datagram from `from` to the address its response named reaches `to`.
fn exchange(from: &Peer, response: &Value, to: &Peer) {
    let dest: SocketAddr = format!(
        "{}:{}",
        response["DestIP"].as_str().unwrap(),
        response["DestPort"]
    )
    .parse()
    .expect("an address");
    from.udp.send_to(b"hello, peer", dest).expect("send");
    let mut buf = [0u8; 64];
    let (n, src) = to.udp.recv_from(&mut buf).expect("the datagram");
    assert_eq!(&buf[..n], b"hello, peer");
    assert_eq!(src.port(), from.udp_port());
}

#[test]
fn cb_peer_mode_in_both_orders() {
    let dir = temp_dir("cb-peer");
    let (mut server, addr) = cb_server(&dir, None);
    // The first peer completes UDP+TCP and waits; then the second.
    let a = Peer::new(addr, 1);
    let b = Peer::new(addr, 2);
    a.register();
    std::thread::sleep(Duration::from_millis(100));
    let mut ta = a.request("Peer", "127.0.0.1", 2);
    assert!(
        ta.quiet_for(Duration::from_millis(500)),
        "the first peer waits"
    );
    b.register();
    let mut tb = b.request("Peer", "127.0.0.1", 1);
    let (ra, rb) = (ta.response(), tb.response());
    meets(&ra, &a, &b);
    meets(&rb, &b, &a);
    ta.assert_closed();
    tb.assert_closed();
    exchange(&a, &ra, &b);
    exchange(&b, &rb, &a);

    // Interleaved, the TCP request sent right after its datagram (no pause), the second
    // peer's request first.
    let c = Peer::new(addr, 30);
    let d = Peer::new(addr, 40);
    d.register();
    c.register();
    let mut td = d.request("Peer", "127.0.0.1", 30);
    let mut tc = c.request("Peer", "127.0.0.1", 40);
    let (rc, rd) = (tc.response(), td.response());
    meets(&rc, &c, &d);
    meets(&rd, &d, &c);
    exchange(&c, &rc, &d);
    server.assert_running("the server");
}

#[test]
fn cb_server_hears_of_two_clients_in_sequence() {
    let dir = temp_dir("cb-client-server");
    let (mut server, addr) = cb_server(&dir, None);
    let s = Peer::new(addr, 80);
    s.register();
    let mut ts = s.request("Server", "", 0);
    assert!(
        ts.quiet_for(Duration::from_millis(300)),
        "registration is silent"
    );
    for (i, peer_port) in [(0, 1001), (1, 1002)] {
        let c = Peer::new(addr, peer_port);
        c.register();
        let mut tc = c.request("Client", "127.0.0.1", 80);
        let rc = tc.response();
        meets(&rc, &c, &s);
        tc.assert_closed();
        let rs = ts.response();
        meets(&rs, &s, &c);
        exchange(&c, &rc, &s);
        exchange(&s, &rs, &c);
        if i == 0 {
            // KeepAlive on the server's connection: nothing comes back, it stays.
            ts.send(&json!({ "LocalPeerPort": 80, "ConnectionType": "KeepAlive" }));
            assert!(ts.quiet_for(Duration::from_millis(300)));
        }
    }
    server.assert_running("the server");
}

#[test]
fn cb_unknown_server_is_an_immediate_error() {
    let dir = temp_dir("cb-unknown");
    let (_server, addr) = cb_server(&dir, None);
    let c = Peer::new(addr, 5);
    c.register();
    let started = Instant::now();
    let mut tc = c.request("Client", "127.0.0.1", 4242);
    let r = tc.response();
    assert!(started.elapsed() < Duration::from_secs(1), "not immediate");
    let error = r["Error"].as_str().expect("Error");
    assert!(error.contains("no Server registered"), "{r}");
    tc.assert_closed();
}

#[test]
fn cb_waiter_gets_a_timeout_error_when_its_lease_ends() {
    let dir = temp_dir("cb-timeout");
    let (_server, addr) = cb_server(&dir, Some(1));
    let a = Peer::new(addr, 7);
    a.register();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let mut ta = a.request("Peer", "127.0.0.1", 8);
    let r = ta.response();
    let waited = started.elapsed();
    let error = r["Error"].as_str().expect("Error");
    assert!(error.starts_with("timeout"), "{r}");
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );
    ta.assert_closed();
}

#[test]
fn cb_garbage_and_oversize_requests_harm_no_one() {
    let dir = temp_dir("cb-garbage");
    let (mut server, addr) = cb_server(&dir, None);
    let a = Peer::new(addr, 1);
    a.register();
    std::thread::sleep(Duration::from_millis(100));
    let mut ta = a.request("Peer", "127.0.0.1", 2);

    // Garbage UDP, then garbage TCP: an error, and the connection closes.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    junk.send_to(b"{\"PeerPort\": \"x\"", addr).unwrap();
    junk.send_to(&[0xff; 2000], addr).unwrap();
    let mut garbage = Conn::open(addr);
    garbage.stream.write_all(b"{this is not json}\n").unwrap();
    let r = garbage.response();
    assert!(
        r["Error"].as_str().unwrap().contains("malformed request"),
        "{r}"
    );
    garbage.assert_closed();

    // A request that never ends: cut off past 1 KiB.
    let mut long = Conn::open(addr);
    let mut bytes = b"{\"RemoteIP\": \"".to_vec();
    bytes.extend(std::iter::repeat_n(b'1', 2000));
    let _ = long.stream.write_all(&bytes);
    let r = long.response();
    assert!(
        r["Error"].as_str().unwrap().contains("longer than 1024"),
        "{r}"
    );

    // A request of the wrong shape, and an unknown type.
    let mut wrong = Conn::open(addr);
    wrong.send(&json!([1, 2, 3]));
    assert!(
        wrong.response()["Error"]
            .as_str()
            .unwrap()
            .contains("malformed")
    );
    let mut unknown = a.request("Relay", "127.0.0.1", 2);
    let r = unknown.response();
    assert!(
        r["Error"].as_str().unwrap().contains("ConnectionType"),
        "{r}"
    );

    // The waiting peer is unharmed: its peer still meets it.
    let b = Peer::new(addr, 2);
    b.register();
    let mut tb = b.request("Peer", "127.0.0.1", 1);
    meets(&ta.response(), &a, &b);
    meets(&tb.response(), &b, &a);
    server.assert_running("the server");
}

/// The same through a client in Python's standard library (`cli/tests/cb/client.py`), written
/// from the README's API alone.
#[test]
fn cb_python_client_from_the_readme() {
    let dir = temp_dir("cb-python");
    let (mut server, addr) = cb_server(&dir, Some(2));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cb/client.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(addr.to_string())
        .output()
        .expect("run python3 (the CI installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    server.assert_running("the server");
}
