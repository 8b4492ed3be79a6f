//! The Containment Breach API: a hole-punching meeting point with a JSON interface, as a
//! sans-IO state machine, so that programs written for Containment Breach can use a burrow
//! server (`burrow server --cb-listen ADDR`).
//!
//! ## The protocol, as Containment Breach's README defines it
//!
//! A peer first sends a UDP datagram `{"PeerPort": n}` to the server's port. The server records
//! the datagram's source address as the UDP address of the lease (source IP, `n`), for
//! [`BreachConfig::lease_timeout`] (90 s by default); every such datagram renews it. A peer
//! port is not a network port: it tells apart the peers behind one public IP.
//!
//! The peer then opens a TCP connection to the same port and sends a [`Request`]. The
//! connection's source IP and the request's `LocalPeerPort` name the lease it is about (the
//! UDP packet just sent). By [`ConnectionType`]:
//!
//! - `Peer`: meet the peer (`RemoteIP`, `RemotePeerPort`), which must name us back. The first
//!   to ask waits; when the second asks, both get a [`Response`] with their own UDP address
//!   (`Source*`) and the other's (`Dest*`), and both connections close.
//! - `Server`: register. The connection stays open, and gets a response (its own UDP address
//!   and the client's) each time a client asks for it.
//! - `Client`: reach the server (`RemoteIP`, `RemotePeerPort`). If no such server is
//!   registered the answer is an immediate error; otherwise the client gets its response at
//!   once (its address and the server's) and its connection closes.
//! - `KeepAlive`: on a server's connection, renews the server's lease (and so its
//!   registration). Nothing is sent back.
//!
//! A waiter (a waiting peer, a registered server) lives as long as its lease: when the lease
//! expires it gets a timeout error and its connection closes. Errors are responses whose
//! `Error` field says what went wrong; every error is final, and the connection closes after
//! it.
//!
//! Two details the README leaves open, decided here:
//!
//! - The UDP datagram and the TCP request race (they travel separately, and the runtime reads
//!   them separately): a request whose lease is not there yet waits up to
//!   [`BreachConfig::udp_grace`] for it before the error.
//! - A second request on a connection that already made one (other than a server's
//!   KeepAlive) is an error. A newer `Server` registration, or a newer `Peer` request for the
//!   same pair, replaces the older one, which gets an error.
//!
//! ## Driving it
//!
//! The runtime owns the UDP socket, the TCP listener and the connections, and decodes JSON
//! into [`UdpRequest`] and [`Request`] (reading at most [`MAX_REQUEST_LEN`] bytes per
//! request). The core parses no JSON: the message types carry the README's field names for a
//! serde codec, and the core interprets their fields. That keeps a JSON parser out of the
//! core's dependencies, while every decision (and every error's text) stays here.
//!
//! ```text
//! let mut cb = Breach::new(BreachConfig::default());
//! loop {
//!     // 1. Drain.
//!     while let Some(out) = cb.poll_output() {
//!         match out {
//!             Output::Respond { conn, response } => write JSON(response) + "\n" to conn,
//!             Output::Close { conn }             => close conn,
//!         }
//!     }
//!     // 2. Sleep until a datagram, a connection, bytes, or cb.poll_timeout().
//!     // 3. Read the clock once and feed what woke us:
//!     let now = Instant::now();
//!     match what_woke_us {
//!         Datagram(from, UdpRequest { peer_port }) => { let _ = cb.handle_udp(now, from, peer_port); }
//!         Accepted(stream, from)  => match cb.handle_connect(now, from) {
//!                                        Ok(conn) => keep stream as conn,
//!                                        Err(refused) => write Response::error(refused), close,
//!                                    },
//!         Request(conn, req)      => cb.handle_request(now, conn, &req),
//!         Garbage(conn, what)     => cb.handle_malformed(now, conn, what),
//!         Closed(conn)            => cb.handle_closed(now, conn),
//!         Deadline                => cb.handle_timeout(now),
//!     }
//! }
//! ```
//!
//! Everything is bounded ([`BreachConfig`]): leases in total and per source IP, connections in
//! total and per source IP, waiters, the time a connection may take to send its request, and
//! the size of a request.

