//! [`UdpForwarder`]: UDP flows over a session's unreliable datagrams, shared by every runtime.
//!
//! On the connecting side a runtime binds one UDP socket per `[[connect]] protocol = "udp"`
//! and reports every datagram it receives with its source; each source address and port is
//! one flow. On the exposing side each flow gets a UDP socket of its own, connected to the
//! service, so the service's answers come back to the flow they belong to. The forwarder
//! decides everything else: which flow a datagram is, the flow header (`wire.rs`), looking the
//! service up, access control (a flow may only reach a UDP service its peer was granted, the
//! same check as for a stream), the idle timeout, the per-service flow limit, and the
//! counters behind `burrow status`. Like the rest of core it opens no sockets and reads no
//! clock.
//!
//! Datagrams are never retransmitted nor queued behind a stream: a datagram larger than a
//! session datagram to its peer can carry with the flow header (at least
//! [`UdpForwarder::max_payload`], up to the path MTU the session confirmed) is dropped and
//! counted, and so is one the network loses.
//!
//! ## Driving it
//!
//! [`crate::node::Node`] does this for the runtimes; what it does with the forwarder:
//!
//! ```text
//! let mut udp = UdpForwarder::new(UdpConfig::default());
//! let l = udp.listen(service);                      // one per local UDP listener socket
//! loop {
//!     while let Some(e) = ep.poll_event()     { udp.handle_event(now, &mut ep, &e); ... }
//!     while let Some(a) = udp.poll_action()   { perform a (open, send, send_to, close) }
//!     wait until a datagram, or min(ep.poll_timeout(), udp.poll_timeout());
//!     match woke {
//!         ListenerDatagram(l, from, d) => udp.handle_recv_from(now, &mut ep, l, from, &d),
//!         FlowDatagram(flow, d)        => udp.handle_recv(now, &mut ep, flow, &d),
//!         FlowFailed(flow, why)        => udp.handle_flow_error(now, &mut ep, flow, &why),
//!         Deadline                     => { ep.handle_timeout(now); udp.handle_timeout(now, &mut ep) }
//!     }
//! }
//! ```

mod expose;
mod held;
mod types;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

pub use types::{FlowId, FlowInfo, UdpAction, UdpConfig, UdpListenerId, UdpStats};
pub use wire::{CloseWhy, FlowMsg, MAX_DATA_HEADER};

use super::ServiceState;
use crate::crypto::PublicKey;
use crate::endpoint::Endpoint;
use crate::error::SendError;
use crate::event::{Event, PeerId};
use crate::rendezvous::ServiceName;

/// A remote UDP service that listeners send to.
#[derive(Debug)]
struct Wanted {
    state: ServiceState,
    /// Datagrams waiting for the service, oldest first.
    waiting: VecDeque<(FlowId, Bytes)>,
    last_error: Option<String>,
}

/// Counters of one flow.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    datagrams_out: u64,
    bytes_out: u64,
    datagrams_in: u64,
    bytes_in: u64,
    dropped: u64,
}

/// A flow from a local client (we opened it).
#[derive(Debug)]
struct OutFlow {
    listener: UdpListenerId,
    client: SocketAddr,
    service: ServiceName,
    /// The peer it was last sent to.
    peer: Option<PeerId>,
    /// The peer said it is open: DATA instead of OPEN.
    accepted: bool,
    /// The peer refused it: drop its datagrams until it expires.
    refused: bool,
    last_active: Instant,
    counts: Counts,
}

/// A flow that came in for a service we expose.
#[derive(Debug)]
struct InFlow {
    peer: PeerId,
    /// The opener's id for it.
    remote: u64,
    service: ServiceName,
    /// The service's address; unspecified while its host name is being looked up.
    target: SocketAddr,
    /// While the target's host name is being looked up: the datagrams waiting for its socket.
    resolving: Option<VecDeque<Bytes>>,
    last_active: Instant,
    counts: Counts,
}

