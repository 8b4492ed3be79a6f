//! One local connection's byte moving, shared by every runtime: one read per forwarder
//! credit, writes queued and reported as they leave, half-close and close after the queued
//! writes. It does non-blocking I/O on a socket when the runtime says it is ready, and says
//! when it needs readiness again; what the bytes mean is the forwarder's, which hears of
//! them as [`Report`]s.

use std::collections::VecDeque;
use std::io;

use bytes::{Bytes, BytesMut};

/// The non-blocking operations a connection needs from its socket. Each may say
/// `WouldBlock`, which clears the readiness it used.
pub trait LocalSocket {
    /// Reads once, appending at most `max` bytes to `buf` (which has room for them).
    fn read_into(&self, buf: &mut BytesMut, max: usize) -> io::Result<usize>;
    /// Writes what the socket takes now.
    fn write(&self, data: &[u8]) -> io::Result<usize>;
    /// Shuts down the write direction (a FIN after what was written).
    fn shutdown_write(&self) -> io::Result<()>;
    /// Makes the socket end in a reset when it is closed (TCP; a unix socket has none).
    fn set_reset(&self);
}

/// Receives once from a stream socket (TCP or unix) into `buf`'s spare room, at most `max`
/// bytes, without zeroing the room first (a chunk may be 256 KiB; a ping is 64 bytes).
pub fn recv_into(
    socket: socket2::SockRef<'_>,
    buf: &mut BytesMut,
    max: usize,
) -> io::Result<usize> {
    buf.reserve(max);
    let room = &mut buf.spare_capacity_mut()[..max];
    let n = socket.recv(room)?;
    // SAFETY: `recv` initialised the first `n` bytes of the spare room (socket2's contract),
    // and `n <= max <= spare capacity`.
    #[allow(unsafe_code)]
    unsafe {
        buf.set_len(buf.len() + n);
    }
    Ok(n)
}

/// What a connection did, for the forwarder.
#[derive(Debug)]
pub enum Report {
    /// Bytes read (one credit used).
    Read(Bytes),
    /// End of file (one credit used).
    Eof,
    /// So many queued bytes left.
    Written(usize),
    /// The socket failed; nothing more is reported.
    Failed(String),
}

/// A local connection and what is queued for it.
#[derive(Debug)]
pub struct Conn<S> {
    socket: S,
    /// The forwarder asked for one read.
    read_credit: bool,
    /// Readiness seen and not yet used up (cleared by `WouldBlock`).
    readable: bool,
    writable: bool,
    out: VecDeque<Bytes>,
    /// Shut down the write half once `out` is empty.
    shutdown: bool,
    /// Drop the connection once `out` is empty (the forwarder has forgotten it).
    closing: bool,
    /// Closed cleanly: dropping it may end it with a FIN.
    clean: bool,
    /// An error was reported; nothing more is.
    failed: bool,
}

impl<S: LocalSocket> Conn<S> {
    /// A connected socket, assumed ready both ways until it says otherwise.
    pub fn new(socket: S) -> Self {
        Self {
            socket,
            read_credit: false,
            readable: true,
            writable: true,
            out: VecDeque::new(),
            shutdown: false,
            closing: false,
            clean: false,
            failed: false,
        }
    }

    /// The socket.
    pub fn socket(&self) -> &S {
        &self.socket
    }

    /// Notes readiness the runtime reported.
    pub fn ready(&mut self, readable: bool, writable: bool) {
        self.readable |= readable;
        self.writable |= writable;
    }

    /// Whether the connection waits for the socket to become readable.
    pub fn wants_readable(&self) -> bool {
        self.read_credit && !self.readable && !self.closing && !self.failed
    }

    /// Whether the connection waits for the socket to become writable.
    pub fn wants_writable(&self) -> bool {
        !self.writable && !self.failed && (!self.out.is_empty() || self.shutdown)
    }

    /// The forwarder asks for one read.
    pub fn read(&mut self) {
        self.read_credit = true;
    }

    /// Queues `data`.
    pub fn write(&mut self, data: Bytes) {
        self.out.push_back(data);
    }

    /// Shuts the write half down after the queued writes.
    pub fn shutdown(&mut self) {
        self.shutdown = true;
    }

    /// Closes after the queued writes (clean), or at once with a TCP reset (`abort`). Returns
    /// whether the connection can be dropped now.
    pub fn close(&mut self, abort: bool) -> bool {
        self.closing = true;
        self.read_credit = false;
        if abort {
            self.socket.set_reset();
            return true;
        }
        self.clean = true;
        self.out.is_empty() && !self.shutdown
    }

    /// Whether it was closed cleanly (dropping it then sends a FIN, not a reset).
    pub fn is_clean(&self) -> bool {
        self.clean
    }

