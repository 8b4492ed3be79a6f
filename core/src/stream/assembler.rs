//! Receive-side reassembly: stream data that arrives in order is appended to a byte ring the
//! application reads from; data that arrives ahead of a hole waits as a separate chunk keyed by
//! its offset until the hole is filled.
//!
//! Holes are never materialised: one byte at offset 1 MiB - 1 holds one byte (plus a chunk's
//! bookkeeping), not 1 MiB of zeros. Memory is bounded by the bytes that actually arrived, which
//! the caller keeps within the flow-control window, plus at most [`MAX_CHUNKS`] chunks' overhead.
//! Inserting touches the chunk before the new data and the chunks it absorbs (each chunk is
//! absorbed once), so n inserts cost O(n log n) map operations whatever their order.

use std::collections::{BTreeMap, VecDeque};

/// Out-of-order chunks one stream may hold. A peer that keeps more holes open than this is
/// fragmenting on purpose (a sender that fills packets needs over 4 MiB in flight on one stream,
/// beyond any window we grant); the stream layer treats it as a protocol violation.
pub(crate) const MAX_CHUNKS: usize = 4096;

/// Heap bytes a chunk costs besides its data (map node share, `Vec` header, allocator slack);
/// an estimate for [`Assembler::heap_size`].
const CHUNK_OVERHEAD: usize = 64;

/// The peer fragmented one stream's data into more than [`MAX_CHUNKS`] pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooFragmented;

/// Buffers data at `read_offset..` and tracks which offsets have arrived.
#[derive(Clone, Debug, Default)]
pub(crate) struct Assembler {
    /// Contiguous bytes from `read_offset`: what the application can read now.
    head: VecDeque<u8>,
    read_offset: u64,
    /// Disjoint, non-adjacent chunks after a hole, keyed by start offset; every key is above
    /// `read_offset + head.len()`.
    chunks: BTreeMap<u64, Vec<u8>>,
    /// Sum of the chunks' capacities.
    chunk_bytes: usize,
    /// Chunks looked at or moved by inserts, for tests that bound the work.
    #[cfg(test)]
    pub(crate) touched: u64,
}

impl Assembler {
    /// The offset of the next byte the application reads.
    pub(crate) fn read_offset(&self) -> u64 {
        self.read_offset
    }

    /// Out-of-order chunks held.
    #[cfg(test)]
    pub(crate) fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Stores `data` found at `offset`; parts already read or already held are ignored. Fails,
    /// storing nothing, when the data would open a chunk beyond [`MAX_CHUNKS`].
    pub(crate) fn insert(&mut self, offset: u64, data: &[u8]) -> Result<(), TooFragmented> {
        if data.is_empty() {
            // A FIN-only frame: nothing to hold (an empty chunk would break the map's order).
            return Ok(());
        }
        let end = offset + data.len() as u64;
        let head_end = self.read_offset + self.head.len() as u64;
        if end <= head_end {
            return Ok(());
        }
        if offset <= head_end {
            // Extends what can be read: append, then absorb the chunks it reaches.
            self.head.extend(&data[(head_end - offset) as usize..]);
            self.absorb_into_head();
            return Ok(());
        }
        self.insert_chunk(offset, data)
    }

    /// Moves chunks that now touch the head into it.
    fn absorb_into_head(&mut self) {
        loop {
            let head_end = self.read_offset + self.head.len() as u64;
            let Some(entry) = self.chunks.first_entry() else {
                return;
            };
            if *entry.key() > head_end {
                return;
            }
            let start = *entry.key();
            let chunk = entry.remove();
            self.note_touch();
            self.chunk_bytes -= chunk.capacity();
            let chunk_end = start + chunk.len() as u64;
            if chunk_end > head_end {
                self.head.extend(&chunk[(head_end - start) as usize..]);
            }
        }
    }

