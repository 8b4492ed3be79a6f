//! The exposing side of UDP flows: OPEN, DATA and END from the opener, a socket per flow
//! toward the service, and the service's answers sent back as REPLY.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::held::Holding;
use super::{CloseWhy, Counts, FlowId, FlowMsg, InFlow, UdpAction, UdpForwarder};
use crate::endpoint::Endpoint;
use crate::error::SendError;
use crate::event::PeerId;
use crate::rendezvous::ServiceName;

impl UdpForwarder {
    /// A message from `peer` for a flow it opened.
    pub(super) fn handle_request(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        peer: PeerId,
        msg: FlowMsg<'_>,
    ) {
        let remote = msg.flow();
        let known = self.by_remote.get(&(peer, remote)).copied();
        match (msg, known) {
            (FlowMsg::Open { payload, .. }, Some(flow)) => {
                // Our ACCEPT was lost (or is still on its way): say it again.
                self.answer(now, ep, peer, FlowMsg::Accept { flow: remote });
                self.deliver(now, flow, payload);
            }
            (
                FlowMsg::Open {
                    service, payload, ..
                },
                None,
            ) => {
                // A peer without a grant for the service waits for its introduction (even
                // for a service we do not expose: the wait tells a stranger nothing).
                if !ep.may_reach(peer, &service) {
                    match self.held.hold(now, (peer, remote), &service, payload) {
                        Holding::New => self.stats.flows_held += 1,
                        Holding::Added => {}
                        Holding::Dropped => self.stats.dropped_unreachable += 1,
                        Holding::Full => self.refuse(now, ep, peer, remote, CloseWhy::Refused),
                    }
                    return;
                }
                let mut payloads = self
                    .held
                    .take((peer, remote))
                    .map(|h| h.payloads)
                    .unwrap_or_default();
                payloads.push_back(Bytes::copy_from_slice(payload));
                self.open_incoming(now, ep, (peer, remote), service, payloads);
            }
            (FlowMsg::Data { payload, .. }, Some(flow)) => self.deliver(now, flow, payload),
            (FlowMsg::Data { .. }, None) => {
                self.stats.dropped_unknown_flow += 1;
                let close = FlowMsg::Close {
                    flow: remote,
                    why: CloseWhy::Unknown,
                };
                self.answer(now, ep, peer, close);
            }
            (FlowMsg::End { .. }, Some(flow)) => {
                self.stats.flows_ended += 1;
                self.close_incoming(flow);
            }
            (FlowMsg::End { .. }, None) => {
                // Its opener gave up on a flow still waiting for its introduction.
                self.held.take((peer, remote));
            }
            _ => self.stats.dropped_malformed += 1,
        }
    }

    /// Opens a flow `peer` may use, toward the UDP service we expose under `service`, and
    /// delivers its first datagrams; or refuses it (not a UDP service we expose, its target
    /// unusable, or the service at its flow limit).
    fn open_incoming(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        (peer, remote): (PeerId, u64),
        service: ServiceName,
        payloads: VecDeque<Bytes>,
    ) {
        // An IP:PORT is opened at once; a host name is looked up by the runtime first.
        let target = match ep.udp_target(peer, &service) {
            None => return self.refuse(now, ep, peer, remote, CloseWhy::Refused),
            Some(text) => text.parse::<SocketAddr>().map_err(|_| text.to_string()),
        };
        if !ep.route_allows(peer, &service) {
            return self.refuse(now, ep, peer, remote, CloseWhy::Route);
        }
        let open = self
            .incoming
            .values()
            .filter(|f| f.service == service)
            .count();
        if open >= self.config.max_flows {
            self.stats.dropped_limit += 1;
            let close = FlowMsg::Close {
                flow: remote,
                why: CloseWhy::Limit,
            };
            return self.answer(now, ep, peer, close);
        }
        let flow = self.new_flow(now);
        self.stats.flows_opened += 1;
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        self.incoming.insert(
            flow,
            InFlow {
                peer,
                remote,
                service,
                target: *target.as_ref().unwrap_or(&unknown),
                resolving: target.is_err().then(VecDeque::new),
                last_active: now,
                counts: Counts::default(),
            },
        );
        self.by_remote.insert((peer, remote), flow);
        self.actions.push_back(match target {
            Ok(target) => UdpAction::Open { flow, target },
            Err(target) => UdpAction::Resolve { flow, target },
        });
        self.answer(now, ep, peer, FlowMsg::Accept { flow: remote });
        for payload in payloads {
            self.deliver(now, flow, &payload);
        }
    }

    /// Refuses the flow `remote` of `peer`: the opener hears CLOSE with `why`.
    fn refuse(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        peer: PeerId,
        remote: u64,
        why: CloseWhy,
    ) {
        self.stats.flows_refused += 1;
        self.answer(now, ep, peer, FlowMsg::Close { flow: remote, why });
    }

    /// A grant arrived: the held flows their peer may now use are opened.
    pub(super) fn admit_held(&mut self, now: Instant, ep: &mut Endpoint) {
        let admitted: Vec<(PeerId, u64)> = self
            .held
            .flows()
            .filter(|((peer, _), service)| ep.may_reach(*peer, service))
            .map(|(flow, _)| flow)
            .collect();
        for flow in admitted {
            let h = self.held.take(flow).expect("listed above");
            self.open_incoming(now, ep, flow, h.service, h.payloads);
        }
    }

