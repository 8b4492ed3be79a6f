//! The node's one thread: core's run loop on a mio [`Poll`] (see `burrow_core`'s crate docs).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::{Duration, Instant};

use burrow_core::Transmit;
use burrow_core::forward::{Action, ConnId, ListenerId};
use burrow_core::node::{self, Node, Output, Services, StartError, Summary};

use crate::MasterAttach;
use burrow_core::rendezvous::directory::DirectoryChange;
use burrow_tokio::udp::Udp;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::Command;
use crate::conn::{Conn, LocalStream, Report};
use crate::udp_flows::{FIRST_FLOW, FIRST_UDP_LISTENER, UdpSockets};
use burrow_core::forward::Origin;
use burrow_core::forward::udp::{FlowId, UdpAction, UdpListenerId};
use burrow_tokio::local_conn::Report as Io;
use burrow_tokio::requests::{StdChannel, Waiting};

const UDP: Token = Token(0);
/// The token of the waker that handles and name lookups use to deliver their messages.
pub(crate) const WAKER: Token = Token(1);
const FIRST_LISTENER: usize = 2;
/// Connection tokens are this plus the [`ConnId`].
const FIRST_CONN: usize = 1 << 20;
/// How long a listener pauses after a failed accept (too many open files, a connection reset
/// before accept) before it tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Everything the thread owns.
pub(crate) struct Parts {
    pub(crate) poll: Poll,
    pub(crate) waker: Arc<Waker>,
    pub(crate) node: Node,
    pub(crate) socket: UdpSocket,
    pub(crate) listeners: Vec<(ListenerId, TcpListener)>,
    /// The UDP sockets of UDP services we reach.
    pub(crate) udp_listeners: Vec<(UdpListenerId, UdpSocket)>,
    pub(crate) commands: Receiver<Command>,
    pub(crate) directory: Sender<DirectoryChange>,
    pub(crate) attachments: Sender<MasterAttach>,
    pub(crate) hooks: Sender<burrow_core::node::HookEvent>,
}

/// The poll token of a listener.
fn listener_token(id: ListenerId) -> Token {
    Token(FIRST_LISTENER + id.0 as usize)
}

/// A host name's lookup, from its thread.
type Resolved = (ConnId, io::Result<SocketAddr>);
/// A UDP flow target's lookup, from its thread.
type FlowLookup = (FlowId, Result<SocketAddr, String>);

struct Loop {
    poll: Poll,
    waker: Arc<Waker>,
    node: Node,
    socket: UdpSocket,
    udp: Udp,
    /// Datagrams the socket did not take yet, oldest first.
    outbox: VecDeque<Transmit>,
    /// Each listener, and when it may accept again after a failure.
    listeners: Vec<(ListenerId, TcpListener, Option<Instant>)>,
    conns: BTreeMap<ConnId, Conn>,
    /// Connections that may have something to do (a credit, a write, readiness).
    dirty: BTreeSet<ConnId>,
    /// Connections waiting for their target's name lookup.
    resolving: BTreeSet<ConnId>,
    resolved: (Sender<Resolved>, Receiver<Resolved>),
    /// Lookups of UDP flows' host-name targets, from their threads.
    flow_lookups: (Sender<FlowLookup>, Receiver<FlowLookup>),
    /// Handles waiting for an answer from the node.
    waiting: Waiting<StdChannel>,
    /// Where the server's directory changes go, to be stored.
    directory: Sender<DirectoryChange>,
    /// Where the master's attachments go, to be run.
    attachments: Sender<MasterAttach>,
    /// Where hook events go, to be run.
    hooks: Sender<burrow_core::node::HookEvent>,
    read_buf: bytes::BytesMut,
    /// The most one read takes (the forwarder's chunk).
    read_chunk: usize,
    /// UDP listener and flow sockets of forwarded UDP services.
    udp_sockets: UdpSockets,
}

