//! The [`Runtime`] shim for tokio.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixStream};
use tokio::task::JoinHandle;

use crate::runtime::{Direction, Runtime};

/// tokio: the node's loop and its socket tasks on the current tokio runtime.
#[derive(Debug)]
pub struct Tokio;

/// A tokio task that is aborted when dropped (unless detached).
#[derive(Debug)]
pub struct Task(Option<JoinHandle<()>>);

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// A connected local socket.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A unix socket.
    Unix(UnixStream),
}

fn interest(direction: Direction) -> Interest {
    match direction {
        Direction::Read => Interest::READABLE,
        Direction::Write => Interest::WRITABLE,
    }
}

impl Runtime for Tokio {
    type Udp = UdpSocket;
    type Listener = TcpListener;
    type Stream = Stream;
    type Task = Task;

    fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Task {
        Task(Some(tokio::spawn(future)))
    }

    fn detach(mut task: Task) {
        task.0 = None;
    }

    async fn cancel(mut task: Task) {
        if let Some(handle) = task.0.take() {
            handle.abort();
            // tokio drops a cancelled task's future before its handle completes.
            let _ = handle.await;
        }
    }

    async fn sleep_until(at: Instant) {
        tokio::time::sleep_until(at.into()).await;
    }

    fn wrap_udp(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        UdpSocket::from_std(socket)
    }

    async fn udp_ready(udp: &UdpSocket, direction: Direction) -> io::Result<()> {
        udp.ready(interest(direction)).await.map(drop)
    }

    fn udp_try_io<T>(
        udp: &UdpSocket,
        direction: Direction,
        op: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        udp.try_io(interest(direction), op)
    }

    fn udp_try_recv_from(udp: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        udp.try_recv_from(buf)
    }

    fn udp_try_send_to(udp: &UdpSocket, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        // Straight to the socket: tokio's `try_send_to` says `WouldBlock` until the reactor
        // has seen the socket writable, which drops a new flow's first datagram.
        SockRef::from(udp).send_to(data, &to.into())
    }

    fn local_addr(stream: &Stream) -> Option<SocketAddr> {
        match stream {
            Stream::Tcp(s) => s.local_addr().ok(),
            Stream::Unix(_) => None,
        }
    }

    fn wrap_listener(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        TcpListener::from_std(listener)
    }

    async fn accept(listener: &TcpListener) -> io::Result<(Stream, SocketAddr)> {
        let (stream, from) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((Stream::Tcp(stream), from))
    }

    async fn connect(target: String) -> io::Result<Stream> {
        match target.strip_prefix("unix:") {
            Some(path) => UnixStream::connect(path).await.map(Stream::Unix),
            None => {
                let stream = TcpStream::connect(target.as_str()).await?;
                let _ = stream.set_nodelay(true);
                Ok(Stream::Tcp(stream))
            }
        }
    }

    fn poll_stream_ready(
        stream: &Stream,
        direction: Direction,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        match (stream, direction) {
            (Stream::Tcp(s), Direction::Read) => s.poll_read_ready(cx),
            (Stream::Tcp(s), Direction::Write) => s.poll_write_ready(cx),
            (Stream::Unix(s), Direction::Read) => s.poll_read_ready(cx),
            (Stream::Unix(s), Direction::Write) => s.poll_write_ready(cx),
        }
    }

    fn stream_try_read(
        stream: &Stream,
        buf: &mut bytes::BytesMut,
        max: usize,
    ) -> io::Result<usize> {
        // Into the buffer's spare room, never zeroed first.
        let mut room = bytes::BufMut::limit(buf, max);
        match stream {
            Stream::Tcp(s) => s.try_read_buf(&mut room),
            Stream::Unix(s) => s.try_read_buf(&mut room),
        }
    }

    fn stream_try_write(stream: &Stream, data: &[u8]) -> io::Result<usize> {
        match stream {
            Stream::Tcp(s) => s.try_write(data),
            Stream::Unix(s) => s.try_write(data),
        }
    }

    fn stream_shutdown(stream: &Stream) -> io::Result<()> {
        match stream {
            Stream::Tcp(s) => SockRef::from(s).shutdown(Shutdown::Write),
            Stream::Unix(s) => SockRef::from(s).shutdown(Shutdown::Write),
        }
    }

    fn stream_set_reset(stream: &Stream) {
        if let Stream::Tcp(s) = stream {
            let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udp::Udp;
    use burrow_core::Transmit;

    /// The node's UDP socket on tokio: batching on (where Linux has it), and a TTL that applies
    /// to one datagram, with the socket's own TTL back afterwards.
    #[tokio::test]
    async fn udp_batches_and_applies_a_ttl_to_one_datagram() {
        let bind = || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_nonblocking(true).unwrap();
            Tokio::wrap_udp(socket)
        };
        let (a, b) = (bind().unwrap(), bind().unwrap());
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
        Tokio::udp_ready(&a, Direction::Write).await.unwrap();
        let sent = Tokio::udp_try_io(&a, Direction::Write, || udp.send(&a, &[t]));
        assert_eq!(sent.unwrap(), 1);
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"probe");
        assert_eq!(from, a.local_addr().unwrap());
        assert_eq!(SockRef::from(&a).ttl_v4().unwrap(), default);
        assert_ne!(
            default, 3,
            "the test needs a default TTL other than the probe's"
        );
    }

    /// What a cancelled task held is gone once `cancel` returns (a reload answers "removed"
    /// only then), even when dropping it is slow and happens on another worker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_returns_once_the_task_has_dropped_what_it_held() {
        struct SlowDrop(#[allow(dead_code)] std::sync::mpsc::Sender<()>);
        impl Drop for SlowDrop {
            fn drop(&mut self) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let (held, gone) = std::sync::mpsc::channel();
        let held = SlowDrop(held);
        let task = Tokio::spawn(async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        tokio::task::yield_now().await;
        Tokio::cancel(task).await;
        assert_eq!(
            gone.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Disconnected)
        );
    }
}
