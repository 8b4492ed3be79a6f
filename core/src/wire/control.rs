//! Control messages: postcard bodies behind a version byte, carried in encrypted transport
//! packets (see [`super::payload`]).
//!
//! Control messages are small and unreliable, like STUN's: the layer that sends one owns its
//! retries. The version byte lets a later release add a new body encoding while still
//! recognising old peers.

use serde::{Deserialize, Serialize};

use super::WireError;

/// Version of the control-body encoding.
pub(crate) const CONTROL_VERSION: u8 = 1;

/// Why a session is being closed, as told to the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CloseCode {
    /// The application closed the session.
    Normal,
    /// The receiver broke the stream protocol (data beyond a flow-control window, a frame for
    /// a stream that may not exist, ...), so the sender closed the session.
    ProtocolViolation,
    // New codes go after the existing ones: postcard encodes a variant by its index.
}

/// A control message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub(crate) enum Control {
    /// The sender is closing the session; the receiver forgets it at once instead of waiting for
    /// the idle timeout.
    Close {
        /// Why.
        code: CloseCode,
    },
}

impl Control {
    /// Appends the version byte and the postcard body to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(CONTROL_VERSION);
        let body = postcard::to_allocvec(self).expect("control messages always serialize");
        out.extend_from_slice(&body);
    }

    /// Decodes a version byte and postcard body. Trailing bytes are refused so that a message
    /// has exactly one encoding.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        match bytes.split_first() {
            Some((&CONTROL_VERSION, body)) => match postcard::take_from_bytes(body) {
                Ok((msg, [])) => Ok(msg),
                _ => Err(WireError::BadControl),
            },
            Some((&v, _)) => Err(WireError::UnsupportedVersion(v)),
            None => Err(WireError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn close_round_trips() {
        for code in [CloseCode::Normal, CloseCode::ProtocolViolation] {
            let mut out = Vec::new();
            Control::Close { code }.encode(&mut out);
            assert_eq!(out[0], CONTROL_VERSION);
            assert_eq!(Control::decode(&out), Ok(Control::Close { code }));
        }
    }

    #[test]
    fn other_versions_and_trailing_bytes_are_refused() {
        assert_eq!(Control::decode(&[]), Err(WireError::Truncated));
        assert_eq!(
            Control::decode(&[9, 0, 0]),
            Err(WireError::UnsupportedVersion(9))
        );
        let mut out = Vec::new();
        Control::Close {
            code: CloseCode::Normal,
        }
        .encode(&mut out);
        out.push(0);
        assert_eq!(Control::decode(&out), Err(WireError::BadControl));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Control::decode(&bytes);
        }
    }
}
