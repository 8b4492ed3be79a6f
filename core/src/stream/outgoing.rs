//! Packet output: choosing what goes into the next packet under the congestion window and
//! the pacer, and recording it for loss detection.

use std::time::Instant;

use super::frame::{Frame, Writer, encode_stream_header, varint_size};
use super::mux::{Ctrl, Mux};
use super::recovery::SentFrame;
use super::recv::RecvState;
use crate::congestion::{Pacer, burst_size};

/// Below this much room a packet is not worth starting.
const MIN_PACKET: usize = 32;

impl Mux {
    /// The room a burst of new data waits for: a millisecond of the pacing rate
    /// ([`burst_size`], at most one segmentation-offload send), or all the data waiting if
    /// less, and at most a third of the window, as Linux defers a TCP send for segmentation
    /// offload (`tcp_tso_should_defer` with `tcp_tso_win_divisor` 3). Then an ACK or a
    /// pacing wakeup sends tens of packets in one segmentation-offload send, not the few that
    /// freed up since the last: on loopback at 400 MB/s that was about 7 per send. Below two
    /// packets per millisecond (a lossy or slow path, a window of a few packets) there is no
    /// floor: waiting would only leave the window part empty. Control frames, lost data and a
    /// FIN wait for no floor, and neither does a packet when nothing is in flight. 0: no floor.
    fn burst_floor(&self, rate: u64, window: u64, packet: u64) -> u64 {
        let floor = burst_size(rate).min(window / 3);
        if floor < 2 * packet {
            return 0;
        }
        let waiting = self.waiting_data(floor);
        if waiting <= packet { 0 } else { waiting }
    }

    /// Writes the next packet's plaintext into `buf` (at most `buf.len()` bytes, capped at
    /// the packet size the path is known to carry: [`super::StreamConfig::max_packet_size`],
    /// or more once path MTU discovery found more) and returns its length. `None` when
    /// nothing may be sent now: nothing is pending, or the congestion window or the pacer
    /// forbids it (then [`Mux::poll_timeout`] says when to try again). Call until it returns
    /// `None`. A buffer of [`super::StreamConfig::max_probe_packet_size`] bytes lets it send
    /// path MTU probes (see [`Mux::set_path`]).
    pub fn poll_packet(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Some(len) = self.poll_mtu_probe(now, buf) {
            return Some(len);
        }
        let size = buf.len().min(self.pmtu.current());
        if size < MIN_PACKET {
            return None;
        }
        let buf = &mut buf[..size];
        let ack_now = self.acks.wants_ack_now(now);
        let mut eliciting_ok = false;
        if self.has_pending_eliciting() {
            let window = self.recovery.cc.window();
            let in_flight = self.recovery.bytes_in_flight;
            let mtu = self.pmtu.current() as u64;
            let rate = (self.recovery.cc.pacing_rate())
                .unwrap_or_else(|| Pacer::rate(window, self.recovery.rtt.get()));
            // Room a new burst waits for; 0 once a burst has started, or when there is no
            // floor (then any room sends, as before a floor existed).
            let floor = if self.in_burst {
                0
            } else {
                self.burst_floor(rate, window, size as u64)
            };
            if self.probes > 0 {
                eliciting_ok = true;
            } else if in_flight >= window {
                self.app_limited = false;
            } else if in_flight > 0 && window - in_flight < floor {
                // The ACKs of what is in flight will free a burst's room.
                self.app_limited = false;
            } else if self.config.pacing {
                match self
                    .pacer
                    .delay(now, floor.max(size as u64), mtu, rate, window)
                {
                    None => eliciting_ok = true,
                    Some(at) => self.pacing_until = Some(at),
                }
            } else {
                eliciting_ok = true;
            }
        } else {
            self.app_limited = true;
            self.recovery.on_app_limited();
        }
        self.in_burst = eliciting_ok;
        if !eliciting_ok && !ack_now {
            return None;
        }
        if eliciting_ok {
            self.pacing_until = None;
        }

        let pn = self.recovery.next_pn();
        let mut w = Writer::new(buf);
        w.varint(pn);
        let header = w.len();
        let mut ack_largest = None;
        if ack_now || (eliciting_ok && self.acks.has_unreported()) {
            ack_largest = self.acks.write(now, &mut w);
        }
        let mut eliciting = false;
        if eliciting_ok {
            eliciting |= self.write_control(&mut w);
            eliciting |= self.write_streams(&mut w);
            // A probe must elicit an ACK (RFC 9002 §6.2.4), even when what looked pending was
            // stale (a window update queued for a stream the peer has since reset).
            if (self.ping_pending || self.probes > 0) && !eliciting && w.remaining() > 0 {
                w.varint(super::frame::PING);
                eliciting = true;
            }
            self.ping_pending &= !eliciting;
        }
        if w.len() == header {
            return None;
        }
        if eliciting {
            if let Some(largest) = ack_largest {
                self.recovery.push_frame(SentFrame::Ack { largest });
            }
            self.pacer.on_sent(w.len() as u64);
            self.probes = self.probes.saturating_sub(1);
        }
        let len = w.len();
        self.recovery.on_sent(now, len, eliciting);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += len as u64;
        Some(len)
    }

    /// Writes a path MTU probe if one is due, the stream layer is sending anyway (the search
    /// serves bulk transfers; an idle session need not know), the buffer holds it and the
    /// congestion window has room: one PING padded to the size under test.
    fn poll_mtu_probe(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.probes > 0 || !self.has_pending_eliciting() {
            return None;
        }
        let size = self.pmtu.wanted(now)?;
        let room = self
            .recovery
            .cc
            .window()
            .saturating_sub(self.recovery.bytes_in_flight);
        if buf.len() < size || room < size as u64 {
            return None;
        }
        let mut w = Writer::new(&mut buf[..size]);
        w.varint(self.recovery.next_pn());
        w.varint(super::frame::PING);
        let padding = w.remaining();
        w.reserve(padding).fill(0);
        self.recovery
            .push_frame(SentFrame::MtuProbe(u16::try_from(size).ok()?));
        self.recovery.on_sent_mtu_probe(now, size);
        self.pmtu.on_sent(size);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += size as u64;
        self.stats.mtu_probes += 1;
        Some(size)
    }

