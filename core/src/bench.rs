//! Internals the benchmarks in `core/benches` drive directly (not part of the API).
//!
//! `goodput` runs two stream multiplexers against each other without sessions or crypto.

pub use crate::stream::{
    CongestionControl, Mux, MuxStats, OpenError, ReadError, Role, StreamConfig, StreamEvent,
    WriteError,
};
