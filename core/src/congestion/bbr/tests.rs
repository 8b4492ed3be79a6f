//! BBR's state transitions, driven with hand-made ACK events: one event per round trip.

use std::time::{Duration, Instant};

use super::*;
use crate::congestion::RateSample;

const MS: Duration = Duration::from_millis(1);
const RTT: Duration = Duration::from_millis(50);
const MSS: u64 = 1000;
/// The window's room for send bursts on these paths: at about 1 MB/s a millisecond of the
/// pacing rate is under two packets, so a send quantum is two packets; three of them.
const BUDGET: u64 = 3 * 2 * MSS;
/// A little more than the RTT: phases of one min RTT end after it.
const STEP: Duration = Duration::from_millis(51);

/// A path of constant RTT; each [`Path::round`] acknowledges one round trip of data.
struct Path {
    bbr: Bbr,
    now: Instant,
    delivered: u64,
    rtt: RttEstimator,
    /// The RTT each ACK measures (the minimum stays `RTT` once seen).
    sample: Duration,
}

impl Path {
    fn new() -> Self {
        let now = crate::tests::origin();
        Self {
            bbr: Bbr::new(MSS, now),
            now,
            delivered: 0,
            rtt: RttEstimator::new(333 * MS),
            sample: RTT,
        }
    }

    /// One ACK event `after` the last, starting a new round, for a round trip delivered at
    /// `rate` bytes per second, with `in_flight` bytes left in flight and `lost` bytes lost.
    /// The round's ACKs are folded into this one event, so in flight before it is taken to
    /// be in flight after it plus the loss, as for one ACK of a long flight.
    fn ack(&mut self, after: Duration, rate: u64, in_flight: u64, lost: u64, app_limited: bool) {
        self.now += after;
        let bytes = rate * RTT.as_millis() as u64 / 1000;
        let prior_delivered = self.delivered;
        self.delivered += bytes;
        self.rtt.update(Duration::ZERO, self.sample);
        let event = AckEvent {
            acked: bytes,
            lost,
            prior_in_flight: in_flight + lost,
            in_flight,
            delivered: self.delivered,
            sample: Some(RateSample {
                prior_delivered,
                delivered: bytes,
                interval: RTT,
                app_limited,
            }),
            rtt: Some(self.sample),
            ack_delay: Duration::ZERO,
        };
        self.bbr.on_ack_event(self.now, &event, &self.rtt);
    }

    fn round(&mut self, rate: u64, in_flight: u64) {
        self.ack(STEP, rate, in_flight, 0, false);
    }

    /// Startup at a steady 1 MB/s (BDP 50 kB) until the pipe is full; returns the rounds.
    fn fill_pipe(&mut self) -> u32 {
        let mut rounds = 0;
        while self.bbr.mode() == Mode::Startup {
            self.round(1_000_000, 100_000);
            rounds += 1;
            assert!(rounds < 10, "startup never ended");
        }
        rounds
    }
}

#[test]
fn startup_grows_the_window_by_what_is_acked() {
    let mut p = Path::new();
    assert!(p.bbr.in_slow_start());
    assert_eq!(p.bbr.window(), 10 * MSS);
    let mut rate = 200_000;
    for _ in 0..4 {
        let before = p.bbr.window();
        p.round(rate, 0);
        assert_eq!(
            p.bbr.window(),
            before + rate / 20,
            "window grows by the acked bytes"
        );
        assert_eq!(p.bbr.pacing_gain(), STARTUP_GAIN);
        rate *= 2;
    }
    // Pacing at 2.885 times the bandwidth estimate, less the 1% margin.
    let expected = rate / 2 * STARTUP_GAIN / UNIT * 99 / 100;
    assert!(p.bbr.pacing_rate().unwrap().abs_diff(expected) <= 1);
    assert_eq!(p.bbr.mode(), Mode::Startup, "bandwidth still doubling");
}

#[test]
fn startup_ends_after_three_rounds_without_growth_then_drain_empties_the_queue() {
    let mut p = Path::new();
    // The first round sets the bandwidth; three more without 25% growth fill the pipe.
    assert_eq!(p.fill_pipe(), 4);
    assert_eq!(p.bbr.mode(), Mode::Drain);
    assert_eq!(p.bbr.pacing_gain(), DRAIN_GAIN);
    // In flight above the BDP (50 kB): keep draining.
    p.round(1_000_000, 60_000);
    assert_eq!(p.bbr.mode(), Mode::Drain);
    p.round(1_000_000, 50_000);
    assert_eq!(p.bbr.mode(), Mode::ProbeBw);
    assert!(!p.bbr.in_slow_start());
}

