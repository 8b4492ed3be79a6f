//! Endpoint configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::crypto::{PublicKey, SecretKey};
use crate::path::RoutePolicy;
use crate::rendezvous::{ServerConfig, ServiceName};
pub use crate::stream::StreamConfig;

/// Which peers may complete a handshake with us as responder, and which of our exposed
/// services each may open streams to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerPolicy {
    /// Any key that completes the handshake, to any exposed service: a rendezvous server
    /// (authorisation happens above, with tokens), or an endpoint used without one behind
    /// access control of its own.
    AnyKey,
    /// What a daemon uses: keys its rendezvous server introduced, each to the service it was
    /// introduced for; peers met in peer mode, to every service; and these keys, to every
    /// service. A key we opened a session to ourselves may complete a handshake but reaches
    /// none of our services unless it holds a grant too. Anything else is dropped and counted
    /// (`Stats::dropped_unknown_peer`, `Stats::streams_unauthorized`).
    Authorized(BTreeSet<PublicKey>),
}

/// Session timing and rekeying limits.
///
/// The defaults follow WireGuard's proven figures where they exist (rekey every two minutes,
/// keys unusable after three), with a shorter keepalive because burrow must hold NAT bindings
/// open and many consumer NATs forget UDP flows after 30 seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// First handshake retransmission delay; doubles per attempt up to `handshake_retry_max`.
    pub handshake_retry: Duration,
    /// Longest delay between two handshake attempts.
    pub handshake_retry_max: Duration,
    /// Give up on a handshake (and close the session) after this long without a response.
    pub handshake_timeout: Duration,
    /// Send a keepalive when nothing was sent for this long on an established session.
    pub keepalive_interval: Duration,
    /// Close a session when nothing was received for this long.
    pub idle_timeout: Duration,
    /// Start a new handshake when the current keys are this old.
    pub rekey_after_time: Duration,
    /// Never use keys older than this; they are erased.
    pub reject_after_time: Duration,
    /// Start a new handshake after sending this many packets with one key.
    pub rekey_after_packets: u64,
    /// Never send more than this many packets with one key.
    pub reject_after_packets: u64,
    /// Initiations per second above which the responder demands a cookie (mac2) before
    /// spending a Diffie-Hellman on an initiation.
    pub handshake_load_threshold: u32,
    /// Initiations per second from one source IP above which that source must present a
    /// cookie, whatever the overall load (direct initiations only; the relay limits its own).
    pub handshake_load_per_source: u32,
    /// Sessions at most; an initiation from a new peer beyond it is dropped and counted in
    /// `Stats::dropped_session_limit`.
    pub max_sessions: usize,
    /// Half-open handshakes at most per source IP (an IPv6 address counts by its /64): sessions
    /// made by answering an initiation that came straight from that source, whose initiator
    /// has not yet confirmed the keys. Each holds about 4.5 KiB until it is confirmed or the
    /// responder gives up on it (`handshake_timeout`). While a source holds this many, its
    /// initiations must carry a cookie (a cookie reply costs no Diffie-Hellman), and those
    /// that do but would open another are dropped, counted in
    /// `Stats::dropped_half_open_limit`. Initiations for sessions that exist already
    /// (retries, rekeys) are not limited, nor are relayed ones (the relay limits those per
    /// token). A real peer confirms within a round trip, so this many unconfirmed at once
    /// from one address means a flood, or a very large NAT whose peers retry later.
    pub max_half_open_per_source: usize,
    /// Datagrams queued per peer while its handshake is in progress; more are refused.
    pub max_queued_datagrams: usize,
    /// Hole punching: how long the first TTL-limited probes lead the first full-TTL
    /// initiation, so the peer's own probes have opened its NAT before ours arrive.
    pub punch_lead: Duration,
    /// Hole punching: first retry interval (doubles up to `handshake_retry_max`).
    pub punch_retry: Duration,
    /// Hole punching: the TTL of the first probes. 2 passes one NAT and dies at the next
    /// router; each retry raises it by one, up to `punch_ttl_ceiling`.
    pub punch_ttl_start: u8,
    /// Hole punching: the highest probe TTL (plexus' default of 7).
    pub punch_ttl_ceiling: u8,
    /// Relay fallback: how long punching may try alone before handshakes also go through the
    /// relay (when the route policy allows it).
    pub relay_after: Duration,
    /// Relay first: when the route policy allows both the relay and direct paths, the first
    /// handshake attempt already goes through the relay too (not after `relay_after`), so data
    /// starts on the relay within a relay round trip of the introduction, and the search for
    /// a direct path starts its first round as soon as the session is up (not after
    /// `path_probe_min`); the session moves to the direct path once a challenge proves it.
    /// Off by default: punching alone usually wins within a few round trips, and a session
    /// that starts direct never loads the relay.
    pub relay_first: bool,
    /// Relay fallback: a direct path that has answered nothing for this long while data is
    /// waiting for acknowledgement is given up for the relay. The longest such wait: on a
    /// direct path with a relay to fall back to, the wait is [`DEAD_PATH_PTOS`] probe
    /// timeouts of the path's measured round trip, at least `path_timeout_min` (so a path
    /// that died mid-transfer is left within about a second, not after 3 s of silence).
    pub path_timeout: Duration,
    /// Relay fallback: the shortest wait before a silent direct path is given up (the floor
    /// of the round-trip-based wait; see `path_timeout`), so a short queueing hiccup on a
    /// path with a sub-millisecond RTT does not send the session to the relay.
    pub path_timeout_min: Duration,
    /// While relayed: the first interval between rounds of direct-path challenges; it doubles
    /// up to `path_probe_max`.
    pub path_probe_min: Duration,
    /// While relayed: the longest interval between rounds of direct-path challenges. Above
    /// 30 s, so that conntrack entries a failed round left on a Linux NAT (they live 30 s
    /// unless refreshed) expire before the next round.
    pub path_probe_max: Duration,
    /// While relayed after a direct path died: the gap after the first round of challenges
    /// (which catches a peer whose address changed cleanly). A path that dies mid-transfer
    /// usually died at a NAT that lost its state: the peer's packets reaching it first left a
    /// conntrack entry that remaps our own flow (the clash), and every challenge to the old
    /// address refreshes it. Above Linux's 30 s for unreplied entries, so the entries of the
    /// failed round expire and the next round, starting with TTL-limited probes, can succeed.
    pub path_probe_after_fallback: Duration,
    /// Liveness: a session with open streams or unacknowledged data that hears nothing from
    /// the peer for this long gives up ([`crate::CloseReason::PeerUnresponsive`]) instead of
    /// waiting for `idle_timeout`. It probes the peer meanwhile (ack-eliciting pings, with
    /// backoff), and a silent direct path falls back to the relay first (after
    /// `path_timeout`); the relay then gets at least 1.5 `handshake_retry` to answer. An idle
    /// session (nothing unacknowledged, no data just received) keeps `idle_timeout`.
    pub liveness_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            handshake_retry: Duration::from_millis(1000),
            handshake_retry_max: Duration::from_secs(8),
            handshake_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(50),
            rekey_after_time: Duration::from_secs(120),
            reject_after_time: Duration::from_secs(180),
            rekey_after_packets: 1 << 60,
            reject_after_packets: u64::MAX - (1 << 13),
            handshake_load_threshold: 1000,
            handshake_load_per_source: 20,
            max_sessions: 65_536,
            max_half_open_per_source: 64,
            max_queued_datagrams: 256,
            punch_lead: Duration::from_millis(100),
            punch_retry: Duration::from_millis(250),
            punch_ttl_start: 2,
            punch_ttl_ceiling: 7,
            relay_after: Duration::from_secs(2),
            relay_first: false,
            path_timeout: Duration::from_secs(3),
            path_timeout_min: Duration::from_secs(1),
            path_probe_min: Duration::from_secs(1),
            path_probe_max: Duration::from_secs(60),
            path_probe_after_fallback: Duration::from_secs(32),
            liveness_timeout: Duration::from_secs(4),
        }
    }
}

