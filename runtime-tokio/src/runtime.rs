//! What the async driver needs from an async runtime (quinn's model: one driver over a small
//! trait; each runtime's side is a shim of plain calls). Everything is a static function: a
//! runtime is a type, not a value.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::task::{Context, Poll};
use std::time::Instant;

/// Which readiness of the UDP socket to wait for or to clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Readable.
    Read,
    /// Writable.
    Write,
}

/// An async runtime: tasks, a timer, the UDP socket's readiness, and local TCP or unix
/// sockets. The driver does the rest.
pub trait Runtime: Send + Sync + 'static {
    /// The UDP socket, registered with the runtime's reactor.
    type Udp: AsFd + Send + Sync + 'static;
    /// A listening TCP socket.
    type Listener: AsFd + Send + 'static;
    /// A connected local socket (TCP or unix), which the loop reads and writes without
    /// waiting, polling its readiness when it must wait.
    type Stream: Send + Sync + 'static;
    /// A spawned task; dropping it cancels the task.
    type Task: Send + 'static;

    /// Spawns `future` on the runtime.
    fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Self::Task;
    /// Lets `task` run to its end on its own.
    fn detach(task: Self::Task);
    /// Cancels `task`; completes once its future has been dropped, and with it what it held
    /// (a listener's socket is closed then, where dropping the task only asks for that).
    fn cancel(task: Self::Task) -> impl Future<Output = ()> + Send;
    /// Completes at `at`.
    fn sleep_until(at: Instant) -> impl Future<Output = ()> + Send;

    /// Registers a bound, non-blocking UDP socket.
    fn wrap_udp(socket: std::net::UdpSocket) -> io::Result<Self::Udp>;
    /// Completes once the socket may be ready in `direction`.
    fn udp_ready(
        udp: &Self::Udp,
        direction: Direction,
    ) -> impl Future<Output = io::Result<()>> + Send;
    /// Runs one non-blocking operation on the socket; a `WouldBlock` from `op` clears the
    /// readiness it waited for, so the next [`Self::udp_ready`] waits for a new one.
    fn udp_try_io<T>(
        udp: &Self::Udp,
        direction: Direction,
        op: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T>;

    /// Receives one datagram from a UDP socket of a forwarded service (not the node's own)
    /// without waiting: `WouldBlock` when there is none, which clears the readiness.
    fn udp_try_recv_from(udp: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    /// Sends one datagram on such a socket without waiting (`WouldBlock`: dropped, as UDP
    /// may).
    fn udp_try_send_to(udp: &Self::Udp, data: &[u8], to: SocketAddr) -> io::Result<usize>;

    /// Registers a bound, non-blocking TCP listener.
    fn wrap_listener(listener: std::net::TcpListener) -> io::Result<Self::Listener>;
    /// Accepts one connection: the socket and the client's address.
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The local address of an accepted connection, if it has one (TCP).
    fn local_addr(stream: &Self::Stream) -> Option<SocketAddr>;
    /// Connects to `target`: `host:port` (resolved without blocking the runtime), or
    /// `unix:PATH` for a unix socket. TCP connections get `TCP_NODELAY`.
    fn connect(target: String) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Whether the stream may be ready in `direction` (or has failed or closed, which the
    /// next operation reports). When not, `cx`'s waker is woken once it may be; only the
    /// waker of the last call in each direction is kept.
    fn poll_stream_ready(
        stream: &Self::Stream,
        direction: Direction,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>>;
    /// Reads once without waiting, appending at most `max` bytes to `buf` (which has room for
    /// them): the chunk is then split off and handed on without another copy. `WouldBlock`
    /// clears the readiness, so the next [`Self::poll_stream_ready`] waits for a new one.
    fn stream_try_read(
        stream: &Self::Stream,
        buf: &mut bytes::BytesMut,
        max: usize,
    ) -> io::Result<usize>;
    /// Writes what the socket takes now; `WouldBlock` as for reads.
    fn stream_try_write(stream: &Self::Stream, data: &[u8]) -> io::Result<usize>;
    /// Shuts down the write direction (a FIN) after what was written.
    fn stream_shutdown(stream: &Self::Stream) -> io::Result<()>;
    /// Makes a TCP connection end in a reset when it is closed (SO_LINGER 0), which tells
    /// the local application it failed; a unix socket has no reset.
    fn stream_set_reset(stream: &Self::Stream);
}
