//! Handshake packets: the Noise IK messages of [`crate::crypto::noise`] framed by
//! [`crate::wire::header`], with the MACs of [`crate::crypto::cookie`] and burrow's handshake
//! payload.

use std::time::Instant;

use crate::crypto::cookie::CookieJar;
use crate::crypto::noise::{self, InitiatorHandshake, ResponderHandshake};
use crate::crypto::{PublicKey, SecretKey};
use crate::wire::header::{MAC_LEN, begin_initiation, begin_response};

/// Bound into every handshake hash, so that a burrow handshake can never be mistaken for another
/// protocol's that happens to use the same Noise pattern.
pub(crate) const PROLOGUE: &[u8] = b"burrow v1";

/// What both handshake messages carry inside their encryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HandshakePayload {
    /// Sender's wall-clock time in nanoseconds since the Unix epoch. A responder refuses an
    /// initiation whose timestamp is not newer than the last one it accepted from that key, so
    /// a captured initiation cannot be replayed.
    pub(crate) timestamp: u64,
    /// Random per-process identity of the sender's endpoint: a change means the peer restarted
    /// and lost its session state.
    pub(crate) instance: u64,
    /// Which session the handshake's keys belong to, by the number its responder gave it. In
    /// an initiation: the session being rekeyed, or [`NEW_SESSION`] for a new one. In a
    /// response: the session the keys continue (the one the initiation named, if the
    /// responder still has it) or the number of the new one it starts. So a rekey that meets
    /// a peer which no longer has the session starts a new one on both sides, instead of one
    /// side carrying on with the old stream state while the other starts afresh. `None` from
    /// a peer that predates session numbers: its keys continue whatever session we have.
    pub(crate) session: Option<u64>,
}

/// [`HandshakePayload::session`] of an initiation that starts a new session.
pub(crate) const NEW_SESSION: u64 = 0;

impl HandshakePayload {
    const VERSION: u8 = 1;
    /// The shortest payload (version, timestamp, instance), as peers before session numbers
    /// sent it.
    pub(crate) const LEN: usize = 17;
    /// A payload with its session number.
    const FULL_LEN: usize = Self::LEN + 8;

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::FULL_LEN);
        out.push(Self::VERSION);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.instance.to_be_bytes());
        if let Some(session) = self.session {
            out.extend_from_slice(&session.to_be_bytes());
        }
        out
    }

    /// Decodes a payload. One of [`Self::LEN`] bytes has no session number; bytes past the
    /// fields we know, from newer versions of the same major layout, are ignored.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < Self::LEN || bytes[0] != Self::VERSION {
            return None;
        }
        let u64_at = |at: usize| Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        Some(Self {
            timestamp: u64_at(1)?,
            instance: u64_at(9)?,
            session: u64_at(Self::LEN),
        })
    }
}

/// Appends both MACs: mac1 keyed for the receiver, mac2 from the receiver's cookie if we hold
/// a fresh one.
fn append_macs(packet: &mut Vec<u8>, jar: &CookieJar, now: Instant) -> [u8; MAC_LEN] {
    let mac1 = jar.mac_keys().mac1(packet);
    packet.extend_from_slice(&mac1);
    let mac2 = jar.mac2(now, packet).unwrap_or([0; MAC_LEN]);
    packet.extend_from_slice(&mac2);
    mac1
}

/// A whole initiation packet and the state that reads its response.
pub(crate) struct Initiation {
    pub(crate) state: InitiatorHandshake,
    pub(crate) packet: Vec<u8>,
    /// The mac1 we sent: a cookie reply is bound to it.
    pub(crate) mac1: [u8; MAC_LEN],
}

/// Builds an initiation from us (`local`) to `remote`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn initiation(
    now: Instant,
    local: &SecretKey,
    remote: &PublicKey,
    ephemeral: &SecretKey,
    sender_index: u32,
    payload: HandshakePayload,
    jar: &CookieJar,
) -> Initiation {
    let mut packet = Vec::with_capacity(160);
    begin_initiation(sender_index, &mut packet);
    let state = noise::initiate(
        local,
        remote,
        ephemeral,
        PROLOGUE,
        &payload.encode(),
        &mut packet,
    );
    let mac1 = append_macs(&mut packet, jar, now);
    Initiation {
        state,
        packet,
        mac1,
    }
}

/// Builds the response to an initiation we accepted, returning the packet and the keys.
#[allow(clippy::too_many_arguments)]
pub(crate) fn response(
    now: Instant,
    responder: ResponderHandshake,
    ephemeral: &SecretKey,
    sender_index: u32,
    receiver_index: u32,
    payload: HandshakePayload,
    jar: &CookieJar,
) -> (Vec<u8>, noise::TransportKeys) {
    let mut packet = Vec::with_capacity(128);
    begin_response(sender_index, receiver_index, &mut packet);
    let keys = responder.write_response(ephemeral, &payload.encode(), &mut packet);
    append_macs(&mut packet, jar, now);
    (packet, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_rejects_short_or_foreign() {
        let p = HandshakePayload {
            timestamp: 1_700_000_000_000_000_000,
            instance: 42,
            session: Some(7),
        };
        assert_eq!(p.encode().len(), HandshakePayload::FULL_LEN);
        assert_eq!(HandshakePayload::decode(&p.encode()), Some(p));
        let mut longer = p.encode().to_vec();
        longer.push(7);
        assert_eq!(HandshakePayload::decode(&longer), Some(p));
        assert_eq!(HandshakePayload::decode(&p.encode()[..16]), None);
        let mut foreign = p.encode();
        foreign[0] = 2;
        assert_eq!(HandshakePayload::decode(&foreign), None);
    }

    #[test]
    fn a_payload_without_a_session_number_is_a_peer_from_before_them() {
        let old = HandshakePayload {
            timestamp: 5,
            instance: 6,
            session: None,
        };
        assert_eq!(old.encode().len(), HandshakePayload::LEN);
        assert_eq!(HandshakePayload::decode(&old.encode()), Some(old));
        // A partial session number is not one: the bytes are ignored like any extension.
        let full = HandshakePayload {
            session: Some(NEW_SESSION),
            ..old
        }
        .encode();
        for cut in HandshakePayload::LEN + 1..HandshakePayload::FULL_LEN {
            assert_eq!(HandshakePayload::decode(&full[..cut]), Some(old));
        }
    }
}
