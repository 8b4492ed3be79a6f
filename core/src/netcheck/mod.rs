//! `burrow netcheck`: what the NAT in front of this host does, measured against a rendezvous
//! server with two STUN addresses (RFC 5780 style), and the gateway's port-mapping protocols.
//!
//! A sans-IO machine like the rest of core. The runtime binds up to three UDP sockets and
//! feeds what they receive to [`Netcheck::handle_input`], sends what
//! [`Netcheck::poll_transmit`] returns from the socket it names, and calls
//! [`Netcheck::handle_timeout`] at [`Netcheck::poll_timeout`]. When `poll_timeout` returns
//! `None` the [`Report`] is complete. The tests, in order:
//!
//! 1. [`Socket::Discover`] asks the server's main address for our public address; its answer
//!    names the server's second address (OTHER-ADDRESS). At the same time the same socket asks
//!    the IPv4 gateway for NAT-PMP and PCP and searches for a UPnP gateway, and
//!    [`Socket::V6`] asks the server's IPv6 address, if there is one.
//! 2. [`Socket::Test`] asks both of the server's addresses: the same public address toward
//!    each means endpoint-independent mapping. Then it sends a request to its own public
//!    address: if that comes back, the NAT hairpins.
//! 3. At the same time [`Socket::Filter`] asks the second address with CHANGE-REQUEST, which
//!    the server answers from its main address. That answer gets in only if the NAT lets in a
//!    packet from an address this socket never sent to: the filtering. The filtering test
//!    has a socket of its own because its answer, when the NAT drops it, can leave state
//!    behind: a Linux NAT box that accepts unsolicited packets to itself keeps a conntrack
//!    entry for it, and the socket's next flow to that sender gets another public port. So
//!    once the answer came or timed out, the filter socket asks the main address plainly too:
//!    if the mapping is otherwise endpoint-independent and this one moved, the report says
//!    so ([`Report::unsolicited_moves_mapping`]), which is why such a pair can relay.
//!
//! Every request is retransmitted every [`RETRANSMIT`] up to [`ATTEMPTS`] times, so a check
//! takes at most about 4 x [`GIVE_UP`] against a server that never answers.

mod portmap;
mod report;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use crate::stun::{AnswerFrom, answer_alternate};
pub use report::{Filtering, Mapping, PortMapping, Report};

use crate::rng::SeededRng;
use crate::wire::stun::{StunMessage, TransactionId};

/// Time between retransmissions of one request.
pub const RETRANSMIT: Duration = Duration::from_millis(400);
/// Requests sent per test.
pub const ATTEMPTS: u32 = 5;
/// How long a test waits for its answer after its first request.
pub const GIVE_UP: Duration = Duration::from_millis(2_400);

/// One of the runtime's sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Socket {
    /// IPv4: learns the server's second address and asks the gateway.
    Discover,
    /// IPv4, fresh: mapping and hairpinning are measured on it.
    Test,
    /// IPv4, fresh: filtering is measured on it.
    Filter,
    /// IPv6, when the server has an IPv6 address.
    V6,
}

/// What the runtime tells the machine at the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetcheckConfig {
    /// The server's main STUN address (its burrow UDP address), IPv4.
    pub server: SocketAddr,
    /// Its IPv6 address, if it has one and the host has an IPv6 socket.
    pub server_v6: Option<SocketAddr>,
    /// The IPv4 default gateway, asked for NAT-PMP and PCP (`None`: not asked).
    pub gateway: Option<IpAddr>,
    /// This host's address on the test socket (the source IP toward the server and the
    /// socket's port), to tell "no NAT" apart; `None` if unknown.
    pub test_local: Option<SocketAddr>,
    /// Search for a UPnP gateway with SSDP multicast.
    pub upnp: bool,
}

/// One datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetcheckTransmit {
    /// The socket to send it from.
    pub socket: Socket,
    /// Where to.
    pub dst: SocketAddr,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// What a test is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// Discover socket to the main address.
    Discover,
    /// V6 socket to the server's IPv6 address.
    V6,
    /// Test socket to the second address, plain.
    TowardOther,
    /// Filter socket to the second address with CHANGE-REQUEST: answered from the main one.
    Filtering,
    /// Filter socket to the second address, plain.
    FilterTowardOther,
    /// Filter socket to the main address, after the filtering test.
    FilterTowardMain,
    /// Test socket to the main address.
    TowardMain,
    /// Test socket to its own public address: we answer nothing, we only watch for it.
    Hairpin,
    /// Discover socket to the gateway or the SSDP group.
    PortMapping,
}

struct Test {
    purpose: Purpose,
    socket: Socket,
    dst: SocketAddr,
    transaction: TransactionId,
    payload: Vec<u8>,
    sent: u32,
    next_send: Instant,
    give_up: Instant,
    done: bool,
}