    /// Stores data that starts after a hole, merging it with the chunks it overlaps or touches.
    fn insert_chunk(&mut self, offset: u64, data: &[u8]) -> Result<(), TooFragmented> {
        let end = offset + data.len() as u64;
        // The chunk that starts at or before `offset`, if it reaches it.
        let before = self
            .chunks
            .range(..=offset)
            .next_back()
            .map(|(&s, c)| (s, s + c.len() as u64))
            .filter(|&(_, e)| e >= offset);
        let (start, mut buf) = match before {
            Some((_, e)) if e >= end => return Ok(()),
            Some((s, e)) => {
                self.note_touch();
                // `before` was found in the map just above.
                let mut chunk = self.chunks.remove(&s).expect("chunk found above");
                self.chunk_bytes -= chunk.capacity();
                chunk.extend_from_slice(&data[(e - offset) as usize..]);
                (s, chunk)
            }
            None => {
                let touches_next = self.chunks.range(offset..=end).next().is_some();
                if !touches_next && self.chunks.len() >= MAX_CHUNKS {
                    return Err(TooFragmented);
                }
                (offset, data.to_vec())
            }
        };
        // Absorb the chunks that start inside or right after the merged data.
        loop {
            let buf_end = start + buf.len() as u64;
            let Some((&s, _)) = self.chunks.range(start + 1..=buf_end).next() else {
                break;
            };
            self.note_touch();
            // `s` was found in the map just above.
            let chunk = self.chunks.remove(&s).expect("chunk found above");
            self.chunk_bytes -= chunk.capacity();
            let chunk_end = s + chunk.len() as u64;
            if chunk_end > buf_end {
                buf.extend_from_slice(&chunk[(buf_end - s) as usize..]);
            }
        }
        self.chunk_bytes += buf.capacity();
        self.chunks.insert(start, buf);
        Ok(())
    }

    #[cfg(test)]
    fn note_touch(&mut self) {
        self.touched += 1;
    }

    #[cfg(not(test))]
    fn note_touch(&mut self) {}

    /// Contiguous bytes ready to read.
    pub(crate) fn readable(&self) -> u64 {
        self.head.len() as u64
    }

    /// Copies up to `out.len()` contiguous bytes into `out` and consumes them.
    #[cfg(test)]
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let mut out = &mut out[..];
        self.read_into(&mut out)
    }

    /// Moves up to [`ReadBuf::room`] contiguous bytes into `out` and consumes them.
    pub(crate) fn read_into(&mut self, out: &mut impl ReadBuf) -> usize {
        let n = self.head.len().min(out.room());
        if n == 0 {
            return 0;
        }
        let (a, b) = self.head.as_slices();
        let from_a = n.min(a.len());
        out.put(&a[..from_a]);
        out.put(&b[..n - from_a]);
        self.head.drain(..n);
        self.read_offset += n as u64;
        n
    }

    /// Drops everything buffered and moves the read offset to `offset` (reset or stop).
    pub(crate) fn discard_until(&mut self, offset: u64) {
        self.head = VecDeque::new();
        self.chunks.clear();
        self.chunk_bytes = 0;
        self.read_offset = self.read_offset.max(offset);
    }

    /// Bytes held, read or not yet readable (what the flow-control window bounds).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn buffered(&self) -> usize {
        self.head.len() + self.chunks.values().map(Vec::len).sum::<usize>()
    }

    /// Heap bytes held.
    pub(crate) fn heap_size(&self) -> usize {
        self.head.capacity() + self.chunk_bytes + self.chunks.len() * CHUNK_OVERHEAD
    }
}

/// Where stream data is read to: a caller's slice, or a growing `BytesMut` (which the
/// forwarder hands on as a write without copying again).
pub(crate) trait ReadBuf {
    /// How many more bytes it takes.
    fn room(&self) -> usize;
    /// Appends `bytes` (at most [`Self::room`]).
    fn put(&mut self, bytes: &[u8]);
}

impl ReadBuf for &mut [u8] {
    fn room(&self) -> usize {
        self.len()
    }

    fn put(&mut self, bytes: &[u8]) {
        let (head, rest) = std::mem::take(self).split_at_mut(bytes.len());
        head.copy_from_slice(bytes);
        *self = rest;
    }
}

/// A `BytesMut` that takes at most `limit` bytes more.
pub(crate) struct Limited<'a> {
    /// The buffer appended to.
    pub(crate) buf: &'a mut bytes::BytesMut,
    /// Bytes it may still take.
    pub(crate) limit: usize,
}

