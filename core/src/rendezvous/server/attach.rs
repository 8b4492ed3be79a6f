//! The master's attachments on their way to daemons (`burrow admin rattach`/`rdetach`): each
//! is pushed to its daemon as a [`ServerMessage::Attach`], retransmitted until acknowledged
//! like an introduction, and pushed again whenever the daemon registers, so one that was away
//! (or restarted) gets it when it comes back. A detachment's record goes once acknowledged.
//!
//! A fixed path's pinned client keys reach the daemon exposing it the same way
//! ([`ServerMessage::Pins`]), so that it refuses an unpinned key itself.

use std::time::Instant;

use super::super::directory::{AttachmentRecord, DirectoryChange};
use super::super::directory::{MAX_ATTACH_ERROR_LEN, MAX_FAILED_PER_DAEMON, MAX_FIXED_CLIENTS};
use super::super::messages::{ServerMessage, truncate};
use super::super::name::ServiceName;
use super::super::pending::Push;
use super::super::retry::Retry;
use super::Server;
use super::authority::directory_tenant;
use crate::crypto::PublicKey;

impl Server {
    /// Pushes `a` to its daemon if it is registered in `a`'s tenant, replacing an earlier
    /// push of the same path that is still unacknowledged.
    pub(super) fn push_attachment(&mut self, now: Instant, a: &AttachmentRecord) {
        let in_tenant = self
            .registry
            .get(&a.daemon)
            .and_then(|r| directory_tenant(r.token()))
            .is_some_and(|t| t == a.tenant);
        if !in_tenant {
            return;
        }
        self.pushes.retain(|_, p| {
            p.to != a.daemon
                || !matches!(&p.msg, ServerMessage::Attach { name, .. } if *name == a.name)
        });
        let id = self.next_id;
        self.next_id += 1;
        let msg = ServerMessage::Attach {
            id,
            name: a.name.clone(),
            attach: a.attach.clone(),
        };
        let push = Push {
            to: a.daemon,
            msg: msg.clone(),
            retry: Retry::new(now),
        };
        self.pushes.insert(id, push);
        self.send(a.daemon, msg);
    }

    /// Pushes every attachment (and unacknowledged detachment) of `key`, which just
    /// registered.
    pub(super) fn push_attachments_of(&mut self, now: Instant, key: PublicKey) {
        let Some(tenant) = self
            .registry
            .get(&key)
            .and_then(|r| directory_tenant(r.token()))
        else {
            return;
        };
        let records: Vec<AttachmentRecord> = self
            .directory
            .attachments_of(&tenant, &key)
            .cloned()
            .collect();
        for a in &records {
            self.push_attachment(now, a);
        }
    }

    /// Pushes the pinned client keys of `name` of `tenant` (a registry key) to the daemon
    /// exposing it, if it is a fixed path and one exposes it, replacing an earlier push of
    /// the same path that is still unacknowledged.
    pub(super) fn push_pins(&mut self, now: Instant, tenant: &str, name: &ServiceName) {
        let Some(owner) = self.registry.owner(tenant, name) else {
            return;
        };
        let Some(path) = directory_tenant(tenant)
            .and_then(|t| self.directory.path(&t, name))
            .filter(|p| p.fixed)
        else {
            return;
        };
        // The pinned keys, then masters introduced to it (never pinned), within the bound.
        let mut clients: Vec<PublicKey> = path.clients.iter().copied().collect();
        let masters = self
            .connections
            .sources(tenant, name)
            .into_iter()
            .filter(|k| {
                !path.clients.contains(k) && self.registry.get(k).is_some_and(|r| r.rights().master)
            });
        clients.extend(masters);
        clients.truncate(MAX_FIXED_CLIENTS);
        self.pushes.retain(|_, p| {
            p.to != owner || !matches!(&p.msg, ServerMessage::Pins { name: n, .. } if n == name)
        });
        let id = self.next_id;
        self.next_id += 1;
        let msg = ServerMessage::Pins {
            id,
            name: name.clone(),
            clients,
        };
        let push = Push {
            to: owner,
            msg: msg.clone(),
            retry: Retry::new(now),
        };
        self.pushes.insert(id, push);
        self.send(owner, msg);
    }

    /// Pushes the pins of every fixed path `key` exposes (it just registered).
    pub(super) fn push_pins_of(&mut self, now: Instant, key: PublicKey) {
        let Some(reg) = self.registry.get(&key) else {
            return;
        };
        let (tenant, names) = (reg.token().to_string(), reg.services().to_vec());
        for name in &names {
            self.push_pins(now, &tenant, name);
        }
    }

    /// A daemon acknowledged `push`: a detachment it carried is done, and its record goes.
    pub(super) fn acknowledged(&mut self, push: &Push) {
        let ServerMessage::Attach {
            name, attach: None, ..
        } = &push.msg
        else {
            return;
        };
        let Some(tenant) = self
            .registry
            .get(&push.to)
            .and_then(|r| directory_tenant(r.token()))
        else {
            return;
        };
        let pending = self
            .directory
            .attachment(&tenant, &push.to, name)
            .is_some_and(|a| a.attach.is_none());
        if pending {
            self.change(DirectoryChange::DeleteAttachment {
                tenant,
                daemon: push.to,
                name: name.clone(),
            });
        }
    }
}

impl Server {
    /// `from` says its attachment of `name` failed (`Some(why)`) or runs (`None`). Kept only
    /// for a path of its directory tenant, at most [`MAX_FAILED_PER_DAEMON`] per daemon,
    /// until it says otherwise, the path is detached or deleted, or its registration ends.
    pub(super) fn on_attach_outcome(
        &mut self,
        from: PublicKey,
        name: ServiceName,
        failed: Option<String>,
    ) {
        let Some(tenant) = self
            .registry
            .get(&from)
            .and_then(|r| directory_tenant(r.token()))
        else {
            return;
        };
        if self.directory.path(&tenant, &name).is_none() {
            return;
        }
        let Some(why) = failed else {
            self.forget_failure(&from, &name);
            return;
        };
        let held = self.attach_failed.entry(from).or_default();
        if held.len() < MAX_FAILED_PER_DAEMON || held.contains_key(&name) {
            let why: String = why
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            held.insert(name, truncate(why, MAX_ATTACH_ERROR_LEN));
        }
    }

    /// Forgets that `name` failed on `key`.
    pub(super) fn forget_failure(&mut self, key: &PublicKey, name: &ServiceName) {
        if let Some(held) = self.attach_failed.get_mut(key) {
            held.remove(name);
            if held.is_empty() {
                self.attach_failed.remove(key);
            }
        }
    }

    /// The failed attachments of the daemons registered in `tenant` (a registry key), by key
    /// and path.
    pub(super) fn failed_in(&self, tenant: &str) -> Vec<(PublicKey, ServiceName, String)> {
        self.attach_failed
            .iter()
            .filter(|(k, _)| self.registry.get(k).is_some_and(|r| r.token() == tenant))
            .flat_map(|(k, held)| held.iter().map(|(n, why)| (*k, n.clone(), why.clone())))
            .collect()
    }
}
