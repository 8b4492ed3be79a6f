//! BBR congestion control, version 1 (draft-cardwell-iccrg-bbr-congestion-control-00), with
//! the stream layer's delivery-rate samples ([`super::DeliveryRate`]).
//!
//! BBR builds a model of the path: the bottleneck bandwidth (the largest delivery rate seen in
//! the last ten round trips) and the round-trip propagation time (the smallest RTT seen in the
//! last ten seconds). It paces at the bandwidth times a gain and keeps at most twice the
//! bandwidth-delay product in flight. A loss alone says nothing to this model, so random loss
//! costs only the lost packets' retransmissions.
//!
//! Loss does count where it comes with a queue: a loss while the smallest RTT of the last
//! round trip is at least 1.5 times the minimum (half a bandwidth-delay product queued the
//! whole round), and at least a millisecond over it (a shorter queue is the sender's own
//! bursts of a millisecond of the rate, on a path whose propagation RTT is tiny), is
//! congestion, as when a
//! loss-based flow shares the bottleneck and fills its buffer. Then, once per round trip of
//! such losses, an upper bound on bytes in flight is set to half of what was in flight (like
//! BBR version 2's `inflight_hi`, with NewReno's factor); it grows back by one packet per
//! round trip, so BBR yields to a NewReno flow as NewReno yields to it, instead of taking
//! nine tenths of the link. The RTT compared is net of the peer's ACK delay, and ProbeRtt's
//! own losses are not judged (its few packets in flight are acknowledged late). A
//! buffer under half a bandwidth-delay product never raises this signal: there BBR behaves as
//! version 1. Persistent congestion collapses the window until the path delivers again.
//!
//! ACKs that come in bursts (a receiver that acknowledges once per batch of received
//! datagrams, or an event loop that reads many ACKs per wake-up) would starve a window of two
//! bandwidth-delay products where the path's propagation RTT is tiny, as on loopback or a LAN:
//! the sender waits for the burst with nothing in flight. As Linux's BBR does, the window
//! gets an allowance for that aggregation: the most bytes acknowledged beyond what the
//! bandwidth estimate predicts since an ACK epoch began, the largest in the last few round
//! trips, limited to 100 ms at the estimated bandwidth.
//!
//! The window also budgets three send quanta (a millisecond of the pacing rate each, at most
//! one segmentation-offload send), as Linux's BBR does: the sender waits for room for a whole
//! quantum before it starts a burst of new data, and on a fast path with a tiny propagation
//! RTT twice the bandwidth-delay product is less than one such burst (400 MB/s over a 30 us
//! loopback RTT: 24 kB, against 65 kB).
//!
//! The modes: `Startup` doubles the rate each round trip until the bandwidth stops growing
//! (three rounds under 25% growth), `Drain` empties the queue that built, `ProbeBw` cycles the
//! pacing gain over eight phases (1.25 to probe for more bandwidth, 0.75 to drain what the
//! probe queued, six phases at 1), and every ten seconds without a new minimum RTT `ProbeRtt`
//! holds four packets in flight for 200 ms and one round trip so the queue empties and the
//! propagation time can be measured again.

use std::time::{Duration, Instant};

use super::windowed::WindowedMax;
use super::{AckEvent, Controller, RttEstimator};

#[cfg(test)]
mod tests;

