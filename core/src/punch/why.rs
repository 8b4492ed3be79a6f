//! Why a session is relayed: what punching toward each of the peer's candidates got, kept by
//! the [`super::Agent`] as it sends and hears, and said in one line for `burrow status`.
//!
//! Only what this side can see counts: which candidates were sent probes or initiations, and
//! which of the peer's addresses were heard from directly. A candidate heard from while the
//! session still rides the relay means the peer's packets reach us but ours do not reach it
//! (its NAT filters them); the peer heard from its own IP on a port it did not announce means
//! its NAT maps each destination to a new port (endpoint-dependent, "symmetric" mapping).
//! Silence says less: either side's NAT may have dropped what the other sent.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// What the punching toward one candidate got, as far as this side can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CandidateOutcome {
    /// Nothing was sent to it: the relay took over first, or its share of the budget for
    /// host candidates was spent.
    NeverTried,
    /// Probes and initiations went to it and nothing came back from it.
    NoAnswer,
    /// The peer's packets came from it, but ours were never answered: the peer's NAT (or
    /// firewall) filters what we send.
    Filtered,
    /// The peer's packets came from its IP but another port: its NAT maps each destination to
    /// a new port, so the address the server saw is not the one it uses toward us.
    MappingVaries,
    /// Direct paths are not tried: the route policy allows the relay only.
    Policy,
    /// It carried the session directly until the path went silent.
    Lost,
}

impl CandidateOutcome {
    /// A short name for logs and metric labels (`no_answer`, `filtered`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Self::NeverTried => "never_tried",
            Self::NoAnswer => "no_answer",
            Self::Filtered => "filtered",
            Self::MappingVaries => "mapping_varies",
            Self::Policy => "policy",
            Self::Lost => "direct_lost",
        }
    }

    /// Every outcome.
    pub const ALL: [Self; 6] = [
        Self::NeverTried,
        Self::NoAnswer,
        Self::Filtered,
        Self::MappingVaries,
        Self::Policy,
        Self::Lost,
    ];

    /// How much an outcome explains (the highest wins the one-line reason).
    fn weight(self) -> u8 {
        match self {
            Self::NeverTried => 0,
            Self::NoAnswer => 1,
            Self::Filtered => 2,
            Self::MappingVaries => 3,
            Self::Lost => 4,
            Self::Policy => 5,
        }
    }
}

impl fmt::Display for CandidateOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NeverTried => "never tried",
            Self::NoAnswer => "no answer",
            Self::Filtered => "filtered",
            Self::MappingVaries => "mapping varies",
            Self::Policy => "policy",
            Self::Lost => "direct path lost",
        })
    }
}

/// Why a session rides the relay: each candidate's outcome, the one that explains most, and
/// the line `burrow status` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhyRelayed {
    /// Each candidate of the peer (its reflexive address first) and what punching toward it
    /// got.
    pub candidates: Vec<(SocketAddr, CandidateOutcome)>,
    /// The outcome that explains most (a policy over a lost path over a varying mapping over
    /// filtering over silence over never trying).
    pub reason: CandidateOutcome,
    /// The peer heard from its own IP on a port it did not announce, if it was.
    pub heard_elsewhere: Option<SocketAddr>,
    /// One line: why the session is relayed.
    pub line: String,
}

/// One candidate's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tried {
    addr: SocketAddr,
    /// Datagrams sent to it (probes, initiations, challenges).
    sent: u32,
    /// Whether anything came from it directly.
    heard: bool,
    /// Whether it carried the session directly at some point.
    carried: bool,
}

/// What punching toward each candidate got so far; the agent keeps one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Attempts {
    tried: Vec<Tried>,
    /// The peer heard from its reflexive IP on a port that is no candidate.
    heard_elsewhere: Option<SocketAddr>,
    /// Direct paths are not allowed (route policy).
    policy: bool,
    /// The direct path that carried the session until it went silent, if one did.
    lost: Option<SocketAddr>,
}

impl Attempts {
    /// Starts over for an introduction's `candidates`; `direct_allowed` false: the route
    /// policy keeps the session on the relay.
    pub(crate) fn introduce(&mut self, candidates: &[SocketAddr], direct_allowed: bool) {
        self.tried = candidates
            .iter()
            .map(|&addr| Tried {
                addr,
                sent: 0,
                heard: false,
                carried: false,
            })
            .collect();
        self.heard_elsewhere = None;
        self.policy = !direct_allowed;
        self.lost = None;
    }

    /// A datagram went to `dst` directly (only candidates are counted; predicted ports are
    /// guesses).
    pub(crate) fn sent(&mut self, dst: SocketAddr) {
        if let Some(t) = self.tried.iter_mut().find(|t| t.addr == dst) {
            t.sent = t.sent.saturating_add(1);
        }
    }

