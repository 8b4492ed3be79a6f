//! A session's transport packets: receiving (decrypting, control messages, datagrams, stream
//! packets), sending on the current path or through the relay, the datagram queue while the
//! handshake runs, and flushing what the stream layer has ready.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::keypair::OpenError;
use super::keys::Slot;
use super::state::Session;
use super::{Context, Note, STREAM_OVERHEAD};
use crate::crypto::PublicKey;
use crate::error::{CloseReason, SendError};
use crate::event::Event;
use crate::path::Path;
use crate::punch::RELAY_OVERHEAD;
use crate::transmit::Transmit;
use crate::wire::control::{CloseCode, Control};
use crate::wire::payload::{Payload, PayloadKind};

impl Session {
    // ----- transport --------------------------------------------------------------------

    /// Handles a transport packet for one of this session's indices, decrypting `sealed`
    /// where it lies. True when it confirmed keys of ours: made a while ago, they carry an
    /// old `last_sent`, so a timer may already be due (see `Endpoint::catch_up`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_transport(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        from: Path,
        local_index: u32,
        header: &[u8; crate::wire::header::TRANSPORT_HEADER_LEN],
        counter: u64,
        sealed: &mut [u8],
    ) -> bool {
        let Some(slot) = self.keys.find(local_index) else {
            // Our pending handshake's index: no keys yet. The responder's first data may
            // have overtaken its response: kept a moment for it (see `on_response`).
            if self.owns_pending(local_index) && self.early.len() < super::establish::EARLY_PACKETS
            {
                self.early.push(super::establish::Early {
                    from,
                    local_index,
                    header: *header,
                    counter,
                    sealed: sealed.to_vec(),
                });
                return false;
            }
            ctx.out.stats.dropped_unknown_index += 1;
            return false;
        };
        let keypair = self.keys.get_mut(slot);
        let newest = keypair.highest_received().is_none_or(|h| counter > h);
        let reject_after = ctx.config.session.reject_after_packets;
        let plaintext = match keypair.open(header, counter, sealed, reject_after) {
            Ok(len) => &sealed[..len],
            Err(OpenError::Replay) => {
                ctx.out.stats.dropped_replay += 1;
                return false;
            }
            Err(OpenError::Auth) => {
                ctx.out.stats.dropped_auth += 1;
                return false;
            }
            Err(OpenError::Expired) => {
                // The peer is still on keys we will no longer take: both need new ones.
                ctx.out.stats.dropped_expired += 1;
                self.start_handshake(ctx, now);
                return true;
            }
        };
        self.last_received = now;
        let path_before = self.punch.path();
        let late = slot == Slot::Next
            && self
                .keys
                .current
                .as_ref()
                .zip(self.keys.next.as_ref())
                .is_some_and(|(current, next)| current.created > next.created);
        if late {
            // Keys we answered with, confirmed only after a newer handshake made our current
            // ones (both sides initiated at once, and the confirmation was delayed): the peer
            // moves to the newer keys too, so these would only take their place and leave us
            // on keys the peer no longer has. The packet itself is authentic.
            let (stale, _) = self.keys.take_next();
            ctx.indices.free(stale.local_index);
        } else if slot == Slot::Next {
            let (confirmed, session) = self.keys.take_next();
            if let Some(number) = session
                && number != self.number
            {
                if self.connected {
                    // The keys we answered with start a new session: the peer no longer has
                    // the one we have (it closed it and its Close has not reached us).
                    self.start_over(ctx, now, CloseReason::PeerReset);
                }
                self.number = number;
            }
            if !self.connected {
                // Up on the keys we answered with: a handshake of ours still in flight (see
                // `respond`) is moot.
                if let Some(pending) = self.pending.take() {
                    ctx.indices.free(pending.local_index);
                }
            }
            self.keys.install_current(ctx.indices, confirmed);
            self.streams.mux.peer_reachable();
            self.established(ctx, now);
            self.flush_queue(ctx, now);
        }
        // (the stream layer is flushed after the payload below is handled)
        let payload = Payload::parse(plaintext);
        // The data path (stream packets, keepalives, datagrams on keys in use, on the same
        // path) leaves no timer due that the stream layer has not handled with `now`.
        let data = matches!(
            payload,
            Ok(Payload::Stream(_) | Payload::KeepAlive | Payload::Datagram(_))
        );
        // Path challenges and their answers probe a path without choosing it.
        let probing = matches!(
            payload,
            Ok(Payload::PathChallenge(_) | Payload::PathResponse(_))
        );
        if newest && !probing && !self.sent_before_upgrade(now, from) {
            self.move_to(ctx, now, from);
        }
        if from.is_relay() && self.punch.path() == from {
            // The peer reaches us through the relay we send on. Our probe timeouts may have
            // backed off while our packets went nowhere (a direct path that died, then probes
            // the relay forwarded to the peer's old address before the peer's new one reached
            // the server): like an ACK, this resets the backoff, so an overdue probe goes out
            // now rather than a doubled timeout later.
            self.streams.mux.peer_reachable();
        }
        if !from.is_relay() {
            self.direct_received = Some(now);
        }
        match payload {
            Ok(Payload::KeepAlive) => {}
            Ok(Payload::Datagram(data)) => ctx.out.events.push_back(Event::Datagram {
                peer: self.id,
                data: Bytes::copy_from_slice(data),
            }),
            Ok(Payload::Control(body)) => match Control::decode(body) {
                // Sealed with keys older than a handshake the peer started since: an earlier
                // session of the peer's ended (it closed, then connected again, which we took
                // as a rekey). The peer is live under the newer keys; this close is stale.
                Ok(Control::Close { .. })
                    if slot == Slot::Previous
                        && self.keys.current.as_ref().is_some_and(|k| !k.initiator) =>
                {
                    ctx.out.stats.dropped_unexpected += 1;
                }
                Ok(Control::Close { code }) => self.end(ctx, CloseReason::Peer(code)),
                Err(_) => ctx.out.stats.dropped_bad_payload += 1,
            },
            Ok(Payload::Stream(frames)) => self.streams.mux.handle_packet(now, frames),
            Ok(Payload::Rendezvous(body)) => ctx
                .out
                .notes
                .push_back(Note::Rendezvous(self.key, body.to_vec())),
            Ok(Payload::Relay { peer, packet }) => ctx.out.notes.push_back(Note::Relay {
                via: self.key,
                peer: PublicKey::from_bytes(peer),
                packet: packet.to_vec(),
            }),
            Ok(Payload::PathChallenge(nonce)) => self.answer_challenge(ctx, now, from, nonce),
            Ok(Payload::PathResponse(nonce)) => self.on_path_response(ctx, now, from, nonce),
            Err(_) => ctx.out.stats.dropped_bad_payload += 1,
        }
        self.flush_mux(ctx, now);
        slot == Slot::Next || !data || self.punch.path() != path_before
    }

    /// Whether a packet that came by `from` is one the peer relayed before it learned that
    /// the session went direct: a relayed packet while we are on a direct path that the peer
    /// spoke on within a round trip (the stream layer's probe timeout before backoff).
    ///
    /// After an upgrade, the peer keeps sending through the relay until our first direct
    /// packet reaches it, and those packets are newer than the path response that moved us.
    /// Followed, they pull the session back to the relay, whose packets then pull the peer
    /// back in turn: under steady traffic both sides chase each other between the paths
    /// until the search for a direct path happens to win. A peer that really gave the direct
    /// path up (its data went unanswered for `path_timeout`) stops sending on it, so a round
    /// trip later its relayed packets are followed again.
    fn sent_before_upgrade(&self, now: Instant, from: Path) -> bool {
        from.is_relay()
            && !self.path().is_relay()
            && self.direct_received.is_some_and(|at| {
                now.saturating_duration_since(at) < self.streams.mux.round_trip_bound()
            })
    }

    /// Sends (or queues, while no keys are ready) one application datagram.
    pub(crate) fn send_datagram(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        data: &[u8],
    ) -> Result<(), SendError> {
        let max = self.max_datagram(ctx.config);
        if data.len() > max {
            return Err(SendError::TooLarge { max });
        }
        if self.can_send(ctx) && self.queue.is_empty() {
            self.send_payload(ctx, now, &[&[PayloadKind::Datagram as u8], data]);
            return Ok(());
        }
        if self.queue.len() >= ctx.config.session.max_queued_datagrams {
            return Err(SendError::QueueFull);
        }
        self.queue.push_back(Bytes::copy_from_slice(data));
        self.start_handshake(ctx, now);
        Ok(())
    }

    pub(super) fn can_send(&self, ctx: &Context<'_>) -> bool {
        self.keys
            .current
            .as_ref()
            .is_some_and(|k| k.sent() < ctx.config.session.reject_after_packets)
    }

    pub(super) fn flush_queue(&mut self, ctx: &mut Context<'_>, now: Instant) {
        while self.can_send(ctx) {
            let Some(data) = self.queue.pop_front() else {
                break;
            };
            self.send_payload(ctx, now, &[&[PayloadKind::Datagram as u8], &data]);
        }
    }

    /// Seals a plaintext with the current keys and queues it; starts a rekey when the keys have
    /// carried enough packets.
    pub(super) fn send_payload(&mut self, ctx: &mut Context<'_>, now: Instant, parts: &[&[u8]]) {
        self.send_payload_on(ctx, now, parts, None);
    }

    /// [`Self::send_payload`] on `path` (`None`: the session's path).
    pub(super) fn send_payload_on(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        parts: &[&[u8]],
        path: Option<Path>,
    ) {
        let session = &ctx.config.session;
        let Some(keypair) = self.keys.current.as_mut() else {
            return;
        };
        let Some(packet) = keypair.seal(parts, session.reject_after_packets) else {
            // The keys are used up: only new ones can carry anything.
            self.start_handshake(ctx, now);
            return;
        };
        let rekey = keypair.sent() >= session.rekey_after_packets;
        let path = path.unwrap_or(self.punch.path());
        self.send_on(ctx, now, path, packet);
        if rekey {
            self.start_handshake(ctx, now);
        }
    }

    /// Sends a packet on the session's path.
    pub(super) fn transmit(&mut self, ctx: &mut Context<'_>, now: Instant, payload: Bytes) {
        self.send_on(ctx, now, self.punch.path(), payload);
    }

    /// Sends a packet on `path`: straight to its address, or to the relay.
    pub(super) fn send_on(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        path: Path,
        payload: Bytes,
    ) {
        match path {
            Path::Direct(dst) => self.transmit_to(ctx, now, dst, None, payload),
            Path::Relay(_) => self.transmit_relay(ctx, now, payload),
        }
    }

    /// Hands a packet to the endpoint, which wraps it in our session with the relay.
    pub(super) fn transmit_relay(&mut self, ctx: &mut Context<'_>, now: Instant, payload: Bytes) {
        self.last_sent = now;
        ctx.out.relayed.push_back((self.key, payload));
    }

    /// Sends one datagram straight to `dst`, with `ttl` if set.
    pub(super) fn transmit_to(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        dst: SocketAddr,
        ttl: Option<u8>,
        payload: Bytes,
    ) {
        self.last_sent = now;
        ctx.out.send(Transmit {
            segment_size: None,
            dst,
            ttl,
            payload,
        });
    }

    /// Sends a rendezvous message body; false (and nothing sent) while the session has no
    /// keys. Rendezvous messages are retried by the layer that sends them.
    pub(crate) fn send_rendezvous(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        body: &[u8],
    ) -> bool {
        if !self.can_send(ctx) {
            return false;
        }
        self.send_payload(ctx, now, &[&[PayloadKind::Rendezvous as u8], body]);
        true
    }

    /// Wraps a packet of two daemons for the other side of the relay (`peer`: the destination
    /// when we are a daemon, the source when we are the server). False while we have no keys.
    pub(crate) fn send_relay(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        peer: &PublicKey,
        packet: &[u8],
    ) -> bool {
        if !self.can_send(ctx) {
            return false;
        }
        let kind = [PayloadKind::Relay as u8];
        self.send_payload(ctx, now, &[&kind, peer.as_bytes(), packet]);
        true
    }

    // ----- streams ------------------------------------------------------------------------

    /// Sends every packet the stream layer has ready (as congestion control and pacing allow)
    /// and passes its events on. Called after anything that may give it work.
    pub(crate) fn flush_mux(&mut self, ctx: &mut Context<'_>, now: Instant) {
        self.send_mux_packets(ctx, now);
        // Reading a header may free credit and queue a window update: send again until quiet.
        while self
            .streams
            .pass_events(ctx, (self.id, self.punch.path()), now)
        {
            if self.streams.violated {
                ctx.out.stats.protocol_violations += 1;
                self.close(ctx, now, CloseCode::ProtocolViolation);
                return;
            }
            self.send_mux_packets(ctx, now);
        }
    }

    fn send_mux_packets(&mut self, ctx: &mut Context<'_>, now: Instant) {
        let reject_after = ctx.config.session.reject_after_packets;
        // The largest stream-layer packet on the current path: on a direct path, room for a
        // path MTU probe (the mux keeps other packets to the size the path is known to
        // carry); through the relay, the base size less the relay's wrapping. A new path
        // starts again from the base size.
        let path = self.punch.path();
        if self.sized_for != Some(path) {
            self.sized_for = Some(path);
            self.streams.mux.set_path(!path.is_relay());
        }
        let max_plaintext = 1 + if path.is_relay() {
            ctx.config
                .max_udp_payload
                .saturating_sub(STREAM_OVERHEAD + RELAY_OVERHEAD)
        } else {
            ctx.config
                .max_udp_payload
                .max(ctx.config.max_udp_payload_probe)
                .saturating_sub(STREAM_OVERHEAD)
        };
        // On a direct path, packets are sealed end to end into runs that leave as one
        // transmit each (one segmentation-offload send); the relay wraps packets one by one.
        let most = if path.is_relay() {
            1
        } else {
            crate::transmit::MAX_RUN_SEGMENTS
        };
        let mut run = Run::default();
        while let Some(keypair) = self.keys.current.as_mut() {
            if run.count > 0
                && (run.count >= most
                    || run.bytes + max_plaintext + STREAM_OVERHEAD > crate::transmit::MAX_RUN_BYTES
                    || !keypair.run_has_room(max_plaintext))
            {
                self.send_run(ctx, now, &mut run, None);
                continue;
            }
            let mux = &mut self.streams.mux;
            let sealed = keypair.seal_onto_run(max_plaintext, reject_after, |buf| {
                buf[0] = PayloadKind::Stream as u8;
                mux.poll_packet(now, &mut buf[1..]).map(|n| n + 1)
            });
            let Some(len) = sealed else { break };
            let rekey = keypair.sent() >= ctx.config.session.rekey_after_packets;
            if run.count > 0 && len > run.segment {
                // Larger than the run's datagrams (a path MTU probe): the run goes first.
                let before = run.bytes;
                self.send_run(ctx, now, &mut run, Some(before));
            }
            run.push(len);
            if rekey || len < run.segment {
                // A short datagram ends a run; so do new keys.
                self.send_run(ctx, now, &mut run, None);
            }
            if rekey {
                self.start_handshake(ctx, now);
            }
        }
        self.send_run(ctx, now, &mut run, None);
    }

    /// Takes the run being built off the current keys (its first `len` bytes, or all of it)
    /// and sends it: one transmit of one or more datagrams.
    fn send_run(&mut self, ctx: &mut Context<'_>, now: Instant, run: &mut Run, len: Option<usize>) {
        if run.count == 0 {
            return;
        }
        let Some(keypair) = self.keys.current.as_mut() else {
            return;
        };
        let len = len.unwrap_or(keypair.run_len());
        let payload = keypair.take_run(len);
        let segment_size = (run.count > 1).then_some(run.segment);
        *run = Run::default();
        match self.punch.path() {
            Path::Direct(dst) => {
                self.last_sent = now;
                ctx.out.send(Transmit {
                    dst,
                    ttl: None,
                    payload,
                    segment_size,
                });
            }
            Path::Relay(_) => self.transmit_relay(ctx, now, payload),
        }
    }
}

/// A run of packets being sealed end to end ([`Session::send_mux_packets`]).
#[derive(Default)]
struct Run {
    /// Packets in it.
    count: usize,
    /// Their bytes.
    bytes: usize,
    /// The first packet's length: every packet but the last has it.
    segment: usize,
}

impl Run {
    fn push(&mut self, len: usize) {
        if self.count == 0 {
            self.segment = len;
        }
        self.count += 1;
        self.bytes += len;
    }
}
