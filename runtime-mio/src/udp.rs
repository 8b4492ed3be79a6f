//! The endpoint's UDP socket: sending one datagram with a limited TTL, and queueing what the
//! socket's buffer does not take until it is writable again.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use burrow_core::Transmit;
use mio::net::UdpSocket;
use socket2::SockRef;

/// Sends datagrams in order, applying each one's TTL (set before, restored after).
pub(crate) struct Sender {
    /// The socket's own TTL / hop limit, restored after a limited datagram.
    default_ttl: Option<u32>,
    /// Datagrams waiting for the socket to become writable, oldest first.
    queue: VecDeque<Transmit>,
}

impl Sender {
    pub(crate) fn new(socket: &UdpSocket) -> Self {
        let sock = SockRef::from(socket);
        let default_ttl = match socket.local_addr() {
            Ok(SocketAddr::V4(_)) => sock.ttl_v4().ok(),
            Ok(SocketAddr::V6(_)) => sock.unicast_hops_v6().ok(),
            Err(_) => None,
        };
        Self {
            default_ttl,
            queue: VecDeque::new(),
        }
    }

    fn set_ttl(socket: &UdpSocket, ttl: u32) -> io::Result<()> {
        let sock = SockRef::from(socket);
        match socket.local_addr()? {
            SocketAddr::V4(_) => sock.set_ttl_v4(ttl),
            SocketAddr::V6(_) => sock.set_unicast_hops_v6(ttl),
        }
    }

    fn send_one(&self, socket: &UdpSocket, t: &Transmit) -> io::Result<()> {
        match (t.ttl, self.default_ttl) {
            (Some(ttl), Some(default)) => {
                Self::set_ttl(socket, u32::from(ttl))?;
                let sent = socket.send_to(&t.payload, t.dst);
                Self::set_ttl(socket, default)?;
                sent.map(drop)
            }
            _ => socket.send_to(&t.payload, t.dst).map(drop),
        }
    }

    /// Queues `t` and sends what the socket takes.
    pub(crate) fn send(&mut self, socket: &UdpSocket, t: Transmit) {
        self.queue.push_back(t);
        self.flush(socket);
    }

    /// Sends queued datagrams until the socket's buffer is full (then the socket's next
    /// writable event calls this again). Other errors drop the datagram: a lost datagram is
    /// the protocol's to recover.
    pub(crate) fn flush(&mut self, socket: &UdpSocket) {
        while let Some(t) = self.queue.front() {
            match self.send_one(socket, t) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => tracing::debug!(dst = %t.dst, error = %e, "send failed"),
                Ok(()) => {}
            }
            self.queue.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram with a TTL is sent, and the socket's own TTL is back afterwards.
    #[test]
    fn ttl_applies_to_one_datagram_and_is_restored() {
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let default = SockRef::from(&a).ttl_v4().unwrap();
        let mut sender = Sender::new(&a);
        let t = Transmit {
            dst: b.local_addr().unwrap(),
            ttl: Some(3),
            payload: bytes::Bytes::from_static(b"probe"),
        };
        sender.send(&a, t);
        let mut buf = [0u8; 16];
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"probe");
        assert_eq!(from, a.local_addr().unwrap());
        assert_eq!(SockRef::from(&a).ttl_v4().unwrap(), default);
        assert_ne!(
            default, 3,
            "the test needs a default TTL other than the probe's"
        );
    }
}
