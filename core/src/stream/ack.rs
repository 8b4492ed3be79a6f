//! Receive-side acknowledgement state: which packet numbers arrived, duplicate detection, and
//! when to send an ACK (every second ack-eliciting packet, or every `threshold` when the
//! sender asked for it with ACK_FREQUENCY; at once on reordering; else after max_ack_delay;
//! RFC 9000 §13.2, draft-ietf-quic-ack-frequency).

use std::time::{Duration, Instant};

use super::frame::{Writer, encode_ack};
use super::ranges::RangeSet;

/// How many ranges we remember; older ones are forgotten (and their packets then count as
/// duplicates).
const MAX_RANGES: usize = 32;
/// Ack-eliciting packets per ACK until the sender asks for another threshold.
pub(crate) const DEFAULT_ACK_THRESHOLD: u64 = 2;
/// The largest threshold a sender may ask for; larger requests are held to it.
pub(crate) const MAX_ACK_THRESHOLD: u64 = 16;

/// What the receiver knows about arrived packets and owes the peer.
#[derive(Debug, Default)]
pub(crate) struct AckState {
    received: RangeSet,
    /// Packet numbers below this are treated as duplicates.
    floor: u64,
    /// When the largest packet number arrived (for the ACK delay field).
    largest_at: Option<Instant>,
    eliciting_since_ack: u32,
    deadline: Option<Instant>,
    immediate: bool,
    /// Something arrived since the last ACK we sent.
    unreported: bool,
    /// The newest ACK_FREQUENCY request: its sequence number and threshold.
    requested: Option<(u64, u64)>,
}

impl AckState {
    /// Registers packet `pn`; returns false for a duplicate, which must not be processed.
    pub(crate) fn on_packet(
        &mut self,
        now: Instant,
        pn: u64,
        eliciting: bool,
        max_ack_delay: Duration,
    ) -> bool {
        if pn < self.floor || self.received.contains(pn) {
            return false;
        }
        let largest = self.received.last().map(|r| r.end - 1);
        let in_order = largest.is_none_or(|l| pn == l + 1);
        if largest.is_none_or(|l| pn > l) {
            self.largest_at = Some(now);
        }
        self.received.insert(pn..pn + 1);
        if let Some(end) = self.received.truncate_front(MAX_RANGES) {
            self.floor = self.floor.max(end);
        }
        self.unreported = true;
        if eliciting {
            self.eliciting_since_ack += 1;
            if u64::from(self.eliciting_since_ack) >= self.threshold() || !in_order {
                self.immediate = true;
            } else if self.deadline.is_none() {
                self.deadline = Some(now + max_ack_delay);
            }
        }
        true
    }

    /// Ack-eliciting packets per ACK.
    pub(crate) fn threshold(&self) -> u64 {
        self.requested.map_or(DEFAULT_ACK_THRESHOLD, |(_, t)| t)
    }

    /// The peer asked for an ACK per `threshold` ack-eliciting packets (request `seq`; an
    /// older request than one already seen is ignored). Held to 1..=[`MAX_ACK_THRESHOLD`].
    pub(crate) fn on_ack_frequency(&mut self, seq: u64, threshold: u64) {
        if self.requested.is_none_or(|(s, _)| seq > s) {
            self.requested = Some((seq, threshold.clamp(1, MAX_ACK_THRESHOLD)));
        }
    }

    /// An ACK must go out now, even alone in a packet.
    pub(crate) fn wants_ack_now(&self, now: Instant) -> bool {
        self.immediate || self.deadline.is_some_and(|d| d <= now)
    }

    /// An ACK is worth piggybacking on a packet that goes out anyway.
    pub(crate) fn has_unreported(&self) -> bool {
        self.unreported
    }

    /// An ACK is owed (immediately or at the deadline).
    #[cfg(test)]
    pub(crate) fn owes_ack(&self) -> bool {
        self.immediate || self.deadline.is_some()
    }

