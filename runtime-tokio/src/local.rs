//! Local sockets on an async [`Runtime`]: an accept task per listener, a connect task per
//! outgoing connection, and one reader and one writer task per connection. The tasks only
//! move bytes; every decision is the node's, and they report back to the driver as [`Local`]
//! messages.

use std::io;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, unbounded};
use std::net::SocketAddr;
use std::sync::Arc;

use burrow_core::forward::udp::{FlowId, UdpListenerId};
use burrow_core::forward::{ConnId, ListenerId, Origin};
use bytes::{Bytes, BytesMut};

use crate::runtime::Runtime;

/// How long a listener pauses after a failed accept (too many open files, a connection reset
/// before accept) before it tries again.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// What local sockets report to the driver.
pub(crate) enum Local<R: Runtime> {
    Accepted(ListenerId, R::Stream, Option<Origin>),
    /// A UDP listener socket received a datagram from a local client.
    UdpRecv(UdpListenerId, SocketAddr, Bytes),
    /// A flow's socket received a datagram from its service.
    FlowRecv(FlowId, Bytes),
    /// A flow's socket could not be opened, or failed.
    FlowFailed(FlowId, io::Error),
    /// The host name of a flow's target was looked up.
    FlowResolved(FlowId, Result<SocketAddr, String>),
    /// A listener the node asked for ([`burrow_core::node::Output::Listen`]) was bound at
    /// this address, or could not be.
    Listening(ListenerId, io::Result<SocketAddr>),
    Connected(ConnId, R::Stream),
    ConnectFailed(ConnId, io::Error),
    Read(ConnId, Bytes),
    Eof(ConnId),
    Written(ConnId, usize),
    Failed(ConnId, io::Error),
}

/// What the writer task of a connection is told.
enum WriteCmd {
    Data(Bytes),
    Shutdown,
    Close { abort: bool },
}

/// The driver's handle on one connection's tasks. Dropping it ends them (with a reset).
pub(crate) struct ConnTasks {
    reads: Sender<()>,
    writes: Sender<WriteCmd>,
    /// A TCP connection's second handle ([`Runtime::reset_handle`]): an abort (or dropping
    /// this) sets SO_LINGER 0 through it at once, so the connection ends in a reset even if
    /// the process exits before the writer task runs.
    reset: Option<socket2::Socket>,
}

impl Drop for ConnTasks {
    fn drop(&mut self) {
        if let Some(socket) = self.reset.take() {
            let _ = socket.set_linger(Some(Duration::ZERO));
        }
    }
}

impl ConnTasks {
    /// A handle for a connection still connecting: it has no tasks yet.
    pub(crate) fn placeholder() -> Self {
        let (reads, _) = unbounded();
        let (writes, _) = unbounded();
        Self {
            reads,
            writes,
            reset: None,
        }
    }

    /// Lets the reader read once.
    pub(crate) fn read(&self) {
        let _ = self.reads.try_send(());
    }

    pub(crate) fn write(&self, data: Bytes) {
        let _ = self.writes.try_send(WriteCmd::Data(data));
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.writes.try_send(WriteCmd::Shutdown);
    }

    /// Closes the connection after the queued writes (or at once with a reset if `abort`).
    pub(crate) fn close(mut self, abort: bool) {
        if !abort {
            // A clean close: the writer task ends the connection after the queued writes.
            self.reset = None;
        }
        let _ = self.writes.try_send(WriteCmd::Close { abort });
        // Dropping `self` sets SO_LINGER 0 now when aborting.
    }
}

/// Accepts connections until the driver goes away (or the task is dropped), handing each to
/// it; a failed accept is logged and retried after [`ACCEPT_RETRY`].
pub(crate) async fn accept<R: Runtime>(
    id: ListenerId,
    listener: R::Listener,
    to_loop: Sender<Local<R>>,
) {
    loop {
        match R::accept(&listener).await {
            Ok((stream, from)) => {
                tracing::debug!(%from, listener = %id, "accepted");
                let origin = R::local_addr(&stream).map(|local| Origin {
                    client: from,
                    local,
                });
                if to_loop
                    .send(Local::Accepted(id, stream, origin))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(listener = %id, error = %e, "accept failed; retrying");
                R::sleep_until(Instant::now() + ACCEPT_RETRY).await;
            }
        }
    }
}

/// Connects `conn` to `target` and reports the outcome.
pub(crate) fn spawn_connect<R: Runtime>(conn: ConnId, target: String, to_loop: Sender<Local<R>>) {
    R::detach(R::spawn(async move {
        let msg = match R::connect(target).await {
            Ok(stream) => Local::Connected(conn, stream),
            Err(e) => Local::ConnectFailed(conn, e),
        };
        let _ = to_loop.send(msg).await;
    }));
}