/// The netcheck state machine (see the module documentation).
pub struct Netcheck {
    config: NetcheckConfig,
    rng: SeededRng,
    tests: Vec<Test>,
    out: VecDeque<NetcheckTransmit>,
    report: Report,
    toward_main: Option<SocketAddr>,
    toward_other: Option<SocketAddr>,
    /// The filter socket's public addresses toward the second and the main address.
    filter_toward_other: Option<SocketAddr>,
    filter_toward_main: Option<SocketAddr>,
}

impl Netcheck {
    /// Starts a check at `now`; the first requests are due at once.
    pub fn new(config: NetcheckConfig, now: Instant, seed: [u8; 32]) -> Self {
        let mut check = Self {
            report: Report {
                server: Some(config.server),
                local: config.test_local,
                port_mapping: PortMapping {
                    gateway: config.gateway,
                    ..PortMapping::default()
                },
                ..Report::default()
            },
            config,
            rng: SeededRng::new(seed),
            tests: Vec::new(),
            out: VecDeque::new(),
            toward_main: None,
            toward_other: None,
            filter_toward_other: None,
            filter_toward_main: None,
        };
        let server = check.config.server;
        check.stun(now, Purpose::Discover, Socket::Discover, server, false);
        if let Some(v6) = check.config.server_v6 {
            check.report.public_v6 = Some(None);
            check.stun(now, Purpose::V6, Socket::V6, v6, false);
        }
        if let Some(IpAddr::V4(gw)) = check.config.gateway {
            let at = SocketAddr::new(gw.into(), portmap::PORT_MAPPING_PORT);
            let client = match check.config.test_local {
                Some(SocketAddr::V4(l)) => *l.ip(),
                _ => std::net::Ipv4Addr::UNSPECIFIED,
            };
            check.raw(now, Socket::Discover, at, portmap::nat_pmp_request());
            check.raw(now, Socket::Discover, at, portmap::pcp_announce(client));
        }
        if check.config.upnp {
            check.raw(now, Socket::Discover, portmap::SSDP, portmap::ssdp_search());
        }
        check.handle_timeout(now);
        check
    }

    fn stun(
        &mut self,
        now: Instant,
        purpose: Purpose,
        socket: Socket,
        dst: SocketAddr,
        change: bool,
    ) {
        let transaction: TransactionId = self.rng.bytes();
        let payload = StunMessage::BindingRequest {
            transaction,
            change,
        }
        .encode();
        self.push(now, purpose, socket, dst, transaction, payload);
    }

    fn raw(&mut self, now: Instant, socket: Socket, dst: SocketAddr, payload: Vec<u8>) {
        self.push(now, Purpose::PortMapping, socket, dst, [0; 12], payload);
    }

    fn push(
        &mut self,
        now: Instant,
        purpose: Purpose,
        socket: Socket,
        dst: SocketAddr,
        transaction: TransactionId,
        payload: Vec<u8>,
    ) {
        self.tests.push(Test {
            purpose,
            socket,
            dst,
            transaction,
            payload,
            sent: 0,
            next_send: now,
            give_up: now + GIVE_UP,
            done: false,
        });
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<NetcheckTransmit> {
        self.out.pop_front()
    }

    /// When [`Self::handle_timeout`] is due next; `None` when the check is over and
    /// [`Self::report`] is final.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tests
            .iter()
            .filter(|t| !t.done)
            .map(|t| {
                if t.sent < ATTEMPTS {
                    t.next_send.min(t.give_up)
                } else {
                    t.give_up
                }
            })
            .min()
    }

    /// Whether the check is over.
    pub fn is_done(&self) -> bool {
        self.poll_timeout().is_none() && self.out.is_empty()
    }

