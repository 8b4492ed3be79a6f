//! Shared helpers of burrow's cross-crate suites (the suites themselves are in `tests/`).

pub mod blocking;
pub mod loopback;
pub mod netns;
pub mod ports;
pub mod runtimes;
pub mod suite;
pub mod tools;