/// Gains are in thousandths.
const UNIT: u64 = 1000;
/// Startup's pacing and window gain, 2 / ln 2: the smallest that doubles delivery per round.
const STARTUP_GAIN: u64 = 2885;
/// Drain's pacing gain, the inverse of startup's.
const DRAIN_GAIN: u64 = UNIT * UNIT / STARTUP_GAIN;
/// The window gain outside startup, drain and ProbeRtt: room for delayed and stretched ACKs.
const CWND_GAIN: u64 = 2 * UNIT;
/// ProbeBw's pacing gains, one phase of at least one min RTT each.
const CYCLE: [u64; 8] = [1250, 750, UNIT, UNIT, UNIT, UNIT, UNIT, UNIT];
/// Rounds the bandwidth filter remembers.
const BW_ROUNDS: usize = 10;
/// How long a minimum RTT stays valid before ProbeRtt measures it again.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// How long ProbeRtt holds the window at its minimum (at least one round trip too).
const PROBE_RTT_TIME: Duration = Duration::from_millis(200);
/// Startup ends after this many rounds in which the bandwidth grew by less than 25%.
const FULL_BW_ROUNDS: u32 = 3;
const FULL_BW_GROWTH: u64 = 1250;
/// The smallest window, in packets: enough to keep ACKs flowing.
const MIN_PIPE_PACKETS: u64 = 4;
/// Send quanta ([`super::send_quantum`]) added to the target window: one being built, one in
/// the sender's and one in the receiver's batch, so that bursts never starve the window
/// (Linux's `bbr_quantization_budget`).
const QUANTA: u64 = 3;
/// Pace 1% under the estimate so the bottleneck queue does not creep up.
const PACING_MARGIN_PERCENT: u64 = 1;
/// Round trips the ACK-aggregation filter remembers.
const AGGREGATION_ROUNDS: usize = 5;
/// The ACK-aggregation allowance is at most this long at the estimated bandwidth.
const MAX_AGGREGATION: Duration = Duration::from_millis(100);
/// An ACK epoch restarts after this many bytes acknowledged, so that the allowance follows
/// the path instead of growing without end.
const EPOCH_RESET_BYTES: u64 = 1 << 30;
/// A loss is congestion when the last round trip's smallest RTT is at least this many thousandths
/// of the minimum.
const QUEUE_RTT_GAIN: u64 = 1500;
/// The in-flight bound after congestion, in thousandths of what was in flight: NewReno's
/// half, so that with the same growth of one packet per round trip the two share evenly.
const CONGESTION_BETA: u64 = 500;

/// The mode of the BBR state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Exponential search for the bottleneck bandwidth.
    Startup,
    /// Drains the queue that startup built.
    Drain,
    /// Steady state: pacing gain cycling around the bandwidth estimate.
    ProbeBw,
    /// A short dip to four packets in flight to re-measure the propagation RTT.
    ProbeRtt,
}

/// BBR version 1 (see the module documentation).
#[derive(Clone, Debug)]
pub(crate) struct Bbr {
    mss: u64,
    initial_cwnd: u64,
    mode: Mode,
    bw: WindowedMax<BW_ROUNDS>,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Instant,
    round: u64,
    next_round_delivered: u64,
    round_start: bool,
    full_bw: u64,
    full_bw_rounds: u32,
    filled_pipe: bool,
    pacing_gain: u64,
    cwnd_gain: u64,
    cycle_index: usize,
    cycle_stamp: Instant,
    probe_rtt_done: Option<Instant>,
    probe_rtt_round_done: bool,
    prior_cwnd: u64,
    cwnd: u64,
    pacing_rate: u64,
    has_rtt: bool,
    /// The upper bound on bytes in flight since losses with a queue (`None`: no bound).
    inflight_hi: Option<u64>,
    /// When the last congestion cut happened: losses of packets sent before it belong to it.
    last_cut: Option<Instant>,
    /// The smallest RTT sample (net of the peer's ACK delay) of the round trip under way,
    /// and of the last whole one: a queue that stands shows in every sample of a round, the
    /// sender's own bursts and a busy host's scheduling delays only in some.
    round_rtt: Option<Duration>,
    standing_rtt: Option<Duration>,
    /// After persistent congestion: the window is restored once a packet sent after this is
    /// acknowledged (the path works again).
    restore_after: Option<Instant>,
    /// Where the bandwidth-probing cycle's first phase is drawn from (sans-IO: no randomness).
    created: Instant,
    /// The largest excess of acknowledged bytes over the bandwidth estimate's prediction.
    extra_acked: WindowedMax<AGGREGATION_ROUNDS>,
    /// When the current ACK epoch began, and the bytes acknowledged since.
    epoch_start: Instant,
    epoch_acked: u64,
}

impl Bbr {
    /// A controller for packets of at most `mss` bytes, starting at `now`, with the RFC 9002
    /// initial window.
    pub(crate) fn new(mss: u64, now: Instant) -> Self {
        let initial_cwnd = (10 * mss).min((2 * mss).max(14_720));
        Self {
            mss,
            initial_cwnd,
            mode: Mode::Startup,
            bw: WindowedMax::new(),
            min_rtt: None,
            min_rtt_stamp: now,
            round: 0,
            next_round_delivered: 0,
            round_start: false,
            full_bw: 0,
            full_bw_rounds: 0,
            filled_pipe: false,
            pacing_gain: STARTUP_GAIN,
            cwnd_gain: STARTUP_GAIN,
            cycle_index: 0,
            cycle_stamp: now,
            probe_rtt_done: None,
            probe_rtt_round_done: false,
            prior_cwnd: initial_cwnd,
            cwnd: initial_cwnd,
            // Until an RTT is known: the initial window per millisecond, i.e. hardly paced.
            pacing_rate: initial_cwnd * STARTUP_GAIN,
            has_rtt: false,
            inflight_hi: None,
            last_cut: None,
            round_rtt: None,
            standing_rtt: None,
            restore_after: None,
            created: now,
            extra_acked: WindowedMax::new(),
            epoch_start: now,
            epoch_acked: 0,
        }
    }

