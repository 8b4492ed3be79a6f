//! One encrypted session per peer: handshakes and their retries, key generations, rekeying,
//! keepalives and the idle timeout. The way to the peer (paths, punching, the relay) is the
//! session's [`crate::punch`] agent; its streams sit behind their mux (`streams.rs`).
//!
//! A `Session` is driven by the [`crate::Endpoint`], which parses datagrams, finds the
//! session by its index and hands it what concerns it. Sessions write their output into the
//! shared `Context`.

mod establish;
pub(crate) mod handshake;
pub(crate) mod keypair;
mod keys;
mod liveness;
mod paths;
mod ping;
mod state;
mod streams;
mod transport;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::access::Access;
use crate::config::Config;
use crate::crypto::{PublicKey, SecretKey};
use crate::event::{Event, PeerId};
use crate::rng::SeededRng;
use crate::service::Exposed;
use crate::stats::Stats;
use crate::transmit::Transmit;

pub(crate) use establish::Answering;
pub(crate) use state::{Session, source_of};
pub(crate) use streams::{HOLD_UNAUTHORIZED, MAX_HELD};

/// Transport header, tag and payload-kind byte around an application datagram.
pub(crate) const DATAGRAM_OVERHEAD: usize =
    crate::wire::header::TRANSPORT_HEADER_LEN + crate::crypto::noise::TAG_LEN + 1;

/// The same around a stream-layer packet.
pub(crate) const STREAM_OVERHEAD: usize = DATAGRAM_OVERHEAD;

/// What this endpoint is: its key, its per-process instance and its clocks.
pub(crate) struct Identity {
    pub(crate) secret: SecretKey,
    pub(crate) instance: u64,
    /// The `now` given to `Endpoint::new`.
    pub(crate) epoch: Instant,
    /// Wall-clock time at `epoch`.
    pub(crate) unix_at_epoch: Duration,
}

impl Identity {
    /// Wall-clock nanoseconds since the Unix epoch at `now`.
    pub(crate) fn unix_nanos(&self, now: Instant) -> u64 {
        let t = self.unix_at_epoch + now.saturating_duration_since(self.epoch);
        u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What sessions tell the endpoint itself (beside the application's events), so that the
/// rendezvous roles can follow the sessions they ride on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// A session with this key completed its first handshake.
    Up(PublicKey),
    /// The session with this key ended.
    Down(PublicKey, crate::error::CloseReason),
    /// A rendezvous message body (version byte first) arrived from this key.
    Rendezvous(PublicKey, Vec<u8>),
    /// The session with this key gave its direct path up for the relay: the peer's NAT may
    /// have lost its state and now maps it elsewhere, so its candidates are stale.
    LeftDirect(PublicKey),
    /// Data on a relayed session with this key went unanswered: the relay itself may have
    /// restarted and forgotten us, so the endpoint checks its session with the server too.
    RelaySilent(PublicKey),
    /// A relay payload arrived on the session with `via`: a daemon's packet for `peer` (we
    /// are the server) or from `peer` (we are a daemon and `via` is our server).
    Relay {
        /// The session it came on.
        via: PublicKey,
        /// The other daemon.
        peer: PublicKey,
        /// The daemons' packet.
        packet: Vec<u8>,
    },
}

/// Output queues and counters shared by all sessions.
#[derive(Default)]
pub(crate) struct Output {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) notes: VecDeque<Note>,
    /// Packets for the relay to carry to a peer (its key), not yet wrapped.
    pub(crate) relayed: VecDeque<(PublicKey, bytes::Bytes)>,
    pub(crate) stats: Stats,
    /// A session ended since the endpoint last reaped: only then is the map worth a pass.
    pub(crate) ended: bool,
}

impl Output {
    /// Queues a datagram (or a run of them) and counts it.
    pub(crate) fn send(&mut self, transmit: Transmit) {
        self.stats.datagrams_out += transmit.datagrams() as u64;
        self.stats.bytes_out += transmit.payload.len() as u64;
        self.transmits.push_back(transmit);
    }
}

/// Which session (by peer key) owns which of our indices.
#[derive(Default)]
pub(crate) struct Indices(BTreeMap<u32, PublicKey>);

impl Indices {
    /// Picks a fresh random nonzero index for `peer`.
    pub(crate) fn allocate(&mut self, rng: &mut SeededRng, peer: PublicKey) -> u32 {
        loop {
            let index = rng.u32();
            if index != 0 && !self.0.contains_key(&index) {
                self.0.insert(index, peer);
                return index;
            }
        }
    }

    pub(crate) fn free(&mut self, index: u32) {
        self.0.remove(&index);
    }

    pub(crate) fn get(&self, index: u32) -> Option<PublicKey> {
        self.0.get(&index).copied()
    }

    /// How many indices are allocated (tests check that ended sessions free theirs).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The application's handles for sessions. A handle names one session of one peer: when the
/// peer restarts, its new session gets a new handle.
#[derive(Default)]
pub(crate) struct PeerIds {
    next: u64,
    map: BTreeMap<PeerId, PublicKey>,
}

impl PeerIds {
    pub(crate) fn assign(&mut self, key: PublicKey) -> PeerId {
        let id = PeerId(self.next);
        self.next += 1;
        self.map.insert(id, key);
        id
    }

    pub(crate) fn release(&mut self, id: PeerId) {
        self.map.remove(&id);
    }

    pub(crate) fn key(&self, id: PeerId) -> Option<PublicKey> {
        self.map.get(&id).copied()
    }
}

/// Everything a session may touch besides itself.
pub(crate) struct Context<'a> {
    pub(crate) config: &'a Config,
    pub(crate) identity: &'a Identity,
    pub(crate) rng: &'a mut SeededRng,
    pub(crate) indices: &'a mut Indices,
    pub(crate) ids: &'a mut PeerIds,
    pub(crate) exposed: &'a Exposed,
    pub(crate) access: &'a Access,
    pub(crate) out: &'a mut Output,
}