    /// When the delayed ACK is due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.immediate { None } else { self.deadline }
    }

    /// Writes an ACK frame; returns the largest packet number it acknowledges.
    pub(crate) fn write(&mut self, now: Instant, w: &mut Writer<'_>) -> Option<u64> {
        let largest = self.received.last()?.end - 1;
        let delay = self
            .largest_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        let delay_us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        if !encode_ack(w, self.received.as_slice(), delay_us) {
            return None;
        }
        self.eliciting_since_ack = 0;
        self.immediate = false;
        self.deadline = None;
        self.unreported = false;
        Some(largest)
    }

    /// The peer received an ACK of ours that covered up to `largest`: older ranges need not be
    /// reported again (RFC 9000 §13.2.4).
    pub(crate) fn on_ack_acked(&mut self, largest: u64) {
        let keep_from = self
            .received
            .as_slice()
            .partition_point(|&(_, end)| end <= largest);
        if keep_from > 0 {
            let end = self.received.as_slice()[keep_from - 1].1;
            self.received.remove(0..end);
            self.floor = self.floor.max(end);
        }
    }

    /// Ranges currently tracked.
    #[cfg(test)]
    pub(crate) fn range_count(&self) -> usize {
        self.received.len()
    }

    /// Heap bytes held.
    pub(crate) fn heap_size(&self) -> usize {
        self.received.heap_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::frame::{Frame, Reader};

    const DELAY: Duration = Duration::from_millis(25);

    #[test]
    fn every_second_eliciting_packet_is_acked_at_once() {
        let t0 = crate::tests::origin();
        let mut a = AckState::default();
        assert!(a.on_packet(t0, 0, true, DELAY));
        assert!(!a.wants_ack_now(t0));
        assert_eq!(a.deadline(), Some(t0 + DELAY));
        assert!(a.wants_ack_now(t0 + DELAY));
        assert!(a.on_packet(t0, 1, true, DELAY));
        assert!(a.wants_ack_now(t0));
        let mut buf = [0u8; 64];
        assert_eq!(a.write(t0, &mut Writer::new(&mut buf)), Some(1));
        assert!(!a.owes_ack() && !a.has_unreported());
        // Non-eliciting packets are reported only by piggybacking.
        assert!(a.on_packet(t0, 2, false, DELAY));
        assert!(!a.owes_ack() && a.has_unreported());
    }

    #[test]
    fn reordering_acks_at_once_and_duplicates_are_rejected() {
        let t0 = crate::tests::origin();
        let mut a = AckState::default();
        assert!(a.on_packet(t0, 0, true, DELAY));
        let mut buf = [0u8; 64];
        a.write(t0, &mut Writer::new(&mut buf));
        assert!(a.on_packet(t0, 3, true, DELAY));
        assert!(a.wants_ack_now(t0));
        assert!(!a.on_packet(t0, 3, true, DELAY));
        assert!(!a.on_packet(t0, 0, true, DELAY));
        let mut w = Writer::new(&mut buf);
        a.write(t0 + DELAY, &mut w);
        let n = w.len();
        let Ok(Frame::Ack(ack)) = Frame::decode(&mut Reader::new(&buf[..n])) else {
            panic!()
        };
        assert_eq!(ack.ranges().collect::<Vec<_>>(), [(3, 3), (0, 0)]);
        assert_eq!(ack.delay_us, 25_000);
    }

    #[test]
    fn acknowledged_acks_prune_old_ranges() {
        let t0 = crate::tests::origin();
        let mut a = AckState::default();
        for pn in [0, 2, 4, 6] {
            a.on_packet(t0, pn, false, DELAY);
        }
        assert_eq!(a.range_count(), 4);
        a.on_ack_acked(4);
        assert_eq!(a.range_count(), 2);
        assert!(
            !a.on_packet(t0, 1, true, DELAY),
            "below the floor counts as duplicate"
        );
        assert!(a.on_packet(t0, 5, true, DELAY));
    }

    #[test]
    fn the_range_count_is_bounded() {
        let t0 = crate::tests::origin();
        let mut a = AckState::default();
        for pn in 0..1000 {
            a.on_packet(t0, pn * 2, false, DELAY);
        }
        assert_eq!(a.range_count(), MAX_RANGES);
    }
}
