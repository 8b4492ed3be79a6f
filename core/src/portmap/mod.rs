//! Asking the home router for a port: PCP's MAP (RFC 6887), falling back to NAT-PMP
//! (RFC 6886), for the daemon's UDP port.
//!
//! A router that speaks PCP or NAT-PMP (miniupnpd does both) forwards an external UDP port to
//! our socket for a lifetime we ask for. The daemon announces that address as one more
//! candidate, so a peer behind a symmetric NAT (which cannot be reached by punching) reaches
//! us there, and the pair goes direct where it would have relayed. The mapping is renewed at
//! half its lifetime and removed when the daemon stops (a request with lifetime 0).
//!
//! PCP is asked first when we know our own address on the way to the router (its request
//! carries it): one MAP request, retransmitted after 250 ms, doubling, [`PCP_ATTEMPTS`]
//! times. A router that answers in NAT-PMP's format ("unsupported version", as NAT-PMP-only
//! routers do) or not at all is then asked with NAT-PMP: the external address (opcode 0) and
//! the UDP mapping (opcode 1) together, [`ATTEMPTS`] times (RFC 6886 section 3.1 goes on for
//! 64 s; a daemon that got no answer in about 10 s has no such router and stops asking until
//! it restarts). Renewals and the deletion use the protocol that mapped, and PCP's the same
//! nonce.

mod natpmp;
mod pcp;
#[cfg(test)]
mod tests;
pub mod upnp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The port PCP and NAT-PMP servers listen on.
pub(crate) const SERVER_PORT: u16 = 5351;
/// Lifetime asked for, in seconds (RFC 6886 recommends 7200).
pub(crate) const LIFETIME: u32 = 7200;
/// NAT-PMP requests sent before giving up.
pub(crate) const ATTEMPTS: u32 = 5;
/// PCP requests sent before falling back to NAT-PMP.
pub(crate) const PCP_ATTEMPTS: u32 = 3;
const FIRST_WAIT: Duration = Duration::from_millis(250);

/// The port-mapping protocol a router answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The Port Control Protocol (RFC 6887).
    Pcp,
    /// NAT Port Mapping Protocol (RFC 6886).
    NatPmp,
    /// UPnP Internet Gateway Device (WANIPConnection's `AddPortMapping`), asked last.
    Upnp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pcp => "PCP",
            Self::NatPmp => "NAT-PMP",
            Self::Upnp => "UPnP-IGD",
        })
    }
}

/// What the mapper learned, for the endpoint to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// The router maps `external` to our port (new, or moved to another port).
    Mapped(SocketAddrV4, Protocol),
    /// No answer after every attempt, or the router refused.
    Failed(Failure),
}

/// Why there is no mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The gateway never answered: it speaks neither PCP nor NAT-PMP.
    NoAnswer,
    /// No UPnP Internet gateway answered the SSDP search either.
    NoGateway,
    /// A UPnP gateway answered, but its description or answers could not be used (no WAN
    /// connection service, malformed or oversized answers, its HTTP server unreachable).
    Unusable,
    /// It answered with this result code of this protocol (see the RFCs' lists; the message
    /// names it).
    Refused(Protocol, u16),
    /// PCP mapped an IPv6 address for our IPv4 port: nothing a peer reaching us over IPv4
    /// could use.
    NotIpv4,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoAnswer => write!(
                f,
                "no PCP/NAT-PMP answer from the gateway (or the mapping was not renewed); \
                 peers behind symmetric NATs reach this daemon through the relay"
            ),
            Self::NoGateway => write!(
                f,
                "no PCP/NAT-PMP answer from the gateway, and no UPnP-IGD gateway answered the \
                 search; peers behind symmetric NATs reach this daemon through the relay"
            ),
            Self::Unusable => write!(
                f,
                "a UPnP-IGD gateway answered, but its description or answers could not be used \
                 (no WAN connection service, malformed answers, or its HTTP server unreachable)"
            ),
            Self::Refused(protocol, code) => write!(
                f,
                "the gateway refused a port ({protocol} result {code}: {})",
                match protocol {
                    Protocol::Pcp => pcp::result_name(*code),
                    Protocol::NatPmp => natpmp::result_name(*code),
                    Protocol::Upnp => upnp::error_name(*code),
                }
            ),
            Self::NotIpv4 => write!(f, "the gateway mapped an IPv6 address for an IPv4 port"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Requests out with `protocol`, waiting for the answer(s).
    Asking {
        protocol: Protocol,
        sent: u32,
        next: Instant,
    },
    /// Mapped until `expires`; renewed from `renew`.
    Mapped { renew: Instant, expires: Instant },
    /// Given up (or removed): nothing more is sent.
    Done,
}

