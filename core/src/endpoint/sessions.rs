//! The endpoint's sessions, with their deadlines in an ordered index.
//!
//! Every session's next deadline is derived from its state ([`Session::poll_timeout`]). Rather
//! than asking every session after every datagram, the map remembers which sessions it lent
//! out mutably, and [`Sessions::sync`] (run at the end of every endpoint call but a datagram's,
//! and before the first output is drained after datagrams) recomputes the deadlines of those
//! alone. The earliest deadline and the sessions due at `now` then cost
//! O(log n).
//!
//! The same bookkeeping counts half-open handshakes (sessions made by answering an initiation,
//! not yet confirmed) by the source they came from, for `SessionConfig::max_half_open_per_source`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use crate::config::SessionConfig;
use crate::crypto::PublicKey;
use crate::session::Session;
use crate::timer::Timer;

/// The sessions by peer key, and their deadlines ordered by time.
#[derive(Default)]
pub(super) struct Sessions {
    map: BTreeMap<PublicKey, Session>,
    /// Each session's next deadline as of the last [`Self::sync`] (none: no entry).
    deadline: BTreeMap<PublicKey, (Instant, Timer)>,
    /// The same deadlines, ordered: `(at, key)` for every entry of `deadline`.
    index: BTreeSet<(Instant, PublicKey)>,
    /// Sessions lent out mutably (or added) since the last sync: their deadlines may be stale.
    dirty: BTreeSet<PublicKey>,
    /// The half-open sessions as of the last sync (or insert), with their source.
    half_open: BTreeMap<PublicKey, IpAddr>,
    /// How many of those each source holds (no entry: none).
    half_open_by_source: BTreeMap<IpAddr, usize>,
}

impl Sessions {
    pub(super) fn get(&self, key: &PublicKey) -> Option<&Session> {
        self.map.get(key)
    }

