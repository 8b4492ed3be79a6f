//! Hole punching and path choice: how a session finds its way to the peer.
//!
//! A session introduced by the rendezvous server gets the peer's candidates (its
//! server-reflexive address first, then its host addresses). Until connected, every handshake
//! attempt punches: TTL-limited probes to every candidate and to the ports predicted above the
//! reflexive one (`candidates.rs`) open our own NAT without reaching the peer's, then the
//! initiation follows at full TTL. When punching has not succeeded within
//! [`crate::config::SessionConfig::relay_after`], attempts also go through the server, which
//! forwards packets sealed with the daemons' own keys and cannot read them. Whichever
//! handshake gets through first makes the session, on the path it came by (the tie-break in
//! `agent::tie_break` picks one when both do).
//!
//! A relayed session keeps looking for a direct path in rounds of probes and path challenges;
//! the first challenge answered from a direct address proves that path both ways (our
//! challenge got in, the answer got out) and the session moves to it. When data waits for
//! acknowledgement for [`crate::config::DEAD_PATH_PTOS`] probe timeouts (within
//! [`crate::config::SessionConfig::path_timeout_min`] and
//! [`crate::config::SessionConfig::path_timeout`]), a direct path is given up for the relay,
//! and the server's fresh introduction that follows starts a round of the search at once. Either side's move shows the other the way: every authenticated packet
//! (other than a challenge or its answer) moves the receiver onto the path it came by.
//!
//! Files (the module is the crate's own; its items are not public API):
//!
//! - `schedule.rs`: every timing rule, in one place: when a TTL-limited probe goes out and with
//!   which TTL, the attempt backoff, when the relay joins in, the relayed search rounds.
//! - `candidates.rs`: punch targets, port prediction, the first path of an introduced session.
//! - `why.rs`: what punching toward each candidate got, and the one line that says why a
//!   session is relayed (`burrow status`, [`crate::WhyRelayed`]).
//! - `agent.rs`: `Agent`, one session's path state, driven by the session with
//!   `handle_*`/`poll_*` like every core machine, and the key tie-break.
//!
//! The [`crate::path::Path`] and [`crate::path::RoutePolicy`] types live in [`crate::path`].

pub(crate) mod agent;
pub(crate) mod candidates;
pub(crate) mod schedule;
pub(crate) mod why;

pub(crate) use agent::{Agent, Outgoing};

use crate::wire::header::TRANSPORT_HEADER_LEN;
use crate::wire::payload::RELAY_PREFIX_LEN;

/// What a relayed packet costs on top of the daemons' own packet: the header, tag and relay
/// prefix of the session with the relay.
pub(crate) const RELAY_OVERHEAD: usize =
    TRANSPORT_HEADER_LEN + crate::crypto::noise::TAG_LEN + RELAY_PREFIX_LEN;
