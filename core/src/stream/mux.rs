//! [`Mux`]: the stream layer's state and its application-facing commands. Packet input lives
//! in `incoming.rs`, packet output in `outgoing.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ack::AckState;
use super::assembler::ReadBuf;
use super::flow::{RecvCredit, SendCredit};
use super::pmtu::Pmtu;
use super::recovery::{Outcome, Recovery, TimeoutAction};
use super::recv::{RecvState, RecvStream};
use super::send::SendStream;
use super::types::{INITIAL_CONNECTION_WINDOW, INITIAL_MAX_STREAMS, INITIAL_STREAM_WINDOW};
use super::{
    MuxStats, OpenError, ReadError, ReadOutcome, Role, StreamConfig, StreamEvent, StreamId,
    WriteError,
};
use crate::congestion::{Controller, Pacer};
use crate::timer::Timer;

/// Streams the peer may have open at once: the configured number, at least the protocol's
/// initial limit (which the peer assumes before our first MAX_STREAMS), unless streams are off.
fn stream_limit(config: &StreamConfig) -> u64 {
    match config.max_concurrent_streams {
        0 => 0,
        n => n.max(INITIAL_MAX_STREAMS),
    }
}

/// One stream: both directions and whether it waits in the send queue.
#[derive(Debug)]
pub(super) struct Stream {
    pub(super) send: SendStream,
    pub(super) recv: RecvStream,
    pub(super) queued: bool,
    /// The peer's STOP_SENDING code, once received.
    pub(super) stopped_by_peer: Option<u64>,
}

/// A control frame waiting to be sent; its content is read from the stream when written, so a
/// retransmission carries current values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ctrl {
    ResetStream(StreamId),
    StopSending(StreamId),
    MaxStreamData(StreamId),
    StreamDataBlocked(StreamId),
}

/// The ACK rate we asked of the peer (ACK_FREQUENCY frames, see [`super::frame`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct AckFrequency {
    /// The sequence number of our newest request.
    pub(super) seq: u64,
    /// Its threshold: ack-eliciting packets per ACK.
    pub(super) threshold: u64,
    /// The newest request still has to be sent (or was lost).
    pub(super) pending: bool,
}

impl Default for AckFrequency {
    fn default() -> Self {
        Self {
            seq: 0,
            threshold: super::ack::DEFAULT_ACK_THRESHOLD,
            pending: false,
        }
    }
}

impl AckFrequency {
    /// Fewer ACKs on a bulk flow: the threshold is raised to 4 or 8 packets per ACK when the
    /// congestion window holds eight ACKs' worth of packets, kept while it holds four, and
    /// back to every second packet below that, so a window never waits for a delayed ACK.
    pub(super) fn update(&mut self, window_packets: u64) {
        let wanted = [8, 4]
            .into_iter()
            .find(|&t| window_packets >= 8 * t || (t == self.threshold && window_packets >= 4 * t))
            .unwrap_or(super::ack::DEFAULT_ACK_THRESHOLD);
        if wanted != self.threshold {
            self.threshold = wanted;
            self.seq += 1;
            self.pending = true;
        }
    }
}

#[cfg(test)]
mod ack_frequency_tests {
    use super::AckFrequency;

    fn after(windows: &[u64]) -> (u64, u64) {
        let mut f = AckFrequency::default();
        for &w in windows {
            f.update(w);
        }
        (f.threshold, f.seq)
    }

    #[test]
    fn the_threshold_follows_the_window_with_hysteresis() {
        assert_eq!(
            after(&[10]),
            (2, 0),
            "a small window keeps every second packet"
        );
        assert_eq!(after(&[32]), (4, 1));
        assert_eq!(after(&[64]), (8, 1));
        // Kept while the window holds four ACKs' worth, dropped below.
        assert_eq!(after(&[64, 40]), (8, 1));
        assert_eq!(after(&[64, 31]), (2, 2));
        assert_eq!(after(&[32, 20]), (4, 1));
        assert_eq!(after(&[32, 15]), (2, 2));
        // No churn: the same window asks nothing new.
        assert_eq!(after(&[64, 64, 64]), (8, 1));
    }
}

