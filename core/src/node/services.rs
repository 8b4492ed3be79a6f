//! Services at run time: adding and removing one service by name on a running [`Node`], and
//! going from the services that run to a wanted set (a reloaded config file) with
//! [`Node::plan`] and [`Node::apply`].
//!
//! A runtime reloading a config does three steps, the middle one its only IO:
//!
//! ```text
//! let plan = node.plan(&wanted);                        // what changes, computed here
//! let bound = bind_listeners(&plan.connect, bind, addr)?;  // refuse the whole reload on error
//! let applied = node.apply(now, plan, bound);           // stop, start, report
//! for id in applied.closed { close that listener }      // its connections are already reset
//! for (id, socket) in applied.started { accept on it }
//! ```
//!
//! Pins (`peer_key`) are applied before services start, so a new connected service never
//! trusts a first key it should not. Binding first means a reload that cannot bind a new listener changes nothing. The single
//! service commands ([`Node::add_expose`], [`Node::add_connect`], [`Node::remove_service`])
//! are the same steps for one service, for a control command that attaches or detaches one.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use super::{Listener, Node};
use crate::crypto::PublicKey;
use crate::error::ServiceError;
use crate::forward::{ExposeOptions, ListenerId};
use crate::rendezvous::ServiceName;

/// A set of services as a config lists them: exposed (name, target) and connected (name,
/// local listen address).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Services {
    /// Services to expose: name and local target (`host:port`, or `unix:PATH`).
    pub expose: Vec<(ServiceName, String)>,
    /// Services to reach: name and the local TCP address to listen on for it.
    pub connect: Vec<(ServiceName, SocketAddr)>,
    /// UDP services to reach: name and the local UDP address to listen on for it.
    pub connect_udp: Vec<(ServiceName, SocketAddr)>,
    /// Keys the daemons exposing connected services must have (`peer_key`), by service.
    pub pins: Vec<(ServiceName, PublicKey)>,
    /// How exposed services are forwarded (UDP, PROXY protocol), by name; not listed: plain
    /// TCP. A changed entry restarts its service.
    pub options: Vec<(ServiceName, ExposeOptions)>,
    /// The daemons met in peer mode and the connects' own routes; `None`: as they are.
    pub routing: Option<super::Routing>,
}

impl Services {
    /// How `name` is forwarded if exposed.
    fn options_of(&self, name: &ServiceName) -> ExposeOptions {
        let found = self.options.iter().find(|(n, _)| n == name);
        found.map(|(_, o)| *o).unwrap_or_default()
    }
}

/// What it takes to go from the services that run to a wanted [`Services`], from
/// [`Node::plan`]. A service whose target or listen address changed is removed and added
/// again; one that did not change is left alone, connections and all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Services to stop (exposed or connected), by name.
    pub remove: Vec<ServiceName>,
    /// Services to expose.
    pub expose: Vec<(ServiceName, String)>,
    /// Services to listen for; the runtime binds these before [`Node::apply`].
    pub connect: Vec<(ServiceName, SocketAddr)>,
    /// Keys to pin, each new or different from the one pinned now.
    pub pins: Vec<(ServiceName, PublicKey)>,
    /// How the services in `expose` are forwarded.
    pub options: Vec<(ServiceName, ExposeOptions)>,
    /// Services that stay as they are.
    pub unchanged: Vec<ServiceName>,
    /// New routing (peers met in peer mode, connects' routes), when it changed.
    pub routing: Option<super::Routing>,
    /// UDP services to stop listening for, by name ([`Node::apply_udp`]).
    pub remove_udp: Vec<ServiceName>,
    /// UDP services to listen for; the runtime binds these before [`Node::apply_udp`].
    pub connect_udp: Vec<(ServiceName, SocketAddr)>,
}

impl Plan {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.expose.is_empty()
            && self.connect.is_empty()
            && self.pins.is_empty()
            && self.routing.is_none()
            && self.remove_udp.is_empty()
            && self.connect_udp.is_empty()
    }
}

