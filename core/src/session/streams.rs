//! The stream layer of a session: its [`Mux`], and the service header of incoming streams.
//!
//! The session seals and sends what the mux writes (see `Session::flush_mux`); this file
//! turns the mux's events into the application's and reads the header each incoming stream
//! starts with.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{Context, STREAM_OVERHEAD};
use crate::crypto::PublicKey;
use crate::event::{Event, PeerId};
use crate::service::{BAD_HEADER, HeaderReader, HeaderState, UNKNOWN_SERVICE};
use crate::stream::{Mux, ReadOutcome, Role, StreamEvent, StreamId};

/// A session's streams.
pub(crate) struct Streams {
    /// The streams themselves. It exists from the start so streams can be opened and written
    /// while the handshake runs; its packets go out once keys exist.
    pub(crate) mux: Mux,
    /// Incoming streams whose service header is still being read.
    headers: BTreeMap<StreamId, HeaderReader>,
    /// The peer broke the stream protocol; the session closes once the events are passed.
    pub(crate) violated: bool,
    /// An unauthorised stream was reported already (once per session).
    reported_unauthorized: bool,
}

impl Streams {
    /// A fresh stream layer for the session with `peer`. Stream-id parity comes from comparing
    /// static keys, so it is the same on both sides whoever initiated a handshake, and survives
    /// rekeys.
    pub(crate) fn new(ctx: &Context<'_>, peer: &PublicKey, now: Instant) -> Self {
        let mut config = ctx.config.stream.clone();
        config.max_packet_size = ctx.config.max_udp_payload.saturating_sub(STREAM_OVERHEAD);
        config.max_probe_packet_size = ctx
            .config
            .max_udp_payload_probe
            .saturating_sub(STREAM_OVERHEAD);
        let role = if ctx.identity.secret.public_key() < *peer {
            Role::Initiator
        } else {
            Role::Responder
        };
        Self {
            mux: Mux::new(config, role, now),
            headers: BTreeMap::new(),
            violated: false,
            reported_unauthorized: false,
        }
    }

    /// Passes the stream layer's events on; returns whether there were any.
    pub(crate) fn pass_events(&mut self, ctx: &mut Context<'_>, peer: PeerId) -> bool {
        let mut any = false;
        while let Some(event) = self.mux.poll_event() {
            any = true;
            let event = match event {
                StreamEvent::Opened(stream) => {
                    self.headers.insert(stream, HeaderReader::default());
                    continue;
                }
                StreamEvent::Readable(stream) if self.headers.contains_key(&stream) => {
                    match self.read_header(ctx, peer, stream) {
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
                StreamEvent::ProtocolViolation => {
                    self.violated = true;
                    continue;
                }
            };
            ctx.out.events.push_back(event);
        }
        any
    }

    /// Reads what has arrived of an incoming stream's service header. Once it is complete, the
    /// stream is announced if we expose that service and refused otherwise.
    fn read_header(
        &mut self,
        ctx: &mut Context<'_>,
        peer: PeerId,
        stream: StreamId,
    ) -> Option<Event> {
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
            HeaderState::Done(service, origin) => match ctx.exposed.target(&service) {
                Some(_) if !authorized(ctx, peer, &service) => {
                    // Refused exactly like a service we do not expose: the peer learns nothing.
                    ctx.out.stats.streams_refused += 1;
                    ctx.out.stats.streams_unauthorized += 1;
                    refuse(&mut self.mux, UNKNOWN_SERVICE);
                    if !self.reported_unauthorized {
                        self.reported_unauthorized = true;
                        if let Some(key) = ctx.ids.key(peer) {
                            ctx.out.events.push_back(Event::StreamUnauthorized {
                                peer,
                                key,
                                service,
                            });
                        }
                    }
                    None
                }
                Some((target, proxy)) => {
                    let target = target.to_string();
                    ctx.out.events.push_back(Event::IncomingStream {
                        peer,
                        stream,
                        service,
                        target,
                        origin,
                        proxy,
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

/// Whether the peer behind `peer` holds a grant for `service`.
fn authorized(ctx: &Context<'_>, peer: PeerId, service: &crate::rendezvous::ServiceName) -> bool {
    ctx.ids
        .key(peer)
        .is_some_and(|key| ctx.access.allows(&key, service))
}
