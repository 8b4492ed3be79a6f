//! What `burrow netcheck` found, and what it means for direct paths, in plain words.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// How the NAT picks our public address toward different destinations (RFC 4787 section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// The same public address toward both of the server's addresses ("cone"): a peer can
    /// reach the address the server saw, so hole punching works from this side.
    EndpointIndependent,
    /// A different public address per destination ("symmetric"): the address the server saw
    /// is not the one a peer would see.
    VariesByDestination {
        /// Our public address toward the server's main address.
        toward_main: SocketAddr,
        /// Our public address toward its second address.
        toward_other: SocketAddr,
    },
}

/// Which unsolicited packets the NAT lets in (RFC 4787 section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filtering {
    /// A packet from an IP address we never sent to reached us: anyone who knows our public
    /// address can reach us ("full cone").
    Open,
    /// A packet from another port of an address we had sent to reached us (the server's two
    /// addresses share one IP, so a new IP address could not be tried).
    OtherPortsAllowed,
    /// A packet from an address or port we never sent to was dropped: a peer gets in only
    /// after we sent to it, which is what hole punching does.
    Closed,
}

/// Which port-mapping protocols the gateway answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortMapping {
    /// The gateway asked (`None`: no default route was found, nothing asked).
    pub gateway: Option<IpAddr>,
    /// It answered NAT-PMP (RFC 6886).
    pub nat_pmp: bool,
    /// It answered PCP (RFC 6887).
    pub pcp: bool,
    /// A device answered an SSDP search as an Internet gateway (UPnP-IGD).
    pub upnp: Option<IpAddr>,
}

impl PortMapping {
    /// Whether any protocol answered.
    pub fn any(&self) -> bool {
        self.nat_pmp || self.pcp || self.upnp.is_some()
    }
}

/// Everything a netcheck learned. Fields are `None` when their test could not run (the
/// line of [`Report`]'s display says why).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The server's main STUN address, asked first.
    pub server: Option<SocketAddr>,
    /// Our public IPv4 address as the server saw it (`None`: no answer over UDP).
    pub public_v4: Option<SocketAddr>,
    /// Our local address on the test socket, when the runtime knew it.
    pub local: Option<SocketAddr>,
    /// The IPv6 test: `None` not tried (no IPv6 server address or socket), `Some(None)` no
    /// answer, `Some(Some(addr))` our IPv6 address as the server saw it.
    pub public_v6: Option<Option<SocketAddr>>,
    /// The server's second STUN address (RFC 5780 OTHER-ADDRESS), if it has one.
    pub server_other: Option<SocketAddr>,
    /// Mapping behaviour (needs the second address).
    pub mapping: Option<Mapping>,
    /// Filtering behaviour (needs the second address).
    pub filtering: Option<Filtering>,
    /// Whether a packet to our own public address came back to us (hairpinning).
    pub hairpin: Option<bool>,
    /// With an endpoint-independent mapping and closed filtering: whether the dropped
    /// unsolicited packet of the filtering test moved that socket's next mapping toward its
    /// sender (a NAT that keeps state for what it drops, as a Linux box that accepts packets
    /// to itself does). Then a peer whose first packet arrives before ours finds us on
    /// another port, and the pair may relay.
    pub unsolicited_moves_mapping: Option<bool>,
    /// The gateway's port-mapping protocols.
    pub port_mapping: PortMapping,
}

impl Report {
    /// Whether there is no NAT between this host and the server: it saw our local IP address.
    pub fn no_nat(&self) -> bool {
        matches!((self.local, self.public_v4), (Some(l), Some(p)) if l.ip() == p.ip())
    }

