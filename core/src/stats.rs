//! Counters of everything an endpoint did and refused.

/// Counters since the endpoint started, from [`crate::Endpoint::stats`].
///
/// Every datagram that `handle_input` does not act on lands in exactly one `dropped_*` counter,
/// so bad input is visible without ever being an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams handed to `handle_input`.
    pub datagrams_in: u64,
    /// Bytes handed to `handle_input`.
    pub bytes_in: u64,
    /// Datagrams produced by `poll_transmit`.
    pub datagrams_out: u64,
    /// Bytes produced by `poll_transmit`.
    pub bytes_out: u64,
    /// Handshakes completed (as initiator or responder, including rekeys).
    pub handshakes_completed: u64,
    /// Cookie replies sent because we were under load.
    pub cookies_sent: u64,
    /// Hole-punching probes that reached us (their TTL was larger than needed).
    pub probes_received: u64,
    /// STUN messages received on the port.
    pub stun_received: u64,
    /// Not a burrow packet, unsupported version, or too short for its kind.
    pub dropped_malformed: u64,
    /// A handshake message whose mac1 does not verify (not meant for our key, or corrupted).
    pub dropped_bad_mac: u64,
    /// An initiation without a valid cookie while we are under load.
    pub dropped_no_cookie: u64,
    /// A handshake message that failed Noise processing.
    pub dropped_handshake: u64,
    /// An initiation not newer than the last handshake heard from that key (a replay).
    pub dropped_handshake_replay: u64,
    /// An initiation from a key our policy does not admit.
    pub dropped_unknown_peer: u64,
    /// A response or cookie for a handshake we do not have (late or forged).
    pub dropped_unexpected: u64,
    /// A transport packet for a session index we do not know.
    pub dropped_unknown_index: u64,
    /// A transport packet whose counter was seen before or is below the replay window.
    pub dropped_replay: u64,
    /// A transport packet that failed authentication.
    pub dropped_auth: u64,
    /// A transport packet under keys past their limits.
    pub dropped_expired: u64,
    /// An authenticated packet whose plaintext does not decode.
    pub dropped_bad_payload: u64,
    /// Incoming streams refused: a service we do not expose, or a header that does not parse.
    pub streams_refused: u64,
    /// Of those, streams for a service we expose but the peer holds no grant for.
    pub streams_unauthorized: u64,
    /// Introductions whose grant a limit of the access table refused (see
    /// `access::MAX_GRANTED_KEYS`); the introduced peer gets no session.
    pub dropped_grant_limit: u64,
    /// Server: sessions closed because no valid registration came within
    /// `ServerConfig::register_within`.
    pub closed_unregistered: u64,
    /// Sessions we closed because the peer broke the stream protocol (see
    /// [`crate::stream::StreamEvent::ProtocolViolation`]).
    pub protocol_violations: u64,
    /// Initiations from new peers dropped because the endpoint holds `max_sessions` already.
    pub dropped_session_limit: u64,
    /// Initiations from a source that holds `SessionConfig::max_half_open_per_source`
    /// unconfirmed handshakes already, dropped (they carried a valid cookie; without one the
    /// source gets a cookie reply, counted in `dropped_no_cookie`).
    pub dropped_half_open_limit: u64,
    /// A packet for a session whose route policy forbids the path it came by (a relay-only
    /// session's direct packets, or relayed packets for a direct-only session).
    pub dropped_route_policy: u64,
    /// Incoming streams refused because their service's route policy does not allow the
    /// path the session used (reset with code 0x5E03; also counted in `streams_refused`).
    pub streams_route_refused: u64,
    /// Packets of ours wrapped for the relay.
    pub relayed_out: u64,
    /// Relayed packets for us that arrived from the relay.
    pub relayed_in: u64,
    /// Packets for the relay dropped because our session with it was down.
    pub relay_unavailable: u64,
    /// Times a silent direct path was given up for the relay.
    pub relay_fallbacks: u64,
    /// Times a relayed session moved to a direct path its challenges proved.
    pub direct_upgrades: u64,
    /// Server: packets forwarded between two daemons.
    pub relay_forwarded: u64,
    /// Server: bytes forwarded between two daemons.
    pub relay_forwarded_bytes: u64,
    /// Server: relay packets refused (an unregistered sender or destination, two daemons the
    /// server never introduced, or no session to the destination).
    pub relay_refused: u64,
    /// Server: relay packets dropped over their token's rate limit (its queue was full).
    pub relay_limited: u64,
    /// Server: relay packets that waited in their token's queue for the rate limit (then
    /// forwarded, unless their session went away meanwhile).
    pub relay_queued: u64,
}
