//! What a tenant's master may ask of the server (`burrow admin`), and how the server answers.
//!
//! Commands ride the encrypted session to the server in [`super::super::ClientMessage::Admin`]
//! with the master token; [`run`] checks and applies one to the [`Directory`] and returns the
//! answer and the changes for the runtime to store. Every list and string is bounded: a tree
//! comes in pages of at most [`MAX_TREE_PAGE`] paths, so any answer fits one datagram.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::attachments::{Attachment, AttachmentRecord, MAX_ATTACHMENTS_PER_DAEMON};
use super::records::{MAX_FIXED_CLIENTS, PathRecord, TenantName, TokenHash};
use super::{Directory, DirectoryChange, MAX_PATHS_PER_TENANT};
use crate::crypto::PublicKey;
use crate::rendezvous::ServiceName;
use crate::rendezvous::messages::{ErrorCode, bounded_token, bounded_vec};

/// Most paths in one page of a tree.
pub const MAX_TREE_PAGE: usize = 4;

/// Which of a path's two tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenRole {
    /// The server token: lets a daemon expose the path.
    Server,
    /// The client token: lets a daemon connect to it.
    Client,
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Server => "server",
            Self::Client => "client",
        })
    }
}

/// A master's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AdminCommand {
    /// Declares a path with a new server token and a new client token.
    Create {
        /// The path.
        name: ServiceName,
        /// Pin the client keys that use it (see [`super::PathRecord::fixed`]).
        fixed: bool,
    },
    /// Deletes a path: its tokens stop working, and the daemon exposing it loses the name.
    Delete {
        /// The path.
        name: ServiceName,
    },
    /// Lists the tenant's paths in name order, from the first one after `after`.
    Tree {
        /// Where the previous page ended.
        after: Option<ServiceName>,
    },
    /// Replaces one of a path's tokens: the old one stops working at once.
    Redeem {
        /// The path.
        name: ServiceName,
        /// Which token.
        role: TokenRole,
    },
    /// Forgets the client keys a fixed path pinned, so new ones may connect.
    Reload {
        /// The path.
        name: ServiceName,
    },
    /// Attaches a path to a daemon registered in the tenant: the server pushes it to the
    /// daemon, which exposes or listens for it (see [`Attachment`]), and it authorises the
    /// daemon to do so. A fixed path pins the daemon's key when it is attached as a client.
    Rattach {
        /// The path.
        name: ServiceName,
        /// The daemon.
        #[serde(with = "crate::rendezvous::messages::key_bytes")]
        daemon: PublicKey,
        /// What it does with the path.
        attach: Attachment,
    },
    /// Detaches a path its master attached to a daemon: the daemon stops exposing or
    /// listening for it, and the attachment authorises nothing any more.
    Rdetach {
        /// The path.
        name: ServiceName,
        /// The daemon.
        #[serde(with = "crate::rendezvous::messages::key_bytes")]
        daemon: PublicKey,
    },
}

/// One path as a tree shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathView {
    /// The path.
    pub name: ServiceName,
    /// Whether it pins its client keys.
    pub fixed: bool,
    /// How many client keys it pinned.
    pub pinned: u32,
    /// The key of the daemon exposing it now, if one is registered.
    #[serde(with = "crate::rendezvous::messages::opt_key_bytes")]
    pub exposed_by: Option<PublicKey>,
}

