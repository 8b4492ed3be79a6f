//! A windowed maximum over the last few round trips: BBR's bottleneck-bandwidth filter.

/// The maximum of the values seen in the last `N` rounds (the current one included), kept
/// as one slot per round, so it is exact and costs `N` words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WindowedMax<const N: usize> {
    slots: [u64; N],
    /// The round the newest slot belongs to.
    round: u64,
}

impl<const N: usize> WindowedMax<N> {
    /// An empty filter (maximum 0).
    pub(crate) fn new() -> Self {
        Self {
            slots: [0; N],
            round: 0,
        }
    }

    /// Adds `value` seen in `round` (rounds never go back); older rounds than `N` are forgotten.
    pub(crate) fn update(&mut self, round: u64, value: u64) {
        if round > self.round {
            // Clear the slots of the rounds skipped since the last update, and the new one.
            let skipped = (round - self.round).min(N as u64);
            for r in round + 1 - skipped..=round {
                self.slots[(r % N as u64) as usize] = 0;
            }
            self.round = round;
        }
        let slot = &mut self.slots[(self.round % N as u64) as usize];
        *slot = (*slot).max(value);
    }

    /// The maximum over the window.
    pub(crate) fn get(&self) -> u64 {
        self.slots.iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_max_of_the_last_n_rounds() {
        let mut f = WindowedMax::<3>::new();
        assert_eq!(f.get(), 0);
        f.update(0, 10);
        f.update(0, 7);
        assert_eq!(f.get(), 10);
        f.update(1, 5);
        f.update(2, 6);
        assert_eq!(
            f.get(),
            10,
            "round 0 is still in the window of rounds 0..=2"
        );
        f.update(3, 4);
        assert_eq!(f.get(), 6, "round 0 fell out");
        f.update(10, 1);
        assert_eq!(f.get(), 1, "a long gap forgets everything");
        f.update(11, 3);
        f.update(12, 2);
        f.update(13, 2);
        assert_eq!(f.get(), 3);
    }
}
