//! What a registration's tokens allow, as the server tells a daemon of a directory tenant
//! after each `Register` ([`super::ServerMessage::Granted`]): `burrow import` reports it, so the operator sees at
//! once which paths a token lets the daemon expose or connect to.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::directory::TokenRole;
use super::messages::{MAX_PATH_TOKENS, bounded_vec};
use super::name::ServiceName;

/// Most paths in [`Grants::paths`]: one per token a registration presents (its registration
/// token and its path tokens).
pub const MAX_GRANTS: usize = MAX_PATH_TOKENS + 1;

/// One path a token lets the daemon use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The path.
    pub name: ServiceName,
    /// [`TokenRole::Server`]: the daemon may expose it; [`TokenRole::Client`]: it may
    /// connect to it.
    pub role: TokenRole,
}

/// What a registration's tokens allow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// One of its tokens is its tenant's master token: it may expose and connect to every
    /// path of the tenant.
    pub master: bool,
    /// The paths its path tokens (and a path's token it registered with) allow, one per token,
    /// at most [`MAX_GRANTS`].
    #[serde(deserialize_with = "bounded_grants")]
    pub paths: Vec<Grant>,
}

fn bounded_grants<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Grant>, D::Error> {
    bounded_vec(d, MAX_GRANTS)
}

impl Grants {
    /// The paths the daemon may expose.
    pub fn exposes(&self) -> impl Iterator<Item = &ServiceName> {
        self.with_role(TokenRole::Server)
    }

    /// The paths the daemon may connect to.
    pub fn connects(&self) -> impl Iterator<Item = &ServiceName> {
        self.with_role(TokenRole::Client)
    }

    fn with_role(&self, role: TokenRole) -> impl Iterator<Item = &ServiceName> {
        self.paths
            .iter()
            .filter(move |g| g.role == role)
            .map(|g| &g.name)
    }
}

impl fmt::Display for Grants {
    /// One line: `master of the tenant`, or `exposes /a, /b; connects to /c`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |names: Vec<&ServiceName>| {
            names
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if self.master {
            parts.push("every path of its tenant (master token)".to_string());
        }
        let exposes: Vec<_> = self.exposes().collect();
        if !exposes.is_empty() {
            parts.push(format!("exposes {}", list(exposes)));
        }
        let connects: Vec<_> = self.connects().collect();
        if !connects.is_empty() {
            parts.push(format!("connects to {}", list(connects)));
        }
        if parts.is_empty() {
            return f.write_str("no path");
        }
        f.write_str(&parts.join("; "))
    }
}

/// What one path token of a registration does, as the server tells the daemon after each
/// `Register` that presented path tokens (the server message `Tokens`, one per path
/// token in the order they were presented). A refused token costs the registration nothing:
/// the server registers with the others, and the daemon names the refused one in its log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenUse {
    /// A path's server or client token: what it lets the daemon do.
    Path(Grant),
    /// Its tenant's master token.
    Master,
    /// A daemon token (it grants no path).
    Daemon,
    /// Unknown to the server, redeemed, or a token of another tenant: ignored.
    Refused,
}

impl fmt::Display for TokenUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(Grant {
                name,
                role: TokenRole::Server,
            }) => write!(f, "exposes {name}"),
            Self::Path(Grant {
                name,
                role: TokenRole::Client,
            }) => write!(f, "connects to {name}"),
            Self::Master => f.write_str("master token"),
            Self::Daemon => f.write_str("daemon token"),
            Self::Refused => f.write_str("refused"),
        }
    }
}

/// How a refused token is named in logs and answers: its first 6 characters.
#[must_use]
pub fn token_start(token: &str) -> String {
    token.chars().take(6).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_read_as_one_line() {
        let name = |s: &str| ServiceName::parse(s).unwrap();
        let grants = Grants {
            master: false,
            paths: vec![
                Grant {
                    name: name("/a"),
                    role: TokenRole::Server,
                },
                Grant {
                    name: name("/b"),
                    role: TokenRole::Client,
                },
                Grant {
                    name: name("/c"),
                    role: TokenRole::Server,
                },
            ],
        };
        assert_eq!(grants.to_string(), "exposes /a, /c; connects to /b");
        assert_eq!(Grants::default().to_string(), "no path");
        let master = Grants {
            master: true,
            ..Grants::default()
        };
        assert_eq!(
            master.to_string(),
            "every path of its tenant (master token)"
        );
    }
}
