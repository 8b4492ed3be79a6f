//! # burrow-smol: burrow's driver on smol / async-io
//!
//! The async driver of burrow-tokio (built without tokio) over a [`Runtime`] shim for smol: the
//! node's loop is one future on its own thread (`smol::block_on`); local connections have
//! two small tasks on smol's executor that wait for their readiness (the loop reads and
//! writes them itself); UDP goes through the same batching socket
//! (GSO/GRO) with async-io's readiness. There is no protocol logic here. The handle's methods
//! are futures that run on any executor (or `smol::block_on`).
//!
//! ```no_run
//! # fn run(config: burrow_core::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use burrow_smol::{Node, NodeConfig};
//! smol::block_on(async {
//!     let node = Node::spawn(NodeConfig::new(config, "0.0.0.0:0".parse()?))?;
//!     println!("UDP on {}", node.udp_addr());
//!     let status = node.status().await?;
//!     node.shutdown().await;
//!     Ok(())
//! })
//! # }
//! ```

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use burrow_tokio::local_conn::recv_into;
use burrow_tokio::{Direction, Runtime};
use smol::net::TcpStream;
use smol::net::unix::UnixStream;
use smol::{Async, Timer};
use socket2::SockRef;
use std::io::Write;
use std::sync::Arc;

pub use burrow_tokio::{
    ConnInfo, NodeConfig, NodeControl, NodeHandle, PeerInfo, ServiceInfo, StartError, Status,
    Stopped,
};

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Binds the UDP socket and the listeners, exposes the services, and starts the node's
    /// thread. Needs no executor of the caller's.
    pub fn spawn(config: NodeConfig) -> Result<NodeHandle, StartError> {
        burrow_tokio::start::<Smol>(config, |run| {
            std::thread::Builder::new()
                .name("burrow-smol".into())
                .spawn(move || smol::block_on(run))
                .map(drop)
        })
    }
}

/// smol: async-io's reactor and timers, smol's executor for socket tasks.
#[derive(Debug)]
pub struct Smol;

/// A connected local socket, registered with async-io.
#[derive(Clone, Debug)]
pub enum Stream {
    /// TCP.
    Tcp(Arc<Async<std::net::TcpStream>>),
    /// A unix socket.
    Unix(Arc<Async<std::os::unix::net::UnixStream>>),
}

impl Runtime for Smol {
    type Udp = Async<std::net::UdpSocket>;
    type Listener = Async<std::net::TcpListener>;
    type Stream = Stream;
    type Task = smol::Task<()>;

    fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Self::Task {
        smol::spawn(future)
    }

    fn detach(task: Self::Task) {
        task.detach();
    }

    async fn cancel(task: Self::Task) {
        // async-task drops a cancelled task's future before `cancel` completes.
        task.cancel().await;
    }

    async fn sleep_until(at: Instant) {
        Timer::at(at).await;
    }

    fn wrap_udp(socket: std::net::UdpSocket) -> io::Result<Self::Udp> {
        Async::new(socket)
    }

    async fn udp_ready(udp: &Self::Udp, direction: Direction) -> io::Result<()> {
        match direction {
            Direction::Read => udp.readable().await,
            Direction::Write => udp.writable().await,
        }
    }

    fn udp_try_io<T>(
        _: &Self::Udp,
        _: Direction,
        op: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        // async-io re-arms its interest on every wait: there is no readiness to clear.
        op()
    }

    fn udp_try_recv_from(udp: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        udp.get_ref().recv_from(buf)
    }

    fn udp_try_send_to(udp: &Self::Udp, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        udp.get_ref().send_to(data, to)
    }

    fn local_addr(stream: &Stream) -> Option<SocketAddr> {
        match stream {
            Stream::Tcp(s) => s.get_ref().local_addr().ok(),
            Stream::Unix(_) => None,
        }
    }

    fn wrap_listener(listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        Async::new(listener)
    }

    async fn accept(listener: &Self::Listener) -> io::Result<(Stream, SocketAddr)> {
        let (stream, from) = listener.accept().await?;
        let _ = stream.get_ref().set_nodelay(true);
        Ok((Stream::Tcp(Arc::new(stream)), from))
    }

