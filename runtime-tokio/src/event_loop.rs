//! The node's one task: the core's run loop on tokio.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use burrow_core::forward::{Action, ConnId, Forwarder};
use burrow_core::node::{Level, Started};
use burrow_core::rendezvous::ServiceName;
use burrow_core::status::{self, Seen, Status};
use burrow_core::{Endpoint, Event};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Command;
use crate::conn::{self, ConnTasks, Local, LocalStream};
use crate::udp;

/// Receive batches handled per wake-up before the endpoint's output is sent.
const RECV_ROUNDS: usize = 16;
/// Local reports handled per wake-up before the endpoint's output is sent.
const LOCAL_BATCH: usize = 64;

struct Loop {
    ep: Endpoint,
    fwd: Forwarder,
    socket: UdpSocket,
    udp: udp::Udp,
    /// Transmits drained from the endpoint, sent together so runs can be batched.
    outbox: Vec<burrow_core::Transmit>,
    to_loop: UnboundedSender<Local>,
    conns: BTreeMap<ConnId, ConnTasks>,
    seen: Seen,
    exposed: Vec<(ServiceName, String)>,
    listen_addrs: Vec<(ServiceName, SocketAddr)>,
    /// STUN probes asked for by handles, waiting for their outcome.
    probes: Vec<(SocketAddr, oneshot::Sender<Option<SocketAddr>>)>,
}

/// Runs until shut down (or every handle is dropped).
pub(crate) async fn run(
    node: Started<TcpListener>,
    socket: UdpSocket,
    mut commands: mpsc::Receiver<Command>,
) {
    let Started {
        endpoint,
        forwarder,
        listeners,
        exposed,
        listen_addrs,
        ..
    } = node;
    let (to_loop, mut local) = mpsc::unbounded_channel();
    let mut accepts: Vec<JoinHandle<()>> = Vec::new();
    for (id, listener) in listeners {
        accepts.push(conn::spawn_accept(id, listener, to_loop.clone()));
    }
    let udp = match udp::Udp::new(&socket) {
        Ok(udp) => udp,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the UDP socket");
            return;
        }
    };
    let mut state = Loop {
        udp,
        outbox: Vec::new(),
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
    let mut now = Instant::now();
    loop {
        state.flush(now).await;
        let deadline = state.ep.poll_timeout().map(|(at, _)| at);
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            readable = state.socket.readable() => {
                now = Instant::now();
                if let Err(e) = readable {
                    tracing::error!(error = %e, "UDP socket failed");
                    break;
                }
                // Drain what is queued (boundedly) before sending anything.
                let Loop { udp, socket, ep, .. } = &mut state;
                udp.recv_ready(socket, RECV_ROUNDS, |from, d| ep.handle_input(now, from, d));
            }
            Some(report) = local.recv() => {
                now = Instant::now();
                state.local(now, report);
                for _ in 1..LOCAL_BATCH {
                    match local.try_recv() {
                        Ok(report) => state.local(now, report),
                        Err(_) => break,
                    }
                }
            }
            command = commands.recv() => match command {
                Some(Command::Status(reply)) => {
                    now = Instant::now();
                    let _ = reply.send(state.status());
                }
                Some(Command::StunProbe(server, reply)) => {
                    now = Instant::now();
                    state.ep.stun_probe(now, server);
                    state.probes.push((server, reply));
                }
                Some(Command::Shutdown) | None => break,
            },
            () = sleep => {
                now = Instant::now();
                state.ep.handle_timeout(now);
            }
        }
    }
    for accept in accepts {
        accept.abort();
    }
}

impl Loop {
    /// Sends every transmit, acts on every event and performs every action, until the
    /// endpoint and the forwarder have nothing more to say.
    async fn flush(&mut self, now: Instant) {
        loop {
            let mut busy = false;
            self.outbox
                .extend(std::iter::from_fn(|| self.ep.poll_transmit()));
            if !self.outbox.is_empty() {
                busy = true;
                self.udp.send_all(&self.socket, &self.outbox).await;
                self.outbox.clear();
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
            let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.probes)
                .into_iter()
                .partition(|(s, _)| *s == server);
            self.probes = waiting;
            for (_, reply) in done {
                let _ = reply.send(mapped);
            }
        }
    }

    fn status(&self) -> Status {
        status::snapshot(
            &self.ep,
            &self.fwd,
            &self.seen,
            self.socket.local_addr().ok(),
            &self.exposed,
            &self.listen_addrs,
        )
    }
}
