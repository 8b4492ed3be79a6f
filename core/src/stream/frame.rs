//! The plaintext inside a session packet: a packet number followed by frames, all hand-encoded
//! with QUIC-style variable-length integers (RFC 9000 §16).
//!
//! ```text
//! payload := pn:varint frame*
//! PADDING            0x00
//! PING               0x01
//! ACK                0x02 largest delay_us range_count first_range (gap range)*
//! RESET_STREAM       0x04 id code final_size
//! STOP_SENDING       0x05 id code
//! STREAM             0x08..=0x0f (OFF=0x04 LEN=0x02 FIN=0x01) id [offset] [len] data
//! MAX_DATA           0x10 max
//! MAX_STREAM_DATA    0x11 id max
//! MAX_STREAMS        0x12 count
//! DATA_BLOCKED       0x14 limit
//! STREAM_DATA_BLOCKED 0x15 id limit
//! ACK_FREQUENCY      0x18 sequence threshold
//! ```
//!
//! ACK_FREQUENCY (after draft-ietf-quic-ack-frequency) asks the peer to acknowledge once per
//! `threshold` ack-eliciting packets instead of every second one; the newest `sequence` wins.
//!
//! Decoding never panics: every malformed input is a [`Malformed`] error.

use std::fmt;

/// The largest value a varint can hold (2^62 - 1).
pub(crate) const VARINT_MAX: u64 = (1 << 62) - 1;

/// A frame or payload could not be decoded; the packet is dropped and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed stream frame")
    }
}

/// Encoded size of `v` as a varint.
pub(crate) const fn varint_size(v: u64) -> usize {
    if v < 1 << 6 {
        1
    } else if v < 1 << 14 {
        2
    } else if v < 1 << 30 {
        4
    } else {
        8
    }
}

/// Reads varints and byte strings from a peer's bytes without ever panicking.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Malformed> {
        let first = *self.buf.first().ok_or(Malformed)?;
        let len = 1usize << (first >> 6);
        let bytes = self.buf.get(..len).ok_or(Malformed)?;
        let mut v = u64::from(first & 0x3f);
        for b in &bytes[1..] {
            v = (v << 8) | u64::from(*b);
        }
        self.buf = &self.buf[len..];
        Ok(v)
    }

    pub(crate) fn bytes(&mut self, n: u64) -> Result<&'a [u8], Malformed> {
        let n = usize::try_from(n).map_err(|_| Malformed)?;
        let out = self.buf.get(..n).ok_or(Malformed)?;
        self.buf = &self.buf[n..];
        Ok(out)
    }

    /// The bytes not read yet.
    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

/// Writes into a caller-provided buffer. Callers check [`Writer::remaining`] (with the `*_size`
/// helpers) before writing; writing past the end is an internal bug and panics.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn varint(&mut self, v: u64) {
        debug_assert!(v <= VARINT_MAX);
        let size = varint_size(v);
        let tag: u64 = match size {
            1 => 0,
            2 => 0x40 << 8,
            4 => 0x80 << 24,
            _ => 0xc0 << 56,
        };
        let bytes = (v | tag).to_be_bytes();
        self.bytes(&bytes[8 - size..]);
    }

    pub(crate) fn bytes(&mut self, data: &[u8]) {
        self.buf[self.pos..self.pos + data.len()].copy_from_slice(data);
        self.pos += data.len();
    }

    /// A mutable window of `n` bytes at the cursor, which the caller fills; the cursor moves on.
    pub(crate) fn reserve(&mut self, n: usize) -> &mut [u8] {
        let start = self.pos;
        self.pos += n;
        &mut self.buf[start..self.pos]
    }
}

pub(crate) const PADDING: u64 = 0x00;
pub(crate) const PING: u64 = 0x01;
pub(crate) const ACK: u64 = 0x02;
pub(crate) const RESET_STREAM: u64 = 0x04;
pub(crate) const STOP_SENDING: u64 = 0x05;
pub(crate) const STREAM: u64 = 0x08;
const STREAM_OFF: u64 = 0x04;
const STREAM_LEN: u64 = 0x02;
const STREAM_FIN: u64 = 0x01;
pub(crate) const MAX_DATA: u64 = 0x10;
pub(crate) const MAX_STREAM_DATA: u64 = 0x11;
pub(crate) const MAX_STREAMS: u64 = 0x12;
pub(crate) const DATA_BLOCKED: u64 = 0x14;
pub(crate) const STREAM_DATA_BLOCKED: u64 = 0x15;
pub(crate) const ACK_FREQUENCY: u64 = 0x18;