/// The server's answer to an [`AdminCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AdminAnswer {
    /// The path exists now; the tokens are shown this once (the server keeps only hashes).
    Created {
        /// The path.
        name: ServiceName,
        /// Lets a daemon expose it.
        #[serde(deserialize_with = "bounded_token")]
        server_token: String,
        /// Lets a daemon connect to it.
        #[serde(deserialize_with = "bounded_token")]
        client_token: String,
    },
    /// The path is gone.
    Deleted {
        /// The path.
        name: ServiceName,
    },
    /// One page of the tenant's paths.
    Tree {
        /// The tenant.
        tenant: String,
        /// At most [`MAX_TREE_PAGE`] paths.
        #[serde(deserialize_with = "bounded_page")]
        paths: Vec<PathView>,
        /// Whether more paths follow the last one.
        more: bool,
    },
    /// The token was replaced; the new one is shown this once.
    Redeemed {
        /// The path.
        name: ServiceName,
        /// Which token.
        role: TokenRole,
        /// The new token.
        #[serde(deserialize_with = "bounded_token")]
        token: String,
    },
    /// A fixed path forgot its client keys.
    Reloaded {
        /// The path.
        name: ServiceName,
        /// How many keys it forgot.
        forgotten: u32,
    },
    /// The path is attached to the daemon (pushed to it now, and again whenever it
    /// registers).
    Rattached {
        /// The path.
        name: ServiceName,
        /// The daemon.
        #[serde(with = "crate::rendezvous::messages::key_bytes")]
        daemon: PublicKey,
    },
    /// The path is detached from the daemon (pushed to it until it acknowledges).
    Rdetached {
        /// The path.
        name: ServiceName,
        /// The daemon.
        #[serde(with = "crate::rendezvous::messages::key_bytes")]
        daemon: PublicKey,
    },
}

fn bounded_page<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathView>, D::Error> {
    bounded_vec(d, MAX_TREE_PAGE)
}

/// A failed command: the code and a detail for the master.
pub(crate) type Refusal = (ErrorCode, String);

/// What [`run`] asks of the server's live state.
pub(crate) struct Live<'a> {
    /// Which daemon exposes a path now.
    pub(crate) exposed_by: &'a dyn Fn(&ServiceName) -> Option<PublicKey>,
    /// Whether a daemon is registered in the tenant now.
    pub(crate) registered: &'a dyn Fn(&PublicKey) -> bool,
}