    /// The current mode.
    #[cfg(test)]
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The bottleneck bandwidth estimate in bytes per second (0 before the first sample).
    pub(crate) fn bandwidth(&self) -> u64 {
        self.bw.get()
    }

    /// The current pacing gain in thousandths.
    #[cfg(test)]
    pub(crate) fn pacing_gain(&self) -> u64 {
        self.pacing_gain
    }

    /// The bound on bytes in flight that congestion set, if any.
    #[cfg(test)]
    pub(crate) fn inflight_hi(&self) -> Option<u64> {
        self.inflight_hi
    }

    fn min_pipe(&self) -> u64 {
        MIN_PIPE_PACKETS * self.mss
    }

    /// `gain` (in thousandths) times the estimated bandwidth-delay product; the initial
    /// window while either estimate is missing.
    fn inflight(&self, gain: u64) -> u64 {
        let (Some(rtt), bw) = (self.min_rtt, self.bandwidth()) else {
            return self.initial_cwnd;
        };
        if bw == 0 {
            return self.initial_cwnd;
        }
        let bdp = u128::from(bw) * rtt.as_nanos() / 1_000_000_000;
        u64::try_from(bdp * u128::from(gain) / u128::from(UNIT)).unwrap_or(u64::MAX)
    }

    fn enter_startup(&mut self) {
        self.mode = Mode::Startup;
        self.pacing_gain = STARTUP_GAIN;
        self.cwnd_gain = STARTUP_GAIN;
    }

    fn enter_probe_bw(&mut self, now: Instant) {
        self.mode = Mode::ProbeBw;
        self.cwnd_gain = CWND_GAIN;
        // Start in any phase but the draining one, so that flows that enter together do not
        // probe together. Time since creation is as good a die as any, and deterministic.
        let draw = now.saturating_duration_since(self.created).subsec_micros() as usize % 7;
        self.cycle_index = if draw == 0 { 0 } else { draw + 1 };
        self.cycle_stamp = now;
        self.pacing_gain = CYCLE[self.cycle_index];
    }

    fn save_cwnd(&mut self) {
        self.prior_cwnd = if self.mode == Mode::ProbeRtt || self.restore_after.is_some() {
            self.prior_cwnd.max(self.cwnd)
        } else {
            self.cwnd
        };
    }

    fn update_round_and_bw(&mut self, event: &AckEvent, rtt: &RttEstimator) {
        self.round_start = false;
        let Some(sample) = event.sample else {
            return;
        };
        if sample.prior_delivered >= self.next_round_delivered {
            self.next_round_delivered = event.delivered;
            self.round += 1;
            self.round_start = true;
        }
        if let Some(rate) = sample.rate(rtt.min()) {
            // An application-limited sample only says the path can do at least this much.
            if !sample.app_limited || rate >= self.bandwidth() {
                self.bw.update(self.round, rate);
            }
        }
    }

    fn check_full_pipe(&mut self, event: &AckEvent) {
        if self.filled_pipe || !self.round_start || event.sample.is_none_or(|s| s.app_limited) {
            return;
        }
        let bw = self.bandwidth();
        if u128::from(bw) * u128::from(UNIT)
            >= u128::from(self.full_bw) * u128::from(FULL_BW_GROWTH)
        {
            self.full_bw = bw;
            self.full_bw_rounds = 0;
            return;
        }
        self.full_bw_rounds += 1;
        self.filled_pipe = self.full_bw_rounds >= FULL_BW_ROUNDS;
    }

    fn check_drain(&mut self, now: Instant, event: &AckEvent) {
        if self.mode == Mode::Startup && self.filled_pipe {
            self.mode = Mode::Drain;
            self.pacing_gain = DRAIN_GAIN;
            self.cwnd_gain = STARTUP_GAIN;
        }
        if self.mode == Mode::Drain && event.in_flight <= self.inflight(UNIT) {
            self.enter_probe_bw(now);
        }
    }

