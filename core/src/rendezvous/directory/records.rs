//! The directory's records: [`TenantRecord`], [`PathRecord`], and the [`TokenHash`] and
//! [`TenantName`] they are made of.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use blake2::{Blake2s256, Digest};

use crate::crypto::PublicKey;
use crate::rendezvous::ServiceName;

/// Most client keys a fixed path remembers.
pub const MAX_FIXED_CLIENTS: usize = 16;
/// Longest tenant name, in bytes.
pub const MAX_TENANT_NAME_LEN: usize = 32;

/// The BLAKE2s-256 hash of a token: all the server stores of it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    #[must_use]
    pub fn of(token: &str) -> Self {
        Self(Blake2s256::digest(token.as_bytes()).into())
    }

    /// The 32 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From 32 stored bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// A tenant's name: 1 to [`MAX_TENANT_NAME_LEN`] bytes of `a-z 0-9 _ -`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantName(String);

impl TenantName {
    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        check_name(s, "tenant", MAX_TENANT_NAME_LEN)?;
        Ok(Self(s.to_string()))
    }
}

/// Checks a name of `what` (a tenant or a daemon): 1 to `max` bytes of `a-z 0-9 _ -`.
pub(super) fn check_name(s: &str, what: &str, max: usize) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("a {what} name has 1 to {max} characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
    {
        return Err(format!(
            "a {what} name is made of a-z, 0-9, _ and -; {c:?} is not allowed"
        ));
    }
    Ok(())
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A tenant: a namespace of paths and the hash of its master token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    /// Its name.
    pub name: TenantName,
    /// The hash of its master token.
    pub master: TokenHash,
    /// The limits the server's operator set for it (`burrow server init`/`limits`).
    pub limits: TenantQuota,
}

/// Most a server's operator may set a tenant's limit of paths or daemons to.
pub const MAX_QUOTA: u32 = 1_000_000;

/// The limits a server's operator set for one tenant; `None`: the server's default
/// ([`super::MAX_PATHS_PER_TENANT`] paths, [`super::MAX_DAEMONS_PER_TENANT`] daemons, the
/// server's relay rate per token).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantQuota {
    /// Most paths its master may declare (1 to [`MAX_QUOTA`]).
    pub max_paths: Option<u32>,
    /// Most daemons its master may register (1 to [`MAX_QUOTA`]).
    pub max_daemons: Option<u32>,
    /// Bytes per second its daemons may relay through the server together (at least 1).
    pub relay_bytes_per_sec: Option<u64>,
}

impl TenantQuota {
    /// Checks what an operator asks for: every limit set is at least 1, and paths and
    /// daemons at most [`MAX_QUOTA`].
    ///
    /// # Errors
    /// Which limit is out of range, for the operator.
    pub fn check(&self) -> Result<(), String> {
        for (what, n) in [
            ("--max-paths", self.max_paths),
            ("--max-daemons", self.max_daemons),
        ] {
            if n.is_some_and(|n| n == 0 || n > MAX_QUOTA) {
                return Err(format!(
                    "{what} is 1 to {MAX_QUOTA} (leave it out for the default)"
                ));
            }
        }
        if self.relay_bytes_per_sec == Some(0) {
            return Err("--relay-rate is at least 1 byte/s (leave it out for the default)".into());
        }
        Ok(())
    }

    /// Most paths, with the default filled in.
    #[must_use]
    pub fn paths(&self) -> usize {
        self.max_paths
            .map_or(super::MAX_PATHS_PER_TENANT, |n| n as usize)
    }

    /// Most daemons, with the default filled in.
    #[must_use]
    pub fn daemons(&self) -> usize {
        self.max_daemons
            .map_or(super::MAX_DAEMONS_PER_TENANT, |n| n as usize)
    }
}

/// A path a tenant's master declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRecord {
    /// The tenant it belongs to.
    pub tenant: TenantName,
    /// The path.
    pub name: ServiceName,
    /// The hash of the token that lets a daemon expose it.
    pub server: TokenHash,
    /// The hash of the token that lets a daemon connect to it.
    pub client: TokenHash,
    /// Whether it pins its client keys: the first keys that connect are remembered (at most
    /// [`MAX_FIXED_CLIENTS`]) and any other is refused until the master reloads the path.
    pub fixed: bool,
    /// The pinned client keys of a fixed path.
    pub clients: BTreeSet<PublicKey>,
    /// Most connecting daemons introduced to it at once (`None`: no limit of its own). An
    /// introduction stands while both daemons stay registered, so this counts the distinct
    /// daemons that looked the path up and are still registered; one that stops or
    /// unregisters frees its place at once.
    pub max_connections: Option<u32>,
}
