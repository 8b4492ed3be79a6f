//! [`Agent`]: one session's punching and path state, driven by its session.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::candidates::{HOST_BUDGET, targets};
use super::schedule::{self, ProbeTtl, Search, Step};
use super::why::{Attempts, WhyRelayed};
use crate::config::SessionConfig;
use crate::crypto::PublicKey;
use crate::path::{Path, RoutePolicy};
use crate::rng::SeededRng;

/// Attempts after which the larger key answers the peer's initiation anyway (the first
/// punching attempt only sends probes, so this is after two unanswered initiations).
const YIELD_AFTER_ATTEMPTS: u32 = 3;

/// What the agent wants sent; the session drains it with [`Agent::poll_transmit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// A datagram as it is (a probe, or a handshake initiation), straight to `dst`, with a
    /// limited IP TTL if `ttl` is set.
    Direct {
        /// Where to.
        dst: SocketAddr,
        /// The IP TTL, for a probe.
        ttl: Option<u8>,
        /// The datagram.
        payload: Bytes,
    },
    /// A handshake initiation, through the relay.
    Relay(Bytes),
    /// A path challenge with `nonce`, for the session to seal and send straight to `dst`.
    Challenge {
        /// Where to.
        dst: SocketAddr,
        /// The round's nonce.
        nonce: u64,
    },
}

/// One session's way to its peer: the path in use, the peer's candidates, the relay and when
/// it joins in, and the relayed search for a direct path.
///
/// The session drives it with the same verbs as every core machine: [`Self::handle_attempt`]
/// for each handshake attempt, [`Self::handle_timeout`] when [`Self::poll_timeout`] is due,
/// [`Self::nominate`] when an authenticated packet came by a path, then it drains
/// [`Self::poll_transmit`].
#[derive(Debug)]
pub(crate) struct Agent {
    /// How packets to the peer go: the path the last authenticated packet came by (path
    /// challenges aside), or where we first try to reach it.
    path: Path,
    /// The relay that may carry this session (our rendezvous server's address) when the
    /// route policy allows; `None` keeps the session direct.
    relay: Option<SocketAddr>,
    /// Whether direct paths may be tried (false under the relay-only route policy).
    direct_allowed: bool,
    /// While punching: from when our handshakes also go through the relay.
    relay_from: Option<Instant>,
    /// Addresses to punch toward until connected (empty: just `path`), and to probe for a
    /// direct path while relayed.
    candidates: Vec<SocketAddr>,
    /// While relayed: the rounds that look for a direct path.
    search: Search,
    /// Bytes still allowed toward host candidates (see [`HOST_BUDGET`]).
    host_budget: usize,
    /// How the first probes' TTL is chosen.
    first_ttl: ProbeTtl,
    /// The route policy the last introduction gave (`None` before any).
    route: Option<RoutePolicy>,
    /// What punching toward each candidate got (for [`Self::why_relayed`]).
    attempts: Attempts,
    /// When the server first introduced the peer; `None`: never (the server's own session,
    /// or a peer that came to our address).
    introduced_at: Option<Instant>,
    /// Whether the session has had a direct path since its introduction.
    went_direct: bool,
    out: VecDeque<Outgoing>,
}

/// What a path challenge costs on the wire, for the host budget: transport header, the sealed
/// kind byte and nonce, and the tag.
const CHALLENGE_BYTES: usize = 16 + 1 + 8 + 16;

impl Agent {
    /// An agent whose packets go by `path` until told otherwise.
    pub(crate) fn new(path: Path) -> Self {
        Self {
            path,
            relay: None,
            direct_allowed: true,
            relay_from: None,
            candidates: Vec::new(),
            search: Search::default(),
            host_budget: HOST_BUDGET,
            first_ttl: ProbeTtl::Climb,
            route: None,
            attempts: Attempts::default(),
            introduced_at: None,
            went_direct: false,
            out: VecDeque::new(),
        }
    }

