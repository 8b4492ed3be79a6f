//! A session's key generations: the current keys, the previous ones (still taken while the
//! peer switches over) and the next ones (made as responder, waiting for confirmation).

use std::time::{Duration, Instant};

use super::Indices;
use super::keypair::Keypair;
use crate::config::SessionConfig;

/// Which key generation a transport packet was sealed with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Current,
    Previous,
    Next,
}

/// The key generations of one session.
#[derive(Default)]
pub(super) struct Keys {
    pub(super) current: Option<Keypair>,
    pub(super) previous: Option<Keypair>,
    /// Keys we made as responder, unused until the initiator's first packet confirms them.
    pub(super) next: Option<Keypair>,
    /// The session number the `next` keys belong to (see `HandshakePayload::session`);
    /// `None` when the initiator predates session numbers.
    pub(super) next_session: Option<u64>,
}

impl Keys {
    /// The generation whose index is `local_index`, if any.
    pub(super) fn find(&self, local_index: u32) -> Option<Slot> {
        let has = |k: &Option<Keypair>| k.as_ref().is_some_and(|k| k.local_index == local_index);
        if has(&self.current) {
            Some(Slot::Current)
        } else if has(&self.next) {
            Some(Slot::Next)
        } else if has(&self.previous) {
            Some(Slot::Previous)
        } else {
            None
        }
    }

    /// The keys in `slot`, which [`Self::find`] just returned.
    pub(super) fn get_mut(&mut self, slot: Slot) -> &mut Keypair {
        match slot {
            Slot::Current => self.current.as_mut(),
            Slot::Previous => self.previous.as_mut(),
            Slot::Next => self.next.as_mut(),
        }
        .expect("the slot was just found")
    }

    /// Makes `keypair` current; the current keys become the previous ones.
    pub(super) fn install_current(&mut self, indices: &mut Indices, keypair: Keypair) {
        if let Some(old) = self.previous.take() {
            indices.free(old.local_index);
        }
        self.previous = self.current.replace(keypair);
    }

    /// Keeps `keypair` (made as responder, for session number `session`) until the initiator
    /// confirms it.
    pub(super) fn set_next(
        &mut self,
        indices: &mut Indices,
        keypair: Keypair,
        session: Option<u64>,
    ) {
        if let Some(old) = self.next.replace(keypair) {
            indices.free(old.local_index);
        }
        self.next_session = session;
    }

    /// Takes the `next` keys the initiator just confirmed, with their session number.
    pub(super) fn take_next(&mut self) -> (Keypair, Option<u64>) {
        let keys = self.next.take().expect("the next keys were just found");
        (keys, self.next_session.take())
    }

    /// Erases the keys past their hard age at `now`.
    pub(super) fn expire(&mut self, cfg: &SessionConfig, now: Instant, indices: &mut Indices) {
        let limits = [
            (&mut self.current, cfg.reject_after_time),
            (&mut self.previous, cfg.reject_after_time),
            // Keys the initiator never confirmed: its first packet should have come long ago.
            (&mut self.next, cfg.handshake_timeout),
        ];
        for (slot, lifetime) in limits {
            if slot.as_ref().is_some_and(|k| now >= k.created + lifetime) {
                let old = slot.take().expect("checked above");
                indices.free(old.local_index);
            }
        }
        if self.next.is_none() {
            self.next_session = None;
        }
    }

    /// When [`Self::expire`] next erases keys.
    pub(super) fn expiry(&self, cfg: &SessionConfig) -> Option<Instant> {
        let old = [&self.current, &self.previous]
            .into_iter()
            .flatten()
            .map(|k| k.created + cfg.reject_after_time);
        let next = self.next.iter().map(|k| k.created + cfg.handshake_timeout);
        old.chain(next).min()
    }

    /// Age of the current keys at which we start a new handshake: the initiator of the current
    /// keys goes first; the responder waits a keepalive interval longer so both rarely start at
    /// once.
    pub(super) fn rekey_age(&self, cfg: &SessionConfig) -> Duration {
        match &self.current {
            Some(k) if !k.initiator => cfg.rekey_after_time + cfg.keepalive_interval,
            _ => cfg.rekey_after_time,
        }
    }

    /// Forgets the current and previous keys (the peer restarted and cannot use them).
    pub(super) fn forget_old(&mut self, indices: &mut Indices) {
        for old in [self.current.take(), self.previous.take()]
            .into_iter()
            .flatten()
        {
            indices.free(old.local_index);
        }
    }

    /// Forgets every generation.
    pub(super) fn forget_all(&mut self, indices: &mut Indices) {
        self.forget_old(indices);
        if let Some(next) = self.next.take() {
            indices.free(next.local_index);
        }
        self.next_session = None;
    }
}
