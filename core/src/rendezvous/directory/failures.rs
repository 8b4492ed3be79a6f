//! Attachments that failed on their daemon: a path attached by the master (`burrow admin
//! rattach`) or by the daemon itself (`burrow attach`) that it could not run (its listen
//! address cannot be bound, its target is not usable). The daemon tells the server
//! (`ClientMessage::AttachOutcome`), which keeps the reason in memory while the daemon stays
//! registered and until it reports success or the path is detached; `burrow admin tree` and
//! `burrow admin daemons` show it, fetched in pages of their own ([`AdminCommand::Failed`]),
//! so the pages of paths and daemons keep their size.
//!
//! [`AdminCommand::Failed`]: super::AdminCommand::Failed

use serde::{Deserialize, Deserializer, Serialize};

use super::daemons::DaemonRef;
use super::{Directory, TenantName};
use crate::crypto::PublicKey;
use crate::rendezvous::ServiceName;
use crate::rendezvous::messages::{bounded_string, bounded_vec};

/// Longest reason of a failed attachment, in bytes (a longer one is cut).
pub const MAX_ATTACH_ERROR_LEN: usize = 120;
/// Most failed attachments one daemon may report at once (more are ignored).
pub const MAX_FAILED_PER_DAEMON: usize = 16;
/// Most failed attachments in one page of [`super::AdminAnswer::Failed`].
pub const MAX_FAILED_PAGE: usize = 3;

/// One attachment that failed on its daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachFailure {
    /// The daemon: its registered name, else its key.
    pub daemon: DaemonRef,
    /// The path.
    pub name: ServiceName,
    /// Why, as the daemon said (at most [`MAX_ATTACH_ERROR_LEN`] bytes).
    #[serde(deserialize_with = "bounded_reason")]
    pub reason: String,
}

fn bounded_reason<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    bounded_string(d, MAX_ATTACH_ERROR_LEN)
}

pub(crate) fn bounded_failed_page<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<AttachFailure>, D::Error> {
    bounded_vec(d, MAX_FAILED_PAGE)
}

/// The page of `tenant`'s failed attachments from the `after`-th on, ordered by daemon key
/// and path; `failed` lists them all. Whether more follow.
pub(super) fn page(
    dir: &Directory,
    tenant: &TenantName,
    after: u32,
    failed: &[(PublicKey, ServiceName, String)],
) -> (Vec<AttachFailure>, bool) {
    let start = usize::try_from(after).unwrap_or(usize::MAX);
    let page: Vec<AttachFailure> = failed
        .iter()
        .skip(start)
        .take(MAX_FAILED_PAGE)
        .map(|(key, name, reason)| AttachFailure {
            daemon: dir
                .daemons_of(tenant)
                .find(|d| d.key == Some(*key))
                .map_or(DaemonRef::Key(*key), |d| DaemonRef::Name(d.name.clone())),
            name: name.clone(),
            reason: reason.clone(),
        })
        .collect();
    let more = failed.len() > start.saturating_add(page.len());
    (page, more)
}