/// What [`Node::apply`] did, for the runtime's listeners and the log.
#[derive(Debug)]
pub struct Applied<L> {
    /// Listeners to close (their connections are already being reset).
    pub closed: Vec<ListenerId>,
    /// New listeners to accept on, with the node's id for each.
    pub started: Vec<(ListenerId, L)>,
    /// What changed, in words.
    pub summary: Summary,
}

/// What a reload changed; its `Display` is one line for the log and the control command.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Services started (exposed or listened for).
    pub added: Vec<String>,
    /// Services restarted with a new target, listen address or pinned key (their
    /// connections were reset).
    pub changed: Vec<String>,
    /// Services stopped.
    pub removed: Vec<String>,
    /// How many services were left as they were.
    pub unchanged: usize,
    /// Services that could not start, and why.
    pub failed: Vec<String>,
}

impl Summary {
    /// Counts `name` as started: added, or changed when it was running before.
    fn started(&mut self, changed: &BTreeSet<String>, name: String) {
        let list = if changed.contains(&name) {
            &mut self.changed
        } else {
            &mut self.added
        };
        if !list.contains(&name) {
            list.push(name);
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |names: &[String]| {
            if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            }
        };
        write!(f, "{} added{}, ", self.added.len(), list(&self.added))?;
        if !self.changed.is_empty() {
            write!(f, "{} changed{}, ", self.changed.len(), list(&self.changed))?;
        }
        write!(
            f,
            "{} removed{}, {} unchanged",
            self.removed.len(),
            list(&self.removed),
            self.unchanged
        )?;
        if !self.failed.is_empty() {
            write!(f, "; failed: {}", self.failed.join("; "))?;
        }
        Ok(())
    }
}

/// What [`Node::remove_service`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The service was exposed; it is no longer, and its incoming connections are reset.
    pub exposed: bool,
    /// The service was listened for: close this listener (its connections are reset).
    pub listener: Option<ListenerId>,
}

/// Why a service could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddError {
    /// A service of that name already runs this way (remove it first, or keep it).
    Exists(ServiceName),
    /// The endpoint refused to expose it.
    Expose(ServiceError),
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exists(name) => write!(f, "{name} already runs: remove it first"),
            Self::Expose(e) => write!(f, "cannot expose: {e}"),
        }
    }
}

impl std::error::Error for AddError {}

impl Node {
    /// The services that run now.
    pub fn services(&self) -> Services {
        Services {
            expose: self.exposed.clone(),
            connect: self.listen_addrs.clone(),
            connect_udp: self.udp_connects(),
            pins: self.known.iter().map(|(s, k)| (s.clone(), *k)).collect(),
            options: self.options.iter().map(|(s, o)| (s.clone(), *o)).collect(),
            routing: self.ep.routing(),
        }
    }

    /// How the exposed `service` is forwarded.
    fn options_of(&self, service: &ServiceName) -> ExposeOptions {
        self.options.get(service).copied().unwrap_or_default()
    }

    /// Exposes `service`, forwarding its streams to `target`, while the node runs; the daemon
    /// publishes it with its rendezvous server. An exposed name is an [`AddError::Exists`].
    pub fn add_expose(
        &mut self,
        now: Instant,
        service: ServiceName,
        target: String,
    ) -> Result<(), AddError> {
        self.add_expose_with(now, service, target, ExposeOptions::default())
    }

    /// [`Self::add_expose`] forwarded as `options` say (UDP, PROXY protocol).
    pub fn add_expose_with(
        &mut self,
        now: Instant,
        service: ServiceName,
        target: String,
        options: ExposeOptions,
    ) -> Result<(), AddError> {
        if self.exposed.iter().any(|(s, _)| *s == service) {
            return Err(AddError::Exists(service));
        }
        self.input(now)
            .1
            .expose_with(now, service.clone(), target.clone(), options)
            .map_err(AddError::Expose)?;
        self.options.insert(service.clone(), options);
        self.exposed.push((service, target));
        Ok(())
    }

