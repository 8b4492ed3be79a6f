//! NAT boxes per RFC 4787, plus the Linux conntrack behaviour towards unsolicited inbound packets.
//!
//! State is kept the way a Linux-style NAT keeps it, as two tables:
//!
//! - **mappings** `(internal endpoint [, remote address [, remote port]]) -> external port`, keyed
//!   according to the [`Mapping`] behaviour (RFC 4787 section 4.1);
//! - **flows** (conntrack entries) `(external port, remote endpoint) -> internal endpoint`, one per
//!   5-tuple the NAT has seen. Filtering (section 5) is decided on flows. A flow with no internal
//!   endpoint is a *local* entry: the NAT box's own stack accepted an unsolicited packet.
//!
//! A new flow for `internal -> remote` reuses its mapping's port unless the reply tuple
//! `(port, remote)` is already taken, as Linux's `nf_nat_get_unique_tuple` requires; then that
//! one flow gets another port. With [`Unsolicited::Conntrack`] an unsolicited inbound packet from
//! `R` to external port `P` creates a local entry `(P, R)`, so a host that later sends to `R` from
//! an internal port that maps to `P` leaves from some `P' != P`: the clash that TTL-limited first
//! punches avoid.
//!
//! Port allocation follows `nf_nat_l4proto_unique_tuple` in spirit: keep the source port when
//! preserving and free, otherwise search the range from a random (or, for sequential NATs, a
//! rover) offset. Unlike Linux, a port held by one internal endpoint's mapping is never handed to
//! another internal endpoint (no port overloading, RFC 4787 REQ-1/section 4.2.2).
//!
//! Expiry is lazy: entries idle for their timeout are purged before the next lookup.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Bound;
use std::time::Duration;

use rand_core::Rng;

/// RFC 4787 mapping behaviour: which outbound flows share an external port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// One external port per internal endpoint, whatever the destination ("cone").
    EndpointIndependent,
    /// One external port per (internal endpoint, remote address).
    AddressDependent,
    /// One external port per (internal endpoint, remote address, remote port) ("symmetric").
    AddressAndPortDependent,
}

/// RFC 4787 filtering behaviour: which inbound packets to a mapped port get through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filtering {
    /// Any remote endpoint.
    EndpointIndependent,
    /// Remotes whose address the internal endpoint has sent to through this mapping.
    AddressDependent,
    /// Only remote endpoints the internal endpoint has sent to through this mapping.
    AddressAndPortDependent,
}

/// How a new mapping's external port is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortAllocation {
    /// Keep the internal port if free; otherwise search the range from a random offset.
    Preserving,
    /// The next free port after the last one allocated.
    Sequential,
    /// A random free port.
    Random,
}

/// What the NAT does with an inbound packet that matches no flow and is not let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsolicited {
    /// Drop it and keep no state.
    Drop,
    /// Linux: the box's own stack takes it and conntrack keeps a local entry for the 5-tuple
    /// (for [`NatConfig::local_entry_timeout`]), which later clashes with a host's outbound flow
    /// to the same remote.
    Conntrack,
}

/// Configuration of one NAT box.
#[derive(Clone, Debug, PartialEq)]
pub struct NatConfig {
    /// Mapping behaviour.
    pub mapping: Mapping,
    /// Filtering behaviour.
    pub filtering: Filtering,
    /// Port allocation.
    pub port_allocation: PortAllocation,
    /// Idle time after which a mapping or flow is removed (RFC 4787 REQ-5: at least 2 min).
    pub binding_timeout: Duration,
    /// Idle time after which an outbound flow that never saw a reply is removed, if shorter
    /// than `binding_timeout` (Linux: `nf_conntrack_udp_timeout`, 30 s, against
    /// `nf_conntrack_udp_timeout_stream`, 120 s, once a reply was seen).
    pub unreplied_timeout: Option<Duration>,
    /// Whether inbound packets refresh the mapping and flow (outbound always does).
    pub refresh_on_inbound: bool,
    /// Whether a host may reach another host behind this NAT through its external address.
    pub hairpinning: bool,
    /// Treatment of unsolicited inbound packets.
    pub unsolicited: Unsolicited,
    /// Idle timeout of local conntrack entries (Linux `nf_conntrack_udp_timeout`, 30 s).
    pub local_entry_timeout: Duration,
    /// External ports the NAT allocates from, inclusive.
    pub port_range: (u16, u16),
    /// Linux's source map (`find_appropriate_src` in `nf_nat_core.c`), when set: a new flow
    /// from an internal endpoint that has no mapping takes the external port of that
    /// endpoint's newest conntrack entry, including one that expired but that conntrack's
    /// garbage collector has not reaped yet (the walk does not check expiry). Such an entry is
    /// reaped this long after it expired, or at once when a packet of its own 5-tuple is
    /// looked up, even one whose TTL dies at this box (the lookup precedes `ip_forward`'s TTL
    /// check). `None`: the mapping behaviour alone decides (no copying).
    pub source_map: Option<Duration>,
}

