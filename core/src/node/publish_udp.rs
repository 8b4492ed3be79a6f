//! A rendezvous server's UDP ports published for daemons' UDP services (`burrow server
//! --publish-ports`, a `[[expose]] protocol = "udp"` with `publish`): the node asks its
//! runtime for a UDP socket on the port ([`Output::ListenUdp`]), and the UDP forwarder makes
//! each source that sends there one flow to the daemon, over the server's session with it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::{Node, Output};
use crate::crypto::PublicKey;
use crate::forward::udp::UdpListenerId;
use crate::rendezvous::ServiceName;

impl Node {
    /// The server publishes `service` of the daemon `key` on UDP `port`.
    pub(super) fn listen_published_udp(&mut self, port: u16, key: PublicKey, service: ServiceName) {
        let listener = self.udp.listen_to(key, service);
        if let Some(old) = self.published_udp.insert(port, listener) {
            // The server never asks twice for one port; if it did, the new one wins.
            self.udp.unlisten(self.now, &mut self.ep, old);
            self.queued.push_back(Output::UnlistenUdp { listener: old });
        }
        let addr = SocketAddr::new(self.udp_addr.ip(), port);
        self.queued.push_back(Output::ListenUdp { listener, addr });
    }

    /// The publication on UDP `port` ended: its flows end, its socket closes.
    pub(super) fn unlisten_published_udp(&mut self, port: u16) {
        if let Some(listener) = self.published_udp.remove(&port) {
            self.udp.unlisten(self.now, &mut self.ep, listener);
            self.queued.push_back(Output::UnlistenUdp { listener });
        }
    }

    /// The runtime bound the socket of an [`Output::ListenUdp`] (`Ok`, its address) or
    /// could not (`Err`, why). A failure is reported to the daemon that asked for the port.
    pub fn handle_udp_listening(
        &mut self,
        now: Instant,
        listener: UdpListenerId,
        result: Result<SocketAddr, String>,
    ) {
        self.now = now;
        let Some((port, result)) = port_outcome(&mut self.published_udp, listener, result) else {
            return;
        };
        if result.is_err() {
            self.udp.unlisten(now, &mut self.ep, listener);
        }
        self.ep.publish_listening(now, port, result);
    }
}

/// The published port whose listener (TCP or UDP) is `listener`, and what to tell the server
/// of its binding; one that could not be bound is forgotten from `published` (the caller
/// forgets it in its forwarder). `None` for a listener that is not a published port's.
pub(super) fn port_outcome<L: PartialEq>(
    published: &mut BTreeMap<u16, L>,
    listener: L,
    result: Result<SocketAddr, String>,
) -> Option<(u16, Result<(), String>)> {
    let port = published
        .iter()
        .find(|(_, l)| **l == listener)
        .map(|(p, _)| *p)?;
    if result.is_err() {
        published.remove(&port);
    }
    Some((port, result.map(|_| ())))
}