/// The reliable, multiplexed stream layer of one session (see `stream/mod.rs`).
#[derive(Debug)]
pub struct Mux {
    pub(super) config: StreamConfig,
    pub(super) role: Role,
    pub(super) streams: BTreeMap<StreamId, Stream>,
    /// Streams we opened so far, and how many the peer allows.
    pub(super) next_local: u64,
    pub(super) peer_max_streams: u64,
    /// Streams the peer opened so far, how many of those are closed, and the limit we grant.
    pub(super) next_remote: u64,
    pub(super) remote_closed: u64,
    pub(super) local_max_streams: u64,
    pub(super) max_streams_pending: bool,
    /// An `open` failed at the peer's stream limit; tell the application when it rises.
    pub(super) open_blocked: bool,
    pub(super) send_queue: VecDeque<StreamId>,
    /// Bytes written on all streams and not yet acknowledged: at most
    /// [`StreamConfig::connection_send_buffer`].
    pub(super) send_buffered: u64,
    /// A `write` was refused for lack of room in the connection's send buffer: the streams
    /// waiting for `Writable` hear once acknowledgements free some.
    pub(super) conn_write_blocked: bool,
    pub(super) ctrl: VecDeque<Ctrl>,
    pub(super) conn_send: SendCredit,
    pub(super) conn_recv: RecvCredit,
    /// Sum over streams of the highest offset received.
    pub(super) conn_received: u64,
    pub(super) max_data_pending: bool,
    pub(super) data_blocked_pending: bool,
    pub(super) data_blocked_reported: Option<u64>,
    pub(super) events: VecDeque<StreamEvent>,
    pub(super) acks: AckState,
    pub(super) recovery: Recovery,
    pub(super) pacer: Pacer,
    pub(super) pacing_until: Option<Instant>,
    /// The path MTU search: the packet size in use, and probes for a larger one.
    pub(super) pmtu: Pmtu,
    /// What we asked the peer's ACK rate to be.
    pub(super) ack_frequency: AckFrequency,
    pub(super) probes: u8,
    pub(super) ping_pending: bool,
    /// When the last STREAM frame arrived: the peer was sending data then.
    pub(super) data_received_at: Option<Instant>,
    pub(super) app_limited: bool,
    /// A send burst has started ([`Mux::poll_packet`]): its next packets need room for one
    /// packet each, not for a burst's floor.
    pub(super) in_burst: bool,
    /// Reused buffer for the outcomes of acknowledged and lost packets.
    pub(super) scratch: Vec<Outcome>,
    pub(super) stats: MuxStats,
    /// The peer broke a protocol rule; its packets are ignored from then on.
    pub(super) violated: bool,
}

impl Mux {
    /// A stream layer for a freshly established session, with the congestion controller
    /// [`StreamConfig::congestion`] names.
    pub fn new(config: StreamConfig, role: Role, now: Instant) -> Self {
        let cc = config.congestion.build(config.max_packet_size as u64, now);
        Self::with_controller(config, role, now, cc)
    }

