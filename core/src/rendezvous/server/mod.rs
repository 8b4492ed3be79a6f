//! [`Server`]: the rendezvous server's state machine.
//!
//! It keeps leases, answers lookups, pairs peer-mode requests and introduces daemons to each
//! other. It sees daemons only as authenticated static keys and the addresses their packets
//! come from; the caller carries [`ServerMessage`]s to them over their sessions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod attach;
mod authority;
mod connections;
mod counters;
mod introduce;
mod publish;
mod publish_sni;

use super::config::ServerConfig;
use super::directory::Directory;
use super::events::ServerEvent;
use super::lease::{NewRegistration, Registry};
use super::messages::{ClientMessage, ErrorCode, MAX_DETAIL_LEN, ServerMessage, truncate};
use super::name::ServiceName;
use super::pairs::Pairs;
use super::pending::{Pushes, Waiters};
use super::relay::{Held, RelayBudget, RelayLimits, RelayRefusal, RelayShaper, Shaped};
use crate::crypto::PublicKey;
use crate::rng::SeededRng;

/// Most `ConnectPeer` requests one daemon may have waiting at once.
pub(crate) const MAX_WAITERS_PER_KEY: usize = 16;
/// How often the relay reports a token's dropped packets at most.
pub(crate) const RELAY_LIMIT_REPORT: Duration = Duration::from_secs(10);

/// Most senders whose refused relay packets are counted for the log at once (each has a
/// session with the server, so it is reached only under a flood of sessions).
pub(crate) const MAX_REFUSALS_TRACKED: usize = 1024;

/// Most unacknowledged introductions queued for one daemon.
pub(crate) const MAX_PUSHES_PER_KEY: usize = 64;