    /// Starts forwarding connections from a listener the runtime has bound at `addr` to the
    /// remote `service`; returns the id under which to report its accepts. A service listened
    /// for already is an [`AddError::Exists`] (close the new socket).
    pub fn add_connect(
        &mut self,
        now: Instant,
        service: ServiceName,
        addr: SocketAddr,
    ) -> Result<ListenerId, AddError> {
        if self.listener_ids.iter().any(|(s, _)| *s == service) {
            return Err(AddError::Exists(service));
        }
        self.now = now;
        let id = self.fwd.listen(service.clone());
        self.listener_ids.push((service.clone(), id));
        self.listen_addrs.push((service, addr));
        Ok(id)
    }

    /// Pins `key` for the connected `service`: the daemon exposing it must have that key
    /// (any other is refused), as a `peer_key` given at start. Connections open now are left
    /// alone; remove and add the service to reset them.
    pub fn pin_service(
        &mut self,
        service: ServiceName,
        key: PublicKey,
    ) -> Result<(), ServiceError> {
        self.ep.pin_service(service.clone(), key)?;
        self.known.insert(service, key);
        Ok(())
    }

    /// Stops whatever runs under `service`: an exposed service is unpublished and its
    /// incoming connections reset; a connected one's listener is forgotten (close it) and the
    /// connections accepted on it reset. Drain [`Node::poll_output`] for the resets. `None`
    /// when nothing runs under that name.
    pub fn remove_service(&mut self, now: Instant, service: &ServiceName) -> Option<Removed> {
        let (fwd, ep) = self.input(now);
        let exposed = ep.unexpose(now, service);
        if exposed {
            fwd.reset_incoming(now, ep, service);
            self.udp.reset_incoming(service);
        }
        self.options.remove(service);
        self.exposed.retain(|(s, _)| s != service);
        let listener = self
            .listener_ids
            .iter()
            .position(|(s, _)| s == service)
            .map(|i| self.listener_ids.remove(i).1);
        if let Some(id) = listener {
            let (fwd, ep) = self.input(now);
            fwd.unlisten(now, ep, id);
            ep.forget_service(now, service);
            self.listen_addrs.retain(|(s, _)| s != service);
        }
        (exposed || listener.is_some()).then_some(Removed { exposed, listener })
    }

    /// What it takes to go from the services that run to `wanted`: see [`Plan`].
    pub fn plan(&self, wanted: &Services) -> Plan {
        let mut plan = Plan::default();
        let mut remove = BTreeSet::new();
        let mut keep = BTreeSet::new();
        for (name, target) in &self.exposed {
            match wanted.expose.iter().find(|(n, _)| n == name) {
                Some((_, t)) if t == target && wanted.options_of(name) == self.options_of(name) => {
                    keep.insert(name.clone());
                }
                _ => {
                    remove.insert(name.clone());
                }
            }
        }
        for (name, addr) in &self.listen_addrs {
            // A listener asked for on port 0 got some port: the same request keeps it.
            let same = |a: &SocketAddr| a == addr || (a.port() == 0 && a.ip() == addr.ip());
            // A new key for a connected service resets its connections: they reach the old one.
            let repinned = wanted
                .pins
                .iter()
                .any(|(n, k)| n == name && self.known.get(n).is_some_and(|old| old != k));
            match wanted.connect.iter().find(|(n, _)| n == name) {
                Some((_, a)) if same(a) && !repinned => {
                    keep.insert(name.clone());
                }
                _ => {
                    remove.insert(name.clone());
                }
            }
        }
        for (name, target) in &wanted.expose {
            if remove.contains(name) || !self.exposed.iter().any(|(n, _)| n == name) {
                plan.expose.push((name.clone(), target.clone()));
            }
        }
        for (name, addr) in &wanted.connect {
            if remove.contains(name) || !self.listen_addrs.iter().any(|(n, _)| n == name) {
                plan.connect.push((name.clone(), *addr));
            }
        }
        // A name both exposed and connected is removed whole when either side changed: add
        // back the side that did not.
        for name in &remove {
            if let Some(e) = wanted.expose.iter().find(|(n, _)| n == name) {
                if !plan.expose.contains(e) {
                    plan.expose.push(e.clone());
                }
            }
            if let Some(c) = wanted.connect.iter().find(|(n, _)| n == name) {
                if !plan.connect.contains(c) {
                    plan.connect.push(c.clone());
                }
            }
        }
        plan.options = plan
            .expose
            .iter()
            .map(|(n, _)| (n.clone(), wanted.options_of(n)))
            .collect();
        plan.pins = wanted
            .pins
            .iter()
            .filter(|(n, k)| self.known.get(n) != Some(k))
            .cloned()
            .collect();
        plan.routing = wanted
            .routing
            .clone()
            .filter(|r| self.ep.routing().as_ref() != Some(r));
        plan.unchanged = keep.difference(&remove).cloned().collect();
        plan.remove = remove.into_iter().collect();
        self.plan_udp(wanted, &mut plan);
        plan
    }

