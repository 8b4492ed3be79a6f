//! [`ServiceName`]: the path-like names services are published under (`/toronto/mysql`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest service name, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 128;
/// Most segments in a service name.
pub(crate) const MAX_SEGMENTS: usize = 8;

/// A validated service name: a path such as `/toronto/mysql`.
///
/// It starts with `/` and has 1 to 8 (`MAX_SEGMENTS`) segments separated by `/`; each segment is
/// non-empty, made of ASCII letters, digits, `.`, `_` and `-`, and is neither `.` nor `..`.
/// The whole name is at most 128 (`MAX_NAME_LEN`) bytes. Names compare byte-wise (case matters).
///
/// It serializes as a string and is validated again when deserialized, so a name decoded from
/// the network is as well-formed as one parsed from a config file.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);

/// Why a service name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name does not start with `/`.
    NoLeadingSlash,
    /// The name is longer than 128 (`MAX_NAME_LEN`) bytes; its length is given.
    TooLong(usize),
    /// The name has more than 8 (`MAX_SEGMENTS`) segments.
    TooManySegments,
    /// Segment number `index` (from 1) is empty (`//`, or a trailing `/`).
    EmptySegment {
        /// Which segment, counting from 1.
        index: usize,
    },
    /// Segment number `index` is `.` or `..`.
    DotSegment {
        /// Which segment, counting from 1.
        index: usize,
    },
    /// The name holds a character other than `A-Z a-z 0-9 . _ -` and `/`.
    BadChar {
        /// The character.
        ch: char,
        /// Its byte offset in the name.
        at: usize,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid service name: ")?;
        match self {
            Self::NoLeadingSlash => f.write_str("it must start with '/', like /toronto/mysql"),
            Self::TooLong(n) => write!(
                f,
                "it is {n} bytes long; at most {MAX_NAME_LEN} are allowed"
            ),
            Self::TooManySegments => write!(f, "it has more than {MAX_SEGMENTS} path segments"),
            Self::EmptySegment { index } => write!(
                f,
                "segment {index} is empty (no '//' and no trailing '/', please)"
            ),
            Self::DotSegment { index } => write!(f, "segment {index} is '.' or '..'"),
            Self::BadChar { ch, at } => write!(
                f,
                "character {ch:?} at byte {at} is not allowed (use letters, digits, '.', '_' and '-')"
            ),
        }
    }
}

impl std::error::Error for NameError {}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

impl ServiceName {
    /// Parses and validates a name.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(text.len()));
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(NameError::NoLeadingSlash);
        };
        // The offset of the current segment in `text`, for error positions.
        let mut offset = 1;
        for (i, segment) in rest.split('/').enumerate() {
            let index = i + 1;
            if index > MAX_SEGMENTS {
                return Err(NameError::TooManySegments);
            }
            if segment.is_empty() {
                return Err(NameError::EmptySegment { index });
            }
            if let Some(pos) = segment.bytes().position(|b| !allowed(b)) {
                // `pos` is a byte offset where a non-allowed byte starts; allowed bytes are all
                // ASCII, so it is a char boundary.
                let ch = segment[pos..].chars().next().unwrap_or('?');
                return Err(NameError::BadChar {
                    ch,
                    at: offset + pos,
                });
            }
            if segment == "." || segment == ".." {
                return Err(NameError::DotSegment { index });
            }
            offset += segment.len() + 1;
        }
        Ok(Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, without the slashes.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0[1..].split('/')
    }
}

impl FromStr for ServiceName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceName({})", self.0)
    }
}

impl Serialize for ServiceName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ServiceName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a service name such as /toronto/mysql")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ServiceName, E> {
                ServiceName::parse(v).map_err(E::custom)
            }
        }
        // Borrowing a &str first means an over-long name is refused before it is copied.
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn good_names_parse() {
        for text in ["/a", "/toronto/mysql", "/x.y_z-1/A/b/c/d/e/f/g", "/.hidden"] {
            let name = ServiceName::parse(text).unwrap();
            assert_eq!(name.as_str(), text);
            assert_eq!(name.to_string(), text);
        }
        let name: ServiceName = "/toronto/mysql".parse().unwrap();
        assert_eq!(name.segments().collect::<Vec<_>>(), ["toronto", "mysql"]);
        let max = format!("/{}", "a".repeat(MAX_NAME_LEN - 1));
        assert!(ServiceName::parse(&max).is_ok());
    }

    #[test]
    fn bad_names_say_why() {
        use NameError::*;
        let cases: &[(&str, NameError)] = &[
            ("", NoLeadingSlash),
            ("toronto/mysql", NoLeadingSlash),
            ("/", EmptySegment { index: 1 }),
            ("/a//b", EmptySegment { index: 2 }),
            ("/a/", EmptySegment { index: 2 }),
            ("/a/..", DotSegment { index: 2 }),
            ("/./a", DotSegment { index: 1 }),
            ("/a/b c", BadChar { ch: ' ', at: 4 }),
            ("/tö", BadChar { ch: 'ö', at: 2 }),
            ("/1/2/3/4/5/6/7/8/9", TooManySegments),
        ];
        for (text, err) in cases {
            assert_eq!(ServiceName::parse(text).as_ref(), Err(err), "{text:?}");
            assert!(err.to_string().starts_with("invalid service name: "));
        }
        let long = format!("/{}", "a".repeat(MAX_NAME_LEN));
        assert_eq!(ServiceName::parse(&long), Err(TooLong(MAX_NAME_LEN + 1)));
    }

    #[test]
    fn deserializing_validates() {
        let good = postcard::to_allocvec(&ServiceName::parse("/a/b").unwrap()).unwrap();
        assert_eq!(
            postcard::from_bytes::<ServiceName>(&good).unwrap().as_str(),
            "/a/b"
        );
        let bad = postcard::to_allocvec("a/b").unwrap();
        assert!(postcard::from_bytes::<ServiceName>(&bad).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(text in "\\PC{0,40}|(/[a-z.]{0,4}){0,10}") {
            if let Ok(name) = ServiceName::parse(&text) {
                prop_assert_eq!(name.as_str(), text.as_str());
                let bytes = postcard::to_allocvec(&name).unwrap();
                prop_assert_eq!(postcard::from_bytes::<ServiceName>(&bytes).unwrap(), name);
            }
        }
    }
}
