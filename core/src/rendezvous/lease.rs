//! The server's table of registrations: who is registered, from where, publishing which names,
//! until when, and how much of each token's allowance is in use.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use super::directory::TokenHash;
use super::messages::{ErrorCode, ServerMessage};
use super::name::ServiceName;
use super::plausible::plausible_host;
use crate::crypto::PublicKey;
use crate::path::RoutePolicy;

/// How many final answers a registration remembers, to answer retransmitted requests
/// identically.
const ANSWERS_KEPT: usize = 32;

/// Limits that apply to all registrations made with one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenLimits {
    /// Most service names published at once, over all of the token's registrations.
    pub max_services: usize,
    /// Most daemons (keys) registered at once with the token.
    pub max_registrations: usize,
}

/// What a registration's tokens allow, besides its tenant's open names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rights {
    /// It presented the tenant's master token: every declared path of the tenant.
    pub(crate) master: bool,
    /// Hashes of the directory tokens it presented (each checked against a path's tokens
    /// when used, so a redeemed token stops counting at once).
    pub(crate) tokens: Vec<TokenHash>,
}

/// One daemon's registration, as the server holds it.
#[derive(Clone, Debug)]
pub(crate) struct Registration {
    key: PublicKey,
    addr: SocketAddr,
    /// The tenant: the namespace its names live in and the key its allowances count under.
    token: String,
    rights: Rights,
    services: Vec<ServiceName>,
    /// The route policy of each service, in the order of `services` as registered; empty
    /// when all are `any`.
    routes: Vec<RoutePolicy>,
    host_candidates: Vec<SocketAddr>,
    since: Instant,
    expires: Instant,
    /// Final answers to `Lookup` and `ConnectPeer` requests, newest last.
    answers: VecDeque<(u64, ServerMessage)>,
}

impl Registration {
    /// The daemon's static key.
    pub(crate) fn key(&self) -> PublicKey {
        self.key
    }

    /// Its server-reflexive address: where its latest message came from.
    #[cfg(test)]
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its tenant (see [`Registry`]).
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// What its directory tokens allow.
    pub(crate) fn rights(&self) -> &Rights {
        &self.rights
    }

    /// The services it publishes.
    pub(crate) fn services(&self) -> &[ServiceName] {
        &self.services
    }

    /// The route policy it set for `name`; `None` for `any` (or a name it does not publish).
    pub(crate) fn route(&self, name: &ServiceName) -> Option<RoutePolicy> {
        let at = self.services.iter().position(|n| n == name)?;
        self.routes
            .get(at)
            .copied()
            .filter(|r| *r != RoutePolicy::Any)
    }

    /// The host candidates it announced.
    #[cfg(test)]
    pub(crate) fn host_candidates(&self) -> &[SocketAddr] {
        &self.host_candidates
    }

    /// When its lease runs out unless renewed.
    #[cfg(test)]
    pub(crate) fn expires(&self) -> Instant {
        self.expires
    }

    /// Candidates to give a peer: the reflexive address first, then the host candidates that
    /// can be the daemon's own (see `plausible_host`: never a third party's address).
    pub(crate) fn candidates(&self) -> Vec<SocketAddr> {
        let mut out = Vec::with_capacity(1 + self.host_candidates.len());
        out.push(self.addr);
        out.extend(
            self.host_candidates
                .iter()
                .filter(|a| **a != self.addr && plausible_host(**a, self.addr)),
        );
        out
    }

    /// The remembered final answer to `request`, if any.
    pub(crate) fn answer(&self, request: u64) -> Option<&ServerMessage> {
        self.answers
            .iter()
            .find(|(r, _)| *r == request)
            .map(|(_, m)| m)
    }

    /// Remembers the final answer to `request`.
    pub(crate) fn remember(&mut self, request: u64, msg: ServerMessage) {
        if self.answers.len() == ANSWERS_KEPT {
            self.answers.pop_front();
        }
        self.answers.push_back((request, msg));
    }
}

/// What one token is using.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    registrations: usize,
    services: usize,
}

/// A `Register` the registry is asked to apply.
pub(crate) struct NewRegistration {
    pub(crate) key: PublicKey,
    pub(crate) addr: SocketAddr,
    pub(crate) token: String,
    pub(crate) rights: Rights,
    pub(crate) services: Vec<ServiceName>,
    /// One per service (see [`Registration::route`]), or empty.
    pub(crate) routes: Vec<RoutePolicy>,
    pub(crate) host_candidates: Vec<SocketAddr>,
    pub(crate) expires: Instant,
}

/// All registrations, indexed by key, by (tenant, service name) and by expiry. A tenant is a
/// token: each token's daemons publish and look up names in a namespace of their own.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_key: BTreeMap<PublicKey, Registration>,
    names: BTreeMap<(String, ServiceName), PublicKey>,
    expiries: BTreeSet<(Instant, PublicKey)>,
    usage: BTreeMap<String, Usage>,
}

impl Registry {
    /// Whether any live registration holds `token`.
    pub(crate) fn has_token(&self, token: &str) -> bool {
        self.usage.contains_key(token)
    }

    pub(crate) fn get(&self, key: &PublicKey) -> Option<&Registration> {
        self.by_key.get(key)
    }