/// UDP flows over session datagrams. See the module docs.
#[derive(Debug)]
pub struct UdpForwarder {
    config: UdpConfig,
    next_flow: u64,
    next_listener: u64,
    listeners: BTreeMap<UdpListenerId, ServiceName>,
    /// Listeners whose flows go to one daemon's session, not to a service looked up (a
    /// rendezvous server's published UDP ports): the daemon's key.
    direct: BTreeMap<UdpListenerId, PublicKey>,
    wanted: BTreeMap<ServiceName, Wanted>,
    out: BTreeMap<FlowId, OutFlow>,
    by_client: BTreeMap<(UdpListenerId, SocketAddr), FlowId>,
    incoming: BTreeMap<FlowId, InFlow>,
    by_remote: BTreeMap<(PeerId, u64), FlowId>,
    /// OPENs from peers whose introduction has not reached us yet (`held.rs`).
    held: held::Held,
    /// Idle checks, earliest first: a flow is looked at when its entry comes due, and put
    /// back with its new deadline if it was active since (so a datagram costs no reindexing).
    deadlines: BTreeSet<(Instant, FlowId)>,
    actions: VecDeque<UdpAction>,
    stats: UdpStats,
}

/// What `burrow status` says about a flow the exposing daemon refused.
fn refusal(why: CloseWhy) -> String {
    let what = match why {
        CloseWhy::Refused => "not a UDP service it exposes to us".to_string(),
        CloseWhy::Limit => "the service has as many flows as it allows".into(),
        CloseWhy::Failed => "its socket toward the service failed".into(),
        CloseWhy::Route => "the service's route policy does not allow the path the session \
                            uses now (see `route` on its [[expose]])"
            .into(),
        CloseWhy::Unknown => "it forgot the flow".into(),
        CloseWhy::Other(code) => format!("reason {code}"),
    };
    format!("a flow was refused by the exposing daemon: {what}")
}

impl UdpForwarder {
    /// A forwarder with no listeners and no flows.
    pub fn new(config: UdpConfig) -> Self {
        Self {
            config,
            next_flow: 0,
            next_listener: 0,
            listeners: BTreeMap::new(),
            direct: BTreeMap::new(),
            wanted: BTreeMap::new(),
            out: BTreeMap::new(),
            by_client: BTreeMap::new(),
            incoming: BTreeMap::new(),
            by_remote: BTreeMap::new(),
            held: held::Held::default(),
            deadlines: BTreeSet::new(),
            actions: VecDeque::new(),
            stats: UdpStats::default(),
        }
    }

    /// Registers a local UDP listener socket whose datagrams go to `service`. Nothing is
    /// asked of the rendezvous server until the first datagram arrives.
    pub fn listen(&mut self, service: ServiceName) -> UdpListenerId {
        let id = UdpListenerId(self.next_listener);
        self.next_listener += 1;
        self.wanted.entry(service.clone()).or_insert(Wanted {
            state: ServiceState::Idle,
            waiting: VecDeque::new(),
            last_error: None,
        });
        self.listeners.insert(id, service);
        id
    }

    /// Registers a listener socket whose datagrams go to `service` of the daemon whose key
    /// is `key`, over our session with it (a rendezvous server's published UDP port): no
    /// lookup; a datagram that comes while there is no such session is dropped and counted.
    pub fn listen_to(&mut self, key: PublicKey, service: ServiceName) -> UdpListenerId {
        let id = UdpListenerId(self.next_listener);
        self.next_listener += 1;
        self.listeners.insert(id, service);
        self.direct.insert(id, key);
        id
    }

    /// Forgets a listener socket (its `[[connect]]` went away in a reload, or its
    /// publication ended): its flows end (their peers hear END), and its service is
    /// forgotten unless another listener sends to it. The runtime closes the socket; a
    /// [`UdpAction::SendTo`] for it may still come.
    pub fn unlisten(&mut self, now: Instant, ep: &mut Endpoint, listener: UdpListenerId) {
        let Some(service) = self.listeners.remove(&listener) else {
            return;
        };
        self.direct.remove(&listener);
        let flows: Vec<FlowId> = self
            .out
            .iter()
            .filter(|(_, f)| f.listener == listener)
            .map(|(&id, _)| id)
            .collect();
        for flow in flows {
            self.end_flow(now, ep, flow);
        }
        if !self.listeners.values().any(|s| *s == service) {
            self.drop_waiting(&service);
            self.wanted.remove(&service);
        }
    }

