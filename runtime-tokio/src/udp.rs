//! The node's UDP socket on any runtime: batched sending (GSO: one syscall for a run of
//! same-sized datagrams to one destination), batched receiving (recvmmsg and GRO), and
//! per-datagram TTLs for hole-punching probes. quinn-udp does the cmsg work and falls back to
//! one datagram per syscall where the OS lacks GSO or GRO. Nothing here waits: a full or empty
//! socket is `WouldBlock`, for the runtime to wait on its own way. A socket that needs the TTL
//! of received datagrams (a rendezvous server's, see [`Udp::report_ttl`]) receives them one
//! per syscall instead (`ttl.rs`).

mod ttl;

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsFd;

use burrow_core::Transmit;
use quinn_udp::{RecvMeta, UdpSocketState};
use socket2::SockRef;

/// Largest datagram (or GRO batch) one receive buffer holds.
const MAX_DATAGRAM: usize = 65_536;
/// Receive buffers per recvmmsg call.
const RX_BATCH: usize = 8;
/// Largest GSO batch in bytes (an IP packet's limit, less headers).
const MAX_GSO_BYTES: usize = 65_000;
/// Socket buffers we ask for, so a burst of GSO batches is not dropped on the floor.
const SOCKET_BUFFER: usize = 4 << 20;

/// The socket's batching state: GSO, GRO, the receive buffers and the default TTL.
pub struct Udp {
    state: UdpSocketState,
    /// The socket's own TTL / hop limit, restored after a limited datagram.
    default_ttl: Option<u32>,
    /// Where a GSO batch is assembled.
    batch: Vec<u8>,
    /// `RX_BATCH` receive buffers of `MAX_DATAGRAM` bytes, end to end.
    rx: Vec<u8>,
    meta: [RecvMeta; RX_BATCH],
    /// Whether received datagrams come with their TTL (see [`Self::report_ttl`]).
    with_ttl: bool,
}

impl std::fmt::Debug for Udp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Udp")
            .field("max_gso_segments", &self.state.max_gso_segments())
            .field("gro_segments", &self.state.gro_segments())
            .finish()
    }
}

/// Sets the TTL (IPv4) or hop limit (IPv6) of `socket`.
fn set_ttl(socket: &impl AsFd, ttl: u32) -> io::Result<()> {
    let sock = SockRef::from(socket);
    match sock.local_addr()?.as_socket() {
        Some(SocketAddr::V6(_)) => sock.set_unicast_hops_v6(ttl),
        _ => sock.set_ttl_v4(ttl),
    }
}

impl Udp {
    /// Sets up batching on a bound, non-blocking socket.
    pub fn new(socket: &impl AsFd) -> io::Result<Self> {
        let state = UdpSocketState::new(socket.into())?;
        // Best effort: the OS caps these at its configured maximum.
        let _ = state.set_send_buffer_size(socket.into(), SOCKET_BUFFER);
        let _ = state.set_recv_buffer_size(socket.into(), SOCKET_BUFFER);
        let sock = SockRef::from(socket);
        let default_ttl = match sock.local_addr()?.as_socket() {
            Some(SocketAddr::V4(_)) => sock.ttl_v4().ok(),
            Some(SocketAddr::V6(_)) => sock.unicast_hops_v6().ok(),
            None => None,
        };
        Ok(Self {
            state,
            default_ttl,
            batch: Vec::with_capacity(MAX_GSO_BYTES),
            rx: vec![0u8; RX_BATCH * MAX_DATAGRAM],
            meta: [RecvMeta::default(); RX_BATCH],
            with_ttl: false,
        })
    }

    /// From now on, [`Self::recv`] hands each datagram's IP TTL (IPv6: hop limit) along, read
    /// with `IP_RECVTTL` / `IPV6_RECVHOPLIMIT`, one datagram per syscall. For a rendezvous
    /// server, which tells daemons the TTL their requests arrived with.
    pub fn report_ttl(&mut self, socket: &impl AsFd) -> io::Result<()> {
        ttl::enable(socket)?;
        self.with_ttl = true;
        Ok(())
    }

    /// Whether the OS batches sends (GSO) and receives (GRO) on this socket.
    pub fn batches(&self) -> (bool, bool) {
        (
            self.state.max_gso_segments() > 1,
            self.state.gro_segments() > 1,
        )
    }

