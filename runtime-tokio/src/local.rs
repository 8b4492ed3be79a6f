//! Local sockets on an async [`Runtime`]: an accept task per listener, a connect task per
//! outgoing connection, and per connection two tasks that wait for its readiness; the loop
//! reads and writes the sockets itself ([`crate::local_conn`]). The tasks decide nothing;
//! they report back to the driver as [`Local`] messages.

use std::io;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, unbounded};
use std::net::SocketAddr;
use std::sync::Arc;

use burrow_core::forward::udp::{FlowId, UdpListenerId};
use burrow_core::forward::{ConnId, ListenerId, Origin};
use bytes::{Bytes, BytesMut};

use crate::local_conn::{Conn, LocalSocket};
use crate::runtime::{Direction, Runtime};

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
    /// A UDP socket the node asked for ([`burrow_core::node::Output::ListenUdp`]) was bound
    /// at this address, or could not be.
    UdpListening(UdpListenerId, io::Result<SocketAddr>),
    Connected(ConnId, R::Stream),
    ConnectFailed(ConnId, io::Error),
    /// A connection's socket may be ready in this direction.
    Ready(ConnId, Direction),
    /// Waiting for a connection's readiness failed.
    Failed(ConnId, io::Error),
}

/// A connection's socket, as [`LocalSocket`] over a [`Runtime`].
pub(crate) struct Socket<R: Runtime>(Arc<R::Stream>);

impl<R: Runtime> LocalSocket for Socket<R> {
    fn read_into(&self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
        R::stream_try_read(&self.0, buf, max)
    }
    fn write(&self, data: &[u8]) -> io::Result<usize> {
        R::stream_try_write(&self.0, data)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        R::stream_shutdown(&self.0)
    }
    fn set_reset(&self) {
        R::stream_set_reset(&self.0);
    }
}

/// One open connection of the loop: its bytes (moved by the loop itself, without waiting)
/// and two small tasks that wait for its socket's readiness when the loop needs it.
pub(crate) struct OpenConn<R: Runtime> {
    pub(crate) conn: Conn<Socket<R>>,
    wait_read: Sender<()>,
    wait_write: Sender<()>,
    waiting_read: bool,
    waiting_write: bool,
    _waiters: [R::Task; 2],
}

impl<R: Runtime> Drop for OpenConn<R> {
    fn drop(&mut self) {
        // A connection the forwarder did not close cleanly ends in a reset, also when the
        // loop stops with it open (a process that exits must not end it with a clean FIN).
        if !self.conn.is_clean() {
            self.conn.socket().set_reset();
        }
    }
}

impl<R: Runtime> OpenConn<R> {
    /// Takes a connected socket and starts its waiters.
    pub(crate) fn new(id: ConnId, stream: R::Stream, to_loop: &Sender<Local<R>>) -> Self {
        let stream = Arc::new(stream);
        let (wait_read, read_rx) = unbounded();
        let (wait_write, write_rx) = unbounded();
        let waiter = |direction, wants| {
            R::spawn(wait_ready::<R>(
                id,
                stream.clone(),
                direction,
                wants,
                to_loop.clone(),
            ))
        };
        let waiters = [
            waiter(Direction::Read, read_rx),
            waiter(Direction::Write, write_rx),
        ];
        Self {
            conn: Conn::new(Socket(stream)),
            wait_read,
            wait_write,
            waiting_read: false,
            waiting_write: false,
            _waiters: waiters,
        }
    }

    /// The runtime says the socket may be ready in `direction`.
    pub(crate) fn ready(&mut self, direction: Direction) {
        match direction {
            Direction::Read => {
                self.waiting_read = false;
                self.conn.ready(true, false);
            }
            Direction::Write => {
                self.waiting_write = false;
                self.conn.ready(false, true);
            }
        }
    }

    /// Has the waiters wait for what the connection needs and is not yet waiting for.
    pub(crate) fn wait(&mut self) {
        if self.conn.wants_readable() && !self.waiting_read {
            self.waiting_read = self.wait_read.try_send(()).is_ok();
        }
        if self.conn.wants_writable() && !self.waiting_write {
            self.waiting_write = self.wait_write.try_send(()).is_ok();
        }
    }
}

/// Waits for the socket's readiness in `direction` each time the loop asks, and says so.
async fn wait_ready<R: Runtime>(
    id: ConnId,
    stream: Arc<R::Stream>,
    direction: Direction,
    wants: Receiver<()>,
    to_loop: Sender<Local<R>>,
) {
    while wants.recv().await.is_ok() {
        let msg = match R::stream_ready(&stream, direction).await {
            Ok(()) => Local::Ready(id, direction),
            Err(e) => Local::Failed(id, e),
        };
        if to_loop.send(msg).await.is_err() {
            return;
        }
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