    /// Something came directly from `from`: a candidate, or the peer's reflexive IP on
    /// another port.
    pub(crate) fn heard(&mut self, from: SocketAddr) {
        if let Some(t) = self.tried.iter_mut().find(|t| t.addr == from) {
            t.heard = true;
        } else if self.tried.first().is_some_and(|t| t.addr.ip() == from.ip()) {
            self.heard_elsewhere = Some(from);
        }
    }

    /// The direct path by `addr` carried the session, then went silent.
    pub(crate) fn carried(&mut self, addr: SocketAddr) {
        self.lost = Some(addr);
        if let Some(t) = self.tried.iter_mut().find(|t| t.addr == addr) {
            t.carried = true;
        }
    }

    /// Whether there was an introduction to explain anything about.
    pub(crate) fn is_empty(&self) -> bool {
        self.tried.is_empty() && !self.policy
    }

    fn outcome(&self, index: usize, t: &Tried) -> CandidateOutcome {
        if self.policy {
            CandidateOutcome::Policy
        } else if t.carried {
            CandidateOutcome::Lost
        } else if index == 0 && self.heard_elsewhere.is_some() {
            CandidateOutcome::MappingVaries
        } else if t.heard {
            CandidateOutcome::Filtered
        } else if t.sent == 0 {
            CandidateOutcome::NeverTried
        } else {
            CandidateOutcome::NoAnswer
        }
    }

    /// Why a relayed session is relayed.
    pub(crate) fn why(&self) -> WhyRelayed {
        let candidates: Vec<(SocketAddr, CandidateOutcome)> = self
            .tried
            .iter()
            .enumerate()
            .map(|(i, t)| (t.addr, self.outcome(i, t)))
            .collect();
        let reason = if self.policy {
            CandidateOutcome::Policy
        } else if self.lost.is_some() {
            CandidateOutcome::Lost
        } else {
            candidates
                .iter()
                .map(|(_, o)| *o)
                .max_by_key(|o| o.weight())
                .unwrap_or(CandidateOutcome::NeverTried)
        };
        let line = self.line(&candidates, reason);
        WhyRelayed {
            candidates,
            reason,
            heard_elsewhere: self.heard_elsewhere,
            line,
        }
    }

