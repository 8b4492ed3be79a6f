//! Introductions: a lookup of a path (client/server mode) or two daemons asking for each
//! other (peer mode) make the server tell both sides where to punch, once every rule allows
//! it (tenant, tokens, route policies, the path's limit of connections, pins).

use std::time::Instant;

use super::super::ServerEvent;
use super::super::messages::{ErrorCode, PunchRole, ServerMessage};
use super::super::name::ServiceName;
use super::super::pairs::MAX_INTRODUCED_PER_KEY;
use super::super::pending::{Push, Waiter};
use super::super::retry::Retry;
use super::{MAX_PUSHES_PER_KEY, MAX_WAITERS_PER_KEY, Server, secs};
use crate::crypto::PublicKey;
use crate::path::RoutePolicy;

impl Server {
    pub(super) fn on_lookup(
        &mut self,
        now: Instant,
        from: PublicKey,
        request: u64,
        name: ServiceName,
        route: RoutePolicy,
    ) {
        // Only the asker's own tenant is searched: a name of another tenant is as unknown as
        // one nobody publishes, with the same answer.
        // Likewise a declared path the asker holds no client token for.
        let Some(reg) = self.registry.get(&from) else {
            return self.not_registered(from, request);
        };
        let (tenant, rights) = (reg.token().to_string(), reg.rights().clone());
        let target = self
            .registry
            .owner(&tenant, &name)
            .filter(|_| self.may_connect(&tenant, &from, &rights, &name));
        let Some(target) = target else {
            let detail = format!("no daemon publishes {name}");
            return self.fail(from, request, ErrorCode::UnknownService, detail);
        };
        if target == from {
            let detail = format!("{name} is published by the asking daemon itself");
            return self.fail(from, request, ErrorCode::Malformed, detail);
        }
        // connet's rule, checked before anyone is introduced: a direct-only side and a
        // relay-only side share no path.
        let theirs = self.registry.get(&target).and_then(|r| r.route(&name));
        if let Some(theirs) = theirs.filter(|t| route.combine(*t).is_none()) {
            let detail = format!(
                "{name} is exposed {} and this connect is {}",
                theirs.describe(),
                route.describe()
            );
            return self.fail(from, request, ErrorCode::RouteConflict, detail);
        }
        if self.pushes.values().filter(|p| p.to == target).count() >= MAX_PUSHES_PER_KEY {
            let detail = format!("too many introductions pending for {name}; try again");
            return self.fail(from, request, ErrorCode::TooMany, detail);
        }
        if !self.pairs.allows(&from, &target) {
            let detail = format!(
                "{name} or this daemon already has {MAX_INTRODUCED_PER_KEY} peers; try again later"
            );
            return self.fail(from, request, ErrorCode::TooMany, detail);
        }

        if let Err(detail) = self.room_for(&tenant, &name, &from) {
            return self.fail(from, request, ErrorCode::TooMany, detail);
        }
        // Last, so that only a lookup that goes through pins its key; the destination
        // learns the new pin before the introduction.
        let pinned = match self.pin_client(&tenant, &rights, &name, from) {
            Err(detail) => return self.fail(from, request, ErrorCode::NotPinned, detail),
            Ok(pinned) => pinned,
        };
        let a = Side {
            key: from,
            request: Some(request),
            role: PunchRole::Initiator,
        };
        self.connections.insert(&tenant, name.clone(), from, target);
        if pinned {
            self.push_pins(now, &tenant, &name);
        }
        self.introduce(now, a, target, None, Some(name));
    }

    pub(super) fn on_connect_peer(
        &mut self,
        now: Instant,
        from: PublicKey,
        request: u64,
        peer: PublicKey,
    ) {
        if peer == from {
            let detail = "cannot connect to our own key".to_string();
            return self.fail(from, request, ErrorCode::Malformed, detail);
        }
        if let Some(deadline) = self.waiters.set_request(&(from, peer), request) {
            // A retransmission, or the daemon asking again with a new id: still waiting.
            let wait_secs = secs(deadline.saturating_duration_since(now));
            return self.send(from, ServerMessage::Waiting { request, wait_secs });
        }
        if !self.same_tenant(&from, &peer) && self.registry.get(&peer).is_some() {
            // A daemon of another tenant is invisible: wait as if it had not registered, and
            // never pair with it (below).
            return self.wait_for_peer(now, from, request, peer);
        }
        if !self.pairs.allows(&from, &peer) {
            let detail =
                format!("this daemon or its peer already has {MAX_INTRODUCED_PER_KEY} peers");
            return self.fail(from, request, ErrorCode::TooMany, detail);
        }
        if let Some(w) = self.waiters.remove(&(peer, from)) {
            // The peer asked for us first: introduce both. The smaller key initiates.
            let a = Side {
                key: from,
                request: Some(request),
                role: if from < peer {
                    PunchRole::Initiator
                } else {
                    PunchRole::Responder
                },
            };
            return self.introduce(now, a, peer, Some(w.request), None);
        }
        self.wait_for_peer(now, from, request, peer);
    }