    /// Refuses the held flows whose wait ended by `now`.
    pub(super) fn expire_held(&mut self, now: Instant, ep: &mut Endpoint) {
        while let Some((peer, remote)) = self.held.pop_expired(now) {
            self.refuse(now, ep, peer, remote, CloseWhy::Refused);
        }
    }

    /// Hands a datagram from the tunnel to the flow's socket.
    fn deliver(&mut self, now: Instant, flow: FlowId, payload: &[u8]) {
        let Some(f) = self.incoming.get_mut(&flow) else {
            return;
        };
        f.last_active = now;
        f.counts.datagrams_in += 1;
        f.counts.bytes_in += payload.len() as u64;
        if let Some(waiting) = &mut f.resolving {
            // Its socket is not open yet: held, a few at most, as while a service is looked up.
            if waiting.len() >= self.config.max_waiting {
                f.counts.dropped += 1;
                self.stats.dropped_unreachable += 1;
            } else {
                waiting.push_back(Bytes::copy_from_slice(payload));
            }
            return;
        }
        self.actions.push_back(UdpAction::Send {
            flow,
            data: Bytes::copy_from_slice(payload),
        });
    }

    /// Sends a message without payload to `peer` (best effort: it may be lost like any).
    fn answer(&mut self, now: Instant, ep: &mut Endpoint, peer: PeerId, msg: FlowMsg<'_>) {
        if ep.send_datagram(now, peer, &msg.encode()).is_err() {
            self.stats.dropped_send += 1;
        }
    }

    /// The socket of `flow` (exposing side) received `data` from the service: sent back to
    /// the client that opened the flow.
    pub fn handle_recv(&mut self, now: Instant, ep: &mut Endpoint, flow: FlowId, data: &[u8]) {
        let Some(f) = self.incoming.get_mut(&flow) else {
            return;
        };
        f.last_active = now;
        let header = FlowMsg::Reply {
            flow: f.remote,
            payload: &[],
        }
        .encode_header();
        if header.len() + data.len() > ep.max_datagram_size_to(f.peer) {
            f.counts.dropped += 1;
            self.stats.dropped_too_large += 1;
            return;
        }
        let bytes = [&header[..], data].concat();
        match ep.send_datagram(now, f.peer, &bytes) {
            Ok(()) => {
                f.counts.datagrams_out += 1;
                f.counts.bytes_out += data.len() as u64;
            }
            Err(SendError::TooLarge { .. }) => {
                f.counts.dropped += 1;
                self.stats.dropped_too_large += 1;
            }
            Err(_) => {
                f.counts.dropped += 1;
                self.stats.dropped_send += 1;
            }
        }
    }

    /// The runtime looked up the host name of `flow`'s target ([`UdpAction::Resolve`]): its
    /// socket opens toward `addr` and the datagrams held meanwhile go out; or the flow ends
    /// as when its socket fails. An answer for a flow that is gone is ignored.
    pub fn handle_resolved(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        flow: FlowId,
        addr: Result<SocketAddr, String>,
    ) {
        let Some(f) = self.incoming.get_mut(&flow) else {
            return;
        };
        let Some(waiting) = f.resolving.take() else {
            return;
        };
        match addr {
            Ok(target) => {
                f.target = target;
                self.actions.push_back(UdpAction::Open { flow, target });
                for data in waiting {
                    self.actions.push_back(UdpAction::Send { flow, data });
                }
            }
            Err(why) => {
                // As a failed socket, but there is no socket to close.
                let _ = why;
                self.stats.dropped_unreachable += waiting.len() as u64;
                let (peer, remote) = (f.peer, f.remote);
                self.incoming.remove(&flow);
                self.by_remote.remove(&(peer, remote));
                let close = FlowMsg::Close {
                    flow: remote,
                    why: CloseWhy::Failed,
                };
                self.answer(now, ep, peer, close);
            }
        }
    }

    /// The socket of `flow` could not be opened, or failed: the flow ends, and the opener
    /// hears so.
    pub fn handle_flow_error(&mut self, now: Instant, ep: &mut Endpoint, flow: FlowId, why: &str) {
        let _ = why;
        let Some(f) = self.incoming.get(&flow) else {
            return;
        };
        let (peer, remote) = (f.peer, f.remote);
        self.close_incoming(flow);
        let close = FlowMsg::Close {
            flow: remote,
            why: CloseWhy::Failed,
        };
        self.answer(now, ep, peer, close);
    }

    /// Forgets every flow that came in for `service`, a service this node no longer exposes,
    /// and has the runtime close their sockets.
    pub fn reset_incoming(&mut self, service: &crate::rendezvous::ServiceName) {
        let gone: Vec<FlowId> = self
            .incoming
            .iter()
            .filter(|(_, f)| f.service == *service)
            .map(|(&flow, _)| flow)
            .collect();
        for flow in gone {
            self.close_incoming(flow);
        }
    }

    /// Forgets an incoming flow and has the runtime close its socket (if it opened one).
    pub(super) fn close_incoming(&mut self, flow: FlowId) {
        if let Some(f) = self.incoming.remove(&flow) {
            self.by_remote.remove(&(f.peer, f.remote));
            // A flow still waiting for its lookup has no socket to close.
            if f.resolving.is_none() {
                self.actions.push_back(UdpAction::Close { flow });
            }
        }
    }
}
