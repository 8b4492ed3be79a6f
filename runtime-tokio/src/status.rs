//! What `burrow status` shows; built in core ([`burrow_core::status`]), shared by every
//! runtime.

use std::net::SocketAddr;

use burrow_core::Endpoint;
use burrow_core::forward::Forwarder;
use burrow_core::rendezvous::ServiceName;

pub(crate) use burrow_core::status::Seen;
pub use burrow_core::status::{ConnInfo, PeerInfo, ServiceInfo, Status};

pub(crate) fn snapshot(
    ep: &Endpoint,
    fwd: &Forwarder,
    seen: &Seen,
    udp_addr: Option<SocketAddr>,
    exposed: &[(ServiceName, String)],
    listeners: &[(ServiceName, SocketAddr)],
) -> Status {
    burrow_core::status::snapshot(ep, fwd, seen, udp_addr, exposed, listeners)
}