/// Runs `command` for the master of `tenant`. `token` makes a new random token (48 hex
/// characters from the server's CSPRNG); `live` says what the registry holds.
pub(crate) fn run(
    dir: &Directory,
    tenant: &TenantName,
    command: AdminCommand,
    token: &mut dyn FnMut() -> String,
    live: &Live<'_>,
) -> Result<(AdminAnswer, Vec<DirectoryChange>), Refusal> {
    let exposed_by = live.exposed_by;
    let existing = |name: &ServiceName| {
        dir.path(tenant, name).cloned().ok_or_else(|| {
            let detail = format!("{name} is not a path of tenant {tenant}");
            (ErrorCode::UnknownService, detail)
        })
    };
    // A fresh token that no record holds yet (a collision of 192 random bits is not expected,
    // but a store must never hold one hash twice).
    let mut fresh = || loop {
        let t = token();
        if !dir.knows(&TokenHash::of(&t)) {
            return t;
        }
    };
    match command {
        AdminCommand::Create { name, fixed } => {
            if dir.path(tenant, &name).is_some() {
                let detail = format!("{name} already exists; delete it first or redeem its tokens");
                return Err((ErrorCode::NameTaken, detail));
            }
            if dir.paths_of(tenant).count() >= MAX_PATHS_PER_TENANT {
                let detail = format!("a tenant has at most {MAX_PATHS_PER_TENANT} paths");
                return Err((ErrorCode::TooMany, detail));
            }
            let (server_token, client_token) = (fresh(), fresh());
            let record = PathRecord {
                tenant: tenant.clone(),
                name: name.clone(),
                server: TokenHash::of(&server_token),
                client: TokenHash::of(&client_token),
                fixed,
                clients: BTreeSet::new(),
            };
            let answer = AdminAnswer::Created {
                name,
                server_token,
                client_token,
            };
            Ok((answer, vec![DirectoryChange::PutPath(record)]))
        }
        AdminCommand::Delete { name } => {
            existing(&name)?;
            let mut changes: Vec<DirectoryChange> = dir
                .attachments_to(tenant, &name)
                .map(|a| DirectoryChange::DeleteAttachment {
                    tenant: tenant.clone(),
                    daemon: a.daemon,
                    name: name.clone(),
                })
                .collect();
            changes.push(DirectoryChange::DeletePath {
                tenant: tenant.clone(),
                name: name.clone(),
            });
            Ok((AdminAnswer::Deleted { name }, changes))
        }
        AdminCommand::Rattach {
            name,
            daemon,
            attach,
        } => {
            let mut path = existing(&name)?;
            attach
                .check()
                .map_err(|detail| (ErrorCode::Malformed, detail))?;
            if !(live.registered)(&daemon) {
                let detail = format!(
                    "no daemon with key {daemon} is registered in tenant {tenant} (it must be                      running, registered with a token of this tenant)"
                );
                return Err((ErrorCode::UnknownService, detail));
            }
            if let Some(owner) = exposed_by(&name).filter(|k| attach.exposes() && *k != daemon) {
                // Its registration would be refused for the name, and the daemon lost.
                let detail =
                    format!("{name} is exposed by daemon {owner}; stop it (or rdetach it) first");
                return Err((ErrorCode::NameTaken, detail));
            }
            let replaces = dir.attachment(tenant, &daemon, &name).is_some();
            if !replaces
                && dir.attachments_of(tenant, &daemon).count() >= MAX_ATTACHMENTS_PER_DAEMON
            {
                let detail = format!(
                    "a daemon has at most {MAX_ATTACHMENTS_PER_DAEMON} paths attached by its                      master (MAX_ATTACHMENTS_PER_DAEMON); rdetach one first"
                );
                return Err((ErrorCode::TooMany, detail));
            }
            let mut changes = Vec::new();
            if path.fixed && !attach.exposes() && !path.clients.contains(&daemon) {
                if path.clients.len() >= MAX_FIXED_CLIENTS {
                    let detail = format!(
                        "{name} is fixed and pins {MAX_FIXED_CLIENTS} client keys already;                          reload it first"
                    );
                    return Err((ErrorCode::TooMany, detail));
                }
                path.clients.insert(daemon);
                changes.push(DirectoryChange::PutPath(path));
            }
            changes.push(DirectoryChange::PutAttachment(AttachmentRecord {
                tenant: tenant.clone(),
                daemon,
                name: name.clone(),
                attach: Some(attach),
            }));
            Ok((AdminAnswer::Rattached { name, daemon }, changes))
        }
        AdminCommand::Rdetach { name, daemon } => {
            let attached = dir
                .attachment(tenant, &daemon, &name)
                .is_some_and(|a| a.attach.is_some());
            if !attached {
                let detail = format!("{name} is not attached to daemon {daemon}");
                return Err((ErrorCode::UnknownService, detail));
            }
            let change = DirectoryChange::PutAttachment(AttachmentRecord {
                tenant: tenant.clone(),
                daemon,
                name: name.clone(),
                attach: None,
            });
            Ok((AdminAnswer::Rdetached { name, daemon }, vec![change]))
        }
        AdminCommand::Tree { after } => {
            let mut rest = dir
                .paths_of(tenant)
                .filter(|p| after.as_ref().is_none_or(|a| p.name > *a));
            let paths: Vec<PathView> = rest
                .by_ref()
                .take(MAX_TREE_PAGE)
                .map(|p| PathView {
                    name: p.name.clone(),
                    fixed: p.fixed,
                    pinned: u32::try_from(p.clients.len()).unwrap_or(u32::MAX),
                    exposed_by: exposed_by(&p.name),
                })
                .collect();
            let more = rest.next().is_some();
            let tenant = tenant.to_string();
            Ok((
                AdminAnswer::Tree {
                    tenant,
                    paths,
                    more,
                },
                Vec::new(),
            ))
        }
        AdminCommand::Redeem { name, role } => {
            let mut record = existing(&name)?;
            let token = fresh();
            match role {
                TokenRole::Server => record.server = TokenHash::of(&token),
                TokenRole::Client => record.client = TokenHash::of(&token),
            }
            let answer = AdminAnswer::Redeemed { name, role, token };
            Ok((answer, vec![DirectoryChange::PutPath(record)]))
        }
        AdminCommand::Reload { name } => {
            let mut record = existing(&name)?;
            if !record.fixed {
                let detail = format!("{name} is not fixed: it pins no client keys");
                return Err((ErrorCode::Malformed, detail));
            }
            let forgotten = u32::try_from(record.clients.len()).unwrap_or(u32::MAX);
            record.clients.clear();
            let answer = AdminAnswer::Reloaded { name, forgotten };
            Ok((answer, vec![DirectoryChange::PutPath(record)]))
        }
    }
}
