//! Goodput of one bulk stream over a simulated bottleneck, through the public API of
//! `burrow_core::bench` (the stream multiplexer) only, compared with the Mathis et al. model of NewReno TCP.
//!
//! Run with `cargo bench -p burrow-core --bench goodput`.
//!
//! The link: 100 Mbit/s in each direction (serialization delay per packet), 25 ms one-way
//! propagation (50 ms base RTT), a drop-tail queue of one bandwidth-delay product (625 kB) in
//! front of each direction, and independent random loss on the data direction. Each packet is
//! charged the session's 32 bytes (header + AEAD tag) and 28 bytes of IPv4 + UDP on the wire.
//! Time is virtual; a run depends only on the loss rate and seed.
#![allow(clippy::print_stdout, missing_docs)]
// Only for the counting allocator below, which measures heap allocations per packet.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use burrow_core::bench::{Mux, Role, StreamConfig, StreamEvent};
use burrow_core::{ReadOutcome, StreamId};

const RATE_BPS: u64 = 100_000_000;
const ONE_WAY: Duration = Duration::from_millis(25);
const WIRE_OVERHEAD: u64 = 32 + 28;
const PAYLOAD: usize = 1168;
const WARMUP: Duration = Duration::from_secs(5);
/// Measured time after the warm-up: lossy runs are cheap and noisy, so they run longer.
fn measure(loss_per_million: u64) -> Duration {
    if loss_per_million == 0 {
        Duration::from_secs(25)
    } else {
        Duration::from_secs(200)
    }
}

/// Counts heap allocations (including reallocations) so the bench can report them per packet.
struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// One direction of the bottleneck: a FIFO queue drained at `RATE_BPS`, then propagation.
struct Link {
    queue_limit: u64,
    loss_per_million: u64,
    /// When the transmitter finishes the last queued packet.
    busy_until: Instant,
    in_flight: VecDeque<(Instant, Vec<u8>)>,
    pool: Vec<Vec<u8>>,
    rng: u64,
    random_drops: u64,
    queue_drops: u64,
}