impl ReadBuf for Limited<'_> {
    fn room(&self) -> usize {
        self.limit
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.limit -= bytes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn out_of_order_data_is_read_in_order() {
        let mut a = Assembler::default();
        a.insert(5, b"fghij").unwrap();
        assert_eq!(a.readable(), 0);
        a.insert(0, b"abc").unwrap();
        assert_eq!(a.readable(), 3);
        a.insert(2, b"cde").unwrap();
        assert_eq!(a.readable(), 10);
        let mut out = [0u8; 4];
        assert_eq!(a.read(&mut out), 4);
        assert_eq!(&out, b"abcd");
        // Data already read is ignored, overlapping new data is kept.
        a.insert(0, b"abcdefghijk").unwrap();
        let mut out = [0u8; 20];
        assert_eq!(a.read(&mut out), 7);
        assert_eq!(&out[..7], b"efghijk");
        assert_eq!(a.read_offset(), 11);
        assert_eq!(a.read(&mut out), 0);
    }

    /// Found by `stream::tests::random_operations_deliver_every_byte_once`: an empty frame
    /// (a FIN alone) past a hole became an empty chunk, and the next insert's range search
    /// panicked on it.
    #[test]
    fn regression_an_empty_frame_past_a_hole_stores_nothing() {
        let mut a = Assembler::default();
        a.insert(10, b"").unwrap();
        a.insert(5, b"").unwrap();
        assert_eq!(a.chunks(), 0);
        a.insert(4, b"efgh").unwrap();
        a.insert(0, b"abcd").unwrap();
        let mut out = [0u8; 16];
        assert_eq!(a.read(&mut out), 8);
        assert_eq!(&out[..8], b"abcdefgh");
    }

    #[test]
    fn a_byte_far_ahead_holds_one_byte_not_the_hole() {
        let mut a = Assembler::default();
        a.insert(1024 * 1024 - 1, b"x").unwrap();
        assert_eq!(a.buffered(), 1);
        assert!(a.heap_size() < 256, "heap {} for one byte", a.heap_size());
        assert_eq!(a.readable(), 0);
    }

    /// 40,000 one-byte fragments with a one-byte hole between each, inserted in the worst
    /// order for a sorted vector (descending), then the holes filled: the work is counted in
    /// chunks touched, which stays linear (each insert touches its neighbour and each chunk is
    /// absorbed once); map operations are O(log n) each, so the whole is O(n log n).
    #[test]
    fn forty_thousand_fragments_cost_linear_chunk_work() {
        const N: u64 = 40_000;
        let mut a = Assembler::default();
        // Offsets 2, 4, 6, ...: every one after a hole. Above the cap they are refused.
        let mut refused = 0;
        for i in (1..=N).rev() {
            if a.insert(2 * i, b"x").is_err() {
                refused += 1;
            }
        }
        assert_eq!(a.chunks(), MAX_CHUNKS);
        assert_eq!(refused, N - MAX_CHUNKS as u64);
        assert!(
            a.touched <= N,
            "{} chunk touches for {N} inserts",
            a.touched
        );
        // Fill every hole in order: each fill absorbs one chunk into the head.
        for i in 0..=N {
            a.insert(2 * i, b"x").unwrap();
            a.insert(2 * i + 1, b"y").unwrap();
        }
        assert_eq!(a.chunks(), 0);
        assert_eq!(a.readable(), 2 * N + 2);
        assert!(a.touched <= 4 * N, "{} chunk touches", a.touched);
        println!(
            "{N} fragments (descending, then filled): {} chunk touches, {} refused over the {MAX_CHUNKS}-chunk cap",
            a.touched, refused
        );
    }

    #[test]
    fn merging_bridges_chunks_and_keeps_the_new_tail() {
        let mut a = Assembler::default();
        a.insert(10, b"klm").unwrap();
        a.insert(20, b"uv").unwrap();
        // Bridges both chunks and extends past the second.
        a.insert(12, b"MNOPQRSTUVWX").unwrap();
        assert_eq!(a.chunks(), 1);
        a.insert(0, b"abcdefghij").unwrap();
        let mut out = [0u8; 64];
        let n = a.read(&mut out);
        assert_eq!(&out[..n], b"abcdefghijklmNOPQRSTUVWX");
    }

    #[test]
    fn a_chunk_that_touches_another_is_taken_even_at_the_cap() {
        let mut a = Assembler::default();
        for i in 0..MAX_CHUNKS as u64 {
            a.insert(10 + 3 * i, b"x").unwrap();
        }
        assert_eq!(a.insert(100_000, b"y"), Err(TooFragmented));
        // Adjacent to an existing chunk: merges instead of opening a new one.
        a.insert(11, b"z").unwrap();
        a.insert(9, b"w").unwrap();
        assert_eq!(a.chunks(), MAX_CHUNKS);
    }

    proptest! {
        #[test]
        fn any_chunking_and_order_reassembles(
            data in proptest::collection::vec(any::<u8>(), 1..400),
            cuts in proptest::collection::vec((0usize..400, 0usize..60), 1..40),
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
                a.insert(s as u64, &data[s..e]).unwrap();
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
