//! The node's one thread: the core's run loop on a mio [`Poll`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Instant;

use burrow_core::forward::{Action, ConnId, Forwarder, ListenerId};
use burrow_core::node::{Level, Started};
use burrow_core::rendezvous::ServiceName;
use burrow_core::status::{self, Seen};
use burrow_core::{Endpoint, Event};
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token};

use crate::Command;
use crate::conn::{Conn, LocalStream, Report};
use crate::udp;

/// Largest datagram we accept; the core never sends more than its `max_udp_payload`.
const MAX_DATAGRAM: usize = 65_536;
const UDP: Token = Token(0);
/// The token of the waker that handles use to deliver commands.
pub(crate) const WAKER: Token = Token(1);
const FIRST_LISTENER: usize = 2;
/// Connection tokens are this plus the [`ConnId`].
const FIRST_CONN: usize = 1 << 20;

/// Everything the thread owns.
pub(crate) struct Parts {
    pub(crate) poll: Poll,
    pub(crate) node: Started<TcpListener>,
    pub(crate) socket: UdpSocket,
    pub(crate) commands: Receiver<Command>,
}

struct Loop {
    poll: Poll,
    ep: Endpoint,
    fwd: Forwarder,
    socket: UdpSocket,
    sender: udp::Sender,
    udp_addr: SocketAddr,
    listeners: Vec<(ListenerId, TcpListener)>,
    conns: BTreeMap<ConnId, Conn>,
    /// Connections that may have something to do (a credit, a write, readiness).
    dirty: BTreeSet<ConnId>,
    seen: Seen,
    exposed: Vec<(ServiceName, String)>,
    listen_addrs: Vec<(ServiceName, SocketAddr)>,
    probes: Vec<(SocketAddr, Sender<Option<SocketAddr>>)>,
    read_buf: Vec<u8>,
}

/// Runs until shut down (or every handle is gone).
pub(crate) fn run(parts: Parts) {
    let Parts {
        poll,
        node,
        mut socket,
        commands,
    } = parts;
    let Started {
        endpoint,
        forwarder,
        udp_addr,
        mut listeners,
        exposed,
        listen_addrs,
        ..
    } = node;
    let registry = poll.registry();
    let interest = Interest::READABLE | Interest::WRITABLE;
    if let Err(e) = registry.register(&mut socket, UDP, interest) {
        tracing::error!(error = %e, "cannot poll the UDP socket");
        return;
    }
    for (i, (_, l)) in listeners.iter_mut().enumerate() {
        if let Err(e) = registry.register(l, Token(FIRST_LISTENER + i), Interest::READABLE) {
            tracing::error!(error = %e, "cannot poll a listener");
            return;
        }
    }
    let forwarder_chunk = forwarder.read_chunk();
    let mut state = Loop {
        sender: udp::Sender::new(&socket),
        poll,
        ep: endpoint,
        fwd: forwarder,
        socket,
        udp_addr,
        listeners,
        conns: BTreeMap::new(),
        dirty: BTreeSet::new(),
        seen: Seen::default(),
        exposed,
        listen_addrs,
        probes: Vec::new(),
        read_buf: vec![0; forwarder_chunk],
    };
    let mut events = Events::with_capacity(256);
    let mut datagram = vec![0u8; MAX_DATAGRAM];
    let mut now = Instant::now();
    loop {
        state.flush(now);
        let deadline = state.ep.poll_timeout().map(|(at, _)| at);
        let timeout = deadline.map(|at| at.saturating_duration_since(Instant::now()));
        if let Err(e) = state.poll.poll(&mut events, timeout) {
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
                        state.sender.flush(&state.socket);
                    }
                    if event.is_readable() {
                        state.receive(now, &mut datagram);
                    }
                }
                WAKER => loop {
                    match commands.try_recv() {
                        Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return,
                        Ok(command) => state.command(now, command),
                        Err(TryRecvError::Empty) => break,
                    }
                },
                Token(t) if t >= FIRST_CONN => {
                    let id = ConnId((t - FIRST_CONN) as u64);
                    if let Some(c) = state.conns.get_mut(&id) {
                        c.ready(event);
                        state.dirty.insert(id);
                    }
                }
                Token(t) => state.accept(now, t - FIRST_LISTENER),
            }
        }
        if deadline.is_some_and(|at| at <= now) {
            state.ep.handle_timeout(now);
        }
    }
}

