//! [`Client`]: a daemon's side of the rendezvous protocol.
//!
//! It registers (with retries), renews the lease, re-registers when the lease is lost or the
//! server restarted, and runs `Lookup` and `ConnectPeer` requests to completion or to a clear
//! failure. Messages go to the server over the session the caller keeps with it; the client
//! says when that session should be (re)opened ([`Client::poll_connect`], backing off while
//! the server stays unreachable).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::config::{ClientConfig, ConfigError, check_services};
use super::directory::AdminCommand;
use super::events::ClientEvent;
use super::grants::TokenUse;
use super::messages::{ClientMessage, ErrorCode, MAX_HOST_CANDIDATES, ServerMessage};
use super::name::ServiceName;
use super::retry::{GIVE_UP_AFTER, RETRY_MAX, Retry};
use crate::crypto::PublicKey;

mod attach;
mod refusal;
mod tokens;

/// How long a refused or unanswered registration waits before it is tried again.
pub(crate) const REGISTER_RETRY: Duration = Duration::from_secs(30);
/// Extra time a waiting `ConnectPeer` allows beyond the server's announced wait.
const WAIT_GRACE: Duration = GIVE_UP_AFTER;
/// How long an introduction id is remembered to drop duplicates (the server stops
/// retransmitting after [`GIVE_UP_AFTER`]).
const SEEN_FOR: Duration = Duration::from_secs(60);
/// Most introduction ids remembered.
const SEEN_MAX: usize = 256;
/// First delay before reopening a session to the server that ended; doubles up to
/// [`RECONNECT_MAX`].
pub(crate) const RECONNECT_MIN: Duration = Duration::from_secs(1);
/// The longest delay between attempts to reopen the session to the server.
pub(crate) const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Where the registration stands.
#[derive(Clone, Debug)]
enum State {
    /// Not started, or the session to the server is down.
    Idle,
    /// A `Register` is in flight.
    Registering { request: u64, retry: Retry },
    /// Registration was refused or unanswered; try again at `at`.
    Backoff { at: Instant },
    /// Registered.
    Registered {
        /// What the server saw us as (read by the tests only).
        #[cfg_attr(not(test), allow(dead_code))]
        reflexive: SocketAddr,
        lease: Duration,
        /// Our conservative estimate of the server's lease end.
        lease_end: Instant,
        renew_at: Instant,
        /// A `Renew` in flight.
        renewing: Option<(u64, Retry)>,
    },
}

/// A `Lookup` or `ConnectPeer` in progress.
#[derive(Clone, Debug)]
struct Request {
    msg: ClientMessage,
    /// `None` while unsent (not registered yet, or the session went down).
    retry: Option<Retry>,
    give_up: Instant,
}

/// A daemon's rendezvous state machine. Same verbs as the endpoint: after every call that
/// takes `now`, drain `poll_message` and `poll_event`, then read `poll_timeout`.
#[derive(Debug)]
pub(crate) struct Client {
    config: ClientConfig,
    next_request: u64,
    state: State,
    requests: BTreeMap<u64, Request>,
    /// Introduction ids already reported, with when they were first seen.
    seen: BTreeMap<u64, Instant>,
    messages: VecDeque<ClientMessage>,
    events: VecDeque<ClientEvent>,
    /// While the session to the server is down: when to open it again.
    connect_at: Option<Instant>,
    /// The delay before the next reopening, after the session ends again.
    backoff: Duration,
    /// Whether the owner should open the session now (see [`Self::poll_connect`]).
    connect_due: bool,
    /// The IP TTL the server last saw one of our requests arrive with
    /// ([`ServerMessage::Observed`]).
    observed_ttl: Option<u8>,
    /// A change of path tokens in progress.
    import: Option<tokens::Import>,
    /// What each path token of the latest registration does, as the server said.
    token_uses: Vec<(String, TokenUse)>,
    /// The request id of the latest `Register` sent.
    last_register: Option<u64>,
    /// Our attachments that failed, with why (see `attach.rs`).
    attach_failed: BTreeMap<ServiceName, String>,
    /// Why the server refused our last registration, until one succeeds (`refusal.rs`).
    refused: Option<(ErrorCode, String)>,
    /// How long the next refused registration waits before it is tried again.
    refused_wait: Duration,
}

