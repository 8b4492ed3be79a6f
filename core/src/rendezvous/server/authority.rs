//! The server's authority: which token belongs to which tenant, what a registration may
//! expose and connect to, and the commands of a tenant's master (see [`super::super::directory`]).
//!
//! Two kinds of tenant share the registry. A token of [`ServerConfig::tokens`] is a tenant of
//! open names: its daemons publish and look up any name (first come, first served), under
//! the tenant key `t:TOKEN`. A tenant of the directory (`d:NAME`) has only the paths its master
//! declared: a daemon exposes one with the path's server token and connects with its client
//! token (or the master token, which allows both). Both kinds are invisible to each other.
//!
//! [`ServerConfig::tokens`]: super::super::ServerConfig::tokens

use super::super::config::TokenPolicy;
use super::super::directory::{self, Credential, DirectoryChange, TokenHash};
use super::super::directory::{DaemonPath, TenantName, TokenRole};
use super::super::grants::{Grant, Grants, MAX_GRANTS, TokenUse};
use super::super::lease::{Rights, TokenLimits};
use super::super::messages::{ErrorCode, ServerMessage};
use super::super::name::ServiceName;
use super::super::relay::RelayLimits;
use super::super::{ServerEvent, directory::AdminCommand};
use std::time::Instant;

use super::super::pending::Push;
use super::super::retry::Retry;
use super::Server;
use crate::crypto::PublicKey;

/// Allowances of a directory tenant's daemons, together.
pub(crate) const DIRECTORY_TENANT_LIMITS: TokenLimits = TokenLimits {
    max_services: 10_000,
    max_registrations: 10_000,
};

/// The prefix of a directory tenant's key in the registry.
const DIRECTORY_TENANT: &str = "d:";
/// The prefix of an open tenant's key (a configured token).
const OPEN_TENANT: &str = "t:";

/// A refused request: its code and the detail for the daemon's log.
type Refusal = (ErrorCode, String);

impl Server {
    /// The daemon entries whose tokens `key` presents (`token` and `path_tokens`) and which
    /// are not bound yet, to bind once its registration is accepted; refuses a daemon token
    /// bound to another key (counted, and handed out as [`ServerEvent::DaemonKeyRefused`]).
    pub(super) fn daemons_to_bind(
        &mut self,
        key: PublicKey,
        token: &str,
        path_tokens: &[String],
    ) -> Result<Vec<DirectoryChange>, Refusal> {
        let mut binds = Vec::new();
        for t in std::iter::once(token).chain(path_tokens.iter().map(String::as_str)) {
            let Some(Credential::Daemon(tenant, name)) = self.directory.credential(t) else {
                continue;
            };
            let Some(record) = self.directory.daemon(tenant, name) else {
                continue;
            };
            match record.key {
                Some(bound) if bound == key => {}
                Some(bound) => {
                    self.keys_refused += 1;
                    let (tenant, daemon) = (tenant.to_string(), name.clone());
                    let detail = format!(
                        "daemon token of {daemon} is bound to another key ({bound}); its master \
                         can unbind it with `burrow admin redeem daemon {daemon}`"
                    );
                    self.events.push_back(ServerEvent::DaemonKeyRefused {
                        key,
                        tenant,
                        daemon,
                        refused: self.keys_refused,
                    });
                    return Err((ErrorCode::BadToken, detail));
                }
                None => {
                    let mut record = record.clone();
                    record.key = Some(key);
                    binds.push(DirectoryChange::PutDaemon(record));
                }
            }
        }
        Ok(binds)
    }

