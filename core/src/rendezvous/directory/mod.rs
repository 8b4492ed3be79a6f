//! The server's directory: who holds authority over which paths.
//!
//! A **tenant** owns a namespace of paths and has one **master token**, whose holder may create
//! and delete paths, rotate their tokens and list them with `burrow admin`. A **path** the
//! master created (`/home/ssh`) has two tokens of its own: the **server token** lets a daemon
//! expose the path, the **client token** lets a daemon connect to it. A **fixed** path also
//! remembers the client keys that used it and refuses any other until its master reloads it.
//!
//! The server keeps only a hash of each token ([`TokenHash`], BLAKE2s-256: tokens are 192-bit
//! random strings, so a fast hash is enough), and looks every presented token up by its hash.
//!
//! Core holds the directory in memory and never touches storage: every change comes out as a
//! [`DirectoryChange`] (in [`super::ServerEvent::Directory`]) for the runtime to write, and at
//! start the runtime reads the stored records back and passes them in
//! ([`Directory::from_records`], [`super::ServerConfig::directory`]). [`DirectoryStore`] is the
//! small interface a store implements.

mod admin;
mod attachments;
mod daemons;
mod failures;
mod records;
mod views;

pub use admin::{
    AdminAnswer, AdminCommand, AttachedView, MAX_TREE_PAGE, MAX_TREE_PAGE_ATTACHMENTS, PathView,
    TenantLimits, TokenRole,
};
pub(crate) use admin::{Live, run as run_admin};
pub use attachments::{Attachment, AttachmentRecord, MAX_ATTACHMENTS_PER_DAEMON, MAX_TARGET_LEN};
pub use daemons::{
    DaemonName, DaemonPath, DaemonRecord, DaemonRef, DaemonView, MAX_DAEMON_NAME_LEN,
    MAX_DAEMON_PAGE, MAX_DAEMON_PAGE_PATHS, MAX_DAEMONS_PER_TENANT, UnnamedView,
};
pub use failures::{AttachFailure, MAX_ATTACH_ERROR_LEN, MAX_FAILED_PAGE, MAX_FAILED_PER_DAEMON};
pub use records::{
    MAX_FIXED_CLIENTS, MAX_QUOTA, MAX_TENANT_NAME_LEN, PathRecord, TenantName, TenantQuota,
    TenantRecord, TokenHash,
};

use std::collections::BTreeMap;
use std::fmt;

use super::name::ServiceName;
use crate::crypto::PublicKey;

/// Most paths one tenant may declare, unless the server's operator set its own limit
/// ([`TenantQuota`]).
pub const MAX_PATHS_PER_TENANT: usize = 10_000;
/// Most tenants one server holds.
pub const MAX_TENANTS: usize = 10_000;

/// One change of the directory, for the runtime to store in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirectoryChange {
    /// Creates or replaces a tenant.
    PutTenant(TenantRecord),
    /// Creates or replaces a path (a new token, a client key pinned or forgotten).
    PutPath(PathRecord),
    /// Deletes a path.
    DeletePath {
        /// Its tenant.
        tenant: TenantName,
        /// The path.
        name: ServiceName,
    },
    /// Creates or replaces a path's attachment to a daemon (a detachment waiting for its
    /// acknowledgement too).
    PutAttachment(AttachmentRecord),
    /// Deletes a path's attachment to a daemon.
    DeleteAttachment {
        /// Its tenant.
        tenant: TenantName,
        /// The daemon.
        daemon: PublicKey,
        /// The path.
        name: ServiceName,
    },
    /// Creates or replaces a daemon entry (a new token, a key bound or unbound).
    PutDaemon(DaemonRecord),
    /// Deletes a daemon entry.
    DeleteDaemon {
        /// Its tenant.
        tenant: TenantName,
        /// Its name.
        name: DaemonName,
    },
}

/// What a store holds: everything needed to rebuild a [`Directory`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    /// Every tenant.
    pub tenants: Vec<TenantRecord>,
    /// Every path.
    pub paths: Vec<PathRecord>,
    /// Every path attached to a daemon by its master.
    pub attachments: Vec<AttachmentRecord>,
    /// Every daemon its master registered.
    pub daemons: Vec<DaemonRecord>,
}

