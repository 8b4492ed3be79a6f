//! The stream layer's public vocabulary: ids, roles, configuration, events, errors and stats.

use std::fmt;
use std::time::Duration;

pub use crate::congestion::CongestionControl;

/// Credit every endpoint assumes the peer grants per new stream before a MAX_STREAM_DATA says
/// more; a larger configured window is advertised right away.
pub(crate) const INITIAL_STREAM_WINDOW: u64 = 64 * 1024;
/// Connection credit assumed before the first MAX_DATA.
pub(crate) const INITIAL_CONNECTION_WINDOW: u64 = 256 * 1024;
/// Streams each side may open before the first MAX_STREAMS.
pub(crate) const INITIAL_MAX_STREAMS: u64 = 16;

/// Which end of the session we are; decides the parity of the stream ids we open, so ids
/// never collide when both ends open streams at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The handshake initiator: opens streams with even ids.
    Initiator,
    /// The handshake responder: opens streams with odd ids.
    Responder,
}

impl Role {
    fn bit(self) -> u64 {
        match self {
            Role::Initiator => 0,
            Role::Responder => 1,
        }
    }
}

/// A bidirectional stream: `2 * n + 0` for the initiator's n-th stream, `2 * n + 1` for the
/// responder's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

impl StreamId {
    pub(crate) fn new(role: Role, index: u64) -> Self {
        Self(index << 1 | role.bit())
    }

    /// Which end opened the stream.
    pub fn initiator(self) -> Role {
        if self.0 & 1 == 0 {
            Role::Initiator
        } else {
            Role::Responder
        }
    }

    /// The stream's position among those its initiator opened (0 for the first).
    pub fn index(self) -> u64 {
        self.0 >> 1
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {}", self.0)
    }
}

/// Tuning for one [`crate::stream::Mux`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamConfig {
    /// How many bytes past what the application has read the peer may send on one stream;
    /// bounds the receive buffer of a slow reader.
    pub stream_receive_window: u64,
    /// The same bound summed over all streams.
    pub connection_receive_window: u64,
    /// Bytes `write` accepts per stream before the peer acknowledges them; bounds the sender's
    /// memory when the reader is slow. Should be at least the bandwidth-delay product.
    pub stream_send_buffer: u64,
    /// The same bound summed over all streams: however many streams the application opens,
    /// the data waiting for the peer's acknowledgement stays below it.
    pub connection_send_buffer: u64,
    /// Streams the peer may have open at once (at least the protocol's initial 16), or 0: the
    /// peer may open none at all, and a stream frame from it is a protocol violation (a
    /// rendezvous server's sessions carry no streams).
    pub max_concurrent_streams: u64,
    /// RTT assumed before the first sample (RFC 9002 §6.2.2 recommends 333 ms).
    pub initial_rtt: Duration,
    /// How long we delay an ACK; also assumed to be the peer's (both ends use one value).
    pub max_ack_delay: Duration,
    /// The plaintext size the congestion controller assumes per packet; `poll_packet` writes at
    /// most this much. 1168 fits the session's overhead into a 1232-byte IPv6-safe datagram.
    pub max_packet_size: usize,
    /// The largest packet path MTU discovery tries (the same plaintext measure); equal to
    /// `max_packet_size` (or smaller) turns discovery off. 1419 fits the session's 33 bytes
    /// into a 1452-byte UDP payload: a 1500-byte Ethernet MTU less IPv6 and UDP headers.
    pub max_probe_packet_size: usize,
    /// Whether to pace packets (RFC 9002 §7.7).
    pub pacing: bool,
    /// The congestion controller, BBR by default. On a path with random loss BBR keeps most
    /// of the link where NewReno keeps a few percent (`cargo bench -p burrow-core --bench
    /// goodput` prints both).
    pub congestion: CongestionControl,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            stream_receive_window: 4 * 1024 * 1024,
            connection_receive_window: 16 * 1024 * 1024,
            stream_send_buffer: 4 * 1024 * 1024,
            connection_send_buffer: 16 * 1024 * 1024,
            max_concurrent_streams: 256,
            initial_rtt: Duration::from_millis(333),
            max_ack_delay: Duration::from_millis(25),
            max_packet_size: 1168,
            max_probe_packet_size: 1419,
            pacing: true,
            congestion: CongestionControl::default(),
        }
    }
}