#[test]
fn app_limited_rounds_neither_end_startup_nor_lower_the_estimate() {
    let mut p = Path::new();
    p.round(1_000_000, 0);
    for _ in 0..5 {
        p.ack(RTT, 100_000, 0, 0, true);
    }
    assert_eq!(p.bbr.mode(), Mode::Startup);
    assert_eq!(p.bbr.bandwidth(), 1_000_000);
}

#[test]
fn probe_bw_cycles_its_pacing_gain() {
    let mut p = Path::new();
    p.fill_pipe();
    p.round(1_000_000, 50_000);
    assert_eq!(p.bbr.mode(), Mode::ProbeBw);
    // Walk to the probing phase: phases at gain 1 end after one min RTT.
    let mut steps = 0;
    while p.bbr.pacing_gain() != 1250 {
        p.round(1_000_000, 50_000);
        steps += 1;
        assert!(steps <= 8);
    }
    // Probing lasts until 1.25 BDP is in flight, even past one min RTT...
    p.round(1_000_000, 50_000);
    assert_eq!(p.bbr.pacing_gain(), 1250);
    p.ack(STEP, 1_000_000, 62_500, 0, false);
    assert_eq!(p.bbr.pacing_gain(), 750);
    // ...or until loss says the path holds no more.
    // Draining ends as soon as in flight is at the BDP, before a min RTT passed.
    p.ack(MS, 0, 50_000, 0, false);
    assert_eq!(p.bbr.pacing_gain(), UNIT);
    for _ in 0..5 {
        p.round(1_000_000, 50_000);
        assert_eq!(p.bbr.pacing_gain(), UNIT);
    }
    p.round(1_000_000, 50_000);
    assert_eq!(p.bbr.pacing_gain(), 1250, "the cycle starts over");
    p.ack(STEP, 1_000_000, 50_000, MSS, false);
    assert_eq!(p.bbr.pacing_gain(), 750, "a loss ends the probe");
}

#[test]
fn random_loss_changes_neither_window_nor_rate() {
    let mut p = Path::new();
    p.fill_pipe();
    p.round(1_000_000, 50_000);
    for _ in 0..20 {
        p.round(1_000_000, 50_000);
    }
    let (window, bw) = (p.bbr.window(), p.bbr.bandwidth());
    // Target window: 2 * BDP + three send quanta, plus the ACK-aggregation allowance: this model
    // acknowledges a whole round trip at once, so one BDP arrives as one burst.
    assert_eq!(p.bbr.aggregation_allowance(), 50_000);
    assert_eq!(window, 2 * 50_000 + BUDGET + 50_000);
    let t = p.now;
    p.bbr.on_congestion_event(t, t - 10 * MS, 40_000, false);
    // A round at 5% loss: the delivery rate is what got through.
    p.ack(RTT, 950_000, 50_000, 2_500, false);
    assert_eq!(p.bbr.window(), window);
    assert_eq!(p.bbr.bandwidth(), bw, "the max filter keeps the estimate");
}

#[test]
fn persistent_congestion_collapses_the_window_until_the_path_delivers_again() {
    let mut p = Path::new();
    p.fill_pipe();
    p.round(1_000_000, 50_000);
    let window = p.bbr.window();
    let t = p.now;
    p.bbr.on_congestion_event(t, t - 10 * MS, 0, true);
    assert_eq!(p.bbr.window(), 4 * MSS);
    // An ack for a packet sent before the collapse restores nothing.
    p.bbr.on_ack(t + MS, t - MS, MSS, false, &p.rtt);
    assert_eq!(p.bbr.window(), 4 * MSS);
    p.bbr.on_ack(t + 60 * MS, t + 10 * MS, MSS, false, &p.rtt);
    assert_eq!(p.bbr.window(), window);
}

