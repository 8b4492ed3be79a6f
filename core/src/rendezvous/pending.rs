//! The server's pending work that has deadlines: peer-mode waits ([`Waiters`]) and
//! introductions retransmitted until acknowledged ([`Pushes`]).
//!
//! Each keeps, next to its map, an ordered index of `(deadline, key)`, so that the server's
//! next deadline costs O(log n) and `handle_timeout` visits only what is due (the sessions'
//! index in `endpoint/sessions.rs` works the same way). Every change goes through these types,
//! which keep map and index in step; due entries are handed out in key order, the order in
//! which a scan of the map would have found them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::messages::ServerMessage;
use super::retry::Retry;
use crate::crypto::PublicKey;

/// A peer-mode wait: (the asker, the peer it waits for).
pub(super) type WaitKey = (PublicKey, PublicKey);

/// A `ConnectPeer` waiting for the other side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Waiter {
    pub(super) request: u64,
    pub(super) deadline: Instant,
}

/// Peer-mode waits, keyed by (asker, peer it waits for), with their deadlines indexed.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    map: BTreeMap<WaitKey, Waiter>,
    by_deadline: BTreeSet<(Instant, WaitKey)>,
}

impl Waiters {
    /// The wait for `key`, if any.
    #[cfg(test)]
    pub(super) fn get(&self, key: &WaitKey) -> Option<&Waiter> {
        self.map.get(key)
    }

    /// Records the request id a wait answers (a retransmission or a new id); returns its
    /// deadline, which does not change.
    pub(super) fn set_request(&mut self, key: &WaitKey, request: u64) -> Option<Instant> {
        let w = self.map.get_mut(key)?;
        w.request = request;
        Some(w.deadline)
    }

    /// Adds (or replaces) a wait.
    pub(super) fn insert(&mut self, key: WaitKey, waiter: Waiter) {
        if let Some(old) = self.map.insert(key, waiter) {
            self.by_deadline.remove(&(old.deadline, key));
        }
        self.by_deadline.insert((waiter.deadline, key));
    }

    /// Removes a wait.
    pub(super) fn remove(&mut self, key: &WaitKey) -> Option<Waiter> {
        let w = self.map.remove(key)?;
        self.by_deadline.remove(&(w.deadline, *key));
        Some(w)
    }

    /// Every wait, in key order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&WaitKey, &Waiter)> {
        self.map.iter()
    }

    /// Keeps only the waits `keep` accepts.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&WaitKey, &Waiter) -> bool) {
        let by_deadline = &mut self.by_deadline;
        self.map.retain(|key, w| {
            let kept = keep(key, w);
            if !kept {
                by_deadline.remove(&(w.deadline, *key));
            }
            kept
        });
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(at, _)| at)
    }

    /// Removes and returns every wait whose deadline is at or before `now`, in key order.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<(WaitKey, Waiter)> {
        let mut due = Vec::new();
        while let Some(&(at, key)) = self.by_deadline.first() {
            if at > now {
                break;
            }
            self.by_deadline.pop_first();
            if let Some(w) = self.map.remove(&key) {
                due.push((key, w));
            }
        }
        due.sort_unstable_by_key(|&(key, _)| key);
        due
    }

    /// Panics unless the index holds exactly each wait's deadline.
    #[cfg(test)]
    pub(super) fn check_index(&self) {
        let scan: BTreeSet<_> = self.map.iter().map(|(&k, w)| (w.deadline, k)).collect();
        assert_eq!(
            scan, self.by_deadline,
            "waiters' deadline index out of step"
        );
        assert_eq!(
            self.next_deadline(),
            self.map.values().map(|w| w.deadline).min()
        );
    }
}

/// An introduction retransmitted until acknowledged.
#[derive(Clone, Debug)]
pub(super) struct Push {
    pub(super) to: PublicKey,
    pub(super) msg: ServerMessage,
    pub(super) retry: Retry,
}

impl Push {
    /// When it is next due: its retransmission, or giving up if that comes first.
    fn deadline(&self) -> Instant {
        self.retry.next.min(self.retry.give_up())
    }
}

/// Unacknowledged introductions by id, with their deadlines indexed.
#[derive(Debug, Default)]
pub(super) struct Pushes {
    map: BTreeMap<u64, Push>,
    by_deadline: BTreeSet<(Instant, u64)>,
}

impl Pushes {
    /// The introduction `id`, if still unacknowledged.
    pub(super) fn get(&self, id: u64) -> Option<&Push> {
        self.map.get(&id)
    }

    /// Adds (or replaces) an introduction.
    pub(super) fn insert(&mut self, id: u64, push: Push) {
        let deadline = push.deadline();
        if let Some(old) = self.map.insert(id, push) {
            self.by_deadline.remove(&(old.deadline(), id));
        }
        self.by_deadline.insert((deadline, id));
    }

    /// Removes an introduction (it was acknowledged).
    pub(super) fn remove(&mut self, id: u64) -> Option<Push> {
        let p = self.map.remove(&id)?;
        self.by_deadline.remove(&(p.deadline(), id));
        Some(p)
    }

