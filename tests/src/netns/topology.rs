//! The real-NAT topology: two sites behind NAT routers, three plain routers between them, and
//! a public server.
//!
//! ```text
//!  host a1 ─┐                                                              ┌─ host b1
//!  (host a2)┴ br0 [nat-a] ── [r-a] ── [core] ── [r-b] ── [nat-b] br0 ──────┘
//!        (or: home-a NAT behind carrier nat-a)  │
//!                                             [srv]  192.0.2.10, 192.0.2.11
//! ```
//!
//! "Public" addresses come from the documentation ranges: NAT outside addresses from
//! 203.0.113.0/24, router links from 198.51.100.0/24, the server from 192.0.2.0/24. A
//! carrier-grade NAT's inside is 100.64.0.0/10; site LANs are 10.N.0.0/24. A site whose NAT
//! runs a port-mapping daemon ([`Site::port_mapping`]) has its outside link on
//! [`MAPPING_NET`] instead: miniupnpd refuses to map on a reserved outside address (every
//! documentation range is one), and the namespaces have no route out of the lab, so that
//! address never leaves it.

use super::Lab;

/// How a NAT box picks the outside port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// `masquerade`: keeps the source port when it can, so one inside socket keeps one outside
    /// port for every destination (endpoint-independent mapping, "cone").
    Masquerade,
    /// `masquerade fully-random`: a random outside port per flow ("symmetric").
    FullyRandom,
}

/// What a NAT box does with unsolicited packets from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Dropped in the input and forward chains unless they belong to a known flow.
    Drop,
    /// No filter: they reach the box's own stack, which answers port-unreachable and keeps a
    /// conntrack entry, so a later outbound flow to that sender must take another port (the
    /// conntrack clash).
    Accept,
}

/// One site: the NAT in front of it and how many hosts sit behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// The NAT's port mapping.
    pub mapping: Mapping,
    /// Its treatment of unsolicited inbound packets.
    pub inbound: Inbound,
    /// A home NAT (same mapping and inbound) behind a carrier-grade NAT.
    pub carrier: bool,
    /// Hosts on the LAN (1 or 2).
    pub hosts: usize,
    /// The NAT forwards what a port-mapping daemon (miniupnpd, started by the test with
    /// [`miniupnpd_config`]) maps: its outside address is on [`MAPPING_NET`], its forward
    /// filter lets in connections the daemon's DNAT rules created, and it has the empty
    /// nftables table and chains miniupnpd fills.
    pub port_mapping: bool,
}

impl Site {
    /// A cone NAT that drops unsolicited inbound packets.
    pub const CONE: Site = Site {
        mapping: Mapping::Masquerade,
        inbound: Inbound::Drop,
        carrier: false,
        hosts: 1,
        port_mapping: false,
    };
    /// A cone NAT that accepts unsolicited inbound packets to its own stack.
    pub const CONE_ACCEPT: Site = Site {
        inbound: Inbound::Accept,
        ..Site::CONE
    };
    /// A symmetric NAT (fully random ports).
    pub const SYMMETRIC: Site = Site {
        mapping: Mapping::FullyRandom,
        ..Site::CONE
    };
    /// A symmetric NAT whose router maps ports on request (NAT-PMP, PCP, UPnP-IGD).
    pub const SYMMETRIC_MAPPING: Site = Site {
        port_mapping: true,
        ..Site::SYMMETRIC
    };
    /// A cone home NAT behind a cone carrier-grade NAT.
    pub const CARRIER: Site = Site {
        carrier: true,
        ..Site::CONE
    };
    /// Two hosts behind one cone NAT without hairpinning.
    pub const SHARED: Site = Site {
        hosts: 2,
        ..Site::CONE
    };

    /// A short label for the matrix.
    pub fn label(&self) -> String {
        let mut s = String::from(match (self.mapping, self.carrier) {
            (Mapping::Masquerade, false) => "cone",
            (Mapping::FullyRandom, false) => "symmetric",
            (Mapping::Masquerade, true) => "carrier+cone",
            (Mapping::FullyRandom, true) => "carrier+symmetric",
        });
        if self.inbound == Inbound::Accept {
            s.push_str("(accept)");
        }
        if self.hosts > 1 {
            s.push_str(&format!("x{}", self.hosts));
        }
        if self.port_mapping {
            s.push_str("+miniupnpd");
        }
        s
    }
}

/// The server namespace's role name and its two addresses.
pub const SERVER: &str = "srv";
/// The server's main address.
pub const SERVER_ADDR: &str = "192.0.2.10";
/// A second server address, for mapping checks toward another destination.
pub const SERVER_ADDR2: &str = "192.0.2.11";

