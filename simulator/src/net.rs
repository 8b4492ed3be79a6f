//! Forwarding: moves datagrams through uplinks, routers and NAT boxes in virtual time.
//!
//! A datagram is an event in the queue only where something stateful happens to it: arriving at a
//! NAT box, at a host, or entering a rate-limited link (whose queue must be entered in time
//! order). Routers in between just decrement the TTL; links add delay and drop.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use burrow_core::Transmit;
use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::clock::EventQueue;
use crate::link::{IPV4_UDP_OVERHEAD, IPV6_UDP_OVERHEAD, LinkVerdict};
use crate::nat::{Inbound, OutKind};
use crate::topology::{Attachment, HostId, NatId, Network, Owner, Realm, SiteId};
use crate::trace::{Trace, TraceMode};

/// A datagram in flight.
#[derive(Clone, Debug)]
pub(crate) struct Packet {
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
    pub(crate) ttl: u8,
    /// Routers and NAT boxes crossed so far.
    pub(crate) hops: u16,
    pub(crate) payload: Bytes,
}

/// Where a datagram is headed next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Host(HostId),
    /// A NAT box's external side.
    NatOutside(NatId),
    /// A NAT box's LAN side.
    NatInside(NatId),
}

/// A point where a path leaves or enters a realm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attach {
    Site(SiteId),
    /// A NAT box's external side, in the realm above it.
    Wan(NatId),
    /// A NAT box's LAN side, in the realm behind it.
    Lan(NatId),
}

/// One entry of the simulation's event queue.
pub(crate) enum Ev {
    /// A node's deadline.
    Timer(u32),
    /// A scheduled closure.
    Action(usize),
    /// A datagram reaches a stop.
    Arrive(Stop, Packet),
    /// A datagram reaches the start of a rate-limited link.
    Link {
        link: usize,
        stop: Stop,
        pkt: Packet,
    },
}

/// Counters over a whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams sent by nodes.
    pub sent: u64,
    /// Datagrams delivered to nodes.
    pub delivered: u64,
    /// Datagrams dropped anywhere (including the counts below).
    pub dropped: u64,
    /// Drops because the TTL expired.
    pub ttl_expired: u64,
    /// Drops by links (loss, MTU, full queue).
    pub link_drops: u64,
    /// Drops by NAT filtering or port exhaustion.
    pub nat_drops: u64,
    /// Inbound datagrams taken by a NAT box's own stack.
    pub nat_local: u64,
    /// Datagrams that arrived at a host with no node on the port.
    pub unreachable: u64,
}

/// The network plus everything that moves through it.
pub(crate) struct World {
    pub(crate) net: Network,
    pub(crate) queue: EventQueue<Ev>,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) trace: Trace,
    pub(crate) now: Duration,
    pub(crate) stats: NetStats,
}

macro_rules! tr {
    ($w:ident, $verdict:expr, $pkt:expr, $($arg:tt)*) => {
        if $w.trace.enabled() {
            $w.trace.record($w.now, $verdict, $pkt.src, $pkt.dst, $pkt.payload.len(), format_args!($($arg)*));
        }
    };
}
pub(crate) use tr;

/// Displays where a packet was headed.
struct StopName<'a>(&'a Network, Stop);

impl fmt::Display for StopName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Stop::Host(h) => write!(f, "host {}", self.0.host_name(h)),
            Stop::NatOutside(n) => write!(f, "NAT {}", self.0.nat_name(n)),
            Stop::NatInside(n) => write!(f, "NAT {} (LAN side)", self.0.nat_name(n)),
        }
    }
}

impl fmt::Display for OutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutKind::Existing => f.write_str("existing flow"),
            OutKind::Reused => f.write_str("mapping reused"),
            OutKind::New => f.write_str("new mapping"),
            OutKind::Clash { wanted } => write!(f, "tuple clash on port {wanted}, new port"),
        }
    }
}

