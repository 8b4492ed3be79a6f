//! A rendezvous server and two daemons with forwarders on the test network
//! ([`crate::tests::net`]), with fake local sockets that record what the forwarders ask of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::*;
use crate::config::{Config, RendezvousConfig};
use crate::crypto::SecretKey;
use crate::rendezvous::ServerConfig;
use crate::tests::net::{self, Link, Machine};
use crate::transmit::Transmit;

const LATENCY: Duration = Duration::from_millis(5);
const SERVER: usize = 0;
/// Exposes `/t/echo`.
const A: usize = 1;
/// Listens for `/t/echo`.
const B: usize = 2;

/// What the fake runtime knows of one local connection.
#[derive(Debug, Default)]
struct Local {
    /// Every action for it, in order.
    actions: Vec<Action>,
    /// An `Action::Read` is outstanding.
    may_read: bool,
    received: Vec<u8>,
    /// Written bytes not yet reported with `handle_written`.
    unreported: usize,
    shut: bool,
    closed: Option<bool>,
}

struct Node {
    ep: Endpoint,
    fwd: Forwarder,
    locals: BTreeMap<ConnId, Local>,
    /// Report writes at once (a socket that drains) or never (a stuck reader).
    flush: bool,
}

impl Node {
    /// Carries out every action the forwarder has asked for.
    fn pump(&mut self, now: Instant) {
        while let Some(a) = self.fwd.poll_action() {
            self.perform(now, a);
        }
    }
}

impl Machine for Node {
    type Event = Event;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.ep.handle_input(now, from, bytes);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.pump(now);
        self.ep.poll_transmit()
    }

    fn poll_event(&mut self, now: Instant) -> Option<Event> {
        self.pump(now);
        let e = self.ep.poll_event()?;
        self.fwd.handle_event(now, &mut self.ep, &e);
        Some(e)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout().map(|(at, _)| at)
    }

    fn check(&self) {
        self.ep.check_deadline_index();
    }
}

/// A server and two daemons with forwarders on the test network.
struct Net {
    net: net::Net<Node>,
}

impl Deref for Net {
    type Target = net::Net<Node>;

    fn deref(&self) -> &Self::Target {
        &self.net
    }
}

impl DerefMut for Net {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.net
    }
}

fn name(s: &str) -> ServiceName {
    s.parse().expect("valid name")
}

impl Net {
    /// Server, A exposing `/t/echo` (target `echo`), B with a listener for it.
    fn new(config: ForwardConfig) -> (Self, ListenerId) {
        let now = crate::tests::origin();
        let unix = Duration::from_secs(1_800_000_000);
        let addr = |i: usize| -> SocketAddr { format!("10.0.0.{}:4000", i + 1).parse().unwrap() };
        let server_key = SecretKey::from_bytes([9; 32]);
        let rendezvous = RendezvousConfig::new(server_key.public_key(), addr(SERVER), "t");
        let configs = [
            Config::server(server_key, ServerConfig::default()),
            Config::daemon(SecretKey::from_bytes([1; 32]), rendezvous.clone()),
            Config::daemon(SecretKey::from_bytes([2; 32]), rendezvous),
        ];
        let mut net = net::Net::new(now, Link::clean(LATENCY), 0);
        for (i, c) in configs.into_iter().enumerate() {
            let node = Node {
                ep: Endpoint::new(c, [i as u8; 32], now, unix),
                fwd: Forwarder::new(config.clone()),
                locals: BTreeMap::new(),
                flush: true,
            };
            net.add(node, addr(i));
        }
        let mut net = Self { net };
        net.with(A, |_, ep, now| ep.expose(now, name("/t/echo"), "echo"))
            .expect("valid");
        let listener = net.hosts[B].m.fwd.listen(name("/t/echo"));
        net.run_for(Duration::from_secs(1));
        for i in [A, B] {
            assert!(
                net.hosts[i]
                    .events
                    .iter()
                    .any(|e| matches!(e, Event::Registered { .. }))
            );
        }
        (net, listener)
    }

