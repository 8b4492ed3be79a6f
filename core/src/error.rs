//! Errors of commands, and the reasons a session ends.

use std::fmt;

use crate::wire::control::CloseCode;

/// Why a session ended, in [`crate::Event::SessionClosed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// No valid handshake response arrived in time: the peer is unreachable, is not running,
    /// or does not have the static key we expected.
    HandshakeTimeout,
    /// Nothing was heard from the peer for the idle timeout.
    IdleTimeout,
    /// The application closed the session.
    Local,
    /// The peer closed the session.
    Peer(CloseCode),
    /// The peer's endpoint restarted and lost the session's state; a new session with a new
    /// [`crate::PeerId`] follows at once.
    PeerRestarted,
    /// The peer no longer had this session (it closed it and its Close was lost or is still
    /// on its way) and a handshake started a new one; a new session with a new
    /// [`crate::PeerId`] follows at once.
    PeerReset,
    /// The peer broke the stream protocol (data beyond a flow-control window, a frame for a
    /// stream that may not exist, ...); we closed the session and told it why.
    ProtocolViolation,
    /// Streams were open or data was unacknowledged, and the peer answered nothing (probes
    /// included, on the relay too when allowed) for the liveness timeout: it is gone.
    PeerUnresponsive,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HandshakeTimeout => f.write_str(
                "handshake timed out: the peer is unreachable, not running, or its public key is not the one configured",
            ),
            Self::IdleTimeout => f.write_str("nothing heard from the peer for the idle timeout"),
            Self::Local => f.write_str("closed locally"),
            Self::Peer(code) => write!(f, "closed by the peer ({code:?})"),
            Self::PeerRestarted => f.write_str("the peer restarted; its new session replaces this one"),
            Self::PeerReset => {
                f.write_str("the peer no longer had this session; a new session replaces it")
            }
            Self::ProtocolViolation => {
                f.write_str("the peer broke the stream protocol (e.g. sent beyond its window)")
            }
            Self::PeerUnresponsive => {
                f.write_str("the peer stopped answering (its keepalive or data went unacknowledged)")
            }
        }
    }
}

/// Why [`crate::Endpoint::connect`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The key is our own.
    OwnKey,
    /// No address to try.
    NoCandidates,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OwnKey => f.write_str("cannot connect to our own public key"),
            Self::NoCandidates => f.write_str("no candidate address to reach the peer at"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Why a datagram could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No session with that peer handle (never existed, or closed).
    UnknownPeer,
    /// Larger than one packet can carry; the limit is given.
    TooLarge {
        /// The largest datagram that fits.
        max: usize,
    },
    /// The handshake is still running and the queue for this peer is full; wait for
    /// [`crate::Event::Connected`].
    QueueFull,
    /// The session is not up (its handshake is still running), and what was asked needs it.
    NotConnected,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownPeer => f.write_str("no session with that peer"),
            Self::TooLarge { max } => write!(f, "datagram too large (at most {max} bytes fit)"),
            Self::QueueFull => f.write_str("handshake in progress and the send queue is full"),
            Self::NotConnected => f.write_str("the session is not up yet"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a stream command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// No session with that peer handle (never existed, or closed).
    UnknownPeer,
    /// No such stream: never opened, or already finished in both directions and forgotten.
    UnknownStream,
    /// The send buffer or the peer's flow-control credit is full; wait for
    /// [`crate::Event::StreamWritable`].
    Blocked,
    /// Writing after `stream_finish` or `stream_reset`.
    Closed,
    /// The peer asked us to stop sending (on a write: the peer's code), or we stopped reading
    /// (on a read: the code we gave `stream_stop`).
    Stopped(u64),
    /// The peer reset the stream with this code; data not yet read is gone.
    Reset(u64),
    /// The peer allows no more concurrent streams now.
    Limit,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownPeer => f.write_str("no session with that peer"),
            Self::UnknownStream => f.write_str("unknown stream"),
            Self::Blocked => f.write_str("send buffer full; wait for StreamWritable"),
            Self::Closed => f.write_str("stream already finished or reset"),
            Self::Stopped(code) => write!(f, "sending stopped (code {code})"),
            Self::Reset(code) => write!(f, "the peer reset the stream (code {code})"),
            Self::Limit => f.write_str("the peer allows no more streams now"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<crate::stream::WriteError> for StreamError {
    fn from(e: crate::stream::WriteError) -> Self {
        use crate::stream::WriteError;
        match e {
            WriteError::Blocked => Self::Blocked,
            WriteError::Closed => Self::Closed,
            WriteError::Stopped(code) => Self::Stopped(code),
            WriteError::UnknownStream => Self::UnknownStream,
        }
    }
}

impl From<crate::stream::ReadError> for StreamError {
    fn from(e: crate::stream::ReadError) -> Self {
        use crate::stream::ReadError;
        match e {
            ReadError::Reset(code) => Self::Reset(code),
            ReadError::Stopped(code) => Self::Stopped(code),
            ReadError::UnknownStream => Self::UnknownStream,
        }
    }
}

impl From<crate::stream::OpenError> for StreamError {
    fn from(e: crate::stream::OpenError) -> Self {
        match e {
            crate::stream::OpenError::Limit => Self::Limit,
        }
    }
}

/// Why a service command was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceError {
    /// This endpoint has no rendezvous server configured ([`crate::config::Config::rendezvous`]).
    NoRendezvous,
    /// The rendezvous server would refuse this registration; the text says why (for example
    /// too many services for one daemon).
    Invalid(String),
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRendezvous => {
                f.write_str("no rendezvous server configured; add one to the daemon's config")
            }
            Self::Invalid(why) => write!(f, "cannot register: {why}"),
        }
    }
}

impl std::error::Error for ServiceError {}