/// An ACK frame as it sits on the wire; [`AckFrame::ranges`] walks its ranges, largest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AckFrame<'a> {
    pub(crate) largest: u64,
    pub(crate) delay_us: u64,
    first_range: u64,
    count: u64,
    raw: &'a [u8],
}

impl<'a> AckFrame<'a> {
    /// Inclusive `(smallest, largest)` packet-number ranges, in descending order. The frame was
    /// validated at decode time, so this iterator cannot fail.
    pub(crate) fn ranges(&self) -> AckRanges<'a> {
        AckRanges {
            reader: Reader::new(self.raw),
            next_largest: Some(self.largest),
            first: Some(self.first_range),
            left: self.count,
        }
    }

    fn decode(r: &mut Reader<'a>) -> Result<Self, Malformed> {
        let largest = r.varint()?;
        let delay_us = r.varint()?;
        let count = r.varint()?;
        let first_range = r.varint()?;
        let mut smallest = largest.checked_sub(first_range).ok_or(Malformed)?;
        let start = r.buf;
        for _ in 0..count {
            let gap = r.varint()?;
            let len = r.varint()?;
            let hi = smallest
                .checked_sub(gap)
                .and_then(|v| v.checked_sub(2))
                .ok_or(Malformed)?;
            smallest = hi.checked_sub(len).ok_or(Malformed)?;
        }
        let raw = &start[..start.len() - r.buf.len()];
        Ok(Self {
            largest,
            delay_us,
            first_range,
            count,
            raw,
        })
    }
}

/// Iterator over the ranges of an [`AckFrame`].
#[derive(Clone, Debug)]
pub(crate) struct AckRanges<'a> {
    reader: Reader<'a>,
    next_largest: Option<u64>,
    first: Option<u64>,
    left: u64,
}

impl Iterator for AckRanges<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        // `next_largest` holds the largest packet number for the first range and the previous
        // range's smallest afterwards. The frame was validated in `AckFrame::decode`.
        let top = self.next_largest?;
        let (hi, len) = match self.first.take() {
            Some(len) => (top, len),
            None => {
                if self.left == 0 {
                    self.next_largest = None;
                    return None;
                }
                self.left -= 1;
                let gap = self.reader.varint().ok()?;
                let len = self.reader.varint().ok()?;
                (top.checked_sub(gap)?.checked_sub(2)?, len)
            }
        };
        let lo = hi.checked_sub(len)?;
        self.next_largest = Some(lo);
        Some((lo, hi))
    }
}

/// Writes an ACK frame for `ranges` (ascending, disjoint, non-adjacent half-open ranges),
/// including as many of the newest ranges as fit in `w`. Returns false (writing nothing) if not
/// even the newest range fits.
pub(crate) fn encode_ack(w: &mut Writer<'_>, ranges: &[(u64, u64)], delay_us: u64) -> bool {
    let Some(&(lo, hi)) = ranges.last() else {
        return false;
    };
    let largest = hi - 1;
    let first_range = largest - lo;
    let delay_us = delay_us.min(VARINT_MAX);
    let mut size = varint_size(ACK) + varint_size(largest) + varint_size(delay_us);
    size += varint_size(first_range);
    let mut count = 0u64;
    let mut extra = 0usize;
    let mut prev_lo = lo;
    for &(lo, hi) in ranges.iter().rev().skip(1) {
        let gap = prev_lo - hi - 1;
        let len = hi - 1 - lo;
        let add = varint_size(gap) + varint_size(len);
        if size + varint_size(count + 1) + extra + add > w.remaining() {
            break;
        }
        extra += add;
        count += 1;
        prev_lo = lo;
    }
    if size + varint_size(count) + extra > w.remaining() {
        return false;
    }
    w.varint(ACK);
    w.varint(largest);
    w.varint(delay_us);
    w.varint(count);
    w.varint(first_range);
    let mut prev_lo = lo;
    for &(lo, hi) in ranges.iter().rev().skip(1).take(count as usize) {
        w.varint(prev_lo - hi - 1);
        w.varint(hi - 1 - lo);
        prev_lo = lo;
    }
    true
}

