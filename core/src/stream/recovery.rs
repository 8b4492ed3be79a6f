//! Sent-packet bookkeeping and loss detection (RFC 9002 §6): acknowledgement processing, the
//! packet and time thresholds, the probe timeout with backoff, RTT samples, persistent
//! congestion, and the calls into the congestion [`Controller`].
//!
//! What each packet carried is kept as [`SentFrame`]s in one ring shared by all packets, so
//! recording a packet allocates nothing once the rings have grown to the flight size.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::StreamId;
use super::frame::AckFrame;
use crate::congestion::{AckEvent, Controller, DeliveryRate, RttEstimator, SendSnapshot};

/// Packet reordering threshold (RFC 9002 `kPacketThreshold`).
const PACKET_THRESHOLD: u64 = 3;
/// Persistent congestion threshold (RFC 9002 `kPersistentCongestionThreshold`).
const PERSISTENT_CONGESTION_THRESHOLD: u32 = 3;
/// The largest PTO backoff exponent; keeps the timer finite.
const MAX_PTO_BACKOFF: u32 = 10;

/// What a sent packet carried that may need acting on when it is acknowledged or lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SentFrame {
    Stream {
        id: StreamId,
        offset: u64,
        len: u32,
        fin: bool,
    },
    ResetStream(StreamId),
    StopSending(StreamId),
    MaxStreamData(StreamId),
    MaxData,
    MaxStreams,
    Ack {
        largest: u64,
    },
    /// A path MTU probe of this size ([`super::pmtu`]).
    MtuProbe(u16),
    /// An ACK_FREQUENCY request with this sequence number.
    AckFrequency(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Unacked,
    Acked,
    Lost,
}

#[derive(Clone, Copy, Debug)]
struct SentPacket {
    time: Instant,
    size: u16,
    ack_eliciting: bool,
    /// A path MTU probe: its loss says nothing about congestion.
    mtu_probe: bool,
    state: State,
    first_frame: u64,
    frame_count: u16,
    /// The delivery state when it was sent, for delivery-rate samples.
    delivery: SendSnapshot,
}

/// The outcome for a frame of an acknowledged or lost packet.
pub(crate) type Outcome = (SentFrame, bool);

/// What [`Recovery::on_timeout`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeoutAction {
    Nothing,
    /// Packets were declared lost; their frames are in the output.
    Lost,
    /// The probe timeout fired: send up to two probe packets.
    Probe,
}

/// The peer acknowledged a packet number we never sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InvalidAck;

/// Loss detection and congestion control state for the packets we send.
#[derive(Debug)]
pub(crate) struct Recovery {
    sent: VecDeque<SentPacket>,
    first_pn: u64,
    frames: VecDeque<SentFrame>,
    first_frame: u64,
    largest_acked: Option<u64>,
    loss_time: Option<Instant>,
    pub(crate) pto_count: u32,
    last_eliciting: Option<Instant>,
    pub(crate) bytes_in_flight: u64,
    eliciting_in_flight: u64,
    first_rtt_sample: Option<Instant>,
    pub(crate) rtt: RttEstimator,
    delivery: DeliveryRate,
    pub(crate) cc: Box<dyn Controller>,
    max_ack_delay: Duration,
    pub(crate) lost_packets: u64,
    pub(crate) congestion_events: u64,
}

impl Recovery {
    pub(crate) fn new(
        now: Instant,
        initial_rtt: Duration,
        max_ack_delay: Duration,
        cc: Box<dyn Controller>,
    ) -> Self {
        Self {
            sent: VecDeque::new(),
            first_pn: 0,
            frames: VecDeque::new(),
            first_frame: 0,
            largest_acked: None,
            loss_time: None,
            pto_count: 0,
            last_eliciting: None,
            bytes_in_flight: 0,
            eliciting_in_flight: 0,
            first_rtt_sample: None,
            rtt: RttEstimator::new(initial_rtt),
            delivery: DeliveryRate::new(now),
            cc,
            max_ack_delay,
            lost_packets: 0,
            congestion_events: 0,
        }
    }

