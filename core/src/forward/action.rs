//! The forwarder's vocabulary: handles for local connections and listeners, what it asks the
//! runtime to do, and what it reports for `burrow status`.

use std::fmt;

use bytes::Bytes;

use crate::event::PeerId;
use crate::rendezvous::ServiceName;
use crate::stream::StreamId;

/// A local connection (TCP or unix socket), named by the [`super::Forwarder`] that handed it
/// out. Never reused within one forwarder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// A local listener whose accepted connections go to one remote service, from
/// [`super::Forwarder::listen`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId(pub u64);

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listener#{}", self.0)
    }
}

/// Something the runtime must do with a local connection, from
/// [`super::Forwarder::poll_action`]. Perform them in order: a `Shutdown` or `Close` applies
/// after every `Write` queued before it for the same connection.
///
/// Every [`ConnId`] starts with `Read` (an accepted connection) or `Connect` (a stream that
/// arrived for an exposed service) and ends with exactly one `Close`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a local connection to `target` (as given to [`crate::Endpoint::expose`]), then
    /// report [`super::Forwarder::handle_connected`] or
    /// [`super::Forwarder::handle_connect_failed`].
    Connect {
        /// The new connection's handle.
        conn: ConnId,
        /// Where to connect: `host:port`, or a unix socket path.
        target: String,
    },
    /// Read once from the connection (any amount up to the runtime's buffer) and report it with
    /// [`super::Forwarder::handle_read`], [`super::Forwarder::handle_eof`] or
    /// [`super::Forwarder::handle_conn_error`]. Until the next `Read`, do not read: this is how
    /// the stream's backpressure reaches the local socket.
    Read {
        /// The connection.
        conn: ConnId,
    },
    /// Write all of `data` to the connection, then report the bytes with
    /// [`super::Forwarder::handle_written`] as they leave the runtime's buffer.
    Write {
        /// The connection.
        conn: ConnId,
        /// The bytes, in stream order.
        data: Bytes,
    },
    /// Shut down the connection's write half (TCP half-close) after the writes before it; its
    /// read half stays open.
    Shutdown {
        /// The connection.
        conn: ConnId,
    },
    /// The connection is done: drop it, after the writes before it when `abort` is false, at
    /// once and with a TCP reset where possible when `abort` is true. The forwarder has
    /// forgotten the handle; anything the runtime still reports for it is ignored.
    Close {
        /// The connection.
        conn: ConnId,
        /// Whether it ends in error (reset) rather than cleanly.
        abort: bool,
        /// Why it ended in error, for the log; `None` for a clean end.
        reason: Option<String>,
    },
}

/// Where a service behind a listener stands, in [`ServiceStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServiceState {
    /// Not asked for yet (or the last answer failed, or its session closed): the next accepted
    /// connection asks again.
    Idle,
    /// [`crate::Endpoint::connect_service`] was called; waiting for the answer.
    Asking,
    /// Streams go to this peer.
    Ready(PeerId),
}

/// One remote service that local listeners connect to, from
/// [`super::Forwarder::services`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceStatus {
    /// The service.
    pub(crate) name: ServiceName,
    /// Whether and where it is reachable.
    pub(crate) state: ServiceState,
    /// Accepted connections waiting for it.
    pub(crate) waiting: usize,
    /// The last failure the rendezvous server (or a closed session) reported, if any.
    pub(crate) last_error: Option<String>,
    /// The exposing daemon's target refused the last connection, and none answered since.
    pub(crate) target_down: bool,
}

/// One live local connection, from [`super::Forwarder::conns`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnStatus {
    /// The connection.
    pub(crate) conn: ConnId,
    /// The service it belongs to (asked for, or exposed).
    pub(crate) service: ServiceName,
    /// Whether we exposed the service (the stream came in) or asked for it (we accepted).
    pub(crate) incoming: bool,
    /// The peer and stream carrying it, once there is one.
    pub(crate) stream: Option<(PeerId, StreamId)>,
    /// Bytes read from the local connection.
    pub(crate) bytes_read: u64,
    /// Bytes handed to the runtime to write to the local connection.
    pub(crate) bytes_written: u64,
}