/// Writes a STREAM frame header; the caller then writes exactly `len` data bytes.
pub(crate) fn encode_stream_header(
    w: &mut Writer<'_>,
    id: u64,
    offset: u64,
    len: usize,
    fin: bool,
) {
    let mut ty = STREAM | STREAM_LEN;
    if offset > 0 {
        ty |= STREAM_OFF;
    }
    if fin {
        ty |= STREAM_FIN;
    }
    w.varint(ty);
    w.varint(id);
    if offset > 0 {
        w.varint(offset);
    }
    w.varint(len as u64);
}

/// One decoded frame, borrowing data from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// One or more padding bytes.
    Padding,
    /// Elicits an acknowledgement and nothing else.
    Ping,
    /// Acknowledges packet numbers.
    Ack(AckFrame<'a>),
    /// The sender abandons a stream's send direction.
    ResetStream { id: u64, code: u64, final_size: u64 },
    /// The receiver asks the sender to stop sending on a stream.
    StopSending { id: u64, code: u64 },
    /// Stream data at an offset, possibly with FIN.
    Stream {
        id: u64,
        offset: u64,
        data: &'a [u8],
        fin: bool,
    },
    /// Connection-level flow-control limit.
    MaxData(u64),
    /// Stream-level flow-control limit.
    MaxStreamData { id: u64, max: u64 },
    /// How many streams the peer may open in total.
    MaxStreams(u64),
    /// The sender is blocked by the connection limit.
    DataBlocked(u64),
    /// The sender is blocked by a stream limit.
    StreamDataBlocked { id: u64, limit: u64 },
    /// Acknowledge once per `threshold` ack-eliciting packets (the newest `seq` wins).
    AckFrequency { seq: u64, threshold: u64 },
}

impl<'a> Frame<'a> {
    /// Decodes one frame from the front of `r`.
    pub(crate) fn decode(r: &mut Reader<'a>) -> Result<Self, Malformed> {
        let ty = r.varint()?;
        Ok(match ty {
            PADDING => {
                while r.buf.first() == Some(&0) {
                    r.buf = &r.buf[1..];
                }
                Frame::Padding
            }
            PING => Frame::Ping,
            ACK => Frame::Ack(AckFrame::decode(r)?),
            RESET_STREAM => Frame::ResetStream {
                id: r.varint()?,
                code: r.varint()?,
                final_size: r.varint()?,
            },
            STOP_SENDING => Frame::StopSending {
                id: r.varint()?,
                code: r.varint()?,
            },
            0x08..=0x0f => {
                let id = r.varint()?;
                let offset = if ty & STREAM_OFF != 0 { r.varint()? } else { 0 };
                let data = if ty & STREAM_LEN != 0 {
                    let len = r.varint()?;
                    r.bytes(len)?
                } else {
                    r.rest()
                };
                if offset
                    .checked_add(data.len() as u64)
                    .is_none_or(|end| end > VARINT_MAX)
                {
                    return Err(Malformed);
                }
                Frame::Stream {
                    id,
                    offset,
                    data,
                    fin: ty & STREAM_FIN != 0,
                }
            }
            MAX_DATA => Frame::MaxData(r.varint()?),
            MAX_STREAM_DATA => Frame::MaxStreamData {
                id: r.varint()?,
                max: r.varint()?,
            },
            MAX_STREAMS => Frame::MaxStreams(r.varint()?),
            DATA_BLOCKED => Frame::DataBlocked(r.varint()?),
            STREAM_DATA_BLOCKED => Frame::StreamDataBlocked {
                id: r.varint()?,
                limit: r.varint()?,
            },
            ACK_FREQUENCY => Frame::AckFrequency {
                seq: r.varint()?,
                threshold: r.varint()?,
            },
            _ => return Err(Malformed),
        })
    }

    /// Whether a packet holding this frame must be acknowledged.
    pub(crate) fn is_ack_eliciting(&self) -> bool {
        !matches!(self, Frame::Padding | Frame::Ack(_))
    }

