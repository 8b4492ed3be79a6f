//! The network's shape: sites (LANs) of hosts, NAT boxes (possibly nested), uplinks with hop
//! counts and link impairments, and the internet core that joins them.
//!
//! Addresses are scoped by *realm*: the internet, or the inside of one NAT box. Two homes may
//! both use `192.168.1.2`. A site lives in one realm; a NAT box's external address lives in the
//! realm above it (the internet, or the inside of a carrier-grade NAT).
//!
//! A path between two attachments of one realm crosses the routers of the sender's uplink and then
//! those of the receiver's uplink (or a count set with [`Network::set_hops_between`]); every
//! router decrements the TTL, and so does every NAT box a packet crosses. Hosts of one site reach
//! each other directly over the site's LAN link, with no routers.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::link::{Link, LinkConfig};
use crate::nat::{NatBox, NatConfig};

/// A site (one LAN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteId(pub(crate) u32);

/// A host on a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(pub(crate) u32);

/// A NAT box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatId(pub(crate) u32);

/// Something attached to a realm through an uplink: a site, or a NAT box's external side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attachment {
    /// A site.
    Site(SiteId),
    /// The external side of a NAT box.
    Nat(NatId),
}

/// How an attachment reaches the rest of its realm: routers and the link in each direction.
#[derive(Clone, Debug, PartialEq)]
pub struct Uplink {
    /// Routers between the attachment and the realm's core (each decrements the TTL).
    pub hops: u8,
    /// Link impairments towards the core.
    pub up: LinkConfig,
    /// Link impairments from the core.
    pub down: LinkConfig,
}

impl Uplink {
    /// An uplink with `hops` routers and the same link both ways.
    pub fn new(hops: u8, link: LinkConfig) -> Self {
        Self {
            hops,
            up: link.clone(),
            down: link,
        }
    }

    /// An uplink with different links up and down.
    pub fn asymmetric(hops: u8, up: LinkConfig, down: LinkConfig) -> Self {
        Self { hops, up, down }
    }
}

/// An address realm: the internet or the inside of a NAT box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Realm {
    Internet,
    Behind(NatId),
}

/// Who owns an address in a realm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Host(HostId),
    Nat(NatId),
}

#[derive(Clone, Debug)]
pub(crate) struct SiteData {
    pub(crate) name: String,
    pub(crate) realm: Realm,
    pub(crate) hops: u8,
    pub(crate) up: usize,
    pub(crate) down: usize,
    pub(crate) lan: usize,
}

#[derive(Clone, Debug)]
pub(crate) struct HostData {
    pub(crate) name: String,
    pub(crate) site: SiteId,
    pub(crate) ip: IpAddr,
}

#[derive(Clone, Debug)]
pub(crate) struct NatData {
    pub(crate) name: String,
    pub(crate) realm: Realm,
    pub(crate) ip: IpAddr,
    pub(crate) hops: u8,
    pub(crate) up: usize,
    pub(crate) down: usize,
    pub(crate) state: NatBox,
}

/// The whole simulated network: topology plus the state of its links and NAT boxes.
///
/// Build it, then hand it to [`crate::Sim::new`]. Default uplinks: a site or NAT on the internet
/// gets 2 routers and 5 ms links; a NAT behind another NAT gets 1 router and 2 ms; a site behind a
/// NAT sits directly on the NAT's LAN (0 routers, 200 µs).
#[derive(Clone, Debug, Default)]
pub struct Network {
    pub(crate) sites: Vec<SiteData>,
    pub(crate) hosts: Vec<HostData>,
    pub(crate) nats: Vec<NatData>,
    pub(crate) links: Vec<Link>,
    addrs: BTreeMap<(Realm, IpAddr), Owner>,
    hops_between: BTreeMap<(Attachment, Attachment), u8>,
}

fn realm_of(behind: Option<NatId>) -> Realm {
    behind.map_or(Realm::Internet, Realm::Behind)
}

impl Network {
    /// An empty network (just the internet core).
    pub fn new() -> Self {
        Self::default()
    }

    fn add_link(&mut self, cfg: LinkConfig) -> usize {
        self.links.push(Link::new(cfg));
        self.links.len() - 1
    }

    fn claim(&mut self, realm: Realm, ip: IpAddr, owner: Owner) {
        if let Some(prev) = self.addrs.insert((realm, ip), owner) {
            panic!("address {ip} in {realm:?} is already used by {prev:?}");
        }
    }

