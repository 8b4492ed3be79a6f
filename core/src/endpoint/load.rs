//! Handshake load: when an endpoint demands a cookie before spending a Diffie-Hellman on an
//! initiation. Counted globally and per source IP, so that one flooding address is made to
//! prove its address while everyone else still gets straight answers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Source addresses whose initiations are counted at once; when full, addresses with a
/// finished window are forgotten, and if none is, every new source counts as over its limit.
pub(super) const MAX_SOURCES: usize = 4096;

/// Initiations counted in one-second windows.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    count: u32,
}

impl Window {
    fn count(&mut self, now: Instant) -> u32 {
        if now.saturating_duration_since(self.start) >= Duration::from_secs(1) {
            self.start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

/// Initiations per second, overall and per source IP.
#[derive(Debug)]
pub(super) struct LoadMeter {
    all: Window,
    sources: BTreeMap<IpAddr, Window>,
}

impl LoadMeter {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            all: Window {
                start: now,
                count: 0,
            },
            sources: BTreeMap::new(),
        }
    }

    /// Counts one initiation from `source` (`None`: it came through the relay) and says
    /// whether a cookie is due: over `threshold` initiations this second in all, or over
    /// `per_source` from this IP.
    pub(super) fn count(
        &mut self,
        now: Instant,
        source: Option<IpAddr>,
        threshold: u32,
        per_source: u32,
    ) -> bool {
        let overall = self.all.count(now) > threshold;
        let Some(ip) = source else {
            return overall;
        };
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&ip) {
            self.sources
                .retain(|_, w| now.saturating_duration_since(w.start) < Duration::from_secs(1));
            if self.sources.len() >= MAX_SOURCES {
                return true;
            }
        }
        let window = self.sources.entry(ip).or_insert(Window {
            start: now,
            count: 0,
        });
        overall || window.count(now) > per_source
    }

    /// Source addresses remembered.
    #[cfg(test)]
    pub(super) fn sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_flooding_source_is_limited_alone() {
        let t0 = crate::tests::origin();
        let mut m = LoadMeter::new(t0);
        let flood: IpAddr = "198.51.100.1".parse().unwrap();
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        let over: Vec<bool> = (0..30)
            .map(|_| m.count(t0, Some(flood), 1000, 20))
            .collect();
        assert_eq!(
            over.iter().filter(|o| **o).count(),
            10,
            "the 21st and later"
        );
        assert!(!m.count(t0, Some(other), 1000, 20), "another source is not");
        // Next second: the flood's window starts again.
        let t1 = t0 + Duration::from_secs(1);
        assert!(!m.count(t1, Some(flood), 1000, 20));
        // Overall load counts relayed initiations too.
        let mut m = LoadMeter::new(t0);
        assert!(!m.count(t0, None, 1, 20));
        assert!(m.count(t0, None, 1, 20));
    }

    #[test]
    fn the_source_table_is_bounded() {
        let t0 = crate::tests::origin();
        let mut m = LoadMeter::new(t0);
        for i in 0..MAX_SOURCES as u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            assert!(!m.count(t0, Some(ip), u32::MAX, 20));
        }
        let newcomer: IpAddr = "198.51.100.9".parse().unwrap();
        assert!(
            m.count(t0, Some(newcomer), u32::MAX, 20),
            "full: over the limit"
        );
        assert_eq!(m.sources(), MAX_SOURCES);
        // A second later the old windows are forgotten and the newcomer gets in.
        let t1 = t0 + Duration::from_secs(1);
        assert!(!m.count(t1, Some(newcomer), u32::MAX, 20));
        assert_eq!(m.sources(), 1);
    }
}
