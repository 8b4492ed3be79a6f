//! The send half of a stream: the unacknowledged data (the chunks the application wrote,
//! shared rather than copied), what is still unsent, what must be retransmitted, FIN and RESET
//! state.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

use super::flow::SendCredit;
use super::ranges::RangeSet;

/// A piece of stream data chosen for the next STREAM frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub(crate) offset: u64,
    pub(crate) len: usize,
    pub(crate) fin: bool,
    /// First transmission (counts against connection credit) rather than a retransmission.
    pub(crate) new: bool,
}

/// The send direction of one stream.
#[derive(Debug)]
pub(crate) struct SendStream {
    /// Bytes from `base` (the lowest unacknowledged offset) to the write offset, as written:
    /// each chunk with its offset, the first at `base`.
    buf: VecDeque<(u64, Bytes)>,
    /// Bytes in `buf`.
    len: u64,
    base: u64,
    /// The next offset never sent.
    unsent: u64,
    /// Sent ranges declared lost and not acknowledged since.
    retransmit: RangeSet,
    /// Acknowledged ranges above `base`.
    acked: RangeSet,
    /// The peer's stream flow-control limit.
    pub(crate) credit: SendCredit,
    fin: bool,
    fin_sent: bool,
    fin_lost: bool,
    fin_acked: bool,
    /// Set once we reset the stream: the code, and whether the peer acknowledged it.
    pub(crate) reset: Option<u64>,
    pub(crate) reset_acked: bool,
    /// The application saw `WriteError::Blocked` and wants a `Writable` event.
    pub(crate) want_writable: bool,
    /// The limit at which we last reported STREAM_DATA_BLOCKED.
    pub(crate) blocked_reported: Option<u64>,
    /// `Finished` was reported to the application.
    pub(crate) finished_reported: bool,
}

impl SendStream {
    pub(crate) fn new(peer_limit: u64) -> Self {
        Self {
            buf: VecDeque::new(),
            len: 0,
            base: 0,
            unsent: 0,
            retransmit: RangeSet::default(),
            acked: RangeSet::default(),
            credit: SendCredit::new(peer_limit),
            fin: false,
            fin_sent: false,
            fin_lost: false,
            fin_acked: false,
            reset: None,
            reset_acked: false,
            want_writable: false,
            blocked_reported: None,
            finished_reported: false,
        }
    }

    /// The offset after the last byte written.
    pub(crate) fn end(&self) -> u64 {
        self.base + self.len
    }

    /// The highest offset ever sent (the final size a RESET reports).
    pub(crate) fn sent_end(&self) -> u64 {
        self.unsent
    }

    /// Whether the application may still write or finish.
    pub(crate) fn is_open(&self) -> bool {
        !self.fin && self.reset.is_none()
    }

    /// Bytes written and not yet acknowledged (or dropped by a reset).
    pub(crate) fn buffered(&self) -> u64 {
        self.len
    }

    /// How much of `len` bytes fits in a buffer of `limit` bytes.
    pub(crate) fn room(&self, len: usize, limit: u64) -> usize {
        (len as u64).min(limit.saturating_sub(self.len)) as usize
    }

    /// Appends as much of `data` as fits in a buffer of `limit` bytes (copied); returns how
    /// much.
    #[cfg(test)]
    pub(crate) fn write(&mut self, data: &[u8], limit: u64) -> usize {
        let n = self.room(data.len(), limit);
        self.append(Bytes::copy_from_slice(&data[..n]));
        n
    }

    /// Appends `data`, which the caller fitted with [`Self::room`], without copying it.
    pub(crate) fn append(&mut self, data: Bytes) {
        if !data.is_empty() {
            let len = data.len() as u64;
            self.buf.push_back((self.end(), data));
            self.len += len;
        }
    }

    pub(crate) fn finish(&mut self) {
        self.fin = true;
    }