/// One mapping of our UDP port on the gateway.
pub(crate) struct PortMapper {
    gateway: SocketAddr,
    /// Our address toward the gateway: PCP is asked only when it is known.
    client: Option<Ipv4Addr>,
    internal_port: u16,
    /// PCP's mapping nonce.
    nonce: [u8; 12],
    state: State,
    /// NAT-PMP's two answers, as they come.
    external_ip: Option<Ipv4Addr>,
    external_port: Option<u16>,
    /// The mapping last reported and the protocol that made it, kept while it is renewed.
    current: Option<(SocketAddrV4, Protocol)>,
    /// Lifetime the router granted.
    lifetime: u32,
    /// Datagrams to send to the gateway.
    out: Vec<Vec<u8>>,
    /// UPnP-IGD is asked (by the runtime) when PCP and NAT-PMP fail.
    pub(crate) upnp: bool,
    /// The daemon stops: nothing is asked any more.
    removed: bool,
}

impl PortMapper {
    /// Starts asking `gateway` to map `internal_port`, with PCP from `client` (our address
    /// toward the gateway) when it is known, else NAT-PMP; the first request is due at once.
    /// `nonce` identifies the PCP mapping (random).
    pub(crate) fn new(
        gateway: Ipv4Addr,
        client: Option<Ipv4Addr>,
        internal_port: u16,
        nonce: [u8; 12],
        now: Instant,
    ) -> Self {
        let protocol = if client.is_some() {
            Protocol::Pcp
        } else {
            Protocol::NatPmp
        };
        Self {
            gateway: SocketAddr::new(gateway.into(), SERVER_PORT),
            client,
            internal_port,
            nonce,
            state: State::Asking {
                protocol,
                sent: 0,
                next: now,
            },
            external_ip: None,
            external_port: None,
            current: None,
            lifetime: LIFETIME,
            out: Vec::new(),
            upnp: false,
            removed: false,
        }
    }

    /// The gateway's PCP/NAT-PMP address: datagrams from it are [`Self::handle_response`]'s.
    pub(crate) fn gateway(&self) -> SocketAddr {
        self.gateway
    }

    /// The mapped external address, while there is one.
    #[cfg(test)]
    pub(crate) fn external(&self) -> Option<SocketAddrV4> {
        self.current.map(|(a, _)| a)
    }