impl Client {
    /// Creates a client. It asks for a session to the server at once
    /// ([`Self::poll_connect`] after `handle_timeout(now)`); nothing is sent until
    /// [`Self::start`].
    ///
    /// `seed` is a random value (from the endpoint's CSPRNG) that request ids start from, so a
    /// restarted daemon's ids do not collide with the answers the server remembers from its
    /// previous run.
    pub(crate) fn new(
        mut config: ClientConfig,
        seed: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        config.host_candidates.truncate(MAX_HOST_CANDIDATES);
        Ok(Self {
            config,
            next_request: seed,
            state: State::Idle,
            requests: BTreeMap::new(),
            seen: BTreeMap::new(),
            messages: VecDeque::new(),
            events: VecDeque::new(),
            connect_at: Some(now),
            backoff: RECONNECT_MIN,
            connect_due: false,
            observed_ttl: None,
            import: None,
            token_uses: Vec::new(),
            last_register: None,
            attach_failed: BTreeMap::new(),
            refused: None,
            refused_wait: REGISTER_RETRY,
        })
    }

    /// The IP TTL the server last saw one of our requests arrive with, if it said.
    pub(crate) fn observed_ttl(&self) -> Option<u8> {
        self.observed_ttl
    }

    /// Whether the server has confirmed our registration.
    pub(crate) fn is_registered(&self) -> bool {
        matches!(self.state, State::Registered { .. })
    }

    /// Our server-reflexive address, once registered.
    #[cfg(test)]
    pub(crate) fn reflexive(&self) -> Option<SocketAddr> {
        match self.state {
            State::Registered { reflexive, .. } => Some(reflexive),
            _ => None,
        }
    }

    /// Number of `lookup`/`connect_peer` requests in progress.
    #[cfg(test)]
    pub(crate) fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    fn request_id(&mut self) -> u64 {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        id
    }

    // ----- commands ----------------------------------------------------------------------

    /// Registers with the server. Call it when the session to the server is up (again): a
    /// restarted server is registered with afresh, and waiting requests are sent again.
    pub(crate) fn start(&mut self, now: Instant) {
        self.connect_at = None;
        self.connect_due = false;
        self.backoff = RECONNECT_MIN;
        self.seen.clear();
        self.register(now);
    }

    /// Notes that the session to the server closed (or could not be opened). Requests stay
    /// pending (their deadlines keep running) until [`Self::start`] is called again; the
    /// session is asked for again after a delay that doubles from [`RECONNECT_MIN`] to
    /// [`RECONNECT_MAX`] while the server stays unreachable.
    pub(crate) fn session_lost(&mut self, now: Instant) {
        let refused = self.refused_retry_at();
        self.state = State::Idle;
        self.pause_requests();
        self.connect_at = Some((now + self.backoff).max(refused.unwrap_or(now)));
        self.backoff = (self.backoff * 2).min(RECONNECT_MAX);
    }

    /// Publishes `services` from now on (replacing the previous set), each with its route
    /// policy in `routes` (same order; empty when all are `any`): registers again at once
    /// if the session to the server is up, otherwise at the next [`Self::start`]. Pending
    /// requests are kept. Refused, with nothing changed, if the set is invalid.
    pub(crate) fn set_services(
        &mut self,
        now: Instant,
        services: Vec<ServiceName>,
        routes: Vec<crate::path::RoutePolicy>,
    ) -> Result<(), ConfigError> {
        check_services(&services)?;
        self.config.services = services;
        let any = routes.iter().all(|r| *r == crate::path::RoutePolicy::Any);
        self.config.routes = if any { Vec::new() } else { routes };
        if !matches!(self.state, State::Idle) {
            self.register(now);
        }
        Ok(())
    }

    /// Announces `candidates` as our host candidates from now on (a port mapping came or
    /// went): registers again at once if the session to the server is up. At most
    /// `MAX_HOST_CANDIDATES` are kept, as at start.
    pub(crate) fn set_host_candidates(&mut self, now: Instant, mut candidates: Vec<SocketAddr>) {
        candidates.truncate(MAX_HOST_CANDIDATES);
        if candidates == self.config.host_candidates {
            return;
        }
        self.config.host_candidates = candidates;
        if !matches!(self.state, State::Idle) {
            self.register(now);
        }
    }

