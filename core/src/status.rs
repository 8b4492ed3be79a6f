//! What `burrow status` shows: a snapshot of a node built from its [`Endpoint`] and
//! [`Forwarder`], serialisable so a control socket can carry it as JSON. The
//! [`crate::node::Node`] builds it: it keeps a `Seen` up to date from the events it drains,
//! and calls `snapshot` when asked.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::endpoint::Endpoint;
use crate::event::{Event, PeerId};
use crate::forward::udp::{FlowInfo, UdpForwarder, UdpListenerId, UdpStats};
use crate::forward::{ExposeOptions, Forwarder, Protocol, ServiceState};
use crate::rendezvous::ServiceName;

/// A snapshot of a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Our public key (base64).
    pub public_key: String,
    /// The bound UDP address.
    pub udp_addr: Option<SocketAddr>,
    /// Our address as the rendezvous server sees it, once registered.
    pub registered: Option<SocketAddr>,
    /// The last registration failure, if registration is not up.
    pub registration_error: Option<String>,
    /// Why the registration was lost (the session to the server ended: it stopped answering
    /// our keepalives, or closed), until registered again.
    #[serde(default)]
    pub registration_lost: Option<String>,
    /// How many seconds ago the registration was lost.
    #[serde(default)]
    pub registration_lost_secs: Option<f64>,
    /// Sessions, with their counters.
    pub peers: Vec<PeerInfo>,
    /// Services we expose: name and local target.
    pub exposed: Vec<(String, String)>,
    /// Whether the target of each service we expose answers (name, state): `ready`, or
    /// `target unreachable: REASON (TARGET) N times, last S s ago` until a connection to it
    /// succeeds.
    #[serde(default)]
    pub exposed_state: Vec<(String, String)>,
    /// Services we connect to, with their listeners.
    pub services: Vec<ServiceInfo>,
    /// Live local connections.
    pub conns: Vec<ConnInfo>,
    /// Live UDP flows, both sides.
    #[serde(default)]
    pub flows: Vec<FlowInfo>,
    /// What UDP forwarding did and dropped.
    #[serde(default)]
    pub udp: UdpStats,
    /// The largest UDP datagram a flow carries; larger ones are dropped and counted.
    #[serde(default)]
    pub udp_max_payload: Option<usize>,
    /// The route policy of each service we expose (name, `any`/`direct`/`relay`): its own,
    /// or the daemon's.
    #[serde(default)]
    pub exposed_routes: Vec<(String, String)>,
    /// The daemons met in peer mode (`[[peer]]`): whether each is met, and why not.
    #[serde(default)]
    pub meetings: Vec<MeetingInfo>,
    /// Exposed services asked to be published on the rendezvous server's public ports, and
    /// where each stands: `published on SERVER:PORT`, `publish refused: why`, or waiting.
    #[serde(default)]
    pub published: Vec<(String, String)>,
    /// The endpoint's counters (what the metrics endpoint exports).
    #[serde(default)]
    pub stats: crate::Stats,
    /// A server's registrations and relayed bytes per token; `None` for a daemon.
    #[serde(default)]
    pub server: Option<crate::ServerCounters>,
    /// What each path token of the registration does, as the server said: the token's first
    /// 6 characters and its use, in the order presented.
    #[serde(default)]
    pub path_tokens: Vec<(String, crate::rendezvous::TokenUse)>,
}

/// One daemon met in peer mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeetingInfo {
    /// Its public key (base64).
    pub key: String,
    /// `met` (a session is up) or `waiting` (for the other side to ask too).
    pub state: String,
    /// The session to it, once met.
    pub peer: Option<u64>,
    /// Why the last meeting failed (the other side did not ask in time, ...), until met.
    pub last_error: Option<String>,
}

