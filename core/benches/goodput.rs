//! Goodput of bulk streams over a simulated bottleneck, through the public API of
//! `burrow_core::bench` (the stream multiplexer) only, per congestion controller, compared
//! with the Mathis et al. model of NewReno TCP; then two flows sharing the bottleneck.
//!
//! Run with `cargo bench -p burrow-core --bench goodput`.
//!
//! The link: 100 Mbit/s in each direction (serialization delay per packet), 25 ms one-way
//! propagation (50 ms base RTT; a second table uses 20 ms, 40 ms RTT), a drop-tail queue of
//! one bandwidth-delay product in front of each direction, and independent random loss on the
//! data direction. Each packet is charged the session's 32 bytes (header + AEAD tag) and 28
//! bytes of IPv4 + UDP on the wire. Time is virtual; a run depends only on its parameters.
#![allow(clippy::print_stdout, missing_docs)]
// Only for the counting allocator below, which measures heap allocations per packet.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use burrow_core::bench::{CongestionControl, Mux, Role, StreamConfig, StreamEvent};
use burrow_core::{ReadOutcome, StreamId};

const RATE_BPS: u64 = 100_000_000;
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
/// Packets carry the index of the flow they belong to.
struct Link {
    one_way: Duration,
    queue_limit: u64,
    loss_per_million: u64,
    /// When the transmitter finishes the last queued packet.
    busy_until: Instant,
    in_flight: VecDeque<(Instant, usize, Vec<u8>)>,
    pool: Vec<Vec<u8>>,
    rng: u64,
    random_drops: u64,
    queue_drops: u64,
}

