//! Packet input: decoding a peer's payload and acting on each frame, and acting on the
//! frames of our packets that were acknowledged or lost.

use std::time::Instant;

use super::frame::{self, Frame, Reader};
use super::mux::{Ctrl, Mux};
use super::recovery::SentFrame;
use super::recv::RecvState;
use super::{StreamEvent, StreamId};

impl Mux {
    /// One decrypted packet payload from the peer. An empty payload is a keepalive and is
    /// accepted (ignored). Malformed payloads are dropped and counted in [`Mux::stats`];
    /// frames that break a protocol rule are ignored and counted. Afterwards drain
    /// [`Mux::poll_packet`] and [`Mux::poll_event`].
    pub fn handle_packet(&mut self, now: Instant, payload: &[u8]) {
        if self.violated {
            return;
        }
        if payload.is_empty() {
            self.stats.keepalives_received += 1;
            return;
        }
        let mut r = Reader::new(payload);
        let Ok(pn) = r.varint() else {
            self.stats.packets_malformed += 1;
            return;
        };
        let frames = r.remaining();
        let Ok(eliciting) = frame::validate(frames) else {
            self.stats.packets_malformed += 1;
            return;
        };
        if !self
            .acks
            .on_packet(now, pn, eliciting, self.config.max_ack_delay)
        {
            self.stats.packets_duplicate += 1;
            return;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += payload.len() as u64;
        let mut r = Reader::new(frames);
        while let Ok(f) = Frame::decode(&mut r) {
            if self.violated {
                break;
            }
            self.on_frame(now, f);
        }
        self.process_outcomes(now);
        // An ACK resets the probe-timeout backoff (RFC 9002 §6.2.1): the probe timeout then
        // counts from the last ack-eliciting packet again, without backoff. When that packet
        // went out long ago (a backed-off probe, acknowledged late or not at all), the timeout
        // has already passed. Like a timer set in the past, it fires now: reporting it from
        // `poll_timeout` instead would be a deadline before `now` (a busy loop).
        if self.recovery.deadline().is_some_and(|at| at <= now) {
            self.handle_timeout(now);
        }
    }

    fn on_frame(&mut self, now: Instant, f: Frame<'_>) {
        match f {
            Frame::Padding | Frame::Ping => {}
            Frame::Ack(ack) => {
                let mut out = std::mem::take(&mut self.scratch);
                if self
                    .recovery
                    .on_ack(now, &ack, self.app_limited, &mut out)
                    .is_err()
                {
                    self.violation();
                }
                self.scratch = out;
                self.process_outcomes(now);
            }
            Frame::Stream {
                id,
                offset,
                data,
                fin,
            } => {
                self.data_received_at = Some(now);
                self.on_stream(StreamId(id), offset, data, fin)
            }
            Frame::ResetStream {
                id,
                code,
                final_size,
            } => {
                let id = StreamId(id);
                if !self.accept_stream(id) {
                    return;
                }
                let Some(s) = self.streams.get_mut(&id) else {
                    return;
                };
                match s.recv.on_reset(code, final_size) {
                    Err(_) => self.violation(),
                    Ok((grew, unread, notify)) => {
                        s.recv.readable_notified = false;
                        self.conn_received += grew;
                        if !self.conn_recv.allows(self.conn_received) {
                            self.violation();
                            return;
                        }
                        self.consume_conn(unread);
                        if notify {
                            self.events.push_back(StreamEvent::Reset { id, code });
                        }
                        self.maybe_remove(id);
                    }
                }
            }
            Frame::StopSending { id, code } => {
                let id = StreamId(id);
                if !self.accept_stream(id) {
                    return;
                }
                let Some(s) = self.streams.get_mut(&id) else {
                    return;
                };
                if s.stopped_by_peer.is_some() || s.send.is_finished() {
                    return;
                }
                s.stopped_by_peer = Some(code);
                s.send.want_writable = false;
                let buffered = s.send.buffered();
                if s.send.reset(code) {
                    self.send_buffered -= buffered;
                    self.ctrl.push_back(Ctrl::ResetStream(id));
                    self.wake_conn_writers();
                }
                self.events.push_back(StreamEvent::StopSending { id, code });
            }
            Frame::MaxData(max) => {
                if self.conn_send.raise(max) {
                    self.data_blocked_pending = false;
                    for (id, s) in self.streams.iter_mut() {
                        if !s.queued && s.send.wants_conn_credit() {
                            s.queued = true;
                            self.send_queue.push_back(*id);
                        }
                    }
                }
            }
            Frame::MaxStreamData { id, max } => {
                let id = StreamId(id);
                if !self.accept_stream(id) {
                    return;
                }
                if let Some(s) = self.streams.get_mut(&id) {
                    if s.send.credit.raise(max) {
                        self.queue(id);
                    }
                }
            }
            Frame::MaxStreams(max) => {
                if max > self.peer_max_streams {
                    self.peer_max_streams = max;
                    if std::mem::take(&mut self.open_blocked) {
                        self.events.push_back(StreamEvent::OpenAvailable);
                    }
                }
            }
            Frame::DataBlocked(_) => {
                if self.conn_recv.should_update() {
                    self.conn_recv.update();
                    self.max_data_pending = true;
                }
            }
            Frame::StreamDataBlocked { .. } => {}
            Frame::AckFrequency { seq, threshold } => self.acks.on_ack_frequency(seq, threshold),
        }
    }

    fn on_stream(&mut self, id: StreamId, offset: u64, data: &[u8], fin: bool) {
        if !self.accept_stream(id) {
            return;
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let r = &mut s.recv;
        match r.on_data(offset, data, fin) {
            Err(_) => self.violation(),
            Ok(grew) => {
                self.conn_received += grew;
                if !self.conn_recv.allows(self.conn_received) {
                    self.violation();
                    return;
                }
                if r.is_readable() && !r.readable_notified {
                    r.readable_notified = true;
                    self.events.push_back(StreamEvent::Readable(id));
                }
                if matches!(r.state, RecvState::Stopped(_)) {
                    self.consume_conn(grew);
                    self.maybe_remove(id);
                }
            }
        }
    }

    /// The peer broke a protocol rule: count it, report it once, ignore the peer from now on.
    fn violation(&mut self) {
        self.stats.frames_invalid += 1;
        if !self.violated {
            self.violated = true;
            self.events.push_back(StreamEvent::ProtocolViolation);
        }
    }

    /// Whether a frame for `id` should be processed: the stream exists, or the peer may open
    /// it now (which opens it and every lower one of the peer's). Frames for streams that were
    /// closed are ignored; frames for streams that may not exist are counted as invalid.
    fn accept_stream(&mut self, id: StreamId) -> bool {
        if self.streams.contains_key(&id) {
            return true;
        }
        let index = id.index();
        if id.initiator() == self.role {
            if index >= self.next_local {
                self.violation();
            }
            return false;
        }
        if index < self.next_remote {
            return false;
        }
        if index >= self.local_max_streams {
            self.violation();
            return false;
        }
        let peer = id.initiator();
        for i in self.next_remote..=index {
            let sid = StreamId::new(peer, i);
            self.new_stream(sid);
            self.events.push_back(StreamEvent::Opened(sid));
        }
        self.next_remote = index + 1;
        true
    }

    /// Acts on the frames of packets that were acknowledged (`true`) or lost (`false`).
    pub(super) fn process_outcomes(&mut self, now: Instant) {
        let mut out = std::mem::take(&mut self.scratch);
        for (frame, acked) in out.drain(..) {
            match frame {
                SentFrame::Stream {
                    id,
                    offset,
                    len,
                    fin,
                } => {
                    let Some(s) = self.streams.get_mut(&id) else {
                        continue;
                    };
                    if acked {
                        let freed = s.send.on_ack(offset, u64::from(len), fin);
                        self.send_buffered -= freed;
                        // While streams wait for connection room, they are woken together
                        // (`wake_conn_writers`), not one by one here.
                        if freed > 0 && s.send.want_writable && !self.conn_write_blocked {
                            s.send.want_writable = false;
                            self.events.push_back(StreamEvent::Writable(id));
                        }
                        if s.send.is_finished() && !s.send.finished_reported {
                            s.send.finished_reported = true;
                            self.events.push_back(StreamEvent::Finished(id));
                        }
                        self.maybe_remove(id);
                    } else {
                        s.send.on_lost(offset, u64::from(len), fin);
                        self.queue(id);
                    }
                }
                SentFrame::ResetStream(id) => {
                    let Some(s) = self.streams.get_mut(&id) else {
                        continue;
                    };
                    if acked {
                        s.send.reset_acked = true;
                        self.maybe_remove(id);
                    } else if !s.send.reset_acked && !self.ctrl.contains(&Ctrl::ResetStream(id)) {
                        self.ctrl.push_back(Ctrl::ResetStream(id));
                    }
                }
                SentFrame::StopSending(id) => {
                    let Some(s) = self.streams.get_mut(&id) else {
                        continue;
                    };
                    if !acked && !s.recv.is_done() && !self.ctrl.contains(&Ctrl::StopSending(id)) {
                        self.ctrl.push_back(Ctrl::StopSending(id));
                    }
                }
                SentFrame::MaxStreamData(id) => {
                    let Some(s) = self.streams.get_mut(&id) else {
                        continue;
                    };
                    if !acked && s.recv.expects_data() && !s.recv.max_data_queued {
                        s.recv.max_data_queued = true;
                        self.ctrl.push_back(Ctrl::MaxStreamData(id));
                    }
                }
                SentFrame::MaxData => self.max_data_pending |= !acked,
                SentFrame::MaxStreams => self.max_streams_pending |= !acked,
                SentFrame::Ack { largest } => {
                    if acked {
                        self.acks.on_ack_acked(largest);
                    }
                }
                SentFrame::AckFrequency(seq) => {
                    self.ack_frequency.pending |= !acked && seq == self.ack_frequency.seq;
                }
                SentFrame::MtuProbe(size) if acked => self.pmtu.on_acked(now, size.into()),
                SentFrame::MtuProbe(size) => self.pmtu.on_lost(now, size.into()),
            }
        }
        self.scratch = out;
        self.wake_conn_writers();
    }
}
