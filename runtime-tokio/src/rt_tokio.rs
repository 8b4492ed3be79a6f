//! The [`Runtime`] shim for tokio.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixStream, tcp, unix};
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

/// The read half of a [`Stream`].
#[derive(Debug)]
pub enum Reader {
    /// TCP.
    Tcp(tcp::OwnedReadHalf),
    /// A unix socket.
    Unix(unix::OwnedReadHalf),
}

/// The write half of a [`Stream`].
#[derive(Debug)]
pub enum Writer {
    /// TCP.
    Tcp(tcp::OwnedWriteHalf),
    /// A unix socket.
    Unix(unix::OwnedWriteHalf),
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
    type Reader = Reader;
    type Writer = Writer;
    type Task = Task;

    fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Task {
        Task(Some(tokio::spawn(future)))
    }

    fn detach(mut task: Task) {
        task.0 = None;
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

    fn split(stream: Stream) -> (Reader, Writer) {
        match stream {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (Reader::Tcp(r), Writer::Tcp(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                (Reader::Unix(r), Writer::Unix(w))
            }
        }
    }

    async fn read(reader: &mut Reader, buf: &mut bytes::BytesMut, max: usize) -> io::Result<usize> {
        // Into the buffer's spare room, never zeroed first.
        let mut room = bytes::BufMut::limit(buf, max);
        match reader {
            Reader::Tcp(r) => r.read_buf(&mut room).await,
            Reader::Unix(r) => r.read_buf(&mut room).await,
        }
    }

    async fn write_all(writer: &mut Writer, data: &[u8]) -> io::Result<()> {
        match writer {
            Writer::Tcp(w) => w.write_all(data).await,
            Writer::Unix(w) => w.write_all(data).await,
        }
    }

    async fn shutdown(writer: &mut Writer) -> io::Result<()> {
        match writer {
            Writer::Tcp(w) => w.shutdown().await,
            Writer::Unix(w) => w.shutdown().await,
        }
    }

    fn reset(writer: Writer) {
        if let Writer::Tcp(w) = writer {
            let _ = SockRef::from(w.as_ref()).set_linger(Some(Duration::ZERO));
            // Not dropped: dropping a write half sends a FIN first.
            w.forget();
        }
    }

    fn reset_handle(stream: &Stream) -> Option<socket2::Socket> {
        match stream {
            Stream::Tcp(s) => SockRef::from(s).try_clone().ok(),
            Stream::Unix(_) => None,
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
}