    /// Encodes this frame (used by tests and for simple control frames). Returns false if it
    /// does not fit in `w`. ACK frames are written with [`encode_ack`] instead.
    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> bool {
        let mut scratch = [0u8; 64];
        let head = {
            let mut s = Writer::new(&mut scratch);
            match *self {
                Frame::Padding => s.varint(PADDING),
                Frame::Ping => s.varint(PING),
                Frame::Ack(a) => {
                    s.varint(ACK);
                    s.varint(a.largest);
                    s.varint(a.delay_us);
                    s.varint(a.count);
                    s.varint(a.first_range);
                }
                Frame::ResetStream {
                    id,
                    code,
                    final_size,
                } => {
                    s.varint(RESET_STREAM);
                    s.varint(id);
                    s.varint(code);
                    s.varint(final_size);
                }
                Frame::StopSending { id, code } => {
                    s.varint(STOP_SENDING);
                    s.varint(id);
                    s.varint(code);
                }
                Frame::Stream {
                    id,
                    offset,
                    data,
                    fin,
                } => {
                    encode_stream_header(&mut s, id, offset, data.len(), fin);
                }
                Frame::MaxData(v) => {
                    s.varint(MAX_DATA);
                    s.varint(v);
                }
                Frame::MaxStreamData { id, max } => {
                    s.varint(MAX_STREAM_DATA);
                    s.varint(id);
                    s.varint(max);
                }
                Frame::MaxStreams(v) => {
                    s.varint(MAX_STREAMS);
                    s.varint(v);
                }
                Frame::DataBlocked(v) => {
                    s.varint(DATA_BLOCKED);
                    s.varint(v);
                }
                Frame::StreamDataBlocked { id, limit } => {
                    s.varint(STREAM_DATA_BLOCKED);
                    s.varint(id);
                    s.varint(limit);
                }
                Frame::AckFrequency { seq, threshold } => {
                    s.varint(ACK_FREQUENCY);
                    s.varint(seq);
                    s.varint(threshold);
                }
            }
            s.len()
        };
        let tail: &[u8] = match *self {
            Frame::Ack(a) => a.raw,
            Frame::Stream { data, .. } => data,
            _ => &[],
        };
        if head + tail.len() > w.remaining() {
            return false;
        }
        w.bytes(&scratch[..head]);
        w.bytes(tail);
        true
    }
}