    /// Runs `f` on node `i` at the current time, then drains.
    fn with<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Forwarder, &mut Endpoint, Instant) -> R,
    ) -> R {
        self.net.with(i, |n, now| f(&mut n.fwd, &mut n.ep, now))
    }

    fn local(&mut self, i: usize, conn: ConnId) -> &mut Local {
        self.hosts[i].m.locals.entry(conn).or_default()
    }

    /// Runs (at most two virtual seconds) until `conn` may be read.
    fn wait_read(&mut self, i: usize, conn: ConnId) {
        for _ in 0..40 {
            if self.local(i, conn).may_read {
                return;
            }
            self.run_for(Duration::from_millis(50));
        }
    }

    /// Feeds `data` to `conn` as one read, once it may be read.
    fn read(&mut self, i: usize, conn: ConnId, data: &[u8]) {
        self.wait_read(i, conn);
        let local = self.local(i, conn);
        assert!(local.may_read, "{conn} read without an Action::Read");
        local.may_read = false;
        self.with(i, |f, ep, now| {
            f.handle_read(now, ep, conn, bytes::Bytes::copy_from_slice(data))
        });
    }

    fn eof(&mut self, i: usize, conn: ConnId) {
        self.wait_read(i, conn);
        let local = self.local(i, conn);
        assert!(local.may_read, "{conn} EOF without an Action::Read");
        local.may_read = false;
        self.with(i, |f, ep, now| f.handle_eof(now, ep, conn));
    }

    /// The conn A's forwarder asked to connect (the `n`th, from 0).
    /// Runs (at most two virtual seconds) until it exists: punching takes a few round trips.
    fn incoming(&mut self, n: usize) -> ConnId {
        for _ in 0..40 {
            let mut seen = self.hosts[A].m.locals.iter().filter(|(_, l)| {
                matches!(l.actions.first(), Some(Action::Connect { target, .. }) if target == "echo")
            });
            if let Some((&conn, _)) = seen.nth(n) {
                return conn;
            }
            self.run_for(Duration::from_millis(50));
        }
        panic!("no Connect action number {n}");
    }

    fn accept(&mut self, listener: ListenerId) -> ConnId {
        self.with(B, |f, ep, now| f.handle_accept(now, ep, listener))
            .expect("known listener")
    }
}

impl Node {
    fn perform(&mut self, now: Instant, action: Action) {
        let conn = match &action {
            Action::Connect { conn, .. }
            | Action::Read { conn }
            | Action::Write { conn, .. }
            | Action::Shutdown { conn }
            | Action::Close { conn, .. } => *conn,
        };
        let local = self.locals.entry(conn).or_default();
        assert!(local.closed.is_none(), "{action:?} after Close");
        if local.actions.is_empty() {
            assert!(
                matches!(action, Action::Read { .. } | Action::Connect { .. }),
                "first action {action:?}"
            );
        }
        local.actions.push(action.clone());
        match action {
            Action::Read { .. } => {
                assert!(!local.may_read, "two Reads outstanding");
                local.may_read = true;
            }
            Action::Write { data, .. } => {
                assert!(!local.shut, "write after shutdown");
                local.received.extend_from_slice(&data);
                local.unreported += data.len();
                if self.flush {
                    let n = std::mem::take(&mut local.unreported);
                    self.fwd.handle_written(now, &mut self.ep, conn, n);
                }
            }
            Action::Shutdown { .. } => local.shut = true,
            Action::Close { abort, .. } => local.closed = Some(abort),
            Action::Connect { .. } => {}
        }
    }
}

