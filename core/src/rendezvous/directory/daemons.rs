//! Daemons a tenant's master registered (`burrow admin register NAME`), bhid-style: each has
//! a name and a **daemon token** of its own, which lets a daemon register in the tenant. The
//! first registration that presents the token binds that daemon's key to the entry; from then
//! on a registration with the token and any other key is refused, until the master rotates
//! the token (`burrow admin redeem daemon NAME`, which unbinds the key) or removes the entry
//! (`burrow admin unregister NAME`). A daemon token grants no path: the daemon uses paths
//! through path tokens or the attachments its master makes, as any daemon of the tenant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use super::admin::TokenRole;
use super::records::{TenantName, TokenHash, check_name};
use crate::crypto::PublicKey;
use crate::rendezvous::ServiceName;
use crate::rendezvous::messages::{bounded_string, bounded_vec};

/// Most daemons one tenant may register.
pub const MAX_DAEMONS_PER_TENANT: usize = 1_000;
/// Longest daemon name, in bytes (the same rules as a tenant name).
pub const MAX_DAEMON_NAME_LEN: usize = 32;
/// Most daemons in one page of `burrow admin daemons`.
pub const MAX_DAEMON_PAGE: usize = 5;
/// Most paths shown in one page of `burrow admin daemons`, all its daemons together (a
/// daemon using more shows this many and counts the rest in [`DaemonView::more_paths`]).
pub const MAX_DAEMON_PAGE_PATHS: usize = 5;

/// A daemon's name: 1 to [`MAX_DAEMON_NAME_LEN`] bytes of `a-z 0-9 _ -`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DaemonName(String);

impl DaemonName {
    /// Sorts before every name (a range's start).
    pub(crate) const MIN: Self = Self(String::new());

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DaemonName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        check_name(s, "daemon", MAX_DAEMON_NAME_LEN)?;
        Ok(Self(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for DaemonName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bounded_string(d, MAX_DAEMON_NAME_LEN)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DaemonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DaemonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A daemon a tenant's master registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonRecord {
    /// The tenant.
    pub tenant: TenantName,
    /// Its name in the tenant.
    pub name: DaemonName,
    /// The hash of its daemon token.
    pub token: TokenHash,
    /// The key bound to it at the first registration with the token; `None` until then.
    pub key: Option<PublicKey>,
}

/// A daemon named either way: by its key, or by the name its master registered it under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DaemonRef {
    /// Its static key.
    Key(#[serde(with = "crate::rendezvous::messages::key_bytes")] PublicKey),
    /// Its name in the tenant (it must be bound to a key).
    Name(DaemonName),
}

impl From<PublicKey> for DaemonRef {
    fn from(key: PublicKey) -> Self {
        Self::Key(key)
    }
}

impl fmt::Display for DaemonRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(k) => write!(f, "{k}"),
            Self::Name(n) => write!(f, "{n}"),
        }
    }
}

/// A path a daemon uses, as `burrow admin daemons` shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DaemonPath {
    /// The path.
    pub name: ServiceName,
    /// Whether it exposes it ([`TokenRole::Server`]) or connects to it.
    pub role: TokenRole,
}

/// One daemon as `burrow admin daemons` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonView {
    /// Its name.
    pub name: DaemonName,
    /// Its bound key; `None`: not yet bound.
    #[serde(with = "crate::rendezvous::messages::opt_key_bytes")]
    pub key: Option<PublicKey>,
    /// Whether it is registered now.
    pub online: bool,
    /// The paths it exposes (from its registration and attachments) and connects to (from
    /// its path tokens and attachments), in order; at most [`MAX_DAEMON_PAGE_PATHS`].
    #[serde(deserialize_with = "bounded_paths")]
    pub paths: Vec<DaemonPath>,
    /// How many more paths it uses than `paths` shows.
    pub more_paths: u32,
}

/// A daemon registered in the tenant now that no daemon entry binds (it registered with a
/// path token or the master token), as `burrow admin daemons` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnnamedView {
    /// Its key.
    #[serde(with = "crate::rendezvous::messages::key_bytes")]
    pub key: PublicKey,
    /// The paths it exposes and connects to, in order; at most [`MAX_DAEMON_PAGE_PATHS`].
    #[serde(deserialize_with = "bounded_paths")]
    pub paths: Vec<DaemonPath>,
    /// How many more paths it uses than `paths` shows.
    pub more_paths: u32,
}

/// Reads a page of unnamed daemons with at most [`MAX_DAEMON_PAGE`] entries.
pub(crate) fn bounded_unnamed_page<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<UnnamedView>, D::Error> {
    bounded_vec(d, MAX_DAEMON_PAGE)
}

fn bounded_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DaemonPath>, D::Error> {
    bounded_vec(d, MAX_DAEMON_PAGE_PATHS)
}

/// Reads a page of daemons with at most [`MAX_DAEMON_PAGE`] entries.
pub(crate) fn bounded_daemon_page<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<DaemonView>, D::Error> {
    bounded_vec(d, MAX_DAEMON_PAGE)
}
