//! The node's one task on any async [`Runtime`]: core's run loop (see `burrow_core`'s crate
//! docs). Drain the node, send the transmits in batches, wait for a datagram, a local socket
//! report, a command or the deadline, read the clock once, feed the node.

use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use async_channel::{Receiver, Sender};
use burrow_core::Transmit;
use bytes::BytesMut;
use std::sync::Arc;

use burrow_core::forward::udp::{FlowId, UdpAction, UdpListenerId};
use burrow_core::forward::{Action, ConnId, ListenerId};
use burrow_core::node::{Node, Output, Services, StartError, Summary};

use crate::handle::MasterAttach;
use burrow_core::rendezvous::directory::DirectoryChange;

use crate::handle::Command;
use crate::local::{self, Local, OpenConn};
use crate::local_conn::Report;
use crate::ready::Woken;
use crate::requests::{AsyncChannel, Waiting};
use crate::runtime::{Direction, Runtime};
use crate::udp::Udp;

/// Receive batches handled per wake-up before the node's output is sent.
const RECV_ROUNDS: usize = 16;
/// Local reports handled per wake-up before the node's output is sent.
const LOCAL_BATCH: usize = 64;
/// Forwarded UDP datagrams waiting for the loop; a reader task waits (and its socket's
/// buffer fills and drops, as UDP does) while this many are queued.
const UDP_QUEUE: usize = 1024;

/// What the task owns besides the node.
pub(crate) struct Parts<R: Runtime> {
    pub(crate) socket: R::Udp,
    pub(crate) listeners: Vec<(ListenerId, R::Listener)>,
    /// The UDP sockets of UDP services we reach.
    pub(crate) udp_listeners: Vec<(UdpListenerId, R::Udp)>,
    pub(crate) commands: Receiver<Command>,
    /// Dropped when the loop ends, which tells handles it has stopped.
    pub(crate) done: Sender<()>,
    /// Where the rendezvous server's directory changes go, to be stored.
    pub(crate) directory: Sender<DirectoryChange>,
    /// Where the master's attachments go, to be run.
    pub(crate) attachments: Sender<MasterAttach>,
    /// Where hook events go, to be run.
    pub(crate) hooks: Sender<burrow_core::node::HookEvent>,
}

struct Loop<R: Runtime> {
    node: Node,
    socket: R::Udp,
    udp: Udp,
    /// Transmits drained from the node, sent together so runs can be batched.
    outbox: Vec<Transmit>,
    to_loop: Sender<Local<R>>,
    /// Where the readers of forwarded UDP sockets send their datagrams (bounded).
    udp_to_loop: Sender<Local<R>>,
    conns: BTreeMap<ConnId, ConnEntry<R>>,
    /// Where the reactor notes the connections whose sockets may be ready.
    woken: Arc<Woken>,
    /// Connections with something to do since they were last driven.
    dirty: BTreeSet<ConnId>,
    /// Where local sockets are read into; each read's chunk is split off and handed on, and
    /// once the node has dropped it the memory is found free again.
    read_buf: BytesMut,
    /// The most one read takes (the forwarder's chunk).
    read_chunk: usize,
    /// Reports of the connection being driven (kept for its allocation).
    reports: Vec<Report>,
    /// Handles waiting for an answer from the node.
    waiting: Waiting<AsyncChannel>,
    directory: Sender<DirectoryChange>,
    attachments: Sender<MasterAttach>,
    hooks: Sender<burrow_core::node::HookEvent>,
    /// Each listener's accept task; dropping it closes the listener.
    accepts: BTreeMap<ListenerId, R::Task>,
    /// Each UDP listener socket and its reader task.
    udp_listeners: BTreeMap<UdpListenerId, (Arc<R::Udp>, R::Task)>,
    /// Each UDP flow's socket toward its target, and its reader task; dropping it closes
    /// the socket.
    flows: BTreeMap<FlowId, FlowSocket<R>>,
    /// Tasks of listeners the node closed, to be cancelled (which closes their sockets)
    /// before anything else is bound.
    stopping: Vec<R::Task>,
    /// Listeners the node asked for while others were stopping: bound once those are closed,
    /// so a port the node closes and opens again is free when it is bound.
    deferred: Vec<Bind>,
}

