//! The exposing side of UDP flows: OPEN, DATA and END from the opener, a socket per flow
//! toward the service, and the service's answers sent back as REPLY.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::{CloseWhy, Counts, FlowId, FlowMsg, InFlow, UdpAction, UdpForwarder};
use crate::endpoint::Endpoint;
use crate::error::SendError;
use crate::event::PeerId;

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
                // The same check as for a stream: a UDP service we expose, to a peer holding
                // a grant for it; anything else is refused alike.
                let target = ep.udp_target(peer, &service).map(str::parse::<SocketAddr>);
                let why = match target {
                    None => Some(CloseWhy::Refused),
                    Some(Err(_)) => Some(CloseWhy::Failed),
                    Some(Ok(_)) => {
                        let open = self
                            .incoming
                            .values()
                            .filter(|f| f.service == service)
                            .count();
                        (open >= self.config.max_flows).then_some(CloseWhy::Limit)
                    }
                };
                let (None, Some(Ok(target))) = (why, target) else {
                    match why {
                        Some(CloseWhy::Limit) => self.stats.dropped_limit += 1,
                        _ => self.stats.flows_refused += 1,
                    }
                    let why = why.unwrap_or(CloseWhy::Failed);
                    self.answer(now, ep, peer, FlowMsg::Close { flow: remote, why });
                    return;
                };
                let flow = self.new_flow(now);
                self.stats.flows_opened += 1;
                self.incoming.insert(
                    flow,
                    InFlow {
                        peer,
                        remote,
                        service,
                        target,
                        last_active: now,
                        counts: Counts::default(),
                    },
                );
                self.by_remote.insert((peer, remote), flow);
                self.actions.push_back(UdpAction::Open { flow, target });
                self.answer(now, ep, peer, FlowMsg::Accept { flow: remote });
                self.deliver(now, flow, payload);
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
            (FlowMsg::End { .. }, Some(flow)) => self.close_incoming(flow),
            (FlowMsg::End { .. }, None) => {}
            _ => self.stats.dropped_malformed += 1,
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
        if header.len() + data.len() > ep.max_datagram_size() {
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

    /// Forgets an incoming flow and has the runtime close its socket.
    pub(super) fn close_incoming(&mut self, flow: FlowId) {
        if let Some(f) = self.incoming.remove(&flow) {
            self.by_remote.remove(&(f.peer, f.remote));
            self.actions.push_back(UdpAction::Close { flow });
        }
    }
}
