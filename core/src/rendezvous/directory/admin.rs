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
use super::daemons::{
    DaemonName, DaemonPath, DaemonRecord, DaemonRef, DaemonView, UnnamedView, bounded_daemon_page,
    bounded_unnamed_page,
};
use super::records::{MAX_FIXED_CLIENTS, PathRecord, TenantName, TenantQuota, TokenHash};
use super::views::{page, tree, unnamed, view};
use super::{Directory, DirectoryChange};
use crate::crypto::PublicKey;
use crate::rendezvous::ServiceName;
use crate::rendezvous::messages::{ErrorCode, bounded_token, bounded_vec};

/// Most paths in one page of a tree.
pub const MAX_TREE_PAGE: usize = 4;
/// Most attachments one page of a tree shows, over all its paths (a path with more says how
/// many it left out).
pub const MAX_TREE_PAGE_ATTACHMENTS: usize = 6;

/// Which of a path's two tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
        /// Most connecting daemons introduced to it at once (see
        /// [`super::PathRecord::max_connections`]); `None`: no limit. At least 1.
        max_connections: Option<u32>,
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
        /// The daemon, by key or by the name its master registered it under.
        daemon: DaemonRef,
        /// What it does with the path.
        attach: Attachment,
    },
    /// Detaches a path its master attached to a daemon: the daemon stops exposing or
    /// listening for it, and the attachment authorises nothing any more.
    Rdetach {
        /// The path.
        name: ServiceName,
        /// The daemon, by key or by name.
        daemon: DaemonRef,
    },
    /// Registers a daemon in the tenant under `name` with a new daemon token; the first
    /// registration that presents the token binds its key to the entry.
    Register {
        /// The daemon's name.
        name: DaemonName,
    },
    /// Removes a daemon entry: its token stops working, and the daemon bound to it loses its
    /// registration and its sessions at once.
    Unregister {
        /// The daemon's name.
        name: DaemonName,
    },
    /// Replaces a daemon's token and unbinds its key: the daemon bound to the old token loses
    /// its registration and sessions, and the next registration with the new one binds again.
    RedeemDaemon {
        /// The daemon's name.
        name: DaemonName,
    },
    /// Lists the tenant's daemons in name order from the first one after `after`; with
    /// `path`, only those exposing or connecting to it.
    Daemons {
        /// Only the daemons using this path.
        path: Option<ServiceName>,
        /// Where the previous page ended.
        after: Option<DaemonName>,
    },
    /// Lists the daemons registered in the tenant now that no daemon entry binds (they
    /// registered with a path token or the master token), in key order from the first one
    /// after `after`; with `path`, only those exposing or connecting to it. (A variant added
    /// last: an older server drops it as undecodable.)
    Unnamed {
        /// Only the daemons using this path.
        path: Option<ServiceName>,
        /// Where the previous page ended.
        #[serde(with = "crate::rendezvous::messages::opt_key_bytes")]
        after: Option<PublicKey>,
    },
    /// Lists the attachments that failed on the tenant's daemons (see
    /// [`super::AttachFailure`]), from the `after`-th on. (Added last, as `Unnamed`.)
    Failed {
        /// How many the previous pages showed.
        after: u32,
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
    /// Its limit of connecting daemons at once, if it has one.
    pub max_connections: Option<u32>,
    /// Connecting daemons introduced to it now (introductions standing).
    pub connections: u32,
    /// The daemons its master attached it to (`burrow admin rattach`), by name where one is
    /// registered under that key; the page shows at most [`MAX_TREE_PAGE_ATTACHMENTS`]
    /// together.
    #[serde(deserialize_with = "bounded_attached")]
    pub attached: Vec<AttachedView>,
    /// How many attachments of this path the page left out.
    pub more_attached: u32,
}

/// One attachment of a path as a tree shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedView {
    /// The daemon: its registered name, else its key.
    pub daemon: DaemonRef,
    /// Server (exposes the path) or client (listens for it).
    pub role: TokenRole,
    /// Whether the daemon is registered now.
    pub online: bool,
}

/// The tenant's limits, as a tree shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLimits {
    /// Most paths it may declare.
    pub max_paths: u32,
    /// Most daemons its master may register.
    pub max_daemons: u32,
    /// Bytes per second its daemons may relay through the server together.
    pub relay_bytes_per_sec: u64,
}

