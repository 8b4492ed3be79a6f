//! Datagrams the core wants sent.

use std::net::SocketAddr;

use bytes::Bytes;

/// Most bytes in one run of datagrams ([`Transmit::segment_size`]): what one UDP send with
/// segmentation offload (Linux `UDP_SEGMENT`) may carry, an IP packet's 65,535 bytes less
/// headers, with room to spare.
pub const MAX_RUN_BYTES: usize = 65_000;

/// Most datagrams in one run: the Linux kernel's `UDP_MAX_SEGMENTS`.
pub const MAX_RUN_SEGMENTS: usize = 64;

/// One UDP datagram to send, or a run of them to one destination, produced by
/// [`crate::Endpoint::poll_transmit`] (always one datagram) and
/// [`crate::Endpoint::poll_transmit_run`] (runs, for runtimes with segmentation offload).
///
/// The adapter sends `payload` to `dst` from the endpoint's socket. When `ttl` is set it sends
/// this one datagram with that IP TTL (IPv4) or hop limit (IPv6) and restores the socket's
/// default afterwards; hole-punching probes use it so that they die before reaching the peer's
/// NAT. The core never touches socket options itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send the datagram.
    pub dst: SocketAddr,
    /// IP TTL / hop limit for this datagram only; `None` means the socket's default. A run
    /// never has one.
    pub ttl: Option<u8>,
    /// The datagram's bytes, owned so the adapter may queue them; for a run, its datagrams
    /// end to end.
    pub payload: Bytes,
    /// `None`: `payload` is one datagram. `Some(n)`: `payload` is several datagrams of `n`
    /// bytes each, end to end, the last of which may be shorter, to be sent as one
    /// segmentation-offload send (`UDP_SEGMENT`) or split at every `n` bytes. Only
    /// [`crate::Endpoint::poll_transmit_run`] returns runs.
    pub segment_size: Option<usize>,
}

impl Transmit {
    /// How many datagrams this carries.
    pub fn datagrams(&self) -> usize {
        match self.segment_size {
            Some(n) if n > 0 => self.payload.len().div_ceil(n),
            _ => 1,
        }
    }

    /// The datagrams of a run one by one (a single datagram is itself), each sharing the
    /// run's buffer: for a runtime or a test network that sends without segmentation offload.
    pub fn into_datagrams(mut self) -> impl Iterator<Item = Transmit> {
        std::iter::from_fn(move || (!self.payload.is_empty()).then(|| self.split_datagrams(1)))
    }

    /// Splits the first `count` datagrams off a run (all of it if it holds no more), leaving
    /// the rest in `self`; a single datagram or a one-datagram remainder loses its
    /// `segment_size`. Copies nothing: the parts share the run's buffer.
    pub(crate) fn split_datagrams(&mut self, count: usize) -> Transmit {
        let Some(size) = self.segment_size else {
            return self.take_all();
        };
        let at = size.saturating_mul(count.max(1));
        if at >= self.payload.len() {
            return self.take_all();
        }
        let head = self.payload.split_to(at);
        if self.payload.len() <= size {
            self.segment_size = None;
        }
        Transmit {
            dst: self.dst,
            ttl: None,
            segment_size: (count > 1).then_some(size),
            payload: head,
        }
    }

    fn take_all(&mut self) -> Transmit {
        let mut all = Transmit {
            dst: self.dst,
            ttl: self.ttl,
            payload: std::mem::take(&mut self.payload),
            segment_size: self.segment_size.take(),
        };
        if all.payload.len() <= all.segment_size.unwrap_or(0) {
            all.segment_size = None;
        }
        all
    }
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmit")
            .field("dst", &self.dst)
            .field("ttl", &self.ttl)
            .field("len", &self.payload.len())
            .field("segment_size", &self.segment_size)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sizes: &[usize], segment: usize) -> Transmit {
        let mut payload = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            payload.extend(std::iter::repeat_n(i as u8, n));
        }
        Transmit {
            dst: "192.0.2.1:9".parse().unwrap(),
            ttl: None,
            payload: payload.into(),
            segment_size: Some(segment),
        }
    }

    /// Splitting one at a time yields every datagram, the short last one included, each
    /// whole and without a segment size.
    #[test]
    fn a_run_splits_into_its_datagrams() {
        let mut t = run(&[100, 100, 100, 40], 100);
        assert_eq!(t.datagrams(), 4);
        let mut got = Vec::new();
        while !t.payload.is_empty() {
            let one = t.split_datagrams(1);
            assert_eq!(one.segment_size, None);
            got.push(one.payload);
        }
        let lens: Vec<_> = got.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [100, 100, 100, 40]);
        let again: Vec<_> = run(&[100, 100, 100, 40], 100).into_datagrams().collect();
        assert_eq!(
            again.iter().map(|t| t.payload.clone()).collect::<Vec<_>>(),
            got
        );
        for (i, p) in got.iter().enumerate() {
            assert!(p.iter().all(|&b| b == i as u8), "datagram {i} intact");
        }
    }

    /// A runtime that takes at most three at a time gets runs of three, then the rest.
    #[test]
    fn a_run_splits_into_smaller_runs() {
        let mut t = run(&[50; 5], 50);
        let first = t.split_datagrams(3);
        assert_eq!((first.datagrams(), first.segment_size), (3, Some(50)));
        assert_eq!(first.payload.len(), 150);
        let rest = t.split_datagrams(3);
        assert_eq!((rest.datagrams(), rest.segment_size), (2, Some(50)));
        assert!(t.payload.is_empty());
    }
}
