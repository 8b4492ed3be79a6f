//! Local sockets on an async [`Runtime`]: an accept task per listener and a connect task per
//! outgoing connection, which decide nothing and report back to the driver as [`Local`]
//! messages; the loop reads and writes connected sockets itself ([`crate::local_conn`]),
//! told of their readiness through [`crate::ready`].

use std::io;
use std::time::{Duration, Instant};

use async_channel::Sender;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use burrow_core::forward::udp::{FlowId, UdpListenerId};
use burrow_core::forward::{ConnId, ListenerId, Origin};
use bytes::{Bytes, BytesMut};

use crate::local_conn::{Conn, LocalSocket};
use crate::ready::Woken;
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
}

/// A connection's socket, as [`LocalSocket`] over a [`Runtime`].
pub(crate) struct Socket<R: Runtime>(R::Stream);

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

/// One open connection of the loop: its bytes, moved by the loop itself without waiting,
/// and a waker per direction that the reactor wakes when the loop waits for the socket.
pub(crate) struct OpenConn<R: Runtime> {
    pub(crate) conn: Conn<Socket<R>>,
    /// Read, then write.
    wakers: [Waker; 2],
    /// The reactor holds that direction's waker.
    waiting: [bool; 2],
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
    /// Takes a connected socket; its readiness will be reported to `woken`.
    pub(crate) fn new(id: ConnId, stream: R::Stream, woken: &Arc<Woken>) -> Self {
        Self {
            conn: Conn::new(Socket(stream)),
            wakers: [
                woken.waker(id, Direction::Read),
                woken.waker(id, Direction::Write),
            ],
            waiting: [false; 2],
        }
    }

    /// The reactor says the socket may be ready in `direction`.
    pub(crate) fn ready(&mut self, direction: Direction) {
        let read = direction == Direction::Read;
        self.waiting[usize::from(!read)] = false;
        self.conn.ready(read, !read);
    }

    /// Has the reactor watch for what the connection needs and is not yet watched for.
    /// A socket that is ready already is noted as woken: the loop takes it up on its next
    /// turn, after the other sources it polls (reading it again at once made smaller reads
    /// and cost throughput). Returns the error that waiting met.
    pub(crate) fn wait(&mut self) -> io::Result<()> {
        for (i, direction) in [Direction::Read, Direction::Write].into_iter().enumerate() {
            let wants = match direction {
                Direction::Read => self.conn.wants_readable(),
                Direction::Write => self.conn.wants_writable(),
            };
            if !wants || self.waiting[i] {
                continue;
            }
            let mut cx = Context::from_waker(&self.wakers[i]);
            match R::poll_stream_ready(&self.conn.socket().0, direction, &mut cx) {
                Poll::Ready(Ok(())) => self.wakers[i].wake_by_ref(),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
            self.waiting[i] = true;
        }
        Ok(())
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