#[test]
fn probe_rtt_runs_every_ten_seconds_for_200_ms_and_a_round() {
    let mut p = Path::new();
    p.fill_pipe();
    // Steady state with RTT samples that never match the first minimum again (a sample
    // equal to it would renew it).
    p.sample = RTT + 5 * MS;
    let mut elapsed = Duration::ZERO;
    let mut before = p.bbr.window();
    while p.bbr.mode() != Mode::ProbeRtt {
        before = p.bbr.window();
        p.round(1_000_000, 50_000);
        elapsed += RTT;
        assert!(elapsed <= MIN_RTT_WINDOW + 2 * RTT, "ProbeRtt never came");
    }
    assert!(elapsed >= MIN_RTT_WINDOW - 5 * RTT);
    assert_eq!(p.bbr.window(), 4 * MSS);
    assert_eq!(p.bbr.pacing_gain(), UNIT);
    // In flight drains to four packets; then 200 ms and one round trip must pass.
    p.ack(10 * MS, 1_000_000, 4 * MSS, 0, false);
    for _ in 0..3 {
        p.ack(STEP, 1_000_000, 4 * MSS, 0, false);
        assert_eq!(p.bbr.mode(), Mode::ProbeRtt);
    }
    p.ack(STEP, 1_000_000, 4 * MSS, 0, false);
    p.ack(STEP, 1_000_000, 4 * MSS, 0, false);
    assert_eq!(p.bbr.mode(), Mode::ProbeBw);
    // The window is back, and grows toward its target: sized by the minimum RTT measured
    // since expiry (55 ms), plus the aggregation allowance (this model acknowledges each
    // round at once: large bursts, within the 100 ms cap).
    let allowance = p.bbr.aggregation_allowance();
    assert!((50_000..=100_000).contains(&allowance), "{allowance}");
    let window = p.bbr.window();
    assert!(window >= before, "{window} < {before}");
    assert!(window <= 2 * 55_000 + BUDGET + allowance, "{window}");
}

#[test]
fn probe_rtt_before_the_pipe_is_full_returns_to_startup() {
    let mut p = Path::new();
    p.round(100_000, 0);
    p.sample = RTT + 5 * MS;
    // App-limited rounds for ten seconds: startup never sees the bandwidth stall.
    for _ in 0..202 {
        p.ack(RTT, 100_000, 0, 0, true);
    }
    assert_eq!(p.bbr.mode(), Mode::ProbeRtt);
    p.ack(RTT, 100_000, 0, 0, true);
    for _ in 0..5 {
        p.ack(RTT, 100_000, 0, 0, true);
    }
    assert_eq!(p.bbr.mode(), Mode::Startup);
}

#[test]
fn loss_with_a_queue_halves_the_inflight_bound_once_per_round_then_it_grows_back() {
    let mut p = Path::new();
    p.fill_pipe();
    p.round(1_000_000, 50_000);
    // RTT 80 ms against a 50 ms minimum: 30 ms queued, more than half the BDP. A round
    // trip's samples, not one: the queue stands.
    p.sample = 80 * MS;
    p.round(1_000_000, 80_000);
    let t = p.now;
    p.bbr.on_congestion_event(t, t - 10 * MS, 80_000, false);
    assert_eq!(
        p.bbr.inflight_hi(),
        None,
        "the queue has stood no round trip yet"
    );
    p.round(1_000_000, 80_000);
    let t = p.now;
    p.bbr.on_congestion_event(t, t - 10 * MS, 80_000, false);
    assert_eq!(p.bbr.inflight_hi(), Some(40_500));
    assert_eq!(p.bbr.window(), 40_500);
    // More losses of packets sent before the cut: the same congestion, no second cut.
    p.bbr.on_congestion_event(t + MS, t - MS, 40_000, false);
    assert_eq!(p.bbr.inflight_hi(), Some(40_500));
    // One packet more per round trip, until the bound no longer binds.
    p.round(1_000_000, 40_000);
    assert_eq!(p.bbr.inflight_hi(), Some(41_500));
    assert_eq!(p.bbr.window(), 41_500);
    for _ in 0..100 {
        p.round(1_000_000, 40_000);
    }
    assert_eq!(p.bbr.inflight_hi(), None);
}

/// An ACK of `bytes` at `now` in a steady state of 1 MB/s and a 50 ms RTT (BDP 50 kB).
fn steady_ack(p: &mut Path, now: Instant, bytes: u64) {
    p.now = now;
    // The packet was sent a round trip (one BDP of deliveries) ago.
    let prior_delivered = p.delivered.saturating_sub(50_000);
    p.delivered += bytes;
    p.rtt.update(Duration::ZERO, RTT);
    let event = AckEvent {
        acked: bytes,
        lost: 0,
        prior_in_flight: 50_000,
        in_flight: 50_000 - bytes,
        delivered: p.delivered,
        sample: Some(RateSample {
            prior_delivered,
            delivered: 50_000,
            interval: RTT,
            app_limited: false,
        }),
        rtt: Some(RTT),
        ack_delay: Duration::ZERO,
    };
    p.bbr.on_ack_event(now, &event, &p.rtt);
}