/// A listener to bind.
enum Bind {
    Tcp(ListenerId, SocketAddr),
    Udp(UdpListenerId, SocketAddr),
}

/// A local connection of the loop.
enum ConnEntry<R: Runtime> {
    /// Being connected by its task; a close before then drops this, and the socket with it.
    Connecting,
    Open(OpenConn<R>),
}

/// A UDP flow's socket, its service's address, and its reader task.
type FlowSocket<R> = (Arc<<R as Runtime>::Udp>, SocketAddr, <R as Runtime>::Task);

/// What woke the loop: every source that was ready when it looked.
struct Woke<R: Runtime> {
    /// The UDP socket may be readable (or failed).
    datagram: Option<io::Result<()>>,
    /// A local socket task's report.
    local: Option<Local<R>>,
    /// A forwarded UDP socket's datagram.
    forwarded: Option<Local<R>>,
    /// Connections' sockets may be ready: they are in the loop's `ready` list.
    conns: bool,
    /// The node's deadline passed.
    deadline: bool,
    /// A handle's command, or `Some(None)` once every handle is gone.
    command: Option<Option<Command>>,
}

impl<R: Runtime> Woke<R> {
    fn is_empty(&self) -> bool {
        self.datagram.is_none()
            && self.local.is_none()
            && self.forwarded.is_none()
            && !self.conns
            && !self.deadline
            && self.command.is_none()
    }
}

