//! The stream layer inside a session: sending its packets, passing its events on, and reading
//! the service header of incoming streams.

use std::time::Instant;

use super::Context;
use super::state::{STREAM_OVERHEAD, Session};
use crate::crypto::PublicKey;
use crate::event::Event;
use crate::service::{BAD_HEADER, HeaderReader, HeaderState, UNKNOWN_SERVICE};
use crate::stream::{Mux, ReadOutcome, Role, StreamEvent, StreamId};
use crate::wire::payload::PayloadKind;

impl Session {
    /// Sends every packet the stream layer has ready (as congestion control and pacing allow)
    /// and passes its events on. Called after anything that may give it work.
    pub(crate) fn flush_mux(&mut self, ctx: &mut Context<'_>, now: Instant) {
        self.send_mux_packets(ctx, now);
        // Reading a header may free credit and queue a window update: send again until quiet.
        while self.pass_mux_events(ctx) {
            self.send_mux_packets(ctx, now);
        }
    }

    fn send_mux_packets(&mut self, ctx: &mut Context<'_>, now: Instant) {
        let reject_after = ctx.config.session.reject_after_packets;
        let max_plaintext = 1 + self.mux_packet_size(ctx);
        while let Some(keypair) = self.current.as_mut() {
            let mux = &mut self.mux;
            let packet = keypair.seal_with(max_plaintext, reject_after, |buf| {
                buf[0] = PayloadKind::Stream as u8;
                mux.poll_packet(now, &mut buf[1..]).map(|n| n + 1)
            });
            let Some(packet) = packet else { break };
            let rekey = keypair.sent() >= ctx.config.session.rekey_after_packets;
            self.transmit(ctx, now, packet);
            if rekey {
                self.start_handshake(ctx, now);
            }
        }
    }

    /// Passes the stream layer's events on; returns whether there were any.
    fn pass_mux_events(&mut self, ctx: &mut Context<'_>) -> bool {
        let mut any = false;
        while let Some(event) = self.mux.poll_event() {
            any = true;
            let peer = self.id;
            let event = match event {
                StreamEvent::Opened(stream) => {
                    self.headers.insert(stream, HeaderReader::default());
                    continue;
                }
                StreamEvent::Readable(stream) if self.headers.contains_key(&stream) => {
                    match self.read_header(ctx, stream) {
                        Some(event) => event,
                        None => continue,
                    }
                }
                StreamEvent::Reset { id, .. } | StreamEvent::StopSending { id, .. }
                    if self.headers.remove(&id).is_some() =>
                {
                    continue;
                }
                StreamEvent::Readable(stream) => Event::StreamReadable { peer, stream },
                StreamEvent::Writable(stream) => Event::StreamWritable { peer, stream },
                StreamEvent::Finished(stream) => Event::StreamFinished { peer, stream },
                StreamEvent::Reset { id, code } => Event::StreamReset {
                    peer,
                    stream: id,
                    code,
                },
                StreamEvent::StopSending { id, code } => Event::StreamStopped {
                    peer,
                    stream: id,
                    code,
                },
                StreamEvent::OpenAvailable => Event::StreamsAvailable { peer },
            };
            ctx.out.events.push_back(event);
        }
        any
    }

    /// Reads what has arrived of an incoming stream's service header. Once it is complete, the
    /// stream is announced if we expose that service and refused otherwise.
    fn read_header(&mut self, ctx: &mut Context<'_>, stream: StreamId) -> Option<Event> {
        let reader = self.headers.get_mut(&stream)?;
        let mut buf = [0u8; 256];
        let state = loop {
            let state = reader.state();
            let HeaderState::Need(n) = state else {
                break state;
            };
            match self.mux.read(stream, &mut buf[..n]) {
                Ok(ReadOutcome::Data(k)) => reader.push(&buf[..k]),
                Ok(ReadOutcome::Blocked) => return None,
                Ok(ReadOutcome::Finished) | Err(_) => break HeaderState::Bad,
            }
        };
        self.headers.remove(&stream);
        let refuse = |mux: &mut Mux, code| {
            mux.reset(stream, code);
            mux.stop_sending(stream, code);
        };
        match state {
            HeaderState::Done(service) => match ctx.exposed.target(&service) {
                Some(target) => {
                    let (peer, target) = (self.id, target.to_string());
                    ctx.out.events.push_back(Event::IncomingStream {
                        peer,
                        stream,
                        service,
                        target,
                    });
                    // The header consumed the readable edge; data may already wait behind it.
                    Some(Event::StreamReadable { peer, stream })
                }
                None => {
                    ctx.out.stats.streams_refused += 1;
                    refuse(&mut self.mux, UNKNOWN_SERVICE);
                    None
                }
            },
            HeaderState::Bad | HeaderState::Need(_) => {
                ctx.out.stats.streams_refused += 1;
                refuse(&mut self.mux, BAD_HEADER);
                None
            }
        }
    }
}

/// A fresh stream layer for the session with `peer`. Stream-id parity comes from comparing
/// static keys, so it is the same on both sides whoever initiated a handshake, and survives
/// rekeys.
pub(super) fn new_mux(ctx: &Context<'_>, peer: &PublicKey, now: Instant) -> Mux {
    let mut config = ctx.config.stream.clone();
    config.max_packet_size = ctx.config.max_udp_payload.saturating_sub(STREAM_OVERHEAD);
    let role = if ctx.identity.secret.public_key() < *peer {
        Role::Initiator
    } else {
        Role::Responder
    };
    Mux::new(config, role, now)
}
