//! Receive-side reassembly: out-of-order stream data lands in a byte ring at its offset, and
//! the application reads the contiguous prefix.
//!
//! The ring grows only as far as data actually arrived (at most the flow-control window past
//! the read offset, which the caller enforces) and keeps its allocation for reuse.

use std::collections::VecDeque;

use super::ranges::RangeSet;

/// Buffers data at `read_offset..` and tracks which offsets have arrived.
#[derive(Clone, Debug, Default)]
pub(crate) struct Assembler {
    /// `buf[0]` holds the byte at `read_offset`; holes are zero until filled.
    buf: VecDeque<u8>,
    read_offset: u64,
    /// Received offsets at or above `read_offset`.
    received: RangeSet,
}

impl Assembler {
    /// The offset of the next byte the application reads.
    pub(crate) fn read_offset(&self) -> u64 {
        self.read_offset
    }

    /// Stores `data` found at `offset`; parts already read or already held are ignored.
    pub(crate) fn insert(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        if end <= self.read_offset {
            return;
        }
        let skip = self.read_offset.saturating_sub(offset);
        // `skip < data.len()` because `end > read_offset`.
        let data = &data[skip as usize..];
        let offset = offset + skip;
        if !self.received.insert(offset..end) {
            return;
        }
        let pos = (offset - self.read_offset) as usize;
        if self.buf.len() < pos + data.len() {
            self.buf.resize(pos + data.len(), 0);
        }
        let (a, b) = self.buf.as_mut_slices();
        let mut written = 0;
        if pos < a.len() {
            let n = (a.len() - pos).min(data.len());
            a[pos..pos + n].copy_from_slice(&data[..n]);
            written = n;
        }
        if written < data.len() {
            let start = pos + written - a.len();
            b[start..start + data.len() - written].copy_from_slice(&data[written..]);
        }
    }

    /// Contiguous bytes ready to read.
    pub(crate) fn readable(&self) -> u64 {
        match self.received.first() {
            Some(r) if r.start == self.read_offset => r.end - r.start,
            _ => 0,
        }
    }

    /// Copies up to `out.len()` contiguous bytes into `out` and consumes them.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let n = (self.readable() as usize).min(out.len());
        if n == 0 {
            return 0;
        }
        let (a, b) = self.buf.as_slices();
        let from_a = n.min(a.len());
        out[..from_a].copy_from_slice(&a[..from_a]);
        out[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.buf.drain(..n);
        self.received
            .remove(self.read_offset..self.read_offset + n as u64);
        self.read_offset += n as u64;
        n
    }

    /// Drops everything buffered and moves the read offset to `offset` (reset or stop).
    pub(crate) fn discard_until(&mut self, offset: u64) {
        self.buf = VecDeque::new();
        self.received.clear();
        self.read_offset = self.read_offset.max(offset);
    }

    /// Heap bytes held.
    pub(crate) fn heap_size(&self) -> usize {
        self.buf.capacity() + self.received.heap_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn out_of_order_data_is_read_in_order() {
        let mut a = Assembler::default();
        a.insert(5, b"fghij");
        assert_eq!(a.readable(), 0);
        a.insert(0, b"abc");
        assert_eq!(a.readable(), 3);
        a.insert(2, b"cde");
        assert_eq!(a.readable(), 10);
        let mut out = [0u8; 4];
        assert_eq!(a.read(&mut out), 4);
        assert_eq!(&out, b"abcd");
        // Data already read is ignored, overlapping new data is kept.
        a.insert(0, b"abcdefghijk");
        let mut out = [0u8; 20];
        assert_eq!(a.read(&mut out), 7);
        assert_eq!(&out[..7], b"efghijk");
        assert_eq!(a.read_offset(), 11);
        assert_eq!(a.read(&mut out), 0);
    }

    proptest! {
        #[test]
        fn any_chunking_and_order_reassembles(
            data in proptest::collection::vec(any::<u8>(), 1..400),
            cuts in proptest::collection::vec((0usize..400, 1usize..60), 1..40),
            read_sizes in proptest::collection::vec(1usize..50, 1..20),
        ) {
            let mut a = Assembler::default();
            let mut got = Vec::new();
            let mut reads = read_sizes.iter().cycle();
            let mut chunks: Vec<(usize, usize)> = cuts.into_iter()
                .map(|(s, l)| (s % data.len(), l))
                .map(|(s, l)| (s, (s + l).min(data.len())))
                .collect();
            // Make sure everything is eventually covered.
            chunks.push((0, data.len()));
            for (s, e) in chunks {
                a.insert(s as u64, &data[s..e]);
                let mut out = vec![0u8; *reads.next().unwrap()];
                let n = a.read(&mut out);
                got.extend_from_slice(&out[..n]);
            }
            let mut out = vec![0u8; 400];
            loop {
                let n = a.read(&mut out);
                if n == 0 { break; }
                got.extend_from_slice(&out[..n]);
            }
            prop_assert_eq!(got, data);
        }
    }
}
