//! The node's one thread: the core's run loop on smol (the event loop is one future; local
//! sockets have their own small tasks).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use burrow_core::forward::{Action, ConnId, Forwarder};
use burrow_core::node::{Level, Started};
use burrow_core::rendezvous::ServiceName;
use burrow_core::{Endpoint, Event};
use std::net::UdpSocket;

use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;
use smol::net::TcpListener;
use smol::{Async, Task, Timer};

use crate::Command;
use crate::conn::{self, ConnTasks, Local, LocalStream};
use crate::udp;
use burrow_core::status::{self, Seen};

/// Largest datagram we accept; the core never sends more than its `max_udp_payload`.
const MAX_DATAGRAM: usize = 65_536;
/// Local reports handled per wake-up before the endpoint's output is sent.
const LOCAL_BATCH: usize = 64;

/// Everything the task owns.
pub(crate) struct Parts {
    pub(crate) node: Started<TcpListener>,
    pub(crate) socket: Async<UdpSocket>,
    pub(crate) commands: Receiver<Command>,
    /// Dropped when the loop ends, which tells handles it has stopped.
    pub(crate) done: Sender<()>,
}

struct Loop {
    ep: Endpoint,
    fwd: Forwarder,
    socket: Async<UdpSocket>,
    sender: udp::Sender,
    to_loop: Sender<Local>,
    conns: BTreeMap<ConnId, ConnTasks>,
    seen: Seen,
    exposed: Vec<(ServiceName, String)>,
    listen_addrs: Vec<(ServiceName, SocketAddr)>,
    /// STUN probes asked for by handles, waiting for their outcome.
    probes: Vec<(SocketAddr, Sender<Option<SocketAddr>>)>,
}

/// What woke the loop.
enum Wake {
    Datagram(io::Result<(usize, SocketAddr)>),
    Local(Local),
    Command(Option<Command>),
    Deadline,
}