/// Relay fallback: how many probe timeouts (RFC 9002's PTO before backoff: a smoothed round
/// trip plus four deviations plus the peer's ack delay) data may go unanswered on a direct
/// path before the session gives it up for the relay, within
/// [`SessionConfig::path_timeout_min`]..=[`SessionConfig::path_timeout`]. Three, as QUIC's
/// persistent-congestion rule: one lost packet or one late ack is not a dead path.
pub const DEAD_PATH_PTOS: u32 = 3;

/// Most daemons one daemon meets in peer mode (the server lets each wait for 16 at once).
pub const MAX_PEERS: usize = 16;

/// A daemon met in peer mode: each side names the other; met only when both ask within the
/// server's wait.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerConfig {
    /// Our exposed services it may reach (none: it may reach nothing here, only serve us).
    pub allow: Vec<ServiceName>,
    /// Which paths the session with it may take (`None`: the daemon's `route`).
    pub route: Option<RoutePolicy>,
}

/// Where a daemon registers and looks services up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RendezvousConfig {
    /// The server's static public key, pinned: a server with another key is never trusted.
    pub server_key: PublicKey,
    /// The server's UDP address.
    pub server_addr: SocketAddr,
    /// Our access token: a token the server was started with, or a token of its directory
    /// (a path's server or client token, or a master token).
    pub token: String,
    /// More tokens of the server's directory, each for one path (its server token to expose
    /// it, its client token to connect to it); at most 4.
    pub path_tokens: Vec<String>,
    /// Local addresses peers on our own network may reach us at (LAN short-cut).
    pub host_candidates: Vec<SocketAddr>,
    /// Which paths sessions to introduced peers may take; the server relays. The default for
    /// services that set none of their own.
    pub route: RoutePolicy,
    /// Route policies of services we connect to that set their own (a `[[connect]]`'s
    /// `route`), instead of [`Self::route`]. Combined with the exposing side's, the stricter
    /// winning; a connect whose policy and the exposing side's share no path fails with
    /// [`crate::Event::ServiceFailed`] saying why.
    pub connect_routes: BTreeMap<ServiceName, RoutePolicy>,
    /// Daemons to meet in peer mode (a config's `[[peer]]`), by key: the node asks the
    /// server to introduce each at start, and again whenever the other side did not ask in
    /// time, until it does; what each may reach here. At most [`MAX_PEERS`].
    pub peers: BTreeMap<PublicKey, PeerConfig>,
    /// Services reached through a daemon met in peer mode, by its key, with no lookup: a
    /// connection for one waits for the meeting ([`crate::Event::PeerReady`]), and fails
    /// with the meeting's error.
    pub peer_services: BTreeMap<ServiceName, PublicKey>,
    /// The destination key each service must have (ssh known_hosts): given up front, or
    /// remembered from an earlier first use. A lookup the server answers with another key
    /// fails instead of connecting; a service with no pin is pinned at its first
    /// introduction ([`crate::Event::ServiceKeyPinned`] hands the pin out to be stored).
    pub pinned: BTreeMap<ServiceName, PublicKey>,
    /// Ask the home router for a port (PCP, else NAT-PMP) and announce it as a candidate;
    /// `None`: off. The runtime finds the default gateway and our address toward it;
    /// [`crate::node::NodeConfig::start`] fills in the bound port.
    pub port_mapping: Option<PortMappingConfig>,
}

