#![no_main]
//! Fuzz target: see burrow_core::fuzzing::stream_frames.

use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // One origin for every run, so a crashing input replays the same.
    let now = *ORIGIN.get_or_init(Instant::now);
    burrow_core::fuzzing::stream_frames(now, data)
});