    /// Abandons the data and records `code`; returns false if already reset.
    pub(crate) fn reset(&mut self, code: u64) -> bool {
        if self.reset.is_some() {
            return false;
        }
        self.reset = Some(code);
        self.buf = VecDeque::new();
        self.len = 0;
        self.base = self.unsent;
        self.retransmit = RangeSet::default();
        self.acked = RangeSet::default();
        true
    }

    /// Whether new data waits only for stream credit.
    pub(crate) fn blocked_by_stream_credit(&self) -> bool {
        self.reset.is_none() && self.unsent < self.end() && self.unsent >= self.credit.max
    }

    /// Whether a STREAM frame could be sent now given `conn_credit` bytes of connection credit.
    pub(crate) fn has_pending(&self, conn_credit: u64) -> bool {
        if self.reset.is_some() {
            return false;
        }
        let new_data = self.unsent < self.end() && self.unsent < self.credit.max && conn_credit > 0;
        let fin = self.fin && self.unsent == self.end() && (!self.fin_sent || self.fin_lost);
        !self.retransmit.is_empty() || new_data || fin
    }

    /// New bytes it could send now within its own credit, and whether something else waits
    /// that should go at once: lost data, or a FIN.
    pub(crate) fn sendable(&self) -> (u64, bool) {
        if self.reset.is_some() {
            return (0, false);
        }
        let new = self.end().min(self.credit.max).saturating_sub(self.unsent);
        let fin = self.fin && (!self.fin_sent || self.fin_lost);
        (new, !self.retransmit.is_empty() || fin)
    }

    /// Whether new data waits for connection credit.
    pub(crate) fn wants_conn_credit(&self) -> bool {
        self.reset.is_none() && self.unsent < self.end() && self.unsent < self.credit.max
    }

    /// Picks the next chunk of at most `max_len` bytes: retransmissions first, then new data
    /// within stream credit and `conn_credit`.
    pub(crate) fn next_chunk(&mut self, max_len: usize, conn_credit: u64) -> Option<Chunk> {
        if self.reset.is_some() {
            return None;
        }
        let end = self.end();
        if max_len > 0 {
            if let Some(r) = self.retransmit.pop_front(max_len as u64) {
                let fin = self.fin && r.end == end && self.unsent == end;
                self.fin_lost &= !fin;
                self.fin_sent |= fin;
                return Some(Chunk {
                    offset: r.start,
                    len: (r.end - r.start) as usize,
                    fin,
                    new: false,
                });
            }
            let limit = end
                .min(self.credit.max)
                .min(self.unsent.saturating_add(conn_credit));
            let limit = limit.min(self.unsent + max_len as u64);
            if limit > self.unsent {
                let offset = self.unsent;
                self.unsent = limit;
                let fin = self.fin && limit == end;
                self.fin_sent |= fin;
                self.fin_lost &= !fin;
                return Some(Chunk {
                    offset,
                    len: (limit - offset) as usize,
                    fin,
                    new: true,
                });
            }
        }
        if self.fin && self.unsent == end && (!self.fin_sent || self.fin_lost) {
            self.fin_sent = true;
            self.fin_lost = false;
            return Some(Chunk {
                offset: end,
                len: 0,
                fin: true,
                new: false,
            });
        }
        None
    }

