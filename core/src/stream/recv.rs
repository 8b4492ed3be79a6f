//! The receive half of a stream: the assembler, the final size, flow-control credit and what
//! the application has been told.

use super::assembler::Assembler;
use super::flow::RecvCredit;

/// Where the receive direction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecvState {
    /// Data may still arrive.
    Open,
    /// The application read everything up to the FIN.
    Finished,
    /// The peer reset the stream with this code.
    Reset(u64),
    /// We asked the peer to stop (code); data is discarded until its RESET or FIN.
    Stopped(u64),
}

/// The peer broke a flow-control or final-size rule on this stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Violation;

/// The receive direction of one stream.
#[derive(Debug)]
pub(crate) struct RecvStream {
    pub(crate) asm: Assembler,
    pub(crate) state: RecvState,
    final_size: Option<u64>,
    /// The highest offset received (counts against connection credit).
    highest: u64,
    pub(crate) credit: RecvCredit,
    /// A `Readable` event is outstanding; cleared when the application drains the stream.
    pub(crate) readable_notified: bool,
    /// A MAX_STREAM_DATA for this stream is queued.
    pub(crate) max_data_queued: bool,
    /// Whether the peer's STOP_SENDING-triggered RESET or FIN completed a stopped stream.
    stopped_complete: bool,
}

impl RecvStream {
    pub(crate) fn new(initial: u64, window: u64) -> Self {
        Self {
            asm: Assembler::default(),
            state: RecvState::Open,
            final_size: None,
            highest: 0,
            credit: RecvCredit::new(initial, window),
            readable_notified: false,
            max_data_queued: false,
            stopped_complete: false,
        }
    }

    /// Takes a STREAM frame; returns how many bytes past the previous highest offset it
    /// reached (for connection-level credit) or a violation.
    pub(crate) fn on_data(
        &mut self,
        offset: u64,
        data: &[u8],
        fin: bool,
    ) -> Result<u64, Violation> {
        let end = offset + data.len() as u64;
        if !self.credit.allows(end) {
            return Err(Violation);
        }
        if let Some(size) = self.final_size {
            if end > size || (fin && end != size) {
                return Err(Violation);
            }
        }
        if fin {
            if end < self.highest {
                return Err(Violation);
            }
            self.final_size = Some(end);
        }
        let grew = end.saturating_sub(self.highest);
        self.highest = self.highest.max(end);
        match self.state {
            RecvState::Open => self.asm.insert(offset, data).map_err(|_| Violation)?,
            RecvState::Stopped(_) => {
                self.asm.discard_until(self.highest);
                if self.final_size == Some(self.highest) {
                    self.stopped_complete = true;
                }
            }
            RecvState::Finished | RecvState::Reset(_) => {}
        }
        Ok(grew)
    }

    /// Takes a RESET_STREAM; returns (bytes past the previous highest offset, bytes that were
    /// never read and now count as consumed) and whether this reset is news to the application.
    pub(crate) fn on_reset(
        &mut self,
        code: u64,
        final_size: u64,
    ) -> Result<(u64, u64, bool), Violation> {
        if final_size < self.highest || self.final_size.is_some_and(|s| s != final_size) {
            return Err(Violation);
        }
        if !self.credit.allows(final_size) {
            return Err(Violation);
        }
        self.final_size = Some(final_size);
        let grew = final_size - self.highest;
        self.highest = final_size;
        let notify = match self.state {
            RecvState::Open => true,
            RecvState::Stopped(_) => {
                self.stopped_complete = true;
                false
            }
            RecvState::Finished | RecvState::Reset(_) => return Ok((grew, 0, false)),
        };
        let unread = final_size - self.asm.read_offset();
        self.asm.discard_until(final_size);
        if notify {
            self.state = RecvState::Reset(code);
        }
        Ok((grew, unread, notify))
    }

    /// Stops reading: drops buffered data; returns the bytes discarded (now consumed), or None
    /// if the direction was already closed.
    pub(crate) fn stop(&mut self, code: u64) -> Option<u64> {
        if self.state != RecvState::Open {
            return None;
        }
        let discarded = self.highest - self.asm.read_offset();
        self.asm.discard_until(self.highest);
        self.state = RecvState::Stopped(code);
        self.stopped_complete = self.final_size == Some(self.highest);
        Some(discarded)
    }

    /// Data is readable now, or the FIN is.
    pub(crate) fn is_readable(&self) -> bool {
        self.state == RecvState::Open && (self.asm.readable() > 0 || self.at_fin())
    }

    /// Everything up to the final size was read.
    pub(crate) fn at_fin(&self) -> bool {
        self.final_size == Some(self.asm.read_offset())
    }

    /// Whether MAX_STREAM_DATA is still useful (more data is expected).
    pub(crate) fn expects_data(&self) -> bool {
        self.state == RecvState::Open && self.final_size.is_none()
    }

    /// Whether this direction needs nothing more from the peer or the application.
    pub(crate) fn is_done(&self) -> bool {
        match self.state {
            RecvState::Open => false,
            RecvState::Finished | RecvState::Reset(_) => true,
            RecvState::Stopped(_) => self.stopped_complete,
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_size(&self) -> usize {
        self.asm.heap_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_beyond_the_window_or_final_size_is_a_violation() {
        let mut r = RecvStream::new(10, 10);
        assert_eq!(r.on_data(0, b"abcd", false), Ok(4));
        assert_eq!(r.on_data(2, b"cdef", false), Ok(2));
        assert_eq!(r.on_data(8, b"xyz", false), Err(Violation));
        assert_eq!(r.on_data(6, b"gh", true), Ok(2));
        assert_eq!(
            r.on_data(8, b"i", false),
            Err(Violation),
            "past the final size"
        );
        assert_eq!(
            r.on_data(0, b"ab", true),
            Err(Violation),
            "a second, different final size"
        );
        let mut out = [0u8; 16];
        assert_eq!(r.asm.read(&mut out), 8);
        assert!(r.at_fin() && r.is_readable());
    }

    #[test]
    fn reset_reports_unread_bytes_and_checks_the_final_size() {
        let mut r = RecvStream::new(100, 100);
        r.on_data(0, b"abcd", false).unwrap();
        assert_eq!(r.on_reset(9, 3), Err(Violation));
        assert_eq!(r.on_reset(9, 10), Ok((6, 10, true)));
        assert_eq!(r.state, RecvState::Reset(9));
        assert!(r.is_done());
        assert_eq!(r.on_reset(9, 10), Ok((0, 0, false)));
    }

    #[test]
    fn a_stopped_stream_completes_on_reset_or_fin() {
        let mut r = RecvStream::new(100, 100);
        r.on_data(0, b"abcd", false).unwrap();
        assert_eq!(r.stop(3), Some(4));
        assert!(!r.is_done());
        assert_eq!(r.on_data(4, b"ef", true), Ok(2));
        assert!(r.is_done());
        let mut r = RecvStream::new(100, 100);
        assert_eq!(r.stop(3), Some(0));
        assert_eq!(r.on_reset(3, 5), Ok((5, 5, false)));
        assert!(r.is_done());
    }
}
