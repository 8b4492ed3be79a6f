//! What a modified daemon could do that burrow's own never does, for the tests that show the
//! rendezvous server and the daemons refuse it (`tests/tests/sim_access.rs`). Not part of the
//! API: compiled only for tests and with the `hostile` feature, which only the test crate
//! enables; nothing in the product calls it.

use std::time::Instant;

use crate::{Endpoint, PeerId, PublicKey};

/// Makes `endpoint` (a daemon, registered or not) start a session with the daemon `key`
/// through its rendezvous server's relay, although the server never introduced them: its
/// handshake goes to the server wrapped in the daemon's own session, addressed to `key`.
/// Streams opened on the returned peer go the same way. `None` for an endpoint without a
/// rendezvous server.
pub fn connect_through_relay(
    endpoint: &mut Endpoint,
    now: Instant,
    key: PublicKey,
) -> Option<PeerId> {
    endpoint.connect_through_relay(now, key)
}
