//! The stream commands of an endpoint: open, write, read, finish, reset and stop streams on a
//! session, each followed by sending what the session's stream layer has ready.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::Endpoint;
use crate::crypto::PublicKey;
use crate::error::StreamError;
use crate::event::PeerId;
use crate::forward::Origin;
use crate::rendezvous::ServiceName;
use crate::session::{Context, Session};
use crate::stream::{Limited, MuxStats, ReadOutcome, StreamId};

impl Endpoint {
    /// Runs `f` on the session of `peer` with its context, then sends whatever its stream layer
    /// has ready.
    fn with_session<R>(
        &mut self,
        now: Instant,
        peer: PeerId,
        f: impl FnOnce(&mut Session, &mut Context<'_>) -> Result<R, StreamError>,
    ) -> Result<R, StreamError> {
        let key = self.ids.key(peer).ok_or(StreamError::UnknownPeer)?;
        let (mut ctx, sessions) = self.parts();
        let session = sessions.get_mut(&key).ok_or(StreamError::UnknownPeer)?;
        let result = f(session, &mut ctx);
        session.flush_mux(&mut ctx, now);
        // Packets for a relayed peer wait in the endpoint until wrapped for the relay.
        self.send_relayed(now);
        self.settle();
        result
    }

    /// Opens a bidirectional stream to `service` at `peer`. Streams may be opened and written
    /// while the handshake runs; their data leaves once the session is up. A peer that does not
    /// expose the service resets the stream with `UNKNOWN_SERVICE` (0x5E01).
    pub fn open_stream(
        &mut self,
        now: Instant,
        peer: PeerId,
        service: &ServiceName,
    ) -> Result<StreamId, StreamError> {
        self.open_stream_from(now, peer, service, None)
    }

    /// [`Self::open_stream`] for a connection that came from `origin` (a TCP client of a
    /// local listener): the peer learns the client's address with the stream (a version-2
    /// stream header), for a service that sends it on with the PROXY protocol.
    pub fn open_stream_from(
        &mut self,
        now: Instant,
        peer: PeerId,
        service: &ServiceName,
        origin: Option<Origin>,
    ) -> Result<StreamId, StreamError> {
        self.with_session(now, peer, |s, _| {
            let stream = s.streams.mux.open()?;
            let header = crate::service::header(service, origin);
            let written = s.streams.mux.write(stream, &header)?;
            // A new stream's credit (64 KiB) always takes the header (at most 167 bytes).
            debug_assert_eq!(written, header.len());
            Ok(stream)
        })
    }

    /// Writes as much of `data` as flow control and the send buffer allow, returning how much
    /// was taken. [`StreamError::Blocked`] when nothing fits: wait for
    /// [`crate::Event::StreamWritable`].
    pub fn stream_write(
        &mut self,
        now: Instant,
        peer: PeerId,
        stream: StreamId,
        data: &[u8],
    ) -> Result<usize, StreamError> {
        self.with_session(now, peer, |s, _| Ok(s.streams.mux.write(stream, data)?))
    }

    /// [`Self::stream_write`] without copying: the stream keeps (a slice of) `data` until the
    /// peer acknowledges it.
    pub fn stream_write_bytes(
        &mut self,
        now: Instant,
        peer: PeerId,
        stream: StreamId,
        data: &Bytes,
    ) -> Result<usize, StreamError> {
        self.with_session(now, peer, |s, _| {
            Ok(s.streams.mux.write_bytes(stream, data)?)
        })
    }

    /// Reads received bytes in order into `buf`. Reading frees flow-control credit, which may
    /// send a window update, hence `now`.
    pub fn stream_read(
        &mut self,
        now: Instant,
        peer: PeerId,
        stream: StreamId,
        buf: &mut [u8],
    ) -> Result<ReadOutcome, StreamError> {
        self.with_session(now, peer, |s, _| Ok(s.streams.mux.read(stream, buf)?))
    }

    /// [`Self::stream_read`], appending at most `max` bytes to `buf`: what a forwarder uses to
    /// hand the data on as an owned chunk without copying it once more.
    pub fn stream_read_into(
        &mut self,
        now: Instant,
        peer: PeerId,
        stream: StreamId,
        buf: &mut BytesMut,
        max: usize,
    ) -> Result<ReadOutcome, StreamError> {
        let mut sink = Limited { buf, limit: max };
        self.with_session(now, peer, |s, _| {
            Ok(s.streams.mux.read_into(stream, &mut sink)?)
        })
    }

    /// Finishes our sending side (TCP half-close): the peer reads to the end, then `Finished`;
    /// its own direction stays open.
    pub fn stream_finish(
        &mut self,
        now: Instant,
        peer: PeerId,
        stream: StreamId,
    ) -> Result<(), StreamError> {
        self.with_session(now, peer, |s, _| Ok(s.streams.mux.finish(stream)?))
    }

    /// Abandons our sending side with `code` (TCP reset); unsent data is dropped.
    pub fn stream_reset(
        &mut self,
        now: Instant,
        peer: PeerId,
        stream: StreamId,
        code: u64,
    ) -> Result<(), StreamError> {
        self.with_session(now, peer, |s, _| {
            s.streams.mux.reset(stream, code);
            Ok(())
        })
    }

    /// Asks the peer to stop sending on `stream` with `code`; we discard what still arrives.
    pub fn stream_stop(
        &mut self,
        now: Instant,
        peer: PeerId,
        stream: StreamId,
        code: u64,
    ) -> Result<(), StreamError> {
        self.with_session(now, peer, |s, _| {
            s.streams.mux.stop_sending(stream, code);
            Ok(())
        })
    }

    /// Lets the session with `key` look at its held streams again (a grant arrived).
    pub(crate) fn admit_held_streams(&mut self, now: Instant, key: &PublicKey) {
        let (mut ctx, sessions) = self.parts();
        if let Some(session) = sessions.get_mut(key) {
            session.flush_mux(&mut ctx, now);
            self.send_relayed(now);
            self.settle();
        }
    }

    /// The smoothed round-trip time to `peer`, as its session's loss recovery measures it.
    pub fn peer_rtt(&self, peer: PeerId) -> Option<std::time::Duration> {
        self.stream_stats(peer).map(|s| s.rtt)
    }

    /// The largest stream-layer packet (plaintext bytes) the current path to `peer` is known
    /// to carry: the base size from [`crate::Config::max_udp_payload`], or more once path MTU
    /// discovery found more (see [`crate::Config::max_udp_payload_probe`]).
    pub fn peer_packet_size(&self, peer: PeerId) -> Option<usize> {
        self.stream_stats(peer).map(|s| s.packet_size)
    }

    /// The stream layer's counters for `peer` (RTT, congestion window, losses, bytes).
    pub(crate) fn stream_stats(&self, peer: PeerId) -> Option<MuxStats> {
        let key = self.ids.key(peer)?;
        self.sessions.get(&key).map(|s| s.streams.mux.stats())
    }
}