    /// The packet number the next packet gets.
    pub(crate) fn next_pn(&self) -> u64 {
        self.first_pn + self.sent.len() as u64
    }

    /// Records a frame of the packet being built (before [`Recovery::on_sent`]).
    pub(crate) fn push_frame(&mut self, frame: SentFrame) {
        self.frames.push_back(frame);
    }

    /// Records the packet just built; frames pushed since the last packet belong to it.
    /// Packets that are not ack-eliciting are not tracked for loss.
    pub(crate) fn on_sent(&mut self, now: Instant, size: usize, ack_eliciting: bool) {
        self.record(now, size, ack_eliciting, false);
    }

    /// Records a path MTU probe, sent at `now` with `size` bytes: in flight like any packet,
    /// but its loss is no congestion signal (RFC 9000 §14.4).
    pub(crate) fn on_sent_mtu_probe(&mut self, now: Instant, size: usize) {
        self.record(now, size, true, true);
    }

    fn record(&mut self, now: Instant, size: usize, ack_eliciting: bool, mtu_probe: bool) {
        let first_frame = self.sent.back().map_or(self.first_frame, |p| {
            p.first_frame + u64::from(p.frame_count)
        });
        let frame_count = (self.first_frame + self.frames.len() as u64 - first_frame) as u16;
        let size = size.min(usize::from(u16::MAX)) as u16;
        let state = if ack_eliciting {
            State::Unacked
        } else {
            State::Acked
        };
        let delivery = if ack_eliciting {
            self.delivery.on_sent(now, self.bytes_in_flight)
        } else {
            self.delivery.snapshot()
        };
        self.sent.push_back(SentPacket {
            time: now,
            size,
            ack_eliciting,
            mtu_probe,
            state,
            first_frame,
            frame_count,
            delivery,
        });
        if ack_eliciting {
            self.bytes_in_flight += u64::from(size);
            self.eliciting_in_flight += 1;
            self.last_eliciting = Some(now);
            self.cc.on_sent(now, u64::from(size));
        }
        self.pop_done();
    }

    /// The sender has nothing more to send (it is not limited by the window or the pacer):
    /// delivery-rate samples measure the application until what is in flight is delivered.
    pub(crate) fn on_app_limited(&mut self) {
        self.delivery.on_app_limited(self.bytes_in_flight);
    }

    /// Processes an ACK frame; acknowledged and lost frames are appended to `out`. Returns
    /// whether anything was newly acknowledged.
    pub(crate) fn on_ack(
        &mut self,
        now: Instant,
        ack: &AckFrame<'_>,
        app_limited: bool,
        out: &mut Vec<Outcome>,
    ) -> Result<bool, InvalidAck> {
        if ack.largest >= self.next_pn() {
            return Err(InvalidAck);
        }
        self.largest_acked = Some(
            self.largest_acked
                .map_or(ack.largest, |l| l.max(ack.largest)),
        );
        let mut rtt_sample = None;
        let ack_delay = Duration::from_micros(ack.delay_us).min(self.max_ack_delay);
        if let Some(p) = self.packet(ack.largest) {
            if p.state == State::Unacked && p.ack_eliciting {
                let sample = now.saturating_duration_since(p.time);
                self.rtt.update(ack_delay, sample);
                rtt_sample = Some(sample);
                self.first_rtt_sample.get_or_insert(now);
            }
        }
        let prior_in_flight = self.bytes_in_flight;
        let mut acked = 0;
        let mut newly = false;
        for (lo, hi) in ack.ranges() {
            let lo = lo.max(self.first_pn);
            let hi = hi.min(self.next_pn() - 1);
            for pn in lo..=hi {
                let i = (pn - self.first_pn) as usize;
                let p = self.sent[i];
                if p.state != State::Unacked {
                    continue;
                }
                self.sent[i].state = State::Acked;
                newly = true;
                self.bytes_in_flight -= u64::from(p.size);
                self.eliciting_in_flight -= 1;
                acked += u64::from(p.size);
                self.delivery
                    .on_acked(now, p.time, u64::from(p.size), p.delivery);
                self.cc
                    .on_ack(now, p.time, u64::from(p.size), app_limited, &self.rtt);
                self.emit(p, true, out);
            }
        }
        if !newly {
            return Ok(false);
        }
        self.pto_count = 0;
        let lost = self.detect_lost(now, out);
        let event = AckEvent {
            acked,
            lost,
            prior_in_flight,
            in_flight: self.bytes_in_flight,
            delivered: self.delivery.delivered(),
            sample: self.delivery.take_sample(),
            rtt: rtt_sample,
            ack_delay,
        };
        self.cc.on_ack_event(now, &event, &self.rtt);
        self.pop_done();
        Ok(true)
    }