    /// The route policy the session was introduced with (the stricter of every service's
    /// that uses it), `None` before any introduction.
    pub(crate) fn route(&self) -> Option<RoutePolicy> {
        self.route
    }

    /// How the first probes' TTL is chosen (from now on: punching attempts and search rounds
    /// still to come).
    pub(crate) fn set_first_ttl(&mut self, first_ttl: ProbeTtl) {
        self.first_ttl = first_ttl;
        self.search = std::mem::take(&mut self.search).with_first_ttl(first_ttl);
    }

    /// How the first probes' TTL was chosen.
    pub(crate) fn first_ttl(&self) -> ProbeTtl {
        self.first_ttl
    }

    /// Whether the server introduced the peer with candidates to punch toward.
    pub(crate) fn has_candidates(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// The path packets to the peer take.
    pub(crate) fn path(&self) -> Path {
        self.path
    }

    /// Aims a session that is not connected at `addr` (the application's `connect`).
    pub(crate) fn aim(&mut self, addr: SocketAddr) {
        self.path = Path::Direct(addr);
    }

    /// The peer's first initiation came through our server's relay, before the server
    /// introduced it to us: the relay may carry this session.
    pub(crate) fn allow_relay(&mut self, relay: SocketAddr) {
        self.relay = Some(relay);
    }

    /// Takes an introduction: the peer's `candidates` (reflexive address first, then host
    /// addresses) and `relay` (the rendezvous server's address and our route policy) when the
    /// relay may carry the session. Until connected, handshakes punch toward the candidates;
    /// the first to answer becomes the path.
    pub(crate) fn introduce(
        &mut self,
        cfg: &SessionConfig,
        now: Instant,
        candidates: Vec<SocketAddr>,
        relay: Option<(SocketAddr, RoutePolicy)>,
        connected: bool,
    ) {
        let direct_allowed = super::candidates::direct_allowed(relay);
        if let Some((_, route)) = relay {
            self.route = Some(route);
            if !route.allows_relay() {
                // Direct only from now on (an earlier introduction may have allowed both).
                self.relay = None;
                self.relay_from = None;
            }
        }
        self.introduced_at.get_or_insert(now);
        if !connected || self.path.is_relay() {
            self.attempts.introduce(&candidates, direct_allowed);
        }
        if let Some((server, _)) = relay.filter(|(_, r)| r.allows_relay()) {
            self.relay = Some(server);
            self.direct_allowed = direct_allowed;
            if !connected {
                self.relay_from = Some(schedule::relay_from(cfg, now, direct_allowed));
            }
        }
        if !direct_allowed {
            return;
        }
        if let Some(first) = candidates.first() {
            if !connected && !self.path.is_relay() {
                self.path = Path::Direct(*first);
            }
        }
        let fresh = connected && self.path.is_relay() && !candidates.is_empty();
        self.candidates = candidates;
        if fresh {
            // A fresh introduction of a relayed session (the server answers both sides at
            // once, so their rounds line up): the first round of the search need not wait.
            self.search.hurry(now);
        }
    }

    /// Whether handshake attempts punch: not connected yet, and candidates to punch toward.
    pub(crate) fn is_punching(&self, connected: bool) -> bool {
        !connected && !self.candidates.is_empty()
    }

    /// Whether packets that came by `from` may be taken: the route policy's word.
    pub(crate) fn path_allowed(&self, from: Path) -> bool {
        match from {
            Path::Direct(_) => self.direct_allowed,
            Path::Relay(_) => self.relay.is_some() || self.path.is_relay(),
        }
    }

    /// Whether the session's packets may have to fit the relay's wrapping.
    pub(crate) fn may_relay(&self) -> bool {
        self.relay.is_some() || self.path.is_relay()
    }

    /// Whether handshake attempt number `attempts` should also go through the relay.
    pub(crate) fn relay_due(&self, now: Instant, attempts: u32, connected: bool) -> bool {
        if self.relay.is_none() || self.path.is_relay() {
            return false;
        }
        if connected {
            // A liveness or rekey handshake on a direct path whose first attempt went
            // unanswered: the path may have died.
            attempts >= 1
        } else {
            self.relay_from.is_some_and(|at| now >= at)
        }
    }

    /// Sends handshake attempt number `attempts` (counted from 0), the initiation `packet`:
    /// on the path, through the relay when due, and while punching as TTL-limited probes to
    /// every target, followed (from the second attempt on) by the initiation at full TTL.
    /// Returns when the next attempt is due.
    pub(crate) fn handle_attempt(
        &mut self,
        cfg: &SessionConfig,
        now: Instant,
        attempts: u32,
        connected: bool,
        packet: Bytes,
    ) -> Instant {
        let punching = self.is_punching(connected);
        let relay_due = self.relay_due(now, attempts, connected);
        let next = schedule::next_attempt(cfg, now, punching, attempts, relay_due, self.relay_from);
        if self.path.is_relay() || relay_due {
            self.out.push_back(Outgoing::Relay(packet.clone()));
        }
        if !punching {
            if let Path::Direct(dst) = self.path {
                self.out.push_back(Outgoing::Direct {
                    dst,
                    ttl: None,
                    payload: packet,
                });
            }
            return next;
        }
        let ttl = schedule::probe_ttl(cfg, self.first_ttl, attempts);
        let probe = Bytes::copy_from_slice(&crate::wire::header::probe());
        let cost = probe.len() + if attempts > 0 { packet.len() } else { 0 };
        for dst in self.affordable_targets(cost) {
            self.out.push_back(Outgoing::Direct {
                dst,
                ttl: Some(ttl),
                payload: probe.clone(),
            });
            if attempts > 0 {
                self.out.push_back(Outgoing::Direct {
                    dst,
                    ttl: None,
                    payload: packet.clone(),
                });
            }
        }
        next
    }

    /// The targets to send `cost` bytes to now: the peer's own IP always (its reflexive
    /// address and the predicted ports there), host candidates while the host budget lasts,
    /// which this charges.
    fn affordable_targets(&mut self, cost: usize) -> Vec<SocketAddr> {
        let own_ip = self.candidates.first().map(SocketAddr::ip);
        let mut out = targets(&self.candidates);
        out.retain(|dst| {
            if Some(dst.ip()) == own_ip {
                return true;
            }
            match self.host_budget.checked_sub(cost) {
                Some(left) => {
                    self.host_budget = left;
                    true
                }
                None => false,
            }
        });
        for dst in &out {
            self.attempts.sent(*dst);
        }
        out
    }

    /// Something came straight from `from` (an initiation, say), whether or not it made a
    /// path: noted for [`Self::why_relayed`].
    pub(crate) fn heard(&mut self, from: Path) {
        if let Path::Direct(addr) = from {
            self.attempts.heard(addr);
        }
    }

    /// Why the session rides the relay, when it does and the server introduced the peer.
    pub(crate) fn why_relayed(&self) -> Option<WhyRelayed> {
        (self.path.is_relay() && !self.attempts.is_empty()).then(|| self.attempts.why())
    }

    /// Whether the server introduced the peer (so punching counts for the metrics).
    pub(crate) fn was_introduced(&self) -> bool {
        self.introduced_at.is_some()
    }

    /// The first time an introduced session is on a direct path: how long that took since
    /// the introduction. `None` afterwards, and while relayed.
    pub(crate) fn first_direct(&mut self, now: Instant) -> Option<std::time::Duration> {
        let at = self.introduced_at?;
        if self.went_direct || self.path.is_relay() {
            return None;
        }
        self.went_direct = true;
        Some(now.saturating_duration_since(at))
    }

    /// Sends on `path` from now on (an authenticated packet came by it); returns whether the
    /// path changed. A change starts or stops the relayed search.
    pub(crate) fn nominate(
        &mut self,
        cfg: &SessionConfig,
        now: Instant,
        path: Path,
        connected: bool,
    ) -> bool {
        if path == self.path {
            return false;
        }
        let fell_back = matches!(self.path, Path::Direct(_)) && path.is_relay();
        if let (Path::Direct(addr), true) = (self.path, fell_back && connected) {
            // A connected session's direct path went silent (before connecting, the first
            // candidate was only where we aimed).
            self.attempts.carried(addr);
        }
        self.path = path;
        self.restart_search(cfg, now, connected);
        if fell_back && self.search.poll_timeout().is_some() {
            self.search = Search::after_fallback(cfg, now).with_first_ttl(self.first_ttl);
        }
        true
    }

    /// Starts or stops the search for a direct path, after the path changed or the session
    /// came up. Rounds start once the session is up, which happens on both sides within one
    /// relay trip, so that their rounds line up.
    pub(crate) fn restart_search(&mut self, cfg: &SessionConfig, now: Instant, connected: bool) {
        let search =
            connected && self.path.is_relay() && self.direct_allowed && !self.candidates.is_empty();
        self.search = Search::new(cfg, now, search).with_first_ttl(self.first_ttl);
    }

    /// Where to go when data on the path went unanswered: the relay, from a direct path that
    /// has one.
    pub(crate) fn fallback(&self) -> Option<Path> {
        match (self.path, self.relay) {
            (Path::Direct(_), Some(relay)) => Some(Path::Relay(relay)),
            _ => None,
        }
    }

    /// Whether the answer to a path challenge with `nonce`, come by `from`, proves a direct
    /// path: it answers the latest round, came straight from the peer, and we are relayed.
    pub(crate) fn handle_path_response(&self, from: Path, nonce: u64) -> bool {
        self.search.is_current(nonce) && !from.is_relay() && self.path.is_relay()
    }

    /// When the relayed search takes its next step.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.search.poll_timeout().filter(|_| self.path.is_relay())
    }

