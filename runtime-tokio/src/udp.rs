//! The endpoint's UDP socket: binding, batched sending (GSO: one syscall for a run of
//! same-sized datagrams to one destination) and batched receiving (recvmmsg and GRO), with
//! per-datagram TTLs for hole-punching probes. quinn-udp does the cmsg work and falls back to
//! one datagram per syscall where the OS lacks GSO or GRO.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use burrow_core::Transmit;
use quinn_udp::{RecvMeta, UdpSocketState};
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Largest datagram (or GRO batch) one receive buffer holds.
const MAX_DATAGRAM: usize = 65_536;
/// Receive buffers per recvmmsg call.
const RX_BATCH: usize = 8;
/// Largest GSO batch in bytes (an IP packet's limit, less headers).
const MAX_GSO_BYTES: usize = 65_000;
/// Socket buffers we ask for, so a burst of GSO batches is not dropped on the floor.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds `addr` non-blocking and registers it with the current runtime.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// The socket's batching state: GSO, GRO, the receive buffers and the default TTL.
pub(crate) struct Udp {
    state: UdpSocketState,
    /// The socket's own TTL / hop limit, restored after a limited datagram.
    default_ttl: Option<u32>,
    /// Where a GSO batch is assembled.
    batch: Vec<u8>,
    /// `RX_BATCH` receive buffers of `MAX_DATAGRAM` bytes, end to end.
    rx: Vec<u8>,
    meta: [RecvMeta; RX_BATCH],
}

impl Udp {
    pub(crate) fn new(socket: &UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new(socket.into())?;
        // Best effort: the OS caps these at its configured maximum.
        let _ = state.set_send_buffer_size(socket.into(), SOCKET_BUFFER);
        let _ = state.set_recv_buffer_size(socket.into(), SOCKET_BUFFER);
        let sock = SockRef::from(socket);
        let default_ttl = match socket.local_addr() {
            Ok(SocketAddr::V4(_)) => sock.ttl_v4().ok(),
            Ok(SocketAddr::V6(_)) => sock.unicast_hops_v6().ok(),
            Err(_) => None,
        };
        Ok(Self {
            state,
            default_ttl,
            batch: Vec::with_capacity(MAX_GSO_BYTES),
            rx: vec![0u8; RX_BATCH * MAX_DATAGRAM],
            meta: [RecvMeta::default(); RX_BATCH],
        })
    }

    fn set_ttl(socket: &UdpSocket, ttl: u32) -> io::Result<()> {
        let sock = SockRef::from(socket);
        match socket.local_addr()? {
            SocketAddr::V4(_) => sock.set_ttl_v4(ttl),
            SocketAddr::V6(_) => sock.set_unicast_hops_v6(ttl),
        }
    }

    /// Sends every transmit in order, waiting for the socket when its buffer is full. A run of
    /// datagrams to one destination with no TTL, all of one size but the last (which may be
    /// shorter), goes out as one GSO batch. Send errors are logged and dropped: a lost datagram
    /// is the protocol's to recover.
    pub(crate) async fn send_all(&mut self, socket: &UdpSocket, transmits: &[Transmit]) {
        let max_segments = self.state.max_gso_segments().max(1);
        let mut i = 0;
        while i < transmits.len() {
            let first = &transmits[i];
            if let (Some(ttl), Some(default)) = (first.ttl, self.default_ttl) {
                if let Err(e) = self.send_with_ttl(socket, first, ttl, default).await {
                    tracing::debug!(dst = %first.dst, error = %e, "send failed");
                }
                i += 1;
                continue;
            }
            let size = first.payload.len();
            let mut end = i + 1;
            let mut total = size;
            while end < transmits.len() && end - i < max_segments && size > 0 {
                let t = &transmits[end];
                let len = t.payload.len();
                if t.dst != first.dst
                    || t.ttl.is_some()
                    || len > size
                    || len == 0
                    || total + len > MAX_GSO_BYTES
                {
                    break;
                }
                total += len;
                end += 1;
                if len < size {
                    break;
                }
            }
            let (contents, segment_size) = if end - i == 1 {
                (&first.payload[..], None)
            } else {
                self.batch.clear();
                for t in &transmits[i..end] {
                    self.batch.extend_from_slice(&t.payload);
                }
                (&self.batch[..], Some(size))
            };
            let transmit = quinn_udp::Transmit {
                destination: first.dst,
                ecn: None,
                contents,
                segment_size,
                src_ip: None,
            };
            // `send` returns only WouldBlock; it logs and drops every other error.
            let state = &self.state;
            let _ = socket
                .async_io(Interest::WRITABLE, || state.send(socket.into(), &transmit))
                .await;
            i = end;
        }
    }