    /// The PCP request for `lifetime` (the mapping we hold suggested, if any).
    fn pcp_request(&self, lifetime: u32) -> pcp::MapRequest {
        let suggested = self.current.map_or(
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, self.internal_port),
            |(a, _)| a,
        );
        pcp::MapRequest {
            nonce: self.nonce,
            client: self.client.unwrap_or(Ipv4Addr::UNSPECIFIED),
            internal_port: self.internal_port,
            suggested,
            lifetime,
        }
    }

    /// The requests of `protocol` for `lifetime`.
    fn requests(&self, protocol: Protocol, lifetime: u32) -> Vec<Vec<u8>> {
        match protocol {
            Protocol::Pcp => vec![self.pcp_request(lifetime).encode()],
            Protocol::NatPmp => {
                // Suggest the port we hold, else our own: a router that can keeps it.
                let suggested = self.current.map_or(self.internal_port, |(a, _)| a.port());
                vec![
                    natpmp::address_request(),
                    natpmp::map_request(self.internal_port, suggested, lifetime),
                ]
            }
            Protocol::Upnp => Vec::new(),
        }
    }

    /// Sends what is due; a [`Change::Failed`] when the last attempt went unanswered, or a
    /// mapping expired without renewal.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<Change> {
        match self.state {
            State::Asking {
                protocol: Protocol::Pcp,
                sent: PCP_ATTEMPTS,
                next,
            } if now >= next => {
                self.fall_back(now);
                self.handle_timeout(now)
            }
            State::Asking {
                protocol: Protocol::NatPmp,
                sent: ATTEMPTS,
                next,
            } if now >= next => {
                self.state = State::Done;
                self.current = None;
                Some(Change::Failed(Failure::NoAnswer))
            }
            State::Asking {
                protocol,
                sent,
                next,
            } if now >= next => {
                let requests = self.requests(protocol, LIFETIME);
                self.out.extend(requests);
                self.state = State::Asking {
                    protocol,
                    sent: sent + 1,
                    next: now + FIRST_WAIT * (1 << sent),
                };
                None
            }
            State::Mapped { expires, .. } if now >= expires => {
                self.state = State::Done;
                self.current = None;
                Some(Change::Failed(Failure::NoAnswer))
            }
            State::Mapped { renew, .. } if now >= renew => {
                // Renewal: the same requests with the protocol that mapped; the answer moves
                // `renew` on.
                let protocol = self.current.map_or(Protocol::NatPmp, |(_, p)| p);
                self.external_ip = None;
                self.external_port = None;
                self.state = State::Asking {
                    protocol,
                    sent: 0,
                    next: now,
                };
                self.handle_timeout(now)
            }
            _ => None,
        }
    }

    /// PCP went unanswered or the router speaks only NAT-PMP: ask with NAT-PMP, at once.
    fn fall_back(&mut self, now: Instant) {
        self.state = State::Asking {
            protocol: Protocol::NatPmp,
            sent: 0,
            next: now,
        };
    }

    /// When [`Self::handle_timeout`] is due next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Asking { next, .. } => Some(next),
            State::Mapped { renew, .. } => Some(renew),
            State::Done => None,
        }
    }

    /// What the UPnP-IGD driver does: ask once PCP and NAT-PMP failed (or a mapping of
    /// theirs lapsed), wait while they are asked or map, nothing when UPnP is off or the
    /// daemon stops.
    pub(crate) fn turn(&self) -> upnp::Turn {
        if !self.upnp || self.removed {
            upnp::Turn::Off
        } else if self.state == State::Done && self.current.is_none() {
            upnp::Turn::Ask
        } else {
            upnp::Turn::Wait
        }
    }

    /// The next datagram for the gateway.
    pub(crate) fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        (!self.out.is_empty()).then(|| (self.gateway, self.out.remove(0)))
    }

    /// A datagram from the gateway's PCP/NAT-PMP port. Malformed, unexpected and stale
    /// answers (another nonce or port) change nothing.
    pub(crate) fn handle_response(&mut self, now: Instant, bytes: &[u8]) -> Option<Change> {
        let State::Asking { protocol, .. } = self.state else {
            return None;
        };
        match protocol {
            Protocol::Pcp => self.on_pcp(now, bytes),
            Protocol::NatPmp => self.on_nat_pmp(now, bytes),
            Protocol::Upnp => None,
        }
    }

    fn on_pcp(&mut self, now: Instant, bytes: &[u8]) -> Option<Change> {
        if let Some(natpmp::Answer::Refused(1)) = natpmp::decode(bytes) {
            // A NAT-PMP server's "unsupported version" to our version-2 request.
            self.fall_back(now);
            return self.handle_timeout(now);
        }
        let resp = pcp::decode(bytes)?;
        if !resp.answers(&self.pcp_request(LIFETIME)) {
            return None;
        }
        match resp.result {
            0 => {}
            // A PCP server of another version: NAT-PMP may still work.
            1 => {
                self.fall_back(now);
                return self.handle_timeout(now);
            }
            code => return Some(self.refused(Protocol::Pcp, code.into())),
        }
        let IpAddr::V4(ip) = resp.external_ip else {
            self.state = State::Done;
            self.current = None;
            return Some(Change::Failed(Failure::NotIpv4));
        };
        self.mapped(
            now,
            SocketAddrV4::new(ip, resp.external_port),
            resp.lifetime,
            Protocol::Pcp,
        )
    }

    fn on_nat_pmp(&mut self, now: Instant, bytes: &[u8]) -> Option<Change> {
        match natpmp::decode(bytes)? {
            natpmp::Answer::Address(ip) => self.external_ip = Some(ip),
            natpmp::Answer::Mapping {
                internal,
                external,
                lifetime,
            } => {
                if internal != self.internal_port {
                    return None;
                }
                self.external_port = Some(external);
                self.lifetime = lifetime;
            }
            natpmp::Answer::Refused(code) => return Some(self.refused(Protocol::NatPmp, code)),
        }
        let (Some(ip), Some(port)) = (self.external_ip, self.external_port) else {
            return None;
        };
        self.mapped(
            now,
            SocketAddrV4::new(ip, port),
            self.lifetime,
            Protocol::NatPmp,
        )
    }

    fn refused(&mut self, protocol: Protocol, code: u16) -> Change {
        self.state = State::Done;
        self.current = None;
        Change::Failed(Failure::Refused(protocol, code))
    }

    /// The router maps `external` for `granted` seconds.
    fn mapped(
        &mut self,
        now: Instant,
        external: SocketAddrV4,
        granted: u32,
        protocol: Protocol,
    ) -> Option<Change> {
        // At least a minute, whatever the router says, so a zero cannot spin us.
        let lifetime = Duration::from_secs(granted.max(60).into());
        let previous = self.current.replace((external, protocol));
        self.state = State::Mapped {
            renew: now + lifetime / 2,
            expires: now + lifetime,
        };
        (previous.map(|(a, _)| a) != Some(external)).then_some(Change::Mapped(external, protocol))
    }

    /// Removes the mapping (the daemon stops): one request with lifetime 0 in the protocol
    /// that mapped, then nothing.
    pub(crate) fn remove(&mut self) {
        let held = self.current.map(|(_, p)| p).or_else(|| {
            // NAT-PMP's mapping answer came but not the address: the port is mapped.
            self.external_port.map(|_| Protocol::NatPmp)
        });
        match held {
            Some(Protocol::Pcp) => self.out.push(self.pcp_request(0).encode()),
            // RFC 6886 section 3.4: the suggested port is 0 in a deletion.
            Some(Protocol::NatPmp) => self.out.push(natpmp::map_request(self.internal_port, 0, 0)),
            Some(Protocol::Upnp) | None => {}
        }
        self.state = State::Done;
        self.removed = true;
    }
}
