//! Congestion control behind a trait, RTT estimation and pacing (RFC 9002 §5, §7).
//!
//! The stream layer ([`crate::stream::Mux`]) does loss detection and keeps bytes in flight; a
//! [`Controller`] only turns acknowledgements and congestion events into a window. NewReno is
//! the first controller; CUBIC or BBR can be added behind the same trait.

mod new_reno;
mod pacing;
mod rtt;

pub(crate) use new_reno::NewReno;
pub(crate) use pacing::Pacer;
pub(crate) use rtt::RttEstimator;

use std::fmt::Debug;
use std::time::Instant;

/// A congestion controller: decides how many bytes may be in flight.
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

    /// Packets were declared lost; `largest_lost_sent` is when the newest of them was sent.
    /// `persistent` reports persistent congestion (RFC 9002 §7.6).
    fn on_congestion_event(&mut self, now: Instant, largest_lost_sent: Instant, persistent: bool);

    /// The congestion window in bytes.
    fn window(&self) -> u64;

    /// Whether the controller is in slow start (for stats and tests).
    #[cfg(test)]
    fn in_slow_start(&self) -> bool;
}