/// The client half-closes after its request and still gets the whole reply; both ends close
/// cleanly.
#[test]
fn half_close_reply_after_client_eof() {
    let (mut net, listener) = Net::new(ForwardConfig::default());
    let client = net.accept(listener);
    net.read(B, client, b"hello");
    net.eof(B, client);
    net.run_for(Duration::from_millis(200));

    let server = net.incoming(0);
    net.with(A, |f, ep, now| f.handle_connected(now, ep, server));
    net.run_for(Duration::from_millis(200));
    let s = net.local(A, server);
    assert_eq!(s.received, b"hello");
    assert!(s.shut, "the client's EOF became a half-close");
    assert!(s.closed.is_none(), "the server's direction is still open");

    net.read(A, server, b"world, ");
    net.read(A, server, b"and goodbye");
    net.eof(A, server);
    net.run_for(Duration::from_millis(200));
    let c = net.local(B, client);
    assert_eq!(c.received, b"world, and goodbye");
    assert!(c.shut);
    assert_eq!(c.closed, Some(false), "clean close");
    assert_eq!(net.local(A, server).closed, Some(false));
    assert_eq!(net.hosts[B].m.fwd.conns().count(), 0);
    assert_eq!(net.hosts[A].m.fwd.conns().count(), 0);
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A reader that stops draining stops the stream, the stream stops the sender's socket, and
/// everything arrives intact once the reader drains again.
#[test]
fn backpressure_pauses_the_sending_socket() {
    let config = ForwardConfig {
        write_budget: 64 * 1024,
        read_chunk: 16 * 1024,
    };
    let (budget, chunk) = (config.write_budget, config.read_chunk);
    let (mut net, listener) = Net::new(config);
    net.hosts[A].m.flush = false;
    let client = net.accept(listener);
    net.run_for(Duration::from_millis(100));
    let server = net.incoming(0);
    net.with(A, |f, ep, now| f.handle_connected(now, ep, server));

    // Bounded by the budget, the stream's receive window and send buffer and one read.
    let stream = crate::stream::StreamConfig::default();
    let bound =
        (stream.stream_receive_window + stream.stream_send_buffer) as usize + budget + chunk;
    let total = 2 * bound;
    let data = pattern(total);
    let mut sent = 0;
    for _ in 0..200 {
        while sent < total && net.local(B, client).may_read {
            let end = (sent + 16 * 1024).min(total);
            net.read(B, client, &data[sent..end]);
            sent = end;
        }
        net.run_for(Duration::from_millis(50));
    }
    let unreported = net.local(A, server).unreported;
    assert!(
        unreported <= 64 * 1024,
        "{unreported} bytes over the budget"
    );
    assert!(
        !net.local(B, client).may_read,
        "the sender's socket is paused"
    );
    assert!(sent <= bound, "sent {sent} into a stuck reader");

    net.hosts[A].m.flush = true;
    let n = std::mem::take(&mut net.local(A, server).unreported);
    net.with(A, |f, ep, now| f.handle_written(now, ep, server, n));
    for _ in 0..2000 {
        while sent < total && net.local(B, client).may_read {
            let end = (sent + 16 * 1024).min(total);
            net.read(B, client, &data[sent..end]);
            sent = end;
        }
        if sent == total && net.local(B, client).may_read {
            net.eof(B, client);
        }
        net.run_for(Duration::from_millis(20));
        if net.local(A, server).shut {
            break;
        }
    }
    let s = net.local(A, server);
    assert!(s.shut, "the sender's EOF arrived");
    assert_eq!(s.received.len(), total);
    assert!(s.received == data, "the bytes arrived in order");
}

/// A target that refuses the connection resets the client's connection.
#[test]
fn connect_failure_aborts_the_client() {
    let (mut net, listener) = Net::new(ForwardConfig::default());
    let client = net.accept(listener);
    net.run_for(Duration::from_millis(100));
    let server = net.incoming(0);
    net.with(A, |f, ep, now| {
        f.handle_connect_failed(now, ep, server, "connection refused")
    });
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.local(A, server).closed, Some(true));
    let c = net.local(B, client);
    assert_eq!(c.closed, Some(true));
    let Some(Action::Close { reason, .. }) = c.actions.last() else {
        panic!("closed")
    };
    // The connecting side says the exposing daemon could not reach its target.
    assert!(
        reason
            .as_deref()
            .unwrap_or("")
            .contains("could not connect to the service's target"),
        "{reason:?}"
    );
}

