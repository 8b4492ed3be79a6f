//! The UDP forwarder's vocabulary: its tuning, handles, what it asks the runtime to do, and
//! its counters.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Tuning for a [`super::UdpForwarder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpConfig {
    /// A flow with no datagram either way for this long is forgotten (its socket closed on
    /// the exposing side). Default 60 s.
    pub idle_timeout: Duration,
    /// Most flows at once per service: per listener on the connecting side, per exposed
    /// service on the exposing side. A datagram that would open one more is dropped and
    /// counted. Default 1024.
    pub max_flows: usize,
    /// Most datagrams held per service while its daemon is being looked up; more are dropped
    /// and counted. Default 64.
    pub max_waiting: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            max_flows: 1024,
            max_waiting: 64,
        }
    }
}

/// One UDP flow, named by the [`super::UdpForwarder`] that handed it out. Never reused
/// within one forwarder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId(pub u64);

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flow#{}", self.0)
    }
}

/// A local UDP socket whose datagrams go to one remote service, from
/// [`super::UdpForwarder::listen`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UdpListenerId(pub u64);

impl fmt::Display for UdpListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "udp-listener#{}", self.0)
    }
}

/// Something the runtime must do with a UDP socket, from
/// [`super::UdpForwarder::poll_action`]. A failed send is not reported: UDP may drop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpAction {
    /// Exposing side: open a UDP socket for `flow`, bound to an ephemeral port and connected
    /// to `target`, and report every datagram it receives with
    /// [`super::UdpForwarder::handle_recv`] (or its failure with
    /// [`super::UdpForwarder::handle_flow_error`]) until [`UdpAction::Close`].
    Open {
        /// The flow.
        flow: FlowId,
        /// The service's address.
        target: SocketAddr,
    },
    /// Exposing side: the flow's target is a host name (`host:port`): look it up off the
    /// loop (as for a TCP target) and report the first address with
    /// [`super::UdpForwarder::handle_resolved`] (or why there is none). The forwarder then
    /// asks for [`UdpAction::Open`] with that address, and holds the flow's first datagrams
    /// until then. If the flow ends meanwhile, no `Close` follows and the answer is ignored.
    Resolve {
        /// The flow.
        flow: FlowId,
        /// The service's target as configured, `host:port`.
        target: String,
    },
    /// Exposing side: send `data` on the flow's socket.
    Send {
        /// The flow.
        flow: FlowId,
        /// One datagram.
        data: Bytes,
    },
    /// Connecting side: send `data` from the listener's socket to `to`.
    SendTo {
        /// The listener socket.
        listener: UdpListenerId,
        /// The local client.
        to: SocketAddr,
        /// One datagram.
        data: Bytes,
    },
    /// Exposing side: close the flow's socket. The forwarder has forgotten the flow.
    Close {
        /// The flow.
        flow: FlowId,
    },
}

/// What the UDP forwarder did and dropped, for `burrow status`. Every datagram not forwarded
/// lands in one `dropped_*` counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpStats {
    /// Flows opened (either side).
    pub flows_opened: u64,
    /// Flows forgotten after their idle timeout.
    pub flows_expired: u64,
    /// Flows that came in and that their opener ended (its END: its own idle timeout came
    /// first, its listener went away, or it stopped).
    #[serde(default)]
    pub flows_ended: u64,
    /// Flows that came in before the server's introduction authorising their peer and waited
    /// for it (then opened, or refused when the wait ended).
    pub flows_held: u64,
    /// Flows the exposing side refused (not a UDP service it exposes to us, over its flow
    /// limit, or its socket failed).
    pub flows_refused: u64,
    /// Datagrams larger than a session datagram can carry with the flow header.
    pub dropped_too_large: u64,
    /// Datagrams that would have opened a flow beyond the service's limit.
    pub dropped_limit: u64,
    /// Datagrams dropped while the service was being looked up (the wait queue was full, or
    /// the lookup failed), for a refused flow, or past the few a flow keeps while it waits
    /// for its introduction.
    pub dropped_unreachable: u64,
    /// Session datagrams that were not flow messages.
    pub dropped_malformed: u64,
    /// Flow messages for a flow this side does not know.
    pub dropped_unknown_flow: u64,
    /// Datagrams the session would not take (its handshake queue was full).
    pub dropped_send: u64,
}

/// One flow, from [`super::UdpForwarder::flows`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowInfo {
    /// The forwarder's handle.
    pub flow: u64,
    /// Its service.
    pub service: String,
    /// Whether it came in for a service we expose (else it came from a local client).
    pub incoming: bool,
    /// The peer carrying it, once known.
    pub peer: Option<u64>,
    /// The local client's address (connecting side) or the service's (exposing side).
    pub local: SocketAddr,
    /// Datagrams sent into the tunnel.
    pub datagrams_out: u64,
    /// Their payload bytes.
    pub bytes_out: u64,
    /// Datagrams received from the tunnel and handed to the local socket.
    pub datagrams_in: u64,
    /// Their payload bytes.
    pub bytes_in: u64,
    /// Datagrams of this flow dropped (too large, unreachable, refused, not taken).
    pub dropped: u64,
    /// Seconds since its last datagram either way.
    pub idle_secs: f64,
}