    /// Every unacknowledged introduction, in id order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Push> {
        self.map.values()
    }

    /// Keeps only the introductions `keep` accepts.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(u64, &Push) -> bool) {
        let by_deadline = &mut self.by_deadline;
        self.map.retain(|&id, p| {
            let kept = keep(id, p);
            if !kept {
                by_deadline.remove(&(p.deadline(), id));
            }
            kept
        });
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(at, _)| at)
    }

    /// Hands every introduction due at or before `now` to `act`, in id order; `act` may change
    /// its retry state and says whether to keep it.
    pub(super) fn handle_due(&mut self, now: Instant, mut act: impl FnMut(u64, &mut Push) -> bool) {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.by_deadline.first() {
            if at > now {
                break;
            }
            self.by_deadline.pop_first();
            due.push(id);
        }
        due.sort_unstable();
        for id in due {
            let Some(p) = self.map.get_mut(&id) else {
                continue;
            };
            if act(id, p) {
                self.by_deadline.insert((p.deadline(), id));
            } else {
                self.map.remove(&id);
            }
        }
    }

    /// Panics unless the index holds exactly each introduction's deadline.
    #[cfg(test)]
    pub(super) fn check_index(&self) {
        let scan: BTreeSet<_> = self.map.iter().map(|(&id, p)| (p.deadline(), id)).collect();
        assert_eq!(scan, self.by_deadline, "pushes' deadline index out of step");
        assert_eq!(
            self.next_deadline(),
            self.map.values().map(Push::deadline).min()
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::crypto::SecretKey;
    use crate::tests::origin;

    fn key(n: u8) -> PublicKey {
        SecretKey::from_bytes([n.max(1); 32]).public_key()
    }

    /// One operation on the server's pending work, as the server makes them.
    #[derive(Clone, Debug)]
    enum Op {
        Wait { asker: u8, peer: u8, request: u64 },
        Rerequest { asker: u8, peer: u8, request: u64 },
        Unwait { asker: u8, peer: u8 },
        Forget { key: u8 },
        Push { to: u8 },
        Ack { id: u64 },
        Advance { ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        let k = 0u8..6;
        prop_oneof![
            (k.clone(), k.clone(), any::<u64>()).prop_map(|(asker, peer, request)| Op::Wait {
                asker,
                peer,
                request
            }),
            (k.clone(), k.clone(), any::<u64>()).prop_map(|(asker, peer, request)| Op::Rerequest {
                asker,
                peer,
                request
            }),
            (k.clone(), k.clone()).prop_map(|(asker, peer)| Op::Unwait { asker, peer }),
            k.clone().prop_map(|key| Op::Forget { key }),
            k.prop_map(|to| Op::Push { to }),
            (0u64..40).prop_map(|id| Op::Ack { id }),
            (0u64..3000).prop_map(|ms| Op::Advance { ms }),
        ]
    }

    proptest! {
        /// After any sequence of the server's operations, each index holds exactly what a scan
        /// of its map finds, and due entries come out in key order, all of them and only them.
        #[test]
        fn index_matches_a_scan(ops in proptest::collection::vec(op(), 1..200)) {
            let mut now = origin();
            let (mut waiters, mut pushes) = (Waiters::default(), Pushes::default());
            let mut next_id = 0u64;
            let wait = Duration::from_secs(5);
            for op in ops {
                match op {
                    Op::Wait { asker, peer, request } => {
                        let w = Waiter { request, deadline: now + wait };
                        waiters.insert((key(asker), key(peer)), w);
                    }
                    Op::Rerequest { asker, peer, request } => {
                        let k = (key(asker), key(peer));
                        let before = waiters.get(&k).map(|w| w.deadline);
                        prop_assert_eq!(waiters.set_request(&k, request), before);
                    }
                    Op::Unwait { asker, peer } => {
                        waiters.remove(&(key(asker), key(peer)));
                    }
                    Op::Forget { key: n } => {
                        waiters.retain(|(a, p), _| *a != key(n) && *p != key(n));
                        pushes.retain(|_, p| p.to != key(n));
                    }
                    Op::Push { to } => {
                        let msg = ServerMessage::LeaseExpired;
                        pushes.insert(next_id, Push { to: key(to), msg, retry: Retry::new(now) });
                        next_id += 1;
                    }
                    Op::Ack { id } => {
                        pushes.remove(id);
                    }
                    Op::Advance { ms } => {
                        now += Duration::from_millis(ms);
                        let expected: Vec<_> = waiters
                            .iter()
                            .filter(|(_, w)| w.deadline <= now)
                            .map(|(&k, &w)| (k, w))
                            .collect();
                        prop_assert_eq!(waiters.take_due(now), expected);
                        prop_assert!(waiters.iter().all(|(_, w)| w.deadline > now));
                        let expected: Vec<_> = pushes
                            .map
                            .iter()
                            .filter(|(_, p)| p.deadline() <= now)
                            .map(|(&id, _)| id)
                            .collect();
                        let mut seen = Vec::new();
                        pushes.handle_due(now, |id, p| {
                            seen.push(id);
                            if p.retry.give_up() <= now {
                                return false;
                            }
                            if p.retry.is_due(now) {
                                p.retry.backoff(now);
                            }
                            true
                        });
                        prop_assert_eq!(seen, expected);
                    }
                }
                waiters.check_index();
                pushes.check_index();
            }
        }
    }
}