    /// Like [`Mux::new`] with another congestion controller.
    pub(crate) fn with_controller(
        config: StreamConfig,
        role: Role,
        now: Instant,
        cc: Box<dyn Controller>,
    ) -> Self {
        let mut conn_recv =
            RecvCredit::new(INITIAL_CONNECTION_WINDOW, config.connection_receive_window);
        let max_data_pending = conn_recv.should_update();
        if max_data_pending {
            conn_recv.update();
        }
        let local_max_streams = stream_limit(&config);
        Self {
            role,
            streams: BTreeMap::new(),
            next_local: 0,
            peer_max_streams: INITIAL_MAX_STREAMS,
            next_remote: 0,
            remote_closed: 0,
            local_max_streams,
            max_streams_pending: local_max_streams > INITIAL_MAX_STREAMS,
            open_blocked: false,
            send_queue: VecDeque::new(),
            send_buffered: 0,
            conn_write_blocked: false,
            ctrl: VecDeque::new(),
            conn_send: SendCredit::new(INITIAL_CONNECTION_WINDOW),
            conn_recv,
            conn_received: 0,
            max_data_pending,
            data_blocked_pending: false,
            data_blocked_reported: None,
            events: VecDeque::new(),
            acks: AckState::default(),
            recovery: Recovery::new(now, config.initial_rtt, config.max_ack_delay, cc),
            pacer: Pacer::new(now),
            pacing_until: None,
            pmtu: Pmtu::new(config.max_packet_size, config.max_probe_packet_size),
            ack_frequency: AckFrequency::default(),
            probes: 0,
            ping_pending: false,
            data_received_at: None,
            app_limited: true,
            in_burst: false,
            scratch: Vec::new(),
            stats: MuxStats::default(),
            violated: false,
            config,
        }
    }

    pub(super) fn new_stream(&mut self, id: StreamId) {
        let mut recv = RecvStream::new(INITIAL_STREAM_WINDOW, self.config.stream_receive_window);
        let mut queued_update = false;
        if recv.credit.should_update() {
            recv.credit.update();
            recv.max_data_queued = true;
            queued_update = true;
        }
        let stream = Stream {
            send: SendStream::new(INITIAL_STREAM_WINDOW),
            recv,
            queued: false,
            stopped_by_peer: None,
        };
        self.streams.insert(id, stream);
        if queued_update {
            self.ctrl.push_back(Ctrl::MaxStreamData(id));
        }
    }

    /// Opens a bidirectional stream. Nothing is sent until data, FIN or a window update is.
    pub fn open(&mut self) -> Result<StreamId, OpenError> {
        if self.next_local >= self.peer_max_streams {
            self.open_blocked = true;
            return Err(OpenError::Limit);
        }
        let id = StreamId::new(self.role, self.next_local);
        self.next_local += 1;
        self.new_stream(id);
        Ok(id)
    }

    /// Queues as much of `data` as the stream's send buffer, and the connection's, take and
    /// returns how much.
    /// `Err(WriteError::Blocked)` means nothing fit: wait for [`StreamEvent::Writable`].
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, WriteError> {
        self.write_with(id, data.len(), |n| Bytes::copy_from_slice(&data[..n]))
    }

    /// [`Self::write`] without copying: the stream keeps (a slice of) `data` until the peer
    /// acknowledges it.
    pub fn write_bytes(&mut self, id: StreamId, data: &Bytes) -> Result<usize, WriteError> {
        self.write_with(id, data.len(), |n| data.slice(..n))
    }

    /// Queues the first bytes of `len` that fit, as `take(n)` hands them over.
    fn write_with(
        &mut self,
        id: StreamId,
        len: usize,
        take: impl FnOnce(usize) -> Bytes,
    ) -> Result<usize, WriteError> {
        let limit = self.config.stream_send_buffer;
        let s = self.streams.get_mut(&id).ok_or(WriteError::UnknownStream)?;
        if let Some(code) = s.stopped_by_peer {
            return Err(WriteError::Stopped(code));
        }
        if !s.send.is_open() {
            return Err(WriteError::Closed);
        }
        let conn_limit = self.config.connection_send_buffer;
        let mut conn_room = conn_limit.saturating_sub(self.send_buffered);
        if self.conn_write_blocked && conn_room < conn_limit / 8 {
            // Streams wait for room: none may take it piecemeal before they are woken, or
            // streams refilling on their own acknowledgements would starve them.
            conn_room = 0;
        }
        let n = s.send.room(len, limit).min(conn_room as usize);
        if n == 0 && len > 0 {
            s.send.want_writable = true;
            self.conn_write_blocked |= conn_room == 0;
            return Err(WriteError::Blocked);
        }
        self.send_buffered += n as u64;
        s.send.append(take(n));
        self.queue(id);
        Ok(n)
    }

