//! Starting sessions: toward an address ([`Endpoint::connect`]) or, introduced by the
//! rendezvous server, toward a peer's candidates and perhaps through the relay
//! ([`Endpoint::punch`]).

use std::net::SocketAddr;
use std::time::Instant;

use super::Endpoint;
use crate::crypto::PublicKey;
use crate::error::ConnectError;
use crate::event::PeerId;
use crate::path::{Path, RoutePolicy};
use crate::punch::schedule::ProbeTtl;
use crate::session::Session;

impl Endpoint {
    /// Starts (or reuses) a session with the peer whose static key is `key`, reached at `addr`.
    ///
    /// Returns the peer's handle at once; [`crate::Event::Connected`] follows when the handshake
    /// completes, or [`crate::Event::SessionClosed`] with
    /// [`crate::CloseReason::HandshakeTimeout`] if it never does.
    pub fn connect(
        &mut self,
        now: Instant,
        key: PublicKey,
        addr: SocketAddr,
    ) -> Result<PeerId, ConnectError> {
        if key == self.public_key {
            return Err(ConnectError::OwnKey);
        }
        let (mut ctx, sessions) = self.parts();
        let session = sessions.get_or_insert_with(key, || {
            let id = ctx.ids.assign(key);
            Session::new(&ctx, id, key, Path::Direct(addr), now)
        });
        session.announced = true;
        if !session.is_connected() {
            session.punch.aim(addr);
            session.start_handshake(&mut ctx, now);
        }
        let id = session.id;
        self.settle();
        Ok(id)
    }

    /// Punches a direct path to the peer whose static key is `key`, toward each of its
    /// `candidates` (from the rendezvous server: reflexive address first, then host
    /// addresses). The peer does the same toward us at about the same time; whichever
    /// handshake gets through first makes the session, on the path it came by. Outcome as for
    /// [`Self::connect`].
    pub fn punch(
        &mut self,
        now: Instant,
        key: PublicKey,
        candidates: Vec<SocketAddr>,
    ) -> Result<PeerId, ConnectError> {
        self.punch_with(now, key, candidates, None, false)
    }

    /// [`Self::punch`], with `relay` (the rendezvous server's address and our route policy)
    /// when the relay may carry the session; `asked`: the introduction answers a request of
    /// ours (the peer did not ask for us).
    pub(crate) fn punch_with(
        &mut self,
        now: Instant,
        key: PublicKey,
        candidates: Vec<SocketAddr>,
        relay: Option<(SocketAddr, RoutePolicy)>,
        asked: bool,
    ) -> Result<PeerId, ConnectError> {
        if key == self.public_key {
            return Err(ConnectError::OwnKey);
        }
        let first = crate::punch::candidates::first_path(&candidates, relay)?;
        let yield_until = self.yield_first_handshake(now, key, relay, asked);
        let observed = self.daemon.as_ref().and_then(|d| d.client.observed_ttl());
        let first_ttl = ProbeTtl::choose(&self.config.session, observed);
        let (mut ctx, sessions) = self.parts();
        let session = sessions.get_or_insert_with(key, || {
            let id = ctx.ids.assign(key);
            Session::new(&ctx, id, key, first, now)
        });
        session.announced = true;
        let connected = session.is_connected();
        let first_introduction = !session.punch.was_introduced();
        session.punch.set_first_ttl(first_ttl);
        session
            .punch
            .introduce(&ctx.config.session, now, candidates, relay, connected);
        if connected && first_introduction {
            // The peer's handshake (through the relay) beat its introduction here.
            session.note_punch_outcome(&mut ctx, now);
        }
        if !connected {
            if let Some(until) = yield_until.filter(|_| first_introduction) {
                session.yield_first_handshake(until);
            }
            session.start_handshake(&mut ctx, now);
        }
        let id = session.id;
        self.send_relayed(now);
        self.settle();
        Ok(id)
    }

    /// Until when our first handshake toward `key` waits for the peer's (see
    /// `Session::yield_first_handshake`): relay first, through a relay the route allows, for
    /// an introduction we `asked` for, with our key the larger (ours would win the
    /// tie-break). The peer's initiation comes one relay round trip after its introduction,
    /// which the server sent with ours; not knowing the peer's distance to the server, we
    /// take twice ours and the punching lead, at most one handshake retry interval.
    fn yield_first_handshake(
        &self,
        now: Instant,
        key: PublicKey,
        relay: Option<(SocketAddr, RoutePolicy)>,
        asked: bool,
    ) -> Option<Instant> {
        let cfg = &self.config.session;
        let through_relay = relay.is_some_and(|(_, route)| route.allows_relay());
        if !(asked && cfg.relay_first && through_relay && self.public_key > key) {
            return None;
        }
        let server_rtt = self
            .daemon
            .as_ref()
            .and_then(|d| self.peer_of(&d.config.server_key))
            .and_then(|server| self.peer_rtt(server));
        let wait = server_rtt.map_or(cfg.handshake_retry, |rtt| {
            (rtt * 2 + cfg.punch_lead).min(cfg.handshake_retry)
        });
        Some(now + wait)
    }
}
