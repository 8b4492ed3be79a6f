//! Why the core wants to be woken up.

/// Why the core wants to be woken up; returned beside the deadline by `poll_timeout`.
///
/// The reason is for logs and tests only: an adapter treats every timer the same way and calls
/// `handle_timeout(now)` once the deadline has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Timer {
    /// Retransmit a handshake initiation that has not been answered.
    Handshake,
    /// Start a new handshake because the current keys are old.
    Rekey,
    /// Send a keepalive so the peer (and every NAT on the way) keeps the session.
    KeepAlive,
    /// Close a session that has heard nothing from its peer for too long.
    Idle,
    /// Forget the keys of a previous session generation.
    KeyExpiry,
    /// Loss detection or probe timeout of the stream layer.
    Retransmit,
    /// Send a delayed acknowledgement.
    Ack,
    /// Release a packet held back by pacing.
    Pacing,
    /// Renew a rendezvous registration.
    LeaseRenew,
    /// Expire a rendezvous registration.
    LeaseExpiry,
    /// Server: forward relayed packets that waited for their token's rate limit.
    RelayQueue,
    /// Retransmit a STUN Binding request, or give up on it.
    Stun,
    /// Challenge the peer's candidates for a direct path while relayed, or give up a silent
    /// direct path for the relay.
    PathCheck,
    /// Refuse a stream whose peer was not authorised for its service within the wait.
    HeldStream,
    /// Retransmit a port-mapping request, give it up, or renew the mapping.
    PortMapping,
}
