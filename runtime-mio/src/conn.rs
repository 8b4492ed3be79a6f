//! One local connection (TCP or unix socket) on mio: a non-blocking connect, then the byte
//! moving every runtime shares ([`burrow_tokio::local_conn`]: one read per forwarder credit,
//! queued writes, half-close and close after them). What the bytes mean is the forwarder's,
//! which hears of them as [`Report`]s.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use burrow_tokio::local_conn::{self, LocalSocket};
use bytes::{Bytes, BytesMut};
use mio::event::Event;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use socket2::SockRef;

/// What a connection did, for the forwarder.
#[derive(Debug)]
pub(crate) enum Report {
    Connected,
    ConnectFailed(String),
    /// Bytes moved, or a failure.
    Io(local_conn::Report),
}

/// A local socket.
#[derive(Debug)]
pub(crate) enum LocalStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl LocalStream {
    /// Starts a non-blocking connect to `unix:PATH` or to an address; `Ok(None)` for a host
    /// name, which the caller resolves off the loop first.
    pub(crate) fn connect(target: &str) -> io::Result<Option<Self>> {
        if let Some(path) = target.strip_prefix("unix:") {
            return UnixStream::connect(path).map(|s| Some(Self::Unix(s)));
        }
        match target.parse::<SocketAddr>() {
            Ok(addr) => TcpStream::connect(addr).map(|s| Some(Self::Tcp(s))),
            Err(_) => Ok(None),
        }
    }

    /// `Ok(true)` once connected, `Ok(false)` while still connecting.
    fn connect_done(&self) -> io::Result<bool> {
        let (err, peer) = match self {
            Self::Tcp(s) => (s.take_error(), s.peer_addr().map(drop)),
            Self::Unix(s) => (s.take_error(), s.peer_addr().map(drop)),
        };
        if let Some(e) = err? {
            return Err(e);
        }
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl LocalSocket for LocalStream {
    fn read_into(&self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => local_conn::recv_into(SockRef::from(s), buf, max),
            Self::Unix(s) => local_conn::recv_into(SockRef::from(s), buf, max),
        }
    }

    fn write(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => (&*s).write(data),
            Self::Unix(s) => (&*s).write(data),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown(Shutdown::Write),
            Self::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }

    fn set_reset(&self) {
        if let Self::Tcp(s) = self {
            let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
    }
}

/// A local connection: connecting, then moving bytes ([`local_conn::Conn`], shared with
/// the async runtimes).
#[derive(Debug)]
pub(crate) struct Conn {
    inner: local_conn::Conn<LocalStream>,
    connecting: bool,
    /// A readiness event arrived since the connect was last checked.
    connect_event: bool,
    /// What the inner connection reported (kept for its allocation).
    io: Vec<local_conn::Report>,
}

impl Conn {
    /// Registers `stream` for readiness under `token`.
    pub(crate) fn new(
        registry: &Registry,
        token: Token,
        mut stream: LocalStream,
        connecting: bool,
    ) -> io::Result<Self> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match &mut stream {
            LocalStream::Tcp(s) => {
                registry.register(s, token, interest)?;
                let _ = s.set_nodelay(true);
            }
            LocalStream::Unix(s) => registry.register(s, token, interest)?,
        }
        Ok(Self {
            inner: local_conn::Conn::new(stream),
            connecting,
            connect_event: false,
            io: Vec::new(),
        })
    }

    /// Notes the readiness `event` reports.
    pub(crate) fn ready(&mut self, event: &Event) {
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        let writable = event.is_writable() || event.is_write_closed() || event.is_error();
        self.connect_event |= readable || writable;
        self.inner.ready(readable, writable);
    }

    pub(crate) fn read(&mut self) {
        self.inner.read();
    }

    pub(crate) fn write(&mut self, data: Bytes) {
        self.inner.write(data);
    }

    pub(crate) fn shutdown(&mut self) {
        self.inner.shutdown();
    }

    /// Closes after the queued writes (clean), or at once with a TCP reset (`abort`). Returns
    /// whether the connection can be dropped now.
    pub(crate) fn close(&mut self, abort: bool) -> bool {
        self.inner.close(abort)
    }

    /// Does what readiness and the queues allow, reading at most `max` bytes into `buf`;
    /// reports into `reports`. Returns whether the connection is finished with and can be
    /// dropped.
    pub(crate) fn drive(
        &mut self,
        buf: &mut BytesMut,
        max: usize,
        reports: &mut Vec<Report>,
    ) -> bool {
        if self.connecting {
            if !std::mem::take(&mut self.connect_event) {
                return false;
            }
            match self.inner.socket().connect_done() {
                Ok(false) => return false,
                Ok(true) => {
                    self.connecting = false;
                    reports.push(Report::Connected);
                }
                Err(e) => {
                    reports.push(Report::ConnectFailed(e.to_string()));
                    // Failed: nothing more is reported; it goes once the forwarder closes it.
                    return self.inner.fail(e, &mut Vec::new());
                }
            }
        }
        let done = self.inner.drive(buf, max, &mut self.io);
        reports.extend(self.io.drain(..).map(Report::Io));
        done
    }
}