mod leases;
mod machine;
mod messages;
mod waiters;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use leases::LeaseRefused;
pub use machine::Breach;
pub use messages::{ConnectionType, MAX_REQUEST_LEN, Request, Response, UdpRequest};

/// The Containment Breach server's settings and bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreachConfig {
    /// How long a UDP lease lasts after its latest `{"PeerPort"}` datagram (or a server's
    /// KeepAlive); Containment Breach's `-lease_timeout`. Default 90 s.
    pub lease_timeout: Duration,
    /// Most leases held at once. Default 16384.
    pub max_leases: usize,
    /// Most leases one source IP holds at once (the peers behind one NAT). Default 256.
    pub max_leases_per_ip: usize,
    /// Most TCP connections open at once. Default 256 (the CLI gives each one a thread).
    pub max_connections: usize,
    /// Most TCP connections one source IP has open at once. Default 64.
    pub max_connections_per_ip: usize,
    /// Most connections waiting at once: peers waiting for their peer, registered servers and
    /// requests waiting for their UDP packet. Default 192.
    pub max_waiters: usize,
    /// How long a new connection has to send its request. Default 10 s.
    pub request_timeout: Duration,
    /// How long a request waits for the UDP datagram of its lease. Default 2 s.
    pub udp_grace: Duration,
}

impl Default for BreachConfig {
    fn default() -> Self {
        Self {
            lease_timeout: Duration::from_secs(90),
            max_leases: 16384,
            max_leases_per_ip: 256,
            max_connections: 256,
            max_connections_per_ip: 64,
            max_waiters: 192,
            request_timeout: Duration::from_secs(10),
            udp_grace: Duration::from_secs(2),
        }
    }
}

/// A TCP connection, as the core numbers them (from [`Breach::handle_connect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cb#{}", self.0)
    }
}

/// What the runtime must do, from [`Breach::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write `response` to `conn` (as one JSON object and a newline).
    Respond {
        /// The connection.
        conn: ConnId,
        /// What to write.
        response: Response,
    },
    /// Close `conn`, after writing what was queued for it. The core has forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// Why a TCP connection was refused by [`Breach::handle_connect`]. Its text is meant for the
/// `Error` field of a response written before closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectRefused {
    /// [`BreachConfig::max_connections`] are open.
    Full,
    /// The source IP has [`BreachConfig::max_connections_per_ip`] open.
    IpFull,
}

impl std::fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Full => "the server has too many connections; try again later",
            Self::IpFull => "too many connections from this IP; try again later",
        })
    }
}

impl std::error::Error for ConnectRefused {}

/// What the runtime could not decode on a connection, for [`Breach::handle_malformed`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// More than [`MAX_REQUEST_LEN`] bytes without a complete request.
    TooLong,
    /// Not a JSON request; the decoder's reason.
    Invalid(String),
}

/// What [`Breach::handle_udp`] did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum UdpOutcome {
    /// A new lease.
    Leased,
    /// An existing lease, renewed (its address updated).
    Renewed,
    /// No lease: a bound was reached.
    Refused(LeaseRefused),
}

/// Counters since the machine started, from [`Breach::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreachStats {
    /// UDP requests handled.
    pub udp_requests: u64,
    /// UDP requests refused a lease by a bound.
    pub leases_refused: u64,
    /// Leases that expired.
    pub leases_expired: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Connections refused by a bound.
    pub connections_refused: u64,
    /// Requests handled.
    pub requests: u64,
    /// Undecodable or oversize requests.
    pub malformed: u64,
    /// Successful responses (one per side of a meeting).
    pub responses: u64,
    /// Error responses.
    pub errors: u64,
}