impl Default for NatConfig {
    /// Endpoint-independent mapping, address-and-port-dependent filtering, port preserving,
    /// 120 s binding timeout, no hairpinning, unsolicited packets dropped.
    fn default() -> Self {
        Self {
            mapping: Mapping::EndpointIndependent,
            filtering: Filtering::AddressAndPortDependent,
            port_allocation: PortAllocation::Preserving,
            binding_timeout: Duration::from_secs(120),
            unreplied_timeout: None,
            refresh_on_inbound: true,
            hairpinning: false,
            unsolicited: Unsolicited::Drop,
            local_entry_timeout: Duration::from_secs(30),
            port_range: (1024, 65535),
            source_map: None,
        }
    }
}

impl NatConfig {
    /// A NAT with the given mapping and filtering; other settings as [`NatConfig::default`].
    pub fn new(mapping: Mapping, filtering: Filtering) -> Self {
        Self {
            mapping,
            filtering,
            ..Self::default()
        }
    }

    /// "Full cone": endpoint-independent mapping and filtering.
    pub fn full_cone() -> Self {
        Self::new(Mapping::EndpointIndependent, Filtering::EndpointIndependent)
    }

    /// "Restricted cone": endpoint-independent mapping, address-dependent filtering.
    pub fn restricted_cone() -> Self {
        Self::new(Mapping::EndpointIndependent, Filtering::AddressDependent)
    }

    /// "Port-restricted cone": endpoint-independent mapping, address-and-port-dependent filtering.
    pub fn port_restricted_cone() -> Self {
        Self::new(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        )
    }

    /// "Symmetric": address-and-port-dependent mapping and filtering, random ports.
    pub fn symmetric() -> Self {
        Self {
            port_allocation: PortAllocation::Random,
            ..Self::new(
                Mapping::AddressAndPortDependent,
                Filtering::AddressAndPortDependent,
            )
        }
    }

    /// A Linux `MASQUERADE` box: port-preserving, endpoint-independent in practice,
    /// reply-only filtering, and local conntrack entries for unsolicited packets.
    pub fn linux() -> Self {
        Self {
            unsolicited: Unsolicited::Conntrack,
            unreplied_timeout: Some(Duration::from_secs(30)),
            ..Self::port_restricted_cone()
        }
    }

    /// Sets port allocation.
    pub fn with_port_allocation(mut self, p: PortAllocation) -> Self {
        self.port_allocation = p;
        self
    }

    /// Sets hairpinning.
    pub fn with_hairpinning(mut self, on: bool) -> Self {
        self.hairpinning = on;
        self
    }

    /// Sets the binding timeout.
    pub fn with_binding_timeout(mut self, t: Duration) -> Self {
        self.binding_timeout = t;
        self
    }

    /// Sets whether inbound traffic refreshes bindings.
    pub fn with_refresh_on_inbound(mut self, on: bool) -> Self {
        self.refresh_on_inbound = on;
        self
    }

    /// Models Linux's source map, with expired entries reaped `gc_lag` after they expire (see
    /// [`NatConfig::source_map`]).
    pub fn with_source_map(mut self, gc_lag: Duration) -> Self {
        self.source_map = Some(gc_lag);
        self
    }

    /// Sets the treatment of unsolicited inbound packets.
    pub fn with_unsolicited(mut self, u: Unsolicited) -> Self {
        self.unsolicited = u;
        self
    }