fn wire_len(pkt: &Packet) -> usize {
    let overhead = if pkt.dst.is_ipv4() {
        IPV4_UDP_OVERHEAD
    } else {
        IPV6_UDP_OVERHEAD
    };
    pkt.payload.len() + overhead
}

impl World {
    pub(crate) fn new(net: Network, seed: u64, trace: TraceMode) -> Self {
        Self {
            net,
            queue: EventQueue::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            trace: Trace::new(trace),
            now: Duration::ZERO,
            stats: NetStats::default(),
        }
    }

    /// A node on `host` sent `t` from `port`.
    pub(crate) fn inject(&mut self, host: HostId, port: u16, t: Transmit) {
        let h = &self.net.hosts[host.0 as usize];
        let site = h.site;
        let pkt = Packet {
            src: SocketAddr::new(h.ip, port),
            dst: t.dst,
            ttl: t.ttl.unwrap_or(64),
            hops: 0,
            payload: t.payload,
        };
        self.stats.sent += 1;
        match t.ttl {
            Some(ttl) => tr!(self, "send", pkt, "ttl={ttl}"),
            None => tr!(self, "send", pkt, ""),
        }
        let realm = self.net.sites[site.0 as usize].realm;
        self.route(realm, Attach::Site(site), pkt);
    }

    /// Sends `pkt`, now at `from`, across `realm` towards the owner of its destination address.
    fn route(&mut self, realm: Realm, from: Attach, mut pkt: Packet) {
        let (target, stop) = match self.net.lookup(realm, pkt.dst.ip()) {
            Some(Owner::Host(h)) => {
                let site = self.net.hosts[h.0 as usize].site;
                if from == Attach::Site(site) {
                    let lan = self.net.sites[site.0 as usize].lan;
                    return self.cross(lan, self.now, Stop::Host(h), pkt);
                }
                (Attach::Site(site), Stop::Host(h))
            }
            Some(Owner::Nat(n)) if from != Attach::Wan(n) => (Attach::Wan(n), Stop::NatOutside(n)),
            _ => match realm {
                Realm::Behind(n) if from != Attach::Lan(n) => (Attach::Lan(n), Stop::NatInside(n)),
                _ => {
                    self.stats.dropped += 1;
                    self.stats.nat_drops += 1;
                    tr!(self, "drop", pkt, "no route {}", self.net.realm_name(realm));
                    return;
                }
            },
        };
        let hops = self.path_hops(from, target);
        if !self.pass_routers(&mut pkt, hops, stop) {
            return;
        }
        let (first, dup) = match self.up_link(from) {
            None => (self.now, None),
            Some(l) => match self.net.links[l].send(&mut self.rng, self.now, wire_len(&pkt)) {
                LinkVerdict::Pass { first, dup } => (first, dup),
                LinkVerdict::Drop(why) => {
                    self.stats.link_drops += 1;
                    return tr_drop_link(self, &pkt, why, stop, "uplink");
                }
            },
        };
        let down = self.down_link(target);
        if let Some(t) = dup {
            self.enter(down, t, stop, pkt.clone());
        }
        self.enter(down, first, stop, pkt);
    }

    /// The packet reaches the start of link `down` (or, with no link, its stop) at `t`.
    fn enter(&mut self, down: Option<usize>, t: Duration, stop: Stop, pkt: Packet) {
        match down {
            None => self.queue.push(t, Ev::Arrive(stop, pkt)),
            Some(link) if t > self.now && self.net.links[link].is_rate_limited() => {
                self.queue.push(t, Ev::Link { link, stop, pkt });
            }
            Some(link) => self.cross(link, t, stop, pkt),
        }
    }

