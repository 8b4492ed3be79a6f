//! Local sockets: TCP listeners, outgoing connects to TCP or unix-socket targets, and one
//! reader and one writer task per connection. The tasks only move bytes; every decision is the forwarder's, and they report
//! back to the event loop as [`Local`] messages.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use burrow_core::forward::{ConnId, ListenerId};
use bytes::Bytes;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

/// What local sockets report to the event loop.
#[derive(Debug)]
pub(crate) enum Local {
    Accepted(ListenerId, TcpStream),
    Connected(ConnId, LocalStream),
    ConnectFailed(ConnId, io::Error),
    Read(ConnId, Bytes),
    Eof(ConnId),
    Written(ConnId, usize),
    Failed(ConnId, io::Error),
}

/// A connected local socket.
#[derive(Debug)]
pub(crate) enum LocalStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// What the writer task of a connection is told.
enum WriteCmd {
    Data(Bytes),
    Shutdown,
    Close { abort: bool },
}

/// The event loop's handle on one connection's tasks. Dropping it ends them.
pub(crate) struct ConnTasks {
    reads: UnboundedSender<()>,
    writes: UnboundedSender<WriteCmd>,
}

impl ConnTasks {
    /// A handle for a connection still connecting: it has no tasks yet.
    pub(crate) fn placeholder() -> Self {
        let (reads, _) = unbounded_channel();
        let (writes, _) = unbounded_channel();
        Self { reads, writes }
    }

    /// Lets the reader read once.
    pub(crate) fn read(&self) {
        let _ = self.reads.send(());
    }

    pub(crate) fn write(&self, data: Bytes) {
        let _ = self.writes.send(WriteCmd::Data(data));
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.writes.send(WriteCmd::Shutdown);
    }

    /// Closes the connection after the queued writes (or at once with a reset if `abort`).
    pub(crate) fn close(self, abort: bool) {
        let _ = self.writes.send(WriteCmd::Close { abort });
    }
}

/// Binds a listener non-blocking and registers it with the current runtime.
pub(crate) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Accepts connections forever, handing each to the event loop. Transient errors (too many
/// open files, a connection reset before accept) are logged and retried after a pause.
pub(crate) fn spawn_accept(
    id: ListenerId,
    listener: TcpListener,
    to_loop: UnboundedSender<Local>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, from)) => {
                    tracing::debug!(%from, listener = %id, "accepted");
                    if to_loop.send(Local::Accepted(id, stream)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(listener = %id, error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// Connects `conn` to `target` (`host:port`, or `unix:PATH` for a unix socket) and reports
/// the outcome.
pub(crate) fn spawn_connect(conn: ConnId, target: String, to_loop: UnboundedSender<Local>) {
    tokio::spawn(async move {
        let connected = match target.strip_prefix("unix:") {
            Some(path) => UnixStream::connect(path).await.map(LocalStream::Unix),
            None => TcpStream::connect(target.as_str())
                .await
                .map(LocalStream::Tcp),
        };
        let msg = match connected {
            Ok(stream) => Local::Connected(conn, stream),
            Err(e) => Local::ConnectFailed(conn, e),
        };
        let _ = to_loop.send(msg);
    });
}

/// Starts the reader and writer tasks of a connected socket.
pub(crate) fn start(
    conn: ConnId,
    stream: LocalStream,
    to_loop: &UnboundedSender<Local>,
    chunk: usize,
) -> ConnTasks {
    let (reads, read_rx) = unbounded_channel();
    let (writes, write_rx) = unbounded_channel();
    match stream {
        LocalStream::Tcp(stream) => {
            let _ = stream.set_nodelay(true);
            let (rd, wr) = stream.into_split();
            let reader = tokio::spawn(read_task(conn, rd, read_rx, to_loop.clone(), chunk));
            tokio::spawn(write_task(
                conn,
                wr,
                write_rx,
                reader,
                reset_tcp,
                to_loop.clone(),
            ));
        }
        LocalStream::Unix(stream) => {
            let (rd, wr) = stream.into_split();
            let reader = tokio::spawn(read_task(conn, rd, read_rx, to_loop.clone(), chunk));
            tokio::spawn(write_task(
                conn,
                wr,
                write_rx,
                reader,
                drop,
                to_loop.clone(),
            ));
        }
    }
    ConnTasks { reads, writes }
}

/// Drops a TCP socket with a reset, which tells the local application the connection
/// failed, as TCP would. (A unix socket has no reset: it is just dropped.)
fn reset_tcp(wr: OwnedWriteHalf) {
    let _ = SockRef::from(wr.as_ref()).set_linger(Some(Duration::ZERO));
    wr.forget();
}

/// Reads once per credit; ends at end of file, on an error, or when the credits stop.
async fn read_task<R: AsyncRead + Unpin>(
    conn: ConnId,
    mut rd: R,
    mut credits: UnboundedReceiver<()>,
    to_loop: UnboundedSender<Local>,
    chunk: usize,
) {
    let mut buf = vec![0u8; chunk];
    while credits.recv().await.is_some() {
        let (msg, end) = match rd.read(&mut buf).await {
            Ok(0) => (Local::Eof(conn), true),
            Ok(n) => (Local::Read(conn, Bytes::copy_from_slice(&buf[..n])), false),
            Err(e) => (Local::Failed(conn, e), true),
        };
        if to_loop.send(msg).is_err() || end {
            return;
        }
    }
}

/// Writes in order; reports each write; shuts down or closes when told. Ends the reader when
/// the connection closes.
async fn write_task<W: AsyncWrite + Unpin>(
    conn: ConnId,
    mut wr: W,
    mut cmds: UnboundedReceiver<WriteCmd>,
    reader: JoinHandle<()>,
    reset: fn(W),
    to_loop: UnboundedSender<Local>,
) {
    let mut abort = true;
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            WriteCmd::Data(data) => {
                if let Err(e) = wr.write_all(&data).await {
                    let _ = to_loop.send(Local::Failed(conn, e));
                    break;
                }
                let _ = to_loop.send(Local::Written(conn, data.len()));
            }
            WriteCmd::Shutdown => {
                if let Err(e) = wr.shutdown().await {
                    let _ = to_loop.send(Local::Failed(conn, e));
                    break;
                }
            }
            WriteCmd::Close { abort: a } => {
                abort = a;
                break;
            }
        }
    }
    reader.abort();
    if abort {
        reset(wr);
    }
}
