//! [`Forwarder`]: the bookkeeping between local connections (TCP or unix sockets) and streams,
//! shared by every runtime.
//!
//! A runtime owns sockets; the forwarder owns every decision about them. It hands out
//! [`ConnId`]s, remembers which stream carries which connection, queues accepted connections
//! until their service is ready, moves bytes both ways with backpressure, turns end-of-file
//! into `stream_finish` and a stream's end into a half-close, and fails connections when
//! streams reset, services fail or sessions close. The runtime only performs the
//! [`Action`]s it polls and reports what its sockets did. Like the rest of core it opens no
//! sockets and reads no clock: inputs take `now`.
//!
//! ## Driving it
//!
//! [`crate::node::Node`] does this for the runtimes (they see one output, and report their
//! local sockets to the node); this is what it does with the forwarder:
//!
//! ```text
//! let mut fwd = Forwarder::new(ForwardConfig::default());
//! let l = fwd.listen(service);                       // one per local listener
//! loop {
//!     while let Some(t) = ep.poll_transmit() { send t }
//!     while let Some(e) = ep.poll_event()    { fwd.handle_event(now, &mut ep, &e); log e }
//!     while let Some(a) = fwd.poll_action()  { perform a (connect, read once, write, ...) }
//!     // (forwarder inputs may queue transmits and events: loop until all three are empty)
//!     wait; now = Instant::now();
//!     match woke {
//!         Accepted(l, socket)       => { let c = fwd.handle_accept(now, &mut ep, l); ... }
//!         Connected(c)              => fwd.handle_connected(now, &mut ep, c),
//!         ConnectFailed(c, why)     => fwd.handle_connect_failed(now, &mut ep, c, why),
//!         Read(c, bytes)            => fwd.handle_read(now, &mut ep, c, bytes),
//!         Eof(c)                    => fwd.handle_eof(now, &mut ep, c),
//!         Written(c, n)             => fwd.handle_written(now, &mut ep, c, n),
//!         Failed(c, why)            => fwd.handle_conn_error(now, &mut ep, c, why),
//!         ...                       // datagrams and timers go to the endpoint as usual
//!     }
//! }
//! ```
//!
//! ## Why it borrows the endpoint instead of wrapping it
//!
//! Every input takes `&mut Endpoint` rather than the forwarder owning one. The endpoint has a
//! wide API the runtime needs directly (datagrams, timers, stats, the server role, which has
//! no forwarder at all); wrapping it would mean re-exporting all of it or handing out the
//! inner endpoint anyway. Borrowing keeps one run-loop contract: the runtime drains
//! `poll_transmit`, `poll_event` and [`Forwarder::poll_action`] after every input, whichever
//! object took it. The price is that the runtime must pass every event to
//! [`Forwarder::handle_event`]; events the forwarder does not care about are ignored.
//!
//! ## Backpressure, as read and write credits
//!
//! - **Local to stream.** The runtime reads a connection only after an [`Action::Read`], and
//!   once per `Read`. Bytes the stream does not take (`stream_write` returned part, or
//!   [`crate::StreamError::Blocked`]) stay here and no new `Read` is issued until
//!   [`crate::Event::StreamWritable`] has moved them on. So a connection pauses exactly while
//!   its stream is blocked, and the forwarder holds at most one read's worth per connection.
//! - **Stream to local.** Each [`Action::Write`] counts against
//!   [`ForwardConfig::write_budget`] until the runtime reports it with
//!   [`Forwarder::handle_written`]. While the budget is used up the forwarder stops calling
//!   `stream_read`, the stream's receive window stops opening, and core flow control slows the
//!   remote sender; reported writes resume reading.
//!
//! ## Half-close and errors
//!
//! Local end-of-file finishes the stream once the bytes before it are in; reading the stream
//! to its end gives [`Action::Shutdown`]. A connection closes cleanly when both directions
//! have ended. A local error resets the stream (and stops its receiving side) with
//! `CONN_FAILED` (0x5E10); a failed local connect does so with [`CONNECT_FAILED`]; a remote reset or
//! stop, a closed session or a failed service closes the local connection with `abort`.