    fn check_cycle_phase(&mut self, now: Instant, event: &AckEvent) {
        if self.mode != Mode::ProbeBw {
            return;
        }
        let full_length = self
            .min_rtt
            .is_some_and(|rtt| now.saturating_duration_since(self.cycle_stamp) > rtt);
        let next = match self.pacing_gain {
            // Probe until the extra quarter is really in flight (or the path drops it).
            g if g > UNIT => {
                let limited = self
                    .inflight_hi
                    .is_some_and(|hi| event.prior_in_flight + self.mss >= hi);
                full_length
                    && (event.lost > 0 || limited || event.prior_in_flight >= self.inflight(g))
            }
            // Drain until the probe's queue is gone, at most one round trip.
            g if g < UNIT => full_length || event.prior_in_flight <= self.inflight(UNIT),
            _ => full_length,
        };
        if next {
            self.cycle_index = (self.cycle_index + 1) % CYCLE.len();
            self.cycle_stamp = now;
            self.pacing_gain = CYCLE[self.cycle_index];
        }
    }

    fn update_min_rtt_and_probe_rtt(&mut self, now: Instant, event: &AckEvent) {
        let expired = now > self.min_rtt_stamp + MIN_RTT_WINDOW;
        if let Some(sample) = event.rtt {
            if self.min_rtt.is_none_or(|m| sample <= m) || expired {
                self.min_rtt = Some(sample);
                self.min_rtt_stamp = now;
            }
        }
        if expired && self.mode != Mode::ProbeRtt {
            self.save_cwnd();
            self.mode = Mode::ProbeRtt;
            self.pacing_gain = UNIT;
            self.cwnd_gain = UNIT;
            self.probe_rtt_done = None;
        }
        if self.mode != Mode::ProbeRtt {
            return;
        }
        match self.probe_rtt_done {
            None if event.in_flight <= self.min_pipe() => {
                self.probe_rtt_done = Some(now + PROBE_RTT_TIME);
                self.probe_rtt_round_done = false;
                self.next_round_delivered = event.delivered;
            }
            None => {}
            Some(done) => {
                self.probe_rtt_round_done |= self.round_start;
                if self.probe_rtt_round_done && now >= done {
                    self.min_rtt_stamp = now;
                    self.cwnd = self.cwnd.max(self.prior_cwnd);
                    if self.filled_pipe {
                        self.enter_probe_bw(now);
                    } else {
                        self.enter_startup();
                    }
                }
            }
        }
    }

    fn set_pacing_rate(&mut self, event: &AckEvent, rtt: &RttEstimator) {
        if !self.has_rtt && event.rtt.is_some() {
            // The first RTT: pace the startup window over it.
            self.has_rtt = true;
            let nominal = u128::from(self.cwnd) * 1_000_000_000 / rtt.get().as_nanos().max(1);
            let rate = nominal * u128::from(STARTUP_GAIN) / u128::from(UNIT);
            self.pacing_rate = u64::try_from(rate).unwrap_or(u64::MAX).max(1);
        }
        let bw = self.bandwidth();
        if bw == 0 {
            return;
        }
        let rate =
            u128::from(bw) * u128::from(self.pacing_gain) * u128::from(100 - PACING_MARGIN_PERCENT)
                / u128::from(UNIT * 100);
        let rate = u64::try_from(rate).unwrap_or(u64::MAX).max(1);
        // Startup never slows down: its samples lag its sending by a round trip.
        if self.filled_pipe || rate > self.pacing_rate {
            self.pacing_rate = rate;
        }
    }

    /// Grows the congestion bound by a packet per round trip; drops it once it no longer binds.
    fn grow_inflight_hi(&mut self) {
        let Some(hi) = self.inflight_hi else {
            return;
        };
        if !self.round_start {
            return;
        }
        let hi = hi + self.mss;
        let target = self.inflight(CWND_GAIN) + self.quantization_budget();
        self.inflight_hi = (hi < target).then_some(hi);
    }

    /// The window's room for send bursts: [`QUANTA`] send quanta at the pacing rate. Where the
    /// propagation RTT is tiny (loopback, a LAN) this, not the bandwidth-delay product, is
    /// most of the window: 2 x 400 MB/s x 30 us is 24 kB, where one burst is 64 kB.
    fn quantization_budget(&self) -> u64 {
        QUANTA * super::send_quantum(self.pacing_rate, self.mss)
    }