/// Where a server keeps its directory between runs (an embedded database by default; a
/// networked one could serve several servers). Core never calls it: the runtime loads the
/// records at start and applies each [`DirectoryChange`] core hands out.
pub trait DirectoryStore: Send {
    /// Reads every stored record.
    ///
    /// # Errors
    /// The store cannot be read; the message says what and where.
    fn load(&mut self) -> Result<Records, String>;
    /// Stores one change (atomically).
    ///
    /// # Errors
    /// The change could not be written; the message says what and where.
    fn apply(&mut self, change: &DirectoryChange) -> Result<(), String>;
}

/// What a presented token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Credential {
    /// The tenant's master token.
    Master(TenantName),
    /// A path's server token: may expose it.
    Server(TenantName, ServiceName),
    /// A path's client token: may connect to it.
    Client(TenantName, ServiceName),
    /// A daemon token: may register in the tenant, with the key bound to it.
    Daemon(TenantName, DaemonName),
}

impl Credential {
    /// The tenant the token belongs to.
    pub(crate) fn tenant(&self) -> &TenantName {
        match self {
            Self::Master(t) | Self::Server(t, _) | Self::Client(t, _) | Self::Daemon(t, _) => t,
        }
    }
}

/// Why stored records do not make a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirectoryError {
    /// A path names a tenant that is not in the records.
    UnknownTenant(TenantName),
    /// An attachment names a path that is not in the records.
    UnknownPath(ServiceName),
    /// Two records carry the same token hash.
    DuplicateToken,
    /// A tenant, a path or a daemon is listed twice.
    Duplicate(String),
    /// More than [`MAX_TENANTS`] tenants, [`MAX_PATHS_PER_TENANT`] paths or
    /// [`MAX_DAEMONS_PER_TENANT`] daemons in one tenant, or [`MAX_FIXED_CLIENTS`] pinned keys
    /// on one path.
    TooMany,
}

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownTenant(t) => write!(f, "a path belongs to tenant {t}, which is missing"),
            Self::UnknownPath(p) => write!(f, "an attachment names path {p}, which is missing"),
            Self::DuplicateToken => f.write_str("two records carry the same token"),
            Self::Duplicate(what) => write!(f, "{what} is stored twice"),
            Self::TooMany => write!(
                f,
                "more than {MAX_TENANTS} tenants, or {MAX_PATHS_PER_TENANT} paths or \
                 {MAX_DAEMONS_PER_TENANT} daemons in one tenant"
            ),
        }
    }
}

impl std::error::Error for DirectoryError {}

/// The tenants and their paths, indexed by token hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    tenants: BTreeMap<TenantName, TenantRecord>,
    paths: BTreeMap<TenantName, BTreeMap<ServiceName, PathRecord>>,
    tokens: BTreeMap<TokenHash, Credential>,
    attachments: BTreeMap<(TenantName, PublicKey, ServiceName), AttachmentRecord>,
    daemons: BTreeMap<(TenantName, DaemonName), DaemonRecord>,
}