mod action;
mod conn;
mod options;
pub mod proxy;
mod routed;
pub mod sni;
mod targets;
pub mod udp;
mod wanted;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

pub use action::{Action, ConnId, ListenerId};
pub(crate) use action::{ConnStatus, ServiceState, ServiceStatus};
pub use options::{ExposeOptions, Origin, Protocol, ProxyVersion, PublishPort};

use crate::crypto::PublicKey;
use crate::endpoint::Endpoint;
use crate::error::StreamError;
use crate::event::{Event, PeerId};
use crate::rendezvous::ServiceName;
use crate::stream::{ReadOutcome, StreamId};
use conn::Conn;
use wanted::Wanted;

/// Stream reset / stop code: the local connection failed (reset by the application, or a
/// read or write error).
pub(crate) const CONN_FAILED: u64 = 0x5E10;
/// Stream reset / stop code: the exposing side could not connect to its local target.
pub const CONNECT_FAILED: u64 = 0x5E11;

/// Tuning for a [`Forwarder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Bytes handed to the runtime in [`Action::Write`]s but not yet reported written, per
    /// connection, above which the forwarder stops reading the stream.
    pub write_budget: usize,
    /// Largest single [`Action::Write`], and the most a runtime reads from a local connection
    /// per [`Action::Read`] ([`Forwarder::read_chunk`]). Each read costs a trip through the
    /// event loop, so small chunks cap throughput: 32 KiB held a loopback tunnel to 125 MB/s
    /// where 256 KiB gave 190 MB/s (`cargo bench -p burrow-tests --bench tunnel`).
    pub read_chunk: usize,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            write_budget: 256 * 1024,
            read_chunk: 256 * 1024,
        }
    }
}

/// Pipes local connections into streams and back. See the module docs.
#[derive(Debug)]
pub struct Forwarder {
    config: ForwardConfig,
    next_conn: u64,
    next_listener: u64,
    listeners: BTreeMap<ListenerId, ServiceName>,
    /// Listeners whose connections go straight to one daemon's path, with no lookup (a
    /// rendezvous server's published ports).
    direct: BTreeMap<ListenerId, (PublicKey, ServiceName)>,
    wanted: BTreeMap<ServiceName, Wanted>,
    conns: BTreeMap<ConnId, Conn>,
    streams: BTreeMap<(PeerId, StreamId), ConnId>,
    actions: VecDeque<Action>,
    /// Where stream data is read; each write splits its chunk off.
    rx: BytesMut,
    /// Whether the targets of the services we expose answer.
    targets: targets::Targets,
}

impl Forwarder {
    /// The most a runtime should read from a local connection per [`Action::Read`].
    pub fn read_chunk(&self) -> usize {
        self.config.read_chunk.max(1)
    }

    /// A forwarder with no listeners and no connections.
    pub fn new(config: ForwardConfig) -> Self {
        Self {
            rx: BytesMut::new(),
            config,
            next_conn: 0,
            next_listener: 0,
            listeners: BTreeMap::new(),
            direct: BTreeMap::new(),
            wanted: BTreeMap::new(),
            conns: BTreeMap::new(),
            streams: BTreeMap::new(),
            actions: VecDeque::new(),
            targets: targets::Targets::default(),
        }
    }

    /// Registers a local listener whose connections go to `service`. Nothing is asked of the
    /// rendezvous server until the first connection arrives.
    pub fn listen(&mut self, service: ServiceName) -> ListenerId {
        // Never reused, so a report for a removed listener cannot reach a new one.
        let id = ListenerId(self.next_listener);
        self.next_listener += 1;
        self.wanted.entry(service.clone()).or_insert(Wanted {
            state: ServiceState::Idle,
            waiting: VecDeque::new(),
            last_error: None,
            target_down: false,
        });
        self.listeners.insert(id, service);
        id
    }

    /// Registers a local listener whose connections go to `service` at the peer with `key`,
    /// over the session we already have with it (no lookup): a rendezvous server's public
    /// port for a path a daemon published. A connection accepted while there is no session
    /// is refused.
    pub fn listen_to(&mut self, key: PublicKey, service: ServiceName) -> ListenerId {
        let id = ListenerId(self.next_listener);
        self.next_listener += 1;
        self.direct.insert(id, (key, service));
        id
    }

