//! A daemon's port mapping on the gateway (see [`crate::portmap`]): requests out, answers in,
//! and the mapped address announced to the server as one more candidate.

use std::net::SocketAddr;
use std::time::Instant;

use super::Endpoint;
use crate::event::Event;
use crate::portmap::upnp::{Turn, UpnpEvent};
use crate::portmap::{Change, Failure, Protocol};
use crate::transmit::Transmit;

impl Endpoint {
    /// Whether `from` is the gateway's PCP/NAT-PMP port; its datagram is then the mapper's.
    pub(super) fn is_port_mapping_answer(&self, from: SocketAddr) -> bool {
        self.daemon
            .as_ref()
            .and_then(|d| d.port_mapper.as_ref())
            .is_some_and(|m| m.gateway() == from)
    }

    /// A datagram from the gateway's PCP/NAT-PMP port (a fallback to NAT-PMP sends its
    /// requests at once).
    pub(super) fn on_port_mapping_answer(&mut self, now: Instant, bytes: &[u8]) {
        let change = self
            .daemon
            .as_mut()
            .and_then(|d| d.port_mapper.as_mut())
            .and_then(|m| m.handle_response(now, bytes));
        if let Some(change) = change {
            self.on_port_mapping(now, change);
        }
        self.flush_port_mapping();
    }

    /// Retransmissions, give-ups and renewals that are due, and the requests to send.
    pub(super) fn port_mapping_timeout(&mut self, now: Instant) {
        let change = self
            .daemon
            .as_mut()
            .and_then(|d| d.port_mapper.as_mut())
            .filter(|m| m.next_deadline().is_some_and(|at| at <= now))
            .and_then(|m| m.handle_timeout(now));
        if let Some(change) = change {
            self.on_port_mapping(now, change);
        }
        self.flush_port_mapping();
    }

    /// Sends the mapper's requests from our socket (the mapping is for its port).
    pub(super) fn flush_port_mapping(&mut self) {
        let Some(mapper) = self.daemon.as_mut().and_then(|d| d.port_mapper.as_mut()) else {
            return;
        };
        while let Some((dst, payload)) = mapper.poll_transmit() {
            self.out.send(Transmit {
                segment_size: None,
                dst,
                ttl: None,
                payload: payload.into(),
            });
        }
    }

    fn on_port_mapping(&mut self, now: Instant, change: Change) {
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        match change {
            Change::Mapped(external, protocol) => {
                daemon.mapped = Some((external, None));
                daemon.mapped_by = Some(protocol);
                self.announce_mapping(now);
            }
            Change::Failed(reason) => {
                daemon.mapped = None;
                daemon.mapped_by = None;
                let hosts = daemon.config.host_candidates.clone();
                daemon.client.set_host_candidates(now, hosts);
                // With UPnP-IGD to ask next, its outcome is the one reported.
                let upnp_next = reason == Failure::NoAnswer
                    && daemon.port_mapper.as_ref().is_some_and(|m| m.upnp);
                if !upnp_next {
                    self.out
                        .events
                        .push_back(Event::PortMappingFailed { reason });
                }
            }
        }
    }

    /// Announces the mapped address once our reflexive address is known, if it is on the
    /// same IP (behind a second NAT the gateway's outside is not what peers reach).
    pub(super) fn announce_mapping(&mut self, now: Instant) {
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        let (Some((external, None)), Some(reflexive)) = (daemon.mapped, daemon.reflexive) else {
            return;
        };
        let announced = reflexive.ip() == std::net::IpAddr::V4(*external.ip());
        daemon.mapped = Some((external, Some(announced)));
        if announced {
            let mut candidates = daemon.config.host_candidates.clone();
            candidates.insert(0, SocketAddr::V4(external));
            daemon.client.set_host_candidates(now, candidates);
        }
        self.out.events.push_back(Event::PortMapped {
            external,
            protocol: daemon.mapped_by.unwrap_or(crate::portmap::Protocol::NatPmp),
            announced,
        });
    }

    /// The runtime's UPnP-IGD driver (see [`crate::upnp`]) reports what its client learned,
    /// if anything, and is told what to do: [`Turn::Ask`] once PCP and NAT-PMP failed (a
    /// mapping it reports is then announced as theirs would be), [`Turn::Wait`] while they
    /// are asked or hold a mapping, [`Turn::Off`] when port mapping or UPnP is off or the
    /// daemon stops. A report that comes when it is not UPnP's turn is dropped.
    pub fn upnp(&mut self, now: Instant, report: Option<UpnpEvent>) -> Turn {
        let turn = self
            .daemon
            .as_ref()
            .and_then(|d| d.port_mapper.as_ref())
            .map_or(Turn::Off, crate::portmap::PortMapper::turn);
        if turn == Turn::Ask {
            match report {
                Some(UpnpEvent::Mapped(external)) => {
                    self.on_port_mapping(now, Change::Mapped(external, Protocol::Upnp));
                }
                Some(UpnpEvent::Failed(why)) => self.on_port_mapping(now, Change::Failed(why)),
                None => {}
            }
        }
        turn
    }

    /// The daemon stops: the mapping is removed (its request goes out with the others).
    pub(super) fn remove_port_mapping(&mut self) {
        if let Some(mapper) = self.daemon.as_mut().and_then(|d| d.port_mapper.as_mut()) {
            mapper.remove();
        }
        self.flush_port_mapping();
    }
}

#[cfg(test)]
impl Endpoint {
    /// A server's candidates for the daemon with `key` (its reflexive address first).
    pub(crate) fn registered_candidates(&self, key: &crate::PublicKey) -> Vec<SocketAddr> {
        self.server
            .as_ref()
            .and_then(|s| s.registrations().find(|r| r.key() == *key))
            .map(crate::rendezvous::lease::Registration::candidates)
            .unwrap_or_default()
    }
}