impl Directory {
    /// Rebuilds a directory from stored records, checking that they are consistent.
    ///
    /// # Errors
    /// See [`DirectoryError`].
    pub fn from_records(records: Records) -> Result<Self, DirectoryError> {
        let mut dir = Self::default();
        if records.tenants.len() > MAX_TENANTS {
            return Err(DirectoryError::TooMany);
        }
        for tenant in records.tenants {
            if dir.tenants.contains_key(&tenant.name) {
                return Err(DirectoryError::Duplicate(format!("tenant {}", tenant.name)));
            }
            if dir.tokens.contains_key(&tenant.master) {
                return Err(DirectoryError::DuplicateToken);
            }
            dir.put_tenant(tenant);
        }
        for path in records.paths {
            if !dir.tenants.contains_key(&path.tenant) {
                return Err(DirectoryError::UnknownTenant(path.tenant));
            }
            if dir.path(&path.tenant, &path.name).is_some() {
                return Err(DirectoryError::Duplicate(format!("path {}", path.name)));
            }
            if dir.paths_of(&path.tenant).count() >= dir.most_paths(&path.tenant) {
                return Err(DirectoryError::TooMany);
            }
            if path.clients.len() > MAX_FIXED_CLIENTS {
                return Err(DirectoryError::TooMany);
            }
            if dir.tokens.contains_key(&path.server)
                || dir.tokens.contains_key(&path.client)
                || path.server == path.client
            {
                return Err(DirectoryError::DuplicateToken);
            }
            dir.put_path(path);
        }
        for a in records.attachments {
            if dir.path(&a.tenant, &a.name).is_none() {
                return Err(DirectoryError::UnknownPath(a.name));
            }
            if dir.attachment(&a.tenant, &a.daemon, &a.name).is_some() {
                return Err(DirectoryError::Duplicate(format!(
                    "attachment of {}",
                    a.name
                )));
            }
            if dir.attachments_of(&a.tenant, &a.daemon).count() >= MAX_ATTACHMENTS_PER_DAEMON {
                return Err(DirectoryError::TooMany);
            }
            dir.put_attachment(a);
        }
        for d in records.daemons {
            if !dir.tenants.contains_key(&d.tenant) {
                return Err(DirectoryError::UnknownTenant(d.tenant));
            }
            if dir.daemon(&d.tenant, &d.name).is_some() {
                return Err(DirectoryError::Duplicate(format!("daemon {}", d.name)));
            }
            if dir.daemons_of(&d.tenant).count() >= dir.most_daemons(&d.tenant) {
                return Err(DirectoryError::TooMany);
            }
            if dir.tokens.contains_key(&d.token) {
                return Err(DirectoryError::DuplicateToken);
            }
            dir.put_daemon(d);
        }
        Ok(dir)
    }

    /// Every record, tenants first, in a stable order (what a store would hold).
    #[must_use]
    pub fn records(&self) -> Records {
        Records {
            tenants: self.tenants.values().cloned().collect(),
            paths: self
                .paths
                .values()
                .flat_map(|p| p.values().cloned())
                .collect(),
            attachments: self.attachments.values().cloned().collect(),
            daemons: self.daemons.values().cloned().collect(),
        }
    }

    /// Applies a change as the server made it (tests and replicas replay them).
    pub fn apply(&mut self, change: &DirectoryChange) {
        match change {
            DirectoryChange::PutTenant(t) => self.put_tenant(t.clone()),
            DirectoryChange::PutPath(p) => self.put_path(p.clone()),
            DirectoryChange::DeletePath { tenant, name } => {
                self.delete_path(tenant, name);
            }
            DirectoryChange::PutAttachment(a) => self.put_attachment(a.clone()),
            DirectoryChange::DeleteAttachment {
                tenant,
                daemon,
                name,
            } => {
                self.attachments
                    .remove(&(tenant.clone(), *daemon, name.clone()));
            }
            DirectoryChange::PutDaemon(d) => self.put_daemon(d.clone()),
            DirectoryChange::DeleteDaemon { tenant, name } => {
                if let Some(old) = self.daemons.remove(&(tenant.clone(), name.clone())) {
                    self.tokens.remove(&old.token);
                }
            }
        }
    }

    /// The daemon `name` of `tenant`, if its master registered it.
    #[must_use]
    pub fn daemon(&self, tenant: &TenantName, name: &DaemonName) -> Option<&DaemonRecord> {
        self.daemons.get(&(tenant.clone(), name.clone()))
    }