/// Something the application should know about; drained with `Mux::poll_event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The peer opened a stream.
    Opened(StreamId),
    /// Data (or the FIN) can be read. Edge-triggered: read until `Blocked` or `Finished`.
    Readable(StreamId),
    /// A stream whose `write` returned `Blocked` accepts data again.
    Writable(StreamId),
    /// Everything we wrote, and our FIN, was acknowledged.
    Finished(StreamId),
    /// The peer reset its send direction; unread data is gone.
    Reset {
        /// The stream.
        id: StreamId,
        /// The peer's application error code.
        code: u64,
    },
    /// The peer asked us to stop sending; our send direction was reset with the same code.
    StopSending {
        /// The stream.
        id: StreamId,
        /// The peer's application error code.
        code: u64,
    },
    /// An `open` that failed with [`OpenError::Limit`] may succeed now: the peer raised its
    /// limit on concurrent streams.
    OpenAvailable,
    /// The peer broke a rule of the stream layer that a correct peer never breaks: data beyond
    /// a flow-control window or a final size, a frame for a stream that may not exist, an ACK
    /// for a packet never sent, or more out-of-order pieces on one stream than the assembler
    /// holds. Reported once; from then on the mux ignores the peer's packets, and the session
    /// closes with a protocol error (RFC 9000 closes the connection for the same breaches).
    ProtocolViolation,
}

/// What a successful `read` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were copied into the buffer.
    Data(usize),
    /// The peer finished the stream and every byte was read.
    Finished,
    /// Nothing to read yet; wait for `StreamEvent::Readable`.
    Blocked,
}

/// Why `open` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// The peer's stream limit is reached; retry after a stream closes.
    Limit,
}

/// Why `write` or `finish` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// The send buffer is full; wait for `StreamEvent::Writable`.
    Blocked,
    /// The stream was finished or reset by us.
    Closed,
    /// The peer asked us to stop sending with this code.
    Stopped(u64),
    /// No such stream (never opened, or closed and forgotten).
    UnknownStream,
}

/// Why `read` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer reset the stream with this code.
    Reset(u64),
    /// We called `stop_sending` on this stream, with this code.
    Stopped(u64),
    /// No such stream (never opened, or closed and forgotten).
    UnknownStream,
}

macro_rules! display_error {
    ($ty:ty, $($pat:pat => $msg:expr),+ $(,)?) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match *self { $($pat => write!(f, "{}", $msg)),+ }
            }
        }
        impl std::error::Error for $ty {}
    };
}

display_error!(OpenError, OpenError::Limit => "the peer's stream limit is reached; retry when a stream closes");
display_error!(WriteError,
    WriteError::Blocked => "send buffer full; wait for Writable".to_string(),
    WriteError::Closed => "stream already finished or reset".to_string(),
    WriteError::Stopped(code) => format!("peer asked to stop sending (code {code})"),
    WriteError::UnknownStream => "unknown stream".to_string(),
);
display_error!(ReadError,
    ReadError::Reset(code) => format!("peer reset the stream (code {code})"),
    ReadError::Stopped(code) => format!("reading was stopped (code {code})"),
    ReadError::UnknownStream => "unknown stream".to_string(),
);

/// Counters and gauges of one [`crate::stream::Mux`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MuxStats {
    /// Packets written by `poll_packet`.
    pub packets_sent: u64,
    /// Packets given to `handle_packet` and accepted (not duplicates, not malformed).
    pub packets_received: u64,
    /// Sent packets declared lost.
    pub packets_lost: u64,
    /// Received packets dropped as duplicates.
    pub packets_duplicate: u64,
    /// Received packets dropped because they did not decode.
    pub packets_malformed: u64,
    /// Frames ignored because they broke a protocol rule (flow control, unknown stream).
    pub frames_invalid: u64,
    /// Empty payloads (keepalives) received.
    pub keepalives_received: u64,
    /// Payload bytes written by `poll_packet`.
    pub bytes_sent: u64,
    /// Payload bytes accepted by `handle_packet`.
    pub bytes_received: u64,
    /// Stream bytes sent for the first time.
    pub stream_bytes_sent: u64,
    /// Stream bytes sent again after a loss or as a probe.
    pub stream_bytes_retransmitted: u64,
    /// Stream bytes delivered to the application by `read`.
    pub stream_bytes_read: u64,
    /// Times the loss detector reduced the congestion window.
    pub congestion_events: u64,
    /// Probe timeouts that fired.
    pub ptos: u64,
    /// Smoothed RTT.
    pub rtt: Duration,
    /// Minimum RTT.
    pub min_rtt: Duration,
    /// Congestion window in bytes.
    pub cwnd: u64,
    /// Bytes in flight.
    pub bytes_in_flight: u64,
    /// Streams currently tracked.
    pub open_streams: usize,
    /// Path MTU probes sent.
    pub mtu_probes: u64,
    /// The largest packet the path is known to carry (the plaintext `poll_packet` writes).
    pub packet_size: usize,
}