impl Loop {
    /// Sends every transmit, acts on every event, performs every action and drives every
    /// connection with work, until none of them has anything more to do.
    fn flush(&mut self, now: Instant) {
        loop {
            let mut busy = false;
            while let Some(t) = self.ep.poll_transmit() {
                busy = true;
                self.sender.send(&self.socket, t);
            }
            while let Some(event) = self.ep.poll_event() {
                busy = true;
                self.event(&event);
                self.fwd.handle_event(now, &mut self.ep, &event);
            }
            while let Some(action) = self.fwd.poll_action() {
                busy = true;
                self.action(now, action);
            }
            let dirty = std::mem::take(&mut self.dirty);
            let mut reports = Vec::new();
            for id in dirty {
                let Some(conn) = self.conns.get_mut(&id) else {
                    continue;
                };
                if conn.drive(&mut self.read_buf, &mut reports) {
                    self.drop_conn(id);
                }
                for report in reports.drain(..) {
                    busy = true;
                    self.report(now, id, report);
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn receive(&mut self, now: Instant, buf: &mut [u8]) {
        loop {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => self.ep.handle_input(now, from, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP errors surface here on some systems; the protocol recovers the loss.
                Err(e) => tracing::debug!(error = %e, "receive failed"),
            }
        }
    }

    fn accept(&mut self, now: Instant, index: usize) {
        let Some(&(listener, _)) = self.listeners.get(index) else {
            return;
        };
        loop {
            let stream = match self.listeners[index].1.accept() {
                Ok((stream, from)) => {
                    tracing::debug!(%from, %listener, "accepted");
                    stream
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Too many open files, or a connection reset before accept: drop it.
                    tracing::warn!(%listener, error = %e, "accept failed");
                    return;
                }
            };
            let Some(id) = self.fwd.handle_accept(now, &mut self.ep, listener) else {
                continue;
            };
            self.add_conn(now, id, LocalStream::Tcp(stream), false);
        }
    }

    fn add_conn(&mut self, now: Instant, id: ConnId, stream: LocalStream, connecting: bool) {
        let token = Token(FIRST_CONN + id.0 as usize);
        match Conn::new(self.poll.registry(), token, stream, connecting) {
            Ok(conn) => {
                self.conns.insert(id, conn);
                self.dirty.insert(id);
            }
            Err(e) => {
                let why = e.to_string();
                if connecting {
                    self.fwd.handle_connect_failed(now, &mut self.ep, id, &why);
                } else {
                    self.fwd.handle_conn_error(now, &mut self.ep, id, &why);
                }
            }
        }
    }

    fn drop_conn(&mut self, id: ConnId) {
        // Dropping the socket deregisters it from the poll.
        self.conns.remove(&id);
    }

    fn report(&mut self, now: Instant, id: ConnId, report: Report) {
        let (fwd, ep) = (&mut self.fwd, &mut self.ep);
        match report {
            Report::Connected => fwd.handle_connected(now, ep, id),
            Report::ConnectFailed(why) => fwd.handle_connect_failed(now, ep, id, &why),
            Report::Read(data) => fwd.handle_read(now, ep, id, &data),
            Report::Eof => fwd.handle_eof(now, ep, id),
            Report::Written(n) => fwd.handle_written(now, ep, id, n),
            Report::Failed(why) => fwd.handle_conn_error(now, ep, id, &why),
        }
    }

    fn action(&mut self, now: Instant, action: Action) {
        let conn = match &action {
            Action::Connect { conn, target } => {
                tracing::debug!(%conn, %target, "connecting");
                match LocalStream::connect(target) {
                    Ok(stream) => self.add_conn(now, *conn, stream, true),
                    Err(e) => {
                        let why = e.to_string();
                        self.fwd
                            .handle_connect_failed(now, &mut self.ep, *conn, &why);
                    }
                }
                return;
            }
            Action::Read { conn }
            | Action::Write { conn, .. }
            | Action::Shutdown { conn }
            | Action::Close { conn, .. } => *conn,
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        self.dirty.insert(conn);
        match action {
            Action::Connect { .. } => {}
            Action::Read { .. } => c.read(),
            Action::Write { data, .. } => c.write(data),
            Action::Shutdown { .. } => c.shutdown(),
            Action::Close { abort, reason, .. } => {
                match &reason {
                    Some(why) => tracing::info!(%conn, "connection failed: {why}"),
                    None => tracing::debug!(%conn, "connection closed"),
                }
                if c.close(abort) {
                    self.drop_conn(conn);
                }
            }
        }
    }

    fn command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Status(reply) => {
                let status = status::snapshot(
                    &self.ep,
                    &self.fwd,
                    &self.seen,
                    Some(self.udp_addr),
                    &self.exposed,
                    &self.listen_addrs,
                );
                let _ = reply.send(status);
            }
            Command::StunProbe(server, reply) => {
                self.ep.stun_probe(now, server);
                self.probes.push((server, reply));
            }
            Command::Shutdown => {}
        }
    }

    /// Logs an event, remembers what status needs, answers STUN probes.
    fn event(&mut self, event: &Event) {
        if let Some(line) = event.log_line(&self.seen) {
            match line.level() {
                Level::Warn => tracing::warn!("{line}"),
                Level::Info => tracing::info!("{line}"),
                Level::Trace => tracing::trace!("{line}"),
            }
        }
        self.seen.handle_event(event);
        if let Event::Stun(outcome) = event {
            let (server, mapped) = outcome.result();
            self.probes.retain(|(s, reply)| {
                if *s == server {
                    let _ = reply.send(mapped);
                }
                *s != server
            });
        }
    }
}
