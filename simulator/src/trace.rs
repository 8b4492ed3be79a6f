//! The deterministic text trace of a run and its hash.
//!
//! One line per event worth seeing (a node sending, a NAT translating, a delivery, a drop):
//!
//! ```text
//! 0.025000412 deliver 203.0.113.7:40000 > 198.51.100.1:3478 len=5 to host server
//! ```
//!
//! Times are durations since the simulation origin with nanosecond precision, so the text
//! depends only on (scenario, seed). Lines are written when the simulator decides something, in
//! event order: a drop on a link or by TTL along a path carries the time the datagram entered that
//! path, not the (later) time it would have reached the dropping router. The hash is 64-bit FNV-1a over the bytes of every line, with
//! no per-process keys.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

/// How much of the trace a simulation keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TraceMode {
    /// Record nothing (fastest).
    #[default]
    Off,
    /// Format each line and fold it into the hash, but keep no text.
    Hash,
    /// Keep the full text and the hash.
    Full,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`, continuing from `state` (start with [`fnv1a64`] of nothing).
fn fnv1a64_update(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// 64-bit FNV-1a of `bytes`: a fixed, keyless hash used to compare traces across runs.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_update(FNV_OFFSET, bytes)
}

/// A run's trace: optional text, a running hash and a line count.
#[derive(Clone, Debug)]
pub struct Trace {
    mode: TraceMode,
    text: String,
    line: String,
    hash: u64,
    lines: u64,
}

impl Trace {
    /// An empty trace in the given mode.
    pub fn new(mode: TraceMode) -> Self {
        Self {
            mode,
            text: String::new(),
            line: String::with_capacity(160),
            hash: FNV_OFFSET,
            lines: 0,
        }
    }

    /// Whether lines are being recorded at all (callers skip formatting when not).
    #[inline]
    pub fn enabled(&self) -> bool {
        self.mode != TraceMode::Off
    }

    /// The mode this trace records in.
    pub fn mode(&self) -> TraceMode {
        self.mode
    }

    /// Records one line: `time verdict src > dst len=N detail`.
    pub fn record(
        &mut self,
        at: Duration,
        verdict: &str,
        src: SocketAddr,
        dst: SocketAddr,
        len: usize,
        detail: fmt::Arguments<'_>,
    ) {
        if !self.enabled() {
            return;
        }
        self.line.clear();
        // Writing to a String cannot fail.
        let _ = writeln!(
            self.line,
            "{}.{:09} {verdict:<7} {src} > {dst} len={len} {detail}",
            at.as_secs(),
            at.subsec_nanos()
        );
        self.push_line();
    }

    /// Records a free-form note (for scenario milestones).
    pub fn note(&mut self, at: Duration, detail: fmt::Arguments<'_>) {
        if !self.enabled() {
            return;
        }
        self.line.clear();
        let _ = writeln!(
            self.line,
            "{}.{:09} note    {detail}",
            at.as_secs(),
            at.subsec_nanos()
        );
        self.push_line();
    }

    fn push_line(&mut self) {
        self.hash = fnv1a64_update(self.hash, self.line.as_bytes());
        self.lines += 1;
        if self.mode == TraceMode::Full {
            self.text.push_str(&self.line);
        }
    }

    /// The recorded text (empty unless the mode is [`TraceMode::Full`]).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// FNV-1a hash of every recorded line, in order. Equal hashes mean identical traces.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Number of recorded lines.
    pub fn lines(&self) -> u64 {
        self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hash_mode_matches_full_mode() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:2".parse().unwrap();
        let mut full = Trace::new(TraceMode::Full);
        let mut hash = Trace::new(TraceMode::Hash);
        for t in [&mut full, &mut hash] {
            t.record(
                Duration::from_nanos(1_500),
                "drop",
                a,
                b,
                3,
                format_args!("x"),
            );
        }
        assert_eq!(full.hash(), hash.hash());
        assert_eq!(full.hash(), fnv1a64(full.text().as_bytes()));
        assert_eq!(
            full.text(),
            "0.000001500 drop    10.0.0.1:1 > 10.0.0.2:2 len=3 x\n"
        );
    }
}