    /// Sets the external port range (inclusive).
    pub fn with_port_range(mut self, lo: u16, hi: u16) -> Self {
        assert!(lo <= hi && lo > 0, "bad port range {lo}..={hi}");
        self.port_range = (lo, hi);
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MapKey {
    int: SocketAddr,
    rip: Option<IpAddr>,
    rport: Option<u16>,
}

#[derive(Clone, Copy, Debug)]
struct MappingEntry {
    port: u16,
    last: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Flow {
    /// `None` for a local entry (the box's own stack).
    int: Option<SocketAddr>,
    /// The mapping this flow uses; `None` for local entries and for flows that had to take
    /// another port because of a tuple clash.
    mapping: Option<MapKey>,
    last: Duration,
    /// Whether a packet came back on this flow (or it was opened from outside).
    replied: bool,
    /// When the flow was made (the source map takes the newest).
    created: Duration,
}

/// A flow that expired but is not reaped yet (see [`NatConfig::source_map`]).
#[derive(Clone, Copy, Debug)]
struct Unreaped {
    int: SocketAddr,
    remote: SocketAddr,
    port: u16,
    created: Duration,
    reap_at: Duration,
}

#[derive(Clone, Copy, Debug)]
enum PortUse {
    Mapping(MapKey),
    Flow,
}

/// How an outbound packet was translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutKind {
    /// An existing flow.
    Existing,
    /// A new flow on an existing mapping.
    Reused,
    /// A new mapping.
    New,
    /// The mapping's port clashed with an existing tuple; this flow got another port.
    Clash { wanted: u16 },
}

/// What the NAT does with an inbound packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// Translate to this internal endpoint and forward.
    Forward(SocketAddr),
    /// Delivered to the box's own stack; `created` if this made a new local conntrack entry.
    Local { created: bool },
    /// Would be forwarded, but its TTL expires here; no state was changed.
    TtlExpired,
    /// Dropped for this reason.
    Drop(&'static str),
}

/// One conntrack entry, for inspection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// External port of the NAT.
    pub external_port: u16,
    /// Remote endpoint.
    pub remote: SocketAddr,
    /// Internal endpoint, or `None` for a local entry created by an unsolicited packet.
    pub internal: Option<SocketAddr>,
    /// Last time traffic refreshed the entry (since origin).
    pub last_active: Duration,
}

/// The state of one NAT box.
#[derive(Clone, Debug)]
pub struct NatBox {
    cfg: NatConfig,
    mappings: BTreeMap<MapKey, MappingEntry>,
    flows: BTreeMap<(u16, SocketAddr), Flow>,
    by_int: BTreeMap<(SocketAddr, SocketAddr), u16>,
    ports: BTreeMap<u16, PortUse>,
    rover: u16,
    next_purge: Duration,
    unreaped: Vec<Unreaped>,
}

const ANY_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

impl NatBox {
    /// A NAT with no state.
    pub fn new(cfg: NatConfig) -> Self {
        let rover = cfg.port_range.0;
        Self {
            cfg,
            mappings: BTreeMap::new(),
            flows: BTreeMap::new(),
            by_int: BTreeMap::new(),
            ports: BTreeMap::new(),
            rover,
            next_purge: Duration::MAX,
            unreaped: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// Live conntrack entries at `now`, ordered by external port then remote.
    pub fn flows(&self, now: Duration) -> Vec<FlowInfo> {
        self.flows
            .iter()
            .filter(|&(&(port, _), f)| self.flow_alive(port, f, now))
            .map(|(&(external_port, remote), f)| FlowInfo {
                external_port,
                remote,
                internal: f.int,
                last_active: f.last,
            })
            .collect()
    }

    /// Live mappings at `now` as `(internal endpoint, external port)`.
    pub fn mappings(&self, now: Duration) -> Vec<(SocketAddr, u16)> {
        self.mappings
            .iter()
            .filter(|(_, m)| m.last + self.cfg.binding_timeout > now)
            .map(|(k, m)| (k.int, m.port))
            .collect()
    }

    /// Changes how the box treats packets from now on, keeping its mappings and flows (an
    /// operator's policy change, not a reboot).
    pub fn set_config(&mut self, cfg: NatConfig) {
        self.cfg = cfg;
    }

    /// Drops every mapping and flow (a NAT reboot).
    pub fn clear(&mut self) {
        *self = Self::new(self.cfg.clone());
    }

    fn flow_timeout(&self, f: &Flow) -> Duration {
        flow_timeout(&self.cfg, f)
    }

    fn flow_alive(&self, port: u16, f: &Flow, now: Duration) -> bool {
        f.last + self.flow_timeout(f) > now
            && f.mapping.is_none_or(|k| {
                self.mappings
                    .get(&k)
                    .is_some_and(|m| m.port == port && m.last + self.cfg.binding_timeout > now)
            })
    }

    fn key(&self, int: SocketAddr, remote: SocketAddr) -> MapKey {
        let (rip, rport) = match self.cfg.mapping {
            Mapping::EndpointIndependent => (None, None),
            Mapping::AddressDependent => (Some(remote.ip()), None),
            Mapping::AddressAndPortDependent => (Some(remote.ip()), Some(remote.port())),
        };
        MapKey { int, rip, rport }
    }

    fn expire_at(&mut self, at: Duration) {
        self.next_purge = self.next_purge.min(at);
    }

    /// Removes idle entries if any may have expired by `now`.
    fn purge(&mut self, now: Duration) {
        if now < self.next_purge {
            return;
        }
        let bt = self.cfg.binding_timeout;
        let cfg = self.cfg.clone();
        let mut next = Duration::MAX;
        self.mappings.retain(|_, m| {
            let exp = m.last + bt;
            if exp > now {
                next = next.min(exp);
            }
            exp > now
        });
        let mappings = &self.mappings;
        let unreaped = &mut self.unreaped;
        unreaped.retain(|u| u.reap_at > now);
        self.flows.retain(|&(port, remote), f| {
            let exp = f.last + flow_timeout(&cfg, f);
            let alive = exp > now
                && f.mapping
                    .is_none_or(|k| mappings.get(&k).is_some_and(|m| m.port == port));
            if alive {
                next = next.min(exp);
            } else if let (Some(lag), Some(int)) = (cfg.source_map, f.int) {
                unreaped.push(Unreaped {
                    int,
                    remote,
                    port,
                    created: f.created,
                    reap_at: exp.min(now) + lag,
                });
            }
            alive
        });
        // Rebuild the indexes from what survived.
        self.ports.clear();
        self.by_int.clear();
        for (k, m) in &self.mappings {
            self.ports.insert(m.port, PortUse::Mapping(*k));
        }
        for (&(port, remote), f) in &self.flows {
            if let Some(int) = f.int {
                self.by_int.insert((int, remote), port);
                self.ports.entry(port).or_insert(PortUse::Flow);
            }
        }
        self.next_purge = next;
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_flow(
        &mut self,
        port: u16,
        remote: SocketAddr,
        int: SocketAddr,
        mapping: Option<MapKey>,
        now: Duration,
        replied: bool,
    ) {
        let flow = Flow {
            int: Some(int),
            mapping,
            last: now,
            replied,
            created: now,
        };
        self.expire_at(now + self.flow_timeout(&flow));
        self.flows.insert((port, remote), flow);
        self.by_int.insert((int, remote), port);
    }

    /// Translates an outbound packet `int -> remote`; returns the external port, or `None` if
    /// no port is free.
    pub(crate) fn outbound(
        &mut self,
        now: Duration,
        int: SocketAddr,
        remote: SocketAddr,
        rng: &mut impl Rng,
    ) -> Option<(u16, OutKind)> {
        self.purge(now);
        if let Some(&port) = self.by_int.get(&(int, remote)) {
            let mut expiry = self.cfg.binding_timeout;
            if let Some(f) = self.flows.get_mut(&(port, remote)) {
                f.last = now;
                expiry = flow_timeout(&self.cfg, f);
                if let Some(m) = f.mapping.and_then(|k| self.mappings.get_mut(&k)) {
                    m.last = now;
                }
            }
            self.expire_at(now + expiry);
            return Some((port, OutKind::Existing));
        }
        // The lookup of this tuple reaps its own expired entry.
        self.reap(now, int, remote);
        let key = self.key(int, remote);
        if let Some(m) = self.mappings.get_mut(&key) {
            let port = m.port;
            if !self.flows.contains_key(&(port, remote)) {
                m.last = now;
                self.insert_flow(port, remote, int, Some(key), now, false);
                return Some((port, OutKind::Reused));
            }
            // The reply tuple (port, remote) belongs to someone else (typically a local conntrack
            // entry): this flow needs a unique tuple, hence another port.
            let other = self.allocate(int, remote, rng)?;
            self.ports.insert(other, PortUse::Flow);
            self.insert_flow(other, remote, int, None, now, false);
            return Some((other, OutKind::Clash { wanted: port }));
        }
        if let Some(port) = self.source_map_port(int, remote, now) {
            self.mappings.insert(key, MappingEntry { port, last: now });
            self.ports.insert(port, PortUse::Mapping(key));
            self.insert_flow(port, remote, int, Some(key), now, false);
            return Some((port, OutKind::New));
        }
        let port = self.allocate(int, remote, rng)?;
        let kind = match self.cfg.port_allocation {
            PortAllocation::Preserving
                if port != int.port() && self.flows.contains_key(&(int.port(), remote)) =>
            {
                OutKind::Clash { wanted: int.port() }
            }
            _ => OutKind::New,
        };
        self.mappings.insert(key, MappingEntry { port, last: now });
        self.ports.insert(port, PortUse::Mapping(key));
        self.insert_flow(port, remote, int, Some(key), now, false);
        Some((port, kind))
    }

    /// A packet `int -> remote` was looked up at `now` (conntrack's lookup runs before the TTL
    /// check): an expired entry of that tuple is reaped.
    pub(crate) fn reap(&mut self, now: Duration, int: SocketAddr, remote: SocketAddr) {
        self.purge(now);
        self.unreaped
            .retain(|u| !(u.int == int && u.remote == remote));
    }

    /// Under the source map (not for fully random allocation, which skips it), the external
    /// port of `int`'s newest conntrack entry, live or expired and unreaped, if the reply
    /// tuple toward `remote` is free there.
    fn source_map_port(&self, int: SocketAddr, remote: SocketAddr, now: Duration) -> Option<u16> {
        self.cfg.source_map?;
        if self.cfg.port_allocation == PortAllocation::Random {
            return None;
        }
        let live = self
            .flows
            .iter()
            .filter(|&(&(port, _), f)| f.int == Some(int) && self.flow_alive(port, f, now))
            .map(|(&(port, _), f)| (f.created, port));
        let unreaped = self
            .unreaped
            .iter()
            .filter(|u| u.int == int && u.reap_at > now)
            .map(|u| (u.created, u.port));
        let (_, port) = live.chain(unreaped).max_by_key(|&(created, _)| created)?;
        (!self.flows.contains_key(&(port, remote))).then_some(port)
    }

    fn port_free(&self, port: u16, remote: SocketAddr) -> bool {
        !self.ports.contains_key(&port) && !self.flows.contains_key(&(port, remote))
    }

    fn allocate(&mut self, int: SocketAddr, remote: SocketAddr, rng: &mut impl Rng) -> Option<u16> {
        let (lo, hi) = self.cfg.port_range;
        let span = u32::from(hi - lo) + 1;
        let random_start = |rng: &mut dyn FnMut() -> u32| lo + (rng() % span) as u16;
        let mut draw = || rng.next_u32();
        let start = match self.cfg.port_allocation {
            PortAllocation::Preserving => {
                let p = int.port();
                if (lo..=hi).contains(&p) && self.port_free(p, remote) {
                    return Some(p);
                }
                random_start(&mut draw)
            }
            PortAllocation::Sequential => self.rover,
            PortAllocation::Random => {
                for _ in 0..32 {
                    let p = random_start(&mut draw);
                    if self.port_free(p, remote) {
                        return Some(p);
                    }
                }
                random_start(&mut draw)
            }
        };
        let found = (0..span)
            .map(|i| lo + ((u32::from(start - lo) + i) % span) as u16)
            .find(|&p| self.port_free(p, remote))?;
        if self.cfg.port_allocation == PortAllocation::Sequential {
            self.rover = if found == hi { lo } else { found + 1 };
        }
        Some(found)
    }

    /// Decides what to do with an inbound packet from `remote` to external port `port`.
    /// `can_forward` is false when the packet's TTL would expire at this box; then nothing that
    /// would be forwarded changes any state.
    pub(crate) fn inbound(
        &mut self,
        now: Duration,
        remote: SocketAddr,
        port: u16,
        can_forward: bool,
    ) -> Inbound {
        self.purge(now);
        let refresh = self.cfg.refresh_on_inbound;
        if let Some(f) = self.flows.get_mut(&(port, remote)) {
            let Some(int) = f.int else {
                // Conntrack refreshes every entry on every packet.
                f.last = now;
                self.expire_at(now + self.cfg.local_entry_timeout);
                return Inbound::Local { created: false };
            };
            if !can_forward {
                return Inbound::TtlExpired;
            }
            f.replied = true;
            if refresh {
                f.last = now;
                if let Some(m) = f.mapping.and_then(|k| self.mappings.get_mut(&k)) {
                    m.last = now;
                }
                self.expire_at(now + self.cfg.binding_timeout);
            }
            return Inbound::Forward(int);
        }
        let mapped = match self.ports.get(&port) {
            Some(PortUse::Mapping(key)) => Some(*key),
            _ => None,
        };
        if let Some(key) = mapped {
            let allowed = match self.cfg.filtering {
                Filtering::EndpointIndependent => true,
                Filtering::AddressDependent => {
                    let hi = match port.checked_add(1) {
                        Some(p) => Bound::Excluded((p, ANY_ADDR)),
                        None => Bound::Unbounded,
                    };
                    self.flows
                        .range((Bound::Included((port, ANY_ADDR)), hi))
                        .any(|(&(_, r), f)| f.int == Some(key.int) && r.ip() == remote.ip())
                }
                Filtering::AddressAndPortDependent => false,
            };
            if allowed {
                if !can_forward {
                    return Inbound::TtlExpired;
                }
                self.insert_flow(port, remote, key.int, Some(key), now, true);
                if refresh {
                    if let Some(m) = self.mappings.get_mut(&key) {
                        m.last = now;
                    }
                }
                return Inbound::Forward(key.int);
            }
        }
        match self.cfg.unsolicited {
            Unsolicited::Drop if mapped.is_some() => Inbound::Drop("filtered"),
            Unsolicited::Drop => Inbound::Drop("no mapping"),
            Unsolicited::Conntrack => {
                self.flows.insert(
                    (port, remote),
                    Flow {
                        int: None,
                        mapping: None,
                        last: now,
                        replied: false,
                        created: now,
                    },
                );
                self.expire_at(now + self.cfg.local_entry_timeout);
                Inbound::Local { created: true }
            }
        }
    }
}

/// How long `f` lives without traffic under `cfg`.
fn flow_timeout(cfg: &NatConfig, f: &Flow) -> Duration {
    match (f.int, f.replied) {
        (None, _) => cfg.local_entry_timeout,
        (Some(_), true) => cfg.binding_timeout,
        (Some(_), false) => cfg
            .unreplied_timeout
            .map_or(cfg.binding_timeout, |t| t.min(cfg.binding_timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn port_exhaustion_returns_none() {
        let cfg = NatConfig::symmetric().with_port_range(40000, 40001);
        let mut nat = NatBox::new(cfg);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let int = sa("10.0.0.2:5000");
        let a = nat
            .outbound(S(0), int, sa("1.1.1.1:1"), &mut rng)
            .unwrap()
            .0;
        let b = nat
            .outbound(S(0), int, sa("1.1.1.1:2"), &mut rng)
            .unwrap()
            .0;
        assert_ne!(a, b);
        assert!(nat.outbound(S(0), int, sa("1.1.1.1:3"), &mut rng).is_none());
        // After the bindings expire the ports are free again.
        assert!(
            nat.outbound(S(121), int, sa("1.1.1.1:3"), &mut rng)
                .is_some()
        );
    }

    #[test]
    fn expiry_purges_mappings_and_flows() {
        let mut nat = NatBox::new(NatConfig::linux());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (int, r) = (sa("10.0.0.2:5000"), sa("1.1.1.1:1"));
        nat.outbound(S(0), int, r, &mut rng).unwrap();
        // Answered, so the flow lives 120 s, not the 30 s of an unreplied one.
        assert_eq!(nat.inbound(S(0), r, 5000, true), Inbound::Forward(int));
        assert_eq!(
            nat.inbound(S(1), sa("9.9.9.9:9"), 7000, true),
            Inbound::Local { created: true }
        );
        assert_eq!(nat.flows(S(1)).len(), 2);
        // The local entry (30 s) goes first, the binding (120 s) later.
        assert_eq!(nat.flows(S(31)).len(), 1);
        assert_eq!(nat.inbound(S(100), r, 5000, true), Inbound::Forward(int));
        assert_eq!(nat.mappings(S(219)), vec![(int, 5000)]);
        // Binding gone: a Linux box now takes the packet to its own stack.
        assert_eq!(
            nat.inbound(S(221), r, 5000, true),
            Inbound::Local { created: true }
        );
        assert!(nat.mappings.is_empty() && nat.ports.is_empty() && nat.by_int.is_empty());
        assert_eq!(nat.flows(S(221))[0].internal, None);
    }

    #[test]
    fn ttl_expiry_changes_no_state() {
        let mut nat = NatBox::new(NatConfig::full_cone());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let int = sa("10.0.0.2:5000");
        nat.outbound(S(0), int, sa("1.1.1.1:1"), &mut rng).unwrap();
        // Would be admitted (full cone) but dies here: no new flow.
        assert_eq!(
            nat.inbound(S(1), sa("2.2.2.2:2"), 5000, false),
            Inbound::TtlExpired
        );
        assert_eq!(nat.flows(S(1)).len(), 1);
    }
}
