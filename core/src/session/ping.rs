//! Pings (`burrow ping`): a path challenge on the path the session uses now, answered by the
//! peer on the path it came by, so the answer times that path's round trip. Pings ride the
//! challenges path validation already uses, so a peer of any version answers them; they
//! never move the session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Context;
use super::state::Session;
use crate::error::SendError;
use crate::event::Event;
use crate::path::Path;
use crate::wire::payload::PayloadKind;

/// Most pings awaiting their answer per session; an older one is forgotten for a new one.
pub(crate) const MAX_PINGS: usize = 16;
/// A ping not answered within this long is forgotten.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A ping in flight.
#[derive(Debug)]
pub(super) struct Ping {
    nonce: u64,
    sent: Instant,
}

/// The pings in flight of one session, oldest first.
#[derive(Debug, Default)]
pub(super) struct Pings(VecDeque<Ping>);

impl Session {
    /// Sends a ping on the current path. Its answer comes as [`Event::Pong`].
    pub(crate) fn ping(&mut self, ctx: &mut Context<'_>, now: Instant) -> Result<(), SendError> {
        if !self.connected || self.keys.current.is_none() {
            return Err(SendError::NotConnected);
        }
        let pings = &mut self.pings.0;
        while pings
            .front()
            .is_some_and(|p| pings.len() >= MAX_PINGS || now >= p.sent + PING_TIMEOUT)
        {
            pings.pop_front();
        }
        let nonce = u64::from_le_bytes(ctx.rng.bytes());
        pings.push_back(Ping { nonce, sent: now });
        let kind = [PayloadKind::PathChallenge as u8];
        let path = self.path();
        self.send_payload_on(ctx, now, &[&kind, &nonce.to_le_bytes()], Some(path));
        Ok(())
    }

    /// Takes a path response that answers one of our pings: true if it did (then
    /// [`Event::Pong`] says which path answered and in how long).
    pub(super) fn on_pong(
        &mut self,
        ctx: &mut Context<'_>,
        now: Instant,
        from: Path,
        nonce: u64,
    ) -> bool {
        let Some(at) = self.pings.0.iter().position(|p| p.nonce == nonce) else {
            return false;
        };
        let ping = self.pings.0.remove(at).expect("found above");
        ctx.out.events.push_back(Event::Pong {
            peer: self.id,
            path: from,
            rtt: now.saturating_duration_since(ping.sent),
        });
        true
    }
}