    /// Takes the search step due at `now`, if any: a round's probes, or its challenges.
    pub(crate) fn handle_timeout(
        &mut self,
        cfg: &SessionConfig,
        now: Instant,
        rng: &mut SeededRng,
    ) {
        if self.poll_timeout().is_none_or(|at| at > now) {
            return;
        }
        match self.search.handle_timeout(cfg, now, rng) {
            Step::Probes { ttl } => {
                let probe = Bytes::copy_from_slice(&crate::wire::header::probe());
                let sweep = schedule::sweep_ttls(cfg, self.first_ttl);
                let cost = probe.len() * (1 + sweep.len());
                let targets = self.affordable_targets(cost);
                // The sweep first, to every target, before any probe makes a new flow.
                for sweep_ttl in sweep {
                    for &dst in &targets {
                        self.out.push_back(Outgoing::Direct {
                            dst,
                            ttl: Some(sweep_ttl),
                            payload: probe.clone(),
                        });
                    }
                }
                for dst in targets {
                    self.out.push_back(Outgoing::Direct {
                        dst,
                        ttl: Some(ttl),
                        payload: probe.clone(),
                    });
                }
            }
            Step::Challenges { nonce } => {
                for dst in self.affordable_targets(CHALLENGE_BYTES) {
                    self.out.push_back(Outgoing::Challenge { dst, nonce });
                }
            }
        }
    }