/// A poll's value, if it has one.
fn ready_value<T>(poll: Poll<T>) -> Option<T> {
    match poll {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// Runs until shut down (or every handle is dropped).
pub(crate) async fn run<R: Runtime>(mut node: Node, parts: Parts<R>) {
    let Parts {
        socket,
        listeners,
        udp_listeners,
        commands,
        done: _done,
        directory,
        attachments,
        hooks,
    } = parts;
    let (to_loop, local) = async_channel::unbounded();
    let (udp_to_loop, forwarded) = async_channel::bounded(UDP_QUEUE);
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
    let mut state = Loop::<R> {
        node,
        socket,
        udp,
        outbox: Vec::new(),
        to_loop,
        udp_to_loop,
        conns: BTreeMap::new(),
        woken: Woken::new(),
        dirty: BTreeSet::new(),
        read_buf: BytesMut::new(),
        read_chunk: 0,
        reports: Vec::new(),
        waiting: Waiting::default(),
        directory,
        attachments,
        hooks,
        accepts: BTreeMap::new(),
        udp_listeners: BTreeMap::new(),
        flows: BTreeMap::new(),
        stopping: Vec::new(),
        deferred: Vec::new(),
    };
    for (id, listener) in listeners {
        state.accept(id, listener);
    }
    for (id, socket) in udp_listeners {
        state.read_udp_listener(id, socket);
    }
    state.read_chunk = state.node.read_chunk();
    let mut now = Instant::now();
    let mut ready = Vec::new();
    loop {
        let deadline = state.flush(now).await;
        let woke = {
            let mut datagram = pin!(R::udp_ready(&state.socket, Direction::Read));
            let mut report = pin!(local.recv());
            let mut udp_report = pin!(forwarded.recv());
            let mut command = pin!(commands.recv());
            let mut timer = pin!(R::sleep_until(deadline));
            let woken = &state.woken;
            // Every source is looked at each time, so a busy one starves none, and all that
            // are ready are handled before the node's output goes out (as one batch).
            poll_fn(|cx| {
                // First a look that registers nothing with the empty sources: under load
                // something is ready, and a listener on each empty channel and a timer entry
                // would be set up only to be thrown away.
                let first = Woke {
                    datagram: ready_value(datagram.as_mut().poll(cx)),
                    local: local.try_recv().ok(),
                    forwarded: forwarded.try_recv().ok(),
                    conns: woken.take(&mut ready),
                    deadline: deadline <= Instant::now(),
                    command: match commands.try_recv() {
                        Ok(command) => Some(Some(command)),
                        Err(e) if e.is_closed() => Some(None),
                        Err(_) => None,
                    },
                };
                if !first.is_empty() {
                    return Poll::Ready(first);
                }
                // Nothing yet: wait on every source (the datagram's waker is set above).
                let woke = Woke {
                    datagram: None,
                    // `local` and `forwarded` never close: the loop holds senders.
                    local: ready_value(report.as_mut().poll(cx)).and_then(Result::ok),
                    forwarded: ready_value(udp_report.as_mut().poll(cx)).and_then(Result::ok),
                    conns: woken.poll(cx, &mut ready).is_ready(),
                    deadline: timer.as_mut().poll(cx).is_ready(),
                    command: ready_value(command.as_mut().poll(cx)).map(Result::ok),
                };
                if woke.is_empty() {
                    Poll::Pending
                } else {
                    Poll::Ready(woke)
                }
            })
            .await
        };
        now = Instant::now();
        for (id, direction) in ready.drain(..) {
            if let Some(ConnEntry::Open(open)) = state.conns.get_mut(&id) {
                open.ready(direction);
                state.dirty.insert(id);
            }
        }
        match woke.datagram {
            Some(Err(e)) => {
                tracing::error!(error = %e, "UDP socket failed");
                break;
            }
            Some(Ok(())) => state.receive(now),
            None => {}
        }
        for (first, queue) in [(woke.local, &local), (woke.forwarded, &forwarded)] {
            let Some(first) = first else { continue };
            state.local(now, first);
            for _ in 1..LOCAL_BATCH {
                match queue.try_recv() {
                    Ok(report) => state.local(now, report),
                    Err(_) => break,
                }
            }
        }
        if woke.deadline {
            state.node.handle_timeout(now);
        }
        match woke.command {
            None => {}
            Some(Some(Command::Shutdown) | None) => {
                // Peers and the server hear of it now, not by a timeout.
                state.node.shutdown(now);
                state.flush(now).await;
                break;
            }
            Some(Some(command)) => state.command(now, command).await,
        }
    }
    // `shutdown` returns when the loop ends and says the listeners are closed by then: each
    // task is cancelled, not only dropped, so its socket is closed before the loop ends.
    let accepts = std::mem::take(&mut state.accepts).into_values();
    let udp = std::mem::take(&mut state.udp_listeners).into_values();
    let flows = std::mem::take(&mut state.flows).into_values();
    let tasks = accepts
        .chain(udp.map(|(_, task)| task))
        .chain(flows.map(|(_, _, task)| task));
    for task in tasks {
        R::cancel(task).await;
    }
}

impl<R: Runtime> Loop<R> {
    /// Does what a handle asked (all but shutting down, which the loop does).
    async fn command(&mut self, now: Instant, command: Command) {
        if let Some(Command::Reload(services, reply)) =
            self.waiting.request(&mut self.node, now, command)
        {
            let mut stopped = Vec::new();
            let summary = self.reload(now, &services, &mut stopped);
            // The answer says the removed ports are free: their tasks (and sockets) are gone
            // first, not whenever the runtime gets round to dropping them.
            for task in stopped {
                R::cancel(task).await;
            }
            let _ = reply.try_send(summary);
        }
    }

    fn accept(&mut self, id: ListenerId, listener: R::Listener) {
        let task = R::spawn(local::accept::<R>(id, listener, self.to_loop.clone()));
        self.accepts.insert(id, task);
    }

    /// Binds a listener the node asked for at `addr` and accepts on it; its address.
    fn listen(&mut self, id: ListenerId, addr: SocketAddr) -> io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        self.accept(id, R::wrap_listener(listener)?);
        Ok(bound)
    }

    /// Binds the UDP socket of a published port and reads it on a task of its own.
    fn listen_udp(&mut self, id: UdpListenerId, addr: SocketAddr) -> io::Result<SocketAddr> {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let bound = socket.local_addr()?;
        self.read_udp_listener(id, R::wrap_udp(socket)?);
        Ok(bound)
    }

    /// Goes over to `services`: binds the new listeners (nothing changes if one fails), then
    /// has the node stop and start services; hands the tasks of the removed listeners to
    /// `stopped`, to be cancelled.
    fn reload(
        &mut self,
        now: Instant,
        services: &Services,
        stopped: &mut Vec<R::Task>,
    ) -> Result<Summary, StartError> {
        let plan = self.node.plan(services);
        let bound = crate::handle::bind_listeners::<R>(&plan.connect)?;
        let bound_udp = crate::handle::bind_udp_listeners::<R>(&plan.connect_udp)?;
        let remove_udp = plan.remove_udp.clone();
        let mut applied = self.node.apply(now, plan, bound);
        let udp = self
            .node
            .apply_udp(now, &remove_udp, bound_udp, &mut applied.summary);
        stopped.extend(
            applied
                .closed
                .iter()
                .filter_map(|id| self.accepts.remove(id)),
        );
        for (id, listener) in applied.started {
            self.accept(id, listener);
        }
        stopped.extend(
            (udp.closed.iter())
                .filter_map(|id| self.udp_listeners.remove(id))
                .map(|(_, task)| task),
        );
        for (id, socket) in udp.started {
            self.read_udp_listener(id, socket);
        }
        Ok(applied.summary)
    }

    /// Reads a UDP listener socket on a task of its own, reporting to the loop.
    fn read_udp_listener(&mut self, id: UdpListenerId, socket: R::Udp) {
        let socket = Arc::new(socket);
        let role = local::UdpRole::Listener(id);
        let task = R::spawn(local::udp_recv::<R>(
            role,
            socket.clone(),
            self.udp_to_loop.clone(),
        ));
        self.udp_listeners.insert(id, (socket, task));
    }

    /// Performs everything the node has to say, sends its transmits and drives every local
    /// connection with work, until none has anything more to do; returns the node's deadline.
    async fn flush(&mut self, now: Instant) -> Instant {
        loop {
            let deadline = self.drain();
            self.stop_listeners().await;
            self.send_outbox().await;
            if !self.drive_conns(now) {
                return deadline;
            }
        }
    }

    /// Moves the bytes of each connection with something to do, feeding what happened to the
    /// node; whether anything did.
    fn drive_conns(&mut self, now: Instant) -> bool {
        let mut busy = false;
        for id in std::mem::take(&mut self.dirty) {
            let Some(ConnEntry::Open(open)) = self.conns.get_mut(&id) else {
                continue;
            };
            let mut done = open
                .conn
                .drive(&mut self.read_buf, self.read_chunk, &mut self.reports);
            if !done {
                if let Err(e) = open.wait() {
                    done = open.conn.fail(e, &mut self.reports);
                }
            }
            if done {
                self.conns.remove(&id);
            }
            for report in self.reports.drain(..) {
                busy = true;
                let node = &mut self.node;
                match report {
                    Report::Read(data) => node.handle_read(now, id, data),
                    Report::Eof => node.handle_eof(now, id),
                    Report::Written(n) => node.handle_written(now, id, n),
                    Report::Failed(why) => node.handle_conn_error(now, id, &why),
                }
            }
        }
        busy
    }

    /// Performs everything the node has to say but its transmits, which go to the outbox,
    /// and the connections' I/O, which waits for [`Self::drive_conns`]; returns its deadline.
    fn drain(&mut self) -> Instant {
        loop {
            let Some(output) = self.waiting.answer(self.node.poll_output()) else {
                continue;
            };
            match output {
                Output::Transmit(t) => self.outbox.push(t),
                Output::Action(action) => self.action(action),
                Output::Udp(action) => self.udp_action(action),
                Output::Log(line) => crate::log(&line),
                Output::Save { path, contents } => crate::save(&path, &contents),
                // Answered by `waiting`.
                Output::StunResult { .. }
                | Output::Admin { .. }
                | Output::PathTokens(_)
                | Output::Pong(_) => {}
                Output::Directory(change) => {
                    let _ = self.directory.try_send(change);
                }
                Output::MasterAttach { service, attach } => {
                    let _ = self.attachments.try_send((service, attach));
                }
                Output::Hook(event) => {
                    let _ = self.hooks.try_send(event);
                }
                Output::Listen { listener, addr } => self.bind(Bind::Tcp(listener, addr)),
                Output::Unlisten { listener } => {
                    self.stopping.extend(self.accepts.remove(&listener));
                }
                Output::ListenUdp { listener, addr } => self.bind(Bind::Udp(listener, addr)),
                Output::UnlistenUdp { listener } => {
                    // Its task holds the socket's other handle: once it is cancelled, the
                    // socket is closed.
                    let removed = self.udp_listeners.remove(&listener);
                    self.stopping.extend(removed.map(|(_, task)| task));
                }
                Output::Timeout(at) => return at,
            }
        }
    }

    /// Binds a listener the node asked for and reports the outcome (through the loop, which
    /// has the clock); waits while listeners the node closed are still stopping.
    fn bind(&mut self, bind: Bind) {
        if !self.stopping.is_empty() {
            self.deferred.push(bind);
            return;
        }
        let _ = match bind {
            Bind::Tcp(id, addr) => {
                let bound = self.listen(id, addr);
                self.to_loop.try_send(Local::Listening(id, bound))
            }
            Bind::Udp(id, addr) => {
                let bound = self.listen_udp(id, addr);
                self.to_loop.try_send(Local::UdpListening(id, bound))
            }
        };
    }

    /// Cancels the tasks of the listeners the node closed, so their sockets are closed (a
    /// dropped task is only asked to stop), then binds what waited for that.
    async fn stop_listeners(&mut self) {
        for task in std::mem::take(&mut self.stopping) {
            R::cancel(task).await;
        }
        for bind in std::mem::take(&mut self.deferred) {
            self.bind(bind);
        }
    }

    /// Sends the outbox in batches, waiting for the socket when its buffer is full.
    async fn send_outbox(&mut self) {
        let mut sent = 0;
        while sent < self.outbox.len() {
            let (udp, socket, rest) = (&mut self.udp, &self.socket, &self.outbox[sent..]);
            match R::udp_try_io(socket, Direction::Write, || udp.send(socket, rest)) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = R::udp_ready(socket, Direction::Write).await {
                        tracing::debug!(error = %e, "UDP socket not writable");
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "send failed");
                    sent += 1;
                }
            }
        }
        self.outbox.clear();
    }

    /// Feeds what the socket holds to the node (boundedly) before anything is sent.
    fn receive(&mut self, now: Instant) {
        let Self {
            node, socket, udp, ..
        } = self;
        for _ in 0..RECV_ROUNDS {
            let received = R::udp_try_io(socket, Direction::Read, || {
                let drained = udp.recv(socket, |from, d, ttl| {
                    node.handle_input_in_place(now, from, d, ttl)
                })?;
                // A drained socket's readiness is cleared as a `WouldBlock` would, without
                // the receive that would only say so.
                match drained {
                    true => Err(io::ErrorKind::WouldBlock.into()),
                    false => Ok(()),
                }
            });
            if received.is_err() {
                return;
            }
        }
    }

    fn local(&mut self, now: Instant, report: Local<R>) {
        let node = &mut self.node;
        match report {
            Local::Accepted(listener, stream, origin) => {
                if let Some(id) = node.handle_accept_from(now, listener, origin) {
                    let open = OpenConn::new(id, stream, &self.woken);
                    self.conns.insert(id, ConnEntry::Open(open));
                    self.dirty.insert(id);
                }
            }
            Local::Connected(id, stream) => {
                if self.conns.contains_key(&id) {
                    let open = OpenConn::new(id, stream, &self.woken);
                    self.conns.insert(id, ConnEntry::Open(open));
                    self.dirty.insert(id);
                    node.handle_connected(now, id);
                }
                // Otherwise the stream was reset while connecting: dropping the socket closes it.
            }
            Local::ConnectFailed(id, e) => node.handle_connect_failed(now, id, &e.to_string()),
            Local::UdpRecv(listener, from, data) => {
                node.handle_udp_recv_from(now, listener, from, &data)
            }
            Local::FlowRecv(flow, data) => node.handle_udp_recv(now, flow, &data),
            Local::Listening(listener, bound) => {
                node.handle_listening(now, listener, bound.map_err(|e| e.to_string()));
            }
            Local::UdpListening(listener, bound) => {
                node.handle_udp_listening(now, listener, bound.map_err(|e| e.to_string()));
            }
            Local::FlowResolved(flow, addr) => node.handle_udp_resolved(now, flow, addr),
            Local::FlowFailed(flow, e) => {
                self.flows.remove(&flow);
                node.handle_udp_error(now, flow, &e.to_string());
            }
        }
    }

    /// Performs a UDP action: opens a flow's socket, sends (a datagram the socket does not
    /// take is dropped, as UDP may), or closes it.
    fn udp_action(&mut self, action: UdpAction) {
        let send = |socket: &R::Udp, data: &[u8], to: SocketAddr| {
            if let Err(e) = R::udp_try_send_to(socket, data, to) {
                tracing::debug!(error = %e, %to, "UDP send failed");
            }
        };
        match action {
            UdpAction::Open { flow, target } => {
                match crate::flow_socket(target).and_then(R::wrap_udp) {
                    Ok(socket) => {
                        tracing::debug!(%flow, %target, "UDP flow opened");
                        let socket = Arc::new(socket);
                        let role = local::UdpRole::Flow(flow, target);
                        let task = R::spawn(local::udp_recv::<R>(
                            role,
                            socket.clone(),
                            self.udp_to_loop.clone(),
                        ));
                        self.flows.insert(flow, (socket, target, task));
                    }
                    // Reported through the loop, which has the clock.
                    Err(e) => {
                        let _ = self.to_loop.try_send(Local::FlowFailed(flow, e));
                    }
                }
            }
            UdpAction::Resolve { flow, target } => {
                let to_loop = self.to_loop.clone();
                let report = move |addr| {
                    let _ = to_loop.try_send(Local::FlowResolved(flow, addr));
                };
                if let Err(e) = crate::lookup_flow_target(target, report) {
                    let _ = self
                        .to_loop
                        .try_send(Local::FlowResolved(flow, Err(e.to_string())));
                }
            }
            UdpAction::Send { flow, data } => {
                if let Some((socket, target, _)) = self.flows.get(&flow) {
                    send(socket, &data, *target);
                }
            }
            UdpAction::SendTo { listener, to, data } => {
                if let Some((socket, _)) = self.udp_listeners.get(&listener) {
                    send(socket, &data, to);
                }
            }
            UdpAction::Close { flow } => {
                tracing::debug!(%flow, "UDP flow closed");
                self.flows.remove(&flow);
            }
        }
    }

    fn action(&mut self, action: Action) {
        match action {
            Action::Connect { conn, target } => {
                tracing::debug!(%conn, %target, "connecting");
                local::spawn_connect::<R>(conn, target, self.to_loop.clone());
                // A placeholder until connected, so a Close before then is noticed.
                self.conns.insert(conn, ConnEntry::Connecting);
            }
            Action::Read { conn } => self.with(conn, |c| c.read()),
            Action::Write { conn, data } => self.with(conn, |c| c.write(data)),
            Action::Shutdown { conn } => self.with(conn, |c| c.shutdown()),
            Action::Close {
                conn,
                abort,
                reason,
            } => {
                crate::log_close(conn, reason.as_deref());
                let done = match self.conns.get_mut(&conn) {
                    Some(ConnEntry::Open(open)) => open.conn.close(abort),
                    Some(ConnEntry::Connecting) => true,
                    None => false,
                };
                if done {
                    self.conns.remove(&conn);
                } else {
                    // Closed after its queued writes, when driven.
                    self.dirty.insert(conn);
                }
            }
        }
    }

    /// Has an open connection's state take `f` and marks it to be driven.
    fn with(
        &mut self,
        conn: ConnId,
        f: impl FnOnce(&mut crate::local_conn::Conn<local::Socket<R>>),
    ) {
        if let Some(ConnEntry::Open(open)) = self.conns.get_mut(&conn) {
            f(&mut open.conn);
            self.dirty.insert(conn);
        }
    }
}