    fn default_uplink(behind: Option<NatId>, nat: bool) -> Uplink {
        match (behind, nat) {
            (None, _) => Uplink::new(2, LinkConfig::default()),
            (Some(_), true) => Uplink::new(1, LinkConfig::new(std::time::Duration::from_millis(2))),
            (Some(_), false) => Uplink::new(0, LinkConfig::lan()),
        }
    }

    /// Adds a NAT box whose external address `external_ip` lives on the internet (`behind` is
    /// `None`) or inside another NAT (a home NAT behind a carrier-grade NAT).
    pub fn add_nat(
        &mut self,
        name: &str,
        behind: Option<NatId>,
        external_ip: impl Into<IpAddr>,
        config: NatConfig,
    ) -> NatId {
        let id = NatId(self.nats.len() as u32);
        let ip = external_ip.into();
        let realm = realm_of(behind);
        self.claim(realm, ip, Owner::Nat(id));
        let uplink = Self::default_uplink(behind, true);
        let up = self.add_link(uplink.up);
        let down = self.add_link(uplink.down);
        self.nats.push(NatData {
            name: name.to_owned(),
            realm,
            ip,
            hops: uplink.hops,
            up,
            down,
            state: NatBox::new(config),
        });
        id
    }

    /// Adds a site (LAN) on the internet (`behind` is `None`) or behind a NAT box.
    pub fn add_site(&mut self, name: &str, behind: Option<NatId>) -> SiteId {
        let id = SiteId(self.sites.len() as u32);
        let uplink = Self::default_uplink(behind, false);
        let up = self.add_link(uplink.up);
        let down = self.add_link(uplink.down);
        let lan = self.add_link(LinkConfig::lan());
        self.sites.push(SiteData {
            name: name.to_owned(),
            realm: realm_of(behind),
            hops: uplink.hops,
            up,
            down,
            lan,
        });
        id
    }

    /// Adds a host with address `ip` (scoped to the site's realm) to a site.
    pub fn add_host(&mut self, site: SiteId, name: &str, ip: impl Into<IpAddr>) -> HostId {
        let id = HostId(self.hosts.len() as u32);
        let ip = ip.into();
        let realm = self.sites[site.0 as usize].realm;
        self.claim(realm, ip, Owner::Host(id));
        self.hosts.push(HostData {
            name: name.to_owned(),
            site,
            ip,
        });
        id
    }

    /// Shortcut: a host on its own site directly on the internet.
    pub fn add_public_host(&mut self, name: &str, ip: impl Into<IpAddr>) -> HostId {
        let site = self.add_site(name, None);
        self.add_host(site, name, ip)
    }

    /// Shortcut: a NAT box on the internet (or behind `behind`) with one site behind it holding
    /// one host. Returns the NAT and the host.
    pub fn add_natted_host(
        &mut self,
        name: &str,
        behind: Option<NatId>,
        nat_ip: impl Into<IpAddr>,
        config: NatConfig,
        host_ip: impl Into<IpAddr>,
    ) -> (NatId, HostId) {
        let nat = self.add_nat(&format!("{name}-nat"), behind, nat_ip, config);
        let site = self.add_site(&format!("{name}-lan"), Some(nat));
        (nat, self.add_host(site, name, host_ip))
    }

    /// Replaces a site's uplink.
    pub fn set_site_uplink(&mut self, site: SiteId, uplink: Uplink) {
        let s = &mut self.sites[site.0 as usize];
        s.hops = uplink.hops;
        let (up, down) = (s.up, s.down);
        self.links[up] = Link::new(uplink.up);
        self.links[down] = Link::new(uplink.down);
    }

    /// Replaces the uplink of a NAT box's external side.
    pub fn set_nat_uplink(&mut self, nat: NatId, uplink: Uplink) {
        let n = &mut self.nats[nat.0 as usize];
        n.hops = uplink.hops;
        let (up, down) = (n.up, n.down);
        self.links[up] = Link::new(uplink.up);
        self.links[down] = Link::new(uplink.down);
    }

    /// Replaces a site's LAN link (between hosts of the site).
    pub fn set_site_lan(&mut self, site: SiteId, link: LinkConfig) {
        let lan = self.sites[site.0 as usize].lan;
        self.links[lan] = Link::new(link);
    }

