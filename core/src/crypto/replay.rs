//! Sliding anti-replay window over transport counters, in the style of RFC 6479: a ring of
//! 64-bit blocks, so moving the window forward clears whole blocks instead of shifting bits.
//!
//! Counter `c` is accepted once, and only while `c + REPLAY_WINDOW > highest` where `highest` is
//! the largest counter accepted so far. Packets may therefore arrive up to [`REPLAY_WINDOW`] - 1
//! counters late (reordered), never twice.
//!
//! Use it in two steps around decryption, so forged packets cannot move the window (the test
//! `two_steps_around_decryption` runs this):
//!
//! ```text
//! let mut window = ReplayWindow::default();
//! let counter = 7;
//! if window.check(counter) /* && the packet decrypts */ {
//!     assert!(window.accept(counter));
//! }
//! assert!(!window.check(counter));
//! ```

/// How many counters behind the highest accepted one are still accepted (a power of two).
pub(crate) const REPLAY_WINDOW: u64 = 4096;

const _: () = assert!(REPLAY_WINDOW >= 2048 && REPLAY_WINDOW.is_power_of_two());

const BLOCK_BITS: u64 = 64;
/// One block more than the window spans, so the oldest acceptable counter's block is never the
/// block being reused for the newest.
const BLOCKS: usize = (REPLAY_WINDOW / BLOCK_BITS) as usize + 1;

/// Which transport counters have been seen, over the last [`REPLAY_WINDOW`] counters.
///
/// 520 bytes of bitmap plus the highest counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplayWindow {
    highest: Option<u64>,
    bitmap: [u64; BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self {
            highest: None,
            bitmap: [0; BLOCKS],
        }
    }
}

impl ReplayWindow {
    /// Whether `counter` is new and inside the window. Does not change state: call it before
    /// decrypting, and [`ReplayWindow::accept`] once the packet authenticated.
    pub(crate) fn check(&self, counter: u64) -> bool {
        let Some(highest) = self.highest else {
            return true;
        };
        if counter > highest {
            return true;
        }
        if highest - counter >= REPLAY_WINDOW {
            return false;
        }
        let (block, bit) = position(counter);
        self.bitmap[block] & bit == 0
    }

    /// Marks `counter` as seen. Call only after its packet authenticated.
    ///
    /// Returns `false`, changing nothing, if `counter` was already seen or is too old.
    pub(crate) fn accept(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        match self.highest {
            Some(highest) if counter <= highest => {}
            Some(highest) => {
                // Moving forward: clear the blocks the window slides onto.
                let old_block = highest / BLOCK_BITS;
                let new_block = counter / BLOCK_BITS;
                let advance = new_block - old_block;
                if advance >= BLOCKS as u64 {
                    self.bitmap = [0; BLOCKS];
                } else {
                    for step in 1..=advance {
                        self.bitmap[slot(old_block + step)] = 0;
                    }
                }
                self.highest = Some(counter);
            }
            None => self.highest = Some(counter),
        }
        let (block, bit) = position(counter);
        self.bitmap[block] |= bit;
        true
    }

    /// The largest counter accepted so far.
    pub(crate) fn highest(&self) -> Option<u64> {
        self.highest
    }
}

fn slot(block: u64) -> usize {
    // The remainder is below BLOCKS, which fits in usize.
    (block % BLOCKS as u64) as usize
}

