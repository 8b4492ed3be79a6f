//! Paths a tenant's master attached to one of its daemons (`burrow admin rattach`): the
//! daemon exposes the path toward a target, or listens for it on an address, as if it had
//! run `burrow attach` itself, and the attachment authorises it to (as the path's server or
//! client token would). The server pushes each to its daemon
//! ([`crate::rendezvous::ServerMessage`]'s `Attach`, acknowledged and retransmitted), and
//! again whenever the daemon registers, so one that was away gets it when it comes back.
//! A detachment stays as a record without an [`Attachment`] until its daemon acknowledges it.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, Serialize};

use super::records::TenantName;
use crate::crypto::PublicKey;
use crate::rendezvous::ServiceName;
use crate::rendezvous::messages::bounded_string;

/// Longest target of an exposed attachment, in bytes (`HOST:PORT` or `unix:PATH`).
pub const MAX_TARGET_LEN: usize = 200;
/// Most paths attached to one daemon by its master (detachments waiting for their
/// acknowledgement included).
pub const MAX_ATTACHMENTS_PER_DAEMON: usize = 16;

/// What a daemon does with a path its master attached to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attachment {
    /// Expose the path: its connections go to `target` (at most [`MAX_TARGET_LEN`] bytes).
    Expose {
        /// `HOST:PORT` or `unix:PATH`, on the daemon's side.
        #[serde(deserialize_with = "bounded_target")]
        target: String,
    },
    /// Connect to the path: listen for it on `addr`.
    Listen {
        /// The local address, on the daemon's side.
        addr: SocketAddr,
    },
}

fn bounded_target<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    bounded_string(d, MAX_TARGET_LEN)
}

impl Attachment {
    /// Whether it makes the daemon a server of the path (else a client).
    #[must_use]
    pub fn exposes(&self) -> bool {
        matches!(self, Self::Expose { .. })
    }

    /// Checks what the server stores and pushes: a target of 1 to [`MAX_TARGET_LEN`]
    /// printable characters.
    ///
    /// # Errors
    /// What is wrong, for the master.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::Expose { target } if target.is_empty() || target.len() > MAX_TARGET_LEN => Err(
                format!("a target has 1 to {MAX_TARGET_LEN} bytes (HOST:PORT or unix:PATH)"),
            ),
            Self::Expose { target } if target.chars().any(char::is_control) => {
                Err("a target holds no control characters".into())
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expose { target } => write!(f, "exposes it toward {target}"),
            Self::Listen { addr } => write!(f, "listens for it on {addr}"),
        }
    }
}

/// A path attached to (or being detached from) one daemon of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentRecord {
    /// The tenant.
    pub tenant: TenantName,
    /// The daemon's key.
    pub daemon: PublicKey,
    /// The path (declared in the tenant).
    pub name: ServiceName,
    /// What the daemon does with it; `None` while a detachment waits for the daemon's
    /// acknowledgement (it authorises nothing).
    pub attach: Option<Attachment>,
}
