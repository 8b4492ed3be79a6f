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
}

impl HandshakePayload {
    const VERSION: u8 = 1;
    pub(crate) const LEN: usize = 17;

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = Self::VERSION;
        out[1..9].copy_from_slice(&self.timestamp.to_be_bytes());
        out[9..17].copy_from_slice(&self.instance.to_be_bytes());
        out
    }

    /// Decodes a payload; longer payloads from newer versions of the same major layout are
    /// accepted and the extra bytes ignored.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < Self::LEN || bytes[0] != Self::VERSION {
            return None;
        }
        Some(Self {
            timestamp: u64::from_be_bytes(bytes[1..9].try_into().ok()?),
            instance: u64::from_be_bytes(bytes[9..17].try_into().ok()?),
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
        };
        assert_eq!(HandshakePayload::decode(&p.encode()), Some(p));
        let mut longer = p.encode().to_vec();
        longer.push(7);
        assert_eq!(HandshakePayload::decode(&longer), Some(p));
        assert_eq!(HandshakePayload::decode(&p.encode()[..16]), None);
        let mut foreign = p.encode();
        foreign[0] = 2;
        assert_eq!(HandshakePayload::decode(&foreign), None);
    }
}