    /// Whether the owner should open the session to the server now: once at first, and after
    /// each [`Self::session_lost`] when its backoff has passed. Check it after every
    /// `handle_timeout`.
    #[must_use]
    pub(crate) fn poll_connect(&mut self) -> bool {
        std::mem::take(&mut self.connect_due)
    }

    /// Unregisters (best effort) and stops; pending requests are dropped without events.
    pub(crate) fn stop(&mut self, now: Instant) {
        let _ = now;
        if self.is_registered() {
            self.messages.push_back(ClientMessage::Unregister);
        }
        self.state = State::Idle;
        self.requests.clear();
        self.import = None;
    }

    /// Client/server mode: asks for the daemon that publishes `name`. Returns the request id
    /// that [`ClientEvent::Introduced`] or [`ClientEvent::RequestFailed`] will carry.
    #[cfg(test)]
    pub(crate) fn lookup(&mut self, now: Instant, name: ServiceName) -> u64 {
        self.lookup_with_route(now, name, crate::path::RoutePolicy::Any)
    }

    /// [`Self::lookup`] telling the server our `route` policy for the service, which it
    /// checks against the service's own (a conflict fails the request at once).
    pub(crate) fn lookup_with_route(
        &mut self,
        now: Instant,
        name: ServiceName,
        route: crate::path::RoutePolicy,
    ) -> u64 {
        let request = self.request_id();
        self.add_request(
            now,
            ClientMessage::Lookup {
                request,
                name,
                route,
            },
        )
    }

    /// Peer mode: asks to be introduced to `peer`, which must ask for us too. Returns the
    /// request id that [`ClientEvent::Introduced`] or [`ClientEvent::RequestFailed`] will
    /// carry; asking again while a request for the same peer is pending returns its id.
    pub(crate) fn connect_peer(&mut self, now: Instant, peer: PublicKey) -> u64 {
        let pending = self.requests.iter().find(
            |(_, r)| matches!(r.msg, ClientMessage::ConnectPeer { peer: p, .. } if p == peer),
        );
        if let Some((&request, _)) = pending {
            return request;
        }
        let request = self.request_id();
        self.add_request(now, ClientMessage::ConnectPeer { request, peer })
    }

    /// Sends a master's `command` with the `master` token. Returns the request id that
    /// [`ClientEvent::AdminAnswered`] or [`ClientEvent::RequestFailed`] will carry.
    pub(crate) fn admin(&mut self, now: Instant, master: String, command: AdminCommand) -> u64 {
        let request = self.request_id();
        let msg = ClientMessage::Admin {
            request,
            master,
            command,
        };
        self.add_request(now, msg)
    }

    /// Asks the server to publish `name` on its public TCP port (UDP when `udp`) `port`
    /// (`None`: any of its range). Returns the request id that [`ClientEvent::Published`] or
    /// [`ClientEvent::RequestFailed`] will carry. A publication lives as long as the
    /// registration: ask again after each [`ClientEvent::Registered`].
    pub(crate) fn publish(
        &mut self,
        now: Instant,
        name: ServiceName,
        port: Option<u16>,
        udp: bool,
    ) -> u64 {
        let request = self.request_id();
        let msg = if udp {
            ClientMessage::PublishUdp {
                request,
                name,
                port,
            }
        } else {
            ClientMessage::Publish {
                request,
                name,
                port,
            }
        };
        self.add_request(now, msg)
    }

    /// Asks the server to publish `name` on its SNI port under the host name of its last
    /// segment; answered as [`Self::publish`] is.
    pub(crate) fn publish_sni(&mut self, now: Instant, name: ServiceName) -> u64 {
        let request = self.request_id();
        self.add_request(now, ClientMessage::PublishSni { request, name })
    }

    fn add_request(&mut self, now: Instant, msg: ClientMessage) -> u64 {
        let request = request_of(&msg);
        let mut req = Request {
            msg,
            retry: None,
            give_up: now + GIVE_UP_AFTER,
        };
        if self.is_registered() {
            self.messages.push_back(req.msg.clone());
            req.retry = Some(Retry::new(now));
        }
        self.requests.insert(request, req);
        self.fail_unsent();
        request
    }