    /// The daemons of `tenant`, ordered by name.
    pub fn daemons_of<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> impl Iterator<Item = &'a DaemonRecord> {
        self.daemons
            .range((tenant.clone(), DaemonName::MIN)..)
            .take_while(move |((t, _), _)| t == tenant)
            .map(|(_, d)| d)
    }

    fn put_daemon(&mut self, d: DaemonRecord) {
        let key = (d.tenant.clone(), d.name.clone());
        if let Some(old) = self.daemons.get(&key) {
            self.tokens.remove(&old.token);
        }
        self.tokens.insert(
            d.token,
            Credential::Daemon(d.tenant.clone(), d.name.clone()),
        );
        self.daemons.insert(key, d);
    }

    /// The attachment of path `name` to `daemon` in `tenant`, if its master made one.
    #[must_use]
    pub fn attachment(
        &self,
        tenant: &TenantName,
        daemon: &PublicKey,
        name: &ServiceName,
    ) -> Option<&AttachmentRecord> {
        self.attachments
            .get(&(tenant.clone(), *daemon, name.clone()))
    }

    /// The paths attached to `daemon` in `tenant` (and detachments not yet acknowledged),
    /// ordered by path.
    pub fn attachments_of<'a>(
        &'a self,
        tenant: &'a TenantName,
        daemon: &'a PublicKey,
    ) -> impl Iterator<Item = &'a AttachmentRecord> {
        self.attachments
            .values()
            .filter(move |a| a.tenant == *tenant && a.daemon == *daemon)
    }

    /// Every attachment of path `name` in `tenant`.
    pub fn attachments_to<'a>(
        &'a self,
        tenant: &'a TenantName,
        name: &'a ServiceName,
    ) -> impl Iterator<Item = &'a AttachmentRecord> {
        self.attachments
            .values()
            .filter(move |a| a.tenant == *tenant && a.name == *name)
    }

    fn put_attachment(&mut self, a: AttachmentRecord) {
        let key = (a.tenant.clone(), a.daemon, a.name.clone());
        self.attachments.insert(key, a);
    }

    /// Most paths stored records of `tenant` may hold: its limit, or the default when that
    /// is higher (an operator who lowers a limit keeps what was declared before).
    fn most_paths(&self, tenant: &TenantName) -> usize {
        let quota = self
            .tenants
            .get(tenant)
            .map(|t| t.limits)
            .unwrap_or_default();
        quota.paths().max(MAX_PATHS_PER_TENANT)
    }

    /// Most daemons stored records of `tenant` may hold (as [`Self::most_paths`]).
    fn most_daemons(&self, tenant: &TenantName) -> usize {
        let quota = self
            .tenants
            .get(tenant)
            .map(|t| t.limits)
            .unwrap_or_default();
        quota.daemons().max(MAX_DAEMONS_PER_TENANT)
    }

    /// The tenant named `name`.
    #[must_use]
    pub fn tenant(&self, name: &TenantName) -> Option<&TenantRecord> {
        self.tenants.get(name)
    }

    /// The path `name` of `tenant`, if its master declared it.
    #[must_use]
    pub fn path(&self, tenant: &TenantName, name: &ServiceName) -> Option<&PathRecord> {
        self.paths.get(tenant)?.get(name)
    }

    /// The paths of `tenant`, ordered by name.
    pub fn paths_of(&self, tenant: &TenantName) -> impl Iterator<Item = &PathRecord> {
        self.paths
            .get(tenant)
            .into_iter()
            .flat_map(BTreeMap::values)
    }

    /// What `token` is, if the directory knows it.
    pub(crate) fn credential(&self, token: &str) -> Option<&Credential> {
        self.tokens.get(&TokenHash::of(token))
    }

    /// What the token with `hash` is, if the directory knows it.
    pub(crate) fn credential_of(&self, hash: &TokenHash) -> Option<&Credential> {
        self.tokens.get(hash)
    }

    /// Whether `hash` is a token the directory knows.
    pub(crate) fn knows(&self, hash: &TokenHash) -> bool {
        self.tokens.contains_key(hash)
    }

    fn put_tenant(&mut self, tenant: TenantRecord) {
        if let Some(old) = self.tenants.get(&tenant.name) {
            self.tokens.remove(&old.master);
        }
        self.tokens
            .insert(tenant.master, Credential::Master(tenant.name.clone()));
        self.tenants.insert(tenant.name.clone(), tenant);
    }

    fn put_path(&mut self, path: PathRecord) {
        self.delete_path(&path.tenant, &path.name);
        let (t, n) = (path.tenant.clone(), path.name.clone());
        self.tokens
            .insert(path.server, Credential::Server(t.clone(), n.clone()));
        self.tokens
            .insert(path.client, Credential::Client(t.clone(), n.clone()));
        self.paths.entry(t).or_default().insert(n, path);
    }

    fn delete_path(&mut self, tenant: &TenantName, name: &ServiceName) -> Option<PathRecord> {
        let paths = self.paths.get_mut(tenant)?;
        let old = paths.remove(name)?;
        if paths.is_empty() {
            self.paths.remove(tenant);
        }
        self.tokens.remove(&old.server);
        self.tokens.remove(&old.client);
        Some(old)
    }
}

#[cfg(test)]
mod tests;