    async fn send_with_ttl(
        &self,
        socket: &UdpSocket,
        t: &Transmit,
        ttl: u8,
        default: u32,
    ) -> io::Result<()> {
        Self::set_ttl(socket, u32::from(ttl))?;
        let sent = socket.send_to(&t.payload, t.dst).await;
        Self::set_ttl(socket, default)?;
        sent.map(drop)
    }

    /// Receives what the socket holds without waiting, in batches, calling `each` for every
    /// datagram (GRO batches split into their segments), until the socket is empty or `rounds`
    /// batches were read. `Ok(true)` if it stopped because the socket was empty.
    pub(crate) fn recv_ready(
        &mut self,
        socket: &UdpSocket,
        rounds: usize,
        mut each: impl FnMut(SocketAddr, &[u8]),
    ) -> bool {
        for _ in 0..rounds {
            let mut chunks = self.rx.chunks_mut(MAX_DATAGRAM);
            let mut bufs: [IoSliceMut<'_>; RX_BATCH] = std::array::from_fn(|_| {
                IoSliceMut::new(chunks.next().expect("rx holds RX_BATCH buffers"))
            });
            let (state, meta) = (&self.state, &mut self.meta);
            match socket.try_io(Interest::READABLE, || {
                state.recv(socket.into(), &mut bufs, meta)
            }) {
                Ok(n) => {
                    for (buf, m) in self.rx.chunks(MAX_DATAGRAM).zip(&self.meta).take(n) {
                        let stride = m.stride.max(1);
                        for datagram in buf[..m.len].chunks(stride) {
                            each(m.addr, datagram);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                // ICMP errors surface here on some systems; the protocol recovers from the loss.
                Err(e) => tracing::debug!(error = %e, "receive failed"),
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram with a TTL is sent, and the socket's own TTL is back afterwards.
    #[tokio::test]
    async fn ttl_applies_to_one_datagram_and_is_restored() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let default = SockRef::from(&a).ttl_v4().unwrap();
        let mut udp = Udp::new(&a).unwrap();
        let t = Transmit {
            dst: b.local_addr().unwrap(),
            ttl: Some(3),
            payload: bytes::Bytes::from_static(b"probe"),
        };
        udp.send_all(&a, &[t]).await;
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"probe");
        assert_eq!(from, a.local_addr().unwrap());
        assert_eq!(SockRef::from(&a).ttl_v4().unwrap(), default);
        assert_ne!(
            default, 3,
            "the test needs a default TTL other than the probe's"
        );
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    /// A run of datagrams (GSO where the OS has it) and a short last one arrive as sent, in
    /// order and with their boundaries, through the batched receive.
    #[tokio::test]
    async fn batched_send_and_receive_keep_datagram_boundaries() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut tx = Udp::new(&a).unwrap();
        let mut rx = Udp::new(&b).unwrap();
        let dst = b.local_addr().unwrap();
        let mut sent: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1200]).collect();
        sent.push(vec![99; 300]);
        sent.push(vec![100; 1200]);
        let transmits: Vec<Transmit> = sent
            .iter()
            .map(|p| Transmit {
                dst,
                ttl: None,
                payload: bytes::Bytes::from(p.clone()),
            })
            .collect();
        tx.send_all(&a, &transmits).await;
        let mut got: Vec<Vec<u8>> = Vec::new();
        while got.len() < sent.len() {
            b.readable().await.unwrap();
            rx.recv_ready(&b, 4, |from, d| {
                assert_eq!(from, a.local_addr().unwrap());
                got.push(d.to_vec());
            });
        }
        assert_eq!(got, sent);
    }
}