/// Runs until shut down (or every handle is gone).
pub(crate) fn run(parts: Parts) {
    let Parts {
        poll,
        waker,
        mut node,
        mut socket,
        mut listeners,
        udp_listeners,
        commands,
        directory,
        attachments,
        hooks,
    } = parts;
    let registry = poll.registry();
    let interest = Interest::READABLE | Interest::WRITABLE;
    if let Err(e) = registry.register(&mut socket, UDP, interest) {
        tracing::error!(error = %e, "cannot poll the UDP socket");
        return;
    }
    for (id, l) in listeners.iter_mut() {
        if let Err(e) = registry.register(l, listener_token(*id), Interest::READABLE) {
            tracing::error!(error = %e, "cannot poll a listener");
            return;
        }
    }
    let mut udp = match Udp::new(&socket) {
        Ok(udp) => udp,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the UDP socket");
            return;
        }
    };
    if node.wants_input_ttl() {
        if let Err(e) = udp.report_ttl(&socket) {
            tracing::warn!(error = %e, "cannot read received TTLs; daemons will climb from the configured probe TTL");
        }
    }
    tracing::debug!(?udp, "UDP batching");
    // Runs of datagrams leave the core as one transmit each, sent with one GSO call.
    node.set_max_segments(udp.max_segments());
    let mut state = Loop {
        read_buf: bytes::BytesMut::new(),
        read_chunk: node.read_chunk(),
        poll,
        waker,
        node,
        socket,
        udp,
        outbox: VecDeque::new(),
        listeners: listeners.into_iter().map(|(id, l)| (id, l, None)).collect(),
        conns: BTreeMap::new(),
        dirty: BTreeSet::new(),
        resolving: BTreeSet::new(),
        resolved: channel(),
        flow_lookups: channel(),
        waiting: Waiting::default(),
        directory,
        attachments,
        hooks,
        udp_sockets: UdpSockets::new(),
    };
    for (id, socket) in udp_listeners {
        if let Err(e) = state
            .udp_sockets
            .add_listener(state.poll.registry(), id, socket)
        {
            tracing::error!(error = %e, "cannot poll a UDP listener");
            return;
        }
    }
    let mut events = Events::with_capacity(256);
    let mut now = Instant::now();
    loop {
        let deadline = state.flush(now);
        let retry = state.listeners.iter().filter_map(|l| l.2).min();
        let wake_at = retry.map_or(deadline, |r| r.min(deadline));
        let timeout = wake_at.saturating_duration_since(Instant::now());
        if let Err(e) = state.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "poll failed; stopping");
                return;
            }
        }
        now = Instant::now();
        for event in &events {
            match event.token() {
                UDP => {
                    if event.is_writable() {
                        state.send_outbox();
                    }
                    if event.is_readable() {
                        state.receive(now);
                    }
                }
                WAKER => {
                    loop {
                        match commands.try_recv() {
                            Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => {
                                // Peers and the server hear of it now, not by a timeout.
                                state.node.shutdown(now);
                                state.flush(now);
                                return;
                            }
                            Ok(command) => state.command(now, command),
                            Err(TryRecvError::Empty) => break,
                        }
                    }
                    while let Ok((id, addr)) = state.resolved.1.try_recv() {
                        state.connect_resolved(now, id, addr);
                    }
                    while let Ok((flow, addr)) = state.flow_lookups.1.try_recv() {
                        state.node.handle_udp_resolved(now, flow, addr);
                    }
                }
                token @ Token(t)
                    if t >= FIRST_FLOW || (FIRST_UDP_LISTENER..FIRST_CONN).contains(&t) =>
                {
                    state.udp_sockets.readable(now, token, &mut state.node);
                }
                Token(t) if t >= FIRST_CONN => {
                    let id = ConnId((t - FIRST_CONN) as u64);
                    if let Some(c) = state.conns.get_mut(&id) {
                        c.ready(event);
                        state.dirty.insert(id);
                    }
                }
                Token(t) => state.accept(now, ListenerId((t - FIRST_LISTENER) as u64)),
            }
        }
        if deadline <= now {
            state.node.handle_timeout(now);
        }
        let due: Vec<ListenerId> = state
            .listeners
            .iter_mut()
            .filter(|l| l.2.is_some_and(|at| at <= now))
            .map(|l| {
                l.2 = None;
                l.0
            })
            .collect();
        for id in due {
            state.accept(now, id);
        }
    }
}

