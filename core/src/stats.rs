//! Counters of everything an endpoint did and refused.

use serde::{Deserialize, Serialize};

use crate::punch::why::CandidateOutcome;

/// Counters since the endpoint started, from [`crate::Endpoint::stats`].
///
/// Every datagram that `handle_input` does not act on lands in exactly one `dropped_*` counter,
/// so bad input is visible without ever being an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
    /// Hole punching: attempts, how sessions came up, and how long a direct path took.
    pub punch: PunchStats,
}

/// What a rendezvous server counts besides [`Stats`], from
/// [`crate::Endpoint::server_counters`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ServerCounters {
    /// Live registrations now.
    pub registrations_live: u64,
    /// Registrations accepted (new ones and renewals).
    pub registrations: u64,
    /// Registrations refused (a bad token, a name another daemon holds, a limit).
    pub registrations_refused: u64,
    /// Bytes relayed, by the token of the daemon that sent them: the first 8 hex digits of
    /// the token's BLAKE2s hash (never the token itself), for tokens with a live
    /// registration.
    pub relayed_bytes_by_token: Vec<(String, u64)>,
}

/// Hole punching, over every introduced session (see [`Stats::punch`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PunchStats {
    /// Handshake attempts sent while punching (each: TTL-limited probes and an initiation to
    /// every candidate).
    pub attempts: u64,
    /// Introduced sessions that came up on a direct path.
    pub direct: u64,
    /// Introduced sessions that came up on the relay, by the reason the punching failed (see
    /// [`crate::WhyRelayed::reason`]).
    pub relayed: RelayedBy,
    /// From an introduction to the session's first direct path (punched at once, or found
    /// later by the relayed search).
    pub time_to_direct: Histogram,
}

/// Sessions that came up on the relay, by why punching failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RelayedBy {
    /// [`CandidateOutcome::NeverTried`].
    pub never_tried: u64,
    /// [`CandidateOutcome::NoAnswer`].
    pub no_answer: u64,
    /// [`CandidateOutcome::Filtered`].
    pub filtered: u64,
    /// [`CandidateOutcome::MappingVaries`].
    pub mapping_varies: u64,
    /// [`CandidateOutcome::Policy`].
    pub policy: u64,
    /// [`CandidateOutcome::Lost`].
    pub direct_lost: u64,
}

impl RelayedBy {
    fn slot(&mut self, reason: CandidateOutcome) -> &mut u64 {
        match reason {
            CandidateOutcome::NeverTried => &mut self.never_tried,
            CandidateOutcome::NoAnswer => &mut self.no_answer,
            CandidateOutcome::Filtered => &mut self.filtered,
            CandidateOutcome::MappingVaries => &mut self.mapping_varies,
            CandidateOutcome::Policy => &mut self.policy,
            CandidateOutcome::Lost => &mut self.direct_lost,
        }
    }

    /// Counts one session relayed for `reason`.
    pub(crate) fn count(&mut self, reason: CandidateOutcome) {
        *self.slot(reason) += 1;
    }

    /// Sessions relayed for `reason`.
    pub fn get(&self, reason: CandidateOutcome) -> u64 {
        match reason {
            CandidateOutcome::NeverTried => self.never_tried,
            CandidateOutcome::NoAnswer => self.no_answer,
            CandidateOutcome::Filtered => self.filtered,
            CandidateOutcome::MappingVaries => self.mapping_varies,
            CandidateOutcome::Policy => self.policy,
            CandidateOutcome::Lost => self.direct_lost,
        }
    }
}

/// Upper bounds of the [`Histogram`] buckets for [`PunchStats::time_to_direct`], in
/// milliseconds (the last bucket, past them all, is implicit).
pub const TIME_TO_DIRECT_BOUNDS_MS: [u64; 10] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];

/// A histogram of durations with the fixed bounds of [`TIME_TO_DIRECT_BOUNDS_MS`]: plain
/// numbers, rendered by whoever exports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative): one per bound, then the overflow bucket.
    pub buckets: [u64; 11],
    /// Observations in all.
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum_micros: u64,
}

impl Histogram {
    /// Counts one duration.
    pub(crate) fn observe(&mut self, d: std::time::Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let i = TIME_TO_DIRECT_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(TIME_TO_DIRECT_BOUNDS_MS.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_micros = self
            .sum_micros
            .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_histogram_puts_each_duration_in_its_bucket() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(51));
        h.observe(Duration::from_secs(3600));
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[10], 1);
        assert_eq!(h.count, 3);
        assert_eq!(h.sum_micros, 3_600_101_000);
    }

    #[test]
    fn relayed_by_counts_each_reason_in_its_own_slot() {
        let mut r = RelayedBy::default();
        for (i, o) in CandidateOutcome::ALL.iter().enumerate() {
            for _ in 0..=i {
                r.count(*o);
            }
        }
        for (i, o) in CandidateOutcome::ALL.iter().enumerate() {
            assert_eq!(r.get(*o), i as u64 + 1, "{o}");
        }
    }
}
