//! Flow-control credit (RFC 9000 §4): how far the peer may send, and when to tell it more.

/// Receive-side credit: the limit we advertised and how much the application consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecvCredit {
    window: u64,
    /// The highest offset (or byte count) the peer may send; the last value we advertised.
    pub(crate) max: u64,
    /// Bytes the application has consumed (read or discarded).
    pub(crate) consumed: u64,
}

impl RecvCredit {
    /// Credit that starts at `initial` (what the peer assumes before any update) and grows to
    /// `window` past what was consumed.
    pub(crate) fn new(initial: u64, window: u64) -> Self {
        Self {
            window: window.max(initial),
            max: initial,
            consumed: 0,
        }
    }

    /// Whether `end` (an offset or a total) stays within the advertised limit.
    pub(crate) fn allows(&self, end: u64) -> bool {
        end <= self.max
    }

    /// Records `n` more consumed bytes.
    pub(crate) fn consume(&mut self, n: u64) {
        self.consumed += n;
    }

    /// Whether an update is worth sending: less than half the window is left unconsumed.
    pub(crate) fn should_update(&self) -> bool {
        self.max.saturating_sub(self.consumed) < self.window / 2
    }

    /// Raises the limit to `consumed + window` and returns it.
    pub(crate) fn update(&mut self) -> u64 {
        self.max = self.max.max(self.consumed + self.window);
        self.max
    }
}

/// Send-side credit: the peer's limit and how much of it we used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SendCredit {
    pub(crate) max: u64,
    pub(crate) used: u64,
}

impl SendCredit {
    pub(crate) fn new(max: u64) -> Self {
        Self { max, used: 0 }
    }

    pub(crate) fn available(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }

    /// Applies a MAX_* update from the peer; returns true if it raised the limit (limits never
    /// shrink; reordered stale updates are ignored).
    pub(crate) fn raise(&mut self, max: u64) -> bool {
        let raised = max > self.max;
        self.max = self.max.max(max);
        raised
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_credit_updates_after_half_the_window_is_consumed() {
        let mut c = RecvCredit::new(100, 100);
        assert!(c.allows(100) && !c.allows(101));
        assert!(!c.should_update());
        c.consume(50);
        assert!(!c.should_update());
        c.consume(1);
        assert!(c.should_update());
        assert_eq!(c.update(), 151);
        assert!(!c.should_update());
        assert!(c.allows(151));
    }

    #[test]
    fn a_larger_window_than_the_initial_credit_updates_at_once() {
        let mut c = RecvCredit::new(64, 1000);
        assert!(c.should_update());
        assert_eq!(c.update(), 1000);
    }

    #[test]
    fn send_credit_never_shrinks() {
        let mut c = SendCredit::new(10);
        c.used = 4;
        assert_eq!(c.available(), 6);
        assert!(c.raise(20));
        assert!(!c.raise(15));
        assert_eq!(c.available(), 16);
        c.used = 20;
        assert_eq!(c.available(), 0);
    }
}