/// One session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The endpoint-local handle.
    pub peer: u64,
    /// Its public key (base64).
    pub key: String,
    /// Where its packets go: its own address, or the relay's.
    pub addr: Option<SocketAddr>,
    /// Whether packets go through the relay.
    pub relayed: bool,
    /// Whether the handshake completed.
    pub connected: bool,
    /// Smoothed round-trip time in milliseconds, once measured.
    pub rtt_ms: Option<f64>,
    /// Packets the stream layer declared lost.
    pub packets_lost: u64,
    /// UDP payload bytes sent to it.
    pub bytes_sent: u64,
    /// UDP payload bytes received from it.
    pub bytes_received: u64,
    /// Streams open with it.
    pub open_streams: usize,
    /// The largest UDP payload its stream packets use on this path: 1200, or more once path
    /// MTU discovery found more (a direct path only).
    #[serde(default)]
    pub max_udp_payload: Option<usize>,
    /// Seconds between keepalives on a quiet session: the configured interval, or a shorter
    /// one learned after a NAT forgot the direct path's mapping between keepalives.
    pub keepalive_secs: Option<f64>,
    /// The IP TTL of the first punching probes toward this peer (later attempts climb from
    /// it), when the session was introduced by the server.
    #[serde(default)]
    pub probe_ttl: Option<u8>,
    /// Why that TTL: learned from the hop count to the server, or the climb from the
    /// configured start when that is unknown.
    #[serde(default)]
    pub probe_ttl_reason: Option<String>,
    /// Why the session rides the relay (what punching toward each candidate got, and one
    /// line), when it does and the server introduced the peer.
    #[serde(default)]
    pub why_relayed: Option<crate::WhyRelayed>,
}

/// One service we connect to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The name.
    pub name: String,
    /// Local listener addresses for it.
    pub listen: Vec<SocketAddr>,
    /// `idle`, `asking`, `ready`, or `unreachable` (ready, but the exposing daemon's target
    /// refused the last connection and none answered since).
    pub state: String,
    /// The peer serving it when ready.
    pub peer: Option<u64>,
    /// Accepted connections waiting for it.
    pub waiting: usize,
    /// The last failure.
    pub last_error: Option<String>,
    /// The effective route policy (`any`, `direct` or `relay`): ours combined with the
    /// exposing side's once introduced, else ours.
    #[serde(default)]
    pub route: Option<String>,
}

/// One local connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// The forwarder's handle.
    pub conn: u64,
    /// Its service.
    pub service: String,
    /// Whether it came in for a service we expose.
    pub incoming: bool,
    /// The peer carrying it.
    pub peer: Option<u64>,
    /// Bytes read from the local socket.
    pub bytes_read: u64,
    /// Bytes written to the local socket.
    pub bytes_written: u64,
}

/// What a node remembers from the endpoint's events for [`snapshot`]: the peers it heard
/// of and the registration.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Peers with a session, and their keys.
    pub(crate) peers: BTreeMap<PeerId, PublicKey>,
    /// Our reflexive address from the last successful registration.
    pub(crate) registered: Option<SocketAddr>,
    /// Why the last registration was refused, until one succeeds.
    pub(crate) registration_error: Option<String>,
    /// Peer-mode meetings: the session once met, else the last failure.
    pub(crate) meetings: BTreeMap<PublicKey, Result<PeerId, String>>,
    /// Where each exposed service is published on the server, or why it is not.
    pub(crate) published: BTreeMap<ServiceName, Result<SocketAddr, String>>,
}

impl Seen {
    /// Notes what `event` changes; call it for every event the endpoint gives.
    pub(crate) fn handle_event(&mut self, event: &Event) {
        match event {
            Event::Connected { peer, key, .. } => {
                self.peers.insert(*peer, *key);
            }
            Event::SessionClosed { peer, .. } => {
                self.peers.remove(peer);
            }
            Event::Registered { reflexive } => {
                self.registered = Some(*reflexive);
                self.registration_error = None;
            }
            Event::PeerReady { key, peer } => {
                self.meetings.insert(*key, Ok(*peer));
            }
            Event::PeerFailed { key, reason } => {
                self.meetings.insert(*key, Err(reason.clone()));
            }
            Event::RegistrationLost => {
                self.registered = None;
                // The server dropped its publications with the registration; asked again.
                self.published.clear();
            }
            Event::Published { service, at } => {
                self.published.insert(service.clone(), Ok(*at));
            }
            Event::PublishRefused { service, reason } => {
                self.published.insert(service.clone(), Err(reason.clone()));
            }
            Event::RegistrationFailed { reason } => {
                self.registered = None;
                self.registration_error = Some(reason.clone());
            }
            _ => {}
        }
    }
}

