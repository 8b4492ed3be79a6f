//! Congestion control behind a trait, RTT estimation, delivery-rate sampling and pacing
//! (RFC 9002 §5, §7; draft-cheng-iccrg-delivery-rate-estimation).
//!
//! The stream layer ([`crate::stream::Mux`]) does loss detection and keeps bytes in flight; a
//! [`Controller`] only turns acknowledgements and congestion events into a window and, if it
//! wants one, a pacing rate. Two controllers exist, chosen by [`CongestionControl`]:
//! [`NewReno`] (RFC 9002: every loss halves the window) and [`Bbr`] (models the bottleneck
//! bandwidth and the path's round-trip time, so random loss does not slow it down).

mod bbr;
mod delivery;
mod new_reno;
mod pacing;
mod rtt;
mod windowed;

pub(crate) use bbr::Bbr;
pub(crate) use delivery::{DeliveryRate, RateSample, SendSnapshot};
pub(crate) use new_reno::NewReno;
pub(crate) use pacing::{Pacer, burst_size, send_quantum};
pub(crate) use rtt::RttEstimator;

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Which congestion controller a stream layer uses ([`crate::stream::StreamConfig::congestion`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CongestionControl {
    /// BBR (after draft-cardwell-iccrg-bbr-congestion-control, version 1): paces at the
    /// measured bottleneck bandwidth and keeps about two bandwidth-delay products in flight;
    /// random loss does not reduce its rate. Keeps most of the link at a few percent of loss,
    /// where NewReno collapses (see `core/benches/goodput.rs`), and matches NewReno on a fast
    /// path whose ACKs come in bursts (loopback, a LAN) thanks to its ACK-aggregation
    /// allowance. The default.
    #[default]
    Bbr,
    /// NewReno (RFC 9002 §7): halves the window once per round trip with loss. Kept for
    /// comparison and for paths where loss really means congestion.
    NewReno,
}

impl CongestionControl {
    /// A fresh controller of this kind for packets of at most `max_datagram` bytes.
    pub(crate) fn build(self, max_datagram: u64, now: Instant) -> Box<dyn Controller> {
        match self {
            CongestionControl::Bbr => Box::new(Bbr::new(max_datagram, now)),
            CongestionControl::NewReno => Box::new(NewReno::new(max_datagram)),
        }
    }
}

/// What one ACK frame did, reported once after its packets were processed one by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AckEvent {
    /// Bytes newly acknowledged by this ACK.
    pub(crate) acked: u64,
    /// Bytes declared lost while processing this ACK.
    pub(crate) lost: u64,
    /// Bytes in flight before this ACK was processed.
    pub(crate) prior_in_flight: u64,
    /// Bytes in flight after it.
    pub(crate) in_flight: u64,
    /// Bytes delivered (acknowledged) over the connection's lifetime, this ACK included.
    pub(crate) delivered: u64,
    /// The delivery-rate sample this ACK produced, if any.
    pub(crate) sample: Option<RateSample>,
    /// The RTT sample this ACK produced (from its largest newly acknowledged packet), if any.
    pub(crate) rtt: Option<Duration>,
    /// The ACK delay the peer reported with it, limited to max_ack_delay.
    pub(crate) ack_delay: Duration,
}

/// A congestion controller: decides how many bytes may be in flight, and how fast to pace.
///
/// All sizes are bytes of packet payload as the stream layer counts them.
pub(crate) trait Controller: Debug + Send {
    /// A packet of `bytes` that counts toward bytes in flight was sent at `now`.
    fn on_sent(&mut self, now: Instant, bytes: u64) {
        let _ = (now, bytes);
    }

    /// A packet sent at `sent` with `bytes` was acknowledged. `app_limited` is true when the
    /// sender was not using its whole window, in which case the window should not grow.
    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    );

    /// Called once per ACK frame that acknowledged something new, after [`Controller::on_ack`]
    /// for each packet and after loss detection.
    fn on_ack_event(&mut self, now: Instant, event: &AckEvent, rtt: &RttEstimator) {
        let _ = (now, event, rtt);
    }

    /// Packets were declared lost; `largest_lost_sent` is when the newest of them was sent,
    /// `in_flight` the bytes still in flight without them. `persistent` reports persistent
    /// congestion (RFC 9002 §7.6).
    fn on_congestion_event(
        &mut self,
        now: Instant,
        largest_lost_sent: Instant,
        in_flight: u64,
        persistent: bool,
    );

    /// The congestion window in bytes.
    fn window(&self) -> u64;

    /// The rate to pace at in bytes per second, or `None` to let the pacer derive one from
    /// the window and the smoothed RTT (RFC 9002 §7.7).
    fn pacing_rate(&self) -> Option<u64> {
        None
    }

    /// Whether the controller is in slow start (or BBR's startup), for stats and tests.
    #[cfg(test)]
    fn in_slow_start(&self) -> bool;
}