    fn packet(&self, pn: u64) -> Option<&SentPacket> {
        self.sent
            .get(usize::try_from(pn.checked_sub(self.first_pn)?).ok()?)
    }

    fn emit(&self, p: SentPacket, acked: bool, out: &mut Vec<Outcome>) {
        let start = (p.first_frame - self.first_frame) as usize;
        for f in self.frames.range(start..start + usize::from(p.frame_count)) {
            out.push((*f, acked));
        }
    }

    /// Declares lost what the packet and time thresholds say is; returns the bytes lost.
    fn detect_lost(&mut self, now: Instant, out: &mut Vec<Outcome>) -> u64 {
        let Some(largest) = self.largest_acked else {
            return 0;
        };
        let mut lost_bytes = 0;
        self.loss_time = None;
        let loss_delay = self.rtt.loss_delay();
        let pc_duration =
            (self.rtt.pto_base() + self.max_ack_delay) * PERSISTENT_CONGESTION_THRESHOLD;
        let mut largest_lost_time = None;
        let mut persistent = false;
        // Start of the current run of lost ack-eliciting packets with no acknowledged one
        // between them.
        let mut run_start: Option<Instant> = None;
        let end = (largest + 1)
            .saturating_sub(self.first_pn)
            .min(self.sent.len() as u64) as usize;
        for i in 0..end {
            let p = self.sent[i];
            match p.state {
                State::Acked => {
                    if p.ack_eliciting {
                        run_start = None;
                    }
                    continue;
                }
                State::Lost => continue,
                State::Unacked => {}
            }
            let pn = self.first_pn + i as u64;
            if largest - pn >= PACKET_THRESHOLD || p.time + loss_delay <= now {
                self.sent[i].state = State::Lost;
                self.bytes_in_flight -= u64::from(p.size);
                self.eliciting_in_flight -= 1;
                self.emit(p, false, out);
                if p.mtu_probe {
                    continue;
                }
                lost_bytes += u64::from(p.size);
                self.lost_packets += 1;
                largest_lost_time = Some(p.time);
                if self.first_rtt_sample.is_some_and(|t| p.time > t) {
                    let start = *run_start.get_or_insert(p.time);
                    persistent |= p.time.saturating_duration_since(start) > pc_duration;
                }
            } else {
                let at = p.time + loss_delay;
                self.loss_time = Some(self.loss_time.map_or(at, |t| t.min(at)));
                run_start = None;
            }
        }
        if let Some(sent) = largest_lost_time {
            self.congestion_events += 1;
            self.cc
                .on_congestion_event(now, sent, self.bytes_in_flight, persistent);
        }
        lost_bytes
    }