impl Link {
    fn new(now: Instant, one_way: Duration, loss_per_million: u64, seed: u64) -> Self {
        let bdp = RATE_BPS / 8 * one_way.as_nanos() as u64 * 2 / 1_000_000_000;
        Self {
            one_way,
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

    fn send(&mut self, now: Instant, flow: usize, payload: &[u8]) {
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
        self.in_flight
            .push_back((self.busy_until + self.one_way, flow, buf));
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|p| p.0)
    }
}

/// One bulk transfer: a sender that always has data and a receiver that reads at once.
struct Flow {
    a: Mux,
    b: Mux,
    id: StreamId,
    writable: bool,
    received: u64,
    received_at_warmup: u64,
}

impl Flow {
    fn new(cc: CongestionControl, now: Instant) -> Self {
        let mut a = Mux::new(config(cc), Role::Initiator, now);
        let b = Mux::new(config(cc), Role::Responder, now);
        let id = a.open().expect("first stream");
        Self {
            a,
            b,
            id,
            writable: true,
            received: 0,
            received_at_warmup: 0,
        }
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

fn config(cc: CongestionControl) -> StreamConfig {
    let mut c = StreamConfig::default();
    // Windows of at least twice BDP + queue so that flow control never limits the bench.
    c.stream_receive_window = 4 << 20;
    c.stream_send_buffer = 4 << 20;
    c.connection_receive_window = 16 << 20;
    c.congestion = cc;
    c
}

#[allow(clippy::disallowed_methods)] // the bench's one clock read: an origin for virtual time
fn origin() -> Instant {
    Instant::now()
}

/// A path: one-way delay and random loss on the data direction.
#[derive(Clone, Copy)]
struct PathSpec {
    one_way: Duration,
    loss_per_million: u64,
    seed: u64,
}

/// What a simulation leaves: the flows, the data direction's link, and the process's
/// allocation count and the flows' packet count at the end of the warm-up.
struct Simulated {
    flows: Vec<Flow>,
    ab: Link,
    allocs_at_warmup: u64,
    packets_at_warmup: u64,
}

/// Runs `flows` (controller, start offset) over one shared bottleneck for `warmup + measured`
/// of virtual time.
fn simulate(
    path: PathSpec,
    flows: &[(CongestionControl, Duration)],
    warmup: Duration,
    measured: Duration,
) -> Simulated {
    let t0 = origin();
    let mut now = t0;
    let mut ab = Link::new(now, path.one_way, path.loss_per_million, path.seed);
    let mut ba = Link::new(now, path.one_way, 0, path.seed + 1);
    let mut started: Vec<Option<Flow>> = flows.iter().map(|_| None).collect();
    let chunk = vec![0x5a; 256 * 1024];
    let mut readbuf = vec![0u8; 256 * 1024];
    let mut buf = vec![0u8; PAYLOAD];
    let mut at_warmup = None;
    let end = t0 + warmup + measured;
    loop {
        for (i, slot) in started.iter_mut().enumerate() {
            if slot.is_none() && now >= t0 + flows[i].1 {
                *slot = Some(Flow::new(flows[i].0, now));
            }
            let Some(f) = slot else { continue };
            if f.writable {
                while let Ok(n) = f.a.write(f.id, &chunk) {
                    if n == 0 {
                        break;
                    }
                }
                f.writable = false;
            }
            while let Some(n) = f.a.poll_packet(now, &mut buf) {
                ab.send(now, i, &buf[..n]);
            }
            while let Some(n) = f.b.poll_packet(now, &mut buf) {
                ba.send(now, i, &buf[..n]);
            }
            while let Some(ev) = f.a.poll_event() {
                if let StreamEvent::Writable(_) = ev {
                    f.writable = true;
                }
            }
            while let Some(ev) = f.b.poll_event() {
                if let StreamEvent::Readable(sid) | StreamEvent::Opened(sid) = ev {
                    while let Ok(ReadOutcome::Data(n)) = f.b.read(sid, &mut readbuf) {
                        f.received += n as u64;
                    }
                }
            }
        }
        if at_warmup.is_none() && now >= t0 + warmup {
            let mut packets = 0;
            for f in started.iter_mut().flatten() {
                f.received_at_warmup = f.received;
                packets += f.a.stats().packets_sent + f.b.stats().packets_sent;
            }
            at_warmup = Some((ALLOCATIONS.load(Ordering::Relaxed), packets));
        }
        let starts = flows
            .iter()
            .zip(&started)
            .filter(|(_, s)| s.is_none())
            .map(|(f, _)| t0 + f.1);
        let timers = started
            .iter()
            .flatten()
            .flat_map(|f| [f.a.poll_timeout(), f.b.poll_timeout()])
            .flatten()
            .map(|t| t.0);
        let next = starts
            .chain(timers)
            .chain(ab.next_arrival())
            .chain(ba.next_arrival())
            .min();
        let Some(next) = next else { break };
        if next > end {
            break;
        }
        now = now.max(next);
        while ab.next_arrival().is_some_and(|t| t <= now) {
            let (_, i, p) = ab.in_flight.pop_front().expect("checked");
            if let Some(f) = &mut started[i] {
                f.b.handle_packet(now, &p);
            }
            ab.pool.push(p);
        }
        while ba.next_arrival().is_some_and(|t| t <= now) {
            let (_, i, p) = ba.in_flight.pop_front().expect("checked");
            if let Some(f) = &mut started[i] {
                f.a.handle_packet(now, &p);
            }
            ba.pool.push(p);
        }
        for f in started.iter_mut().flatten() {
            if f.a.poll_timeout().is_some_and(|t| t.0 <= now) {
                f.a.handle_timeout(now);
            }
            if f.b.poll_timeout().is_some_and(|t| t.0 <= now) {
                f.b.handle_timeout(now);
            }
        }
    }
    let (allocs_at_warmup, packets_at_warmup) = at_warmup.unwrap_or((0, 0));
    Simulated {
        flows: started.into_iter().flatten().collect(),
        ab,
        allocs_at_warmup,
        packets_at_warmup,
    }
}

fn run(cc: CongestionControl, path: PathSpec) -> Outcome {
    let cpu_start = origin();
    let measured = measure(path.loss_per_million);
    let sim = simulate(path, &[(cc, Duration::ZERO)], WARMUP, measured);
    let f = &sim.flows[0];
    let stats = f.a.stats();
    let packets = stats.packets_sent + f.b.stats().packets_sent - sim.packets_at_warmup;
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - sim.allocs_at_warmup;
    Outcome {
        goodput_mbps: (f.received - f.received_at_warmup) as f64 * 8.0
            / measured.as_secs_f64()
            / 1e6,
        lost: stats.packets_lost,
        queue_drops: sim.ab.queue_drops,
        retransmitted: stats.stream_bytes_retransmitted,
        rtt: stats.rtt,
        cpu: cpu_start.elapsed(),
        ptos: stats.ptos,
        reductions: stats.congestion_events,
        allocs_per_packet: allocs as f64 / packets.max(1) as f64,
    }
}

fn name(cc: CongestionControl) -> &'static str {
    match cc {
        CongestionControl::NewReno => "NewReno",
        _ => "BBR",
    }
}

fn goodput_table(one_way: Duration, rates: &[u64]) {
    let rtt = one_way * 2;
    let bdp = RATE_BPS / 8 * rtt.as_nanos() as u64 / 1_000_000_000;
    println!();
    println!(
        "{} ms RTT, drop-tail queue 1 BDP ({} kB):",
        rtt.as_millis(),
        bdp / 1000
    );
    println!();
    println!(
        "| cc      | loss  | goodput Mbit/s | % of link | Mathis NewReno Mbit/s | vs Mathis | lost pkts | queue drops | retx MB | srtt ms | loss events | PTOs | allocs/pkt | CPU s |"
    );
    println!(
        "| ------- | ----- | -------------- | --------- | --------------------- | --------- | --------- | ----------- | ------- | ------- | ----------- | ---- | ---------- | ----- |"
    );
    let mss = (PAYLOAD - 12) as f64; // stream bytes per packet after pn and frame headers
    for cc in [CongestionControl::NewReno, CongestionControl::Bbr] {
        for &ppm in rates {
            let path = PathSpec {
                one_way,
                loss_per_million: ppm,
                seed: 0x5eed_0000 + ppm,
            };
            let o = run(cc, path);
            let p = ppm as f64 / 1e6;
            let mathis = if ppm == 0 {
                f64::INFINITY
            } else {
                mss * 8.0 * 1.22 / (rtt.as_secs_f64() * p.sqrt()) / 1e6
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
                "| {:<7} | {:>4.1}% | {:>14.2} | {:>8.1}% | {:>21} | {:>9} | {:>9} | {:>11} | {:>7.2} | {:>7.1} | {:>11} | {:>4} | {:>10.4} | {:>5.2} |",
                name(cc),
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
    }
}

/// Two flows over one bottleneck; the second starts `STAGGER` after the first.
fn fairness(pairs: &[(CongestionControl, CongestionControl)], loss_per_million: u64) {
    const STAGGER: Duration = Duration::from_secs(2);
    const WARMUP: Duration = Duration::from_secs(10);
    const MEASURE: Duration = Duration::from_secs(120);
    println!();
    println!(
        "fairness: two flows share the bottleneck (50 ms RTT, queue 1 BDP, {:.1}% random loss); the second starts {} s later; shares of the {} s after a {} s warm-up",
        loss_per_million as f64 / 1e4,
        STAGGER.as_secs(),
        MEASURE.as_secs(),
        WARMUP.as_secs()
    );
    println!();
    println!(
        "| flow 1  | flow 2  | flow 1 Mbit/s | flow 2 Mbit/s | flow 1 share | flow 2 share | total % of link | Jain index | queue drops |"
    );
    println!(
        "| ------- | ------- | ------------- | ------------- | ------------ | ------------ | --------------- | ---------- | ----------- |"
    );
    for &(first, second) in pairs {
        let path = PathSpec {
            one_way: Duration::from_millis(25),
            loss_per_million,
            seed: 0xfa1e_0000 + loss_per_million,
        };
        let sim = simulate(
            path,
            &[(first, Duration::ZERO), (second, STAGGER)],
            WARMUP,
            MEASURE,
        );
        let mbps: Vec<f64> = sim
            .flows
            .iter()
            .map(|f| (f.received - f.received_at_warmup) as f64 * 8.0 / MEASURE.as_secs_f64() / 1e6)
            .collect();
        let total: f64 = mbps.iter().sum();
        let jain = total * total / (2.0 * mbps.iter().map(|x| x * x).sum::<f64>());
        println!(
            "| {:<7} | {:<7} | {:>13.2} | {:>13.2} | {:>11.1}% | {:>11.1}% | {:>14.1}% | {:>10.3} | {:>11} |",
            name(first),
            name(second),
            mbps[0],
            mbps[1],
            mbps[0] / total * 100.0,
            mbps[1] / total * 100.0,
            total / (RATE_BPS as f64 / 1e6) * 100.0,
            jain,
            sim.ab.queue_drops,
        );
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
        "bulk goodput: 100 Mbit/s bottleneck, {PAYLOAD}-byte payloads + {WIRE_OVERHEAD} B wire overhead, random loss on the data direction"
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
    if quick {
        goodput_table(Duration::from_millis(25), &[10_000]);
        return;
    }
    let rates = [0, 10_000, 20_000, 50_000];
    goodput_table(Duration::from_millis(25), &rates);
    goodput_table(Duration::from_millis(20), &rates);
    use CongestionControl::{Bbr, NewReno};
    fairness(
        &[
            (Bbr, Bbr),
            (Bbr, NewReno),
            (NewReno, Bbr),
            (NewReno, NewReno),
        ],
        0,
    );
    memory();
}