    fn write_control(&mut self, w: &mut Writer<'_>) -> bool {
        let mut wrote = false;
        let window_packets = self.recovery.cc.window() / self.pmtu.current().max(1) as u64;
        self.ack_frequency.update(window_packets);
        let freq = self.ack_frequency;
        if freq.pending
            && (Frame::AckFrequency {
                seq: freq.seq,
                threshold: freq.threshold,
            })
            .encode(w)
        {
            self.ack_frequency.pending = false;
            self.recovery.push_frame(SentFrame::AckFrequency(freq.seq));
            wrote = true;
        }
        if self.max_data_pending && Frame::MaxData(self.conn_recv.max).encode(w) {
            self.max_data_pending = false;
            self.recovery.push_frame(SentFrame::MaxData);
            wrote = true;
        }
        if self.max_streams_pending && Frame::MaxStreams(self.local_max_streams).encode(w) {
            self.max_streams_pending = false;
            self.recovery.push_frame(SentFrame::MaxStreams);
            wrote = true;
        }
        if self.data_blocked_pending && Frame::DataBlocked(self.conn_send.max).encode(w) {
            self.data_blocked_pending = false;
            wrote = true;
        }
        while let Some(ctrl) = self.ctrl.pop_front() {
            let (frame, sent) = match ctrl {
                Ctrl::ResetStream(id) => match self.streams.get(&id) {
                    Some(s) if !s.send.reset_acked => match s.send.reset {
                        Some(code) => {
                            let final_size = s.send.sent_end();
                            (
                                Frame::ResetStream {
                                    id: id.0,
                                    code,
                                    final_size,
                                },
                                Some(SentFrame::ResetStream(id)),
                            )
                        }
                        None => continue,
                    },
                    _ => continue,
                },
                Ctrl::StopSending(id) => match self.streams.get(&id).map(|s| s.recv.state) {
                    Some(RecvState::Stopped(code)) => (
                        Frame::StopSending { id: id.0, code },
                        Some(SentFrame::StopSending(id)),
                    ),
                    _ => continue,
                },
                Ctrl::MaxStreamData(id) => match self.streams.get_mut(&id) {
                    Some(s) if s.recv.expects_data() => {
                        s.recv.max_data_queued = false;
                        let max = s.recv.credit.max;
                        (
                            Frame::MaxStreamData { id: id.0, max },
                            Some(SentFrame::MaxStreamData(id)),
                        )
                    }
                    Some(s) => {
                        s.recv.max_data_queued = false;
                        continue;
                    }
                    None => continue,
                },
                Ctrl::StreamDataBlocked(id) => match self.streams.get(&id) {
                    Some(s) => (
                        Frame::StreamDataBlocked {
                            id: id.0,
                            limit: s.send.credit.max,
                        },
                        None,
                    ),
                    None => continue,
                },
            };
            if !frame.encode(w) {
                if let Ctrl::MaxStreamData(id) = ctrl {
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.recv.max_data_queued = true;
                    }
                }
                self.ctrl.push_front(ctrl);
                break;
            }
            if let Some(sent) = sent {
                self.recovery.push_frame(sent);
            }
            wrote = true;
        }
        wrote
    }

    /// Fills the rest of the packet with stream data, one frame per stream in round-robin
    /// order: lost data first, then new data within flow-control credit.
    fn write_streams(&mut self, w: &mut Writer<'_>) -> bool {
        let mut wrote = false;
        let mut visits = self.send_queue.len();
        while visits > 0 && w.remaining() > 8 {
            visits -= 1;
            let Some(id) = self.send_queue.pop_front() else {
                break;
            };
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.queued = false;
            let credit = self.conn_send.available();
            if !s.send.has_pending(credit) {
                if s.send.blocked_by_stream_credit()
                    && s.send.blocked_reported != Some(s.send.credit.max)
                {
                    s.send.blocked_reported = Some(s.send.credit.max);
                    self.ctrl.push_back(Ctrl::StreamDataBlocked(id));
                }
                if credit == 0
                    && s.send.wants_conn_credit()
                    && self.data_blocked_reported != Some(self.conn_send.max)
                {
                    self.data_blocked_reported = Some(self.conn_send.max);
                    self.data_blocked_pending = true;
                }
                continue;
            }
            let room = w.remaining();
            let header =
                1 + varint_size(id.0) + varint_size(s.send.end()) + varint_size(room as u64);
            if room < header {
                s.queued = true;
                self.send_queue.push_front(id);
                break;
            }
            if let Some(c) = s.send.next_chunk(room - header, credit) {
                encode_stream_header(w, id.0, c.offset, c.len, c.fin);
                s.send.copy(c.offset, w.reserve(c.len));
                if c.new {
                    self.conn_send.used += c.len as u64;
                    self.stats.stream_bytes_sent += c.len as u64;
                } else {
                    self.stats.stream_bytes_retransmitted += c.len as u64;
                }
                let len = c.len as u32;
                self.recovery.push_frame(SentFrame::Stream {
                    id,
                    offset: c.offset,
                    len,
                    fin: c.fin,
                });
                wrote = true;
            }
            if s.send.has_pending(self.conn_send.available()) {
                s.queued = true;
                self.send_queue.push_back(id);
            }
        }
        wrote
    }
}
