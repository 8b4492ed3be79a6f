//! STUN roles of an endpoint: answering Binding requests (servers) and asking any standard
//! STUN server for our server-reflexive address (daemons).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::wire::stun::{StunMessage, TransactionId};

/// First retransmission timeout (RFC 8489 section 6.2.1 recommends 500 ms).
const INITIAL_RTO: Duration = Duration::from_millis(500);
/// Requests sent per probe before giving up (RFC 8489's Rc is 7; burrow's gathering cannot
/// wait 40 s, so it sends five and waits four RTOs for the last: 9.5 s in all).
const MAX_REQUESTS: u32 = 5;

/// What came of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The server saw us at `mapped`.
    Mapped {
        /// The STUN server asked.
        server: SocketAddr,
        /// Our address as it saw it.
        mapped: SocketAddr,
    },
    /// No answer after every retransmission.
    TimedOut {
        /// The STUN server asked.
        server: SocketAddr,
    },
}

impl ProbeOutcome {
    /// The STUN server asked, and our address as it saw it (`None` if it never answered).
    pub fn result(&self) -> (SocketAddr, Option<SocketAddr>) {
        match *self {
            Self::Mapped { server, mapped } => (server, Some(mapped)),
            Self::TimedOut { server } => (server, None),
        }
    }
}

struct Probe {
    server: SocketAddr,
    next_send: Instant,
    sent: u32,
}

/// Outstanding Binding requests, with RFC 8489 retransmission.
#[derive(Default)]
pub(crate) struct StunClient {
    probes: BTreeMap<TransactionId, Probe>,
}

impl StunClient {
    /// Starts a probe; the first request is due at once.
    pub(crate) fn probe(&mut self, now: Instant, server: SocketAddr, transaction: TransactionId) {
        self.probes.insert(
            transaction,
            Probe {
                server,
                next_send: now,
                sent: 0,
            },
        );
    }

    /// Requests due at `now` (first sends and retransmissions), and probes that gave up.
    pub(crate) fn poll_due(
        &mut self,
        now: Instant,
        mut send: impl FnMut(SocketAddr, Vec<u8>),
        mut outcome: impl FnMut(ProbeOutcome),
    ) {
        self.probes.retain(|transaction, probe| {
            if probe.next_send > now {
                return true;
            }
            if probe.sent == MAX_REQUESTS {
                outcome(ProbeOutcome::TimedOut {
                    server: probe.server,
                });
                return false;
            }
            send(
                probe.server,
                StunMessage::BindingRequest {
                    transaction: *transaction,
                    change: false,
                }
                .encode(),
            );
            probe.sent += 1;
            let wait = if probe.sent == MAX_REQUESTS {
                4
            } else {
                1 << (probe.sent - 1)
            };
            probe.next_send = now + INITIAL_RTO * wait;
            true
        });
    }

    /// Matches a success response to its probe.
    pub(crate) fn on_response(
        &mut self,
        from: SocketAddr,
        transaction: &TransactionId,
        mapped: Option<SocketAddr>,
    ) -> Option<ProbeOutcome> {
        let probe = self.probes.get(transaction)?;
        if probe.server != from {
            return None;
        }
        let mapped = mapped?;
        self.probes.remove(transaction);
        Some(ProbeOutcome::Mapped {
            server: from,
            mapped,
        })
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.probes.values().map(|p| p.next_send).min()
    }
}

/// How many times a request's size a STUN answer may be: the source address is not validated,
/// so the answer could be aimed at a third party (RFC 9000, section 8, allows 3x).
pub(crate) const STUN_AMPLIFICATION: usize = 3;

/// The answer a STUN server gives a Binding request of `request_len` bytes from `from`, if it
/// is one; never more than [`STUN_AMPLIFICATION`] times the request. `other` is the server's
/// other address for RFC 5780 clients (`burrow netcheck`), left out when it does not fit.
pub(crate) fn answer(
    request: &StunMessage,
    request_len: usize,
    from: SocketAddr,
    other: Option<SocketAddr>,
) -> Option<Vec<u8>> {
    let StunMessage::BindingRequest { transaction, .. } = request else {
        return None;
    };
    let limit = request_len * STUN_AMPLIFICATION;
    let success = |other| StunMessage::BindingSuccess {
        transaction: *transaction,
        mapped: Some(from),
        other,
    };
    success(other)
        .encode_within(limit)
        .or_else(|| success(None).encode_within(limit))
}

