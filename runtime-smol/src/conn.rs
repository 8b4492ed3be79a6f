//! Local sockets: TCP listeners, outgoing connects to TCP or unix-socket targets, and one
//! reader and one writer task per connection. The tasks only move bytes; every decision is
//! the forwarder's, and they report back to the event loop as [`Local`] messages.

use std::net::Shutdown;
use std::time::Duration;

use burrow_core::forward::{ConnId, ListenerId};
use bytes::Bytes;
use smol::Task;
use smol::channel::{Receiver, Sender, unbounded};
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::unix::UnixStream;
use smol::net::{TcpListener, TcpStream};
use socket2::SockRef;

/// What local sockets report to the event loop.
#[derive(Debug)]
pub(crate) enum Local {
    Accepted(ListenerId, TcpStream),
    Connected(ConnId, LocalStream),
    ConnectFailed(ConnId, std::io::Error),
    Read(ConnId, Bytes),
    Eof(ConnId),
    Written(ConnId, usize),
    Failed(ConnId, std::io::Error),
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
    reads: Sender<()>,
    writes: Sender<WriteCmd>,
}

impl ConnTasks {
    /// A handle for a connection still connecting: it has no tasks yet.
    pub(crate) fn placeholder() -> Self {
        let (reads, _) = unbounded();
        let (writes, _) = unbounded();
        Self { reads, writes }
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
    pub(crate) fn close(self, abort: bool) {
        let _ = self.writes.try_send(WriteCmd::Close { abort });
    }
}

/// Accepts connections until the event loop goes away, handing each to it. Transient errors
/// (too many open files, a connection reset before accept) are logged and retried after a
/// pause.
pub(crate) fn spawn_accept(
    id: ListenerId,
    listener: TcpListener,
    to_loop: Sender<Local>,
) -> Task<()> {
    smol::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, from)) => {
                    tracing::debug!(%from, listener = %id, "accepted");
                    if to_loop.send(Local::Accepted(id, stream)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(listener = %id, error = %e, "accept failed; retrying");
                    smol::Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// Connects `conn` to `target` (`host:port`, or `unix:PATH` for a unix socket) and reports
/// the outcome.
pub(crate) fn spawn_connect(conn: ConnId, target: String, to_loop: Sender<Local>) {
    smol::spawn(async move {
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
        let _ = to_loop.send(msg).await;
    })
    .detach();
}

/// Starts the reader and writer tasks of a connected socket.
pub(crate) fn start(
    conn: ConnId,
    stream: LocalStream,
    to_loop: &Sender<Local>,
    chunk: usize,
) -> ConnTasks {
    let (reads, read_rx) = unbounded();
    let (writes, write_rx) = unbounded();
    match stream {
        LocalStream::Tcp(stream) => {
            let _ = stream.set_nodelay(true);
            let reader = smol::spawn(read_task(
                conn,
                stream.clone(),
                read_rx,
                to_loop.clone(),
                chunk,
            ));
            let ends = Ends {
                shutdown: |s: &TcpStream| s.shutdown(Shutdown::Write),
                // A reset tells the local application the connection failed, as TCP would.
                reset: |s: &TcpStream| {
                    let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
                },
            };
            let writer = write_task(conn, stream, write_rx, reader, ends, to_loop.clone());
            smol::spawn(writer).detach();
        }
        LocalStream::Unix(stream) => {
            let reader = smol::spawn(read_task(
                conn,
                stream.clone(),
                read_rx,
                to_loop.clone(),
                chunk,
            ));
            let ends = Ends {
                shutdown: |s: &UnixStream| s.shutdown(Shutdown::Write),
                // A unix socket has no reset: it is just closed.
                reset: |_: &UnixStream| {},
            };
            let writer = write_task(conn, stream, write_rx, reader, ends, to_loop.clone());
            smol::spawn(writer).detach();
        }
    }
    ConnTasks { reads, writes }
}

/// How a socket type half-closes and resets.
struct Ends<S> {
    shutdown: fn(&S) -> std::io::Result<()>,
    reset: fn(&S),
}

/// Reads once per credit; ends at end of file, on an error, or when the credits stop.
async fn read_task<R: AsyncRead + Unpin>(
    conn: ConnId,
    mut rd: R,
    credits: Receiver<()>,
    to_loop: Sender<Local>,
    chunk: usize,
) {
    let mut buf = vec![0u8; chunk];
    while credits.recv().await.is_ok() {
        let (msg, end) = match rd.read(&mut buf).await {
            Ok(0) => (Local::Eof(conn), true),
            Ok(n) => (Local::Read(conn, Bytes::copy_from_slice(&buf[..n])), false),
            Err(e) => (Local::Failed(conn, e), true),
        };
        if to_loop.send(msg).await.is_err() || end {
            return;
        }
    }
}

/// Writes in order; reports each write; shuts down or closes when told. Ends the reader when
/// the connection closes.
async fn write_task<W: AsyncWrite + Unpin>(
    conn: ConnId,
    mut wr: W,
    cmds: Receiver<WriteCmd>,
    reader: Task<()>,
    ends: Ends<W>,
    to_loop: Sender<Local>,
) {
    let mut abort = true;
    while let Ok(cmd) = cmds.recv().await {
        match cmd {
            WriteCmd::Data(data) => {
                if let Err(e) = wr.write_all(&data).await {
                    let _ = to_loop.send(Local::Failed(conn, e)).await;
                    break;
                }
                let _ = to_loop.send(Local::Written(conn, data.len())).await;
            }
            WriteCmd::Shutdown => {
                let done = match wr.flush().await {
                    Ok(()) => (ends.shutdown)(&wr),
                    Err(e) => Err(e),
                };
                if let Err(e) = done {
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
        (ends.reset)(&wr);
    }
}