    /// The session with `key`, to change: its deadline is recomputed at the next sync.
    /// Every session, by key (read-only: no deadline changes).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&PublicKey, &Session)> {
        self.map.iter()
    }

    pub(super) fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Session> {
        let session = self.map.get_mut(key)?;
        self.dirty.insert(*key);
        Some(session)
    }

    /// The session with `key`, made by `new` if there is none.
    pub(super) fn get_or_insert_with(
        &mut self,
        key: PublicKey,
        new: impl FnOnce() -> Session,
    ) -> &mut Session {
        self.dirty.insert(key);
        self.map.entry(key).or_insert_with(new)
    }

    /// Adds a session; a half-open one counts against its source at once.
    pub(super) fn insert(&mut self, key: PublicKey, session: Session) {
        self.dirty.insert(key);
        let half_open = session.half_open_source();
        self.map.insert(key, session);
        self.set_half_open(key, half_open);
    }

    /// Half-open handshakes held for `source` (as [`crate::session::source_of`] counts it).
    pub(super) fn half_open_from(&self, source: IpAddr) -> usize {
        self.half_open_by_source.get(&source).copied().unwrap_or(0)
    }

    /// Half-open handshakes held in all.
    pub(super) fn half_open_count(&self) -> usize {
        self.half_open.len()
    }

    fn set_half_open(&mut self, key: PublicKey, source: Option<IpAddr>) {
        count_half_open(
            &mut self.half_open,
            &mut self.half_open_by_source,
            key,
            source,
        );
    }

    pub(super) fn contains_key(&self, key: &PublicKey) -> bool {
        self.map.contains_key(key)
    }

    /// Every session's peer key.
    pub(super) fn keys(&self) -> Vec<PublicKey> {
        self.map.keys().copied().collect()
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Keeps the sessions for which `keep` returns true; the others leave the index too.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&PublicKey, &Session) -> bool) {
        let mut gone = Vec::new();
        self.map.retain(|key, s| {
            let kept = keep(key, s);
            if !kept {
                gone.push(*key);
            }
            kept
        });
        for key in gone {
            self.set_deadline(key, None);
            self.set_half_open(key, None);
            self.dirty.remove(&key);
        }
    }

    fn set_deadline(&mut self, key: PublicKey, next: Option<(Instant, Timer)>) {
        if let Some((at, _)) = self.deadline.remove(&key) {
            self.index.remove(&(at, key));
        }
        if let Some((at, timer)) = next {
            self.deadline.insert(key, (at, timer));
            self.index.insert((at, key));
        }
    }

    /// Recomputes the deadlines of the sessions changed since the last sync.
    pub(super) fn sync(&mut self, cfg: &SessionConfig) {
        while let Some(key) = self.dirty.pop_first() {
            let session = self.map.get(&key);
            let next = session.and_then(|s| s.poll_timeout(cfg));
            let half_open = session.and_then(Session::half_open_source);
            self.set_deadline(key, next);
            self.set_half_open(key, half_open);
        }
    }

    /// Brings the half-open counts up to date with the sessions changed since the last sync,
    /// leaving their deadlines for [`Self::sync`]: after each datagram, so that the next
    /// initiation in the same batch meets current counts, while the deadlines (which nothing
    /// reads until the output is drained) are recomputed once per batch.
    pub(super) fn sync_half_open(&mut self) {
        for key in &self.dirty {
            let source = self.map.get(key).and_then(Session::half_open_source);
            count_half_open(
                &mut self.half_open,
                &mut self.half_open_by_source,
                *key,
                source,
            );
        }
    }

    /// Whether every deadline is up to date.
    pub(super) fn is_synced(&self) -> bool {
        self.dirty.is_empty()
    }

    /// The earliest deadline of any session, and why.
    pub(super) fn next_deadline(&self) -> Option<(Instant, Timer)> {
        let (_, key) = self.index.first()?;
        self.deadline.get(key).copied()
    }

    /// The sessions with a deadline at or before `now`, in key order (the order the endpoint
    /// has always handled them in).
    pub(super) fn due(&self, now: Instant) -> Vec<PublicKey> {
        let mut due: Vec<PublicKey> = self
            .index
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, key)| *key)
            .collect();
        due.sort_unstable();
        due
    }

    /// Panics unless the index agrees with what every session says when asked afresh.
    #[cfg(test)]
    pub(super) fn check(&self, cfg: &SessionConfig) {
        assert!(
            self.is_synced(),
            "deadlines not synced: {}",
            self.dirty.len()
        );
        let mut index = BTreeSet::new();
        for (key, session) in &self.map {
            let fresh = session.poll_timeout(cfg);
            assert_eq!(
                self.deadline.get(key).copied(),
                fresh,
                "cached deadline of {key}"
            );
            if let Some((at, _)) = fresh {
                index.insert((at, *key));
            }
        }
        assert_eq!(
            self.deadline.len(),
            index.len(),
            "deadlines of gone sessions"
        );
        assert_eq!(self.index, index, "ordered index");
        let mut half_open = BTreeMap::new();
        let mut by_source = BTreeMap::<IpAddr, usize>::new();
        for (key, session) in &self.map {
            if let Some(source) = session.half_open_source() {
                half_open.insert(*key, source);
                *by_source.entry(source).or_default() += 1;
            }
        }
        assert_eq!(self.half_open, half_open, "half-open sessions");
        assert_eq!(self.half_open_by_source, by_source, "half-open by source");
    }
}

/// Records that `key` is half-open from `source` (or not half-open: `None`) in `half_open`,
/// and moves its count in `by_source`.
fn count_half_open(
    half_open: &mut BTreeMap<PublicKey, IpAddr>,
    by_source: &mut BTreeMap<IpAddr, usize>,
    key: PublicKey,
    source: Option<IpAddr>,
) {
    let old = match source {
        Some(source) => half_open.insert(key, source),
        None => half_open.remove(&key),
    };
    if old == source {
        return;
    }
    if let Some(old) = old {
        let n = by_source.get_mut(&old).expect("counted when it was added");
        *n -= 1;
        if *n == 0 {
            by_source.remove(&old);
        }
    }
    if let Some(source) = source {
        *by_source.entry(source).or_default() += 1;
    }
}