/// Which of a server's two STUN sockets sends an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerFrom {
    /// The socket the request came to.
    Same,
    /// The other one: the request asked for a change (RFC 5780 CHANGE-REQUEST).
    Other,
}

/// What a rendezvous server's alternate STUN socket (the second address `burrow netcheck`
/// needs) does with a datagram: `None` for anything but a Binding request, else the answer and
/// the socket to send it from. `here` is the alternate socket's own address and `primary`
/// the server's main one; each names the other as OTHER-ADDRESS, so an answer sent from the
/// main socket names this one.
///
/// A request carrying CHANGE-REQUEST is answered from the main socket: a client that has
/// only ever sent to the alternate address learns whether its NAT lets in a packet from an
/// address it never sent to (its filtering). The answer is bounded like every other
/// (three times the request), so the second socket cannot be used to aim larger packets at a
/// third party.
pub fn answer_alternate(
    bytes: &[u8],
    from: SocketAddr,
    here: SocketAddr,
    primary: SocketAddr,
) -> Option<(AnswerFrom, Vec<u8>)> {
    let request = StunMessage::parse(bytes).ok()?;
    let StunMessage::BindingRequest { change, .. } = request else {
        return None;
    };
    let (via, other) = if change {
        (AnswerFrom::Other, here)
    } else {
        (AnswerFrom::Same, primary)
    };
    answer(&request, bytes.len(), from, Some(other)).map(|reply| (via, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_stay_within_three_times_the_request() {
        let request = StunMessage::BindingRequest {
            transaction: [9; 12],
            change: false,
        };
        let len = 20;
        let other: SocketAddr = "192.0.2.10:3479".parse().unwrap();
        for from in ["192.0.2.1:5000", "[2001:db8::1]:5000"] {
            let from: SocketAddr = from.parse().unwrap();
            let answer = answer(&request, len, from, Some(other)).expect("answered");
            assert!(answer.len() <= 3 * len, "{from}: {} bytes", answer.len());
            // Still a valid answer carrying the address; the other address where it fits
            // (an IPv6 client's minimal request leaves no room for it).
            match StunMessage::parse(&answer) {
                Ok(StunMessage::BindingSuccess {
                    mapped, other: o, ..
                }) => {
                    assert_eq!(mapped, Some(from));
                    assert_eq!(o, from.is_ipv4().then_some(other));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn probes_retransmit_with_backoff_then_give_up() {
        let t0 = crate::tests::origin();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let mut client = StunClient::default();
        client.probe(t0, server, [1; 12]);
        let mut sends = Vec::new();
        let mut outcomes = Vec::new();
        let mut now = t0;
        while let Some(at) = client.next_deadline() {
            now = at;
            client.poll_due(
                now,
                |dst, _| sends.push((now - t0, dst)),
                |o| outcomes.push(o),
            );
        }
        let times: Vec<u64> = sends.iter().map(|(t, _)| t.as_millis() as u64).collect();
        assert_eq!(times, vec![0, 500, 1500, 3500, 7500]);
        assert_eq!(outcomes, vec![ProbeOutcome::TimedOut { server }]);
        assert_eq!(now - t0, Duration::from_millis(9_500));
    }

    #[test]
    fn a_response_from_elsewhere_or_for_another_transaction_is_ignored() {
        let t0 = crate::tests::origin();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let other: SocketAddr = "192.0.2.9:3478".parse().unwrap();
        let mapped: SocketAddr = "203.0.113.5:6000".parse().unwrap();
        let mut client = StunClient::default();
        client.probe(t0, server, [1; 12]);
        assert_eq!(client.on_response(other, &[1; 12], Some(mapped)), None);
        assert_eq!(client.on_response(server, &[2; 12], Some(mapped)), None);
        assert_eq!(
            client.on_response(server, &[1; 12], Some(mapped)),
            Some(ProbeOutcome::Mapped { server, mapped })
        );
        assert_eq!(client.next_deadline(), None);
    }
}