    fn register(&mut self, now: Instant) {
        let request = self.request_id();
        self.last_register = Some(request);
        self.token_uses.clear();
        self.state = State::Registering {
            request,
            retry: Retry::new(now),
        };
        self.pause_requests();
        if let Some(import) = &mut self.import {
            import.request = request;
            import.retry = Retry::new(now);
        }
        self.send_register(request);
    }

    fn send_register(&mut self, request: u64) {
        self.messages.push_back(ClientMessage::Register {
            request,
            token: self.config.token.clone(),
            path_tokens: self.config.path_tokens.clone(),
            services: self.config.services.clone(),
            host_candidates: self.config.host_candidates.clone(),
            routes: self.config.routes.clone(),
        });
    }

    fn pause_requests(&mut self) {
        for req in self.requests.values_mut() {
            req.retry = None;
        }
    }

    fn lease_lost(&mut self, now: Instant) {
        self.events.push_back(ClientEvent::LeaseLost);
        // The server dropped its introductions for us with the registration, and a restarted
        // server numbers introductions from 1 again: old ids mean nothing any more.
        self.seen.clear();
        self.register(now);
    }

    fn renew_interval(&self, lease: Duration) -> Duration {
        let third = lease / 3;
        self.config
            .renew_every
            .map_or(third, |d| d.min(third))
            .max(Duration::from_millis(100))
    }

    // ----- input -------------------------------------------------------------------------

    /// Feeds one message from the server. Call it for every decoded message, then drain
    /// `poll_message` and `poll_event`. Unexpected or stale messages are ignored.
    pub(crate) fn handle_message(&mut self, now: Instant, msg: ServerMessage) {
        match msg {
            ServerMessage::Registered {
                request,
                lease_secs,
                reflexive,
            } => {
                let State::Registering { request: r, retry } = self.state else {
                    return;
                };
                if r != request {
                    return;
                }
                let lease = Duration::from_secs(u64::from(lease_secs.max(1)));
                self.state = State::Registered {
                    reflexive,
                    lease,
                    // The server counted from when it received one of our copies; the first
                    // went out no earlier.
                    lease_end: retry.first + lease,
                    renew_at: now + self.renew_interval(lease),
                    renewing: None,
                };
                self.registration_accepted();
                self.events
                    .push_back(ClientEvent::Registered { reflexive, lease });
                if let Some(import) = self.import.as_mut().filter(|i| i.retry.is_due(now)) {
                    // Its `Register` was answered just now: `Granted` gets a retry interval.
                    import.retry.backoff(now);
                }
                self.resend_attach_failures();
                for req in self.requests.values_mut() {
                    if req.retry.is_none() {
                        self.messages.push_back(req.msg.clone());
                        req.retry = Some(Retry::new(now));
                    }
                }
            }
            ServerMessage::Renewed {
                request,
                lease_secs,
            } => {
                let interval = self.renew_interval(Duration::from_secs(u64::from(lease_secs)));
                let State::Registered {
                    lease,
                    lease_end,
                    renew_at,
                    renewing,
                    ..
                } = &mut self.state
                else {
                    return;
                };
                let Some((r, retry)) = *renewing else {
                    return;
                };
                if r == request {
                    *lease = Duration::from_secs(u64::from(lease_secs.max(1)));
                    *lease_end = retry.first + *lease;
                    *renew_at = now + interval;
                    *renewing = None;
                }
            }
            ServerMessage::Waiting { request, wait_secs } => {
                if let Some(req) = self.requests.get_mut(&request) {
                    let until = now + Duration::from_secs(u64::from(wait_secs)) + WAIT_GRACE;
                    req.give_up = req.give_up.max(until);
                }
            }
            ServerMessage::Error {
                request,
                code,
                detail,
            } => self.on_error(now, request, code, detail),
            ServerMessage::Introduce {
                id,
                request,
                peer,
                service,
                candidates,
                role,
                route,
            } => {
                // Acknowledge every copy: the previous acknowledgement may have been lost.
                self.messages.push_back(ClientMessage::Ack { id });
                if self.seen.contains_key(&id) {
                    return;
                }
                if self.seen.len() >= SEEN_MAX {
                    self.seen.pop_first();
                }
                self.seen.insert(id, now);
                if let Some(r) = request {
                    self.requests.remove(&r);
                }
                self.events.push_back(ClientEvent::Introduced {
                    request,
                    peer,
                    service,
                    candidates,
                    role,
                    route,
                });
            }
            ServerMessage::LeaseExpired => {
                if self.is_registered() {
                    self.lease_lost(now);
                }
            }
            ServerMessage::Revoked { id, peer } => {
                if self.first_sight(now, id) {
                    self.events.push_back(ClientEvent::Revoked { peer });
                }
            }
            ServerMessage::Admin { request, answer } => {
                if self.requests.remove(&request).is_some() {
                    self.events
                        .push_back(ClientEvent::AdminAnswered { request, answer });
                }
            }
            ServerMessage::Observed { ttl, .. } => self.observed_ttl = Some(ttl),
            ServerMessage::Attach { id, name, attach } => {
                if self.first_sight(now, id) {
                    self.events.push_back(ClientEvent::Attach { name, attach });
                }
            }
            ServerMessage::Published {
                request,
                name,
                port,
            } => {
                if self.requests.remove(&request).is_some() {
                    self.events.push_back(ClientEvent::Published {
                        request,
                        name,
                        port,
                    });
                }
            }
            ServerMessage::Pins { id, name, clients } => {
                // Every copy is applied: a later push replaces an earlier one that was lost,
                // and applying one twice changes nothing.
                self.first_sight(now, id);
                self.events.push_back(ClientEvent::Pins { name, clients });
            }
            ServerMessage::Granted { request, grants } => self.on_granted(now, request, grants),
            ServerMessage::Tokens { request, uses } => self.on_tokens(request, uses),
        }
    }

