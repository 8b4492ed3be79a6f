//! Every timing rule of punching in one place: when handshake attempts go out and with which
//! probe TTL, when the relay joins in, and when the relayed search for a direct path steps.
//!
//! **When do we send a TTL-limited probe?** At every punching attempt (a handshake attempt
//! while not connected and the peer has candidates), and at the start of every relayed search
//! round. The probe's TTL is [`probe_ttl`]: `punch_ttl_start` plus one hop per earlier attempt
//! or round, at most `punch_ttl_ceiling`, so nested NATs are crossed one hop at a time. The
//! probes open our own NAT toward the peer without reaching the peer's NAT, where an
//! unsolicited packet could claim the port the peer's packets need.
//!
//! Punching attempts ([`next_attempt`]): the first sends only probes and is retried after
//! `punch_lead`; from the second on the initiation itself follows the probes at full TTL, and
//! attempts back off from `punch_retry` to `handshake_retry_max`. Once `relay_after` has passed
//! (see [`super::Agent`]), every attempt also goes through the relay, at the plain handshake
//! interval. Attempts stop at `handshake_timeout`, which the session enforces.
//!
//! Relayed search rounds ([`Search`]): a sweep of packets that die at our own NATs (see
//! [`sweep_ttls`]), probes, then `punch_lead` later the path challenges at
//! full TTL; the first round starts `path_probe_min` after the session came up on the relay and
//! rounds back off to `path_probe_max`.

use std::time::{Duration, Instant};

use crate::config::SessionConfig;
use crate::rng::SeededRng;

/// The TTL of the probes of punching attempt (or relayed search round) number `step`, counted
/// from 0: from the first probes' TTL `first` (see [`ProbeTtl`]) one hop per step up to
/// `punch_ttl_ceiling`.
pub(crate) fn probe_ttl(cfg: &SessionConfig, first: ProbeTtl, step: u32) -> u8 {
    let first = first.first(cfg);
    u8::try_from(step)
        .unwrap_or(u8::MAX)
        .saturating_add(first)
        .min(cfg.punch_ttl_ceiling.max(first))
}

/// The TTLs of a relayed search round's sweep: one packet per TTL from 1 up to, not
/// including, the first probes' TTL, to every target, before the round's probes.
///
/// Each dies at one of our own NATs (TTL `k` at hop `k`), where a Linux NAT looks its tuple up
/// before `ip_forward` drops it, and that lookup reaps an expired conntrack entry of the
/// tuple. Without it such an entry, left by an earlier round and not yet reaped by conntrack's
/// garbage collector (up to a minute later), lends its port to the round's first new flow:
/// `find_appropriate_src` gives a new flow from our socket the mapping of its newest entry
/// without checking expiry, and later flows copy that one. A NAT that turned from symmetric
/// (fully random ports) to a cone would then map the round's flows to a random port of the
/// symmetric phase, which the peer never hears of, instead of to the mapping of our flow to
/// the server, the reflexive address the peer punches toward. The sweep makes no state of
/// its own: the packet dies before the entry it would make is confirmed.
pub(crate) fn sweep_ttls(cfg: &SessionConfig, first: ProbeTtl) -> std::ops::Range<u8> {
    1..first.first(cfg).max(1)
}

/// The initial TTLs hosts use (Linux and macOS 64, Windows 128, some routers 255).
const INITIAL_TTLS: [u8; 3] = [64, 128, 255];

/// How a session chose the TTL of its first punching probes, shown in status.
///
/// The probes must cross every NAT of our own (so the TTL is at least our NAT depth + 1) and
/// die before the peer's NAT (at most the hops to it - 1), where an unsolicited packet could
/// take the port the peer's packets need (the Linux conntrack clash). The first round decides:
/// a peer whose packets reach our outermost NAT before our probes have crossed it leaves such
/// an entry there. With two NATs of our own (a home NAT behind a carrier-grade NAT) TTL 2 dies
/// at the carrier NAT before translation, so only TTL 3 or more opens it.
///
/// The NAT depth itself is not visible to the host (its first hop is a private address
/// either way), but the hop count to the rendezvous server is: the server reports the IP TTL
/// our requests arrive with, and the initial TTL is one of 64/128/255. Our NATs lie on the
/// path to the server, and the server lies beyond at least two routers past our outermost NAT
/// (the access router and the server's own), so TTL `hops - 1` crosses every NAT of ours, and
/// it stays short of a peer's NAT whose path from us is no shorter than ours to the server
/// less one hop. It is kept within `punch_ttl_start..=punch_ttl_ceiling`, and later attempts
/// climb from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProbeTtl {
    /// The hop count to the server is unknown (the server did not say): start at
    /// `punch_ttl_start` and climb one hop per attempt.
    #[default]
    Climb,
    /// Learned from the hop count to the server.
    Learned {
        /// The first probes' TTL.
        ttl: u8,
        /// The IP TTL the server saw our request arrive with.
        observed: u8,
        /// The forwarding hops (routers and NATs) between us and the server.
        hops: u8,
    },
}