impl Loop {
    /// Performs everything the node has to say and drives every connection with work, until
    /// none has anything more to do; returns the node's deadline.
    fn flush(&mut self, now: Instant) -> Instant {
        loop {
            let deadline = loop {
                let Some(output) = self.waiting.answer(self.node.poll_output()) else {
                    continue;
                };
                match output {
                    Output::Transmit(t) => self.outbox.push_back(t),
                    Output::Action(action) => self.action(now, action),
                    Output::Udp(UdpAction::Resolve { flow, target }) => {
                        let (tx, waker) = (self.flow_lookups.0.clone(), self.waker.clone());
                        let report = move |addr| {
                            if tx.send((flow, addr)).is_ok() {
                                let _ = waker.wake();
                            }
                        };
                        if let Err(e) = burrow_tokio::lookup_flow_target(target, report) {
                            self.node.handle_udp_resolved(now, flow, Err(e.to_string()));
                        }
                    }
                    Output::Udp(action) => {
                        let failed = self.udp_sockets.action(self.poll.registry(), action);
                        if let Some((flow, why)) = failed {
                            self.node.handle_udp_error(now, flow, &why);
                        }
                    }
                    Output::Log(line) => burrow_tokio::log(&line),
                    Output::Save { path, contents } => burrow_tokio::save(&path, &contents),
                    Output::Directory(change) => {
                        let _ = self.directory.send(change);
                    }
                    Output::MasterAttach { service, attach } => {
                        let _ = self.attachments.send((service, attach));
                    }
                    Output::Hook(event) => {
                        let _ = self.hooks.send(event);
                    }
                    // Answered by `waiting`.
                    Output::StunResult { .. }
                    | Output::Admin { .. }
                    | Output::PathTokens(_)
                    | Output::Pong(_) => {}
                    Output::Listen { listener, addr } => {
                        let bound = self.listen(listener, addr);
                        let result = bound.as_ref().map(|a| *a).map_err(|e| e.to_string());
                        self.node.handle_listening(now, listener, result);
                        if bound.is_ok() {
                            // Edge-triggered: take what arrived before the registration.
                            self.accept(now, listener);
                        }
                    }
                    Output::Unlisten { listener } => {
                        // Dropping a listener deregisters it from the poll.
                        self.listeners.retain(|l| l.0 != listener);
                    }
                    Output::ListenUdp { listener, addr } => {
                        let bound = self.listen_udp(listener, addr);
                        let result = bound.as_ref().map(|a| *a).map_err(|e| e.to_string());
                        self.node.handle_udp_listening(now, listener, result);
                        if bound.is_ok() {
                            // Edge-triggered: take what arrived before the registration.
                            let token = Token(FIRST_UDP_LISTENER + listener.0 as usize);
                            self.udp_sockets.readable(now, token, &mut self.node);
                        }
                    }
                    Output::UnlistenUdp { listener } => {
                        self.udp_sockets.remove_listener(listener);
                    }
                    Output::Timeout(at) => break at,
                }
            };
            self.send_outbox();
            let mut busy = false;
            let mut reports = Vec::new();
            for id in std::mem::take(&mut self.dirty) {
                let Some(conn) = self.conns.get_mut(&id) else {
                    continue;
                };
                if conn.drive(&mut self.read_buf, self.read_chunk, &mut reports) {
                    // Dropping the socket deregisters it from the poll.
                    self.conns.remove(&id);
                }
                for report in reports.drain(..) {
                    busy = true;
                    self.report(now, id, report);
                }
            }
            if !busy {
                return deadline;
            }
        }
    }

