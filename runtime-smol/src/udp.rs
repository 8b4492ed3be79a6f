//! The endpoint's UDP socket: sending one datagram with a limited TTL.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use burrow_core::Transmit;
use smol::Async;
use socket2::SockRef;

/// Sends datagrams, applying each one's TTL (set before, restored after).
pub(crate) struct Sender {
    /// The socket's own TTL / hop limit, restored after a limited datagram.
    default_ttl: Option<u32>,
}

impl Sender {
    pub(crate) fn new(socket: &Async<UdpSocket>) -> Self {
        let sock = SockRef::from(socket.get_ref());
        let default_ttl = match socket.get_ref().local_addr() {
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
    pub(crate) async fn send(&self, socket: &Async<UdpSocket>, t: &Transmit) -> io::Result<()> {
        match (t.ttl, self.default_ttl) {
            (Some(ttl), Some(default)) => {
                Self::set_ttl(socket.get_ref(), u32::from(ttl))?;
                let sent = socket.send_to(&t.payload, t.dst).await;
                Self::set_ttl(socket.get_ref(), default)?;
                sent.map(drop)
            }
            _ => socket.send_to(&t.payload, t.dst).await.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram with a TTL is sent, and the socket's own TTL is back afterwards.
    #[test]
    fn ttl_applies_to_one_datagram_and_is_restored() {
        smol::block_on(async {
            let a = Async::<UdpSocket>::bind(([127, 0, 0, 1], 0)).unwrap();
            let b = Async::<UdpSocket>::bind(([127, 0, 0, 1], 0)).unwrap();
            let default = SockRef::from(a.get_ref()).ttl_v4().unwrap();
            let sender = Sender::new(&a);
            let t = Transmit {
                dst: b.get_ref().local_addr().unwrap(),
                ttl: Some(3),
                payload: bytes::Bytes::from_static(b"probe"),
            };
            sender.send(&a, &t).await.unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"probe");
            assert_eq!(from, a.get_ref().local_addr().unwrap());
            assert_eq!(SockRef::from(a.get_ref()).ttl_v4().unwrap(), default);
            assert_ne!(
                default, 3,
                "the test needs a default TTL other than the probe's"
            );
        });
    }
}