impl ProbeTtl {
    /// The first probes' TTL under `cfg` for a server that saw our requests arrive with IP
    /// TTL `observed` (`None`: it did not say).
    pub(crate) fn choose(cfg: &SessionConfig, observed: Option<u8>) -> Self {
        let Some(observed) = observed else {
            return Self::Climb;
        };
        let initial = INITIAL_TTLS
            .into_iter()
            .find(|&i| observed <= i)
            .unwrap_or(u8::MAX);
        let hops = initial - observed;
        let ttl = hops.saturating_sub(1).clamp(
            cfg.punch_ttl_start,
            cfg.punch_ttl_ceiling.max(cfg.punch_ttl_start),
        );
        Self::Learned {
            ttl,
            observed,
            hops,
        }
    }

    /// The first probes' TTL.
    pub fn first(&self, cfg: &SessionConfig) -> u8 {
        match *self {
            Self::Climb => cfg.punch_ttl_start,
            Self::Learned { ttl, .. } => ttl,
        }
    }

    /// Why, in words (for status).
    pub fn reason(&self) -> String {
        match self {
            Self::Climb => {
                "hop count to the server unknown: climbing one hop per attempt".to_string()
            }
            Self::Learned {
                ttl,
                observed,
                hops,
            } => format!(
                "the server saw TTL {observed}: {hops} hops to it; first probes at TTL {ttl} \
                 (one short of the server, past our own NATs)"
            ),
        }
    }
}

/// `base` doubled `attempts` times, at most `max`.
fn backoff(base: Duration, max: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1u32 << attempts.min(16)).min(max)
}

/// When the handshake attempt after attempt number `attempts` (sent at `now`) is due.
///
/// `punching`: the attempt punched (see the module docs); otherwise it is a plain handshake
/// retry, backing off from `handshake_retry`. `relay_due`: this attempt went through the relay
/// too. `relay_from`: when the relay joins in, while punching.
pub(crate) fn next_attempt(
    cfg: &SessionConfig,
    now: Instant,
    punching: bool,
    attempts: u32,
    relay_due: bool,
    relay_from: Option<Instant>,
) -> Instant {
    let delay = match (punching, attempts) {
        (true, 0) => cfg.punch_lead,
        (true, n) => backoff(cfg.punch_retry, cfg.handshake_retry_max, n - 1),
        (false, n) => backoff(cfg.handshake_retry, cfg.handshake_retry_max, n),
    };
    // The relay joins in at `relay_from`, not at the next doubling of the retry delay, and
    // from then on it is a known path: retry at the plain handshake interval, not at the
    // punching backoff's.
    let delay = if relay_due {
        delay.min(cfg.handshake_retry)
    } else {
        delay
    };
    let relay_from = relay_from.filter(|at| *at > now);
    relay_from.map_or(now + delay, |at| at.min(now + delay))
}

/// When an introduced session's handshakes start going through the relay too: after
/// `relay_after` of punching, at once when direct paths are not allowed or `relay_first`.
pub(crate) fn relay_from(cfg: &SessionConfig, now: Instant, direct_allowed: bool) -> Instant {
    if direct_allowed && !cfg.relay_first {
        now + cfg.relay_after
    } else {
        now
    }
}

