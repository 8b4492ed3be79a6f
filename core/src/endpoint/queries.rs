//! What an endpoint can be asked about its sessions without changing them: a peer's address,
//! path, keepalive, first probes' TTL and why it is relayed; the server's counters; how many
//! sessions and half-open handshakes it holds.

use std::net::SocketAddr;
use std::time::Duration;

use super::Endpoint;
use crate::crypto::PublicKey;
use crate::event::PeerId;
use crate::path::Path;
use crate::punch::schedule::ProbeTtl;
use crate::session::{self, Session};

impl Endpoint {
    /// The address packets to `peer` go to, if the handle is live.
    pub fn peer_addr(&self, peer: PeerId) -> Option<SocketAddr> {
        self.ids
            .key(peer)
            .and_then(|k| self.sessions.get(&k))
            .map(|s| s.path().addr())
    }

    /// Since when and why a daemon's registration is lost (the session to the rendezvous
    /// server ended, or the server forgot it), until it is registered again.
    pub fn registration_lost(&self) -> Option<(std::time::Instant, &str)> {
        let lost = self.daemon.as_ref()?.lost.as_ref()?;
        Some((lost.0, lost.1.as_str()))
    }

    /// The rendezvous server's key, for a daemon.
    pub(super) fn server_key(&self) -> Option<PublicKey> {
        self.daemon.as_ref().map(|d| d.config.server_key)
    }

    /// The largest datagram [`Self::send_datagram`] accepts for `peer` now: at least
    /// [`Self::max_datagram_size`], more on a direct path whose packet size path MTU discovery
    /// confirmed. An unknown handle gets [`Self::max_datagram_size`].
    pub fn max_datagram_size_to(&self, peer: PeerId) -> usize {
        let base = self.max_datagram_size();
        self.ids
            .key(peer)
            .and_then(|k| self.sessions.get(&k))
            .map_or(base, |s| s.max_datagram(&self.config).max(base))
    }

    /// The path packets to `peer` take, if the handle is live.
    pub fn peer_path(&self, peer: PeerId) -> Option<Path> {
        self.ids
            .key(peer)
            .and_then(|k| self.sessions.get(&k))
            .map(Session::path)
    }

    /// The interval between keepalives to `peer` on a quiet session (see
    /// `SessionConfig::keepalive_interval`; shorter once a NAT was found to forget sooner).
    pub(crate) fn peer_keepalive(&self, peer: PeerId) -> Option<Duration> {
        let key = self.ids.key(peer)?;
        let session = self.sessions.get(&key)?;
        Some(session.keepalive(&self.config.session))
    }

    /// How the session with `peer` chose its first punching probes' TTL.
    /// `None` for a session that never punched (no candidates: the server's, or one the peer
    /// opened straight to our address).
    pub(crate) fn peer_probe_ttl(&self, peer: PeerId) -> Option<(u8, ProbeTtl)> {
        let key = self.ids.key(peer)?;
        let punch = &self.sessions.get(&key)?.punch;
        let first = punch.first_ttl();
        punch
            .has_candidates()
            .then(|| (first.first(&self.config.session), first))
    }

    /// Why the session with `peer` rides the relay: what punching toward each of its
    /// candidates got, and one line saying so. `None` when it is direct, or was never
    /// introduced by the server.
    pub fn peer_why_relayed(&self, peer: PeerId) -> Option<crate::WhyRelayed> {
        let key = self.ids.key(peer)?;
        self.sessions.get(&key)?.punch.why_relayed()
    }

    /// Server: registrations, and relayed bytes by the token of the daemon that sent them.
    /// `None` for a daemon.
    pub fn server_counters(&self) -> Option<crate::ServerCounters> {
        Some(self.server.as_ref()?.counters())
    }

    /// Whether the session with `peer` has completed a handshake.
    pub fn is_connected(&self, peer: PeerId) -> bool {
        self.ids
            .key(peer)
            .and_then(|k| self.sessions.get(&k))
            .is_some_and(Session::is_connected)
    }

    /// Number of sessions (connected, handshaking, or awaiting confirmation).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of half-open handshakes: sessions made by answering an initiation that came
    /// straight from its sender, not yet confirmed by it (at most
    /// `SessionConfig::max_half_open_per_source` per source IP).
    pub fn half_open_count(&self) -> usize {
        self.sessions.half_open_count()
    }

    /// Half-open handshakes held for the source of `ip` (its IPv6 /64).
    pub fn half_open_from(&self, ip: std::net::IpAddr) -> usize {
        self.sessions.half_open_from(session::source_of(ip))
    }
}
