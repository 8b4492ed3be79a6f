#![no_main]
//! Fuzz target: see burrow_core::fuzzing::stun.

libfuzzer_sys::fuzz_target!(|data: &[u8]| burrow_core::fuzzing::stun(data));
