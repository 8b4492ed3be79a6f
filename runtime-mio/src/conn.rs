//! One local connection (TCP or unix socket) on mio: non-blocking connect, one read per
//! forwarder credit, buffered writes reported as they leave, half-close and close after the
//! queued writes. It only moves bytes; what they mean is the forwarder's, and it hears of them
//! as [`Report`]s.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use mio::event::Event;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use socket2::SockRef;

/// What a connection did, for the forwarder.
#[derive(Debug)]
pub(crate) enum Report {
    Connected,
    ConnectFailed(String),
    Read(Bytes),
    Eof,
    Written(usize),
    Failed(String),
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

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown(Shutdown::Write),
            Self::Unix(s) => s.shutdown(Shutdown::Write),
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

/// A local connection and what is queued for it.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: LocalStream,
    connecting: bool,
    /// The forwarder asked for one read.
    read_credit: bool,
    /// Readiness seen and not yet used up (mio is edge-triggered: cleared on `WouldBlock`).
    readable: bool,
    writable: bool,
    out: VecDeque<Bytes>,
    /// Shut down the write half once `out` is empty.
    shutdown: bool,
    /// Drop the connection once `out` is empty (the forwarder has forgotten it).
    closing: bool,
    /// An error was reported; nothing more is.
    failed: bool,
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
            stream,
            connecting,
            read_credit: false,
            readable: !connecting,
            writable: !connecting,
            out: VecDeque::new(),
            shutdown: false,
            closing: false,
            failed: false,
        })
    }

    /// Notes the readiness `event` reports.
    pub(crate) fn ready(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.readable = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.writable = true;
        }
    }

    pub(crate) fn read(&mut self) {
        self.read_credit = true;
    }

    pub(crate) fn write(&mut self, data: Bytes) {
        self.out.push_back(data);
    }

    pub(crate) fn shutdown(&mut self) {
        self.shutdown = true;
    }

    /// Closes after the queued writes (clean), or at once with a TCP reset (`abort`). Returns
    /// whether the connection can be dropped now.
    pub(crate) fn close(&mut self, abort: bool) -> bool {
        self.closing = true;
        self.read_credit = false;
        if abort {
            if let LocalStream::Tcp(s) = &self.stream {
                let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
            return true;
        }
        self.out.is_empty() && !self.shutdown
    }

    /// Does what readiness and the queues allow; reports into `reports`. Returns whether the
    /// connection is finished with and can be dropped.
    pub(crate) fn drive(&mut self, buf: &mut [u8], reports: &mut Vec<Report>) -> bool {
        if self.connecting {
            if !(self.readable || self.writable) {
                return false;
            }
            match self.stream.connect_done() {
                Ok(false) => {
                    self.readable = false;
                    self.writable = false;
                    return false;
                }
                Ok(true) => {
                    self.connecting = false;
                    reports.push(Report::Connected);
                }
                Err(e) => {
                    self.failed = true;
                    reports.push(Report::ConnectFailed(e.to_string()));
                    return self.closing;
                }
            }
        }
        if self.failed {
            return self.closing;
        }
        while self.writable && !self.out.is_empty() {
            let front = self.out.front_mut().expect("checked non-empty");
            match self.stream.write(front) {
                Ok(n) => {
                    let _ = front.split_to(n);
                    if front.is_empty() {
                        self.out.pop_front();
                    }
                    if !self.closing {
                        reports.push(Report::Written(n));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(e, reports),
            }
        }
        if self.out.is_empty() && self.shutdown {
            self.shutdown = false;
            if let Err(e) = self.stream.shutdown_write() {
                return self.fail(e, reports);
            }
        }
        if self.closing {
            return self.out.is_empty();
        }
        if self.read_credit && self.readable {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.read_credit = false;
                    reports.push(Report::Eof);
                }
                Ok(n) => {
                    self.read_credit = false;
                    reports.push(Report::Read(Bytes::copy_from_slice(&buf[..n])));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(e, reports),
            }
        }
        false
    }

    fn fail(&mut self, e: io::Error, reports: &mut Vec<Report>) -> bool {
        self.failed = true;
        if !self.closing {
            reports.push(Report::Failed(e.to_string()));
        }
        self.closing
    }
}
