//! Services: the names daemons expose, and the header that opens every stream with the name
//! of the service it is for.
//!
//! The opener of a stream writes `[version = 1][length: u8][name bytes]` before any data. The
//! receiving endpoint reads and checks that header itself, so the application only ever sees
//! [`crate::Event::IncomingStream`] for a service it exposes, with the local target it gave;
//! a stream for anything else is reset with [`UNKNOWN_SERVICE`].

use std::collections::BTreeMap;

use crate::rendezvous::ServiceName;

/// Version byte of the stream header.
pub(crate) const HEADER_VERSION: u8 = 1;
/// Reset code for a stream whose service this endpoint does not expose.
pub(crate) const UNKNOWN_SERVICE: u64 = 0x5E01;
/// Reset code for a stream whose header does not parse.
pub(crate) const BAD_HEADER: u64 = 0x5E02;

/// The stream header for `name`.
pub(crate) fn header(name: &ServiceName) -> Vec<u8> {
    let bytes = name.as_str().as_bytes();
    let len = u8::try_from(bytes.len()).expect("service names are at most 128 bytes");
    let mut out = Vec::with_capacity(2 + bytes.len());
    out.extend_from_slice(&[HEADER_VERSION, len]);
    out.extend_from_slice(bytes);
    out
}

/// A header being read: how many more bytes it needs, and the parsed name once complete.
#[derive(Debug, Default)]
pub(crate) struct HeaderReader {
    bytes: Vec<u8>,
}

/// What a header read so far amounts to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderState {
    /// Read this many more bytes.
    Need(usize),
    /// Complete and valid.
    Done(ServiceName),
    /// Not a valid header.
    Bad,
}

impl HeaderReader {
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
    }

    pub(crate) fn state(&self) -> HeaderState {
        match self.bytes.as_slice() {
            [] => HeaderState::Need(2),
            [v, ..] if *v != HEADER_VERSION => HeaderState::Bad,
            [_] => HeaderState::Need(1),
            [_, len, name @ ..] => {
                let len = usize::from(*len);
                if name.len() < len {
                    return HeaderState::Need(len - name.len());
                }
                std::str::from_utf8(name)
                    .ok()
                    .and_then(|text| ServiceName::parse(text).ok())
                    .map_or(HeaderState::Bad, HeaderState::Done)
            }
        }
    }
}

/// The services this endpoint exposes and where their connections go locally.
#[derive(Clone, Debug, Default)]
pub(crate) struct Exposed(BTreeMap<ServiceName, String>);

impl Exposed {
    pub(crate) fn insert(&mut self, name: ServiceName, target: String) {
        self.0.insert(name, target);
    }

    pub(crate) fn remove(&mut self, name: &ServiceName) -> bool {
        self.0.remove(name).is_some()
    }

    pub(crate) fn target(&self, name: &ServiceName) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &ServiceName> {
        self.0.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_header_reads_back_byte_by_byte() {
        let name = ServiceName::parse("/toronto/mysql").unwrap();
        let bytes = header(&name);
        let mut reader = HeaderReader::default();
        for (i, b) in bytes.iter().enumerate() {
            assert!(matches!(reader.state(), HeaderState::Need(n) if n <= bytes.len() - i));
            reader.push(&[*b]);
        }
        assert_eq!(reader.state(), HeaderState::Done(name));
    }

    #[test]
    fn bad_headers_are_refused() {
        for bad in [
            &[2u8, 1, b'/'][..],
            &[1, 3, b'x', b'y', b'z'],
            &[1, 2, 0xFF, 0xFE],
        ] {
            let mut reader = HeaderReader::default();
            reader.push(bad);
            assert_eq!(reader.state(), HeaderState::Bad, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut reader = HeaderReader::default();
            reader.push(&bytes);
            let _ = reader.state();
        }
    }
}
