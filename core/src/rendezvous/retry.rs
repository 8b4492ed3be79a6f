//! The retransmission schedule shared by client requests and server pushes.

use std::time::{Duration, Instant};

/// First retransmission interval.
pub(crate) const RETRY_INITIAL: Duration = Duration::from_millis(500);
/// The interval doubles up to this.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(4);
/// A message unanswered this long after it was first sent is given up on.
pub(crate) const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// When to send a message again: 500 ms, doubling to 4 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Retry {
    /// When the message first went out.
    pub(crate) first: Instant,
    /// When to send it again.
    pub(crate) next: Instant,
    interval: Duration,
}

impl Retry {
    /// The schedule of a message first sent at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            first: now,
            next: now + RETRY_INITIAL,
            interval: RETRY_INITIAL,
        }
    }

    /// Whether the message is due again at `now`.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.next <= now
    }

    /// Notes that the message was sent again at `now`.
    pub(crate) fn backoff(&mut self, now: Instant) {
        self.interval = (self.interval * 2).min(RETRY_MAX);
        self.next = now + self.interval;
    }

    /// When the message is given up on.
    pub(crate) fn give_up(&self) -> Instant {
        self.first + GIVE_UP_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap() {
        let t0 = crate::tests::origin();
        let mut retry = Retry::new(t0);
        let mut sends = vec![];
        while retry.next < retry.give_up() {
            let now = retry.next;
            sends.push(now - t0);
            retry.backoff(now);
        }
        let ms: Vec<u128> = sends.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [500, 1500, 3500, 7500]);
        assert_eq!(retry.give_up() - t0, GIVE_UP_AFTER);
    }
}