    /// Copies the bytes at `offset..offset + out.len()` (all unacknowledged) into `out`.
    pub(crate) fn copy(&self, offset: u64, out: &mut [u8]) {
        if out.is_empty() {
            return;
        }
        // The chunk holding `offset`: the last one starting at or before it.
        let mut i = self.buf.partition_point(|(start, _)| *start <= offset) - 1;
        let mut at = (offset - self.buf[i].0) as usize;
        let mut done = 0;
        while done < out.len() {
            let chunk = &self.buf[i].1[at..];
            let n = chunk.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&chunk[..n]);
            done += n;
            i += 1;
            at = 0;
        }
    }

    /// The peer acknowledged `offset..offset + len` (and FIN); returns how many bytes of the
    /// buffer that freed.
    pub(crate) fn on_ack(&mut self, offset: u64, len: u64, fin: bool) -> u64 {
        if fin {
            self.fin_acked = true;
            self.fin_lost = false;
        }
        if self.reset.is_some() {
            return 0;
        }
        let start = offset.max(self.base);
        let end = offset + len;
        if start >= end {
            return 0;
        }
        self.retransmit.remove(start..end);
        self.acked.insert(start..end);
        let Some(first) = self.acked.first() else {
            return 0;
        };
        if first.start > self.base {
            return 0;
        }
        let before = self.len;
        self.free_to(first.end);
        self.acked.remove(first);
        before - self.len
    }

    /// Drops the data below `end`, which was all acknowledged.
    fn free_to(&mut self, end: u64) {
        while let Some((start, chunk)) = self.buf.front_mut() {
            let chunk_end = *start + chunk.len() as u64;
            if chunk_end <= end {
                self.buf.pop_front();
            } else {
                if *start < end {
                    chunk.advance((end - *start) as usize);
                    *start = end;
                }
                break;
            }
        }
        self.len -= end - self.base;
        self.base = end;
    }

    /// `offset..offset + len` (and FIN) may not have arrived: send it again unless acknowledged.
    pub(crate) fn on_lost(&mut self, offset: u64, len: u64, fin: bool) {
        if self.reset.is_some() {
            return;
        }
        if fin && !self.fin_acked {
            self.fin_lost = true;
        }
        let start = offset.max(self.base);
        let end = offset + len;
        if start >= end {
            return;
        }
        self.retransmit.insert(start..end);
        for &(a, b) in self.acked.as_slice() {
            if a < end && b > start {
                self.retransmit.remove(a..b);
            }
        }
    }

    /// Every byte and the FIN were acknowledged, or the RESET was.
    pub(crate) fn is_done(&self) -> bool {
        if self.reset.is_some() {
            return self.reset_acked;
        }
        self.fin && self.fin_acked && self.len == 0
    }

    /// All data and the FIN were acknowledged (not a reset).
    pub(crate) fn is_finished(&self) -> bool {
        self.reset.is_none() && self.is_done()
    }

    /// Heap bytes held.
    pub(crate) fn heap_size(&self) -> usize {
        // The chunks' bytes (their allocations are the runtime's read buffers, filled in
        // order and freed as acknowledgements drop the chunks) and the queue itself.
        self.len as usize
            + self.buf.capacity() * std::mem::size_of::<(u64, Bytes)>()
            + self.retransmit.heap_size()
            + self.acked.heap_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &SendStream, c: Chunk) -> Vec<u8> {
        let mut out = vec![0; c.len];
        s.copy(c.offset, &mut out);
        out
    }

    #[test]
    fn chunks_respect_stream_and_connection_credit() {
        let mut s = SendStream::new(5);
        assert_eq!(s.write(b"hello world", 8), 8);
        let c = s.next_chunk(100, 3).unwrap();
        assert_eq!((c.offset, c.len, c.new), (0, 3, true));
        assert_eq!(data(&s, c), b"hel");
        let c = s.next_chunk(100, 100).unwrap();
        assert_eq!((c.offset, c.len), (3, 2));
        assert!(s.blocked_by_stream_credit());
        assert_eq!(s.next_chunk(100, 100), None);
        s.credit.raise(100);
        let c = s.next_chunk(100, 100).unwrap();
        assert_eq!((c.offset, c.len, c.fin), (5, 3, false));
        assert_eq!(data(&s, c), b" wo");
    }

    #[test]
    fn lost_data_is_resent_before_new_data_and_acks_free_the_buffer() {
        let mut s = SendStream::new(1000);
        s.write(b"abcdefghij", 100);
        s.finish();
        let a = s.next_chunk(4, 1000).unwrap();
        let b = s.next_chunk(4, 1000).unwrap();
        let c = s.next_chunk(4, 1000).unwrap();
        assert!(c.fin && !a.fin && !b.fin);
        assert!(!s.has_pending(1000));
        s.on_lost(a.offset, a.len as u64, false);
        assert_eq!(
            s.on_ack(b.offset, b.len as u64, false),
            0,
            "a hole at the front frees nothing"
        );
        s.on_lost(c.offset, c.len as u64, true);
        let r = s.next_chunk(100, 0).unwrap();
        assert_eq!((r.offset, r.len, r.fin, r.new), (0, 4, false, false));
        let r2 = s.next_chunk(100, 0).unwrap();
        assert_eq!((r2.offset, r2.len, r2.fin), (8, 2, true));
        assert_eq!(s.next_chunk(100, 0), None);
        assert_eq!(s.on_ack(0, 4, false), 8, "up to the next hole");
        assert_eq!(s.buffered(), 2);
        assert!(!s.is_done());
        assert_eq!(s.on_ack(8, 2, true), 2);
        assert!(s.is_done() && s.is_finished());
    }

    #[test]
    fn a_lost_bare_fin_is_resent_alone() {
        let mut s = SendStream::new(1000);
        s.write(b"ab", 100);
        let _ = s.next_chunk(100, 100).unwrap();
        s.finish();
        let f = s.next_chunk(100, 100).unwrap();
        assert_eq!((f.offset, f.len, f.fin), (2, 0, true));
        s.on_lost(2, 0, true);
        assert!(s.has_pending(0));
        let f = s.next_chunk(0, 0).unwrap();
        assert_eq!((f.offset, f.len, f.fin), (2, 0, true));
    }

    #[test]
    fn reset_drops_data_and_completes_when_acknowledged() {
        let mut s = SendStream::new(1000);
        s.write(b"abcdef", 100);
        let _ = s.next_chunk(3, 100);
        assert!(s.reset(7));
        assert!(!s.reset(8));
        assert_eq!(s.sent_end(), 3);
        assert!(!s.has_pending(100));
        assert!(!s.is_done());
        s.reset_acked = true;
        assert!(s.is_done() && !s.is_finished());
    }

    #[test]
    fn chunks_are_kept_as_written_and_read_across_their_edges() {
        let mut s = SendStream::new(1000);
        let first = Bytes::from_static(b"abcd");
        let n = s.room(first.len(), 100);
        s.append(first.slice(..n));
        assert_eq!(s.buf[0].1.as_ptr(), first.as_ptr(), "kept, not copied");
        s.write(b"ef", 100);
        s.append(Bytes::new());
        s.write(b"ghij", 100);
        assert_eq!(s.buffered(), 10);
        let mut out = [0u8; 7];
        s.copy(2, &mut out);
        assert_eq!(&out, b"cdefghi");
        // An acknowledgement that ends inside a chunk frees up to there and no further.
        let a = s.next_chunk(3, 1000).unwrap();
        assert_eq!(s.on_ack(a.offset, a.len as u64, false), 3);
        assert_eq!(s.buffered(), 7);
        let mut out = [0u8; 7];
        s.copy(3, &mut out);
        assert_eq!(&out, b"defghij");
        let b = s.next_chunk(4, 1000).unwrap();
        assert_eq!((b.offset, b.len), (3, 4));
        assert_eq!(s.on_ack(b.offset, b.len as u64, false), 4);
        let mut out = [0u8; 3];
        s.copy(7, &mut out);
        assert_eq!(&out, b"hij");
        assert_eq!(
            s.buf.len(),
            1,
            "whole chunks below the acknowledged offset are gone"
        );
        s.copy(10, &mut []);
    }

    #[test]
    fn write_is_bounded_by_the_buffer_limit() {
        let mut s = SendStream::new(0);
        assert_eq!(s.write(&[0; 100], 64), 64);
        assert_eq!(s.write(&[0; 100], 64), 0);
    }
}
