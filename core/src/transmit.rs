//! Datagrams the core wants sent.

use std::net::SocketAddr;

use bytes::Bytes;

/// One UDP datagram to send, produced by [`crate::Endpoint::poll_transmit`].
///
/// The adapter sends `payload` to `dst` from the endpoint's socket. When `ttl` is set it sends
/// this one datagram with that IP TTL (IPv4) or hop limit (IPv6) and restores the socket's
/// default afterwards; hole-punching probes use it so that they die before reaching the peer's
/// NAT. The core never touches socket options itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send the datagram.
    pub dst: SocketAddr,
    /// IP TTL / hop limit for this datagram only; `None` means the socket's default.
    pub ttl: Option<u8>,
    /// The datagram's bytes, owned so the adapter may queue them.
    pub payload: Bytes,
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmit")
            .field("dst", &self.dst)
            .field("ttl", &self.ttl)
            .field("len", &self.payload.len())
            .finish()
    }
}