#[test]
fn smooth_acks_leave_the_window_at_two_bdp_and_bursts_widen_it_by_the_burst() {
    let mut p = Path::new();
    p.fill_pipe();
    // Twenty round trips of one ACK per packet, one per 1.1 ms: a little under the rate the
    // estimate predicts (as the max filter's estimate is), so the ACK epoch that began with
    // the model's one-ACK rounds runs out and the allowance is about one ACK.
    let start = p.now;
    for i in 1..=1000u32 {
        steady_ack(&mut p, start + i * 1100 * MS / 1000, MSS);
    }
    let allowance = p.bbr.aggregation_allowance();
    assert!(allowance <= 2 * MSS, "{allowance}");
    assert_eq!(
        p.bbr.window(),
        2 * 50_000 + BUDGET + p.bbr.aggregation_allowance()
    );
    // Then the ACKs come in bursts: nothing for 20 ms, then 20 packets' worth at once, as from
    // a receiver (or a loop) that handles datagrams in batches.
    let mut now = p.now;
    for _ in 0..25 {
        now += 20 * MS;
        for _ in 0..20 {
            steady_ack(&mut p, now, MSS);
        }
    }
    let allowance = p.bbr.aggregation_allowance();
    assert!(
        (19 * MSS..=21 * MSS).contains(&allowance),
        "a burst of 20 packets: {allowance}"
    );
    assert_eq!(p.bbr.window(), 2 * 50_000 + BUDGET + allowance);
}

#[test]
fn the_aggregation_allowance_is_at_most_100_ms_at_the_estimated_bandwidth() {
    let mut p = Path::new();
    p.fill_pipe();
    // Bursts of 200 kB, one per 400 ms: at 1 MB/s, 100 ms is 100 kB.
    let mut now = p.now;
    for _ in 0..10 {
        now += 400 * MS;
        for _ in 0..200 {
            steady_ack(&mut p, now, MSS);
        }
    }
    assert_eq!(p.bbr.aggregation_allowance(), 100_000);
}

#[test]
fn the_window_budgets_three_send_quanta_at_the_pacing_rate() {
    let mut p = Path::new();
    p.fill_pipe();
    assert_eq!(p.bbr.quantization_budget(), BUDGET);
    // A fast path with a tiny propagation RTT, as loopback: 400 MB/s and 30 us, where twice
    // the bandwidth-delay product is 24 kB and one burst is 65 kB.
    let mut p = Path::new();
    p.sample = Duration::from_micros(30);
    while p.bbr.mode() == Mode::Startup {
        p.round(400_000_000, 100_000);
    }
    p.round(400_000_000, 10_000);
    assert_eq!(p.bbr.quantization_budget(), 3 * 65_000);
    assert!(
        p.bbr.window() >= 2 * 12_000 + 3 * 65_000,
        "{}",
        p.bbr.window()
    );
}

#[test]
fn a_queue_under_a_millisecond_is_the_senders_own_bursts_not_congestion() {
    // Loopback-like: 300 us of propagation, 400 MB/s.
    let mut p = Path::new();
    p.sample = Duration::from_micros(300);
    while p.bbr.mode() == Mode::Startup {
        p.round(400_000_000, 100_000);
    }
    // Twice the minimum for whole round trips, but 0.3 ms over it: what one burst of a
    // millisecond of the rate queues behind itself.
    p.sample = Duration::from_micros(600);
    p.round(400_000_000, 200_000);
    p.round(400_000_000, 200_000);
    let t = p.now;
    p.bbr.on_congestion_event(t, t - MS, 200_000, false);
    assert_eq!(p.bbr.inflight_hi(), None);
    // A queue of 1.3 ms through whole round trips is one.
    p.sample = Duration::from_micros(1600);
    p.round(400_000_000, 200_000);
    p.round(400_000_000, 200_000);
    let t = p.now;
    p.bbr.on_congestion_event(t, t - MS, 200_000, false);
    assert!(p.bbr.inflight_hi().is_some());
}
