//! Test support shared by core's unit tests: a virtual-time origin and the two-endpoint
//! [`pair::Pair`] harness.

pub(crate) mod net;
pub(crate) mod pair;

use std::time::Instant;

/// The origin of virtual time in unit tests.
///
/// `Instant` has no constructor besides the clock, so tests read it once here; nothing in the
/// code under test ever does, and every later instant is this origin plus virtual time.
#[allow(clippy::disallowed_methods)]
pub(crate) fn origin() -> Instant {
    Instant::now()
}

mod access;
mod adversarial;
mod amplification;
mod half_open;
mod limits;
mod meet;
mod portmap;
mod reroute;
mod session;
mod streams;
