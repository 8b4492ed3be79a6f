//! Asking the home router for a port: a NAT-PMP client (RFC 6886) for the daemon's UDP port.
//!
//! A router that speaks NAT-PMP (or PCP, whose servers answer NAT-PMP too, RFC 6887 appendix
//! A; miniupnpd does both) forwards an external UDP port to our socket for a lifetime we ask
//! for. The daemon announces that address as one more candidate, so a peer behind a
//! symmetric NAT (which cannot be reached by punching) reaches us there, and the pair goes
//! direct where it would have relayed. The mapping is renewed at half its lifetime and
//! removed when the daemon stops (a request with lifetime 0).
//!
//! Two requests go out together: the external address (opcode 0) and the UDP mapping
//! (opcode 1). Each is retransmitted after 250 ms, doubling, [`ATTEMPTS`] times (RFC 6886
//! section 3.1 goes on for 64 s; a daemon that got no answer in about 4 s has no NAT-PMP
//! router and stops asking until it restarts).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The NAT-PMP server port on the gateway.
pub(crate) const NAT_PMP_PORT: u16 = 5351;
/// Lifetime asked for, in seconds (RFC 6886 recommends 7200).
pub(crate) const LIFETIME: u32 = 7200;
/// Requests sent before giving up.
pub(crate) const ATTEMPTS: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_millis(250);

/// What the mapper learned, for the endpoint to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// The router maps `external` to our port (new, or moved to another port).
    Mapped(SocketAddrV4),
    /// No answer after every attempt, or the router refused (its result code).
    Failed(Failure),
}

/// Why there is no mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The gateway never answered: it does not speak NAT-PMP or PCP.
    NoAnswer,
    /// It answered with this NAT-PMP result code (2 not authorised, 3 network failure, 4 out
    /// of resources, 5 unsupported opcode).
    Refused(u16),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoAnswer => write!(
                f,
                "no NAT-PMP/PCP answer from the gateway (or the mapping was not renewed); \
                 peers behind symmetric NATs reach this daemon through the relay"
            ),
            Self::Refused(code) => write!(
                f,
                "the gateway refused a port (NAT-PMP result {code}: {})",
                match code {
                    1 => "unsupported version",
                    2 => "not authorised",
                    3 => "network failure",
                    4 => "out of resources",
                    5 => "unsupported opcode",
                    _ => "unknown",
                }
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Requests out, waiting for both answers.
    Asking { sent: u32, next: Instant },
    /// Mapped until `expires`; renewed from `renew`.
    Mapped {
        external: SocketAddrV4,
        renew: Instant,
        expires: Instant,
    },
    /// Given up (or removed): nothing more is sent.
    Done,
}

/// One mapping of our UDP port on the gateway.
pub(crate) struct PortMapper {
    gateway: SocketAddr,
    internal_port: u16,
    state: State,
    external_ip: Option<Ipv4Addr>,
    external_port: Option<u16>,
    /// The mapping last reported, kept while a renewal is asked for.
    current: Option<SocketAddrV4>,
    /// Lifetime the router granted.
    lifetime: u32,
    /// Datagrams to send to the gateway.
    out: Vec<Vec<u8>>,
}

impl PortMapper {
    /// Starts asking `gateway` to map `internal_port`; the first requests are due at once.
    pub(crate) fn new(gateway: Ipv4Addr, internal_port: u16, now: Instant) -> Self {
        Self {
            gateway: SocketAddr::new(gateway.into(), NAT_PMP_PORT),
            internal_port,
            state: State::Asking { sent: 0, next: now },
            external_ip: None,
            external_port: None,
            current: None,
            lifetime: LIFETIME,
            out: Vec::new(),
        }
    }

    /// The gateway's NAT-PMP address: datagrams from it are [`Self::handle_response`]'s.
    pub(crate) fn gateway(&self) -> SocketAddr {
        self.gateway
    }

    /// The mapped external address, while there is one.
    #[cfg(test)]
    pub(crate) fn external(&self) -> Option<SocketAddrV4> {
        self.current
    }