    /// The largest datagram a flow carries on any path: what one session datagram of the
    /// base size takes, less the largest DATA header. On a direct path whose larger size the
    /// session's path MTU discovery confirmed, larger ones fit
    /// ([`Endpoint::max_datagram_size_to`]); what does not fit is dropped and counted.
    pub fn max_payload(ep: &Endpoint) -> usize {
        ep.max_datagram_size().saturating_sub(MAX_DATA_HEADER)
    }

    /// The next thing the runtime must do with a UDP socket. Drain it after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<UdpAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] should next be called: the earliest idle check, or the
    /// end of a held flow's wait for its introduction.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.deadlines.first().map(|(at, _)| *at);
        [idle, self.held.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// What the forwarder did and dropped.
    pub fn stats(&self) -> &UdpStats {
        &self.stats
    }

    /// The live flows, both sides, for `burrow status`.
    pub fn flows(&self, now: Instant) -> Vec<FlowInfo> {
        let info = |flow: FlowId, service: &ServiceName, incoming, peer: Option<PeerId>| {
            (flow.0, service.to_string(), incoming, peer.map(|p| p.0))
        };
        let row = |(flow, service, incoming, peer), local, c: &Counts, last: Instant| FlowInfo {
            flow,
            service,
            incoming,
            peer,
            local,
            datagrams_out: c.datagrams_out,
            bytes_out: c.bytes_out,
            datagrams_in: c.datagrams_in,
            bytes_in: c.bytes_in,
            dropped: c.dropped,
            idle_secs: now.saturating_duration_since(last).as_secs_f64(),
        };
        let outs = self.out.iter().map(|(&id, f)| {
            let i = info(id, &f.service, false, f.peer);
            row(i, f.client, &f.counts, f.last_active)
        });
        let ins = self.incoming.iter().map(|(&id, f)| {
            let i = info(id, &f.service, true, Some(f.peer));
            row(i, f.target, &f.counts, f.last_active)
        });
        outs.chain(ins).collect()
    }

    /// The remote UDP services behind listeners: name, state, datagrams waiting, last error.
    pub(crate) fn services(
        &self,
    ) -> impl Iterator<Item = (&ServiceName, ServiceState, usize, Option<&String>)> + '_ {
        self.wanted
            .iter()
            .map(|(n, w)| (n, w.state, w.waiting.len(), w.last_error.as_ref()))
    }

    // ----- the connecting side -------------------------------------------------------------

    /// A listener socket received `data` from the local client `from`: forwarded on that
    /// client's flow (opened now if it is new, unless the service has its limit of flows).
    pub fn handle_recv_from(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        listener: UdpListenerId,
        from: SocketAddr,
        data: &[u8],
    ) {
        let Some(service) = self.listeners.get(&listener).cloned() else {
            return;
        };
        let flow = match self.by_client.get(&(listener, from)) {
            Some(&flow) => flow,
            None => {
                let open = self.out.values().filter(|f| f.listener == listener).count();
                if open >= self.config.max_flows {
                    self.stats.dropped_limit += 1;
                    return;
                }
                let flow = self.new_flow(now);
                self.stats.flows_opened += 1;
                self.out.insert(
                    flow,
                    OutFlow {
                        listener,
                        client: from,
                        service: service.clone(),
                        peer: None,
                        accepted: false,
                        refused: false,
                        last_active: now,
                        counts: Counts::default(),
                    },
                );
                self.by_client.insert((listener, from), flow);
                flow
            }
        };
        let f = self.out.get_mut(&flow).expect("just found or made");
        if f.refused {
            // Not counted as activity: the flow expires and the next datagram tries again.
            f.counts.dropped += 1;
            self.stats.dropped_unreachable += 1;
            return;
        }
        f.last_active = now;
        if let Some(key) = self.direct.get(&listener) {
            match ep.peer_of(key) {
                Some(peer) => self.send_up(now, ep, flow, peer, data),
                None => {
                    f.counts.dropped += 1;
                    self.stats.dropped_unreachable += 1;
                }
            }
            return;
        }
        let w = self.wanted.get_mut(&service).expect("listen() made it");
        match w.state {
            ServiceState::Ready(peer) => self.send_up(now, ep, flow, peer, data),
            ServiceState::Asking | ServiceState::Idle => {
                if w.waiting.len() >= self.config.max_waiting {
                    f.counts.dropped += 1;
                    self.stats.dropped_unreachable += 1;
                    return;
                }
                w.waiting.push_back((flow, Bytes::copy_from_slice(data)));
                if w.state == ServiceState::Idle {
                    self.ask(now, ep, &service);
                }
            }
        }
    }