    /// Sends queued datagrams in batches until the socket's buffer is full (then its next
    /// writable event calls this again).
    fn send_outbox(&mut self) {
        while !self.outbox.is_empty() {
            match self.udp.send(&self.socket, self.outbox.make_contiguous()) {
                Ok(n) => drop(self.outbox.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "send failed");
                    self.outbox.pop_front();
                }
            }
        }
    }

    /// Feeds what the socket holds to the node (edge-triggered: until it is empty).
    fn receive(&mut self, now: Instant) {
        let (node, udp, socket) = (&mut self.node, &mut self.udp, &self.socket);
        // Until the socket says `WouldBlock` or a batch finds it drained (mio is
        // edge-triggered: a datagram that arrives later is a new event).
        while let Ok(false) = udp.recv(socket, |from, d, ttl| {
            node.handle_input_in_place(now, from, d, ttl)
        }) {}
    }

    /// Accepts until the listener is empty (mio is edge-triggered), or pauses it after a
    /// failure.
    fn accept(&mut self, now: Instant, id: ListenerId) {
        loop {
            let found = self.listeners.iter_mut().find(|l| l.0 == id);
            let Some((listener, socket, retry)) = found else {
                return;
            };
            if retry.is_some() {
                return;
            }
            let listener = *listener;
            let (stream, from) = match socket.accept() {
                Ok((stream, from)) => {
                    tracing::debug!(%from, %listener, "accepted");
                    (stream, from)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(%listener, error = %e, "accept failed; retrying");
                    *retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            };
            let origin = stream.local_addr().ok().map(|local| Origin {
                client: from,
                local,
            });
            if let Some(id) = self.node.handle_accept_from(now, listener, origin) {
                self.add_conn(now, id, LocalStream::Tcp(stream), false);
            }
        }
    }

    fn add_conn(&mut self, now: Instant, id: ConnId, stream: LocalStream, connecting: bool) {
        let token = Token(FIRST_CONN + id.0 as usize);
        match Conn::new(self.poll.registry(), token, stream, connecting) {
            Ok(conn) => {
                self.conns.insert(id, conn);
                self.dirty.insert(id);
            }
            Err(e) if connecting => self.node.handle_connect_failed(now, id, &e.to_string()),
            Err(e) => self.node.handle_conn_error(now, id, &e.to_string()),
        }
    }

    fn report(&mut self, now: Instant, id: ConnId, report: Report) {
        let node = &mut self.node;
        match report {
            Report::Connected => node.handle_connected(now, id),
            Report::ConnectFailed(why) => node.handle_connect_failed(now, id, &why),
            Report::Io(Io::Read(data)) => node.handle_read(now, id, data),
            Report::Io(Io::Eof) => node.handle_eof(now, id),
            Report::Io(Io::Written(n)) => node.handle_written(now, id, n),
            Report::Io(Io::Failed(why)) => node.handle_conn_error(now, id, &why),
        }
    }

    /// Connects to an address or a unix socket at once; a host name is looked up on a thread
    /// of its own, which reports back through the waker.
    fn connect(&mut self, now: Instant, conn: ConnId, target: String) {
        tracing::debug!(%conn, %target, "connecting");
        match LocalStream::connect(&target) {
            Ok(Some(stream)) => self.add_conn(now, conn, stream, true),
            Ok(None) => {
                self.resolving.insert(conn);
                let (tx, waker) = (self.resolved.0.clone(), self.waker.clone());
                let lookup = move || {
                    let addr = target.to_socket_addrs().and_then(|mut a| {
                        a.next().ok_or_else(|| {
                            io::Error::new(io::ErrorKind::NotFound, "the name has no address")
                        })
                    });
                    if tx.send((conn, addr)).is_ok() {
                        let _ = waker.wake();
                    }
                };
                let spawned = std::thread::Builder::new()
                    .name("burrow-lookup".into())
                    .spawn(lookup);
                if let Err(e) = spawned {
                    self.resolving.remove(&conn);
                    self.node.handle_connect_failed(now, conn, &e.to_string());
                }
            }
            Err(e) => self.node.handle_connect_failed(now, conn, &e.to_string()),
        }
    }

    fn connect_resolved(&mut self, now: Instant, conn: ConnId, addr: io::Result<SocketAddr>) {
        // Not waiting any more: the connection was closed during the lookup.
        if !self.resolving.remove(&conn) {
            return;
        }
        match addr.and_then(TcpStream::connect) {
            Ok(stream) => self.add_conn(now, conn, LocalStream::Tcp(stream), true),
            Err(e) => self.node.handle_connect_failed(now, conn, &e.to_string()),
        }
    }

    fn action(&mut self, now: Instant, action: Action) {
        let conn = match action {
            Action::Connect { conn, target } => return self.connect(now, conn, target),
            Action::Read { conn }
            | Action::Write { conn, .. }
            | Action::Shutdown { conn }
            | Action::Close { conn, .. } => conn,
        };
        if let Action::Close { reason, .. } = &action {
            burrow_tokio::log_close(conn, reason.as_deref());
            self.resolving.remove(&conn);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        self.dirty.insert(conn);
        match action {
            Action::Connect { .. } => {}
            Action::Read { .. } => c.read(),
            Action::Write { data, .. } => c.write(data),
            Action::Shutdown { .. } => c.shutdown(),
            Action::Close { abort, .. } => {
                if c.close(abort) {
                    self.conns.remove(&conn);
                }
            }
        }
    }

    /// Does what a handle asked (all but shutting down, which the loop does).
    fn command(&mut self, now: Instant, command: Command) {
        if let Some(Command::Reload(services, reply)) =
            self.waiting.request(&mut self.node, now, command)
        {
            let _ = reply.send(self.reload(now, &services));
        }
    }

    /// Binds a listener the node asked for at `addr` and polls it; its address.
    fn listen(&mut self, id: ListenerId, addr: SocketAddr) -> io::Result<SocketAddr> {
        if FIRST_LISTENER + id.0 as usize >= FIRST_UDP_LISTENER {
            return Err(io::Error::other(
                "the node has used up its listener ids; restart it",
            ));
        }
        let mut listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        self.poll
            .registry()
            .register(&mut listener, listener_token(id), Interest::READABLE)?;
        self.listeners.push((id, listener, None));
        Ok(bound)
    }

    /// Binds the UDP socket of a published port and polls it.
    fn listen_udp(&mut self, id: UdpListenerId, addr: SocketAddr) -> io::Result<SocketAddr> {
        if FIRST_UDP_LISTENER + id.0 as usize >= FIRST_CONN {
            return Err(io::Error::other(
                "the node has used up its UDP listener ids; restart it",
            ));
        }
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket);
        let bound = socket.local_addr()?;
        self.udp_sockets
            .add_listener(self.poll.registry(), id, socket)?;
        Ok(bound)
    }

    /// Goes over to `services`: binds the new listeners (nothing changes if one fails), then
    /// has the node stop and start services; closes the removed listeners.
    fn reload(&mut self, now: Instant, services: &Services) -> Result<Summary, StartError> {
        let plan = self.node.plan(services);
        let bound =
            node::bind_listeners(&plan.connect, crate::tcp_listener, TcpListener::local_addr)?;
        let bound_udp = crate::bind_udp_listeners(&plan.connect_udp)?;
        let remove_udp = plan.remove_udp.clone();
        let mut applied = self.node.apply(now, plan, bound);
        let udp = self
            .node
            .apply_udp(now, &remove_udp, bound_udp, &mut applied.summary);
        for id in udp.closed {
            self.udp_sockets.remove_listener(id);
        }
        for (id, socket) in udp.started {
            let token = Token(FIRST_UDP_LISTENER + id.0 as usize);
            if let Err(e) = self
                .udp_sockets
                .add_listener(self.poll.registry(), id, socket)
            {
                tracing::error!(%id, error = %e, "cannot poll a new UDP listener");
                continue;
            }
            // Edge-triggered: take what arrived before the registration.
            self.udp_sockets.readable(now, token, &mut self.node);
        }
        // Dropping a listener deregisters it from the poll.
        self.listeners.retain(|l| !applied.closed.contains(&l.0));
        for (id, mut listener) in applied.started {
            let registry = self.poll.registry();
            if let Err(e) = registry.register(&mut listener, listener_token(id), Interest::READABLE)
            {
                tracing::error!(%id, error = %e, "cannot poll a new listener");
                continue;
            }
            self.listeners.push((id, listener, None));
            // Edge-triggered: take what arrived before the registration.
            self.accept(now, id);
        }
        Ok(applied.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;

    /// The node's UDP socket on mio: batching on (where Linux has it), and a TTL that applies
    /// to one datagram, with the socket's own TTL back afterwards.
    #[test]
    fn udp_batches_and_applies_a_ttl_to_one_datagram() {
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let default = SockRef::from(&a).ttl_v4().unwrap();
        let mut udp = Udp::new(&a).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(udp.batches(), (true, true), "GSO and GRO");
        }
        let t = Transmit {
            segment_size: None,
            dst: b.local_addr().unwrap(),
            ttl: Some(3),
            payload: bytes::Bytes::from_static(b"probe"),
        };
        assert_eq!(udp.send(&a, &[t]).unwrap(), 1);
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"probe");
        assert_eq!(from, a.local_addr().unwrap());
        assert_eq!(SockRef::from(&a).ttl_v4().unwrap(), default);
        assert_ne!(
            default, 3,
            "the test needs a default TTL other than the probe's"
        );
    }

    /// Addresses and unix paths connect at once; a host name is left for a lookup thread.
    #[test]
    fn host_names_are_not_resolved_on_the_loop() {
        assert!(LocalStream::connect("localhost:9").unwrap().is_none());
        assert!(LocalStream::connect("127.0.0.1:9").unwrap().is_some());
    }
}