    /// Acknowledges the push `id` (every copy: an acknowledgement may have been lost) and
    /// says whether it is new.
    fn first_sight(&mut self, now: Instant, id: u64) -> bool {
        self.messages.push_back(ClientMessage::Ack { id });
        if self.seen.contains_key(&id) {
            return false;
        }
        if self.seen.len() >= SEEN_MAX {
            self.seen.pop_first();
        }
        self.seen.insert(id, now);
        true
    }

    fn on_error(&mut self, now: Instant, request: u64, code: ErrorCode, detail: String) {
        match &self.state {
            State::Registering { request: r, .. } if *r == request => {
                if self.import.as_ref().is_some_and(|i| i.request == request) {
                    // The new path tokens were refused: the old ones come back at once.
                    return self.end_import(now, Err((code, detail)));
                }
                return self.registration_refused(now, code, detail);
            }
            State::Registered {
                renewing: Some((r, _)),
                ..
            } if *r == request => {
                self.lease_lost(now);
                return;
            }
            _ => {}
        }
        if !self.requests.contains_key(&request) {
            return;
        }
        if code == ErrorCode::NotRegistered {
            // The server forgot us (restart, or our lease ran out unnoticed): register again
            // and re-send the request once registered.
            if self.is_registered() {
                self.lease_lost(now);
            }
            return;
        }
        self.requests.remove(&request);
        self.events.push_back(ClientEvent::RequestFailed {
            request,
            code,
            detail,
        });
    }