    /// What was found so far (final once [`Self::is_done`]).
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Sends what is due and ends the tests that waited long enough.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut ended = Vec::new();
        for (i, test) in self.tests.iter_mut().enumerate() {
            if test.done {
                continue;
            }
            if now >= test.give_up {
                test.done = true;
                ended.push(i);
                continue;
            }
            if test.sent < ATTEMPTS && now >= test.next_send {
                test.sent += 1;
                test.next_send = now + RETRANSMIT;
                self.out.push_back(NetcheckTransmit {
                    socket: test.socket,
                    dst: test.dst,
                    payload: test.payload.clone(),
                });
            }
        }
        for i in ended {
            self.on_ended(now, i, None);
        }
    }

    /// A datagram that arrived on `socket` from `from`.
    pub fn handle_input(&mut self, now: Instant, socket: Socket, from: SocketAddr, bytes: &[u8]) {
        if let Some(answer) = portmap::classify(from, bytes) {
            if socket == Socket::Discover {
                let pm = &mut self.report.port_mapping;
                match answer {
                    portmap::Answer::NatPmp => pm.nat_pmp = true,
                    portmap::Answer::Pcp => pm.pcp = true,
                    portmap::Answer::Upnp => pm.upnp = pm.upnp.or(Some(from.ip())),
                }
                self.settle_port_mapping();
            }
            return;
        }
        let Ok(message) = StunMessage::parse(bytes) else {
            return;
        };
        let (transaction, mapped, other) = match message {
            StunMessage::BindingSuccess {
                transaction,
                mapped,
                other,
            } => (transaction, mapped, other),
            StunMessage::BindingRequest { transaction, .. } => {
                // Our hairpin request, come back to us through the NAT.
                (transaction, None, None)
            }
        };
        let Some(i) = self
            .tests
            .iter()
            .position(|t| !t.done && t.socket == socket && t.transaction == transaction)
        else {
            return;
        };
        let test = &self.tests[i];
        let expected = match test.purpose {
            // The change request is answered from the main address, never the one asked.
            Purpose::Filtering => from != test.dst && mapped.is_some(),
            Purpose::Hairpin => matches!(message, StunMessage::BindingRequest { .. }),
            _ => from == test.dst && mapped.is_some(),
        };
        if !expected {
            return;
        }
        self.tests[i].done = true;
        self.on_ended(now, i, Some((from, mapped, other)));
    }

    /// Port-mapping probes end once every protocol asked has answered.
    fn settle_port_mapping(&mut self) {
        let pm = self.report.port_mapping;
        let gateway_done = self.config.gateway.is_none() || (pm.nat_pmp && pm.pcp);
        let upnp_done = !self.config.upnp || pm.upnp.is_some();
        if gateway_done && upnp_done {
            for t in &mut self.tests {
                if t.purpose == Purpose::PortMapping {
                    t.done = true;
                }
            }
        }
    }

    /// Test `i` ended with `answer` (`None`: it gave up): record it and start what follows.
    fn on_ended(
        &mut self,
        now: Instant,
        i: usize,
        answer: Option<(SocketAddr, Option<SocketAddr>, Option<SocketAddr>)>,
    ) {
        let purpose = self.tests[i].purpose;
        let mapped = answer.and_then(|(_, m, _)| m);
        match purpose {
            Purpose::Discover => {
                self.report.public_v4 = mapped;
                let server = self.config.server;
                // A server bound to every address names its second socket as 0.0.0.0:PORT:
                // that port at the address we asked.
                let other = answer.and_then(|(_, _, o)| o).map(|o| {
                    if o.ip().is_unspecified() {
                        SocketAddr::new(server.ip(), o.port())
                    } else {
                        o
                    }
                });
                // An OTHER-ADDRESS that is the main address itself, or of another family,
                // would make every comparison below meaningless.
                let other = other.filter(|o| {
                    *o != self.config.server && o.is_ipv4() == self.config.server.is_ipv4()
                });
                self.report.server_other = other;
                if let Some(other) = other {
                    self.stun(now, Purpose::TowardMain, Socket::Test, server, false);
                    self.stun(now, Purpose::TowardOther, Socket::Test, other, false);
                    self.stun(now, Purpose::Filtering, Socket::Filter, other, true);
                    self.stun(
                        now,
                        Purpose::FilterTowardOther,
                        Socket::Filter,
                        other,
                        false,
                    );
                }
            }
            Purpose::V6 => self.report.public_v6 = Some(mapped),
            Purpose::TowardOther => self.toward_other = mapped,
            Purpose::Filtering => {
                let other = self.report.server_other.expect("asked the second address");
                self.report.filtering = Some(match answer {
                    None => Filtering::Closed,
                    Some((from, ..)) if from.ip() != other.ip() => Filtering::Open,
                    Some(_) => Filtering::OtherPortsAllowed,
                });
                let server = self.config.server;
                self.stun(
                    now,
                    Purpose::FilterTowardMain,
                    Socket::Filter,
                    server,
                    false,
                );
            }
            Purpose::FilterTowardOther => self.filter_toward_other = mapped,
            Purpose::FilterTowardMain => self.filter_toward_main = mapped,
            Purpose::TowardMain => {
                self.toward_main = mapped;
                if let Some(public) = mapped {
                    // Sent to ourselves: a request we watch for, never answer.
                    self.stun(now, Purpose::Hairpin, Socket::Test, public, false);
                }
            }
            Purpose::Hairpin => self.report.hairpin = Some(answer.is_some()),
            Purpose::PortMapping => {}
        }
        if let (Some(main), Some(other)) = (self.toward_main, self.toward_other) {
            self.report.mapping = Some(if main == other {
                Mapping::EndpointIndependent
            } else {
                Mapping::VariesByDestination {
                    toward_main: main,
                    toward_other: other,
                }
            });
        }
        if let (
            Some(Mapping::EndpointIndependent),
            Some(Filtering::Closed),
            Some(main),
            Some(other),
        ) = (
            self.report.mapping,
            self.report.filtering,
            self.filter_toward_main,
            self.filter_toward_other,
        ) {
            self.report.unsolicited_moves_mapping = Some(main != other);
        }
        self.handle_timeout(now);
    }
}
