//! The stream layer of a session: its [`Mux`], and the service header of incoming streams.
//!
//! The session seals and sends what the mux writes (see `Session::flush_mux`); this file
//! turns the mux's events into the application's and reads the header each incoming stream
//! starts with.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Context, STREAM_OVERHEAD};
use crate::crypto::PublicKey;
use crate::event::{Event, PeerId};
use crate::path::Path;
use crate::service::{BAD_HEADER, HeaderReader, HeaderState, ROUTE_REFUSED, UNKNOWN_SERVICE};
use crate::stream::{Mux, ReadOutcome, Role, StreamEvent, StreamId};

/// How long a stream for a service its peer may not reach (yet) waits for the server's
/// introduction that would authorise it, before it is refused.
pub(crate) const HOLD_UNAUTHORIZED: Duration = Duration::from_secs(5);
/// Streams that wait so at once per session; more are refused at once.
pub(crate) const MAX_HELD: usize = 16;

/// An incoming stream whose header is read, waiting for its peer's grant.
#[derive(Debug)]
struct Held {
    service: crate::rendezvous::ServiceName,
    origin: Option<crate::forward::Origin>,
    until: Instant,
}

/// A session's streams.
pub(crate) struct Streams {
    /// The streams themselves. It exists from the start so streams can be opened and written
    /// while the handshake runs; its packets go out once keys exist.
    pub(crate) mux: Mux,
    /// Incoming streams whose service header is still being read.
    headers: BTreeMap<StreamId, HeaderReader>,
    /// Incoming streams for a service the peer may not reach yet, waiting for the grant.
    held: BTreeMap<StreamId, Held>,
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
            held: BTreeMap::new(),
            violated: false,
            reported_unauthorized: false,
        }
    }

    /// Passes the stream layer's events on; returns whether there were any. `path` is the
    /// one the session uses now, which an incoming stream's service must allow.
    pub(crate) fn pass_events(
        &mut self,
        ctx: &mut Context<'_>,
        (peer, path): (PeerId, Path),
        now: Instant,
    ) -> bool {
        let mut any = self.recheck_held(ctx, (peer, path), now);
        while let Some(event) = self.mux.poll_event() {
            any = true;
            let event = match event {
                StreamEvent::Opened(stream) => {
                    self.headers.insert(stream, HeaderReader::default());
                    continue;
                }
                StreamEvent::Readable(stream) if self.headers.contains_key(&stream) => {
                    match self.read_header(ctx, (peer, path), stream, now) {
                        Some(event) => event,
                        None => continue,
                    }
                }
                // A held stream's data waits in the stream layer until it is admitted.
                StreamEvent::Readable(stream) if self.held.contains_key(&stream) => continue,
                StreamEvent::Reset { id, .. } | StreamEvent::StopSending { id, .. }
                    if self.headers.remove(&id).is_some() || self.held.remove(&id).is_some() =>
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
    /// stream is announced, held or refused (see [`Streams::admit`]).
    fn read_header(
        &mut self,
        ctx: &mut Context<'_>,
        (peer, path): (PeerId, Path),
        stream: StreamId,
        now: Instant,
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
        match state {
            HeaderState::Done(service, origin) => {
                let held = Held {
                    service,
                    origin,
                    until: now + HOLD_UNAUTHORIZED,
                };
                self.admit(ctx, (peer, path), stream, held, now)
            }
            HeaderState::Bad | HeaderState::Need(_) => {
                ctx.out.stats.streams_refused += 1;
                refuse(&mut self.mux, stream, BAD_HEADER);
                None
            }
        }
    }

    /// Announces a stream whose header named `held.service` if the peer may reach it; else
    /// holds it until `held.until` (the server's introduction that authorises the peer may
    /// still be on its way: it and the peer's first stream race), then refuses it exactly
    /// like a service we do not expose. At most [`MAX_HELD`] streams wait per session. A
    /// stream the peer may reach whose service's route policy does not allow `path` is
    /// refused with [`ROUTE_REFUSED`].
    fn admit(
        &mut self,
        ctx: &mut Context<'_>,
        (peer, path): (PeerId, Path),
        stream: StreamId,
        held: Held,
        now: Instant,
    ) -> Option<Event> {
        let target = ctx.exposed.target(&held.service);
        let allowed = authorized(ctx, peer, &held.service);
        let route = ctx.exposed.route(&held.service).unwrap_or_default();
        match target {
            Some(_) if allowed && !route.allows(path) => {
                ctx.out.stats.streams_refused += 1;
                ctx.out.stats.streams_route_refused += 1;
                refuse(&mut self.mux, stream, ROUTE_REFUSED);
                None
            }
            Some((target, proxy)) if allowed => {
                let target = target.to_string();
                ctx.out.events.push_back(Event::IncomingStream {
                    peer,
                    stream,
                    service: held.service,
                    target,
                    origin: held.origin,
                    proxy,
                });
                // The header consumed the readable edge; data may already wait behind it.
                Some(Event::StreamReadable { peer, stream })
            }
            // A peer that may reach anything we expose asked for something we do not.
            None if allowed => {
                ctx.out.stats.streams_refused += 1;
                refuse(&mut self.mux, stream, UNKNOWN_SERVICE);
                None
            }
            // Not (yet) allowed: held alike whether we expose the service or not, so the
            // wait tells a stranger nothing about what we expose.
            _ if now < held.until && self.held.len() < MAX_HELD => {
                self.held.insert(stream, held);
                None
            }
            Some(_) => {
                // Refused exactly like a service we do not expose: the peer learns nothing.
                ctx.out.stats.streams_refused += 1;
                ctx.out.stats.streams_unauthorized += 1;
                refuse(&mut self.mux, stream, UNKNOWN_SERVICE);
                if !self.reported_unauthorized {
                    self.reported_unauthorized = true;
                    if let Some(key) = ctx.ids.key(peer) {
                        ctx.out.events.push_back(Event::StreamUnauthorized {
                            peer,
                            key,
                            service: held.service,
                        });
                    }
                }
                None
            }
            None => {
                ctx.out.stats.streams_refused += 1;
                refuse(&mut self.mux, stream, UNKNOWN_SERVICE);
                None
            }
        }
    }

    /// Looks at the held streams again: announces those the peer may reach now, refuses
    /// those whose wait is over. Returns whether anything happened.
    fn recheck_held(
        &mut self,
        ctx: &mut Context<'_>,
        (peer, path): (PeerId, Path),
        now: Instant,
    ) -> bool {
        if self.held.is_empty() {
            return false;
        }
        let mut any = false;
        for (stream, held) in std::mem::take(&mut self.held) {
            if !authorized(ctx, peer, &held.service) && now < held.until {
                self.held.insert(stream, held);
                continue;
            }
            any = true;
            if let Some(event) = self.admit(ctx, (peer, path), stream, held, now) {
                ctx.out.events.push_back(event);
            }
        }
        any
    }

    /// When the first held stream's wait ends.
    pub(crate) fn held_deadline(&self) -> Option<Instant> {
        self.held.values().map(|h| h.until).min()
    }
}

/// Resets both directions of a refused stream with `code`.
fn refuse(mux: &mut Mux, stream: StreamId, code: u64) {
    mux.reset(stream, code);
    mux.stop_sending(stream, code);
}

/// Whether the peer behind `peer` holds a grant for `service`.
fn authorized(ctx: &Context<'_>, peer: PeerId, service: &crate::rendezvous::ServiceName) -> bool {
    ctx.ids
        .key(peer)
        .is_some_and(|key| ctx.access.allows(&key, service))
}