    /// Most datagrams one send may carry (1 without GSO): what to give
    /// `Node::set_max_segments`, so that the core hands out runs this socket can send whole.
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }

    /// Sends the first transmits of `transmits` with one syscall and returns how many it
    /// took: a run the core made ([`Transmit::segment_size`]) as it is; one with a TTL alone;
    /// or consecutive single datagrams to one destination with no TTL, all of one size but
    /// the last (which may be shorter), copied together into one GSO batch. `WouldBlock` when the socket's
    /// buffer is full (nothing was taken). Other errors are logged and the run is dropped: a
    /// lost datagram is the protocol's to recover.
    pub fn send(&mut self, socket: &impl AsFd, transmits: &[Transmit]) -> io::Result<usize> {
        let Some(first) = transmits.first() else {
            return Ok(0);
        };
        if let (Some(ttl), Some(default)) = (first.ttl, self.default_ttl) {
            set_ttl(socket, u32::from(ttl))?;
            let sent = self.send_run(socket, first.dst, &first.payload, None);
            set_ttl(socket, default)?;
            return sent.map(|()| 1);
        }
        if let Some(size) = first.segment_size {
            // A run the core sealed end to end: one send, nothing copied.
            return self
                .send_run(socket, first.dst, &first.payload, Some(size))
                .map(|()| 1);
        }
        let max_segments = self.state.max_gso_segments().max(1);
        let size = first.payload.len();
        let (mut end, mut total) = (1, size);
        while end < transmits.len() && end < max_segments && size > 0 {
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
        if end == 1 {
            return self
                .send_run(socket, first.dst, &first.payload, None)
                .map(|()| 1);
        }
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        for t in &transmits[..end] {
            batch.extend_from_slice(&t.payload);
        }
        let sent = self.send_run(socket, first.dst, &batch, Some(size));
        self.batch = batch;
        sent.map(|()| end)
    }

    fn send_run(
        &self,
        socket: &impl AsFd,
        destination: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit = quinn_udp::Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        match self.state.send(socket.into(), &transmit) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            Err(e) => {
                tracing::debug!(dst = %destination, error = %e, "send failed");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Receives one batch (one syscall), calling `each` for every datagram (GRO batches split
    /// into their segments). `WouldBlock` when the socket is empty; other errors (ICMP errors
    /// surface here on some systems) are logged: the protocol recovers from the loss.
    ///
    /// Returns whether the batch found the socket drained: it held fewer datagrams than the
    /// batch had room for, so another call would only say `WouldBlock` (with epoll, a
    /// datagram that arrives later is a new event). The receive-TTL path, one datagram per
    /// call, cannot tell and says not.
    ///
    /// `each` gets the sender, the datagram (in the receive buffer, which it may change: the
    /// node decrypts in place) and its TTL (`None` unless [`Self::report_ttl`]).
    pub fn recv(
        &mut self,
        socket: &impl AsFd,
        mut each: impl FnMut(SocketAddr, &mut [u8], Option<u8>),
    ) -> io::Result<bool> {
        if self.with_ttl {
            for _ in 0..RX_BATCH {
                match ttl::recv(socket, &mut self.rx[..MAX_DATAGRAM]) {
                    Ok(r) => {
                        let stride = r.stride.unwrap_or(r.len).max(1);
                        for datagram in self.rx[..r.len].chunks_mut(stride) {
                            each(r.from, datagram, r.ttl);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                    Err(e) => {
                        tracing::debug!(error = %e, "receive failed");
                        return Ok(false);
                    }
                }
            }
            return Ok(false);
        }
        let mut chunks = self.rx.chunks_mut(MAX_DATAGRAM);
        let mut bufs: [IoSliceMut<'_>; RX_BATCH] = std::array::from_fn(|_| {
            IoSliceMut::new(chunks.next().expect("rx holds RX_BATCH buffers"))
        });
        match self.state.recv(socket.into(), &mut bufs, &mut self.meta) {
            Ok(n) => {
                let meta = &self.meta;
                for (buf, m) in self.rx.chunks_mut(MAX_DATAGRAM).zip(meta).take(n) {
                    let stride = m.stride.max(1);
                    for datagram in buf[..m.len].chunks_mut(stride) {
                        each(m.addr, datagram, None);
                    }
                }
                Ok(n < RX_BATCH)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "receive failed");
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn bind() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// A datagram with a TTL is sent, and the socket's own TTL is back afterwards.
    #[test]
    fn ttl_applies_to_one_datagram_and_is_restored() {
        let (a, b) = (bind(), bind());
        let default = SockRef::from(&a).ttl_v4().unwrap();
        let mut udp = Udp::new(&a).unwrap();
        let t = Transmit {
            segment_size: None,
            dst: b.local_addr().unwrap(),
            ttl: Some(3),
            payload: bytes::Bytes::from_static(b"probe"),
        };
        assert_eq!(udp.send(&a, &[t.clone(), t]).unwrap(), 1, "one at a time");
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"probe");
        assert_eq!(from, a.local_addr().unwrap());
        assert_eq!(SockRef::from(&a).ttl_v4().unwrap(), default);
        assert_ne!(
            default, 3,
            "the test needs a default TTL other than the probe's"
        );
    }

    /// A run of datagrams (GSO where the OS has it) and a short last one arrive as sent, in
    /// order and with their boundaries, through the batched receive.
    #[test]
    fn batched_send_and_receive_keep_datagram_boundaries() {
        let (a, b) = (bind(), bind());
        let mut tx = Udp::new(&a).unwrap();
        let mut rx = Udp::new(&b).unwrap();
        b.set_nonblocking(true).unwrap();
        let dst = b.local_addr().unwrap();
        let mut sent: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1200]).collect();
        sent.push(vec![99; 300]);
        sent.push(vec![100; 1200]);
        let transmits: Vec<Transmit> = sent
            .iter()
            .map(|p| Transmit {
                segment_size: None,
                dst,
                ttl: None,
                payload: bytes::Bytes::from(p.clone()),
            })
            .collect();
        let mut i = 0;
        while i < transmits.len() {
            i += tx.send(&a, &transmits[i..]).unwrap();
        }
        let mut got: Vec<Vec<u8>> = Vec::new();
        let give_up = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() < sent.len() && std::time::Instant::now() < give_up {
            let _ = rx.recv(&b, |from, d, ttl| {
                assert_eq!(from, a.local_addr().unwrap());
                assert_eq!(ttl, None);
                got.push(d.to_vec());
            });
        }
        assert_eq!(got, sent);
    }

    /// A receive says whether it found the socket drained: not after a full batch (more may
    /// wait), yes after a short one (the next receive would only say `WouldBlock`).
    #[test]
    fn a_short_batch_says_the_socket_is_drained() {
        let (a, b) = (bind(), bind());
        let mut rx = Udp::new(&b).unwrap();
        b.set_nonblocking(true).unwrap();
        let dst = b.local_addr().unwrap();
        // Sizes all different, so GRO joins none of them.
        for i in 0..RX_BATCH + 3 {
            a.send_to(&vec![7; 1000 + i], dst).unwrap();
        }
        // Loopback delivers as it sends; the pause covers a delivery left to ksoftirqd.
        std::thread::sleep(Duration::from_millis(50));
        let mut sizes = Vec::new();
        let mut each = |_, d: &mut [u8], _| sizes.push(d.len());
        assert!(!rx.recv(&b, &mut each).unwrap(), "a full batch");
        assert!(rx.recv(&b, &mut each).unwrap(), "a short batch");
        let last = rx.recv(&b, &mut each).unwrap_err();
        assert_eq!(last.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            sizes,
            (0..RX_BATCH + 3).map(|i| 1000 + i).collect::<Vec<_>>()
        );
    }

    /// With `report_ttl`, each datagram comes with the TTL it was sent with (loopback: no
    /// router in between).
    #[test]
    fn received_datagrams_carry_their_ttl_when_asked() {
        let (a, b) = (bind(), bind());
        let mut tx = Udp::new(&a).unwrap();
        let mut rx = Udp::new(&b).unwrap();
        rx.report_ttl(&b).unwrap();
        b.set_nonblocking(true).unwrap();
        let dst = b.local_addr().unwrap();
        let default = SockRef::from(&a).ttl_v4().unwrap();
        for ttl in [Some(5), None] {
            let t = Transmit {
                segment_size: None,
                dst,
                ttl,
                payload: bytes::Bytes::from_static(b"x"),
            };
            assert_eq!(tx.send(&a, &[t]).unwrap(), 1);
        }
        let mut got = Vec::new();
        let give_up = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() < 2 && std::time::Instant::now() < give_up {
            let _ = rx.recv(&b, |from, d, ttl| {
                assert_eq!((from, &*d), (a.local_addr().unwrap(), &b"x"[..]));
                got.push(ttl);
            });
        }
        assert_eq!(got, vec![Some(5), u8::try_from(default).ok()]);
        // A run of datagrams (one GRO batch where the OS coalesces) keeps its boundaries.
        let sent: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1200]).collect();
        let transmits: Vec<Transmit> = sent
            .iter()
            .map(|p| Transmit {
                segment_size: None,
                dst,
                ttl: None,
                payload: bytes::Bytes::from(p.clone()),
            })
            .collect();
        let mut i = 0;
        while i < transmits.len() {
            i += tx.send(&a, &transmits[i..]).unwrap();
        }
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let give_up = std::time::Instant::now() + Duration::from_secs(5);
        while batch.len() < sent.len() && std::time::Instant::now() < give_up {
            let _ = rx.recv(&b, |_, d, ttl| {
                assert!(ttl.is_some());
                batch.push(d.to_vec());
            });
        }
        assert_eq!(batch, sent);
    }
}
