//! A rendezvous server and two daemons with forwarders on a virtual network, with fake local
//! sockets that record what the forwarders ask of them.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::config::{Config, RendezvousConfig};
use crate::crypto::SecretKey;
use crate::rendezvous::ServerConfig;

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
    addr: SocketAddr,
    locals: BTreeMap<ConnId, Local>,
    /// Report writes at once (a socket that drains) or never (a stuck reader).
    flush: bool,
    events: Vec<Event>,
}

struct Net {
    now: Instant,
    nodes: Vec<Node>,
    flights: VecDeque<(Instant, usize, SocketAddr, Bytes)>,
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
        let rendezvous = RendezvousConfig {
            server_key: server_key.public_key(),
            server_addr: addr(SERVER),
            token: "t".into(),
            host_candidates: Vec::new(),
            route: Default::default(),
        };
        let configs = [
            Config::server(server_key, ServerConfig::default()),
            Config::daemon(SecretKey::from_bytes([1; 32]), rendezvous.clone()),
            Config::daemon(SecretKey::from_bytes([2; 32]), rendezvous),
        ];
        let nodes = configs
            .into_iter()
            .enumerate()
            .map(|(i, c)| Node {
                ep: Endpoint::new(c, [i as u8; 32], now, unix),
                fwd: Forwarder::new(config.clone()),
                addr: addr(i),
                locals: BTreeMap::new(),
                flush: true,
                events: Vec::new(),
            })
            .collect();
        let mut net = Self {
            now,
            nodes,
            flights: VecDeque::new(),
        };
        net.nodes[A]
            .ep
            .expose(now, name("/t/echo"), "echo")
            .expect("valid");
        let listener = net.nodes[B].fwd.listen(name("/t/echo"));
        net.run_for(Duration::from_secs(1));
        for i in [A, B] {
            assert!(
                net.nodes[i]
                    .events
                    .iter()
                    .any(|e| matches!(e, Event::Registered { .. }))
            );
        }
        (net, listener)
    }

    /// Drains every node's transmits, events and actions until all are empty.
    fn collect(&mut self) {
        let now = self.now;
        loop {
            let mut busy = false;
            for i in 0..self.nodes.len() {
                let src = self.nodes[i].addr;
                let node = &mut self.nodes[i];
                while let Some(t) = node.ep.poll_transmit() {
                    busy = true;
                    let to = (t.dst.ip().to_string().as_bytes()[7] - b'1') as usize;
                    self.flights.push_back((now + LATENCY, to, src, t.payload));
                }
                while let Some(e) = node.ep.poll_event() {
                    busy = true;
                    node.fwd.handle_event(now, &mut node.ep, &e);
                    node.events.push(e);
                }
                while let Some(a) = node.fwd.poll_action() {
                    busy = true;
                    node.perform(now, a);
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        for _ in 0..2_000_000 {
            self.collect();
            let delivery = self.flights.front().map(|f| f.0);
            let deadline = self
                .nodes
                .iter()
                .filter_map(|n| n.ep.poll_timeout())
                .map(|(at, _)| at)
                .min();
            let Some(at) = [delivery, deadline].into_iter().flatten().min() else {
                self.now = limit;
                return;
            };
            if at > limit {
                self.now = limit;
                return;
            }
            assert!(at >= self.now, "a deadline in the past");
            self.now = at;
            if delivery == Some(at) {
                let (_, to, from, bytes) = self.flights.pop_front().expect("front");
                self.nodes[to].ep.handle_input(at, from, &bytes);
            } else {
                for n in &mut self.nodes {
                    n.ep.handle_timeout(at);
                }
            }
        }
        panic!("no quiescence: a timer loop");
    }

    /// Runs `f` on node `i` at the current time, then drains.
    fn with<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Forwarder, &mut Endpoint, Instant) -> R,
    ) -> R {
        let now = self.now;
        let node = &mut self.nodes[i];
        let r = f(&mut node.fwd, &mut node.ep, now);
        self.collect();
        r
    }

    fn local(&mut self, i: usize, conn: ConnId) -> &mut Local {
        self.nodes[i].locals.entry(conn).or_default()
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
        self.with(i, |f, ep, now| f.handle_read(now, ep, conn, data));
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
            let mut seen = self.nodes[A].locals.iter().filter(|(_, l)| {
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
    assert_eq!(net.nodes[B].fwd.conns().count(), 0);
    assert_eq!(net.nodes[A].fwd.conns().count(), 0);
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
    let (mut net, listener) = Net::new(config);
    net.nodes[A].flush = false;
    let client = net.accept(listener);
    net.run_for(Duration::from_millis(100));
    let server = net.incoming(0);
    net.with(A, |f, ep, now| f.handle_connected(now, ep, server));

    let total = 8 * 1024 * 1024;
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
    // Bounded by the budget, the stream windows and buffers (1 MiB each) and one read.
    assert!(sent < 3 * 1024 * 1024, "sent {sent} into a stuck reader");

    net.nodes[A].flush = true;
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
    assert!(
        reason.as_deref().unwrap_or("").contains("reset"),
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
    let nope = net.nodes[B].fwd.listen(name("/t/nope"));
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
    let status: Vec<_> = net.nodes[B].fwd.services().collect();
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
    let peer = net.nodes[B]
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