    /// What a `Register`'s tokens make of it: the tenant key, the rights, the limits
    /// (`None`: unlimited) and what each path token does. A path token that is unknown,
    /// redeemed or another tenant's is refused alone ([`TokenUse::Refused`]): the others
    /// still count, so one stale imported token never costs a daemon its registration.
    pub(super) fn resolve(
        &self,
        token: &str,
        path_tokens: &[String],
    ) -> Result<(String, Rights, Option<TokenLimits>, Vec<TokenUse>), Refusal> {
        let bad = |detail: &str| (ErrorCode::BadToken, detail.to_string());
        let (tenant, mut rights, limits) = match self.directory.credential(token) {
            Some(credential) => {
                let rights = Rights {
                    master: matches!(credential, Credential::Master(_)),
                    tokens: vec![TokenHash::of(token)],
                };
                let tenant = format!("{DIRECTORY_TENANT}{}", credential.tenant());
                (tenant, rights, Some(DIRECTORY_TENANT_LIMITS))
            }
            None => {
                let limits = match &self.config.tokens {
                    TokenPolicy::AnyToken => None,
                    TokenPolicy::Only(tokens) => match tokens.get(token) {
                        Some(limits) => Some(*limits),
                        None => return Err(bad("the server does not accept this token")),
                    },
                };
                (format!("{OPEN_TENANT}{token}"), Rights::default(), limits)
            }
        };
        let mut uses = Vec::new();
        for extra in path_tokens {
            let credential = self
                .directory
                .credential(extra)
                .filter(|c| tenant == format!("{DIRECTORY_TENANT}{}", c.tenant()));
            uses.push(match credential {
                None => TokenUse::Refused,
                Some(Credential::Master(_)) => TokenUse::Master,
                Some(Credential::Daemon(..)) => TokenUse::Daemon,
                Some(Credential::Server(_, name)) => TokenUse::Path(Grant {
                    name: name.clone(),
                    role: TokenRole::Server,
                }),
                Some(Credential::Client(_, name)) => TokenUse::Path(Grant {
                    name: name.clone(),
                    role: TokenRole::Client,
                }),
            });
            if let Some(credential) = credential {
                rights.master |= matches!(credential, Credential::Master(_));
                rights.tokens.push(TokenHash::of(extra));
            }
        }
        Ok((tenant, rights, limits, uses))
    }

    /// What a `Register` with `token` and `path_tokens` allows (once [`Self::resolve`]
    /// accepted them): one grant per path token, or the master's reach. `None` for a daemon
    /// of open names that presents no path token: the directory grants it nothing to report.
    pub(super) fn grants(&self, token: &str, path_tokens: &[String]) -> Option<Grants> {
        if path_tokens.is_empty() && self.directory.credential(token).is_none() {
            return None;
        }
        let mut grants = Grants::default();
        for t in std::iter::once(token).chain(path_tokens.iter().map(String::as_str)) {
            let grant = match self.directory.credential(t) {
                Some(Credential::Master(_)) => {
                    grants.master = true;
                    continue;
                }
                Some(Credential::Server(_, name)) => Grant {
                    name: name.clone(),
                    role: TokenRole::Server,
                },
                Some(Credential::Client(_, name)) => Grant {
                    name: name.clone(),
                    role: TokenRole::Client,
                },
                Some(Credential::Daemon(..)) | None => continue,
            };
            // One per token, so never more than MAX_GRANTS.
            if !grants.paths.contains(&grant) && grants.paths.len() < MAX_GRANTS {
                grants.paths.push(grant);
            }
        }
        Some(grants)
    }

    /// The directory path `name` of `tenant` (a registry key), if it is a directory tenant
    /// that declared it.
    fn declared(&self, tenant: &str, name: &ServiceName) -> Option<&directory::PathRecord> {
        self.directory.path(&directory_tenant(tenant)?, name)
    }

    /// Whether `source` may be introduced for `name` of `tenant` under the path's limit of
    /// connections: it holds a place already, or one is free. The refusal names the limit.
    pub(super) fn room_for(
        &self,
        tenant: &str,
        name: &ServiceName,
        source: &PublicKey,
    ) -> Result<(), String> {
        let Some(max) = self.declared(tenant, name).and_then(|p| p.max_connections) else {
            return Ok(());
        };
        let full =
            self.connections.count(tenant, name) >= usize::try_from(max).unwrap_or(usize::MAX);
        if full && !self.connections.holds(tenant, name, source) {
            return Err(format!(
                "path {name} is at its limit of {max} connections; try again when one of its \
                 connecting daemons stops, or ask its master to raise the limit"
            ));
        }
        Ok(())
    }

    /// Whether a daemon of `tenant` with `rights` may publish `name`.
    pub(super) fn may_expose(
        &self,
        tenant: &str,
        key: &PublicKey,
        rights: &Rights,
        name: &ServiceName,
    ) -> bool {
        if !tenant.starts_with(DIRECTORY_TENANT) {
            return true;
        }
        self.declared(tenant, name)
            .is_some_and(|p| rights.master || rights.tokens.contains(&p.server))
            || self.attached(tenant, key, name, true)
    }

    /// Whether a daemon of `tenant` with `rights` may connect to `name`.
    pub(super) fn may_connect(
        &self,
        tenant: &str,
        key: &PublicKey,
        rights: &Rights,
        name: &ServiceName,
    ) -> bool {
        if !tenant.starts_with(DIRECTORY_TENANT) {
            return true;
        }
        self.declared(tenant, name)
            .is_some_and(|p| rights.master || rights.tokens.contains(&p.client))
            || self.attached(tenant, key, name, false)
    }

