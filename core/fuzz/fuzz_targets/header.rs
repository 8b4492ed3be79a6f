#![no_main]
//! Fuzz target: see burrow_core::fuzzing::header.

libfuzzer_sys::fuzz_target!(|data: &[u8]| burrow_core::fuzzing::header(data));