    /// Acts on every deadline that has passed by `now`: retransmissions, renewal, lease loss
    /// and request timeouts. Calling it early is harmless.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.connect_at.is_some_and(|at| at <= now) {
            self.connect_at = None;
            self.connect_due = true;
        }
        match &mut self.state {
            State::Idle => {}
            State::Backoff { at } => {
                if *at <= now {
                    self.register(now);
                }
            }
            State::Registering { request, retry } => {
                if retry.give_up() <= now {
                    self.events.push_back(ClientEvent::RegistrationFailed {
                        code: ErrorCode::NoAnswer,
                        detail: format!(
                            "no answer to registration within {} s",
                            GIVE_UP_AFTER.as_secs()
                        ),
                    });
                    self.state = State::Backoff {
                        at: now + RETRY_MAX,
                    };
                } else if retry.is_due(now) {
                    retry.backoff(now);
                    let request = *request;
                    self.send_register(request);
                }
            }
            State::Registered {
                lease_end,
                renew_at,
                renewing,
                ..
            } => {
                if *lease_end <= now {
                    self.lease_lost(now);
                } else if let Some((request, retry)) = renewing {
                    if retry.is_due(now) {
                        retry.backoff(now);
                        let request = *request;
                        self.messages.push_back(ClientMessage::Renew { request });
                    }
                } else if *renew_at <= now {
                    let request = self.next_request;
                    self.next_request = self.next_request.wrapping_add(1);
                    *renewing = Some((request, Retry::new(now)));
                    self.messages.push_back(ClientMessage::Renew { request });
                }
            }
        }
        let registered = self.is_registered();
        let mut failed = Vec::new();
        for (&request, req) in &mut self.requests {
            if req.give_up <= now {
                failed.push(request);
            } else if let Some(retry) = req.retry.as_mut().filter(|r| registered && r.is_due(now)) {
                retry.backoff(now);
                self.messages.push_back(req.msg.clone());
            }
        }
        for request in failed {
            let was_sent = self
                .requests
                .remove(&request)
                .is_some_and(|r| r.retry.is_some());
            let detail = if was_sent {
                "the rendezvous server did not answer in time"
            } else {
                "not registered with the rendezvous server in time"
            };
            self.events.push_back(ClientEvent::RequestFailed {
                request,
                code: ErrorCode::NoAnswer,
                detail: detail.into(),
            });
        }
        self.seen
            .retain(|_, at| now.saturating_duration_since(*at) < SEEN_FOR);
        self.import_timeout(now);
    }

    /// Gives a change of path tokens up at its deadline, and while registered resends the
    /// `Register` whose `Granted` went missing.
    fn import_timeout(&mut self, now: Instant) {
        let registered = self.is_registered();
        let Some(import) = &mut self.import else {
            return;
        };
        if import.give_up <= now {
            let detail = "the rendezvous server did not say what the new tokens allow in time";
            return self.end_import(now, Err((ErrorCode::NoAnswer, detail.into())));
        }
        if registered && import.retry.is_due(now) {
            import.retry.backoff(now);
            let request = import.request;
            self.send_register(request);
        }
    }

    // ----- output ------------------------------------------------------------------------

    /// The next message for the server. Drain it until `None` after every call that takes
    /// `now`; send each over the session to the server (losing some is fine).
    #[must_use]
    pub(crate) fn poll_message(&mut self) -> Option<ClientMessage> {
        self.messages.pop_front()
    }

    /// The next event. Drain it until `None` after every call that takes `now`.
    #[must_use]
    pub(crate) fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] should next be called; `None` when nothing is pending.
    #[must_use]
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let state = match &self.state {
            State::Idle => None,
            State::Backoff { at } => Some(*at),
            State::Registering { retry, .. } => Some(retry.next.min(retry.give_up())),
            State::Registered {
                lease_end,
                renew_at,
                renewing,
                ..
            } => Some(match renewing {
                Some((_, retry)) => retry.next.min(*lease_end),
                None => (*renew_at).min(*lease_end),
            }),
        };
        let registered = self.is_registered();
        let requests = self.requests.values().map(|r| match &r.retry {
            Some(retry) if registered => retry.next.min(r.give_up),
            _ => r.give_up,
        });
        let import = self.import.as_ref().map(|i| {
            if registered {
                i.retry.next.min(i.give_up)
            } else {
                i.give_up
            }
        });
        state
            .into_iter()
            .chain(self.connect_at)
            .chain(requests)
            .chain(import)
            .min()
    }
}

fn request_of(msg: &ClientMessage) -> u64 {
    match msg {
        ClientMessage::Register { request, .. }
        | ClientMessage::Renew { request }
        | ClientMessage::Lookup { request, .. }
        | ClientMessage::ConnectPeer { request, .. }
        | ClientMessage::Admin { request, .. }
        | ClientMessage::Publish { request, .. }
        | ClientMessage::PublishUdp { request, .. }
        | ClientMessage::PublishSni { request, .. } => *request,
        ClientMessage::Unregister
        | ClientMessage::Ack { .. }
        | ClientMessage::AttachOutcome { .. }
        | ClientMessage::Disconnected { .. }
        | ClientMessage::SourceLeft { .. } => 0,
    }
}