    fn line(
        &self,
        candidates: &[(SocketAddr, CandidateOutcome)],
        reason: CandidateOutcome,
    ) -> String {
        let n = candidates.len();
        let tried = self.tried.iter().filter(|t| t.sent > 0).count();
        let count = |o: CandidateOutcome| candidates.iter().filter(|(_, c)| *c == o).count();
        let plural = |k: usize| if k == 1 { "candidate" } else { "candidates" };
        match reason {
            CandidateOutcome::Policy => {
                "relayed: the route policy allows the relay only, no direct path is tried".into()
            }
            CandidateOutcome::NeverTried if n == 0 => {
                "relayed: the server gave no candidate to punch toward".into()
            }
            CandidateOutcome::NeverTried => format!(
                "relayed: none of {n} {} tried yet (the relay answered first)",
                plural(n)
            ),
            CandidateOutcome::Lost => {
                let addr = self.lost.map_or_else(String::new, |a| format!(" by {a}"));
                format!(
                    "relayed: the direct path{addr} went silent (a NAT forgot the mapping or \
                     the network changed); looking for it again"
                )
            }
            CandidateOutcome::MappingVaries => {
                let seen = self
                    .heard_elsewhere
                    .map_or_else(String::new, |a| format!(" (heard from {a})"));
                format!(
                    "relayed: {tried} of {n} {} tried; the peer's NAT maps each destination to \
                     a new port{seen}, so the address the server saw does not reach it \
                     (symmetric mapping on its side)",
                    plural(n)
                )
            }
            CandidateOutcome::Filtered => format!(
                "relayed: {tried} of {n} {} tried, {} heard from but never answered ours (their \
                 NAT filters what we send; a mapping that varies on this side would do it)",
                plural(n),
                count(CandidateOutcome::Filtered)
            ),
            CandidateOutcome::NoAnswer => {
                let any = if tried == n {
                    "no answer from any".to_string()
                } else {
                    format!("no answer from those tried, {} never tried", n - tried)
                };
                format!(
                    "relayed: {tried} {} tried, {any} (a NAT on either side drops what the \
                     other sends: endpoint-dependent mapping or filtering, symmetric on one \
                     side at least)",
                    plural(tried)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().expect("literal")).collect()
    }

    fn three() -> (Attempts, Vec<SocketAddr>) {
        let c = addrs(&[
            "203.0.113.10:4000",
            "192.168.1.2:40000",
            "203.0.113.10:40000",
        ]);
        let mut a = Attempts::default();
        a.introduce(&c, true);
        (a, c)
    }

    fn outcomes(w: &WhyRelayed) -> Vec<CandidateOutcome> {
        w.candidates.iter().map(|(_, o)| *o).collect()
    }

    #[test]
    fn silence_from_every_candidate_is_no_answer() {
        let (mut a, c) = three();
        for dst in &c {
            a.sent(*dst);
        }
        let w = a.why();
        assert_eq!(w.reason, CandidateOutcome::NoAnswer);
        assert_eq!(outcomes(&w), vec![CandidateOutcome::NoAnswer; 3]);
        assert!(
            w.line
                .starts_with("relayed: 3 candidates tried, no answer from any ("),
            "{}",
            w.line
        );
    }

    #[test]
    fn a_candidate_heard_but_never_answering_is_filtered() {
        let (mut a, c) = three();
        for dst in &c {
            a.sent(*dst);
        }
        a.heard(c[2]);
        let w = a.why();
        assert_eq!(w.reason, CandidateOutcome::Filtered);
        assert_eq!(
            outcomes(&w),
            vec![
                CandidateOutcome::NoAnswer,
                CandidateOutcome::NoAnswer,
                CandidateOutcome::Filtered
            ]
        );
        assert!(
            w.line
                .contains("1 heard from but never answered ours (their NAT filters"),
            "{}",
            w.line
        );
    }

    #[test]
    fn the_peer_heard_on_an_unannounced_port_is_a_mapping_that_varies() {
        let (mut a, c) = three();
        a.sent(c[0]);
        let other: SocketAddr = "203.0.113.10:4003".parse().expect("literal");
        a.heard(other);
        // Another IP entirely says nothing about the peer's NAT.
        a.heard("198.51.100.9:4000".parse().expect("literal"));
        let w = a.why();
        assert_eq!(w.reason, CandidateOutcome::MappingVaries);
        assert_eq!(w.heard_elsewhere, Some(other));
        assert_eq!(w.candidates[0].1, CandidateOutcome::MappingVaries);
        assert_eq!(w.candidates[1].1, CandidateOutcome::NeverTried);
        assert!(
            w.line.contains("symmetric mapping on its side"),
            "{}",
            w.line
        );
        assert!(w.line.contains("203.0.113.10:4003"), "{}", w.line);
    }

    #[test]
    fn a_relay_only_route_policy_is_policy() {
        let c = addrs(&["203.0.113.10:4000"]);
        let mut a = Attempts::default();
        a.introduce(&c, false);
        let w = a.why();
        assert_eq!(w.reason, CandidateOutcome::Policy);
        assert_eq!(outcomes(&w), vec![CandidateOutcome::Policy]);
        assert!(
            w.line.contains("route policy allows the relay only"),
            "{}",
            w.line
        );
        // A policy with no candidates still explains itself.
        let mut none = Attempts::default();
        none.introduce(&[], false);
        assert!(!none.is_empty());
        assert_eq!(none.why().reason, CandidateOutcome::Policy);
    }

    #[test]
    fn candidates_nothing_went_to_were_never_tried() {
        let (a, _) = three();
        let w = a.why();
        assert_eq!(w.reason, CandidateOutcome::NeverTried);
        assert_eq!(
            w.line,
            "relayed: none of 3 candidates tried yet (the relay answered first)"
        );
        let mut empty = Attempts::default();
        empty.introduce(&[], true);
        assert!(empty.is_empty());
        assert_eq!(
            empty.why().line,
            "relayed: the server gave no candidate to punch toward"
        );
        // Some tried, some not: said so.
        let (mut a, c) = three();
        a.sent(c[0]);
        let w = a.why();
        assert_eq!(w.reason, CandidateOutcome::NoAnswer);
        assert!(
            w.line
                .contains("1 candidate tried, no answer from those tried, 2 never tried"),
            "{}",
            w.line
        );
    }

    #[test]
    fn a_direct_path_that_carried_the_session_and_went_silent_is_lost() {
        let (mut a, c) = three();
        a.sent(c[0]);
        a.heard(c[0]);
        a.carried(c[0]);
        let w = a.why();
        assert_eq!(w.reason, CandidateOutcome::Lost);
        assert!(
            w.line
                .contains("direct path by 203.0.113.10:4000 went silent"),
            "{}",
            w.line
        );
    }

    #[test]
    fn labels_are_distinct() {
        let mut labels: Vec<&str> = CandidateOutcome::ALL.iter().map(|o| o.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), CandidateOutcome::ALL.len());
    }
}