    /// The destination `from` says its session with `source` ended (see
    /// [`ClientMessage::SourceLeft`](super::super::messages::ClientMessage::SourceLeft)): the
    /// places `source` held through it in paths' limits go. Not while an introduction of
    /// `source` to it is still unacknowledged: the report is then about an earlier session,
    /// and the source is connecting again.
    pub(super) fn on_source_left(&mut self, from: PublicKey, source: PublicKey) {
        if self.registry.get(&from).is_none() {
            return;
        }
        let reintroduced = self.pushes.values().any(|p| {
            p.to == from
                && matches!(&p.msg, ServerMessage::Introduce { peer, .. } if *peer == source)
        });
        if !reintroduced {
            self.connections.remove_pair(&source, &from);
        }
    }

    /// Records that `from` waits for `peer` (peer mode) and tells it so.
    fn wait_for_peer(&mut self, now: Instant, from: PublicKey, request: u64, peer: PublicKey) {
        if self.waiters.iter().filter(|((k, _), _)| *k == from).count() >= MAX_WAITERS_PER_KEY {
            let detail = format!("at most {MAX_WAITERS_PER_KEY} peer requests may wait at once");
            return self.fail(from, request, ErrorCode::TooMany, detail);
        }
        let deadline = now + self.config.peer_wait;
        self.waiters
            .insert((from, peer), Waiter { request, deadline });
        self.events
            .push_back(ServerEvent::Waiting { key: from, peer });
        let wait_secs = secs(self.config.peer_wait);
        self.send(from, ServerMessage::Waiting { request, wait_secs });
    }

    /// Whether two registered daemons hold the same token (tenant).
    fn same_tenant(&self, a: &PublicKey, b: &PublicKey) -> bool {
        match (self.registry.get(a), self.registry.get(b)) {
            (Some(a), Some(b)) => a.token() == b.token(),
            _ => false,
        }
    }

    /// Introduces `a` (whose request completed the pairing) and `b` to each other.
    fn introduce(
        &mut self,
        now: Instant,
        a: Side,
        b: PublicKey,
        b_request: Option<u64>,
        service: Option<ServiceName>,
    ) {
        let (Some(reg_a), Some(reg_b)) = (self.registry.get(&a.key), self.registry.get(&b)) else {
            // Both are registered: callers check the asker, waiters die with their keys, and
            // a name's owner is registered. Fail cleanly rather than panic if that ever breaks.
            if let Some(request) = a.request {
                let detail = "the peer is not registered".to_string();
                self.fail(a.key, request, ErrorCode::LeaseExpired, detail);
            }
            return;
        };
        let (cands_a, cands_b) = (reg_a.candidates(), reg_b.candidates());
        // The asker learns the route the service's owner set for it (the owner knows it).
        let route = service.as_ref().and_then(|s| reg_b.route(s));
        let sides = [
            (a.key, a.request, b, cands_b, a.role, route),
            (b, b_request, a.key, cands_a, a.role.opposite(), None),
        ];
        for (to, request, peer, candidates, role, route) in sides {
            let id = self.next_id;
            self.next_id += 1;
            let msg = ServerMessage::Introduce {
                id,
                request,
                peer,
                service: service.clone(),
                candidates,
                role,
                route,
            };
            if let (Some(request), Some(reg)) = (request, self.registry.get_mut(&to)) {
                reg.remember(request, msg.clone());
            }
            self.pushes.insert(
                id,
                Push {
                    to,
                    msg: msg.clone(),
                    retry: Retry::new(now),
                },
            );
            self.send(to, msg);
        }
        self.pairs.insert(a.key, b);
        self.events.push_back(ServerEvent::Introduced {
            asker: a.key,
            target: b,
            service,
        });
    }
}

/// The side of an introduction whose request completed it.
struct Side {
    key: PublicKey,
    request: Option<u64>,
    role: PunchRole,
}