    /// Whether the master of `tenant` (a registry key) attached `name` to `key`, to expose
    /// it (`expose`) or to connect to it.
    fn attached(&self, tenant: &str, key: &PublicKey, name: &ServiceName, expose: bool) -> bool {
        let Some(tenant) = directory_tenant(tenant) else {
            return false;
        };
        self.directory
            .attachment(&tenant, key, name)
            .and_then(|a| a.attach.as_ref())
            .is_some_and(|a| a.exposes() == expose)
    }

    /// For a fixed path: lets `key` in if it is the pinned client key, or pins it if none is
    /// pinned yet (the first client to connect is the one kept, until the master reloads the
    /// path). A master's own connections are never pinned and never refused by the server;
    /// the destination, which admits only pinned keys to a fixed path, is told of a master's
    /// key as pinned for as long as it is introduced (see [`Self::pins_of`]). Returns whether
    /// the pinned keys changed.
    pub(super) fn pin_client(
        &mut self,
        tenant: &str,
        rights: &Rights,
        name: &ServiceName,
        key: PublicKey,
    ) -> Result<bool, String> {
        let Some(path) = self.declared(tenant, name) else {
            return Ok(false);
        };
        if !path.fixed || rights.master || path.clients.contains(&key) {
            return Ok(path.fixed && rights.master);
        }
        if !path.clients.is_empty() {
            return Err(format!(
                "{name} is fixed to the client keys that used it first; its master can let a \
                 new one in with `burrow admin reload {name}`"
            ));
        }
        let mut path = path.clone();
        path.clients.insert(key);
        self.change(DirectoryChange::PutPath(path));
        Ok(true)
    }

    /// Runs a master's command for `from`'s request.
    pub(super) fn on_admin(
        &mut self,
        now: Instant,
        from: PublicKey,
        request: u64,
        master: &str,
        command: AdminCommand,
    ) {
        let Some(Credential::Master(tenant)) = self.directory.credential(master).cloned() else {
            let detail = "not a master token of this server".to_string();
            return self.fail(from, request, ErrorCode::BadToken, detail);
        };
        let tenant_key = format!("{DIRECTORY_TENANT}{tenant}");
        let failed = self.failed_in(&tenant_key);
        let registry = &self.registry;
        let rng = &mut self.rng;
        let mut token = || hex(&rng.bytes::<24>());
        let exposed_by = |name: &ServiceName| registry.owner(&tenant_key, name);
        let registered =
            |key: &PublicKey| registry.get(key).is_some_and(|r| r.token() == tenant_key);
        let dir = &self.directory;
        let uses = |key: &PublicKey| {
            let reg = registry.get(key).filter(|r| r.token() == tenant_key)?;
            let mut paths: Vec<DaemonPath> = reg
                .services()
                .iter()
                .map(|name| DaemonPath {
                    name: name.clone(),
                    role: TokenRole::Server,
                })
                .collect();
            for hash in &reg.rights().tokens {
                if let Some(Credential::Client(_, name)) = dir.credential_of(hash) {
                    paths.push(DaemonPath {
                        name: name.clone(),
                        role: TokenRole::Client,
                    });
                }
            }
            Some(paths)
        };
        let connections = &self.connections;
        let count = |name: &ServiceName| {
            u32::try_from(connections.count(&tenant_key, name)).unwrap_or(u32::MAX)
        };
        let live = directory::Live {
            exposed_by: &exposed_by,
            registered: &registered,
            uses: &uses,
            connections: &count,
            relay_bytes_per_sec: self.config.relay.bytes_per_sec,
            // The asking admin's own short-lived daemon is no daemon of the tenant's to list.
            online: &|| {
                let mut keys = registry.keys_of(&tenant_key);
                keys.retain(|k| *k != from);
                keys
            },
            failed: &|| failed.clone(),
        };
        let outcome = directory::run_admin(&self.directory, &tenant, command, &mut token, &live);
        match outcome {
            Err((code, detail)) => self.fail(from, request, code, detail),
            Ok((answer, changes)) => {
                // A daemon entry removed or unbound ends the registration of the key that
                // was bound to it, whatever other tokens it holds.
                let unbound: Vec<PublicKey> = changes
                    .iter()
                    .filter_map(|c| match c {
                        DirectoryChange::DeleteDaemon { tenant, name } => {
                            self.directory.daemon(tenant, name)?.key
                        }
                        DirectoryChange::PutDaemon(d) if d.key.is_none() => {
                            self.directory.daemon(&d.tenant, &d.name)?.key
                        }
                        _ => None,
                    })
                    .collect();
                let mut pins = Vec::new();
                for change in changes {
                    match &change {
                        DirectoryChange::PutAttachment(a) => self.push_attachment(now, a),
                        DirectoryChange::PutPath(p) if p.fixed => pins.push(p.name.clone()),
                        _ => {}
                    }
                    self.change(change);
                }
                for name in &pins {
                    self.push_pins(now, &tenant_key, name);
                }
                self.enforce(now, &tenant_key);
                for key in unbound {
                    if self
                        .registry
                        .get(&key)
                        .is_some_and(|r| r.token() == tenant_key)
                    {
                        self.revoke(now, key);
                    }
                }
                let msg = ServerMessage::Admin { request, answer };
                if let Some(reg) = self.registry.get_mut(&from) {
                    reg.remember(request, msg.clone());
                }
                self.send(from, msg);
            }
        }
    }