    /// Mutable access for the answer cache; the indexed fields stay private to this module.
    pub(crate) fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Registration> {
        self.by_key.get_mut(key)
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Registration> {
        self.by_key.values()
    }

    /// How many registrations are live.
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The key that publishes `name` in the namespace of `tenant` (a token).
    pub(crate) fn owner(&self, tenant: &str, name: &ServiceName) -> Option<PublicKey> {
        self.names.get(&(tenant.to_string(), name.clone())).copied()
    }

    /// Checks that `new` may be applied, without changing anything. `limits` are the token's
    /// (`None`: unlimited); `max_total` bounds the number of registrations on the server.
    pub(crate) fn check(
        &self,
        new: &NewRegistration,
        limits: Option<&TokenLimits>,
        max_total: usize,
    ) -> Result<(), (ErrorCode, String)> {
        for (i, name) in new.services.iter().enumerate() {
            if new.services[..i].contains(name) {
                return Err((ErrorCode::Malformed, format!("{name} is listed twice")));
            }
            if self.owner(&new.token, name).is_some_and(|k| k != new.key) {
                return Err((
                    ErrorCode::NameTaken,
                    format!("{name} is already published by another daemon"),
                ));
            }
        }
        let old = self.by_key.get(&new.key);
        if old.is_none() && self.by_key.len() >= max_total {
            return Err((ErrorCode::TooMany, "the server is full".into()));
        }
        let Some(limits) = limits else {
            return Ok(());
        };
        let usage = self.usage.get(&new.token).copied().unwrap_or_default();
        // What this key already counts against the same token.
        let (old_regs, old_services) = match old {
            Some(r) if r.token == new.token => (1, r.services.len()),
            _ => (0, 0),
        };
        if usage.registrations - old_regs + 1 > limits.max_registrations {
            return Err((
                ErrorCode::TooMany,
                format!(
                    "the token allows {} registered daemons at once",
                    limits.max_registrations
                ),
            ));
        }
        if usage.services - old_services + new.services.len() > limits.max_services {
            return Err((
                ErrorCode::TooMany,
                format!("the token allows {} services at once", limits.max_services),
            ));
        }
        Ok(())
    }

    /// Creates or replaces a registration (after [`Self::check`]). Returns whether it is new.
    pub(crate) fn upsert(&mut self, now: Instant, new: NewRegistration) -> bool {
        let (is_new, since, answers) = match self.remove(&new.key) {
            Some(old) => (false, old.since, old.answers),
            None => (true, now, VecDeque::new()),
        };
        let usage = self.usage.entry(new.token.clone()).or_default();
        usage.registrations += 1;
        usage.services += new.services.len();
        for name in &new.services {
            self.names
                .insert((new.token.clone(), name.clone()), new.key);
        }
        self.expiries.insert((new.expires, new.key));
        self.by_key.insert(
            new.key,
            Registration {
                key: new.key,
                addr: new.addr,
                token: new.token,
                rights: new.rights,
                services: new.services,
                routes: new.routes,
                host_candidates: new.host_candidates,
                since,
                expires: new.expires,
                answers,
            },
        );
        is_new
    }

    /// Moves `key`'s lease end to `until`.
    pub(crate) fn renew(&mut self, key: &PublicKey, until: Instant) {
        if let Some(reg) = self.by_key.get_mut(key) {
            self.expiries.remove(&(reg.expires, *key));
            reg.expires = until;
            self.expiries.insert((until, *key));
        }
    }

    /// Notes where `key`'s latest message came from; returns whether it moved.
    pub(crate) fn set_addr(&mut self, key: &PublicKey, addr: SocketAddr) -> bool {
        match self.by_key.get_mut(key) {
            Some(reg) if reg.addr != addr => {
                reg.addr = addr;
                true
            }
            _ => false,
        }
    }

    /// Stops publishing those of `key`'s names that `keep` refuses (their path was deleted,
    /// or the token that allowed them redeemed). Returns the names dropped.
    pub(crate) fn drop_names(
        &mut self,
        key: &PublicKey,
        keep: impl Fn(&ServiceName) -> bool,
    ) -> Vec<ServiceName> {
        let Some(reg) = self.by_key.get_mut(key) else {
            return Vec::new();
        };
        let routes = std::mem::take(&mut reg.routes);
        let route = |i: usize| routes.get(i).copied().unwrap_or_default();
        let (kept, dropped): (Vec<_>, Vec<_>) = reg
            .services
            .drain(..)
            .enumerate()
            .partition(|(_, n)| keep(n));
        if !routes.is_empty() {
            reg.routes = kept.iter().map(|(i, _)| route(*i)).collect();
        }
        reg.services = kept.into_iter().map(|(_, n)| n).collect();
        let dropped: Vec<ServiceName> = dropped.into_iter().map(|(_, n)| n).collect();
        for name in &dropped {
            self.names.remove(&(reg.token.clone(), name.clone()));
        }
        if let Some(usage) = self.usage.get_mut(&reg.token) {
            usage.services -= dropped.len();
        }
        dropped
    }

    /// The keys registered under `tenant`.
    pub(crate) fn keys_of(&self, tenant: &str) -> Vec<PublicKey> {
        self.by_key
            .values()
            .filter(|r| r.token == tenant)
            .map(|r| r.key)
            .collect()
    }

    /// Removes `key`'s registration and its names.
    pub(crate) fn remove(&mut self, key: &PublicKey) -> Option<Registration> {
        let reg = self.by_key.remove(key)?;
        self.expiries.remove(&(reg.expires, *key));
        for name in &reg.services {
            self.names.remove(&(reg.token.clone(), name.clone()));
        }
        if let Some(usage) = self.usage.get_mut(&reg.token) {
            usage.registrations -= 1;
            usage.services -= reg.services.len();
            if usage.registrations == 0 {
                self.usage.remove(&reg.token);
            }
        }
        Some(reg)
    }

    /// The earliest lease end.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Removes and returns one registration whose lease has ended by `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Registration> {
        let &(at, key) = self.expiries.first()?;
        if at > now {
            return None;
        }
        self.remove(&key)
    }
}