/// Runs until shut down (or every handle is dropped).
pub(crate) async fn run(parts: Parts) {
    let Parts {
        node,
        socket,
        commands,
        done: _done,
    } = parts;
    let Started {
        endpoint,
        forwarder,
        listeners,
        exposed,
        listen_addrs,
        ..
    } = node;
    let (to_loop, local) = channel::unbounded();
    let mut accepts: Vec<Task<()>> = Vec::new();
    for (id, listener) in listeners {
        accepts.push(conn::spawn_accept(id, listener, to_loop.clone()));
    }
    let mut state = Loop {
        sender: udp::Sender::new(&socket),
        ep: endpoint,
        fwd: forwarder,
        socket,
        to_loop,
        conns: BTreeMap::new(),
        seen: Seen::default(),
        exposed,
        listen_addrs,
        probes: Vec::new(),
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut now = Instant::now();
    loop {
        state.flush(now).await;
        let deadline = state.ep.poll_timeout().map(|(at, _)| at);
        let wake = {
            let datagram = async { Wake::Datagram(state.socket.recv_from(&mut buf).await) };
            // `local` never closes: the loop holds a sender.
            let report = async { local.recv().await.map_or(Wake::Command(None), Wake::Local) };
            let command = async { Wake::Command(commands.recv().await.ok()) };
            let timer = async {
                match deadline {
                    Some(at) => Timer::at(at).await,
                    None => Timer::never().await,
                };
                Wake::Deadline
            };
            datagram.or(report).or(command).or(timer).await
        };
        now = Instant::now();
        match wake {
            Wake::Datagram(received) => {
                state.datagram(now, received, &buf);
                // Drain what else is queued before sending anything.
                loop {
                    let more = state.socket.get_ref().recv_from(&mut buf);
                    if matches!(&more, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                        break;
                    }
                    state.datagram(now, more, &buf);
                }
            }
            Wake::Local(report) => {
                state.local(now, report);
                for _ in 1..LOCAL_BATCH {
                    match local.try_recv() {
                        Ok(report) => state.local(now, report),
                        Err(_) => break,
                    }
                }
            }
            Wake::Command(Some(Command::Status(reply))) => {
                let _ = reply.try_send(state.status());
            }
            Wake::Command(Some(Command::StunProbe(server, reply))) => {
                state.ep.stun_probe(now, server);
                state.probes.push((server, reply));
            }
            Wake::Command(Some(Command::Shutdown) | None) => break,
            Wake::Deadline => state.ep.handle_timeout(now),
        }
    }
    drop(accepts);
}

impl Loop {
    /// Sends every transmit, acts on every event and performs every action, until the
    /// endpoint and the forwarder have nothing more to say.
    async fn flush(&mut self, now: Instant) {
        loop {
            let mut busy = false;
            while let Some(t) = self.ep.poll_transmit() {
                busy = true;
                if let Err(e) = self.sender.send(&self.socket, &t).await {
                    tracing::debug!(dst = %t.dst, error = %e, "send failed");
                }
            }
            while let Some(event) = self.ep.poll_event() {
                busy = true;
                self.event(&event);
                self.fwd.handle_event(now, &mut self.ep, &event);
            }
            while let Some(action) = self.fwd.poll_action() {
                busy = true;
                self.action(action);
            }
            if !busy {
                return;
            }
        }
    }

    fn datagram(&mut self, now: Instant, received: io::Result<(usize, SocketAddr)>, buf: &[u8]) {
        match received {
            Ok((n, from)) => self.ep.handle_input(now, from, &buf[..n]),
            // ICMP errors surface here on some systems; the protocol recovers from the loss.
            Err(e) => tracing::debug!(error = %e, "receive failed"),
        }
    }

    fn local(&mut self, now: Instant, report: Local) {
        let (fwd, ep) = (&mut self.fwd, &mut self.ep);
        match report {
            Local::Accepted(listener, stream) => {
                if let Some(id) = fwd.handle_accept(now, ep, listener) {
                    let tasks = conn::start(
                        id,
                        LocalStream::Tcp(stream),
                        &self.to_loop,
                        fwd.read_chunk(),
                    );
                    self.conns.insert(id, tasks);
                }
            }
            Local::Connected(id, stream) => {
                if self.conns.contains_key(&id) {
                    let tasks = conn::start(id, stream, &self.to_loop, fwd.read_chunk());
                    self.conns.insert(id, tasks);
                    fwd.handle_connected(now, ep, id);
                }
                // Otherwise the stream was reset while connecting: dropping the socket closes it.
            }
            Local::ConnectFailed(id, e) => fwd.handle_connect_failed(now, ep, id, &e.to_string()),
            Local::Read(id, data) => fwd.handle_read(now, ep, id, &data),
            Local::Eof(id) => fwd.handle_eof(now, ep, id),
            Local::Written(id, n) => fwd.handle_written(now, ep, id, n),
            Local::Failed(id, e) => fwd.handle_conn_error(now, ep, id, &e.to_string()),
        }
    }

    fn action(&mut self, action: Action) {
        match action {
            Action::Connect { conn, target } => {
                tracing::debug!(%conn, %target, "connecting");
                conn::spawn_connect(conn, target, self.to_loop.clone());
                // A placeholder until connected, so a Close before then is noticed.
                self.conns.insert(conn, ConnTasks::placeholder());
            }
            Action::Read { conn } => self.with(conn, ConnTasks::read),
            Action::Write { conn, data } => self.with(conn, |t| t.write(data)),
            Action::Shutdown { conn } => self.with(conn, ConnTasks::shutdown),
            Action::Close {
                conn,
                abort,
                reason,
            } => {
                match &reason {
                    Some(why) => tracing::info!(%conn, "connection failed: {why}"),
                    None => tracing::debug!(%conn, "connection closed"),
                }
                if let Some(tasks) = self.conns.remove(&conn) {
                    tasks.close(abort);
                }
            }
        }
    }

    fn with(&self, conn: ConnId, f: impl FnOnce(&ConnTasks)) {
        if let Some(tasks) = self.conns.get(&conn) {
            f(tasks);
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
                    let _ = reply.try_send(mapped);
                }
                *s != server
            });
        }
    }

    fn status(&self) -> burrow_core::status::Status {
        status::snapshot(
            &self.ep,
            &self.fwd,
            &self.seen,
            self.socket.get_ref().local_addr().ok(),
            &self.exposed,
            &self.listen_addrs,
        )
    }
}