/// The status of a node: the endpoint's sessions and counters, the forwarder's services and
/// connections, what `seen` remembers, the bound `udp_addr`, the `exposed` services (name,
/// target) and the `listeners` (service, local address).
pub(crate) fn snapshot(
    ep: &Endpoint,
    fwd: &Forwarder,
    seen: &Seen,
    udp_addr: Option<SocketAddr>,
    exposed: &[(ServiceName, String)],
    listeners: &[(ServiceName, SocketAddr)],
) -> Status {
    let peers = seen
        .peers
        .iter()
        .map(|(&peer, key)| {
            let stats = ep.stream_stats(peer);
            let connected = ep.is_connected(peer);
            PeerInfo {
                peer: peer.0,
                key: key.to_string(),
                addr: ep.peer_path(peer).map(|p| p.addr()),
                relayed: ep.peer_path(peer).is_some_and(|p| p.is_relay()),
                connected,
                rtt_ms: stats
                    .as_ref()
                    .filter(|s| connected && s.packets_received > 0)
                    .map(|s| s.rtt.as_secs_f64() * 1e3),
                packets_lost: stats.as_ref().map_or(0, |s| s.packets_lost),
                bytes_sent: stats.as_ref().map_or(0, |s| s.bytes_sent),
                bytes_received: stats.as_ref().map_or(0, |s| s.bytes_received),
                open_streams: stats.as_ref().map_or(0, |s| s.open_streams),
                max_udp_payload: stats
                    .as_ref()
                    .filter(|_| connected)
                    .map(|s| s.packet_size + crate::session::STREAM_OVERHEAD),
                keepalive_secs: ep.peer_keepalive(peer).map(|d| d.as_secs_f64()),
                probe_ttl: ep.peer_probe_ttl(peer).map(|(ttl, _)| ttl),
                probe_ttl_reason: ep.peer_probe_ttl(peer).map(|(_, why)| why.reason()),
                why_relayed: ep.peer_why_relayed(peer).filter(|_| connected),
            }
        })
        .collect();
    let services = fwd
        .services()
        .map(|s| {
            let (state, peer) = match s.state {
                ServiceState::Idle => ("idle", None),
                ServiceState::Asking => ("asking", None),
                ServiceState::Ready(p) if s.target_down => ("unreachable", Some(p.0)),
                ServiceState::Ready(p) => ("ready", Some(p.0)),
            };
            ServiceInfo {
                listen: listeners
                    .iter()
                    .filter(|(n, _)| *n == s.name)
                    .map(|(_, a)| *a)
                    .collect(),
                name: s.name.to_string(),
                state: state.into(),
                peer,
                waiting: s.waiting,
                last_error: s.last_error,
                route: ep.service_route(&s.name).map(|r| r.to_string()),
            }
        })
        .collect();
    let conns = fwd
        .conns()
        .map(|c| ConnInfo {
            conn: c.conn.0,
            service: c.service.to_string(),
            incoming: c.incoming,
            peer: c.stream.map(|(p, _)| p.0),
            bytes_read: c.bytes_read,
            bytes_written: c.bytes_written,
        })
        .collect();
    let meetings = ep
        .configured_peers()
        .into_iter()
        .map(|key| {
            let seen = seen.meetings.get(&key);
            let peer = match seen {
                Some(Ok(peer)) if ep.is_connected(*peer) => Some(*peer),
                _ => None,
            };
            MeetingInfo {
                key: key.to_string(),
                state: if peer.is_some() { "met" } else { "waiting" }.into(),
                peer: peer.map(|p| p.0),
                last_error: seen.and_then(|s| s.clone().err()),
            }
        })
        .collect();
    Status {
        public_key: ep.public_key().to_string(),
        meetings,
        udp_addr,
        registered: seen.registered,
        registration_error: seen.registration_error.clone(),
        peers,
        exposed: exposed
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
        exposed_routes: exposed
            .iter()
            .filter_map(|(n, _)| Some((n.to_string(), ep.expose_route(n)?.to_string())))
            .collect(),
        services,
        conns,
        stats: ep.stats().clone(),
        server: ep.server_counters(),
        path_tokens: ep.path_token_uses(),
        ..Status::default()
    }
}

