//! What the server counts for its metrics: registrations, and relayed bytes per token.

use std::collections::BTreeMap;

use super::Server;
use crate::crypto::PublicKey;
use crate::stats::ServerCounters;

/// Most tokens whose relayed bytes are kept; past it, tokens without a live registration are
/// forgotten (the registry bounds the live ones).
const MAX_COUNTED_TOKENS: usize = 1024;

/// The server's own counters.
#[derive(Debug, Default)]
pub(super) struct Counted {
    registrations: u64,
    refused: u64,
    /// Relayed bytes by token (the token itself: hashed only when reported).
    relayed: BTreeMap<String, u64>,
}

impl Counted {
    /// Counts a registration, `accepted` or refused.
    pub(super) fn registration(&mut self, accepted: bool) {
        if accepted {
            self.registrations += 1;
        } else {
            self.refused += 1;
        }
    }
}

impl Server {
    /// Counts `bytes` relayed from `from` against its token.
    pub(crate) fn count_relayed(&mut self, from: &PublicKey, bytes: u64) {
        let Some(token) = self.registry.get(from).map(|r| r.token()) else {
            return;
        };
        match self.counted.relayed.get_mut(token) {
            Some(n) => *n += bytes,
            None => {
                if self.counted.relayed.len() >= MAX_COUNTED_TOKENS {
                    let registry = &self.registry;
                    self.counted.relayed.retain(|t, _| registry.has_token(t));
                }
                self.counted.relayed.insert(token.to_owned(), bytes);
            }
        }
    }

    /// The counters as the metrics show them: tokens by a short hash.
    pub(crate) fn counters(&self) -> ServerCounters {
        let relayed_bytes_by_token = self
            .counted
            .relayed
            .iter()
            .filter(|(t, _)| self.registry.has_token(t))
            .map(|(t, n)| (token_label(t), *n))
            .collect();
        ServerCounters {
            registrations_live: self.registry.len() as u64,
            registrations: self.counted.registrations,
            registrations_refused: self.counted.refused,
            relayed_bytes_by_token,
        }
    }
}

/// The first 8 hex digits of `token`'s hash: enough to tell tokens apart on a dashboard,
/// nothing to register with.
pub(crate) fn token_label(token: &str) -> String {
    let hash = crate::rendezvous::directory::TokenHash::of(token);
    hash.as_bytes()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_label_is_short_hex_and_not_the_token() {
        let label = token_label("secret-token");
        assert_eq!(label.len(), 8);
        assert!(label.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(token_label("other"), label);
    }
}