    /// Applies a change to the directory and hands it out to be stored.
    pub(super) fn change(&mut self, change: DirectoryChange) {
        match &change {
            DirectoryChange::DeletePath { tenant, name } => {
                let tenant = format!("{DIRECTORY_TENANT}{tenant}");
                self.connections.remove_path(&tenant, name);
                for key in self.registry.keys_of(&tenant) {
                    self.forget_failure(&key, name);
                }
            }
            // Detached (or attached anew): an earlier failure is no longer what stands.
            DirectoryChange::PutAttachment(a) => self.forget_failure(&a.daemon, &a.name),
            _ => {}
        }
        self.directory.apply(&change);
        self.events.push_back(ServerEvent::Directory(change));
    }

    /// After the directory changed: the daemons of `tenant` stop publishing the names their
    /// tokens no longer allow, and a daemon none of whose tokens still counts loses its
    /// registration (it is told its lease ended, registers again and is refused) and its
    /// introductions: the relay stops forwarding for it, and each daemon it was introduced
    /// to is told to drop its sessions with it ([`ServerMessage::Revoked`]).
    fn enforce(&mut self, now: Instant, tenant: &str) {
        for key in self.registry.keys_of(tenant) {
            let Some(rights) = self.registry.get(&key).map(|r| r.rights().clone()) else {
                continue;
            };
            let refused: Vec<ServiceName> = self
                .registry
                .get(&key)
                .map(|r| {
                    r.services()
                        .iter()
                        .filter(|n| !self.may_expose(tenant, &key, &rights, n))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let dropped = self.registry.drop_names(&key, |n| !refused.contains(n));
            for name in dropped {
                self.events
                    .push_back(ServerEvent::NameWithdrawn { key, name });
            }
            self.unpublish_stale(
                &key,
                "the directory no longer lets the daemon expose the path",
            );
            let live = rights.master || rights.tokens.iter().any(|t| self.directory.knows(t));
            if !live {
                self.revoke(now, key);
            }
        }
    }

    /// Ends `key`'s registration and tells everyone it was introduced to.
    fn revoke(&mut self, now: Instant, key: PublicKey) {
        for peer in self.pairs.peers_of(&key) {
            let id = self.next_id;
            self.next_id += 1;
            let msg = ServerMessage::Revoked { id, peer: key };
            let retry = Retry::new(now);
            self.pushes.insert(
                id,
                Push {
                    to: peer,
                    msg: msg.clone(),
                    retry,
                },
            );
            self.send(peer, msg);
        }
        if self.registry.remove(&key).is_some() {
            self.events.push_back(ServerEvent::Revoked { key });
            self.send(key, ServerMessage::LeaseExpired);
            self.forget(&key, "the peer's token was withdrawn");
            self.session_up(now, key);
        }
    }
}

/// The relay limits of registry tenant `tenant`: the server's (`base`), with the rate its
/// operator set for a directory tenant.
pub(super) fn relay_limits(
    dir: &directory::Directory,
    base: RelayLimits,
    tenant: &str,
) -> RelayLimits {
    let rate = directory_tenant(tenant).and_then(|t| dir.tenant(&t)?.limits.relay_bytes_per_sec);
    RelayLimits {
        bytes_per_sec: rate.unwrap_or(base.bytes_per_sec),
        ..base
    }
}

/// The directory tenant a registry key names, if it names one.
pub(super) fn directory_tenant(tenant: &str) -> Option<TenantName> {
    tenant.strip_prefix(DIRECTORY_TENANT)?.parse().ok()
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