    /// Does what readiness and the queues allow, reading at most `max` bytes into `buf`;
    /// reports into `reports`. Returns whether the connection is finished with and can be
    /// dropped.
    pub fn drive(&mut self, buf: &mut BytesMut, max: usize, reports: &mut Vec<Report>) -> bool {
        if self.failed {
            return self.closing;
        }
        while self.writable && !self.out.is_empty() {
            let front = self.out.front_mut().expect("checked non-empty");
            match self.socket.write(front) {
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
            if let Err(e) = self.socket.shutdown_write() {
                return self.fail(e, reports);
            }
        }
        if self.closing {
            return self.out.is_empty();
        }
        if self.read_credit && self.readable {
            buf.reserve(max);
            match self.socket.read_into(buf, max) {
                Ok(0) => {
                    self.read_credit = false;
                    reports.push(Report::Eof);
                }
                Ok(_) => {
                    self.read_credit = false;
                    reports.push(Report::Read(buf.split().freeze()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(e, reports),
            }
        }
        false
    }

    /// Reports a failure that happened outside [`Self::drive`] (waiting for readiness).
    pub fn fail(&mut self, e: io::Error, reports: &mut Vec<Report>) -> bool {
        if !self.failed {
            self.failed = true;
            if !self.closing {
                reports.push(Report::Failed(e.to_string()));
            }
        }
        self.closing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A socket that takes `room` bytes per write and holds `input` to read.
    #[derive(Default)]
    struct Fake {
        room: RefCell<usize>,
        written: RefCell<Vec<u8>>,
        input: RefCell<Vec<u8>>,
        shut: RefCell<bool>,
        reset: RefCell<bool>,
    }

    fn would_block() -> io::Error {
        io::ErrorKind::WouldBlock.into()
    }

    impl LocalSocket for Fake {
        fn read_into(&self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
            let mut input = self.input.borrow_mut();
            if input.is_empty() {
                return Err(would_block());
            }
            let n = input.len().min(max);
            buf.extend_from_slice(&input[..n]);
            input.drain(..n);
            Ok(n)
        }
        fn write(&self, data: &[u8]) -> io::Result<usize> {
            let mut room = self.room.borrow_mut();
            if *room == 0 {
                return Err(would_block());
            }
            let n = data.len().min(*room);
            *room -= n;
            self.written.borrow_mut().extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn shutdown_write(&self) -> io::Result<()> {
            *self.shut.borrow_mut() = true;
            Ok(())
        }
        fn set_reset(&self) {
            *self.reset.borrow_mut() = true;
        }
    }

    fn drive(c: &mut Conn<Fake>) -> (bool, Vec<Report>) {
        let mut reports = Vec::new();
        let done = c.drive(&mut BytesMut::new(), 4, &mut reports);
        (done, reports)
    }

    #[test]
    fn one_read_per_credit_and_a_wait_when_the_socket_is_empty() {
        let mut c = Conn::new(Fake::default());
        c.socket.input.borrow_mut().extend_from_slice(b"abcdef");
        assert!(drive(&mut c).1.is_empty(), "no credit, no read");
        c.read();
        let (_, r) = drive(&mut c);
        assert!(matches!(&r[..], [Report::Read(d)] if &d[..] == b"abcd"));
        assert!(drive(&mut c).1.is_empty(), "one read per credit");
        c.read();
        let (_, r) = drive(&mut c);
        assert!(matches!(&r[..], [Report::Read(d)] if &d[..] == b"ef"));
        c.read();
        assert!(drive(&mut c).1.is_empty());
        assert!(c.wants_readable(), "empty: waits for readiness");
        c.ready(true, false);
        assert!(!c.wants_readable());
    }

    #[test]
    fn writes_leave_in_order_as_room_appears_then_the_fin() {
        let mut c = Conn::new(Fake::default());
        *c.socket.room.borrow_mut() = 3;
        c.write(Bytes::from_static(b"hello"));
        c.write(Bytes::from_static(b"!"));
        c.shutdown();
        let (_, r) = drive(&mut c);
        assert!(matches!(&r[..], [Report::Written(3)]));
        assert!(c.wants_writable() && !*c.socket.shut.borrow());
        *c.socket.room.borrow_mut() = 10;
        c.ready(false, true);
        let (done, r) = drive(&mut c);
        assert!(!done);
        assert!(matches!(&r[..], [Report::Written(2), Report::Written(1)]));
        assert_eq!(&c.socket.written.borrow()[..], b"hello!");
        assert!(*c.socket.shut.borrow() && !c.wants_writable());
    }

    #[test]
    fn a_clean_close_waits_for_the_queue_and_an_abort_resets_at_once() {
        let mut c = Conn::new(Fake::default());
        c.write(Bytes::from_static(b"xy"));
        assert!(!c.close(false), "queued bytes keep it");
        let (done, r) = drive(&mut c);
        assert!(!done && r.is_empty() && c.wants_writable());
        *c.socket.room.borrow_mut() = 2;
        c.ready(false, true);
        let (done, r) = drive(&mut c);
        assert!(done && r.is_empty(), "closing: no reports, then done");
        assert!(c.is_clean() && !*c.socket.reset.borrow());
        let mut c = Conn::new(Fake::default());
        c.write(Bytes::from_static(b"xy"));
        assert!(c.close(true));
        assert!(*c.socket.reset.borrow() && !c.is_clean());
    }

    #[test]
    fn a_failure_is_reported_once() {
        let mut c = Conn::new(Fake::default());
        let mut reports = Vec::new();
        assert!(!c.fail(io::ErrorKind::ConnectionReset.into(), &mut reports));
        assert!(!c.fail(io::ErrorKind::ConnectionReset.into(), &mut reports));
        assert_eq!(reports.len(), 1);
        c.read();
        assert!(!c.wants_readable() && drive(&mut c).1.is_empty());
    }
}
