//! Flows that outran their introduction: an OPEN from a peer that holds no grant for the
//! service yet. The server introduces a source to us at the same time as it answers the
//! source's lookup, so the source's first datagram can reach us before the introduction does.
//! Such an OPEN waits, as a stream does (`session::HOLD_UNAUTHORIZED`): it is admitted when
//! the grant arrives ([`crate::Event::AccessGranted`]) or when a later OPEN of the same flow
//! finds it, and refused when the wait ends, whether we expose the service or not, so the wait
//! tells a stranger nothing. Bounded per peer, in total, and in datagrams per flow.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use crate::event::PeerId;
use crate::rendezvous::ServiceName;
use crate::session::{HOLD_UNAUTHORIZED, MAX_HELD};

/// Most flows held at once over all peers.
pub(super) const MAX_HELD_FLOWS: usize = 256;
/// Most datagrams one held flow keeps (each OPEN carries one); later ones are dropped.
pub(super) const MAX_HELD_DATAGRAMS: usize = 4;

/// One flow waiting for its grant.
#[derive(Debug)]
pub(super) struct HeldOpen {
    pub(super) service: ServiceName,
    until: Instant,
    /// Its datagrams so far, oldest first.
    pub(super) payloads: VecDeque<Bytes>,
}

/// The flows waiting for their grant, by peer and the opener's flow id.
#[derive(Debug, Default)]
pub(super) struct Held {
    flows: BTreeMap<(PeerId, u64), HeldOpen>,
    deadlines: BTreeSet<(Instant, PeerId, u64)>,
}

/// What [`Held::hold`] did with an OPEN.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Holding {
    /// A new flow, held until its grant arrives or its wait ends.
    New,
    /// Another datagram of a held flow, kept with it.
    Added,
    /// Another datagram of a held flow, past [`MAX_HELD_DATAGRAMS`]: dropped.
    Dropped,
    /// No room ([`MAX_HELD`] for this peer or [`MAX_HELD_FLOWS`] in all): refuse it now.
    Full,
}

impl Held {
    /// Holds an OPEN of `(peer, remote)` for `service` carrying `payload`.
    pub(super) fn hold(
        &mut self,
        now: Instant,
        (peer, remote): (PeerId, u64),
        service: &ServiceName,
        payload: &[u8],
    ) -> Holding {
        if let Some(h) = self.flows.get_mut(&(peer, remote)) {
            if h.payloads.len() >= MAX_HELD_DATAGRAMS {
                return Holding::Dropped;
            }
            h.payloads.push_back(Bytes::copy_from_slice(payload));
            return Holding::Added;
        }
        let of_peer = self.flows.range((peer, 0)..=(peer, u64::MAX)).count();
        if of_peer >= MAX_HELD || self.flows.len() >= MAX_HELD_FLOWS {
            return Holding::Full;
        }
        let until = now + HOLD_UNAUTHORIZED;
        self.deadlines.insert((until, peer, remote));
        self.flows.insert(
            (peer, remote),
            HeldOpen {
                service: service.clone(),
                until,
                payloads: VecDeque::from([Bytes::copy_from_slice(payload)]),
            },
        );
        Holding::New
    }

    /// Takes `(peer, remote)` out (it was admitted).
    pub(super) fn take(&mut self, flow: (PeerId, u64)) -> Option<HeldOpen> {
        let h = self.flows.remove(&flow)?;
        self.deadlines.remove(&(h.until, flow.0, flow.1));
        Some(h)
    }

    /// Every held flow, to look at again after a grant.
    pub(super) fn flows(&self) -> impl Iterator<Item = ((PeerId, u64), &ServiceName)> {
        self.flows.iter().map(|(k, h)| (*k, &h.service))
    }

    /// Takes out a flow whose wait ended by `now`, if any: it is refused.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<(PeerId, u64)> {
        let &(at, peer, remote) = self.deadlines.first()?;
        if at > now {
            return None;
        }
        self.deadlines.pop_first();
        self.flows.remove(&(peer, remote));
        Some((peer, remote))
    }

    /// When the next wait ends.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _, _)| *at)
    }

    /// Forgets `peer`'s held flows (its session ended: its handle is gone).
    pub(super) fn forget_peer(&mut self, peer: PeerId) {
        let gone: Vec<(PeerId, u64)> = self
            .flows
            .range((peer, 0)..=(peer, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for flow in gone {
            self.take(flow);
        }
    }

    /// Flows held now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.flows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> ServiceName {
        ServiceName::parse("/t/dns").unwrap()
    }

    #[test]
    fn held_flows_are_bounded_per_peer_in_total_and_in_datagrams() {
        let now = crate::tests::origin();
        let mut held = Held::default();
        let p = PeerId(1);
        for remote in 0..MAX_HELD as u64 {
            assert_eq!(held.hold(now, (p, remote), &svc(), b"q"), Holding::New);
        }
        assert_eq!(held.hold(now, (p, 999), &svc(), b"q"), Holding::Full);
        for _ in 1..MAX_HELD_DATAGRAMS {
            assert_eq!(held.hold(now, (p, 0), &svc(), b"q"), Holding::Added);
        }
        assert_eq!(held.hold(now, (p, 0), &svc(), b"q"), Holding::Dropped);
        let mut peer = 2;
        while held.len() < MAX_HELD_FLOWS {
            for remote in 0..MAX_HELD as u64 {
                if held.len() < MAX_HELD_FLOWS {
                    held.hold(now, (PeerId(peer), remote), &svc(), b"q");
                }
            }
            peer += 1;
        }
        assert_eq!(
            held.hold(now, (PeerId(peer + 1), 0), &svc(), b"q"),
            Holding::Full
        );
    }

    #[test]
    fn a_held_flow_expires_after_the_hold_and_can_be_taken_before() {
        let now = crate::tests::origin();
        let mut held = Held::default();
        held.hold(now, (PeerId(1), 7), &svc(), b"a");
        held.hold(now, (PeerId(1), 8), &svc(), b"b");
        let h = held.take((PeerId(1), 8)).expect("held");
        assert_eq!(h.payloads, [Bytes::from_static(b"b")]);
        assert_eq!(held.next_deadline(), Some(now + HOLD_UNAUTHORIZED));
        assert_eq!(held.pop_expired(now + HOLD_UNAUTHORIZED / 2), None);
        assert_eq!(
            held.pop_expired(now + HOLD_UNAUTHORIZED),
            Some((PeerId(1), 7))
        );
        assert_eq!(held.len(), 0);
        assert_eq!(held.next_deadline(), None);
        held.hold(now, (PeerId(3), 1), &svc(), b"c");
        held.forget_peer(PeerId(3));
        assert_eq!((held.len(), held.next_deadline()), (0, None));
    }
}
