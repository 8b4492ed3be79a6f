//! Named deadlines and the small table that holds them.

use std::time::Instant;

/// Why the core wants to be woken up; returned beside the deadline by `poll_timeout`.
///
/// The reason is for logs and tests only: an adapter treats every timer the same way and calls
/// `handle_timeout(now)` once the deadline has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Timer {
    /// Retransmit a handshake initiation that has not been answered.
    Handshake,
    /// Start a new handshake because the current keys are old.
    Rekey,
    /// Send a keepalive so the peer (and every NAT on the way) keeps the session.
    KeepAlive,
    /// Close a session that has heard nothing from its peer for too long.
    Idle,
    /// Forget the keys of a previous session generation.
    KeyExpiry,
    /// Loss detection or probe timeout of the stream layer.
    Retransmit,
    /// Send a delayed acknowledgement.
    Ack,
    /// Release a packet held back by pacing.
    Pacing,
    /// Renew a rendezvous registration.
    LeaseRenew,
    /// Expire a rendezvous registration.
    LeaseExpiry,
    /// Send the next hole-punching probe.
    PunchProbe,
    /// Retransmit a STUN Binding request, or give up on it.
    Stun,
    /// Challenge the peer's candidates for a direct path while relayed, or give up a silent
    /// direct path for the relay.
    PathCheck,
}

/// A fixed table of optional deadlines, one slot per [`Timer`] kind, for one sub-machine.
#[derive(Clone, Debug, Default)]
pub struct TimerTable {
    slots: Vec<(Timer, Instant)>,
}

impl TimerTable {
    /// Sets (or moves) the deadline for `timer`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        match self.slots.iter_mut().find(|(t, _)| *t == timer) {
            Some(slot) => slot.1 = at,
            None => self.slots.push((timer, at)),
        }
    }

    /// Removes the deadline for `timer`, if any.
    pub fn stop(&mut self, timer: Timer) {
        self.slots.retain(|(t, _)| *t != timer);
    }

    /// The deadline for `timer`, if set.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots
            .iter()
            .find(|(t, _)| *t == timer)
            .map(|(_, at)| *at)
    }

    /// Whether `timer` is set and due at `now`.
    pub fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// Removes `timer` and returns true if it was due at `now`.
    pub fn take_due(&mut self, timer: Timer, now: Instant) -> bool {
        let due = self.is_due(timer, now);
        if due {
            self.stop(timer);
        }
        due
    }

    /// The earliest deadline in the table with its reason; ties go to the earlier `Timer`.
    pub fn next(&self) -> Option<(Instant, Timer)> {
        self.slots.iter().map(|&(t, at)| (at, t)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_deadline_wins_and_stop_removes() {
        let t0 = crate::tests::origin();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::Idle, t0 + Duration::from_secs(30));
        table.set(Timer::KeepAlive, t0 + Duration::from_secs(10));
        assert_eq!(
            table.next(),
            Some((t0 + Duration::from_secs(10), Timer::KeepAlive))
        );
        table.set(Timer::KeepAlive, t0 + Duration::from_secs(40));
        assert_eq!(
            table.next(),
            Some((t0 + Duration::from_secs(30), Timer::Idle))
        );
        assert!(!table.take_due(Timer::Idle, t0));
        assert!(table.take_due(Timer::Idle, t0 + Duration::from_secs(30)));
        assert_eq!(table.get(Timer::Idle), None);
        table.stop(Timer::KeepAlive);
        assert_eq!(table.next(), None);
    }
}