/// A local error on one side resets the other side's connection.
#[test]
fn local_error_resets_the_remote_connection() {
    let (mut net, listener) = Net::new(ForwardConfig::default());
    let client = net.accept(listener);
    net.read(B, client, b"ping");
    net.run_for(Duration::from_millis(100));
    let server = net.incoming(0);
    net.with(A, |f, ep, now| f.handle_connected(now, ep, server));
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.local(A, server).received, b"ping");
    net.with(B, |f, ep, now| {
        f.handle_conn_error(now, ep, client, "connection reset by peer")
    });
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.local(B, client).closed, Some(true));
    assert_eq!(net.local(A, server).closed, Some(true));
}

/// Connections to a name nobody exposes fail with the server's reason.
#[test]
fn unknown_service_fails_waiting_connections() {
    let (mut net, _) = Net::new(ForwardConfig::default());
    let nope = net.hosts[B].m.fwd.listen(name("/t/nope"));
    let c1 = net.accept(nope);
    let c2 = net.accept(nope);
    net.run_for(Duration::from_secs(1));
    for c in [c1, c2] {
        let local = net.local(B, c);
        assert_eq!(local.closed, Some(true));
        let Some(Action::Close { reason, .. }) = local.actions.last() else {
            panic!("closed")
        };
        assert!(
            reason.as_deref().unwrap_or("").contains("/t/nope"),
            "{reason:?}"
        );
    }
    let status: Vec<_> = net.hosts[B].m.fwd.services().collect();
    let nope = status.iter().find(|s| s.name == name("/t/nope")).unwrap();
    assert_eq!(nope.state, ServiceState::Idle);
    assert!(nope.last_error.is_some());
}

/// A closed session fails its connections; the next connection finds the service again.
#[test]
fn session_close_fails_connections_and_reconnects_on_demand() {
    let (mut net, listener) = Net::new(ForwardConfig::default());
    let client = net.accept(listener);
    net.run_for(Duration::from_millis(100));
    let server = net.incoming(0);
    net.with(A, |f, ep, now| f.handle_connected(now, ep, server));
    let peer = net.hosts[B]
        .m
        .fwd
        .services()
        .find_map(|s| match s.state {
            ServiceState::Ready(p) => Some(p),
            _ => None,
        })
        .expect("ready");
    net.with(B, |_, ep, now| ep.close(now, peer));
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.local(B, client).closed, Some(true));
    assert_eq!(net.local(A, server).closed, Some(true));

    let again = net.accept(listener);
    net.read(B, again, b"again");
    net.run_for(Duration::from_secs(2));
    let server = net.incoming(1);
    net.with(A, |f, ep, now| f.handle_connected(now, ep, server));
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.local(A, server).received, b"again");
}