    /// Forgets `listener` (the runtime closes its socket): later accepts on it are refused.
    /// When it was the last listener for its service, the service is forgotten too and every
    /// connection accepted for it is reset (its stream reset and stopped with `CONN_FAILED`,
    /// the local connection closed with `abort`). Returns the listener's service, `None` for
    /// a listener this forwarder does not know.
    pub fn unlisten(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        listener: ListenerId,
    ) -> Option<ServiceName> {
        if let Some((_, service)) = self.direct.remove(&listener) {
            let gone: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.via == Some(listener))
                .map(|(&conn, _)| conn)
                .collect();
            for conn in gone {
                let why = format!("{service} is no longer published");
                self.fail(now, ep, conn, CONN_FAILED, why);
            }
            return Some(service);
        }
        let service = self.listeners.remove(&listener)?;
        if self.listeners.values().all(|s| *s != service) {
            let gone = self.conns_of(&service, false);
            for conn in gone {
                self.fail(now, ep, conn, CONN_FAILED, format!("{service} was removed"));
            }
            self.wanted.remove(&service);
        }
        Some(service)
    }

    /// Resets every connection that came in for `service`, a service this node exposed and no
    /// longer does ([`Endpoint::unexpose`]): each stream is reset and stopped with
    /// `CONN_FAILED`, each local connection closed with `abort`.
    pub fn reset_incoming(&mut self, now: Instant, ep: &mut Endpoint, service: &ServiceName) {
        self.targets.forget(service);
        for conn in self.conns_of(service, true) {
            self.fail(now, ep, conn, CONN_FAILED, format!("{service} was removed"));
        }
    }

    /// The connections for `service`: the ones that came in from peers (`incoming`), or the
    /// ones accepted locally.
    fn conns_of(&self, service: &ServiceName, incoming: bool) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.service == *service && c.incoming == incoming)
            .map(|(&conn, _)| conn)
            .collect()
    }

    /// The next thing the runtime must do. Drain it after every input, with the endpoint's
    /// queues.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The remote services behind listeners, and where each stands.
    pub(crate) fn services(&self) -> impl Iterator<Item = ServiceStatus> + '_ {
        self.wanted.iter().map(|(name, w)| ServiceStatus {
            name: name.clone(),
            state: w.state,
            waiting: w.waiting.len(),
            last_error: w.last_error.clone(),
            target_down: w.target_down,
        })
    }

    /// Whether the target of `service`, which we expose, answers: `ready`, or since when and
    /// why not (as of `now`).
    pub(crate) fn target_state(&self, now: Instant, service: &ServiceName) -> String {
        self.targets.state(now, service)
    }

    /// The live local connections.
    pub(crate) fn conns(&self) -> impl Iterator<Item = ConnStatus> + '_ {
        self.conns.iter().map(|(&conn, c)| c.status(conn))
    }

    // ----- inputs from the runtime --------------------------------------------------------

    /// A listener accepted a connection. Returns its handle, or `None` for a listener this
    /// forwarder does not know (close the socket). The connection is read at once (one
    /// [`Action::Read`]); its bytes wait here until its service is ready.
    pub fn handle_accept(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        listener: ListenerId,
    ) -> Option<ConnId> {
        self.handle_accept_from(now, ep, listener, None)
    }

    /// [`Self::handle_accept`] for a TCP client: `origin` (the client's address and the one
    /// it connected to) travels with the stream, for a service that wants the PROXY protocol.
    pub fn handle_accept_from(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        listener: ListenerId,
        origin: Option<Origin>,
    ) -> Option<ConnId> {
        if let Some((key, service)) = self.direct.get(&listener).cloned() {
            return self.accept_direct(now, ep, listener, (key, service), origin);
        }
        let service = self.listeners.get(&listener)?.clone();
        let conn = self.new_conn();
        let mut c = Conn::new(service.clone(), false, true);
        c.origin = origin;
        self.conns.insert(conn, c);
        self.actions.push_back(Action::Read { conn });
        let wanted = self.wanted.get_mut(&service).expect("listen() made it");
        wanted.waiting.push_back(conn);
        match wanted.state {
            ServiceState::Idle => self.ask(now, ep, &service),
            ServiceState::Asking => {}
            ServiceState::Ready(_) => self.open_waiting(now, ep, &service),
        }
        Some(conn)
    }

    /// The runtime connected `conn` to its target ([`Action::Connect`]).
    pub fn handle_connected(&mut self, now: Instant, ep: &mut Endpoint, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.connected = true;
        c.reading = true;
        if c.incoming {
            self.targets.connected(&c.service);
        }
        if let Some(header) = c.proxy_header.take() {
            // Ahead of every byte of the stream; counts against the write budget until
            // reported written, like any write.
            c.unflushed += header.len();
            let data = Bytes::from(header);
            self.actions.push_back(Action::Write { conn, data });
        }
        self.actions.push_back(Action::Read { conn });
        self.pump_stream(now, ep, conn);
    }

    /// The runtime could not connect `conn` to its target: the stream is refused with
    /// [`CONNECT_FAILED`] and the handle closed; the service counts as "target unreachable"
    /// until a connection to its target succeeds.
    pub fn handle_connect_failed(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        conn: ConnId,
        reason: &str,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let target = c.target.clone().unwrap_or_default();
        self.targets.failed(now, &c.service, &target, reason);
        let why = format!(
            "service {}: target {target} unreachable: {reason}",
            c.service
        );
        self.fail(now, ep, conn, CONNECT_FAILED, why);
    }

    /// The runtime read `data` from `conn` after an [`Action::Read`]. An empty `data` means
    /// end of file, as [`Self::handle_eof`].
    pub fn handle_read(&mut self, now: Instant, ep: &mut Endpoint, conn: ConnId, data: Bytes) {
        if data.is_empty() {
            return self.handle_eof(now, ep, conn);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.reading = false;
        c.bytes_read += data.len() as u64;
        let mut rest = data;
        if let (true, Some((peer, stream))) = (c.pending.is_empty(), c.stream) {
            // Straight into the stream, which keeps the chunk itself; what it does not take now
            // is kept here.
            match ep.stream_write_bytes(now, peer, stream, &rest) {
                Ok(n) => rest.advance(n),
                Err(StreamError::Blocked) => {}
                Err(e) => {
                    let why = format!("stream write failed: {e}");
                    return self.fail(now, ep, conn, CONN_FAILED, why);
                }
            }
        }
        let c = self.conns.get_mut(&conn).expect("looked up above");
        if !rest.is_empty() {
            c.pending = if c.pending.is_empty() {
                rest
            } else {
                // Only a runtime that read without an `Action::Read` gets here; keep every byte.
                [&c.pending[..], &rest[..]].concat().into()
            };
        }
        self.push_up(now, ep, conn);
    }

    /// The runtime read end of file from `conn` (the local side shut down its write half).
    pub fn handle_eof(&mut self, now: Instant, ep: &mut Endpoint, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.reading = false;
        c.eof = true;
        self.push_up(now, ep, conn);
    }

    /// `n` bytes of earlier [`Action::Write`]s left the runtime's buffer for the socket.
    pub fn handle_written(&mut self, now: Instant, ep: &mut Endpoint, conn: ConnId, n: usize) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.unflushed = c.unflushed.saturating_sub(n);
        self.pump_stream(now, ep, conn);
    }

    /// Reading or writing `conn` failed, or the local side reset it: the stream is reset and
    /// stopped with `CONN_FAILED` (0x5E10) and the handle closed.
    pub fn handle_conn_error(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        conn: ConnId,
        reason: &str,
    ) {
        self.fail(
            now,
            ep,
            conn,
            CONN_FAILED,
            format!("local connection: {reason}"),
        );
    }

    /// Resets every connection (the node is stopping): each stream is reset and stopped with
    /// the code for a failed connection (0x5E10), so the peer's local connection resets at once, and each local
    /// connection is closed with [`Action::Close`] `abort` (a TCP reset), never a clean end
    /// that could pass for a complete transfer.
    pub fn shutdown(&mut self, now: Instant, ep: &mut Endpoint) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.fail(now, ep, conn, CONN_FAILED, "shutting down".into());
        }
    }

    /// Acts on an endpoint event; pass every event (the ones that concern no connection or
    /// service of this forwarder are ignored). Retries opening streams that waited on the
    /// peer's stream limit.
    pub fn handle_event(&mut self, now: Instant, ep: &mut Endpoint, event: &Event) {
        match event {
            Event::IncomingStream {
                peer,
                stream,
                service,
                target,
                origin,
                proxy,
            } => {
                let conn = self.new_conn();
                let mut c = Conn::new(service.clone(), true, false);
                c.stream = Some((*peer, *stream));
                c.proxy_header = proxy.map(|v| proxy::header(v, *origin));
                c.target = Some(target.clone());
                self.conns.insert(conn, c);
                self.streams.insert((*peer, *stream), conn);
                self.actions.push_back(Action::Connect {
                    conn,
                    target: target.clone(),
                });
            }
            Event::StreamReadable { peer, stream } => {
                if let Some(&conn) = self.streams.get(&(*peer, *stream)) {
                    self.pump_stream(now, ep, conn);
                }
            }
            Event::StreamWritable { peer, stream } => {
                if let Some(&conn) = self.streams.get(&(*peer, *stream)) {
                    self.push_up(now, ep, conn);
                }
            }
            Event::StreamReset { peer, stream, code }
            | Event::StreamStopped { peer, stream, code } => {
                if let Some(&conn) = self.streams.get(&(*peer, *stream)) {
                    let why = if *code == crate::service::ROUTE_REFUSED {
                        let service = self.conns.get(&conn).map(|c| c.service.clone());
                        let why = "refused by the exposing daemon: the service's route policy \
                                   does not allow the path the session uses now";
                        if let Some(w) = service.and_then(|s| self.wanted.get_mut(&s)) {
                            w.last_error = Some(why.to_string());
                        }
                        why.to_string()
                    } else if *code == CONNECT_FAILED {
                        self.target_refused(conn)
                    } else {
                        format!("the remote side reset the connection (code {code:#x})")
                    };
                    // Both directions end: the remote connection is gone.
                    self.fail(now, ep, conn, *code, why);
                }
            }
            Event::ServiceReady { service, peer } => {
                if let Some(w) = self.wanted.get_mut(service) {
                    w.state = ServiceState::Ready(*peer);
                    w.last_error = None;
                    self.open_waiting(now, ep, &service.clone());
                }
            }
            Event::ServiceFailed { service, reason } => {
                if let Some(w) = self.wanted.get_mut(service) {
                    w.state = ServiceState::Idle;
                    w.last_error = Some(reason.clone());
                    let waiting = std::mem::take(&mut w.waiting);
                    for conn in waiting {
                        self.close(conn, Some(format!("service {service}: {reason}")));
                    }
                }
            }
            Event::SessionClosed { peer, reason, .. } => {
                self.session_closed(now, ep, *peer, reason)
            }
            _ => {}
        }
        self.retry_limited(now, ep);
    }

    // ----- internals ----------------------------------------------------------------------

    /// A connection accepted on a [`Self::listen_to`] listener: a stream to the peer at once,
    /// or `None` (the runtime drops the socket) when there is no session or no room for one.
    fn accept_direct(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        listener: ListenerId,
        (key, service): (PublicKey, ServiceName),
        origin: Option<Origin>,
    ) -> Option<ConnId> {
        let peer = ep.peer_of(&key).filter(|p| ep.is_connected(*p))?;
        let stream = ep.open_stream_from(now, peer, &service, origin).ok()?;
        let conn = self.new_conn();
        let mut c = Conn::new(service, false, true);
        c.origin = origin;
        c.via = Some(listener);
        c.stream = Some((peer, stream));
        self.conns.insert(conn, c);
        self.streams.insert((peer, stream), conn);
        self.actions.push_back(Action::Read { conn });
        Some(conn)
    }

    pub(super) fn new_conn(&mut self) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        conn
    }

    /// Moves held local bytes (and a pending end of file) into the stream; asks for the next
    /// read when everything was taken.
    pub(super) fn push_up(&mut self, now: Instant, ep: &mut Endpoint, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some((peer, stream)) = c.stream else {
            return;
        };
        while !c.pending.is_empty() {
            match ep.stream_write_bytes(now, peer, stream, &c.pending) {
                Ok(n) => c.pending.advance(n),
                Err(StreamError::Blocked) => return,
                Err(e) => {
                    let why = format!("stream write failed: {e}");
                    return self.fail(now, ep, conn, CONN_FAILED, why);
                }
            }
        }
        if c.eof {
            if !c.finished {
                c.finished = true;
                if let Err(e) = ep.stream_finish(now, peer, stream) {
                    let why = format!("stream finish failed: {e}");
                    return self.fail(now, ep, conn, CONN_FAILED, why);
                }
            }
            self.close_if_done(conn);
        } else if !c.reading && c.connected {
            c.reading = true;
            self.actions.push_back(Action::Read { conn });
        }
    }

    /// Reads the stream into writes for the runtime while the write budget allows.
    fn pump_stream(&mut self, now: Instant, ep: &mut Endpoint, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some((peer, stream)) = c.stream else {
            return;
        };
        if !c.connected {
            return;
        }
        while !c.remote_done && c.unflushed < self.config.write_budget {
            let room = (self.config.write_budget - c.unflushed).min(self.config.read_chunk.max(1));
            // Read straight into the chunk the write hands on: its memory comes back to
            // `self.rx` once the runtime has written and dropped it.
            self.rx.reserve(room);
            match ep.stream_read_into(now, peer, stream, &mut self.rx, room) {
                Ok(ReadOutcome::Data(n)) => {
                    if c.bytes_written == 0 && !c.incoming {
                        // The exposing daemon reached its target.
                        if let Some(w) = self.wanted.get_mut(&c.service) {
                            w.target_down = false;
                        }
                    }
                    c.unflushed += n;
                    c.bytes_written += n as u64;
                    let data = self.rx.split().freeze();
                    self.actions.push_back(Action::Write { conn, data });
                }
                Ok(ReadOutcome::Finished) => {
                    c.remote_done = true;
                    self.actions.push_back(Action::Shutdown { conn });
                    self.close_if_done(conn);
                    return;
                }
                Ok(ReadOutcome::Blocked) => return,
                Err(StreamError::Reset(code)) => {
                    let why = format!("the remote side reset the connection (code {code:#x})");
                    return self.fail(now, ep, conn, code, why);
                }
                Err(e) => {
                    let why = format!("stream read failed: {e}");
                    return self.fail(now, ep, conn, CONN_FAILED, why);
                }
            }
        }
    }

    /// Closes `conn` cleanly once both directions have ended.
    fn close_if_done(&mut self, conn: ConnId) {
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| c.finished && c.remote_done)
        {
            self.forget(conn);
            self.actions.push_back(Action::Close {
                conn,
                abort: false,
                reason: None,
            });
        }
    }

    /// Ends `conn` in error: resets and stops its stream with `code`, and closes it.
    fn fail(&mut self, now: Instant, ep: &mut Endpoint, conn: ConnId, code: u64, why: String) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if let Some((peer, stream)) = c.stream {
            // Errors mean the stream or session is already gone, which is what we want.
            let _ = ep.stream_reset(now, peer, stream, code);
            let _ = ep.stream_stop(now, peer, stream, code);
        }
        self.close(conn, Some(why));
    }

    /// Forgets `conn` and tells the runtime to drop it with a reset.
    fn close(&mut self, conn: ConnId, why: Option<String>) {
        if self.forget(conn) {
            self.actions.push_back(Action::Close {
                conn,
                abort: true,
                reason: why,
            });
        }
    }

    fn forget(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.remove(&conn) else {
            return false;
        };
        if let Some(key) = c.stream {
            self.streams.remove(&key);
        } else if let Some(w) = self.wanted.get_mut(&c.service) {
            w.waiting.retain(|&x| x != conn);
        }
        true
    }
}
