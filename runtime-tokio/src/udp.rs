//! The endpoint's UDP socket: binding, and sending one datagram with a limited TTL.

use std::io;
use std::net::SocketAddr;

use burrow_core::Transmit;
use socket2::SockRef;
use tokio::net::UdpSocket;

/// Binds `addr` non-blocking and registers it with the current runtime.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Sends datagrams, applying each one's TTL (set before, restored after).
pub(crate) struct Sender {
    /// The socket's own TTL / hop limit, restored after a limited datagram.
    default_ttl: Option<u32>,
}

impl Sender {
    pub(crate) fn new(socket: &UdpSocket) -> Self {
        let sock = SockRef::from(socket);
        let default_ttl = match socket.local_addr() {
            Ok(SocketAddr::V4(_)) => sock.ttl_v4().ok(),
            Ok(SocketAddr::V6(_)) => sock.unicast_hops_v6().ok(),
            Err(_) => None,
        };
        Self { default_ttl }
    }

    fn set_ttl(socket: &UdpSocket, ttl: u32) -> io::Result<()> {
        let sock = SockRef::from(socket);
        match socket.local_addr()? {
            SocketAddr::V4(_) => sock.set_ttl_v4(ttl),
            SocketAddr::V6(_) => sock.set_unicast_hops_v6(ttl),
        }
    }

    /// Sends `t`; waits for the socket if its buffer is full. Errors are the caller's to log:
    /// a lost datagram is the protocol's to recover.
    pub(crate) async fn send(&self, socket: &UdpSocket, t: &Transmit) -> io::Result<()> {
        match (t.ttl, self.default_ttl) {
            (Some(ttl), Some(default)) => {
                Self::set_ttl(socket, u32::from(ttl))?;
                let sent = socket.send_to(&t.payload, t.dst).await;
                Self::set_ttl(socket, default)?;
                sent.map(drop)
            }
            _ => socket.send_to(&t.payload, t.dst).await.map(drop),
        }
    }
}
