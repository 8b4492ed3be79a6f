//! One local connection's state inside the [`super::Forwarder`].

use bytes::Bytes;

use super::action::{ConnId, ConnStatus};
use crate::event::PeerId;
use crate::rendezvous::ServiceName;
use crate::stream::StreamId;

/// A local connection and the stream it is piped into.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) service: ServiceName,
    /// The stream came in for a service we expose (we connected out locally).
    pub(super) incoming: bool,
    /// The stream carrying it; `None` while an accepted connection waits for its service.
    pub(super) stream: Option<(PeerId, StreamId)>,
    /// The local socket is connected (accepted ones always are).
    pub(super) connected: bool,
    /// An [`super::Action::Read`] is outstanding.
    pub(super) reading: bool,
    /// Bytes read locally that the stream has not taken yet.
    pub(super) pending: Bytes,
    /// The local side reached end of file.
    pub(super) eof: bool,
    /// `stream_finish` was called (after `eof` and every pending byte).
    pub(super) finished: bool,
    /// The stream was read to its end and the runtime told to shut down the write half.
    pub(super) remote_done: bool,
    /// Bytes in `Write` actions the runtime has not reported written.
    pub(super) unflushed: usize,
    pub(super) bytes_read: u64,
    pub(super) bytes_written: u64,
    /// Where an accepted connection came from, for the stream header.
    pub(super) origin: Option<super::Origin>,
    /// The PROXY protocol header to write once connected, for an incoming stream whose
    /// service wants one.
    pub(super) proxy_header: Option<Vec<u8>>,
    /// The [`super::Forwarder::listen_to`] listener it was accepted on.
    pub(super) via: Option<super::ListenerId>,
    /// The local target of an incoming stream, for the log and the status.
    pub(super) target: Option<String>,
}

impl Conn {
    pub(super) fn new(service: ServiceName, incoming: bool, connected: bool) -> Self {
        Self {
            service,
            incoming,
            stream: None,
            connected,
            // An accepted connection is read at once; an outgoing one after it connects.
            reading: connected,
            pending: Bytes::new(),
            eof: false,
            finished: false,
            remote_done: false,
            unflushed: 0,
            bytes_read: 0,
            bytes_written: 0,
            origin: None,
            proxy_header: None,
            via: None,
            target: None,
        }
    }

    pub(super) fn status(&self, conn: ConnId) -> ConnStatus {
        ConnStatus {
            conn,
            service: self.service.clone(),
            incoming: self.incoming,
            stream: self.stream,
            bytes_read: self.bytes_read,
            bytes_written: self.bytes_written,
        }
    }
}