    /// The next datagram the agent wants sent.
    #[must_use]
    pub(crate) fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }
}

/// What the tie-break for simultaneous initiation does with the peer's initiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TieBreak {
    /// We answer it.
    Answer,
    /// We decline it whatever path it came by: our handshake in flight wins on key order.
    Decline,
    /// We decline it for the path it came by (the relay) only: the same message may also come
    /// by a path where we would answer it.
    DeclineOnPath,
}

/// Tie-break for simultaneous initiation: what we (`local`) do with an initiation from `peer`
/// that came by `from`, while `pending` attempts of our own handshake are in flight (`None`:
/// none is).
///
/// While our own handshake is in flight, the side with the larger static key ignores the
/// peer's initiation and the other side answers ours. Only for our first attempts, though: if
/// ours keep going unanswered (a symmetric NAT in front of the peer drops them while the
/// peer's get through to us), we answer theirs after all. Through the relay both sides'
/// initiations arrive, so there the rule stays strict: were both to answer, each would drop
/// the other's answer (its own handshake gone) and neither session would complete.
pub(crate) fn tie_break(
    local: &PublicKey,
    peer: &PublicKey,
    pending: Option<u32>,
    from: Path,
) -> TieBreak {
    match pending {
        None => TieBreak::Answer,
        Some(_) if *local < *peer => TieBreak::Answer,
        Some(attempts) if attempts < YIELD_AFTER_ATTEMPTS => TieBreak::Decline,
        Some(_) if from.is_relay() => TieBreak::DeclineOnPath,
        Some(_) => TieBreak::Answer,
    }
}