/// The search for a direct path while relayed.
///
/// Each round is a small punch: TTL-limited probes to the peer's candidates (and the predicted
/// ports above its reflexive one, see [`super::candidates::PREDICTED_PORTS`]) open our own NAT
/// toward them without reaching the peer's NAT, and `punch_lead` later the challenges follow at
/// full TTL. Both sides start their rounds when the session is up on the relay, which happens
/// on both within one relay trip, and use the same intervals, so their rounds line up and
/// each side's NAT is open before the other's challenge arrives. Were a challenge to reach a
/// Linux NAT first, it would leave a conntrack entry that remaps our own packets to that peer
/// (the clash); the intervals grow past the 30 s in which such entries expire unless
/// refreshed, so one left over from failed punching does not block every later round.
#[derive(Clone, Debug, Default)]
pub(crate) struct Search {
    /// The nonce of the latest round of challenges.
    nonce: Option<u64>,
    /// When the next step goes out (`None`: not searching).
    next: Option<Instant>,
    /// Whether the next step is a round's challenges (after its probes went out).
    challenge_next: bool,
    /// Rounds sent so far: the probes' TTL climbs one hop a round.
    rounds: u8,
    /// How the first round's probe TTL was chosen.
    first_ttl: ProbeTtl,
    /// The delay from the start of the next round to the one after.
    interval: Duration,
}

/// One step of the search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A round's TTL-limited probes.
    Probes {
        /// Their TTL.
        ttl: u8,
    },
    /// A round's path challenges, at full TTL.
    Challenges {
        /// The nonce every challenge of the round carries.
        nonce: u64,
    },
}

impl Search {
    /// A search that starts its first round one `path_probe_min` from `now` (punching has only
    /// just failed, or the direct path only just died), or none if `search` is false.
    ///
    /// With `relay_first` the first round starts at `now`: the session came up on the relay
    /// without punching having failed, and the direct path is the one wanted.
    pub(crate) fn new(cfg: &SessionConfig, now: Instant, search: bool) -> Self {
        let first = cfg.path_probe_min;
        let start = if cfg.relay_first {
            Duration::ZERO
        } else {
            first
        };
        Self {
            nonce: None,
            next: search.then_some(now + start),
            challenge_next: false,
            rounds: 0,
            first_ttl: ProbeTtl::Climb,
            interval: first * 2,
        }
    }

    /// The search, with its rounds' probe TTLs starting from `first_ttl`.
    pub(crate) fn with_first_ttl(self, first_ttl: ProbeTtl) -> Self {
        Self { first_ttl, ..self }
    }

    /// When the next step is due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// A search after a direct path died: the first round one `path_probe_min` from `now`,
    /// the next `path_probe_after_fallback` after it (see there: stale conntrack entries
    /// expire first), then doubling up to `path_probe_max`.
    pub(crate) fn after_fallback(cfg: &SessionConfig, now: Instant) -> Self {
        Self {
            next: Some(now + cfg.path_probe_min),
            interval: cfg.path_probe_after_fallback.max(cfg.path_probe_min * 2),
            ..Self::new(cfg, now, true)
        }
    }

    /// Starts the first round at `now` rather than later, if no round went out yet: the
    /// server just introduced the pair again (after a fallback, the other side asked too), so
    /// both have the addresses the server sees now and start their rounds together. A search
    /// that already ran a round keeps its gaps (stale conntrack entries must expire first).
    pub(crate) fn hurry(&mut self, now: Instant) {
        if self.rounds == 0 && !self.challenge_next {
            self.next = self.next.map(|at| at.min(now));
        }
    }

    /// Whether `nonce` is that of the latest round's challenges.
    pub(crate) fn is_current(&self, nonce: u64) -> bool {
        self.nonce == Some(nonce)
    }

    /// Takes the step that is due at `now` (callers check [`Self::poll_timeout`]).
    pub(crate) fn handle_timeout(
        &mut self,
        cfg: &SessionConfig,
        now: Instant,
        rng: &mut SeededRng,
    ) -> Step {
        if !self.challenge_next {
            let ttl = probe_ttl(cfg, self.first_ttl, u32::from(self.rounds));
            self.rounds = self.rounds.saturating_add(1);
            self.challenge_next = true;
            self.next = Some(now + cfg.punch_lead);
            return Step::Probes { ttl };
        }
        let nonce = rng.u64();
        let interval = self.interval;
        self.nonce = Some(nonce);
        self.challenge_next = false;
        self.next = Some(now + interval.saturating_sub(cfg.punch_lead));
        self.interval = next_interval(cfg, interval);
        Step::Challenges { nonce }
    }
}