    /// Sends the packet over link `l`, entered at `t`, and schedules its arrival at `stop`.
    pub(crate) fn cross(&mut self, l: usize, t: Duration, stop: Stop, pkt: Packet) {
        match self.net.links[l].send(&mut self.rng, t, wire_len(&pkt)) {
            LinkVerdict::Pass { first, dup } => {
                if let Some(d) = dup {
                    self.queue.push(d, Ev::Arrive(stop, pkt.clone()));
                }
                self.queue.push(first, Ev::Arrive(stop, pkt));
            }
            LinkVerdict::Drop(why) => {
                self.stats.link_drops += 1;
                tr_drop_link(self, &pkt, why, stop, "link");
            }
        }
    }

    /// Decrements the TTL once per router; false (and traced) if it expires before `stop`.
    fn pass_routers(&mut self, pkt: &mut Packet, routers: u8, stop: Stop) -> bool {
        if routers == 0 {
            return true;
        }
        if pkt.ttl <= routers {
            let hop = pkt.hops + u16::from(pkt.ttl.max(1));
            self.stats.dropped += 1;
            self.stats.ttl_expired += 1;
            tr!(
                self,
                "drop",
                pkt,
                "ttl expired at hop {hop} before reaching {}",
                StopName(&self.net, stop)
            );
            return false;
        }
        pkt.ttl -= routers;
        pkt.hops += u16::from(routers);
        true
    }

    fn path_hops(&self, from: Attach, to: Attach) -> u8 {
        let pub_att = |a| match a {
            Attach::Site(s) => Some(Attachment::Site(s)),
            Attach::Wan(n) => Some(Attachment::Nat(n)),
            Attach::Lan(_) => None,
        };
        if let (Some(a), Some(b)) = (pub_att(from), pub_att(to)) {
            if let Some(h) = self.net.hops_override(a, b) {
                return h;
            }
        }
        self.attach_hops(from).saturating_add(self.attach_hops(to))
    }

    fn attach_hops(&self, a: Attach) -> u8 {
        match a {
            Attach::Site(s) => self.net.sites[s.0 as usize].hops,
            Attach::Wan(n) => self.net.nats[n.0 as usize].hops,
            Attach::Lan(_) => 0,
        }
    }

    fn up_link(&self, a: Attach) -> Option<usize> {
        match a {
            Attach::Site(s) => Some(self.net.sites[s.0 as usize].up),
            Attach::Wan(n) => Some(self.net.nats[n.0 as usize].up),
            Attach::Lan(_) => None,
        }
    }

    fn down_link(&self, a: Attach) -> Option<usize> {
        match a {
            Attach::Site(s) => Some(self.net.sites[s.0 as usize].down),
            Attach::Wan(n) => Some(self.net.nats[n.0 as usize].down),
            Attach::Lan(_) => None,
        }
    }

    /// A datagram event fired; returns the packet if it reached a host.
    pub(crate) fn on_arrive(&mut self, stop: Stop, pkt: Packet) -> Option<(HostId, Packet)> {
        match stop {
            Stop::Host(h) => return Some((h, pkt)),
            Stop::NatInside(n) => self.nat_from_inside(n, pkt),
            Stop::NatOutside(n) => self.nat_from_outside(n, pkt),
        }
        None
    }

    fn ttl_at_nat(&mut self, n: NatId, pkt: &Packet) {
        self.stats.dropped += 1;
        self.stats.ttl_expired += 1;
        let hop = pkt.hops + 1;
        tr!(
            self,
            "drop",
            pkt,
            "ttl expired at hop {hop} (NAT {})",
            self.net.nat_name(n)
        );
    }