/// Whether, having answered the peer's initiation while not connected, we keep our own
/// handshake in flight: the larger key answers only after its own attempts went unanswered
/// (see [`tie_break`]), and then the smaller key may have answered ours too,
/// abandoning its own. Were we to abandon ours as well, each side would drop the other's
/// answer and neither would complete.
pub(crate) fn keeps_own_handshake(local: &PublicKey, peer: &PublicKey, connected: bool) -> bool {
    !connected && *local > *peer
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::SessionConfig;

    /// An introduction whose host candidates all pass the LAN check (the attacker announced
    /// addresses on our own LAN): whatever the punching attempts and relayed search rounds do
    /// over an hour, at most the host budget reaches those addresses, while the peer's own
    /// address keeps being tried.
    #[test]
    fn host_candidates_get_at_most_the_budget() {
        let cfg = SessionConfig::default();
        let t0 = crate::tests::origin();
        let reflexive: SocketAddr = "203.0.113.10:4000".parse().expect("literal");
        let hosts: Vec<SocketAddr> = (1..=8)
            .map(|i| SocketAddr::from(([192, 168, 1, i], 80)))
            .collect();
        let mut candidates = vec![reflexive];
        candidates.extend(&hosts);
        let server: SocketAddr = "198.51.100.1:7000".parse().expect("literal");
        let mut agent = Agent::new(Path::Direct(reflexive));
        agent.introduce(
            &cfg,
            t0,
            candidates,
            Some((server, RoutePolicy::Any)),
            false,
        );
        let initiation = Bytes::from(vec![0u8; 153]);
        let (mut to_hosts, mut to_peer) = (0usize, 0usize);
        let mut count = |agent: &mut Agent| {
            while let Some(out) = agent.poll_transmit() {
                let (dst, len) = match out {
                    Outgoing::Direct { dst, payload, .. } => (dst, payload.len()),
                    Outgoing::Challenge { dst, .. } => (dst, CHALLENGE_BYTES),
                    Outgoing::Relay(_) => continue,
                };
                if hosts.contains(&dst) {
                    to_hosts += len;
                } else {
                    to_peer += len;
                }
            }
        };
        // Punching: attempts until the relay takes over.
        let mut now = t0;
        for attempt in 0..20 {
            now = agent.handle_attempt(&cfg, now, attempt, false, initiation.clone());
            count(&mut agent);
        }
        // Relayed, connected: search rounds for an hour.
        agent.nominate(&cfg, now, Path::Relay(server), true);
        let mut rng = SeededRng::new([5; 32]);
        let end = now + Duration::from_secs(3600);
        while let Some(at) = agent.poll_timeout().filter(|at| *at < end) {
            agent.handle_timeout(&cfg, at, &mut rng);
            count(&mut agent);
        }
        println!(
            "host candidates: {to_hosts} B (budget {HOST_BUDGET} B); the peer's own IP: {to_peer} B"
        );
        assert!(
            to_hosts <= HOST_BUDGET,
            "{to_hosts} bytes to host candidates"
        );
        assert!(to_hosts > 0, "a LAN peer is tried at first");
        assert!(
            to_peer > to_hosts,
            "the peer's own address keeps being tried"
        );
    }
}