/// The gap after a round of `interval`: doubled up to `path_probe_max`, except that a gap
/// past eight `path_probe_min` but short of `path_probe_after_fallback` becomes the latter.
///
/// Such a gap is long enough to give up on quick success and too short to let a Linux NAT
/// forget the unreplied conntrack entries the failed rounds left (30 s, refreshed by every
/// round's probes to the same peer address): a NAT that changed its mapping (symmetric to
/// cone) or lost its state keeps remapping our flows to the peer through those entries for as
/// long as the rounds come every 16 s. Past eight quick rounds' worth, wait them out.
pub(crate) fn next_interval(cfg: &SessionConfig, interval: Duration) -> Duration {
    let doubled = interval * 2;
    let stale_keeping = doubled > cfg.path_probe_min * 8 && doubled < cfg.path_probe_after_fallback;
    let next = if stale_keeping {
        cfg.path_probe_after_fallback
    } else {
        doubled
    };
    next.min(cfg.path_probe_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_gaps_double_then_wait_out_stale_conntrack_entries() {
        let cfg = SessionConfig::default();
        let mut gap = cfg.path_probe_min * 2;
        let mut gaps = vec![gap];
        for _ in 0..5 {
            gap = next_interval(&cfg, gap);
            gaps.push(gap);
        }
        let secs: Vec<u64> = gaps.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [2, 4, 8, 32, 60, 60]);
    }

    #[test]
    fn the_probe_ttl_climbs_one_hop_per_step_to_the_ceiling() {
        let cfg = SessionConfig::default();
        let ttls: Vec<u8> = (0..40)
            .map(|n| probe_ttl(&cfg, ProbeTtl::Climb, n))
            .collect();
        assert_eq!(ttls[0], cfg.punch_ttl_start);
        assert!(ttls.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1));
        assert_eq!(*ttls.last().unwrap(), cfg.punch_ttl_ceiling);
        assert_eq!(
            probe_ttl(&cfg, ProbeTtl::Climb, u32::MAX),
            cfg.punch_ttl_ceiling
        );
    }

    #[test]
    fn the_first_probes_stop_one_hop_short_of_the_server() {
        let cfg = SessionConfig::default();
        assert_eq!(ProbeTtl::choose(&cfg, None), ProbeTtl::Climb);
        assert_eq!(ProbeTtl::Climb.first(&cfg), cfg.punch_ttl_start);
        // The real-NAT lab: behind a home NAT and a carrier NAT, four hops to the server
        // (home, carrier, two routers): TTL 3, the carrier NAT's depth + 1.
        let carrier = ProbeTtl::choose(&cfg, Some(60));
        assert_eq!(
            carrier,
            ProbeTtl::Learned {
                ttl: 3,
                observed: 60,
                hops: 4
            }
        );
        assert_eq!(carrier.first(&cfg), 3);
        // One NAT, two routers: TTL 2, as before.
        assert_eq!(ProbeTtl::choose(&cfg, Some(61)).first(&cfg), 2);
        // Windows (128) and 255 initial TTLs; the range's ends hold.
        assert_eq!(ProbeTtl::choose(&cfg, Some(124)).first(&cfg), 3);
        assert_eq!(
            ProbeTtl::choose(&cfg, Some(254)).first(&cfg),
            cfg.punch_ttl_start
        );
        assert_eq!(
            ProbeTtl::choose(&cfg, Some(64)).first(&cfg),
            cfg.punch_ttl_start
        );
        assert_eq!(
            ProbeTtl::choose(&cfg, Some(30)).first(&cfg),
            cfg.punch_ttl_ceiling
        );
        // Later attempts climb from it.
        assert_eq!(probe_ttl(&cfg, carrier, 0), 3);
        assert_eq!(probe_ttl(&cfg, carrier, 1), 4);
        assert_eq!(probe_ttl(&cfg, carrier, 99), cfg.punch_ttl_ceiling);
        assert!(carrier.reason().contains("TTL 3"));
    }

    #[test]
    fn punching_attempts_lead_then_back_off_and_the_relay_cuts_in() {
        let cfg = SessionConfig::default();
        let t0 = crate::tests::origin();
        assert_eq!(
            next_attempt(&cfg, t0, true, 0, false, None),
            t0 + cfg.punch_lead
        );
        assert_eq!(
            next_attempt(&cfg, t0, true, 1, false, None),
            t0 + cfg.punch_retry
        );
        assert_eq!(
            next_attempt(&cfg, t0, false, 0, false, None),
            t0 + cfg.handshake_retry
        );
        let late = t0 + Duration::from_secs(3600);
        assert!(next_attempt(&cfg, t0, true, 30, false, None) <= t0 + cfg.handshake_retry_max);
        // The relay joins at `relay_from`, not at the next doubling.
        let soon = t0 + Duration::from_millis(1);
        assert_eq!(next_attempt(&cfg, t0, true, 5, false, Some(soon)), soon);
        assert!(next_attempt(&cfg, t0, true, 5, false, Some(late)) < late);
        assert!(next_attempt(&cfg, t0, true, 9, true, None) <= t0 + cfg.handshake_retry);
    }

    #[test]
    fn search_rounds_send_probes_then_challenges_and_back_off() {
        let cfg = SessionConfig::default();
        let t0 = crate::tests::origin();
        let mut rng = SeededRng::new([7; 32]);
        assert_eq!(Search::new(&cfg, t0, false).poll_timeout(), None);
        let mut search = Search::new(&cfg, t0, true);
        let mut now = search.poll_timeout().unwrap();
        assert_eq!(now, t0 + cfg.path_probe_min);
        let mut starts = Vec::new();
        for round in 0..8u32 {
            starts.push(now);
            let step = search.handle_timeout(&cfg, now, &mut rng);
            assert_eq!(
                step,
                Step::Probes {
                    ttl: probe_ttl(&cfg, ProbeTtl::Climb, round)
                }
            );
            now = search.poll_timeout().unwrap();
            assert_eq!(now, starts[starts.len() - 1] + cfg.punch_lead);
            let Step::Challenges { nonce } = search.handle_timeout(&cfg, now, &mut rng) else {
                panic!("challenges follow probes");
            };
            assert!(search.is_current(nonce));
            now = search.poll_timeout().unwrap();
        }
        let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps[0], cfg.path_probe_min * 2);
        assert!(gaps.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*gaps.last().unwrap(), cfg.path_probe_max);
    }

    #[test]
    fn after_a_fallback_the_second_round_waits_out_stale_conntrack_entries() {
        let cfg = SessionConfig::default();
        let t0 = crate::tests::origin();
        let mut rng = SeededRng::new([7; 32]);
        let mut search = Search::after_fallback(&cfg, t0);
        let mut starts = Vec::new();
        while starts.len() < 4 {
            let now = search.poll_timeout().unwrap();
            if let Step::Probes { .. } = search.handle_timeout(&cfg, now, &mut rng) {
                starts.push(now);
            }
        }
        assert_eq!(starts[0], t0 + cfg.path_probe_min);
        // Linux forgets an unreplied entry after 30 s.
        assert!(starts[1] - starts[0] > Duration::from_secs(30));
        assert_eq!(starts[1] - starts[0], cfg.path_probe_after_fallback);
        assert_eq!(starts[2] - starts[1], cfg.path_probe_max);
    }

    #[test]
    fn a_fresh_introduction_hurries_only_the_first_round() {
        let cfg = SessionConfig::default();
        let t0 = crate::tests::origin();
        let mut rng = SeededRng::new([7; 32]);
        let mut search = Search::after_fallback(&cfg, t0);
        let soon = t0 + Duration::from_millis(300);
        search.hurry(soon);
        assert_eq!(search.poll_timeout(), Some(soon));
        // A later introduction does not put the round off.
        search.hurry(soon + Duration::from_millis(1));
        assert_eq!(search.poll_timeout(), Some(soon));
        assert!(matches!(
            search.handle_timeout(&cfg, soon, &mut rng),
            Step::Probes { .. }
        ));
        let challenges = search.poll_timeout().unwrap();
        search.hurry(soon);
        assert_eq!(search.poll_timeout(), Some(challenges), "mid-round");
        search.handle_timeout(&cfg, challenges, &mut rng);
        let second = search.poll_timeout().unwrap();
        search.hurry(challenges);
        assert_eq!(
            search.poll_timeout(),
            Some(second),
            "the gap after a round stays"
        );
        assert_eq!(second - soon, cfg.path_probe_after_fallback);
        // Not searching: nothing to hurry.
        let mut idle = Search::new(&cfg, t0, false);
        idle.hurry(t0);
        assert_eq!(idle.poll_timeout(), None);
    }
}
