//! What the plaintext of a transport packet holds.
//!
//! ```text
//! empty                      keepalive: proves the session is alive, holds NAT bindings open
//! 0x00 | stream frames       the stream layer's packet (see crate::stream)
//! 0x01 | control message     version byte + postcard body (see super::control)
//! 0x02 | bytes               one unreliable datagram for the application
//! 0x03 | version | postcard   a rendezvous message (see crate::rendezvous::messages)
//! 0x04 | key (32) | packet    a relayed packet, between a daemon and its server: the key is
//!                            the destination's (daemon to server) or the source's (server to
//!                            daemon); the packet is the two daemons' own, opaque to the server
//! 0x05 | nonce (8)           a path challenge, sent to a peer's candidate while relayed
//! 0x06 | nonce (8)           the answer, sent back where the challenge came from
//! ```

use super::WireError;

/// The first plaintext byte of a non-empty transport packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PayloadKind {
    /// Frames of the stream layer.
    Stream = 0,
    /// A control message.
    Control = 1,
    /// An application datagram.
    Datagram = 2,
    /// A rendezvous message between a daemon and its server.
    Rendezvous = 3,
    /// A packet relayed between two daemons through the server.
    Relay = 4,
    /// A path challenge: is this direct path open both ways?
    PathChallenge = 5,
    /// The answer to a path challenge.
    PathResponse = 6,
}

/// Bytes of a relay payload before the relayed packet: the kind byte and a static key.
pub(crate) const RELAY_PREFIX_LEN: usize = 1 + 32;

/// A decoded transport plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Payload<'a> {
    /// An empty packet: a keepalive.
    KeepAlive,
    /// Stream-layer frames.
    Stream(&'a [u8]),
    /// A control body (version byte first).
    Control(&'a [u8]),
    /// An application datagram.
    Datagram(&'a [u8]),
    /// A rendezvous message body (version byte first).
    Rendezvous(&'a [u8]),
    /// A relayed packet and the other daemon's static key.
    Relay {
        /// The destination (daemon to server) or the source (server to daemon).
        peer: [u8; 32],
        /// The daemons' packet, as they sent it.
        packet: &'a [u8],
    },
    /// A path challenge's nonce.
    PathChallenge(u64),
    /// A path response's nonce.
    PathResponse(u64),
}

impl<'a> Payload<'a> {
    /// Splits the kind byte off a plaintext.
    pub(crate) fn parse(plaintext: &'a [u8]) -> Result<Self, WireError> {
        match plaintext.split_first() {
            None => Ok(Payload::KeepAlive),
            Some((0, rest)) => Ok(Payload::Stream(rest)),
            Some((1, rest)) => Ok(Payload::Control(rest)),
            Some((2, rest)) => Ok(Payload::Datagram(rest)),
            Some((3, rest)) => Ok(Payload::Rendezvous(rest)),
            Some((4, rest)) => {
                let (peer, packet) = rest.split_first_chunk::<32>().ok_or(WireError::Truncated)?;
                Ok(Payload::Relay {
                    peer: *peer,
                    packet,
                })
            }
            Some((5, rest)) => Ok(Payload::PathChallenge(nonce(rest)?)),
            Some((6, rest)) => Ok(Payload::PathResponse(nonce(rest)?)),
            Some((&k, _)) => Err(WireError::UnknownKind(k)),
        }
    }
}

/// An 8-byte path nonce, nothing more.
fn nonce(rest: &[u8]) -> Result<u64, WireError> {
    let bytes: [u8; 8] = rest.try_into().map_err(|_| WireError::Truncated)?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn arbitrary_plaintexts_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Payload::parse(&bytes);
        }

        #[test]
        fn relay_payloads_split_anywhere_after_the_key(key in any::<[u8; 32]>(), packet in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut body = vec![PayloadKind::Relay as u8];
            body.extend(key);
            body.extend(&packet);
            prop_assert_eq!(Payload::parse(&body), Ok(Payload::Relay { peer: key, packet: &packet }));
        }
    }

    #[test]
    fn kinds_split_off_the_first_byte() {
        assert_eq!(Payload::parse(&[]), Ok(Payload::KeepAlive));
        assert_eq!(Payload::parse(&[0, 1]), Ok(Payload::Stream(&[1])));
        assert_eq!(Payload::parse(&[1, 2]), Ok(Payload::Control(&[2])));
        assert_eq!(Payload::parse(&[2]), Ok(Payload::Datagram(&[])));
        assert_eq!(Payload::parse(&[3, 1]), Ok(Payload::Rendezvous(&[1])));
        assert_eq!(Payload::parse(&[7]), Err(WireError::UnknownKind(7)));
    }

    #[test]
    fn relay_payload_carries_a_key_and_a_packet() {
        let mut body = vec![4u8];
        body.extend([9u8; 32]);
        body.extend([1, 2, 3]);
        assert_eq!(
            Payload::parse(&body),
            Ok(Payload::Relay {
                peer: [9; 32],
                packet: &[1, 2, 3]
            })
        );
        assert!(Payload::parse(&body[..32]).is_err());
    }

    #[test]
    fn path_nonces_are_exactly_eight_bytes() {
        let mut body = vec![5u8];
        body.extend(7u64.to_le_bytes());
        assert_eq!(Payload::parse(&body), Ok(Payload::PathChallenge(7)));
        body[0] = 6;
        assert_eq!(Payload::parse(&body), Ok(Payload::PathResponse(7)));
        assert!(Payload::parse(&body[..8]).is_err());
        body.push(0);
        assert!(Payload::parse(&body).is_err());
    }
}
