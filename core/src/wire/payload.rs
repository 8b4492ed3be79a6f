//! What the plaintext of a transport packet holds.
//!
//! ```text
//! empty                      keepalive: proves the session is alive, holds NAT bindings open
//! 0x00 | stream frames       the stream layer's packet (see crate::stream)
//! 0x01 | control message     version byte + postcard body (see super::control)
//! 0x02 | bytes               one unreliable datagram for the application
//! 0x03 | version | postcard   a rendezvous message (see crate::rendezvous::messages)
//! ```

use super::WireError;

/// The first plaintext byte of a non-empty transport packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PayloadKind {
    /// Frames of the stream layer.
    Stream = 0,
    /// A control message.
    Control = 1,
    /// An application datagram.
    Datagram = 2,
    /// A rendezvous message between a daemon and its server.
    Rendezvous = 3,
}

/// A decoded transport plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
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
}

impl<'a> Payload<'a> {
    /// Splits the kind byte off a plaintext.
    pub fn parse(plaintext: &'a [u8]) -> Result<Self, WireError> {
        match plaintext.split_first() {
            None => Ok(Payload::KeepAlive),
            Some((0, rest)) => Ok(Payload::Stream(rest)),
            Some((1, rest)) => Ok(Payload::Control(rest)),
            Some((2, rest)) => Ok(Payload::Datagram(rest)),
            Some((3, rest)) => Ok(Payload::Rendezvous(rest)),
            Some((&k, _)) => Err(WireError::UnknownKind(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_split_off_the_first_byte() {
        assert_eq!(Payload::parse(&[]), Ok(Payload::KeepAlive));
        assert_eq!(Payload::parse(&[0, 1]), Ok(Payload::Stream(&[1])));
        assert_eq!(Payload::parse(&[1, 2]), Ok(Payload::Control(&[2])));
        assert_eq!(Payload::parse(&[2]), Ok(Payload::Datagram(&[])));
        assert_eq!(Payload::parse(&[3, 1]), Ok(Payload::Rendezvous(&[1])));
        assert_eq!(Payload::parse(&[4]), Err(WireError::UnknownKind(4)));
    }
}