fn position(counter: u64) -> (usize, u64) {
    (slot(counter / BLOCK_BITS), 1 << (counter % BLOCK_BITS))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// The module docs' example: check before decrypting, accept after.
    #[test]
    fn two_steps_around_decryption() {
        let mut window = ReplayWindow::default();
        let counter = 7;
        // Only once the packet also decrypts:
        if window.check(counter) {
            assert!(window.accept(counter));
        }
        assert!(!window.check(counter));
    }

    /// The specification: accepted iff never accepted before and within the window.
    #[derive(Default)]
    struct Model {
        seen: BTreeSet<u64>,
    }

    impl Model {
        fn accept(&mut self, counter: u64) -> bool {
            let fresh = !self.seen.contains(&counter);
            let in_window = self.seen.last().is_none_or(|&highest| {
                u128::from(counter) + u128::from(REPLAY_WINDOW) > u128::from(highest)
            });
            let ok = fresh && in_window;
            if ok {
                self.seen.insert(counter);
            }
            ok
        }
    }

    fn run(counters: &[u64]) {
        let mut window = ReplayWindow::default();
        let mut model = Model::default();
        for (i, &c) in counters.iter().enumerate() {
            let expected = model.accept(c);
            assert_eq!(window.check(c), expected, "check({c}) at step {i}");
            assert_eq!(window.accept(c), expected, "accept({c}) at step {i}");
            assert!(!window.check(c));
            assert!(!window.accept(c));
            assert_eq!(window.highest(), model.seen.last().copied());
        }
    }

    #[test]
    fn in_order_duplicates_and_reordering() {
        run(&[0, 1, 2, 2, 1, 0, 5, 3, 4, 3, 64, 63, 128, 65, 6]);
    }

    #[test]
    fn exact_window_edges() {
        let w = REPLAY_WINDOW;
        run(&[w, 1, 0, 2 * w - 1, w - 1, w, w + 1, 3 * w, 2 * w + 1, 2 * w]);
    }

    #[test]
    fn counter_zero_and_u64_max() {
        run(&[
            0,
            0,
            u64::MAX,
            0,
            u64::MAX - 1,
            u64::MAX - REPLAY_WINDOW,
            u64::MAX - REPLAY_WINDOW + 1,
            u64::MAX,
        ]);
        run(&[u64::MAX, u64::MAX]);
    }

    #[test]
    fn big_jumps_clear_the_bitmap() {
        let w = REPLAY_WINDOW;
        // Fill every bit, then jump exactly one block-ring length and just under it.
        let mut counters: Vec<u64> = (0..2 * w).collect();
        counters.extend([
            2 * w + 64 * BLOCKS as u64,
            2 * w + 64 * BLOCKS as u64 - 1,
            10 * w,
        ]);
        counters.extend((9 * w + 1..10 * w).rev());
        counters.extend([10 * w + 63, 10 * w + 64 + 5, 10 * w + 5, 10 * w + 64]);
        run(&counters);
    }

    #[test]
    fn stale_bits_from_a_previous_lap_do_not_linger() {
        // Mark counter 5, then advance so that its block slot is reused for a newer block.
        let reuse = 5 + 64 * BLOCKS as u64;
        run(&[5, reuse - 64, reuse, reuse - 64 * (BLOCKS as u64 - 1)]);
        let mut window = ReplayWindow::default();
        window.accept(5);
        window.accept(reuse);
        assert!(!window.check(5), "too old");
        assert!(window.check(reuse - 1));
        assert!(window.check(reuse - REPLAY_WINDOW + 1));
    }

    fn counters() -> impl Strategy<Value = Vec<u64>> {
        // Mostly close together (reordering, duplicates), sometimes big jumps.
        let step = prop_oneof![
            8 => -100i64..100,
            2 => -(REPLAY_WINDOW as i64) - 70..REPLAY_WINDOW as i64 + 70,
            1 => -20_000i64..20_000,
        ];
        (0u64..10_000, proptest::collection::vec(step, 1..300)).prop_map(|(start, steps)| {
            let mut at = start;
            steps
                .into_iter()
                .map(|s| {
                    at = at.saturating_add_signed(s);
                    at
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn matches_the_model(counters in counters()) {
            run(&counters);
        }

        #[test]
        fn matches_the_model_near_u64_max(counters in counters()) {
            let shifted: Vec<u64> = counters.iter().map(|c| u64::MAX - 30_000 + c.min(&30_000)).collect();
            run(&shifted);
        }
    }
}