impl Link {
    fn new(now: Instant, loss_per_million: u64, seed: u64) -> Self {
        let bdp = RATE_BPS / 8 * ONE_WAY.as_nanos() as u64 * 2 / 1_000_000_000;
        Self {
            queue_limit: bdp,
            loss_per_million,
            busy_until: now,
            in_flight: VecDeque::new(),
            pool: Vec::new(),
            rng: seed | 1,
            random_drops: 0,
            queue_drops: 0,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: plenty for choosing losses, and deterministic.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn send(&mut self, now: Instant, payload: &[u8]) {
        if self.loss_per_million > 0 && self.random() % 1_000_000 < self.loss_per_million {
            self.random_drops += 1;
            return;
        }
        let wire = payload.len() as u64 + WIRE_OVERHEAD;
        let backlog_ns = self.busy_until.saturating_duration_since(now).as_nanos() as u64;
        let backlog_bytes = backlog_ns * RATE_BPS / 8 / 1_000_000_000;
        if backlog_bytes + wire > self.queue_limit {
            self.queue_drops += 1;
            return;
        }
        let serialize = Duration::from_nanos(wire * 8 * 1_000_000_000 / RATE_BPS);
        self.busy_until = self.busy_until.max(now) + serialize;
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        self.in_flight.push_back((self.busy_until + ONE_WAY, buf));
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|p| p.0)
    }
}

struct Outcome {
    goodput_mbps: f64,
    lost: u64,
    queue_drops: u64,
    retransmitted: u64,
    rtt: Duration,
    cpu: Duration,
    ptos: u64,
    reductions: u64,
    allocs_per_packet: f64,
}

fn config() -> StreamConfig {
    let mut c = StreamConfig::default();
    // Windows of at least twice BDP + queue so that flow control never limits the bench.
    c.stream_receive_window = 4 << 20;
    c.stream_send_buffer = 4 << 20;
    c.connection_receive_window = 16 << 20;
    c
}

#[allow(clippy::disallowed_methods)] // the bench's one clock read: an origin for virtual time
fn origin() -> Instant {
    Instant::now()
}

fn run(loss_per_million: u64, seed: u64) -> Outcome {
    let cpu_start = origin();
    let t0 = origin();
    let mut now = t0;
    let mut a = Mux::new(config(), Role::Initiator, now);
    let mut b = Mux::new(config(), Role::Responder, now);
    let mut ab = Link::new(now, loss_per_million, seed);
    let mut ba = Link::new(now, 0, seed + 1);
    let id: StreamId = a.open().expect("first stream");
    let chunk = vec![0x5a; 256 * 1024];
    let mut readbuf = vec![0u8; 256 * 1024];
    let mut buf = vec![0u8; PAYLOAD];
    let mut writable = true;
    let mut received = 0u64;
    let mut received_at_warmup = None;
    let mut allocs_at_warmup = 0;
    let mut packets_at_warmup = 0;
    let end = t0 + WARMUP + measure(loss_per_million);
    loop {
        if writable {
            while let Ok(n) = a.write(id, &chunk) {
                if n == 0 {
                    break;
                }
            }
            writable = false;
        }
        while let Some(n) = a.poll_packet(now, &mut buf) {
            ab.send(now, &buf[..n]);
        }
        while let Some(n) = b.poll_packet(now, &mut buf) {
            ba.send(now, &buf[..n]);
        }
        while let Some(ev) = a.poll_event() {
            if let StreamEvent::Writable(_) = ev {
                writable = true;
            }
        }
        while let Some(ev) = b.poll_event() {
            if let StreamEvent::Readable(sid) | StreamEvent::Opened(sid) = ev {
                while let Ok(ReadOutcome::Data(n)) = b.read(sid, &mut readbuf) {
                    received += n as u64;
                }
            }
        }
        if received_at_warmup.is_none() && now >= t0 + WARMUP {
            received_at_warmup = Some(received);
            allocs_at_warmup = ALLOCATIONS.load(Ordering::Relaxed);
            packets_at_warmup = a.stats().packets_sent + b.stats().packets_sent;
        }
        let next = [
            a.poll_timeout().map(|t| t.0),
            b.poll_timeout().map(|t| t.0),
            ab.next_arrival(),
            ba.next_arrival(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        if next > end {
            break;
        }
        now = now.max(next);
        while ab.next_arrival().is_some_and(|t| t <= now) {
            let (_, p) = ab.in_flight.pop_front().expect("checked");
            b.handle_packet(now, &p);
            ab.pool.push(p);
        }
        while ba.next_arrival().is_some_and(|t| t <= now) {
            let (_, p) = ba.in_flight.pop_front().expect("checked");
            a.handle_packet(now, &p);
            ba.pool.push(p);
        }
        if a.poll_timeout().is_some_and(|t| t.0 <= now) {
            a.handle_timeout(now);
        }
        if b.poll_timeout().is_some_and(|t| t.0 <= now) {
            b.handle_timeout(now);
        }
    }
    let measured = received - received_at_warmup.unwrap_or(0);
    let stats = a.stats();
    let packets = stats.packets_sent + b.stats().packets_sent - packets_at_warmup;
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs_at_warmup;
    Outcome {
        goodput_mbps: measured as f64 * 8.0 / measure(loss_per_million).as_secs_f64() / 1e6,
        lost: stats.packets_lost,
        queue_drops: ab.queue_drops,
        retransmitted: stats.stream_bytes_retransmitted,
        rtt: stats.rtt,
        cpu: cpu_start.elapsed(),
        ptos: stats.ptos,
        reductions: stats.congestion_events,
        allocs_per_packet: allocs as f64 / packets.max(1) as f64,
    }
}

fn memory() {
    let now = origin();
    let mut mux = Mux::new(StreamConfig::default(), Role::Initiator, now);
    let empty = size_of::<Mux>() + mux.heap_size();
    let mut n = 0;
    while mux.open().is_ok() {
        n += 1;
    }
    let per_stream = (size_of::<Mux>() + mux.heap_size() - empty) / n;
    println!();
    println!(
        "memory: Mux with no streams: {empty} B (size_of::<Mux>() = {} B + heap {} B)",
        size_of::<Mux>(),
        empty - size_of::<Mux>()
    );
    println!(
        "memory: per open idle stream: {per_stream} B (size_of + BTreeMap share + buffers, {n} streams)"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it as a quick smoke test.
    let quick = !std::env::args().any(|a| a == "--bench");
    println!(
        "bulk goodput: 100 Mbit/s bottleneck, 50 ms RTT, drop-tail queue 1 BDP (625 kB), {PAYLOAD}-byte payloads + {WIRE_OVERHEAD} B wire overhead"
    );
    println!(
        "goodput = stream bytes read by the receiver in the {} s after a {} s warm-up (200 s for lossy runs)",
        measure(0).as_secs(),
        WARMUP.as_secs()
    );
    println!(
        "% of link counts wire bytes: the ceiling for stream bytes is {:.1}% ({} data bytes per {} wire bytes)",
        (PAYLOAD - 12) as f64 / (PAYLOAD as u64 + WIRE_OVERHEAD) as f64 * 100.0,
        PAYLOAD - 12,
        PAYLOAD as u64 + WIRE_OVERHEAD
    );
    println!(
        "allocs/pkt: heap allocations in the whole process per packet sent, after the warm-up"
    );
    println!();
    println!(
        "| loss  | goodput Mbit/s | % of link | Mathis NewReno Mbit/s | vs Mathis | lost pkts | queue drops | retx MB | srtt ms | loss events | PTOs | allocs/pkt | CPU s |"
    );
    println!(
        "| ----- | -------------- | --------- | --------------------- | --------- | --------- | ----------- | ------- | ------- | ----------- | ---- | ---------- | ----- |"
    );
    let mss = (PAYLOAD - 12) as f64; // stream bytes per packet after pn and frame headers
    let rates: &[u64] = if quick {
        &[10_000]
    } else {
        &[0, 1_000, 10_000, 50_000]
    };
    for &ppm in rates {
        let o = run(ppm, 0x5eed_0000 + ppm);
        let p = ppm as f64 / 1e6;
        let mathis = if ppm == 0 {
            f64::INFINITY
        } else {
            mss * 8.0 * 1.22 / (0.050 * p.sqrt()) / 1e6
        };
        let vs = if ppm == 0 {
            "-".to_string()
        } else {
            format!("{:.2}x", o.goodput_mbps / mathis)
        };
        let mathis_s = if ppm == 0 {
            "-".to_string()
        } else {
            format!("{mathis:.2}")
        };
        println!(
            "| {:>4.1}% | {:>14.2} | {:>8.1}% | {:>21} | {:>9} | {:>9} | {:>11} | {:>7.2} | {:>7.1} | {:>11} | {:>4} | {:>10.4} | {:>5.2} |",
            p * 100.0,
            o.goodput_mbps,
            o.goodput_mbps / (RATE_BPS as f64 / 1e6) * 100.0,
            mathis_s,
            vs,
            o.lost,
            o.queue_drops,
            o.retransmitted as f64 / 1e6,
            o.rtt.as_secs_f64() * 1e3,
            o.reductions,
            o.ptos,
            o.allocs_per_packet,
            o.cpu.as_secs_f64(),
        );
    }
    memory();
}