/// A built topology: the role names of hosts, NAT boxes and routers.
pub struct Topology {
    /// Host roles per site (`a1`, `a2`, `b1`).
    pub hosts: Vec<Vec<String>>,
    /// Host LAN addresses, parallel to `hosts`.
    pub host_addrs: Vec<Vec<String>>,
    /// The outermost NAT role per site (the one with a public address).
    pub nats: Vec<String>,
    /// The outermost NAT's public address per site.
    pub public_addrs: Vec<String>,
    /// Plain routers, in path order from site 0 to site 1 (the server hangs off `core`).
    pub routers: Vec<String>,
    /// Number of forwarding hops (NATs and routers) from a host of each site to the server.
    pub hops_to_server: Vec<u32>,
}

/// The first three octets of a port-mapping site's outside link (`11.0.113.0/24`, where the
/// other sites use `203.0.113.0/24`): outside the ranges miniupnpd 2.3 calls reserved.
pub const MAPPING_NET: &str = "11.0.113";

/// The nftables table miniupnpd puts its rules in (`upnp_table_name`, `upnp_nat_table_name`).
pub const MAPPING_TABLE: &str = "upnp";

/// The table and chains miniupnpd 2.3 expects to exist (it adds rules, never chains): its
/// filter chain jumped to from the forward hook, its DNAT chain from prerouting and its SNAT
/// chain from postrouting, in an `inet` table of their own.
fn mapping_rules() -> String {
    format!(
        "table inet {MAPPING_TABLE} {{\n  chain miniupnpd {{\n  }}\n  chain prerouting_miniupnpd {{\n  }}\n  chain postrouting_miniupnpd {{\n  }}\n  chain forward {{\n    type filter hook forward priority filter - 1; policy accept;\n    jump miniupnpd\n  }}\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    jump prerouting_miniupnpd\n  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat - 1; policy accept;\n    jump postrouting_miniupnpd\n  }}\n}}\n"
    )
}

/// miniupnpd's configuration for the NAT of a port-mapping site whose LAN is `lan_if`:
/// NAT-PMP and PCP (one switch) and UPnP-IGD on the LAN, mappings only for the LAN's hosts
/// and each host only for itself (`secure_mode`), rules in [`MAPPING_TABLE`].
pub fn miniupnpd_config(lan_if: &str, lan_net: &str) -> String {
    format!(
        "ext_ifname=wan\nlistening_ip={lan_if}\nhttp_port=0\nenable_natpmp=yes\nenable_upnp=yes\n\
         secure_mode=yes\nupnp_table_name={MAPPING_TABLE}\nupnp_nat_table_name={MAPPING_TABLE}\n\
         uuid=3e0e4b58-0f32-4b5c-9a2b-5b8d1c7a0019\n\
         allow 1024-65535 {lan_net} 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
    )
}

fn nat_rules(site: &Site) -> String {
    let (mapping, inbound) = (site.mapping, site.inbound);
    let random = match mapping {
        Mapping::Masquerade => "",
        Mapping::FullyRandom => " fully-random",
    };
    let mut rules = format!(
        "table ip nat {{\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"wan\" masquerade{random}\n  }}\n}}\n"
    );
    // A router that maps ports lets in what its mappings forward (as OpenWrt's firewall
    // does with `ct status dnat accept`).
    let forwarded = if site.port_mapping {
        "    iifname \"wan\" ct status dnat accept\n"
    } else {
        ""
    };
    if inbound == Inbound::Drop {
        rules.push_str(&format!(
            "table inet filter {{\n  chain input {{\n    type filter hook input priority filter; policy accept;\n    iifname \"wan\" ct state established,related accept\n    iifname \"wan\" counter drop\n  }}\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    iifname \"wan\" ct state established,related accept\n{forwarded}    iifname \"wan\" counter drop\n  }}\n}}\n",
        ));
    }
    if site.port_mapping {
        rules.push_str(&mapping_rules());
    }
    rules
}

