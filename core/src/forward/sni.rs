//! The server name a TLS client asks for, read from its first bytes without terminating TLS
//! (`burrow server --publish-sni`).
//!
//! A connection to the server's SNI port starts with a TLS ClientHello; its `server_name`
//! extension (RFC 6066 section 3) names the published path to route the connection to. This
//! is a hand-written reader of exactly that much of TLS (RFC 8446 section 4.1.2, the same
//! layout in TLS 1.0 to 1.3): records of type handshake, one ClientHello in them (possibly
//! spread over several records), its extensions, the `host_name` entry of `server_name`.
//! Nothing else of the handshake is looked at, and the bytes read are handed on untouched.
//!
//! The input is hostile: [`read_sni`] never panics, never reads past what it was given, and
//! gives up on anything over [`MAX_HELLO`] bytes of records; the caller bounds the time
//! to the first bytes.

use std::fmt;

/// Most bytes of TLS records read while looking for the name: a ClientHello is one or two
/// records (a post-quantum key share makes it about 1.8 KiB; 16 KiB is one full record).
pub const MAX_HELLO: usize = 16 * 1024 + 5;

/// Longest host name (RFC 1035: 253 characters in text form).
const MAX_HOST: usize = 253;

/// What the first bytes of a connection say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sni {
    /// Not enough bytes yet: read more (the ClientHello so far is well-formed).
    NeedMore,
    /// The host name asked for, in lower case.
    Name(String),
    /// No name can come from this connection; why, for the log.
    Refused(SniError),
}

/// Why a connection's first bytes give no server name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SniError {
    /// The bytes are not a TLS handshake record.
    NotTls,
    /// The first handshake message is not a ClientHello.
    NotClientHello,
    /// A length field points past its container, or a field is malformed.
    Malformed,
    /// The ClientHello has no `server_name` extension with a host name.
    NoName,
    /// The host name is not a valid DNS name.
    BadName,
    /// More than [`MAX_HELLO`] bytes without a complete ClientHello.
    TooLarge,
}

impl fmt::Display for SniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotTls => "not a TLS connection (no TLS handshake record)",
            Self::NotClientHello => "the first TLS handshake message is not a ClientHello",
            Self::Malformed => "a malformed TLS ClientHello",
            Self::NoName => "the TLS ClientHello names no server (no SNI)",
            Self::BadName => "the TLS ClientHello's server name is not a valid host name",
            Self::TooLarge => "the TLS ClientHello is larger than the server reads",
        })
    }
}

impl std::error::Error for SniError {}

/// Reads the server name from `bytes`, the first bytes a client sent (everything received so
/// far, from the start). Call it again with more bytes after [`Sni::NeedMore`].
pub fn read_sni(bytes: &[u8]) -> Sni {
    match handshake_message(bytes) {
        Ok(Some(hello)) => match server_name(hello) {
            Ok(name) => Sni::Name(name),
            Err(e) => Sni::Refused(e),
        },
        Ok(None) if bytes.len() >= MAX_HELLO => Sni::Refused(SniError::TooLarge),
        Ok(None) => Sni::NeedMore,
        Err(e) => Sni::Refused(e),
    }
}

/// The body of the first handshake message, once every record it spans has arrived
/// (`None`: not yet).
fn handshake_message(mut bytes: &[u8]) -> Result<Option<Vec<u8>>, SniError> {
    let mut message = Vec::new();
    loop {
        if bytes.is_empty() {
            return Ok(None);
        }
        if bytes[0] != 22 {
            // Content type handshake.
            return Err(SniError::NotTls);
        }
        if bytes.len() >= 2 && bytes[1] != 3 {
            // Record versions are 3.x (SSL 3.0 to TLS 1.3's legacy 3.1 / 3.3).
            return Err(SniError::NotTls);
        }
        if bytes.len() < 5 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        if len == 0 || len > 16 * 1024 {
            return Err(SniError::Malformed);
        }
        if message.is_empty() && bytes[5..].first().is_some_and(|&t| t != 1) {
            return Err(SniError::NotClientHello);
        }
        let Some(fragment) = bytes.get(5..5 + len) else {
            return Ok(None);
        };
        message.extend_from_slice(fragment);
        bytes = &bytes[5 + len..];
        if message.len() >= 4 {
            let body = (usize::from(message[1]) << 16)
                | (usize::from(message[2]) << 8)
                | usize::from(message[3]);
            if 4 + body > MAX_HELLO {
                return Err(SniError::TooLarge);
            }
            if message.len() >= 4 + body {
                message.truncate(4 + body);
                return Ok(Some(message.split_off(4)));
            }
        }
    }
}