    /// A packet from the LAN side: outbound translation or hairpinning.
    fn nat_from_inside(&mut self, n: NatId, mut pkt: Packet) {
        if pkt.ttl <= 1 {
            // Linux decrements the TTL in ip_forward, before the new conntrack entry is
            // confirmed: the packet dies and leaves no mapping behind (its lookup did reap an
            // expired entry of its tuple, though).
            self.net.nats[n.0 as usize]
                .state
                .reap(self.now, pkt.src, pkt.dst);
            return self.ttl_at_nat(n, &pkt);
        }
        pkt.ttl -= 1;
        pkt.hops += 1;
        let nat = &mut self.net.nats[n.0 as usize];
        let (ext_ip, realm) = (nat.ip, nat.realm);
        let hairpin = pkt.dst.ip() == ext_ip;
        if hairpin && !nat.state.config().hairpinning {
            self.stats.dropped += 1;
            self.stats.nat_drops += 1;
            tr!(
                self,
                "drop",
                pkt,
                "NAT {}: hairpinning disabled",
                self.net.nat_name(n)
            );
            return;
        }
        let Some((port, kind)) = nat
            .state
            .outbound(self.now, pkt.src, pkt.dst, &mut self.rng)
        else {
            self.stats.dropped += 1;
            self.stats.nat_drops += 1;
            tr!(
                self,
                "drop",
                pkt,
                "NAT {}: no free port",
                self.net.nat_name(n)
            );
            return;
        };
        let new_src = SocketAddr::new(ext_ip, port);
        tr!(
            self,
            "nat",
            pkt,
            "NAT {} src -> {new_src} ({kind})",
            self.net.nat_name(n)
        );
        pkt.src = new_src;
        if !hairpin {
            return self.route(realm, Attach::Wan(n), pkt);
        }
        let nat = &mut self.net.nats[n.0 as usize];
        match nat.state.inbound(self.now, new_src, pkt.dst.port(), true) {
            Inbound::Forward(int) => {
                tr!(
                    self,
                    "nat",
                    pkt,
                    "NAT {} hairpin dst -> {int}",
                    self.net.nat_name(n)
                );
                pkt.dst = int;
                self.route(Realm::Behind(n), Attach::Lan(n), pkt);
            }
            other => self.nat_reject(n, &pkt, other),
        }
    }

    /// A packet from the external side: inbound translation, filtering, or the box's own stack.
    ///
    /// Only forwarded packets cost a hop: a packet the box's own stack accepts (the Linux local
    /// conntrack entry) is addressed to the box and is not subject to the TTL check, so a probe
    /// whose TTL is 1 on arrival still creates the entry; a TTL-limited punch must die before.
    fn nat_from_outside(&mut self, n: NatId, mut pkt: Packet) {
        let nat = &mut self.net.nats[n.0 as usize];
        match nat
            .state
            .inbound(self.now, pkt.src, pkt.dst.port(), pkt.ttl > 1)
        {
            Inbound::Forward(int) => {
                pkt.ttl -= 1;
                pkt.hops += 1;
                tr!(
                    self,
                    "nat",
                    pkt,
                    "NAT {} dst -> {int}",
                    self.net.nat_name(n)
                );
                pkt.dst = int;
                self.route(Realm::Behind(n), Attach::Lan(n), pkt);
            }
            other => self.nat_reject(n, &pkt, other),
        }
    }

    fn nat_reject(&mut self, n: NatId, pkt: &Packet, verdict: Inbound) {
        match verdict {
            Inbound::Forward(_) => unreachable!("forwarded packets are not rejected"),
            Inbound::TtlExpired => self.ttl_at_nat(n, pkt),
            Inbound::Local { created } => {
                self.stats.nat_local += 1;
                let note = if created {
                    ", conntrack entry created"
                } else {
                    ""
                };
                tr!(
                    self,
                    "local",
                    pkt,
                    "to NAT {}'s own stack{note}",
                    self.net.nat_name(n)
                );
            }
            Inbound::Drop(why) => {
                self.stats.dropped += 1;
                self.stats.nat_drops += 1;
                tr!(self, "drop", pkt, "NAT {}: {why}", self.net.nat_name(n));
            }
        }
    }
}

fn tr_drop_link(w: &mut World, pkt: &Packet, why: crate::link::LinkDrop, stop: Stop, which: &str) {
    w.stats.dropped += 1;
    tr!(
        w,
        "drop",
        pkt,
        "{why} on {which} towards {}",
        StopName(&w.net, stop)
    );
}