/// The rendezvous server. See the crate docs for the run loop; the verbs are the same.
#[derive(Debug)]
pub(crate) struct Server {
    config: ServerConfig,
    registry: Registry,
    /// Peer-mode waits, keyed by (asker, peer it waits for), deadlines indexed.
    waiters: Waiters,
    /// Unacknowledged introductions by id, deadlines indexed.
    pushes: Pushes,
    next_id: u64,
    messages: VecDeque<(PublicKey, ServerMessage)>,
    events: VecDeque<ServerEvent>,
    /// The relay's per-token rate limit, with the packets waiting for it.
    relay: RelayShaper,
    /// Who was introduced to whom: the pairs the relay forwards between.
    pairs: Pairs,
    /// Relayed handshake initiations per token (a bucket of initiations, not bytes).
    initiations: RelayBudget,
    /// Per token: when its relay drops were last reported, drops since then, and the sender
    /// of the latest (the report names it). Held drops are reported once
    /// [`RELAY_LIMIT_REPORT`] has passed, so the log's sum is the whole count.
    relay_drops: BTreeMap<String, (Option<Instant>, u64, PublicKey)>,
    /// Per sender: when the relay's refusals of its packets were last reported, and
    /// refusals since then (forgotten [`RELAY_LIMIT_REPORT`] after the last report).
    relay_refusals: BTreeMap<PublicKey, (Option<Instant>, u64)>,
    /// Sessions that must be registered by the instant they are keyed with, else closed.
    unregistered: BTreeSet<(Instant, PublicKey)>,
    /// Sessions to close: no registration came in time.
    evictions: VecDeque<PublicKey>,
    /// Tenants, their masters and declared paths (see [`super::directory`]).
    directory: Directory,
    /// Makes new path tokens.
    rng: SeededRng,
    /// Registrations refused because their daemon token is bound to another key.
    keys_refused: u64,
    /// Paths published on public TCP ports.
    publications: publish::Publications,
    /// Registrations and relayed bytes, for metrics.
    counted: counters::Counted,
    /// The connecting daemons introduced to each path, for its limit of connections.
    connections: connections::Connections,
    /// Attachments that failed on their daemons, with why (see `attach.rs`).
    attach_failed: BTreeMap<PublicKey, BTreeMap<ServiceName, String>>,
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl Server {
    /// Creates a server with no registrations. `now` is the driver's clock at creation;
    /// `seed` (from the endpoint's CSPRNG) seeds the tokens the server makes.
    pub(crate) fn new(mut config: ServerConfig, now: Instant, seed: [u8; 32]) -> Self {
        let _ = now;
        let directory = std::mem::take(&mut config.directory);
        Self {
            directory,
            rng: SeededRng::new(seed),
            config,
            registry: Registry::default(),
            waiters: Waiters::default(),
            pushes: Pushes::default(),
            next_id: 1,
            messages: VecDeque::new(),
            events: VecDeque::new(),
            relay: RelayShaper::default(),
            pairs: Pairs::default(),
            initiations: RelayBudget::default(),
            relay_drops: BTreeMap::new(),
            relay_refusals: BTreeMap::new(),
            unregistered: BTreeSet::new(),
            evictions: VecDeque::new(),
            keys_refused: 0,
            publications: publish::Publications::default(),
            counted: counters::Counted::default(),
            connections: connections::Connections::default(),
            attach_failed: BTreeMap::new(),
        }
    }

    /// A daemon's session with us came up: it must register within
    /// [`ServerConfig::register_within`], or [`Self::poll_eviction`] names it.
    pub(crate) fn session_up(&mut self, now: Instant, key: PublicKey) {
        self.unregistered
            .insert((now + self.config.register_within, key));
    }

    /// The next session to close because it holds no registration.
    #[must_use]
    pub(crate) fn poll_eviction(&mut self) -> Option<PublicKey> {
        self.evictions.pop_front()
    }

    /// The directory as it stands.
    #[cfg(test)]
    pub(crate) fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Whether the relay forwards between `a` and `b`.
    #[cfg(test)]
    pub(crate) fn introduced(&self, a: &PublicKey, b: &PublicKey) -> bool {
        self.pairs.contains(a, b)
    }

    /// Every live registration, ordered by key.
    #[cfg(test)]
    pub(crate) fn registrations(&self) -> impl Iterator<Item = &super::lease::Registration> {
        self.registry.iter()
    }

    /// `key`'s registration, if live.
    #[cfg(test)]
    pub(crate) fn registration(&self, key: &PublicKey) -> Option<&super::lease::Registration> {
        self.registry.get(key)
    }

    /// Decides whether to relay `packet` from daemon `from` to daemon `to`: both must be
    /// registered, the server must have introduced them to each other (an introduction stands
    /// while both registrations do), and for a handshake `initiation`, `from`'s token must have
    /// one left in its
    /// [`ServerConfig::relay_initiations_per_sec`](super::ServerConfig::relay_initiations_per_sec).
    /// Then the token's byte budget decides: `Ok(true)`, forward it now; `Ok(false)`, it waits
    /// (see [`Self::release_relayed`]); `Err(RateLimited)`, the token's queue is full and it was
    /// dropped (counted).
    pub(crate) fn relay(
        &mut self,
        now: Instant,
        from: &PublicKey,
        to: &PublicKey,
        packet: &[u8],
        initiation: bool,
    ) -> Result<bool, RelayRefusal> {
        let (Some(sender), Some(_)) = (self.registry.get(from), self.registry.get(to)) else {
            let reason = if self.registry.get(from).is_none() {
                "the sender holds no registration"
            } else {
                "the destination holds no registration"
            };
            self.relay_refused(now, *from, *to, reason);
            return Err(RelayRefusal::NotRegistered);
        };
        if !self.pairs.contains(from, to) {
            self.relay_refused(now, *from, *to, "the server never introduced them");
            return Err(RelayRefusal::NotIntroduced);
        }
        if initiation {
            let rate = self.config.relay_initiations_per_sec;
            let limits = RelayLimits {
                bytes_per_sec: rate,
                burst: rate,
                ..RelayLimits::default()
            };
            if !self.initiations.take(limits, sender.token(), now, 1) {
                self.relay_dropped(now, *from);
                return Err(RelayRefusal::RateLimited);
            }
        }
        let token = sender.token().to_string();
        let limits = authority::relay_limits(&self.directory, self.config.relay, &token);
        match self.relay.offer(limits, &token, now, *from, *to, packet) {
            Shaped::Now => Ok(true),
            Shaped::Queued => Ok(false),
            Shaped::Dropped => {
                self.relay_dropped(now, *from);
                Err(RelayRefusal::RateLimited)
            }
        }
    }

    /// When a relayed packet that waits for its token's budget can leave (see
    /// [`Self::release_relayed`]); `None` when none waits.
    pub(crate) fn relay_deadline(&self) -> Option<Instant> {
        let (dir, base) = (&self.directory, self.config.relay);
        self.relay
            .poll_timeout(&|t| authority::relay_limits(dir, base, t))
    }

    /// Moves the waiting relayed packets whose budget is there by `now` into `out`, in the
    /// order each token's came. The caller forwards them.
    pub(crate) fn release_relayed(&mut self, now: Instant, out: &mut Vec<Held>) {
        let (dir, base) = (&self.directory, self.config.relay);
        self.relay
            .release(&|t| authority::relay_limits(dir, base, t), now, out);
    }

    /// Counts a packet of `from`'s token the relay's limit dropped, and reports the drops
    /// (at most every [`RELAY_LIMIT_REPORT`] per token) so they show in the server's log.
    fn relay_dropped(&mut self, now: Instant, from: PublicKey) {
        let Some(token) = self.registry.get(&from).map(|r| r.token().to_string()) else {
            return;
        };
        let (last, dropped, sender) = self.relay_drops.entry(token).or_insert((None, 0, from));
        *sender = from;
        *dropped += 1;
        if last.is_none_or(|at| now.saturating_duration_since(at) >= RELAY_LIMIT_REPORT) {
            let count = std::mem::take(dropped);
            *last = Some(now);
            self.events.push_back(ServerEvent::RelayLimited {
                key: from,
                dropped: count,
            });
        }
    }

    /// Counts a packet from `from` to `to` the relay refused (see [`RelayRefusal`]), and
    /// reports the refusals (at most every [`RELAY_LIMIT_REPORT`] per sender, for at most
    /// [`MAX_REFUSALS_TRACKED`] senders at once) so they show in the server's log.
    fn relay_refused(
        &mut self,
        now: Instant,
        from: PublicKey,
        to: PublicKey,
        reason: &'static str,
    ) {
        if !self.relay_refusals.contains_key(&from)
            && self.relay_refusals.len() >= MAX_REFUSALS_TRACKED
        {
            return;
        }
        let (last, refused) = self.relay_refusals.entry(from).or_insert((None, 0));
        *refused += 1;
        if last.is_none_or(|at| now.saturating_duration_since(at) >= RELAY_LIMIT_REPORT) {
            let count = std::mem::take(refused);
            *last = Some(now);
            self.events.push_back(ServerEvent::RelayRefused {
                from,
                to,
                reason,
                refused: count,
            });
        }
    }

    // ----- input -------------------------------------------------------------------------

    /// Feeds one message from the daemon with static key `from`, whose packet came from
    /// `addr` with IP TTL `ttl` (`None`: unknown, or relayed). Call it for every decoded
    /// message, then drain `poll_message` and `poll_event`. Whatever the message, this never
    /// fails or panics.
    pub(crate) fn handle_message(
        &mut self,
        now: Instant,
        from: PublicKey,
        addr: SocketAddr,
        msg: ClientMessage,
        ttl: Option<u8>,
    ) {
        if !matches!(msg, ClientMessage::Register { .. }) && self.registry.set_addr(&from, addr) {
            self.events
                .push_back(ServerEvent::AddressChanged { key: from, addr });
        }
        match msg {
            ClientMessage::Register {
                request,
                token,
                services,
                host_candidates,
                path_tokens,
                routes,
            } => {
                let binds = match self.daemons_to_bind(from, &token, &path_tokens) {
                    Ok(binds) => binds,
                    Err((code, detail)) => return self.error(from, request, code, detail),
                };
                let (tenant, rights, limits, uses) = match self.resolve(&token, &path_tokens) {
                    Ok(resolved) => resolved,
                    Err((code, detail)) => return self.error(from, request, code, detail),
                };
                // The refused path tokens count for nothing (see `resolve`), and bind nothing.
                let binds: Vec<_> = binds
                    .into_iter()
                    .filter(|b| {
                        matches!(b, super::directory::DirectoryChange::PutDaemon(d)
                            if authority::directory_tenant(&tenant).as_ref() == Some(&d.tenant))
                    })
                    .collect();
                let valid: Vec<String> = path_tokens
                    .iter()
                    .zip(&uses)
                    .filter(|(_, u)| **u != super::TokenUse::Refused)
                    .map(|(t, _)| t.clone())
                    .collect();
                // A daemon that presented path tokens hears what they allow, if nothing.
                let grants = self
                    .grants(&token, &valid)
                    .or_else(|| (!path_tokens.is_empty()).then(super::Grants::default));
                let new = NewRegistration {
                    key: from,
                    addr,
                    token: tenant,
                    rights,
                    services,
                    routes,
                    host_candidates,
                    expires: now + self.config.lease,
                };
                let accepted = self.on_register(now, request, new, limits);
                self.counted.registration(accepted);
                if self.registry.get(&from).is_some() {
                    self.observed(from, request, ttl);
                }
                if accepted && !uses.is_empty() {
                    self.send(from, ServerMessage::Tokens { request, uses });
                }
                if let Some(grants) = grants.filter(|_| accepted) {
                    self.send(from, ServerMessage::Granted { request, grants });
                }
                if accepted {
                    // The daemon tells its failed attachments again once registered.
                    self.attach_failed.remove(&from);
                    for bind in binds {
                        self.change(bind);
                    }
                    self.push_attachments_of(now, from);
                    self.push_pins_of(now, from);
                }
            }
            ClientMessage::Ack { id } => {
                if self.pushes.get(id).is_some_and(|p| p.to == from) {
                    if let Some(push) = self.pushes.remove(id) {
                        self.acknowledged(&push);
                    }
                }
            }
            ClientMessage::Unregister => {
                if self.registry.remove(&from).is_some() {
                    self.events
                        .push_back(ServerEvent::Unregistered { key: from });
                    self.forget(&from, "the peer unregistered");
                }
            }
            ClientMessage::Renew { request } => {
                if self.registry.get(&from).is_none() {
                    return self.not_registered(from, request);
                }
                self.registry.renew(&from, now + self.config.lease);
                let lease_secs = secs(self.config.lease);
                self.send(
                    from,
                    ServerMessage::Renewed {
                        request,
                        lease_secs,
                    },
                );
                self.observed(from, request, ttl);
            }
            ClientMessage::Lookup {
                request,
                name,
                route,
            } => {
                if self.repeat_answer(from, request) {
                    return;
                }
                if self.registry.get(&from).is_none() {
                    return self.not_registered(from, request);
                }
                self.on_lookup(now, from, request, name, route);
            }
            ClientMessage::ConnectPeer { request, peer } => {
                if self.repeat_answer(from, request) {
                    return;
                }
                if self.registry.get(&from).is_none() {
                    return self.not_registered(from, request);
                }
                self.on_connect_peer(now, from, request, peer);
            }
            ClientMessage::Admin {
                request,
                master,
                command,
            } => {
                if self.repeat_answer(from, request) {
                    return;
                }
                if self.registry.get(&from).is_none() {
                    return self.not_registered(from, request);
                }
                self.on_admin(now, from, request, &master, command);
            }
            ClientMessage::Publish {
                request,
                name,
                port,
            } => self.on_publish(from, request, name, port, false),
            ClientMessage::PublishUdp {
                request,
                name,
                port,
            } => self.on_publish(from, request, name, port, true),
            ClientMessage::AttachOutcome { name, failed } => {
                self.on_attach_outcome(from, name, failed);
            }
            ClientMessage::Disconnected { name } => {
                if let Some(tenant) = self.registry.get(&from).map(|r| r.token().to_string()) {
                    self.connections.remove_source(&tenant, &name, &from);
                }
            }
            ClientMessage::SourceLeft { source } => self.on_source_left(from, source),
            ClientMessage::PublishSni { request, name } => {
                if self.repeat_answer(from, request) {
                    return;
                }
                self.on_publish_sni(from, request, name);
            }
        }
    }

    /// Tells the daemon the IP TTL its request `request` arrived with, when the runtime
    /// read it.
    fn observed(&mut self, key: PublicKey, request: u64, ttl: Option<u8>) {
        if let Some(ttl) = ttl {
            self.send(key, ServerMessage::Observed { request, ttl });
        }
    }

    /// Registers `new` if its tokens and limits allow; returns whether it did.
    fn on_register(
        &mut self,
        now: Instant,
        request: u64,
        new: NewRegistration,
        limits: Option<super::TokenLimits>,
    ) -> bool {
        let key = new.key;
        if let Some(name) = new
            .services
            .iter()
            .find(|n| !self.may_expose(&new.token, &key, &new.rights, n))
        {
            let detail = format!(
                "{name} is a path of this tenant's directory; exposing it takes its server token"
            );
            self.error(key, request, ErrorCode::BadToken, detail);
            return false;
        }
        if let Err((code, detail)) =
            self.registry
                .check(&new, limits.as_ref(), self.config.max_registrations)
        {
            self.error(key, request, code, detail);
            return false;
        }
        if self
            .registry
            .get(&key)
            .is_some_and(|old| old.token() != new.token)
        {
            // A daemon that moves to another tenant keeps none of its introductions.
            self.pairs.remove_key(&key);
            self.connections.remove_key(&key);
        }
        let (addr, services) = (new.addr, new.services.clone());
        let is_new = self.registry.upsert(now, new);
        self.unpublish_stale(&key, "the daemon no longer exposes the path");
        self.events.push_back(ServerEvent::Registered {
            key,
            addr,
            services,
            new: is_new,
        });
        let lease_secs = secs(self.config.lease);
        self.send(
            key,
            ServerMessage::Registered {
                request,
                lease_secs,
                reflexive: addr,
            },
        );
        true
    }

    /// Answers a retransmitted request from the remembered answer; returns whether it did.
    fn repeat_answer(&mut self, from: PublicKey, request: u64) -> bool {
        let Some(msg) = self
            .registry
            .get(&from)
            .and_then(|r| r.answer(request))
            .cloned()
        else {
            return false;
        };
        self.send(from, msg);
        true
    }

    fn not_registered(&mut self, key: PublicKey, request: u64) {
        let detail = "this daemon is not registered (the lease expired or the server restarted)";
        self.error(key, request, ErrorCode::NotRegistered, detail.into());
    }

    /// Sends an error that is not remembered (it has no side effect to protect).
    fn error(&mut self, key: PublicKey, request: u64, code: ErrorCode, detail: String) {
        self.events
            .push_back(ServerEvent::RequestFailed { key, request, code });
        let detail = truncate(detail, MAX_DETAIL_LEN);
        self.send(
            key,
            ServerMessage::Error {
                request,
                code,
                detail,
            },
        );
    }

    /// Sends a final error and remembers it, so that retransmissions get the same answer.
    fn fail(&mut self, key: PublicKey, request: u64, code: ErrorCode, detail: String) {
        self.events
            .push_back(ServerEvent::RequestFailed { key, request, code });
        let msg = ServerMessage::Error {
            request,
            code,
            detail: truncate(detail, MAX_DETAIL_LEN),
        };
        if let Some(reg) = self.registry.get_mut(&key) {
            reg.remember(request, msg.clone());
        }
        self.send(key, msg);
    }

    fn send(&mut self, to: PublicKey, msg: ServerMessage) {
        self.messages.push_back((to, msg));
    }

    /// Cleans up after `key`'s registration ended: its own waits and pushes go, and whoever
    /// waited for it fails now.
    fn forget(&mut self, key: &PublicKey, why: &str) {
        self.unpublish_stale(key, why);
        self.pairs.remove_key(key);
        self.connections.remove_key(key);
        self.attach_failed.remove(key);
        self.pushes.retain(|_, p| p.to != *key);
        self.waiters.retain(|(asker, _), _| asker != key);
        let failed: Vec<_> = self
            .waiters
            .iter()
            .filter(|((_, peer), _)| peer == key)
            .map(|(&(asker, _), w)| (asker, w.request))
            .collect();
        for (asker, request) in failed {
            self.waiters.remove(&(asker, *key));
            let detail = format!("{why} before asking for this daemon");
            self.fail(asker, request, ErrorCode::LeaseExpired, detail);
        }
    }

    /// Acts on every deadline that has passed by `now`: lease expiry, peer-wait timeouts and
    /// introduction retransmissions. Calling it early is harmless.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some(reg) = self.registry.pop_expired(now) {
            let key = reg.key();
            self.events.push_back(ServerEvent::Expired { key });
            // Best effort: the daemon may be gone, which is why the lease ran out.
            self.send(key, ServerMessage::LeaseExpired);
            self.forget(&key, "the peer's lease expired");
            // A live daemon registers again at once; a dead one's session is closed.
            self.session_up(now, key);
        }
        while let Some(&(at, key)) = self.unregistered.first() {
            if at > now {
                break;
            }
            self.unregistered.pop_first();
            if self.registry.get(&key).is_none() {
                self.evictions.push_back(key);
                self.events.push_back(ServerEvent::Evicted { key });
            }
        }
        let registry = &self.registry;
        self.relay.retain(|token| registry.has_token(token));
        self.relay_drops
            .retain(|token, _| registry.has_token(token));
        for (last, dropped, sender) in self.relay_drops.values_mut() {
            let due = last.is_none_or(|at| now.saturating_duration_since(at) >= RELAY_LIMIT_REPORT);
            if *dropped > 0 && due {
                *last = Some(now);
                self.events.push_back(ServerEvent::RelayLimited {
                    key: *sender,
                    dropped: std::mem::take(dropped),
                });
            }
        }
        self.initiations.retain(|token| registry.has_token(token));
        self.relay_refusals.retain(|_, (last, _)| {
            last.is_some_and(|at| now.saturating_duration_since(at) < RELAY_LIMIT_REPORT)
        });
        for ((asker, _), w) in self.waiters.take_due(now) {
            let request = w.request;
            let detail = format!(
                "the peer did not ask for this daemon within {} s",
                self.config.peer_wait.as_secs()
            );
            self.fail(asker, request, ErrorCode::PeerTimeout, detail);
        }
        let mut resend = Vec::new();
        self.pushes.handle_due(now, |id, p| {
            if p.retry.give_up() <= now {
                self.events
                    .push_back(ServerEvent::IntroductionUnacked { key: p.to, id });
                return false;
            }
            if p.retry.is_due(now) {
                p.retry.backoff(now);
                resend.push((p.to, p.msg.clone()));
            }
            true
        });
        self.messages.extend(resend);
    }

    // ----- output ------------------------------------------------------------------------

    /// The next message to send, with the key of the daemon it goes to. Drain it until `None`
    /// after every `handle_*` call. Delivery may fail; the protocol copes.
    #[must_use]
    pub(crate) fn poll_message(&mut self) -> Option<(PublicKey, ServerMessage)> {
        self.messages.pop_front()
    }

    /// The next event, for logs and status. Drain it until `None` after every `handle_*` call.
    #[must_use]
    pub(crate) fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] should next be called; `None` when nothing is pending.
    #[must_use]
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.registry.next_expiry(),
            self.unregistered.first().map(|(at, _)| *at),
            self.waiters.next_deadline(),
            self.pushes.next_deadline(),
            self.relay_drops
                .values()
                .filter(|(_, dropped, _)| *dropped > 0)
                .filter_map(|(last, _, _)| last.map(|at| at + RELAY_LIMIT_REPORT))
                .min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