/// A cursor over a length-prefixed structure that fails instead of reading past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SniError> {
        if n > self.0.len() {
            return Err(SniError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<usize, SniError> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u16(&mut self) -> Result<usize, SniError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A vector with a `width`-byte length in front.
    fn vec(&mut self, width: usize) -> Result<Reader<'a>, SniError> {
        let len = if width == 1 { self.u8()? } else { self.u16()? };
        Ok(Reader(self.take(len)?))
    }
}

/// The host name in a ClientHello body.
fn server_name(hello: Vec<u8>) -> Result<String, SniError> {
    let mut r = Reader(&hello);
    r.take(2 + 32)?; // legacy_version, random
    r.vec(1)?; // legacy_session_id
    r.vec(2)?; // cipher_suites
    r.vec(1)?; // legacy_compression_methods
    if r.0.is_empty() {
        return Err(SniError::NoName); // no extensions at all (SSL 3.0 style)
    }
    let mut extensions = r.vec(2)?;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let mut data = extensions.vec(2)?;
        if kind != 0 {
            continue;
        }
        let mut names = data.vec(2)?;
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec(2)?;
            if name_type == 0 {
                return host_name(name.0);
            }
        }
        return Err(SniError::NoName);
    }
    Err(SniError::NoName)
}

/// `bytes` as a lower-case DNS host name: dot-separated labels of letters, digits and `-`,
/// neither starting nor ending with `-`, 1 to 63 bytes each, 253 in all (a trailing dot is
/// dropped).
pub fn host_name(bytes: &[u8]) -> Result<String, SniError> {
    let bytes = bytes.strip_suffix(b".").unwrap_or(bytes);
    if bytes.is_empty() || bytes.len() > MAX_HOST {
        return Err(SniError::BadName);
    }
    for label in bytes.split(|&b| b == b'.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-');
        if !ok {
            return Err(SniError::BadName);
        }
    }
    Ok(String::from_utf8_lossy(bytes).to_ascii_lowercase())
}

#[cfg(test)]
pub(crate) mod sample {
    //! ClientHellos as TLS clients send them, for tests.