/// Checks that a whole payload (after the packet number) decodes, without acting on it.
pub(crate) fn validate(frames: &[u8]) -> Result<bool, Malformed> {
    let mut r = Reader::new(frames);
    let mut eliciting = false;
    while !r.is_empty() {
        eliciting |= Frame::decode(&mut r)?.is_ack_eliciting();
    }
    Ok(eliciting)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip_varint(v: u64) {
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        w.varint(v);
        let n = w.len();
        assert_eq!(n, varint_size(v));
        let mut r = Reader::new(&buf[..n]);
        assert_eq!(r.varint(), Ok(v));
        assert!(r.is_empty());
    }

    #[test]
    fn varint_boundaries_and_rfc9000_examples() {
        for v in [0, 63, 64, 16383, 16384, (1 << 30) - 1, 1 << 30, VARINT_MAX] {
            roundtrip_varint(v);
        }
        // RFC 9000 Appendix A.1 examples.
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, v) in cases {
            assert_eq!(Reader::new(bytes).varint(), Ok(v));
        }
        assert_eq!(Reader::new(&[0x40]).varint(), Err(Malformed));
        assert_eq!(Reader::new(&[]).varint(), Err(Malformed));
    }

    fn ack_roundtrip(ranges: &[(u64, u64)], space: usize) -> Vec<(u64, u64)> {
        let mut buf = vec![0u8; space];
        let mut w = Writer::new(&mut buf);
        assert!(encode_ack(&mut w, ranges, 1234));
        let n = w.len();
        let mut r = Reader::new(&buf[..n]);
        let Frame::Ack(ack) = Frame::decode(&mut r).unwrap() else {
            panic!("not an ack")
        };
        assert!(r.is_empty());
        assert_eq!(ack.delay_us, 1234);
        // Back to ascending half-open ranges.
        let mut out: Vec<_> = ack.ranges().map(|(lo, hi)| (lo, hi + 1)).collect();
        out.reverse();
        out
    }

    #[test]
    fn ack_ranges_encode_and_decode() {
        let ranges = [(0, 3), (5, 6), (8, 100), (102, 103)];
        assert_eq!(ack_roundtrip(&ranges, 100), ranges);
        assert_eq!(ack_roundtrip(&[(7, 8)], 100), [(7, 8)]);
        // Only the newest ranges fit in a small space.
        let many: Vec<_> = (0..100u64).map(|i| (i * 3, i * 3 + 1)).collect();
        let out = ack_roundtrip(&many, 40);
        assert!(out.len() < many.len() && !out.is_empty());
        assert_eq!(out[..], many[many.len() - out.len()..]);
    }

    #[test]
    fn ack_underflow_is_malformed() {
        // largest 2, first range 5: would go below zero.
        let bytes = [0x02, 0x02, 0x00, 0x00, 0x05];
        assert_eq!(Frame::decode(&mut Reader::new(&bytes)), Err(Malformed));
        // A gap that reaches below zero.
        let bytes = [0x02, 0x05, 0x00, 0x01, 0x01, 0x03, 0x00];
        assert_eq!(Frame::decode(&mut Reader::new(&bytes)), Err(Malformed));
    }

    #[test]
    fn stream_frame_without_len_takes_the_rest() {
        let bytes = [0x0d, 0x04, 0x10, b'h', b'i'];
        let f = Frame::decode(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(
            f,
            Frame::Stream {
                id: 4,
                offset: 16,
                data: b"hi",
                fin: true
            }
        );
        let bytes = [0x0f, 0x04, 0x10, 0x05, b'h'];
        assert_eq!(Frame::decode(&mut Reader::new(&bytes)), Err(Malformed));
    }

    fn varint() -> impl Strategy<Value = u64> {
        prop_oneof![0..64u64, 0..16384u64, 0..VARINT_MAX]
    }

    fn frame_strategy() -> impl Strategy<Value = (u8, u64, u64, u64, Vec<u8>, bool)> {
        (
            0u8..12,
            varint(),
            varint(),
            0..(1u64 << 40),
            proptest::collection::vec(any::<u8>(), 0..50),
            any::<bool>(),
        )
    }

    fn build<'a>(kind: u8, a: u64, b: u64, c: u64, data: &'a [u8], fin: bool) -> Frame<'a> {
        match kind {
            0 => Frame::Ping,
            1 => Frame::ResetStream {
                id: a,
                code: b,
                final_size: c,
            },
            2 => Frame::StopSending { id: a, code: b },
            3 => Frame::Stream {
                id: a,
                offset: c,
                data,
                fin,
            },
            4 => Frame::MaxData(a),
            5 => Frame::MaxStreamData { id: a, max: b },
            6 => Frame::MaxStreams(a),
            7 => Frame::DataBlocked(a),
            8 => Frame::StreamDataBlocked { id: a, limit: b },
            9 => Frame::AckFrequency {
                seq: a,
                threshold: b,
            },
            _ => Frame::Padding,
        }
    }

    proptest! {
        #[test]
        fn varint_roundtrip(v in varint()) {
            roundtrip_varint(v);
        }

        #[test]
        fn frame_roundtrip((kind, a, b, c, data, fin) in frame_strategy()) {
            let frame = build(kind, a, b, c, &data, fin);
            let mut buf = [0u8; 200];
            let mut w = Writer::new(&mut buf);
            prop_assert!(frame.encode(&mut w));
            let n = w.len();
            let mut r = Reader::new(&buf[..n]);
            prop_assert_eq!(Frame::decode(&mut r), Ok(frame));
            prop_assert!(r.is_empty());
        }

        #[test]
        fn ack_roundtrip_arbitrary(mut points in proptest::collection::btree_set(0u64..10_000, 1..60)) {
            // Build disjoint, non-adjacent ranges from a sorted set of points.
            let mut ranges: Vec<(u64, u64)> = Vec::new();
            for p in std::mem::take(&mut points) {
                match ranges.last_mut() {
                    Some(last) if last.1 >= p => {}
                    Some(last) if last.1 + 1 == p => last.1 = p + 1,
                    _ => ranges.push((p, p + 1)),
                }
            }
            // Merge adjacent after building.
            let mut merged: Vec<(u64, u64)> = Vec::new();
            for r in ranges {
                match merged.last_mut() {
                    Some(last) if last.1 >= r.0 => last.1 = last.1.max(r.1),
                    _ => merged.push(r),
                }
            }
            prop_assert_eq!(ack_roundtrip(&merged, 2000), merged);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut r = Reader::new(&bytes);
            while !r.is_empty() {
                match Frame::decode(&mut r) {
                    Ok(Frame::Ack(a)) => { for _ in a.ranges() {} }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = validate(&bytes);
        }
    }
}
