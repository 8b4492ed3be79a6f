//! The UDP sockets of forwarded UDP services on the poll: one per UDP listener (the
//! connecting side) and one per flow toward its service (the exposing side). They only move
//! datagrams; the node decides everything.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use burrow_core::forward::udp::{FlowId, UdpAction, UdpListenerId};
use burrow_core::node::Node;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

/// UDP listener tokens are this plus the [`UdpListenerId`].
pub(crate) const FIRST_UDP_LISTENER: usize = 1 << 19;
/// Flow tokens are this plus the [`FlowId`] (above every connection's token).
pub(crate) const FIRST_FLOW: usize = 1 << 40;
/// The largest UDP datagram.
const MAX_UDP: usize = 65_536;

/// The sockets, and a buffer to read them into.
pub(crate) struct UdpSockets {
    listeners: BTreeMap<UdpListenerId, UdpSocket>,
    flows: BTreeMap<FlowId, (UdpSocket, SocketAddr)>,
    buf: Vec<u8>,
}

impl UdpSockets {
    pub(crate) fn new() -> Self {
        Self {
            listeners: BTreeMap::new(),
            flows: BTreeMap::new(),
            buf: vec![0; MAX_UDP],
        }
    }

    /// Polls a UDP listener's socket.
    pub(crate) fn add_listener(
        &mut self,
        registry: &Registry,
        id: UdpListenerId,
        mut socket: UdpSocket,
    ) -> io::Result<()> {
        let token = Token(FIRST_UDP_LISTENER + id.0 as usize);
        registry.register(&mut socket, token, Interest::READABLE)?;
        self.listeners.insert(id, socket);
        Ok(())
    }

    /// Closes a UDP listener's socket (dropping it deregisters it).
    pub(crate) fn remove_listener(&mut self, id: UdpListenerId) {
        self.listeners.remove(&id);
    }

    /// Performs `action`; a flow whose socket cannot be opened is returned with why.
    pub(crate) fn action(
        &mut self,
        registry: &Registry,
        action: UdpAction,
    ) -> Option<(FlowId, String)> {
        let send = |socket: &UdpSocket, data: &[u8], to: SocketAddr| {
            if let Err(e) = socket.send_to(data, to) {
                tracing::debug!(error = %e, %to, "UDP send failed");
            }
        };
        match action {
            UdpAction::Open { flow, target } => {
                let opened = burrow_tokio::flow_socket(target).and_then(|s| {
                    let mut socket = UdpSocket::from_std(s);
                    let token = Token(FIRST_FLOW + flow.0 as usize);
                    registry.register(&mut socket, token, Interest::READABLE)?;
                    Ok(socket)
                });
                match opened {
                    Ok(socket) => {
                        tracing::debug!(%flow, %target, "UDP flow opened");
                        self.flows.insert(flow, (socket, target));
                    }
                    Err(e) => return Some((flow, e.to_string())),
                }
            }
            // The loop looks host names up (it has the waker).
            UdpAction::Resolve { .. } => {}
            UdpAction::Send { flow, data } => {
                if let Some((socket, target)) = self.flows.get(&flow) {
                    send(socket, &data, *target);
                }
            }
            UdpAction::SendTo { listener, to, data } => {
                if let Some(socket) = self.listeners.get(&listener) {
                    send(socket, &data, to);
                }
            }
            UdpAction::Close { flow } => {
                tracing::debug!(%flow, "UDP flow closed");
                // Dropping the socket deregisters it.
                self.flows.remove(&flow);
            }
        }
        None
    }

    /// Reads the socket behind `token` until it is empty (the poll is edge-triggered),
    /// feeding each datagram to the node. A flow's socket takes datagrams from its target
    /// only.
    pub(crate) fn readable(&mut self, now: Instant, token: Token, node: &mut Node) {
        let Token(t) = token;
        if t >= FIRST_FLOW {
            let flow = FlowId((t - FIRST_FLOW) as u64);
            let Some((socket, target)) = self.flows.get(&flow) else {
                return;
            };
            while let Ok((n, from)) = recv(socket, &mut self.buf) {
                if from == *target {
                    node.handle_udp_recv(now, flow, &self.buf[..n]);
                }
            }
        } else {
            let id = UdpListenerId((t - FIRST_UDP_LISTENER) as u64);
            let Some(socket) = self.listeners.get(&id) else {
                return;
            };
            while let Ok((n, from)) = recv(socket, &mut self.buf) {
                node.handle_udp_recv_from(now, id, from, &self.buf[..n]);
            }
        }
    }
}

/// One datagram; `WouldBlock` when empty. Other errors (an ICMP error from an earlier send)
/// are logged and end this read, as `WouldBlock` does.
fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    socket.recv_from(buf).inspect_err(|e| {
        if e.kind() != io::ErrorKind::WouldBlock {
            tracing::debug!(error = %e, "UDP receive failed");
        }
    })
}