    /// A ClientHello record naming `host` (none for `None`), with `pad` bytes of an extra
    /// extension before `server_name`, as rustls or curl would send.
    pub(crate) fn hello(host: Option<&str>, pad: usize) -> Vec<u8> {
        let mut ext = Vec::new();
        ext.extend_from_slice(&0x0015u16.to_be_bytes()); // padding
        ext.extend_from_slice(&(pad as u16).to_be_bytes());
        ext.extend(std::iter::repeat_n(0, pad));
        if let Some(host) = host {
            let h = host.as_bytes();
            ext.extend_from_slice(&0u16.to_be_bytes());
            ext.extend_from_slice(&((h.len() + 5) as u16).to_be_bytes());
            ext.extend_from_slice(&((h.len() + 3) as u16).to_be_bytes());
            ext.push(0);
            ext.extend_from_slice(&(h.len() as u16).to_be_bytes());
            ext.extend_from_slice(h);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(32);
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut msg = vec![1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        records(&msg, 16 * 1024)
    }

    /// `msg` cut into handshake records of at most `size` bytes.
    pub(crate) fn records(msg: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in msg.chunks(size) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::sample::{hello, records};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_name_of_a_client_hello() {
        let h = hello(Some("Blog.Example.COM"), 10);
        assert_eq!(read_sni(&h), Sni::Name("blog.example.com".into()));
    }

    #[test]
    fn asks_for_more_until_the_hello_is_whole() {
        let h = hello(Some("a.example"), 300);
        for cut in 0..h.len() {
            assert_eq!(read_sni(&h[..cut]), Sni::NeedMore, "cut at {cut}");
        }
        assert_eq!(read_sni(&h), Sni::Name("a.example".into()));
    }

    #[test]
    fn a_hello_spread_over_records_is_read() {
        let h = hello(Some("split.example"), 2000);
        let msg = &h[5..];
        let split = records(msg, 100);
        assert_eq!(read_sni(&split), Sni::Name("split.example".into()));
        assert_eq!(read_sni(&split[..split.len() - 1]), Sni::NeedMore);
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            read_sni(b"GET / HTTP/1.1\r\n"),
            Sni::Refused(SniError::NotTls)
        );
        assert_eq!(read_sni(&hello(None, 4)), Sni::Refused(SniError::NoName));
        assert_eq!(
            read_sni(&hello(Some("bad_name.example"), 4)),
            Sni::Refused(SniError::BadName)
        );
        assert_eq!(
            read_sni(&hello(Some("-x.example"), 4)),
            Sni::Refused(SniError::BadName)
        );
        // A ServerHello (type 2) where a ClientHello belongs.
        assert_eq!(
            read_sni(&[22, 3, 3, 0, 4, 2, 0, 0, 0]),
            Sni::Refused(SniError::NotClientHello)
        );
        // A zero-length record, and an oversized one.
        assert_eq!(
            read_sni(&[22, 3, 1, 0, 0]),
            Sni::Refused(SniError::Malformed)
        );
        assert_eq!(
            read_sni(&[22, 3, 1, 0x40, 0x01]),
            Sni::Refused(SniError::Malformed)
        );
        // A handshake message that says it is 1 MiB long.
        assert_eq!(
            read_sni(&[22, 3, 1, 0, 4, 1, 0x10, 0, 0]),
            Sni::Refused(SniError::TooLarge)
        );
    }

    #[test]
    fn a_length_past_its_container_is_malformed() {
        let mut h = hello(Some("a.example"), 4);
        // The session id's length byte (after record header 5, handshake header 4, version
        // 2 and random 32) claims more than the message holds.
        h[5 + 4 + 2 + 32] = 255;
        assert_eq!(read_sni(&h), Sni::Refused(SniError::Malformed));
    }

    #[test]
    fn endless_small_records_stop_at_the_bound() {
        // A handshake message announcing 16 KiB, fed one byte per record: the reader gives
        // up once it has read MAX_HELLO bytes, whatever the message says.
        let mut msg = vec![1, 0, 0x40, 0];
        msg.extend(std::iter::repeat_n(0, 16 * 1024));
        let many = records(&msg, 1);
        let cut = &many[..MAX_HELLO + 10];
        assert_eq!(read_sni(cut), Sni::Refused(SniError::TooLarge));
    }

    #[test]
    fn host_names_are_checked() {
        assert_eq!(host_name(b"a.b."), Ok("a.b".into()));
        assert_eq!(host_name(b""), Err(SniError::BadName));
        assert_eq!(host_name(b"a..b"), Err(SniError::BadName));
        assert_eq!(host_name(&[b'a'; 64]), Err(SniError::BadName));
        assert_eq!(host_name("é.example".as_bytes()), Err(SniError::BadName));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = read_sni(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_a_record_header_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let mut bytes = vec![22, 3, 1];
            bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&body);
            let _ = read_sni(&bytes);
        }

        #[test]
        fn a_hello_with_any_valid_name_and_split_is_read(
            labels in proptest::collection::vec("[a-z0-9]{1,20}", 1..5),
            pad in 0usize..3000,
            size in 1usize..2000,
        ) {
            let host = labels.join(".");
            let h = hello(Some(&host), pad);
            let split = records(&h[5..], size);
            if split.len() < MAX_HELLO {
                prop_assert_eq!(read_sni(&split), Sni::Name(host));
            }
        }

        #[test]
        fn a_mutated_hello_never_panics_nor_names_something_invalid(
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut h = hello(Some("x.example"), 20);
            let i = pos.index(h.len());
            h[i] = byte;
            if let Sni::Name(n) = read_sni(&h) {
                prop_assert!(host_name(n.as_bytes()).is_ok());
            }
        }
    }
}