    /// The loss-detection or probe deadline, if any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.loss_time.is_some() {
            return self.loss_time;
        }
        if self.eliciting_in_flight == 0 {
            return None;
        }
        Some(self.last_eliciting? + self.pto())
    }

    /// The current probe timeout including backoff.
    pub(crate) fn pto(&self) -> Duration {
        self.pto_unbacked() * (1 << self.pto_count.min(MAX_PTO_BACKOFF))
    }

    /// The probe timeout without backoff: `smoothed_rtt + max(4 * rttvar, kGranularity) +
    /// max_ack_delay`, a round trip with room to spare.
    pub(crate) fn pto_unbacked(&self) -> Duration {
        self.rtt.pto_base() + self.max_ack_delay
    }

    /// Handles the loss-detection timer.
    pub(crate) fn on_timeout(&mut self, now: Instant, out: &mut Vec<Outcome>) -> TimeoutAction {
        if self.loss_time.is_some_and(|t| t <= now) {
            self.detect_lost(now, out);
            self.pop_done();
            return TimeoutAction::Lost;
        }
        if self.deadline().is_some_and(|t| t <= now) {
            self.pto_count += 1;
            return TimeoutAction::Probe;
        }
        TimeoutAction::Nothing
    }

    /// Copies the frames of the oldest unacknowledged packet into `out` (for a probe that
    /// resends them); returns false if nothing is in flight.
    pub(crate) fn oldest_unacked(&self, out: &mut Vec<Outcome>) -> bool {
        match self.sent.iter().find(|p| p.state == State::Unacked) {
            Some(p) => {
                self.emit(*p, false, out);
                true
            }
            None => false,
        }
    }

    /// When the oldest ack-eliciting packet still in flight was sent.
    pub(crate) fn oldest_eliciting_sent(&self) -> Option<Instant> {
        if self.eliciting_in_flight == 0 {
            return None;
        }
        self.sent
            .iter()
            .find(|p| p.state == State::Unacked && p.ack_eliciting)
            .map(|p| p.time)
    }

    /// Ack-eliciting packets in flight.
    #[cfg(test)]
    pub(crate) fn eliciting_in_flight(&self) -> u64 {
        self.eliciting_in_flight
    }

    fn pop_done(&mut self) {
        while self.sent.front().is_some_and(|p| p.state != State::Unacked) {
            self.sent.pop_front();
            self.first_pn += 1;
        }
        let keep_from = self
            .sent
            .front()
            .map_or(self.first_frame + self.frames.len() as u64, |p| {
                p.first_frame
            });
        let drop = (keep_from - self.first_frame) as usize;
        self.frames.drain(..drop);
        self.first_frame = keep_from;
    }

    /// Heap bytes held.
    pub(crate) fn heap_size(&self) -> usize {
        self.sent.capacity() * size_of::<SentPacket>()
            + self.frames.capacity() * size_of::<SentFrame>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::congestion::NewReno;
    use crate::stream::frame::{Frame, Reader, Writer, encode_ack};

    const MS: Duration = Duration::from_millis(1);

    fn recovery() -> Recovery {
        Recovery::new(
            crate::tests::origin(),
            100 * MS,
            25 * MS,
            Box::new(NewReno::new(1000)),
        )
    }

    fn ack(r: &mut Recovery, now: Instant, ranges: &[(u64, u64)], out: &mut Vec<Outcome>) -> bool {
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        assert!(encode_ack(&mut w, ranges, 0));
        let n = w.len();
        let Ok(Frame::Ack(a)) = Frame::decode(&mut Reader::new(&buf[..n])) else {
            panic!()
        };
        r.on_ack(now, &a, false, out).unwrap()
    }

    fn send(r: &mut Recovery, now: Instant, id: u64) {
        r.push_frame(SentFrame::Stream {
            id: StreamId(id),
            offset: 0,
            len: 10,
            fin: false,
        });
        r.on_sent(now, 1000, true);
    }

    #[test]
    fn packet_threshold_declares_loss_and_halves_the_window() {
        let t0 = crate::tests::origin();
        let mut r = recovery();
        for pn in 0..5 {
            send(&mut r, t0, pn);
        }
        assert_eq!(r.bytes_in_flight, 5000);
        let mut out = Vec::new();
        // Ack 1..=3: packet 0 is 3 behind the largest acked, so lost.
        assert!(ack(&mut r, t0 + 50 * MS, &[(1, 4)], &mut out));
        assert_eq!(r.lost_packets, 1);
        assert!(out.contains(&(
            SentFrame::Stream {
                id: StreamId(0),
                offset: 0,
                len: 10,
                fin: false
            },
            false
        )));
        assert_eq!(out.iter().filter(|o| o.1).count(), 3);
        assert_eq!(r.bytes_in_flight, 1000);
        // Slow start took the window from 10000 to 13000 with three acks, then the loss halved it.
        assert_eq!(r.cc.window(), 6500);
        assert_eq!(r.rtt.get(), 50 * MS);
    }

    #[test]
    fn time_threshold_sets_a_loss_timer() {
        let t0 = crate::tests::origin();
        let mut r = recovery();
        send(&mut r, t0, 0);
        send(&mut r, t0 + 5 * MS, 1);
        let mut out = Vec::new();
        ack(&mut r, t0 + 60 * MS, &[(1, 2)], &mut out);
        // RTT sample 55 ms; loss delay 9/8 * 55 = 61.875 ms after packet 0 was sent.
        assert_eq!(r.lost_packets, 0);
        let deadline = r.deadline().unwrap();
        assert_eq!(deadline, t0 + Duration::from_micros(61_875));
        out.clear();
        assert_eq!(r.on_timeout(deadline, &mut out), TimeoutAction::Lost);
        assert_eq!(r.lost_packets, 1);
        assert_eq!(out.len(), 1);
        assert_eq!(r.deadline(), None, "nothing left in flight: no timer");
    }

    #[test]
    fn pto_backs_off_and_resets_on_ack() {
        let t0 = crate::tests::origin();
        let mut r = recovery();
        send(&mut r, t0, 0);
        // Initial RTT 100 ms: PTO = 100 + 4 * 50 + 25 = 325 ms.
        assert_eq!(r.deadline(), Some(t0 + 325 * MS));
        let mut out = Vec::new();
        assert_eq!(r.on_timeout(t0 + 325 * MS, &mut out), TimeoutAction::Probe);
        assert_eq!(r.deadline(), Some(t0 + 650 * MS));
        assert_eq!(r.on_timeout(t0 + 650 * MS, &mut out), TimeoutAction::Probe);
        assert_eq!(r.deadline(), Some(t0 + 1300 * MS));
        assert!(r.oldest_unacked(&mut out));
        assert_eq!(out.len(), 1);
        send(&mut r, t0 + 1300 * MS, 1);
        ack(&mut r, t0 + 1400 * MS, &[(1, 2)], &mut Vec::new());
        assert_eq!(r.pto_count, 0);
    }

    #[test]
    fn persistent_congestion_collapses_the_window() {
        let t0 = crate::tests::origin();
        let mut r = recovery();
        send(&mut r, t0, 0);
        ack(&mut r, t0 + 100 * MS, &[(0, 1)], &mut Vec::new());
        // RTT 100 ms: persistent congestion duration = (100 + 200 + 25) * 3 = 975 ms.
        for i in 0..12 {
            send(&mut r, t0 + 200 * MS + i * 100 * MS, 1 + u64::from(i));
        }
        send(&mut r, t0 + 1500 * MS, 13);
        let mut out = Vec::new();
        ack(&mut r, t0 + 1600 * MS, &[(0, 1), (13, 14)], &mut out);
        assert_eq!(r.lost_packets, 12);
        assert_eq!(r.cc.window(), 2000);
    }

    #[test]
    fn acks_for_unsent_packets_are_rejected_and_state_is_bounded() {
        let t0 = crate::tests::origin();
        let mut r = recovery();
        send(&mut r, t0, 0);
        let mut buf = [0u8; 32];
        let mut w = Writer::new(&mut buf);
        encode_ack(&mut w, &[(0, 5)], 0);
        let n = w.len();
        let Ok(Frame::Ack(a)) = Frame::decode(&mut Reader::new(&buf[..n])) else {
            panic!()
        };
        assert_eq!(r.on_ack(t0, &a, false, &mut Vec::new()), Err(InvalidAck));
        for pn in 1..100 {
            send(&mut r, t0, pn);
        }
        ack(&mut r, t0 + MS, &[(0, 100)], &mut Vec::new());
        assert!(r.sent.is_empty() && r.frames.is_empty());
        assert_eq!(r.next_pn(), 100);
    }
}