    /// Sends one datagram of `flow` to `peer`: OPEN until the peer accepted it, DATA after.
    fn send_up(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        flow: FlowId,
        peer: PeerId,
        data: &[u8],
    ) {
        let Some(f) = self.out.get_mut(&flow) else {
            return;
        };
        if f.peer != Some(peer) {
            // A new session (or the first): the flow opens again there.
            f.peer = Some(peer);
            f.accepted = false;
        }
        let msg = if f.accepted {
            FlowMsg::Data {
                flow: flow.0,
                payload: data,
            }
        } else {
            FlowMsg::Open {
                flow: flow.0,
                service: f.service.clone(),
                payload: data,
            }
        };
        let header = msg.encode_header();
        if header.len() + data.len() > ep.max_datagram_size_to(peer) {
            f.counts.dropped += 1;
            self.stats.dropped_too_large += 1;
            return;
        }
        let bytes = [&header[..], data].concat();
        match ep.send_datagram(now, peer, &bytes) {
            Ok(()) => {
                f.counts.datagrams_out += 1;
                f.counts.bytes_out += data.len() as u64;
            }
            Err(SendError::TooLarge { .. }) => {
                f.counts.dropped += 1;
                self.stats.dropped_too_large += 1;
            }
            Err(SendError::UnknownPeer) => {
                // The session is gone; its close event may still be queued. Ask again.
                let service = f.service.clone();
                if let Some(w) = self.wanted.get_mut(&service) {
                    w.state = ServiceState::Idle;
                    w.waiting.push_back((flow, Bytes::copy_from_slice(data)));
                    self.ask(now, ep, &service);
                } else {
                    // A published port's daemon: nothing to look up.
                    f.counts.dropped += 1;
                    self.stats.dropped_unreachable += 1;
                }
            }
            Err(_) => {
                f.counts.dropped += 1;
                self.stats.dropped_send += 1;
            }
        }
    }

    fn ask(&mut self, now: Instant, ep: &mut Endpoint, service: &ServiceName) {
        let w = self.wanted.get_mut(service).expect("caller checked");
        match ep.connect_service(now, service.clone()) {
            Ok(()) => w.state = ServiceState::Asking,
            Err(e) => {
                w.last_error = Some(e.to_string());
                self.drop_waiting(service);
            }
        }
    }

    /// Drops (and counts) the datagrams waiting for `service`.
    fn drop_waiting(&mut self, service: &ServiceName) {
        let Some(w) = self.wanted.get_mut(service) else {
            return;
        };
        for (flow, _) in w.waiting.drain(..) {
            self.stats.dropped_unreachable += 1;
            if let Some(f) = self.out.get_mut(&flow) {
                f.counts.dropped += 1;
            }
        }
    }

    /// A message for a flow we opened.
    fn handle_answer(&mut self, now: Instant, peer: PeerId, msg: FlowMsg<'_>) {
        let flow = FlowId(msg.flow());
        let Some(f) = self.out.get_mut(&flow).filter(|f| f.peer == Some(peer)) else {
            self.stats.dropped_unknown_flow += 1;
            return;
        };
        match msg {
            FlowMsg::Reply { payload, .. } => {
                f.accepted = true;
                f.last_active = now;
                f.counts.datagrams_in += 1;
                f.counts.bytes_in += payload.len() as u64;
                self.actions.push_back(UdpAction::SendTo {
                    listener: f.listener,
                    to: f.client,
                    data: Bytes::copy_from_slice(payload),
                });
            }
            FlowMsg::Accept { .. } => f.accepted = true,
            // The peer forgot it: the next datagram opens it again.
            FlowMsg::Close {
                why: CloseWhy::Unknown,
                ..
            } => f.accepted = false,
            FlowMsg::Close { why, .. } => {
                if !f.refused {
                    f.refused = true;
                    self.stats.flows_refused += 1;
                    let service = f.service.clone();
                    if let Some(w) = self.wanted.get_mut(&service) {
                        w.last_error = Some(refusal(why));
                    }
                }
            }
            _ => self.stats.dropped_malformed += 1,
        }
    }

    // ----- both sides ------------------------------------------------------------------------