/// A PCP or NAT-PMP mapping of our UDP port (see [`RendezvousConfig::port_mapping`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMappingConfig {
    /// The IPv4 default gateway, asked on UDP port 5351.
    pub gateway: std::net::Ipv4Addr,
    /// Our address on the way to the gateway, which a PCP request carries (the router checks
    /// it against the packet's source); `None`: NAT-PMP only.
    pub client: Option<std::net::Ipv4Addr>,
    /// Our UDP port: what the mapping forwards to.
    pub internal_port: u16,
    /// The runtime asks with UPnP-IGD when PCP and NAT-PMP fail (it drives a
    /// [`crate::upnp::UpnpClient`] when [`crate::Endpoint::upnp`] says so); their failure is
    /// then not reported, UPnP's outcome is.
    pub upnp: bool,
}

impl RendezvousConfig {
    /// Registration with the server at `server_addr` holding `server_key`, with `token`, no
    /// host candidates and the default route policy.
    pub fn new(server_key: PublicKey, server_addr: SocketAddr, token: impl Into<String>) -> Self {
        Self {
            server_key,
            server_addr,
            token: token.into(),
            path_tokens: Vec::new(),
            host_candidates: Vec::new(),
            route: RoutePolicy::Any,
            connect_routes: BTreeMap::new(),
            peers: BTreeMap::new(),
            peer_services: BTreeMap::new(),
            pinned: BTreeMap::new(),
            port_mapping: None,
        }
    }

    /// Fills [`Self::host_candidates`] when the configuration names none: our LAN address,
    /// for peers behind the same NAT (which may not hairpin). That is the `bound` UDP address,
    /// or, when bound to the wildcard, the local address the OS routes toward the server from,
    /// which `route_toward` asks the OS for (the runtime's only part; it is called only then).
    /// Nothing is added when that address is a loopback or wildcard one, or unknown.
    pub fn default_host_candidates(
        &mut self,
        bound: SocketAddr,
        route_toward: impl FnOnce(SocketAddr) -> Option<IpAddr>,
    ) {
        if !self.host_candidates.is_empty() {
            return;
        }
        let ip = if bound.ip().is_unspecified() {
            match route_toward(self.server_addr) {
                Some(ip) => ip,
                None => return,
            }
        } else {
            bound.ip()
        };
        if !ip.is_loopback() && !ip.is_unspecified() {
            self.host_candidates.push(SocketAddr::new(ip, bound.port()));
        }
    }
}

#[cfg(test)]
mod host_candidate_tests {
    use super::*;

    fn config() -> RendezvousConfig {
        let key = SecretKey::from_bytes([3; 32]).public_key();
        RendezvousConfig::new(key, "192.0.2.1:7000".parse().unwrap(), "t")
    }

