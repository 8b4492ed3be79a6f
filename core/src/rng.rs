//! The endpoint's seeded CSPRNG.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// A ChaCha20 stream seeded by the caller: real drivers seed it from the OS, the simulator and
/// tests from a fixed value, so runs are reproducible.
#[derive(Clone, Debug)]
pub(crate) struct SeededRng(ChaCha20Rng);

impl SeededRng {
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }

    pub(crate) fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.0.fill_bytes(&mut out);
        out
    }

    pub(crate) fn u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    pub(crate) fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}