    fn requests(&self, lifetime: u32) -> [Vec<u8>; 2] {
        let mut map = vec![0, 1, 0, 0];
        map.extend_from_slice(&self.internal_port.to_be_bytes());
        // Suggest the same external port: a router that can keeps it.
        map.extend_from_slice(&self.internal_port.to_be_bytes());
        map.extend_from_slice(&lifetime.to_be_bytes());
        [vec![0, 0], map]
    }

    /// Sends what is due; a [`Change::Failed`] when the last attempt went unanswered, or a
    /// mapping expired without renewal.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<Change> {
        match self.state {
            State::Asking { sent, next } if now >= next => {
                if sent == ATTEMPTS {
                    self.state = State::Done;
                    self.current = None;
                    return Some(Change::Failed(Failure::NoAnswer));
                }
                self.out.extend(self.requests(LIFETIME));
                self.state = State::Asking {
                    sent: sent + 1,
                    next: now + FIRST_WAIT * (1 << sent),
                };
                None
            }
            State::Mapped { expires, .. } if now >= expires => {
                self.state = State::Done;
                Some(Change::Failed(Failure::NoAnswer))
            }
            State::Mapped { renew, .. } if now >= renew => {
                // Renewal: the same requests; the answers move `renew` on.
                self.external_ip = None;
                self.external_port = None;
                self.state = State::Asking { sent: 0, next: now };
                self.handle_timeout(now)
            }
            _ => None,
        }
    }

    /// When [`Self::handle_timeout`] is due next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Asking { next, .. } => Some(next),
            State::Mapped { renew, .. } => Some(renew),
            State::Done => None,
        }
    }

    /// The next datagram for the gateway.
    pub(crate) fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        (!self.out.is_empty()).then(|| (self.gateway, self.out.remove(0)))
    }

    /// A datagram from the gateway's NAT-PMP port. Malformed, unexpected and stale answers
    /// change nothing.
    pub(crate) fn handle_response(&mut self, now: Instant, bytes: &[u8]) -> Option<Change> {
        if !matches!(self.state, State::Asking { .. }) {
            return None;
        }
        let [0, op, r0, r1, ..] = *bytes else {
            return None;
        };
        let result = u16::from_be_bytes([r0, r1]);
        match (op, bytes.len()) {
            (128, 12..) if result == 0 => {
                self.external_ip = Some(Ipv4Addr::new(bytes[8], bytes[9], bytes[10], bytes[11]));
            }
            (129, 16..) if result == 0 => {
                let internal = u16::from_be_bytes([bytes[8], bytes[9]]);
                if internal != self.internal_port {
                    return None;
                }
                self.external_port = Some(u16::from_be_bytes([bytes[10], bytes[11]]));
                let granted = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
                // At least a minute, whatever the router says, so a zero cannot spin us.
                self.lifetime = granted.max(60);
            }
            (128 | 129, 8..) => {
                self.state = State::Done;
                return Some(Change::Failed(Failure::Refused(result)));
            }
            _ => return None,
        }
        let (Some(ip), Some(port)) = (self.external_ip, self.external_port) else {
            return None;
        };
        let external = SocketAddrV4::new(ip, port);
        let lifetime = Duration::from_secs(self.lifetime.into());
        let previous = self.current.replace(external);
        self.state = State::Mapped {
            external,
            renew: now + lifetime / 2,
            expires: now + lifetime,
        };
        (previous != Some(external)).then_some(Change::Mapped(external))
    }

    /// Removes the mapping (the daemon stops): one request with lifetime 0, then nothing.
    pub(crate) fn remove(&mut self) {
        if self.current.is_some() || self.external_port.is_some() {
            let [_, delete] = self.requests(0);
            self.out.push(delete);
        }
        self.state = State::Done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

    fn address_answer(ip: [u8; 4]) -> Vec<u8> {
        let mut r = vec![0, 128, 0, 0, 0, 0, 0, 9];
        r.extend_from_slice(&ip);
        r
    }

    fn map_answer(internal: u16, external: u16, lifetime: u32) -> Vec<u8> {
        let mut r = vec![0, 129, 0, 0, 0, 0, 0, 9];
        r.extend_from_slice(&internal.to_be_bytes());
        r.extend_from_slice(&external.to_be_bytes());
        r.extend_from_slice(&lifetime.to_be_bytes());
        r
    }

    fn drain(m: &mut PortMapper) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| {
            m.poll_transmit().map(|(to, p)| {
                assert_eq!(to, SocketAddr::from((GW, NAT_PMP_PORT)));
                p
            })
        })
        .collect()
    }

    #[test]
    fn maps_renews_at_half_life_and_removes() {
        let t0 = crate::tests::origin();
        let mut m = PortMapper::new(GW, 4000, t0);
        assert_eq!(m.handle_timeout(t0), None);
        let sent = drain(&mut m);
        assert_eq!(sent[0], [0, 0]);
        assert_eq!(
            sent[1],
            [0, 1, 0, 0, 0x0f, 0xa0, 0x0f, 0xa0, 0, 0, 0x1c, 0x20]
        );
        // Both answers are needed, in either order.
        assert_eq!(m.handle_response(t0, &map_answer(4000, 31000, 3600)), None);
        let ext = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 2), 31000);
        assert_eq!(
            m.handle_response(t0, &address_answer([203, 0, 113, 2])),
            Some(Change::Mapped(ext))
        );
        assert_eq!(m.external(), Some(ext));
        let renew = m.next_deadline().unwrap();
        assert_eq!(renew - t0, Duration::from_secs(1800));
        // Renewal: the same requests; the same answer changes nothing for the endpoint.
        assert_eq!(m.handle_timeout(renew), None);
        assert_eq!(drain(&mut m).len(), 2);
        assert_eq!(
            m.handle_response(renew, &address_answer([203, 0, 113, 2])),
            None
        );
        assert_eq!(
            m.handle_response(renew, &map_answer(4000, 31000, 3600)),
            None
        );
        assert_eq!(m.external(), Some(ext));
        m.remove();
        let delete = drain(&mut m);
        assert_eq!(
            delete,
            vec![vec![0, 1, 0, 0, 0x0f, 0xa0, 0x0f, 0xa0, 0, 0, 0, 0]]
        );
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn a_silent_gateway_is_given_up_after_the_attempts() {
        let t0 = crate::tests::origin();
        let mut m = PortMapper::new(GW, 4000, t0);
        let mut now = t0;
        let mut outcome = None;
        while let Some(at) = m.next_deadline() {
            now = at;
            outcome = m.handle_timeout(now).or(outcome);
        }
        assert_eq!(outcome, Some(Change::Failed(Failure::NoAnswer)));
        assert_eq!(drain(&mut m).len(), 2 * ATTEMPTS as usize);
        assert_eq!(now - t0, Duration::from_millis(250 * 31));
        // Nothing to remove.
        m.remove();
        assert!(drain(&mut m).is_empty());
    }

    #[test]
    fn refusals_and_hostile_answers() {
        let t0 = crate::tests::origin();
        let mut m = PortMapper::new(GW, 4000, t0);
        m.handle_timeout(t0);
        // Another port's mapping, short answers, other versions, garbage: nothing.
        for junk in [
            map_answer(4001, 1, 60),
            vec![0, 129, 0, 0],
            vec![2, 129, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![0xff; 64],
            vec![],
        ] {
            assert_eq!(m.handle_response(t0, &junk), None);
        }
        assert_eq!(m.external(), None);
        // Not authorised (result 2).
        let mut refused = map_answer(4000, 0, 0);
        refused[3] = 2;
        assert_eq!(
            m.handle_response(t0, &refused),
            Some(Change::Failed(Failure::Refused(2)))
        );
        assert_eq!(m.next_deadline(), None);
        // A zero lifetime granted is taken as a minute, not a renewal loop.
        let mut m = PortMapper::new(GW, 4000, t0);
        m.handle_timeout(t0);
        m.handle_response(t0, &address_answer([203, 0, 113, 2]));
        m.handle_response(t0, &map_answer(4000, 5000, 0));
        assert_eq!(m.next_deadline(), Some(t0 + Duration::from_secs(30)));
    }

    proptest! {
        #[test]
        fn any_answer_is_handled_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let t0 = crate::tests::origin();
            let mut m = PortMapper::new(GW, 4000, t0);
            m.handle_timeout(t0);
            let _ = m.handle_response(t0, &bytes);
        }
    }
}