    /// Measures how far acknowledgements run ahead of the bandwidth estimate (see the module
    /// documentation): the excess since the ACK epoch began, kept per round.
    fn update_aggregation(&mut self, now: Instant, event: &AckEvent) {
        let bw = self.bandwidth();
        if bw == 0 || event.acked == 0 {
            return;
        }
        let elapsed = now.saturating_duration_since(self.epoch_start);
        let expected = u128::from(bw) * elapsed.as_nanos() / 1_000_000_000;
        let mut expected = u64::try_from(expected).unwrap_or(u64::MAX);
        if self.epoch_acked <= expected || self.epoch_acked + event.acked >= EPOCH_RESET_BYTES {
            self.epoch_start = now;
            self.epoch_acked = 0;
            expected = 0;
        }
        self.epoch_acked += event.acked;
        let extra = self.epoch_acked.saturating_sub(expected).min(self.cwnd);
        self.extra_acked.update(self.round, extra);
    }

    /// The window's allowance for ACK aggregation.
    pub(crate) fn aggregation_allowance(&self) -> u64 {
        let cap = u128::from(self.bandwidth()) * MAX_AGGREGATION.as_nanos() / 1_000_000_000;
        self.extra_acked
            .get()
            .min(u64::try_from(cap).unwrap_or(u64::MAX))
    }

    fn set_cwnd(&mut self, event: &AckEvent) {
        let target = self.inflight(self.cwnd_gain)
            + self.quantization_budget()
            + self.aggregation_allowance();
        if self.filled_pipe {
            self.cwnd = (self.cwnd + event.acked).min(target);
        } else if self.cwnd < target || event.delivered < self.initial_cwnd {
            self.cwnd += event.acked;
        }
        if let Some(hi) = self.inflight_hi {
            self.cwnd = self.cwnd.min(hi);
        }
        self.cwnd = self.cwnd.max(self.min_pipe());
        if self.mode == Mode::ProbeRtt {
            self.cwnd = self.cwnd.min(self.min_pipe());
        }
    }
}

impl Controller for Bbr {
    fn on_ack(
        &mut self,
        _now: Instant,
        sent: Instant,
        _bytes: u64,
        _app_limited: bool,
        _rtt: &RttEstimator,
    ) {
        if self.restore_after.is_some_and(|t| sent > t) {
            self.restore_after = None;
            self.cwnd = self.cwnd.max(self.prior_cwnd);
        }
    }

    fn on_ack_event(&mut self, now: Instant, event: &AckEvent, rtt: &RttEstimator) {
        self.update_round_and_bw(event, rtt);
        self.update_aggregation(now, event);
        if self.round_start {
            self.standing_rtt = self.round_rtt.take().or(self.standing_rtt);
        }
        if let Some(rtt) = event.rtt {
            let sample = rtt.saturating_sub(event.ack_delay);
            self.round_rtt = Some(self.round_rtt.map_or(sample, |r| r.min(sample)));
        }
        self.grow_inflight_hi();
        self.check_cycle_phase(now, event);
        self.check_full_pipe(event);
        self.check_drain(now, event);
        self.update_min_rtt_and_probe_rtt(now, event);
        self.set_pacing_rate(event, rtt);
        self.set_cwnd(event);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        largest_lost_sent: Instant,
        in_flight: u64,
        persistent: bool,
    ) {
        // Loss alone is not a signal; loss with a queue is, once per round trip.
        // The queue that stood through the last round trip. One shorter than a send
        // quantum's interval is what the sender's own bursts make on a path whose
        // propagation RTT is tiny, not a competing flow's.
        let queued = match (self.standing_rtt.or(self.round_rtt), self.min_rtt) {
            (Some(standing), Some(min)) => {
                standing.as_nanos() * u128::from(UNIT)
                    >= min.as_nanos() * u128::from(QUEUE_RTT_GAIN)
                    && standing.saturating_sub(min) >= super::pacing::QUANTUM_INTERVAL
            }
            _ => false,
        };
        let judged = self.mode != Mode::ProbeRtt;
        if queued && judged && self.last_cut.is_none_or(|t| largest_lost_sent > t) {
            self.last_cut = Some(now);
            let bound = (self.cwnd.min(in_flight + self.mss)) * CONGESTION_BETA / UNIT;
            self.inflight_hi = Some(bound.max(self.min_pipe()));
            self.cwnd = self.cwnd.min(bound).max(self.min_pipe());
        }
        // A path that stopped delivering altogether: the window collapses until it delivers
        // again.
        if persistent {
            self.save_cwnd();
            self.restore_after = Some(now);
            self.cwnd = self.min_pipe();
        }
    }

    fn window(&self) -> u64 {
        self.cwnd
    }

    fn pacing_rate(&self) -> Option<u64> {
        Some(self.pacing_rate)
    }

    #[cfg(test)]
    fn in_slow_start(&self) -> bool {
        self.mode == Mode::Startup
    }
}