    /// Carries out `plan` (from [`Self::plan`]) with `listeners` bound by the runtime for
    /// `plan.connect` (as [`super::bind_listeners`] returns them): removes, then exposes,
    /// then listens. A service that cannot start is left out and named in the summary; the
    /// others go ahead. Drain [`Node::poll_output`] afterwards.
    pub fn apply<L>(
        &mut self,
        now: Instant,
        plan: Plan,
        listeners: Vec<Listener<L>>,
    ) -> Applied<L> {
        let mut applied = Applied {
            closed: Vec::new(),
            started: Vec::new(),
            summary: Summary {
                unchanged: plan.unchanged.len(),
                ..Summary::default()
            },
        };
        let re_added: BTreeSet<&ServiceName> = plan
            .expose
            .iter()
            .map(|(n, _)| n)
            .chain(plan.connect.iter().map(|(n, _)| n))
            .collect();
        let mut changed = BTreeSet::new();
        for name in &plan.remove {
            if let Some(removed) = self.remove_service(now, name) {
                applied.closed.extend(removed.listener);
                if re_added.contains(name) {
                    changed.insert(name.to_string());
                } else {
                    applied.summary.removed.push(name.to_string());
                }
            }
        }
        // Before services start: a new one reached through a new peer must find it.
        if let Some(routing) = plan.routing {
            match self.ep.set_routing(now, routing) {
                Ok(changed) => applied.summary.changed.extend(changed),
                Err(e) => applied.summary.failed.push(format!("routing: {e}")),
            }
        }
        for (name, key) in plan.pins {
            if let Err(e) = self.pin_service(name.clone(), key) {
                applied.summary.failed.push(format!("{name}: {e}"));
            }
        }
        for (name, target) in plan.expose {
            let options = plan.options.iter().find(|(n, _)| *n == name);
            let options = options.map(|(_, o)| *o).unwrap_or_default();
            match self.add_expose_with(now, name.clone(), target, options) {
                Ok(()) => applied.summary.started(&changed, name.to_string()),
                Err(e) => applied.summary.failed.push(format!("{name}: {e}")),
            }
        }
        for listener in listeners {
            let addr = listener.addr.unwrap_or(self.udp_addr);
            match self.add_connect(now, listener.service.clone(), addr) {
                Ok(id) => {
                    let name = listener.service.to_string();
                    applied.summary.started(&changed, name);
                    applied.started.push((id, listener.socket));
                }
                Err(e) => applied
                    .summary
                    .failed
                    .push(format!("{}: {e}", listener.service)),
            }
        }
        applied
    }
}