/// More connections than the peer's initial stream limit all get through.
#[test]
fn many_connections_past_the_stream_limit() {
    let (mut net, listener) = Net::new(ForwardConfig::default());
    let clients: Vec<ConnId> = (0..40).map(|_| net.accept(listener)).collect();
    for (i, &c) in clients.iter().enumerate() {
        net.read(B, c, format!("conn {i}").as_bytes());
        net.eof(B, c);
    }
    net.run_for(Duration::from_millis(300));
    for n in 0..40 {
        let s = net.incoming(n);
        net.with(A, |f, ep, now| f.handle_connected(now, ep, s));
    }
    net.run_for(Duration::from_millis(300));
    let mut got: Vec<String> = (0..40)
        .map(|n| {
            let s = net.incoming(n);
            let local = net.local(A, s);
            assert!(local.shut);
            String::from_utf8(local.received.clone()).unwrap()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..40).map(|i| format!("conn {i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

/// A connection reset while its target is still connecting is closed at once; the late
/// connect report is ignored and starts nothing.
#[test]
fn reset_while_connecting_ignores_the_late_connect() {
    let (mut net, listener) = Net::new(ForwardConfig::default());
    let client = net.accept(listener);
    net.read(B, client, b"early");
    let server = net.incoming(0);
    net.with(B, |f, ep, now| {
        f.handle_conn_error(now, ep, client, "reset")
    });
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.local(A, server).closed, Some(true));
    let before = net.local(A, server).actions.len();
    // The runtime's connect completes after the Close: nothing more may be asked of it.
    net.with(A, |f, ep, now| f.handle_connected(now, ep, server));
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.local(A, server).actions.len(), before);
    assert_eq!(net.hosts[A].m.fwd.conns().count(), 0);
}

/// Bytes written by the exposing side before the client's first byte arrive, and a stop from
/// the remote reader resets the local writer.
#[test]
fn server_speaks_first_then_remote_stop_resets() {
    let (mut net, listener) = Net::new(ForwardConfig::default());
    let client = net.accept(listener);
    let server = net.incoming(0);
    net.with(A, |f, ep, now| f.handle_connected(now, ep, server));
    net.read(A, server, b"SSH-2.0-banner\r\n");
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.local(B, client).received, b"SSH-2.0-banner\r\n");
    // B's side stops reading the stream (as a core user could); A's conn must be reset.
    let (peer, stream) = net.hosts[B]
        .m
        .fwd
        .conns()
        .find_map(|c| c.stream)
        .expect("bound");
    net.with(B, |_, ep, now| {
        ep.stream_stop(now, peer, stream, 7).expect("live")
    });
    net.run_for(Duration::from_millis(100));
    let s = net.local(A, server);
    assert_eq!(s.closed, Some(true));
    let Some(Action::Close { reason, .. }) = s.actions.last() else {
        panic!("closed")
    };
    assert!(
        reason.as_deref().unwrap_or("").contains("0x7"),
        "{reason:?}"
    );
}

/// A service exposed with the PROXY protocol gets the client's address (as the connecting
/// side's listener saw it, carried in the stream header) ahead of the first byte, once; a
/// client accepted without an origin gets `UNKNOWN`.
#[test]
fn proxy_protocol_header_comes_first() {
    let (mut net, listener) = Net::new(ForwardConfig::default());
    let options = ExposeOptions {
        protocol: Protocol::Tcp,
        proxy_protocol: Some(ProxyVersion::V1),
        ..ExposeOptions::default()
    };
    net.with(A, |_, ep, now| {
        ep.expose_with(now, name("/t/echo"), "echo", options)
    })
    .unwrap();
    let origin = Origin {
        client: "192.0.2.9:51000".parse().unwrap(),
        local: "127.0.0.1:6000".parse().unwrap(),
    };
    let client = net
        .with(B, |f, ep, now| {
            f.handle_accept_from(now, ep, listener, Some(origin))
        })
        .unwrap();
    net.read(B, client, b"GET /");
    net.run_for(Duration::from_millis(200));
    let server = net.incoming(0);
    net.with(A, |f, ep, now| f.handle_connected(now, ep, server));
    net.run_for(Duration::from_millis(200));
    let want = b"PROXY TCP4 192.0.2.9 127.0.0.1 51000 6000\r\nGET /";
    assert_eq!(net.local(A, server).received, want);
    // The header is not counted as the client's data.
    let conns: Vec<_> = net.hosts[A].m.fwd.conns().collect();
    assert_eq!(conns[0].bytes_written, 5);

    let plain = net.accept(listener);
    net.read(B, plain, b"x");
    net.run_for(Duration::from_millis(200));
    let server = net.incoming(1);
    net.with(A, |f, ep, now| f.handle_connected(now, ep, server));
    net.run_for(Duration::from_millis(200));
    assert_eq!(net.local(A, server).received, b"PROXY UNKNOWN\r\nx");
}
