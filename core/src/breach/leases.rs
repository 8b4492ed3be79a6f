//! UDP leases: which observed UDP address is (source IP, peer port), and until when.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A lease's name: the IP a UDP request came from and the peer port it gave.
pub(crate) type LeaseKey = (IpAddr, i64);

/// Why a UDP request did not get a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseRefused {
    /// The server holds [`super::BreachConfig::max_leases`] leases.
    Full,
    /// The source IP holds [`super::BreachConfig::max_leases_per_ip`] leases.
    IpFull,
}

impl std::fmt::Display for LeaseRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Full => "the server holds as many leases as it may",
            Self::IpFull => "this IP holds as many leases as it may",
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Lease {
    addr: SocketAddr,
    expires: Instant,
}

/// The lease table, indexed by key and by expiry, with its bounds.
#[derive(Debug)]
pub(crate) struct Leases {
    by_key: BTreeMap<LeaseKey, Lease>,
    expiries: BTreeSet<(Instant, LeaseKey)>,
    per_ip: BTreeMap<IpAddr, usize>,
    max_total: usize,
    max_per_ip: usize,
}

impl Leases {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            by_key: BTreeMap::new(),
            expiries: BTreeSet::new(),
            per_ip: BTreeMap::new(),
            max_total,
            max_per_ip,
        }
    }

    /// Records `addr` for `key` until `now + timeout`. Returns whether the lease is new.
    pub(crate) fn renew(
        &mut self,
        now: Instant,
        key: LeaseKey,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<bool, LeaseRefused> {
        let expires = now + timeout;
        if let Some(lease) = self.by_key.get_mut(&key) {
            self.expiries.remove(&(lease.expires, key));
            *lease = Lease { addr, expires };
            self.expiries.insert((expires, key));
            return Ok(false);
        }
        if self.by_key.len() >= self.max_total {
            return Err(LeaseRefused::Full);
        }
        let n = self.per_ip.entry(key.0).or_default();
        if *n >= self.max_per_ip {
            return Err(LeaseRefused::IpFull);
        }
        *n += 1;
        self.by_key.insert(key, Lease { addr, expires });
        self.expiries.insert((expires, key));
        Ok(true)
    }

    /// Moves an existing lease's expiry to `now + timeout` (a server's KeepAlive). Returns
    /// whether the lease exists.
    pub(crate) fn extend(&mut self, now: Instant, key: LeaseKey, timeout: Duration) -> bool {
        match self.by_key.get(&key) {
            Some(lease) => {
                let addr = lease.addr;
                // Cannot be refused: the lease exists.
                let _ = self.renew(now, key, addr, timeout);
                true
            }
            None => false,
        }
    }

    /// The UDP address leased to `key`.
    pub(crate) fn get(&self, key: &LeaseKey) -> Option<SocketAddr> {
        self.by_key.get(key).map(|l| l.addr)
    }

    /// The earliest expiry.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Removes and returns the next lease that has expired at `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<LeaseKey> {
        let &(at, key) = self.expiries.first()?;
        if at > now {
            return None;
        }
        self.expiries.remove(&(at, key));
        self.by_key.remove(&key);
        if let Some(n) = self.per_ip.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&key.0);
            }
        }
        Some(key)
    }

    /// How many leases are held.
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Checks the indexes agree (tests).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        assert_eq!(self.by_key.len(), self.expiries.len());
        assert!(self.by_key.len() <= self.max_total);
        for (at, key) in &self.expiries {
            assert_eq!(self.by_key[key].expires, *at);
        }
        let mut per_ip = BTreeMap::<IpAddr, usize>::new();
        for key in self.by_key.keys() {
            *per_ip.entry(key.0).or_default() += 1;
        }
        assert_eq!(per_ip, self.per_ip);
        assert!(per_ip.values().all(|n| *n <= self.max_per_ip));
    }
}
