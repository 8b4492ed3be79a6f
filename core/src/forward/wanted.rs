//! The services the connecting side wants: asking the endpoint for one, the local
//! connections that wait for it to be ready, opening their streams (oldest first, as the
//! peer's stream limit allows), and what a closed session does to them.

use std::collections::VecDeque;
use std::time::Instant;

use super::{ConnId, Forwarder, ServiceState};
use crate::endpoint::Endpoint;
use crate::error::StreamError;
use crate::event::PeerId;
use crate::rendezvous::ServiceName;
use crate::stream::StreamId;

/// A remote service that listeners connect to.
#[derive(Debug)]
pub(super) struct Wanted {
    pub(super) state: ServiceState,
    /// Accepted connections waiting for a stream, oldest first.
    pub(super) waiting: VecDeque<ConnId>,
    pub(super) last_error: Option<String>,
    /// The exposing daemon's target refused our last connection, and none answered since.
    pub(super) target_down: bool,
}

impl Forwarder {
    pub(super) fn ask(&mut self, now: Instant, ep: &mut Endpoint, service: &ServiceName) {
        let w = self.wanted.get_mut(service).expect("caller checked");
        match ep.connect_service(now, service.clone()) {
            Ok(()) => w.state = ServiceState::Asking,
            Err(e) => {
                w.last_error = Some(e.to_string());
                let waiting = std::mem::take(&mut w.waiting);
                for conn in waiting {
                    self.close(conn, Some(format!("service {service}: {e}")));
                }
            }
        }
    }

    /// Opens streams for the connections waiting on a ready `service`, oldest first, until the
    /// peer's stream limit stops it.
    pub(super) fn open_waiting(&mut self, now: Instant, ep: &mut Endpoint, service: &ServiceName) {
        loop {
            let Some(w) = self.wanted.get_mut(service) else {
                return;
            };
            let ServiceState::Ready(peer) = w.state else {
                return;
            };
            let Some(&conn) = w.waiting.front() else {
                return;
            };
            let origin = self.conns.get(&conn).and_then(|c| c.origin);
            match ep.open_stream_from(now, peer, service, origin) {
                Ok(stream) => {
                    w.waiting.pop_front();
                    let c = self.conns.get_mut(&conn).expect("waiting conns are live");
                    c.stream = Some((peer, stream));
                    self.streams.insert((peer, stream), conn);
                    self.push_up(now, ep, conn);
                }
                Err(StreamError::Limit) => return,
                Err(_) => {
                    // The session is gone; its close event may still be queued. Ask again.
                    w.state = ServiceState::Idle;
                    self.ask(now, ep, service);
                    return;
                }
            }
        }
    }

    pub(super) fn retry_limited(&mut self, now: Instant, ep: &mut Endpoint) {
        let ready: Vec<ServiceName> = self
            .wanted
            .iter()
            .filter(|(_, w)| matches!(w.state, ServiceState::Ready(_)) && !w.waiting.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for service in ready {
            self.open_waiting(now, ep, &service);
        }
    }

    pub(super) fn session_closed(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        peer: PeerId,
        reason: &crate::CloseReason,
    ) {
        let gone: Vec<ConnId> = self
            .streams
            .range((peer, StreamId(0))..=(peer, StreamId(u64::MAX)))
            .map(|(_, &conn)| conn)
            .collect();
        for conn in gone {
            self.close(conn, Some(format!("session closed: {reason}")));
        }
        let lost: Vec<ServiceName> = self
            .wanted
            .iter()
            .filter(|(_, w)| w.state == ServiceState::Ready(peer))
            .map(|(name, _)| name.clone())
            .collect();
        for service in lost {
            let w = self.wanted.get_mut(&service).expect("just listed");
            w.state = ServiceState::Idle;
            w.last_error = Some(format!("session closed: {reason}"));
            if !w.waiting.is_empty() {
                self.ask(now, ep, &service);
            }
        }
    }
}