    /// Short machine-readable names of the two behaviours, as `--json` prints them.
    pub fn mapping_name(&self) -> &'static str {
        match self.mapping {
            None => "unknown",
            Some(Mapping::EndpointIndependent) => "endpoint-independent",
            Some(Mapping::VariesByDestination { .. }) => "varies-by-destination",
        }
    }

    /// See [`Self::mapping_name`].
    pub fn filtering_name(&self) -> &'static str {
        match self.filtering {
            None => "unknown",
            Some(Filtering::Open) => "open",
            Some(Filtering::OtherPortsAllowed) => "other-ports-allowed",
            Some(Filtering::Closed) => "closed",
        }
    }

    /// What the findings mean for direct paths, in one or two sentences.
    pub fn verdict(&self) -> String {
        if self.public_v4.is_none() && !matches!(self.public_v6, Some(Some(_))) {
            return "no UDP answer from the server: check that its UDP port is reachable; \
                    without UDP every connection fails"
                .into();
        }
        let mapping_tip = if self.port_mapping.any() {
            " The router offers port mapping, which can give a fixed public port."
        } else {
            ""
        };
        if self.no_nat() {
            return match self.filtering {
                Some(Filtering::Closed) => "no NAT, but a firewall drops packets from new \
                    senders: peers reach this host directly once it has sent to them, which \
                    hole punching does"
                    .into(),
                None => "no NAT: peers reach this host directly unless a firewall drops \
                         them (the server has no second STUN address, so filtering was not \
                         tested; start it with --netcheck-udp)"
                    .into(),
                _ => "no NAT: peers reach this host directly".into(),
            };
        }
        match (self.mapping, self.filtering) {
            (Some(Mapping::EndpointIndependent), Some(Filtering::Open)) => {
                "easy NAT: the public address is the same for every peer and lets anyone in; \
                 direct paths with every peer"
                    .into()
            }
            (Some(Mapping::EndpointIndependent), _)
                if self.unsolicited_moves_mapping == Some(true) =>
            {
                format!(
                    "cone NAT that moves a mapping after an unsolicited packet: hole punching \
                     works when this side's probes leave first, and may fall back to the relay \
                     when the peer's arrive first.{mapping_tip}"
                )
            }
            (Some(Mapping::EndpointIndependent), _) => format!(
                "cone NAT: the public address is the same for every peer, so hole punching \
                 gives direct paths with peers behind most NATs; two hosts both behind \
                 symmetric NATs would still relay.{mapping_tip}"
            ),
            (Some(Mapping::VariesByDestination { .. }), Some(Filtering::Open)) => format!(
                "symmetric NAT that lets anyone in: peers with a cone NAT or none reach this \
                 host directly; a peer behind another symmetric NAT relays.{mapping_tip}"
            ),
            (Some(Mapping::VariesByDestination { .. }), _) => format!(
                "symmetric NAT: each peer sees another public port, so direct paths only \
                 with peers that have no NAT or a cone NAT; with a symmetric peer, traffic \
                 goes through the relay.{mapping_tip}"
            ),
            (None, _) => format!(
                "the server has no second STUN address (start it with --netcheck-udp), so \
                 mapping and filtering were not tested.{mapping_tip}"
            ),
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = self
            .server
            .map_or_else(|| "the server".to_string(), |s| s.to_string());
        match self.public_v4 {
            Some(addr) => writeln!(f, "UDP:          yes, seen by {server} as {addr}")?,
            None => writeln!(f, "UDP:          no answer from {server}")?,
        }
        match self.public_v6 {
            None => writeln!(
                f,
                "IPv6:         not tried (no IPv6 address for the server)"
            )?,
            Some(None) => writeln!(f, "IPv6:         no answer")?,
            Some(Some(addr)) => writeln!(f, "IPv6:         yes, seen as {addr}")?,
        }
        match (self.local, self.public_v4) {
            (Some(_), Some(_)) if self.no_nat() => {
                writeln!(f, "NAT:          none (the server sees our local address)")?
            }
            (Some(local), Some(public)) => writeln!(
                f,
                "NAT:          yes, local address {} is public {}",
                local.ip(),
                public.ip()
            )?,
            _ => {}
        }
        let other = self
            .server_other
            .map_or_else(String::new, |o| o.to_string());
        match self.mapping {
            None => writeln!(
                f,
                "Mapping:      not tested (the server has no second address)"
            )?,
            Some(Mapping::EndpointIndependent) => writeln!(
                f,
                "Mapping:      endpoint-independent: one public address toward {server} and {other}"
            )?,
            Some(Mapping::VariesByDestination {
                toward_main,
                toward_other,
            }) => writeln!(
                f,
                "Mapping:      varies by destination: {toward_main} toward {server}, \
                 {toward_other} toward {other}"
            )?,
        }
        match self.filtering {
            None => writeln!(f, "Filtering:    not tested")?,
            Some(Filtering::Open) => writeln!(
                f,
                "Filtering:    open: a packet from an address we never sent to got in"
            )?,
            Some(Filtering::OtherPortsAllowed) => writeln!(
                f,
                "Filtering:    other ports of an address we sent to get in (a new address was not tried)"
            )?,
            Some(Filtering::Closed) => writeln!(
                f,
                "Filtering:    closed: a packet from {server} to the port we used toward {other} was dropped"
            )?,
        }
        if self.unsolicited_moves_mapping == Some(true) {
            writeln!(
                f,
                "              and that dropped packet moved the port our next packet to {server} left from"
            )?;
        }
        match self.hairpin {
            _ if self.no_nat() => writeln!(f, "Hairpinning:  not needed (no NAT)")?,
            None => writeln!(f, "Hairpinning:  not tested")?,
            Some(h) => writeln!(
                f,
                "Hairpinning:  {}",
                if h {
                    "yes (hosts behind this NAT reach each other at their public addresses)"
                } else {
                    "no (two hosts behind this NAT meet on their local addresses)"
                }
            )?,
        }
        let pm = &self.port_mapping;
        match pm.gateway {
            None => writeln!(
                f,
                "Port mapping: not tried (no IPv4 default gateway, or not asked)"
            )?,
            Some(gw) => writeln!(
                f,
                "Port mapping: gateway {gw}: UPnP-IGD {}, NAT-PMP {}, PCP {}",
                pm.upnp
                    .map_or_else(|| "no".to_string(), |d| format!("yes ({d})")),
                yes_no(pm.nat_pmp),
                yes_no(pm.pcp)
            )?,
        }
        write!(f, "Direct paths: {}", self.verdict())
    }
}
