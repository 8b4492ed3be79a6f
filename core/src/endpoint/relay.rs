//! The relay, seen from the endpoint: a daemon wraps packets for relayed peers in its session
//! with the server and unwraps what the server forwards; a server forwards between two
//! registered daemons.

use std::time::Instant;

use super::Endpoint;
use crate::crypto::PublicKey;
use crate::path::Path;

impl Endpoint {
    /// Wraps every packet sessions queued for the relay in our session with the server.
    pub(super) fn send_relayed(&mut self, now: Instant) {
        let server_key = self.daemon.as_ref().map(|d| d.config.server_key);
        let (mut ctx, sessions) = self.parts();
        while let Some((peer, packet)) = ctx.out.relayed.pop_front() {
            let sent = server_key
                .and_then(|k| sessions.get_mut(&k))
                .is_some_and(|s| s.send_relay(&mut ctx, now, &peer, &packet));
            if sent {
                ctx.out.stats.relayed_out += 1;
            } else {
                // The server session is down; the session's own retries and loss recovery
                // send again once it is back.
                ctx.out.stats.relay_unavailable += 1;
            }
        }
    }

    /// A relay payload came on the session with `via`.
    pub(super) fn on_relay(
        &mut self,
        now: Instant,
        via: PublicKey,
        peer: PublicKey,
        packet: &mut [u8],
    ) {
        let server = self
            .daemon
            .as_ref()
            .filter(|d| d.config.server_key == via)
            .map(|d| d.config.server_addr);
        if let Some(server_addr) = server {
            // From our server: another daemon's packet. It authenticates itself (or is dropped
            // like any other bad packet); the relay's word on who sent it counts for nothing.
            self.out.stats.relayed_in += 1;
            // The outer datagram's TTL says nothing about the inner packet's path.
            self.input_ttl = None;
            self.handle_packet(now, Path::Relay(server_addr), packet);
            self.reap();
            return;
        }
        if self.server.is_none() {
            self.out.stats.dropped_bad_payload += 1;
            return;
        }
        // Packets of the queue whose time has come go first: order, and no deadline in the past.
        self.forward_released(now);
        let Some(relay) = self.server.as_mut() else {
            return;
        };
        let initiation =
            packet.get(1) == Some(&(crate::wire::header::PacketKind::Initiation as u8));
        match relay.relay(now, &via, &peer, packet, initiation) {
            Ok(true) => {}
            Ok(false) => {
                // Over the token's budget: it waits in the relay's queue, and
                // `forward_released` sends it at the deadline the server hands out.
                self.out.stats.relay_queued += 1;
                return;
            }
            Err(
                crate::rendezvous::RelayRefusal::NotRegistered
                | crate::rendezvous::RelayRefusal::NotIntroduced,
            ) => {
                self.out.stats.relay_refused += 1;
                return;
            }
            Err(crate::rendezvous::RelayRefusal::RateLimited) => {
                self.out.stats.relay_limited += 1;
                return;
            }
        }
        self.forward_relayed(now, via, peer, packet);
    }

    /// Starts a session with `key` through our server's relay without any introduction, as a
    /// modified daemon could (see `crate::hostile`); `None` without a server.
    #[cfg(any(test, feature = "hostile"))]
    pub(crate) fn connect_through_relay(
        &mut self,
        now: Instant,
        key: PublicKey,
    ) -> Option<crate::event::PeerId> {
        let server = self.daemon.as_ref()?.config.server_addr;
        let (mut ctx, sessions) = self.parts();
        let session = sessions.get_or_insert_with(key, || {
            let id = ctx.ids.assign(key);
            crate::session::Session::new(&ctx, id, key, Path::Relay(server), now)
        });
        session.announced = true;
        session.start_handshake(&mut ctx, now);
        let id = session.id;
        self.send_relayed(now);
        self.settle();
        Some(id)
    }

    /// Forwards a relayed packet from daemon `from` on our session with daemon `to`.
    fn forward_relayed(&mut self, now: Instant, from: PublicKey, to: PublicKey, packet: &[u8]) {
        let (mut ctx, sessions) = self.parts();
        let forwarded = sessions
            .get_mut(&to)
            .is_some_and(|s| s.send_relay(&mut ctx, now, &from, packet));
        if forwarded {
            ctx.out.stats.relay_forwarded += 1;
            ctx.out.stats.relay_forwarded_bytes += packet.len() as u64;
            if let Some(server) = self.server.as_mut() {
                server.count_relayed(&from, packet.len() as u64);
            }
        } else {
            ctx.out.stats.relay_refused += 1;
        }
    }

    /// Server: forwards the relayed packets whose token's budget has refilled by `now`.
    pub(super) fn forward_released(&mut self, now: Instant) {
        let Some(server) = self.server.as_mut() else {
            return;
        };
        if server.relay_deadline().is_none_or(|at| at > now) {
            return;
        }
        let mut held = Vec::new();
        server.release_relayed(now, &mut held);
        for h in held {
            self.forward_relayed(now, h.from, h.to, &h.packet);
        }
    }
}