    /// Reads stream data in order into `buf`.
    pub fn read(&mut self, id: StreamId, buf: &mut [u8]) -> Result<ReadOutcome, ReadError> {
        let mut buf = &mut buf[..];
        self.read_into(id, &mut buf)
    }

    /// Reads stream data in order into `buf` (see [`ReadBuf`]).
    pub(crate) fn read_into(
        &mut self,
        id: StreamId,
        buf: &mut impl ReadBuf,
    ) -> Result<ReadOutcome, ReadError> {
        let s = self.streams.get_mut(&id).ok_or(ReadError::UnknownStream)?;
        let r = &mut s.recv;
        match r.state {
            RecvState::Reset(code) => return Err(ReadError::Reset(code)),
            RecvState::Stopped(code) => return Err(ReadError::Stopped(code)),
            RecvState::Finished => return Ok(ReadOutcome::Finished),
            RecvState::Open => {}
        }
        let n = r.asm.read_into(buf);
        if n > 0 {
            self.stats.stream_bytes_read += n as u64;
            r.credit.consume(n as u64);
            if r.expects_data() && r.credit.should_update() {
                r.credit.update();
                if !r.max_data_queued {
                    r.max_data_queued = true;
                    self.ctrl.push_back(Ctrl::MaxStreamData(id));
                }
            }
            if !r.is_readable() {
                r.readable_notified = false;
            }
            self.consume_conn(n as u64);
            return Ok(ReadOutcome::Data(n));
        }
        if r.at_fin() {
            r.state = RecvState::Finished;
            self.maybe_remove(id);
            return Ok(ReadOutcome::Finished);
        }
        r.readable_notified = false;
        Ok(ReadOutcome::Blocked)
    }

    /// Sends FIN after the data written so far: a TCP half-close; reading continues.
    pub(crate) fn finish(&mut self, id: StreamId) -> Result<(), WriteError> {
        let s = self.streams.get_mut(&id).ok_or(WriteError::UnknownStream)?;
        if let Some(code) = s.stopped_by_peer {
            return Err(WriteError::Stopped(code));
        }
        if !s.send.is_open() {
            return Err(WriteError::Closed);
        }
        s.send.finish();
        self.queue(id);
        Ok(())
    }