    /// Sets the number of routers between two attachments of the same realm, replacing the sum
    /// of their uplinks' hop counts (link impairments still come from the uplinks).
    pub fn set_hops_between(&mut self, a: Attachment, b: Attachment, hops: u8) {
        assert!(
            self.attachment_realm(a) == self.attachment_realm(b),
            "{a:?} and {b:?} are in different realms"
        );
        self.hops_between.insert((a.min(b), a.max(b)), hops);
    }

    /// Replaces a NAT box's configuration and clears its state.
    pub fn set_nat_config(&mut self, nat: NatId, config: NatConfig) {
        self.nats[nat.0 as usize].state = NatBox::new(config);
    }

    fn attachment_realm(&self, a: Attachment) -> Realm {
        match a {
            Attachment::Site(s) => self.sites[s.0 as usize].realm,
            Attachment::Nat(n) => self.nats[n.0 as usize].realm,
        }
    }

    pub(crate) fn hops_override(&self, a: Attachment, b: Attachment) -> Option<u8> {
        if self.hops_between.is_empty() {
            return None;
        }
        self.hops_between.get(&(a.min(b), a.max(b))).copied()
    }

    pub(crate) fn lookup(&self, realm: Realm, ip: IpAddr) -> Option<Owner> {
        self.addrs.get(&(realm, ip)).copied()
    }

    /// A host's address (in its own realm).
    pub fn host_ip(&self, host: HostId) -> IpAddr {
        self.hosts[host.0 as usize].ip
    }

    /// `host_ip:port`.
    pub fn host_addr(&self, host: HostId, port: u16) -> SocketAddr {
        SocketAddr::new(self.host_ip(host), port)
    }

    /// A host's name.
    pub fn host_name(&self, host: HostId) -> &str {
        &self.hosts[host.0 as usize].name
    }

    /// The site a host is on.
    pub fn host_site(&self, host: HostId) -> SiteId {
        self.hosts[host.0 as usize].site
    }

    /// A NAT box's external address.
    pub fn nat_ip(&self, nat: NatId) -> IpAddr {
        self.nats[nat.0 as usize].ip
    }

    /// A NAT box's name.
    pub fn nat_name(&self, nat: NatId) -> &str {
        &self.nats[nat.0 as usize].name
    }

    /// A NAT box's state (mappings and conntrack entries).
    pub fn nat(&self, nat: NatId) -> &NatBox {
        &self.nats[nat.0 as usize].state
    }

    /// Mutable access to a NAT box's state (e.g. to [`NatBox::clear`] it).
    pub fn nat_mut(&mut self, nat: NatId) -> &mut NatBox {
        &mut self.nats[nat.0 as usize].state
    }

    /// A site's name.
    pub fn site_name(&self, site: SiteId) -> &str {
        &self.sites[site.0 as usize].name
    }

    /// The NAT a site sits behind, if any.
    pub fn site_nat(&self, site: SiteId) -> Option<NatId> {
        match self.sites[site.0 as usize].realm {
            Realm::Internet => None,
            Realm::Behind(n) => Some(n),
        }
    }

    /// Mutable access to a site's uplink config towards the core (`up`) or from it, to change
    /// impairments mid-run.
    pub fn site_link_mut(&mut self, site: SiteId, up: bool) -> &mut LinkConfig {
        let s = &self.sites[site.0 as usize];
        let idx = if up { s.up } else { s.down };
        &mut self.links[idx].cfg
    }

    /// Mutable access to a NAT box's uplink config towards the core (`up`) or from it.
    pub fn nat_link_mut(&mut self, nat: NatId, up: bool) -> &mut LinkConfig {
        let n = &self.nats[nat.0 as usize];
        let idx = if up { n.up } else { n.down };
        &mut self.links[idx].cfg
    }

    pub(crate) fn realm_name(&self, realm: Realm) -> RealmName<'_> {
        RealmName(self, realm)
    }
}

/// Displays a realm: `internet` or `inside NAT <name>`.
pub(crate) struct RealmName<'a>(&'a Network, Realm);

impl fmt::Display for RealmName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Realm::Internet => f.write_str("internet"),
            Realm::Behind(n) => write!(f, "inside NAT {}", self.0.nat_name(n)),
        }
    }
}