    #[test]
    fn a_specific_bound_address_is_the_candidate_without_asking_the_os() {
        let mut c = config();
        c.default_host_candidates("10.0.0.5:4000".parse().unwrap(), |_| {
            panic!("no OS query for a specific address")
        });
        assert_eq!(c.host_candidates, vec!["10.0.0.5:4000".parse().unwrap()]);
    }

    #[test]
    fn a_wildcard_bind_uses_the_routed_address_with_our_port() {
        let mut c = config();
        c.default_host_candidates("0.0.0.0:4000".parse().unwrap(), |server| {
            assert_eq!(server, "192.0.2.1:7000".parse().unwrap());
            Some("10.1.2.3".parse().unwrap())
        });
        assert_eq!(c.host_candidates, vec!["10.1.2.3:4000".parse().unwrap()]);
    }

    #[test]
    fn loopback_unknown_or_configured_adds_nothing() {
        let mut c = config();
        c.default_host_candidates("127.0.0.1:4000".parse().unwrap(), |_| None);
        assert!(c.host_candidates.is_empty());
        c.default_host_candidates("0.0.0.0:4000".parse().unwrap(), |_| None);
        assert!(c.host_candidates.is_empty());
        let set: SocketAddr = "10.9.9.9:1".parse().unwrap();
        c.host_candidates = vec![set];
        c.default_host_candidates("10.0.0.5:4000".parse().unwrap(), |_| None);
        assert_eq!(c.host_candidates, vec![set]);
    }
}

/// Everything an [`crate::Endpoint`] needs besides time and a seed.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our static key: our identity.
    pub secret_key: SecretKey,
    /// Who may connect to us.
    pub peers: PeerPolicy,
    /// Session timing.
    pub session: SessionConfig,
    /// Streams: windows, buffers, congestion control. Its `max_packet_size` is derived from
    /// `max_udp_payload`.
    pub stream: StreamConfig,
    /// Largest UDP payload we send. 1200 bytes fits every IPv6 path and nearly every IPv4
    /// path, including tunnels.
    pub max_udp_payload: usize,
    /// Largest UDP payload path MTU discovery tries on a direct path (RFC 8899: probes that
    /// are acknowledged raise the size of stream packets; the relay is always sent
    /// `max_udp_payload`). 1452 is what a 1500-byte Ethernet MTU carries over IPv6 (IPv4
    /// carries 20 bytes more); at or below `max_udp_payload`, discovery is off.
    pub max_udp_payload_probe: usize,
    /// Answer STUN Binding requests on our port, as a rendezvous server does, so that any
    /// standard STUN client can learn its public address from us.
    pub answer_stun: bool,
    /// The rendezvous server's second STUN address (`burrow server --netcheck-udp`), named
    /// in its STUN answers as RFC 5780's OTHER-ADDRESS so that `burrow netcheck` finds it.
    pub stun_other_address: Option<SocketAddr>,
    /// Be a daemon registered with this rendezvous server: the endpoint keeps a session to it,
    /// publishes what it exposes, and resolves `connect_service` through it.
    pub rendezvous: Option<RendezvousConfig>,
    /// Be a rendezvous server with this configuration.
    pub server: Option<ServerConfig>,
}

impl Config {
    /// A configuration with default timing that accepts any peer key.
    pub fn new(secret_key: SecretKey) -> Self {
        Self {
            secret_key,
            peers: PeerPolicy::AnyKey,
            session: SessionConfig::default(),
            stream: StreamConfig::default(),
            max_udp_payload: 1200,
            max_udp_payload_probe: 1452,
            answer_stun: false,
            stun_other_address: None,
            rendezvous: None,
            server: None,
        }
    }

    /// A rendezvous server's configuration: any peer key, STUN answered, no streams from
    /// daemons, `server` settings.
    pub fn server(secret_key: SecretKey, server: ServerConfig) -> Self {
        let mut config = Self {
            answer_stun: true,
            server: Some(server),
            ..Self::new(secret_key)
        };
        // Daemons talk to the server in rendezvous and relay payloads, never in streams: a
        // stream frame from one is a protocol violation, and no session costs the server a
        // stream buffer.
        config.stream.max_concurrent_streams = 0;
        config
    }

    /// A daemon's configuration, registered with `rendezvous`: only peers the server
    /// introduces (or that we meet) are admitted, each to what it was introduced for.
    pub fn daemon(secret_key: SecretKey, rendezvous: RendezvousConfig) -> Self {
        Self {
            peers: PeerPolicy::Authorized(BTreeSet::new()),
            rendezvous: Some(rendezvous),
            ..Self::new(secret_key)
        }
    }
}
