//! The `known_services` file: each service's pinned destination key (ssh known_hosts), as a
//! daemon keeps it in its state directory.
//!
//! One `NAME KEY` pair per line (a service name, a space, the base64 public key); blank lines
//! and `#` comments are ignored. Core holds the pins in memory
//! ([`crate::config::RendezvousConfig::pinned`]) and hands the whole file out in
//! [`super::Output::Save`] when one is added; the runtime writes it and, at start, reads it back
//! with [`parse_known_services`].

use std::collections::BTreeMap;

use crate::crypto::PublicKey;
use crate::rendezvous::ServiceName;

/// The file's name in the state directory.
pub const KNOWN_SERVICES_FILE: &str = "known_services";
/// Largest file read, in bytes (each line is at most about 180 bytes).
pub const MAX_KNOWN_SERVICES_LEN: usize = 1024 * 1024;
/// Most services the file may pin.
pub const MAX_KNOWN_SERVICES: usize = 4096;

/// Parses the file's text; an error names the line and what is wrong with it.
pub fn parse_known_services(text: &str) -> Result<BTreeMap<ServiceName, PublicKey>, String> {
    if text.len() > MAX_KNOWN_SERVICES_LEN {
        return Err(format!(
            "{} bytes, more than the {MAX_KNOWN_SERVICES_LEN} allowed",
            text.len()
        ));
    }
    let mut pins = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |why: String| format!("line {}: {why}", i + 1);
        let mut words = line.split_whitespace();
        let (Some(name), Some(key), None) = (words.next(), words.next(), words.next()) else {
            return Err(at("expected `NAME KEY`".into()));
        };
        let name = ServiceName::parse(name).map_err(|e| at(format!("`{name}`: {e}")))?;
        let key: PublicKey = key.parse().map_err(|e| at(format!("{e}")))?;
        if pins.insert(name.clone(), key).is_some() {
            return Err(at(format!("{name} is listed twice")));
        }
        if pins.len() > MAX_KNOWN_SERVICES {
            return Err(format!("more than {MAX_KNOWN_SERVICES} services"));
        }
    }
    Ok(pins)
}

/// The file's text for `pins`.
pub(crate) fn format_known_services(pins: &BTreeMap<ServiceName, PublicKey>) -> String {
    let mut out = String::from(
        "# burrow: the destination key pinned for each service (first use, or its peer_key).\n\
         # Remove a line to accept a new key for that service.\n",
    );
    for (name, key) in pins {
        out.push_str(&format!("{name} {key}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use proptest::prelude::*;

    fn key(n: u8) -> PublicKey {
        SecretKey::from_bytes([n; 32]).public_key()
    }

    #[test]
    fn the_file_reads_back_what_was_written() {
        let pins = BTreeMap::from([
            (ServiceName::parse("/home/ssh").unwrap(), key(1)),
            (ServiceName::parse("/office/db").unwrap(), key(2)),
        ]);
        assert_eq!(
            parse_known_services(&format_known_services(&pins)),
            Ok(pins)
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let k = key(1).to_string();
        for (text, expect) in [
            ("/a".to_string(), "line 1: expected `NAME KEY`"),
            (format!("# c\n/a {k} extra"), "line 2: expected"),
            (format!("nope {k}"), "line 1: `nope`"),
            ("/a notakey".to_string(), "line 1:"),
            (format!("/a {k}\n/a {k}"), "line 2: /a is listed twice"),
            ("x".repeat(MAX_KNOWN_SERVICES_LEN + 1), "bytes, more than"),
        ] {
            let err = parse_known_services(&text).unwrap_err();
            assert!(err.contains(expect), "{err} for {:.40}", text);
        }
        let many: String = (0..=MAX_KNOWN_SERVICES)
            .map(|i| format!("/s{i} {k}\n"))
            .collect();
        assert!(
            parse_known_services(&many)
                .unwrap_err()
                .contains("more than 4096")
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = parse_known_services(&text);
        }
    }
}