/// Adds UDP forwarding to `status`: the flows and counters of `udp` (on `ep`, at `now`), the
/// UDP services behind `listeners`, and how each exposed service is forwarded (`options`),
/// after its target.
pub(crate) fn add_udp(
    status: &mut Status,
    (ep, udp, now): (&Endpoint, &UdpForwarder, std::time::Instant),
    listeners: &[(ServiceName, SocketAddr, UdpListenerId)],
    options: &BTreeMap<ServiceName, ExposeOptions>,
) {
    status.flows = udp.flows(now);
    status.udp = udp.stats().clone();
    status.udp_max_payload = Some(UdpForwarder::max_payload(ep));
    for (name, state, waiting, last_error) in udp.services() {
        let (state, peer) = match state {
            ServiceState::Idle => ("idle", None),
            ServiceState::Asking => ("asking", None),
            ServiceState::Ready(p) => ("ready", Some(p.0)),
        };
        status.services.push(ServiceInfo {
            name: format!("{name} (udp)"),
            listen: listeners
                .iter()
                .filter(|(n, _, _)| n == name)
                .map(|(_, a, _)| *a)
                .collect(),
            state: state.into(),
            peer,
            waiting,
            last_error: last_error.cloned(),
            route: ep.service_route(name).map(|r| r.to_string()),
        });
    }
    for (name, target) in &mut status.exposed {
        let Some(o) = name.parse().ok().and_then(|n: ServiceName| options.get(&n)) else {
            continue;
        };
        if o.protocol == Protocol::Udp {
            target.push_str(" (udp)");
        }
        if let Some(v) = o.proxy_protocol {
            target.push_str(&format!(" (proxy protocol {v})"));
        }
    }
}

/// Adds to `status` what needs the time (`now`): since when the registration is lost, and
/// whether the target of each service we expose (`exposed`) answers.
pub(crate) fn add_standing(
    status: &mut Status,
    (ep, fwd, now): (&Endpoint, &Forwarder, std::time::Instant),
    exposed: &[(ServiceName, String)],
) {
    if status.registered.is_none() {
        if let Some((since, why)) = ep.registration_lost() {
            status.registration_lost = Some(why.to_string());
            let ago = now.saturating_duration_since(since).as_secs_f64();
            status.registration_lost_secs = Some(ago);
        }
    }
    status.exposed_state = exposed
        .iter()
        .map(|(name, _)| (name.to_string(), fwd.target_state(now, name)))
        .collect();
}

/// Adds to `status` where each exposed service that asked to be published (`options`)
/// stands, from what `seen` heard.
pub(crate) fn add_published(
    status: &mut Status,
    seen: &Seen,
    options: &BTreeMap<ServiceName, ExposeOptions>,
) {
    status.published = options
        .iter()
        .filter(|(_, o)| o.publish.is_some())
        .map(|(name, o)| {
            let udp = if o.protocol == crate::forward::Protocol::Udp {
                " (UDP)"
            } else {
                ""
            };
            let state = match seen.published.get(name) {
                Some(Ok(at)) => format!("published on {at}{udp}"),
                Some(Err(why)) => format!("publish refused: {why}"),
                None => format!(
                    "asking the server to publish it on port {}{udp}",
                    o.publish.expect("filtered")
                ),
            };
            (name.to_string(), state)
        })
        .collect();
}