impl Topology {
    /// Builds the topology for `sites` (one or two) in `lab`.
    pub fn build(lab: &mut Lab, sites: &[Site]) -> Result<Self, String> {
        assert!(!sites.is_empty() && sites.len() <= 2, "one or two sites");
        lab.add_ns("core")?;
        lab.sysctl("core", "net.ipv4.ip_forward=1")?;
        lab.add_ns(SERVER)?;
        lab.link(
            ("core", "srv", Some("192.0.2.1/24")),
            (SERVER, "eth0", Some(&format!("{SERVER_ADDR}/24"))),
        )?;
        lab.ip(
            SERVER,
            &["addr", "add", &format!("{SERVER_ADDR2}/24"), "dev", "eth0"],
        )?;
        lab.ip(SERVER, &["route", "add", "default", "via", "192.0.2.1"])?;

        let mut topo = Topology {
            hosts: Vec::new(),
            host_addrs: Vec::new(),
            nats: Vec::new(),
            public_addrs: Vec::new(),
            routers: Vec::new(),
            hops_to_server: Vec::new(),
        };
        for (i, site) in sites.iter().enumerate() {
            let n = i + 1;
            let tag = ["a", "b"][i];
            let (r, nat) = (format!("r-{tag}"), format!("nat-{tag}"));
            // Plain router between the site's NAT and the core.
            lab.add_ns(&r)?;
            lab.sysctl(&r, "net.ipv4.ip_forward=1")?;
            let base = 16 * n;
            assert!(
                !(site.carrier && site.port_mapping),
                "port mapping is on the outermost NAT of a site without a carrier NAT"
            );
            let outside = if site.port_mapping {
                MAPPING_NET
            } else {
                "203.0.113"
            };
            lab.link(
                (
                    "core",
                    &format!("r{tag}"),
                    Some(&format!("198.51.100.{}/28", base + 1)),
                ),
                (&r, "tocore", Some(&format!("198.51.100.{}/28", base + 2))),
            )?;
            lab.ip(
                "core",
                &[
                    "route",
                    "add",
                    &format!("{outside}.{base}/28"),
                    "via",
                    &format!("198.51.100.{}", base + 2),
                ],
            )?;
            lab.ip(
                &r,
                &[
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("198.51.100.{}", base + 1),
                ],
            )?;
            // The site's outer NAT.
            lab.add_ns(&nat)?;
            lab.sysctl(&nat, "net.ipv4.ip_forward=1")?;
            let public = format!("{outside}.{}", base + 2);
            lab.link(
                (&r, "tonat", Some(&format!("{outside}.{}/28", base + 1))),
                (&nat, "wan", Some(&format!("{public}/28"))),
            )?;
            lab.ip(
                &nat,
                &[
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("{outside}.{}", base + 1),
                ],
            )?;
            lab.nft(&nat, &nat_rules(site))?;
            let mut hops = 3; // nat, r, core
            // With a carrier NAT, the home NAT sits behind it on 100.64.N.0/24.
            let lan_nat = if site.carrier {
                let home = format!("home-{tag}");
                lab.add_ns(&home)?;
                lab.sysctl(&home, "net.ipv4.ip_forward=1")?;
                lab.link(
                    (&nat, "lan", Some(&format!("100.64.{n}.1/24"))),
                    (&home, "wan", Some(&format!("100.64.{n}.2/24"))),
                )?;
                lab.ip(
                    &home,
                    &["route", "add", "default", "via", &format!("100.64.{n}.1")],
                )?;
                lab.nft(&home, &nat_rules(site))?;
                hops += 1;
                home
            } else {
                nat.clone()
            };
            // The LAN: a bridge on the (inner) NAT with one veth per host.
            lab.ip(&lan_nat, &["link", "add", "br0", "type", "bridge"])?;
            lab.ip(
                &lan_nat,
                &["addr", "add", &format!("10.{n}.0.1/24"), "dev", "br0"],
            )?;
            lab.ip(&lan_nat, &["link", "set", "br0", "up"])?;
            let mut hosts = Vec::new();
            let mut addrs = Vec::new();
            for h in 1..=site.hosts {
                let host = format!("{tag}{h}");
                let addr = format!("10.{n}.0.{}", 10 + h);
                lab.add_ns(&host)?;
                lab.link(
                    (&lan_nat, &format!("lan{h}"), None),
                    (&host, "eth0", Some(&format!("{addr}/24"))),
                )?;
                lab.ip(
                    &lan_nat,
                    &["link", "set", &format!("lan{h}"), "master", "br0"],
                )?;
                lab.ip(
                    &host,
                    &["route", "add", "default", "via", &format!("10.{n}.0.1")],
                )?;
                hosts.push(host);
                addrs.push(addr);
            }
            topo.hosts.push(hosts);
            topo.host_addrs.push(addrs);
            topo.nats.push(nat);
            topo.public_addrs.push(public);
            topo.hops_to_server.push(hops);
            if i == 0 {
                topo.routers.push(r);
                topo.routers.push("core".into());
            } else {
                topo.routers.push(r);
            }
        }
        Ok(topo)
    }
}