fn bounded_attached<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AttachedView>, D::Error> {
    bounded_vec(d, MAX_TREE_PAGE_ATTACHMENTS)
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
        /// The tenant's limits.
        limits: TenantLimits,
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
    /// The daemon entry exists now; its token is shown this once.
    DaemonRegistered {
        /// The daemon's name.
        name: DaemonName,
        /// Lets one daemon register in the tenant (the first key that uses it).
        #[serde(deserialize_with = "bounded_token")]
        token: String,
    },
    /// The daemon entry is gone.
    Unregistered {
        /// The daemon's name.
        name: DaemonName,
        /// The key that was bound to it, if one was.
        #[serde(with = "crate::rendezvous::messages::opt_key_bytes")]
        key: Option<PublicKey>,
    },
    /// The daemon's token was replaced and its key unbound; the new token is shown this once.
    DaemonRedeemed {
        /// The daemon's name.
        name: DaemonName,
        /// The new token.
        #[serde(deserialize_with = "bounded_token")]
        token: String,
    },
    /// One page of the tenant's daemons.
    Daemons {
        /// At most [`super::daemons::MAX_DAEMON_PAGE`] daemons, showing at most [`super::daemons::MAX_DAEMON_PAGE_PATHS`]
        /// paths together.
        #[serde(deserialize_with = "bounded_daemon_page")]
        daemons: Vec<DaemonView>,
        /// Whether more daemons follow the last one.
        more: bool,
    },
    /// One page of the daemons online in the tenant that no daemon entry binds.
    Unnamed {
        /// At most [`super::daemons::MAX_DAEMON_PAGE`] daemons, showing at most [`super::daemons::MAX_DAEMON_PAGE_PATHS`]
        /// paths together.
        #[serde(deserialize_with = "bounded_unnamed_page")]
        daemons: Vec<UnnamedView>,
        /// Whether more daemons follow the last one.
        more: bool,
    },
    /// One page of the attachments that failed on the tenant's daemons.
    Failed {
        /// At most [`super::MAX_FAILED_PAGE`].
        #[serde(deserialize_with = "super::failures::bounded_failed_page")]
        failures: Vec<super::AttachFailure>,
        /// Whether more follow.
        more: bool,
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
    /// The paths a daemon registered in the tenant exposes and holds client tokens for
    /// (`None`: not registered in the tenant).
    pub(crate) uses: &'a dyn Fn(&PublicKey) -> Option<Vec<DaemonPath>>,
    /// How many connecting daemons are introduced to a path now.
    pub(crate) connections: &'a dyn Fn(&ServiceName) -> u32,
    /// Bytes per second a tenant's daemons may relay together.
    pub(crate) relay_bytes_per_sec: u64,
    /// The keys registered in the tenant now, in key order.
    pub(crate) online: &'a dyn Fn() -> Vec<PublicKey>,
    /// The attachments that failed on the tenant's daemons, by key and path, with why.
    pub(crate) failed: &'a dyn Fn() -> Vec<(PublicKey, ServiceName, String)>,
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
        AdminCommand::Create {
            name,
            fixed,
            max_connections,
        } => {
            if max_connections == Some(0) {
                let detail = "--max-connections is at least 1 (leave it out for no limit)";
                return Err((ErrorCode::Malformed, detail.to_string()));
            }
            if dir.path(tenant, &name).is_some() {
                let detail = format!("{name} already exists; delete it first or redeem its tokens");
                return Err((ErrorCode::NameTaken, detail));
            }
            let most = quota(dir, tenant).paths();
            if dir.paths_of(tenant).count() >= most {
                return Err(at_limit(tenant, most, "paths", "max-paths", "delete one"));
            }
            let (server_token, client_token) = (fresh(), fresh());
            let record = PathRecord {
                tenant: tenant.clone(),
                name: name.clone(),
                server: TokenHash::of(&server_token),
                client: TokenHash::of(&client_token),
                fixed,
                clients: BTreeSet::new(),
                max_connections,
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
            let daemon = key_of(dir, tenant, &daemon)?;
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
            let daemon = key_of(dir, tenant, &daemon)?;
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
        AdminCommand::Register { name } => {
            if dir.daemon(tenant, &name).is_some() {
                let detail = format!(
                    "daemon {name} already exists; unregister it first or redeem its token"
                );
                return Err((ErrorCode::NameTaken, detail));
            }
            let most = quota(dir, tenant).daemons();
            if dir.daemons_of(tenant).count() >= most {
                return Err(at_limit(
                    tenant,
                    most,
                    "daemons",
                    "max-daemons",
                    "unregister one",
                ));
            }
            let token = fresh();
            let record = DaemonRecord {
                tenant: tenant.clone(),
                name: name.clone(),
                token: TokenHash::of(&token),
                key: None,
            };
            let answer = AdminAnswer::DaemonRegistered { name, token };
            Ok((answer, vec![DirectoryChange::PutDaemon(record)]))
        }
        AdminCommand::Unregister { name } => {
            let record = existing_daemon(dir, tenant, &name)?;
            let change = DirectoryChange::DeleteDaemon {
                tenant: tenant.clone(),
                name: name.clone(),
            };
            let answer = AdminAnswer::Unregistered {
                name,
                key: record.key,
            };
            Ok((answer, vec![change]))
        }
        AdminCommand::RedeemDaemon { name } => {
            let mut record = existing_daemon(dir, tenant, &name)?;
            let token = fresh();
            record.token = TokenHash::of(&token);
            record.key = None;
            let answer = AdminAnswer::DaemonRedeemed { name, token };
            Ok((answer, vec![DirectoryChange::PutDaemon(record)]))
        }
        AdminCommand::Daemons { path, after } => {
            if let Some(p) = &path {
                existing(p)?;
            }
            let rest = dir
                .daemons_of(tenant)
                .filter(|d| after.as_ref().is_none_or(|a| d.name > *a))
                .map(|d| view(dir, tenant, d, live))
                .filter(|v| {
                    path.as_ref()
                        .is_none_or(|p| v.paths.iter().any(|u| u.name == *p))
                })
                .peekable();
            let (daemons, more) =
                page(rest, |v: &mut DaemonView| (&mut v.paths, &mut v.more_paths));
            Ok((AdminAnswer::Daemons { daemons, more }, Vec::new()))
        }
        AdminCommand::Tree { after } => Ok((tree(dir, tenant, after, live), Vec::new())),
        AdminCommand::Failed { after } => {
            let (failures, more) = super::failures::page(dir, tenant, after, &(live.failed)());
            Ok((AdminAnswer::Failed { failures, more }, Vec::new()))
        }
        AdminCommand::Unnamed { path, after } => {
            if let Some(p) = &path {
                existing(p)?;
            }
            Ok((unnamed(dir, tenant, path, after, live), Vec::new()))
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

/// The limits the server's operator set for `tenant`.
fn quota(dir: &Directory, tenant: &TenantName) -> TenantQuota {
    dir.tenant(tenant).map(|t| t.limits).unwrap_or_default()
}

/// The refusal of one more of `what` past `tenant`'s limit of `most`, naming the limit.
fn at_limit(tenant: &TenantName, most: usize, what: &str, flag: &str, fix: &str) -> Refusal {
    let detail = format!(
        "tenant {tenant} is at its limit of {most} {what}; {fix} first, or ask the server's \
         operator to raise it (`burrow server limits --{flag}`)"
    );
    (ErrorCode::TooMany, detail)
}

/// The daemon entry `name` of `tenant`, or the refusal that names it.
fn existing_daemon(
    dir: &Directory,
    tenant: &TenantName,
    name: &DaemonName,
) -> Result<DaemonRecord, Refusal> {
    dir.daemon(tenant, name).cloned().ok_or_else(|| {
        let detail =
            format!("{name} is not a daemon of tenant {tenant} (see `burrow admin daemons`)");
        (ErrorCode::UnknownService, detail)
    })
}

/// The key a [`DaemonRef`] names: the key itself, or the key bound to the daemon entry.
fn key_of(dir: &Directory, tenant: &TenantName, daemon: &DaemonRef) -> Result<PublicKey, Refusal> {
    match daemon {
        DaemonRef::Key(key) => Ok(*key),
        DaemonRef::Name(name) => {
            let Some(record) = dir.daemon(tenant, name) else {
                // `--daemon` takes either: say both.
                let detail = format!(
                    "{name} is not a public key nor a daemon of tenant {tenant} \
                     (see `burrow admin daemons`)"
                );
                return Err((ErrorCode::UnknownService, detail));
            };
            record.key.ok_or_else(|| {
                let detail = format!(
                    "daemon {name} is not yet bound to a key: start it with its daemon token first"
                );
                (ErrorCode::UnknownService, detail)
            })
        }
    }
}