    /// Abandons our send direction: unsent and unacknowledged data is dropped and the peer
    /// gets RESET_STREAM with `code`. Does nothing on unknown or completed streams.
    pub(crate) fn reset(&mut self, id: StreamId, code: u64) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.send.is_finished() {
            return;
        }
        let buffered = s.send.buffered();
        if s.send.reset(code) {
            self.send_buffered -= buffered;
            s.send.want_writable = false;
            self.ctrl.push_back(Ctrl::ResetStream(id));
            self.wake_conn_writers();
        }
    }

    /// After writes were refused for lack of room in the connection's send buffer: once an
    /// eighth of it is free again, every stream waiting to write hears `Writable` (not at each
    /// freed byte, which would wake them all per acknowledgement to find it full again), the
    /// ones holding least first, so a stream with nothing buffered is not starved by streams
    /// that refill on their own acknowledgements.
    pub(super) fn wake_conn_writers(&mut self) {
        let limit = self.config.connection_send_buffer;
        if !self.conn_write_blocked || limit.saturating_sub(self.send_buffered) < limit / 8 {
            return;
        }
        self.conn_write_blocked = false;
        let mut waiting: Vec<(u64, StreamId)> = Vec::new();
        for (&id, s) in &mut self.streams {
            if s.send.want_writable {
                s.send.want_writable = false;
                waiting.push((s.send.buffered(), id));
            }
        }
        waiting.sort_unstable();
        self.events
            .extend(waiting.into_iter().map(|(_, id)| StreamEvent::Writable(id)));
    }

    /// Stops reading: buffered data is dropped and the peer is asked (STOP_SENDING with `code`)
    /// to reset its send direction. Does nothing on unknown or already closed directions.
    pub(crate) fn stop_sending(&mut self, id: StreamId, code: u64) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let Some(discarded) = s.recv.stop(code) else {
            return;
        };
        self.ctrl.push_back(Ctrl::StopSending(id));
        self.consume_conn(discarded);
        self.maybe_remove(id);
    }

    /// Queues an ack-eliciting PING (the session's keepalive); the peer's ACK also refreshes
    /// the RTT estimate.
    pub(crate) fn ping(&mut self) {
        self.ping_pending = true;
    }

    /// The next event for the application, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// When to call [`Mux::handle_timeout`] next and why: a delayed ACK ([`Timer::Ack`]), loss
    /// detection or probe ([`Timer::Retransmit`]), or the pacer ([`Timer::Pacing`]). `None`
    /// when nothing is in flight and nothing waits.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        let ack = self.acks.deadline().map(|t| (t, Timer::Ack));
        let rto = self.recovery.deadline().map(|t| (t, Timer::Retransmit));
        let pace = self.pacing_until.map(|t| (t, Timer::Pacing));
        [ack, rto, pace].into_iter().flatten().min()
    }

    /// Runs due timers: loss detection, probe timeouts. Call at or after the
    /// [`Mux::poll_timeout`] deadline, then drain [`Mux::poll_packet`]; calling early is
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.pacing_until.is_some_and(|t| t <= now) {
            self.pacing_until = None;
        }
        let mut out = std::mem::take(&mut self.scratch);
        match self.recovery.on_timeout(now, &mut out) {
            TimeoutAction::Nothing => {}
            TimeoutAction::Lost => {}
            TimeoutAction::Probe => {
                self.stats.ptos += 1;
                self.pmtu.on_probe_timeouts(now, self.recovery.pto_count);
                self.probes = 2;
                if !self.has_pending_eliciting() {
                    // Resend the oldest packet's frames as the probe (RFC 9002 §6.2.4).
                    self.recovery.oldest_unacked(&mut out);
                }
            }
        }
        self.scratch = out;
        self.process_outcomes(now);
        if self.probes > 0 && !self.has_pending_eliciting() {
            self.ping_pending = true;
        }
    }

    /// Since when the peer owes us an answer: the send time of the oldest ack-eliciting packet
    /// in flight (`None` when nothing is owed).
    pub(crate) fn awaiting_ack_since(&self) -> Option<Instant> {
        self.recovery.oldest_eliciting_sent()
    }

    /// A round trip to the peer with room to spare: the probe timeout before backoff (RFC 9002
    /// §6.2.1), from the RTT measured so far (the initial RTT before any sample).
    pub(crate) fn round_trip_bound(&self) -> Duration {
        self.recovery.pto_unbacked()
    }

    /// The peer was just proven reachable (a handshake with it completed). Probe timeouts
    /// that backed off while it was not (a relay restarting, a path failing over) would
    /// otherwise keep the stream waiting for many seconds; like an ACK, this resets the
    /// backoff, so an overdue probe goes out at once.
    pub(crate) fn peer_reachable(&mut self) {
        self.recovery.pto_count = 0;
    }

    /// When the last STREAM frame arrived (`None`: none yet). A session whose peer goes silent
    /// right after sending data probes it, as a receiver has nothing else to send.
    pub fn data_received_at(&self) -> Option<Instant> {
        self.data_received_at
    }

    /// Whether any stream is open (in either direction, or awaiting its last frames).
    pub fn has_streams(&self) -> bool {
        !self.streams.is_empty()
    }

    /// True when nothing is in flight, nothing waits to be sent and no ACK is owed.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.recovery.eliciting_in_flight() == 0
            && !self.has_pending_eliciting()
            && !self.acks.owes_ack()
    }

    /// Counters and gauges.
    pub fn stats(&self) -> MuxStats {
        let mut s = self.stats;
        s.packets_lost = self.recovery.lost_packets;
        s.congestion_events = self.recovery.congestion_events;
        s.rtt = self.recovery.rtt.get();
        s.min_rtt = self.recovery.rtt.min();
        s.cwnd = self.recovery.cc.window();
        s.bytes_in_flight = self.recovery.bytes_in_flight;
        s.open_streams = self.streams.len();
        s.packet_size = self.pmtu.current();
        s
    }

    /// The session now sends on another path (or on its first): packets go back to
    /// [`StreamConfig::max_packet_size`], and path MTU discovery searches again if `probe`
    /// (the session allows it on direct paths; a relay forwards the base size only).
    pub fn set_path(&mut self, probe: bool) {
        self.pmtu.on_path(probe);
    }

    /// Received stream bytes held for the application (readable or waiting behind a hole),
    /// summed over streams. Flow control keeps it at or under
    /// [`StreamConfig::connection_receive_window`]: a peer that sends beyond it is closed.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.streams.values().map(|s| s.recv.asm.buffered()).sum()
    }

    /// An estimate of the heap memory this Mux holds (buffers, maps, queues), for capacity
    /// planning; `size_of::<Mux>()` is the rest.
    pub fn heap_size(&self) -> usize {
        // A BTreeMap leaf holds up to 11 entries; count a node share per entry.
        let per_entry = size_of::<StreamId>() + size_of::<Stream>() + 8;
        let streams: usize = self
            .streams
            .values()
            .map(|s| per_entry + s.send.heap_size() + s.recv.heap_size())
            .sum();
        streams
            + self.send_queue.capacity() * size_of::<StreamId>()
            + self.ctrl.capacity() * size_of::<Ctrl>()
            + self.events.capacity() * size_of::<StreamEvent>()
            + self.scratch.capacity() * size_of::<Outcome>()
            + self.acks.heap_size()
            + self.recovery.heap_size()
            + size_of_val(&*self.recovery.cc)
    }

    pub(super) fn queue(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.queued {
                s.queued = true;
                self.send_queue.push_back(id);
            }
        }
    }

    pub(super) fn consume_conn(&mut self, n: u64) {
        self.conn_recv.consume(n);
        if self.conn_recv.should_update() {
            self.conn_recv.update();
            self.max_data_pending = true;
        }
    }

    /// Forgets a stream once both directions are done; a closed peer stream lets the peer
    /// open another.
    pub(super) fn maybe_remove(&mut self, id: StreamId) {
        let done = self
            .streams
            .get(&id)
            .is_some_and(|s| s.send.is_done() && s.recv.is_done());
        if !done {
            return;
        }
        if let Some(s) = self.streams.remove(&id) {
            debug_assert_eq!(s.send.buffered(), 0, "{id} leaves bytes counted");
        }
        if id.initiator() != self.role {
            self.remote_closed += 1;
            self.local_max_streams = self.remote_closed + stream_limit(&self.config);
            self.max_streams_pending = true;
        }
    }

    /// New stream data waiting to be sent within credit, counted up to `enough`; 0 when
    /// something waits that should go at once (a control frame, lost data, a FIN).
    pub(super) fn waiting_data(&self, enough: u64) -> u64 {
        if self.control_pending() {
            return 0;
        }
        let credit = self.conn_send.available();
        let mut waiting = 0;
        for id in &self.send_queue {
            let Some(stream) = self.streams.get(id) else {
                continue;
            };
            let (new, urgent) = stream.send.sendable();
            if urgent {
                return 0;
            }
            waiting += new;
            if waiting >= enough || waiting >= credit {
                break;
            }
        }
        waiting.min(credit).min(enough)
    }

    /// Whether a control frame (or a PING) waits to be sent.
    fn control_pending(&self) -> bool {
        self.ping_pending
            || self.max_data_pending
            || self.max_streams_pending
            || self.data_blocked_pending
            || !self.ctrl.is_empty()
    }

    /// Whether anything ack-eliciting waits to be sent.
    pub(super) fn has_pending_eliciting(&self) -> bool {
        if self.control_pending() {
            return true;
        }
        let credit = self.conn_send.available();
        self.send_queue.iter().any(|id| {
            self.streams
                .get(id)
                .is_some_and(|s| s.send.has_pending(credit))
        })
    }
}