    /// Acts on an endpoint event; pass every event (the ones that concern no flow or UDP
    /// service of this forwarder are ignored).
    pub fn handle_event(&mut self, now: Instant, ep: &mut Endpoint, event: &Event) {
        match event {
            Event::Datagram { peer, data } => match FlowMsg::decode(data) {
                Ok(msg @ (FlowMsg::Open { .. } | FlowMsg::Data { .. } | FlowMsg::End { .. })) => {
                    self.handle_request(now, ep, *peer, msg)
                }
                Ok(msg) => self.handle_answer(now, *peer, msg),
                Err(_) => self.stats.dropped_malformed += 1,
            },
            Event::ServiceReady { service, peer } => {
                let Some(w) = self.wanted.get_mut(service) else {
                    return;
                };
                w.state = ServiceState::Ready(*peer);
                w.last_error = None;
                let waiting = std::mem::take(&mut w.waiting);
                for (flow, data) in waiting {
                    self.send_up(now, ep, flow, *peer, &data);
                }
            }
            Event::ServiceFailed { service, reason } => {
                if let Some(w) = self.wanted.get_mut(service) {
                    w.state = ServiceState::Idle;
                    w.last_error = Some(reason.clone());
                    self.drop_waiting(service);
                }
            }
            // A daemon's publication lets the server's flows in, as an introduction lets a
            // peer's.
            Event::AccessGranted { .. } | Event::Published { .. } => self.admit_held(now, ep),
            Event::SessionClosed { peer, reason, .. } => {
                self.held.forget_peer(*peer);
                for w in self.wanted.values_mut() {
                    if w.state == ServiceState::Ready(*peer) {
                        w.state = ServiceState::Idle;
                        w.last_error = Some(format!("session closed: {reason}"));
                    }
                }
                for f in self.out.values_mut().filter(|f| f.peer == Some(*peer)) {
                    f.peer = None;
                    f.accepted = false;
                }
                let gone: Vec<FlowId> = self
                    .by_remote
                    .range((*peer, 0)..=(*peer, u64::MAX))
                    .map(|(_, &flow)| flow)
                    .collect();
                for flow in gone {
                    self.close_incoming(flow);
                }
            }
            _ => {}
        }
    }

    /// Forgets the flows idle past the timeout (telling the peer, for flows we opened, and
    /// closing the socket, for flows that came in), and refuses held flows whose wait for
    /// their introduction ended.
    pub fn handle_timeout(&mut self, now: Instant, ep: &mut Endpoint) {
        self.expire_held(now, ep);
        while let Some(&(at, flow)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let last = match (self.out.get(&flow), self.incoming.get(&flow)) {
                (Some(f), _) => f.last_active,
                (_, Some(f)) => f.last_active,
                _ => continue,
            };
            let expires = last + self.config.idle_timeout;
            if expires > now {
                self.deadlines.insert((expires, flow));
                continue;
            }
            self.stats.flows_expired += 1;
            self.end_flow(now, ep, flow);
        }
    }

    /// Forgets every flow (the node is stopping): the peer hears END for each we opened,
    /// the runtime closes each socket.
    pub fn shutdown(&mut self, now: Instant, ep: &mut Endpoint) {
        let flows: Vec<FlowId> = self
            .out
            .keys()
            .chain(self.incoming.keys())
            .copied()
            .collect();
        for flow in flows {
            self.end_flow(now, ep, flow);
        }
    }

    fn end_flow(&mut self, now: Instant, ep: &mut Endpoint, flow: FlowId) {
        if let Some(f) = self.out.remove(&flow) {
            self.by_client.remove(&(f.listener, f.client));
            if let (Some(peer), false) = (f.peer, f.refused) {
                // Best effort: the peer frees its socket now rather than at its own timeout.
                let end = FlowMsg::End { flow: flow.0 }.encode();
                let _ = ep.send_datagram(now, peer, &end);
            }
            if let Some(w) = self.wanted.get_mut(&f.service) {
                w.waiting.retain(|(x, _)| *x != flow);
            }
        } else {
            self.close_incoming(flow);
        }
    }

    fn new_flow(&mut self, now: Instant) -> FlowId {
        let flow = FlowId(self.next_flow);
        self.next_flow += 1;
        self.deadlines
            .insert((now + self.config.idle_timeout, flow));
        flow
    }
}