/// Starts the reader and writer tasks of a connected socket.
pub(crate) fn start<R: Runtime>(
    conn: ConnId,
    stream: R::Stream,
    to_loop: &Sender<Local<R>>,
    chunk: usize,
) -> ConnTasks {
    let (reads, read_rx) = unbounded();
    let (writes, write_rx) = unbounded();
    let reset = R::reset_handle(&stream);
    let (rd, wr) = R::split(stream);
    let reader = R::spawn(read_task::<R>(conn, rd, read_rx, to_loop.clone(), chunk));
    R::detach(R::spawn(write_task::<R>(
        conn,
        wr,
        write_rx,
        reader,
        to_loop.clone(),
    )));
    ConnTasks {
        reads,
        writes,
        reset,
    }
}

/// Reads once per credit; ends at end of file, on an error, or when the credits stop.
async fn read_task<R: Runtime>(
    conn: ConnId,
    mut rd: R::Reader,
    credits: Receiver<()>,
    to_loop: Sender<Local<R>>,
    chunk: usize,
) {
    // Each read's chunk is split off and sent on; once the loop has taken its bytes and
    // dropped it, `reserve` finds the memory free again.
    let mut buf = BytesMut::new();
    while credits.recv().await.is_ok() {
        buf.reserve(chunk);
        let (msg, end) = match R::read(&mut rd, &mut buf, chunk).await {
            Ok(0) => (Local::Eof(conn), true),
            Ok(_) => (Local::Read(conn, buf.split().freeze()), false),
            Err(e) => (Local::Failed(conn, e), true),
        };
        if to_loop.send(msg).await.is_err() || end {
            return;
        }
    }
}

/// Writes in order; reports each write; shuts down or closes when told. Ends the reader when
/// the connection closes.
async fn write_task<R: Runtime>(
    conn: ConnId,
    mut wr: R::Writer,
    cmds: Receiver<WriteCmd>,
    reader: R::Task,
    to_loop: Sender<Local<R>>,
) {
    let mut abort = true;
    while let Ok(cmd) = cmds.recv().await {
        match cmd {
            WriteCmd::Data(data) => {
                if let Err(e) = R::write_all(&mut wr, &data).await {
                    let _ = to_loop.send(Local::Failed(conn, e)).await;
                    break;
                }
                let _ = to_loop.send(Local::Written(conn, data.len())).await;
            }
            WriteCmd::Shutdown => {
                if let Err(e) = R::shutdown(&mut wr).await {
                    let _ = to_loop.send(Local::Failed(conn, e)).await;
                    break;
                }
            }
            WriteCmd::Close { abort: a } => {
                abort = a;
                break;
            }
        }
    }
    drop(reader);
    if abort {
        R::reset(wr);
    }
}

/// The largest UDP datagram.
const MAX_UDP: usize = 65_536;

/// Where a UDP socket's datagrams go: a listener's (any local client) or a flow's (its
/// service's answers only).
#[derive(Clone, Copy)]
pub(crate) enum UdpRole {
    Listener(UdpListenerId),
    Flow(FlowId, SocketAddr),
}

/// Reads a forwarded service's UDP socket until the driver goes away (or the task is
/// dropped), reporting each datagram. A flow's socket is not connected (so that sending to
/// its target works everywhere): datagrams from anyone but the target are ignored.
pub(crate) async fn udp_recv<R: Runtime>(
    role: UdpRole,
    socket: Arc<R::Udp>,
    to_loop: Sender<Local<R>>,
) {
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        if let Err(e) = R::udp_ready(&socket, crate::Direction::Read).await {
            if let UdpRole::Flow(flow, _) = role {
                let _ = to_loop.send(Local::FlowFailed(flow, e)).await;
            }
            return;
        }
        loop {
            let (n, from) = match R::udp_try_recv_from(&socket, &mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // An ICMP error from an earlier send, on some systems: not fatal.
                    tracing::debug!(error = %e, "UDP receive failed");
                    break;
                }
            };
            let data = Bytes::copy_from_slice(&buf[..n]);
            let msg = match role {
                UdpRole::Listener(id) => Local::UdpRecv(id, from, data),
                UdpRole::Flow(flow, target) if from == target => Local::FlowRecv(flow, data),
                UdpRole::Flow(..) => continue,
            };
            if to_loop.send(msg).await.is_err() {
                return;
            }
        }
    }
}