    async fn connect(target: String) -> io::Result<Stream> {
        match target.strip_prefix("unix:") {
            Some(path) => UnixStream::connect(path)
                .await
                .map(|s| Stream::Unix(s.into())),
            None => {
                // Host names are resolved on smol's blocking pool, not on the loop.
                let stream = TcpStream::connect(target.as_str()).await?;
                let _ = stream.set_nodelay(true);
                Ok(Stream::Tcp(stream.into()))
            }
        }
    }

    fn poll_stream_ready(
        stream: &Stream,
        direction: Direction,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        match (stream, direction) {
            (Stream::Tcp(s), Direction::Read) => s.poll_readable(cx),
            (Stream::Tcp(s), Direction::Write) => s.poll_writable(cx),
            (Stream::Unix(s), Direction::Read) => s.poll_readable(cx),
            (Stream::Unix(s), Direction::Write) => s.poll_writable(cx),
        }
    }

    fn stream_try_read(
        stream: &Stream,
        buf: &mut bytes::BytesMut,
        max: usize,
    ) -> io::Result<usize> {
        match stream {
            Stream::Tcp(s) => recv_into(SockRef::from(s.as_ref()), buf, max),
            Stream::Unix(s) => recv_into(SockRef::from(s.as_ref()), buf, max),
        }
    }

    fn stream_try_write(stream: &Stream, data: &[u8]) -> io::Result<usize> {
        match stream {
            Stream::Tcp(s) => s.get_ref().write(data),
            Stream::Unix(s) => s.get_ref().write(data),
        }
    }

    fn stream_shutdown(stream: &Stream) -> io::Result<()> {
        match stream {
            Stream::Tcp(s) => s.get_ref().shutdown(Shutdown::Write),
            Stream::Unix(s) => s.get_ref().shutdown(Shutdown::Write),
        }
    }

    fn stream_set_reset(stream: &Stream) {
        if let Stream::Tcp(s) = stream {
            let _ = SockRef::from(s.as_ref()).set_linger(Some(Duration::ZERO));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burrow_core::Transmit;
    use burrow_tokio::udp::Udp;
    use std::net::UdpSocket;

    /// What a cancelled task held is gone once `cancel` returns, though the executor's thread
    /// drops it, slowly.
    #[test]
    fn cancel_returns_once_the_task_has_dropped_what_it_held() {
        let (held, gone) = std::sync::mpsc::channel::<()>();
        let held = slow_to_drop(held);
        let task = Smol::spawn(async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        smol::block_on(Smol::cancel(task));
        assert_eq!(
            gone.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Disconnected)
        );
    }

    /// Holds `sender` and takes 50 ms to let it go.
    fn slow_to_drop(sender: std::sync::mpsc::Sender<()>) -> impl Drop + Send {
        struct Slow(#[allow(dead_code)] std::sync::mpsc::Sender<()>);
        impl Drop for Slow {
            fn drop(&mut self) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Slow(sender)
    }

    /// The node's UDP socket on async-io: batching on (where Linux has it), and a TTL that
    /// applies to one datagram, with the socket's own TTL back afterwards.
    #[test]
    fn udp_batches_and_applies_a_ttl_to_one_datagram() {
        smol::block_on(async {
            let a = Async::<UdpSocket>::bind(([127, 0, 0, 1], 0)).unwrap();
            let b = Async::<UdpSocket>::bind(([127, 0, 0, 1], 0)).unwrap();
            let default = SockRef::from(a.get_ref()).ttl_v4().unwrap();
            let mut udp = Udp::new(&a).unwrap();
            if cfg!(target_os = "linux") {
                assert_eq!(udp.batches(), (true, true), "GSO and GRO");
            }
            let t = Transmit {
                segment_size: None,
                dst: b.get_ref().local_addr().unwrap(),
                ttl: Some(3),
                payload: bytes::Bytes::from_static(b"probe"),
            };
            Smol::udp_ready(&a, Direction::Write).await.unwrap();
            let sent = Smol::udp_try_io(&a, Direction::Write, || udp.send(&a, &[t]));
            assert_eq!(sent.unwrap(), 1);
            let mut buf = [0u8; 16];
            let (n, from) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"probe");
            assert_eq!(from, a.get_ref().local_addr().unwrap());
            assert_eq!(SockRef::from(a.get_ref()).ttl_v4().unwrap(), default);
            assert_ne!(
                default, 3,
                "the test needs a default TTL other than the probe's"
            );
        });
    }
}
