//! A node's start-up: its configuration ([`NodeConfig`]), why it does not start
//! ([`StartError`]) or no longer answers ([`Stopped`]), and the sequence once the runtime has
//! bound its sockets ([`bind_listeners`], [`seed`], then [`NodeConfig::start`]).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::crypto::PublicKey;
use crate::endpoint::Endpoint;
use crate::error::ServiceError;
use crate::forward::udp::{UdpConfig, UdpForwarder};
use crate::forward::{ExposeOptions, ForwardConfig, Forwarder, ListenerId};
use crate::node::Node;
use crate::rendezvous::ServiceName;

/// What a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The endpoint's configuration (daemon, server, or plain peer).
    pub endpoint: Config,
    /// The UDP address to bind; port 0 picks one.
    pub bind: SocketAddr,
    /// Services to expose: name and local target (`host:port`, or `unix:PATH` for a unix
    /// socket).
    pub expose: Vec<(ServiceName, String)>,
    /// Services to reach: name and the local TCP address to listen on for it (port 0 picks
    /// one; the runtime's node handle tells which).
    pub connect: Vec<(ServiceName, SocketAddr)>,
    /// How each exposed service is forwarded, by name; a service not listed is plain TCP.
    pub expose_options: Vec<(ServiceName, ExposeOptions)>,
    /// UDP services to reach: name and the local UDP address to listen on for it. The
    /// runtime binds these ([`bind_listeners`] with a UDP bind) and hands them to
    /// [`Node::listen_udp`] after [`Self::start`].
    pub connect_udp: Vec<(ServiceName, SocketAddr)>,
    /// Forwarder tuning.
    pub forward: ForwardConfig,
    /// UDP forwarding tuning: idle timeout, flows per service.
    pub udp: UdpConfig,
    /// The daemon's state directory, where [`super::Output::Save`] writes core's state
    /// (`known_services`); `None` keeps it in memory only.
    pub state_dir: Option<PathBuf>,
}

impl NodeConfig {
    /// A node bound to `bind` that exposes and connects nothing yet.
    pub fn new(endpoint: Config, bind: SocketAddr) -> Self {
        Self {
            endpoint,
            bind,
            expose: Vec::new(),
            connect: Vec::new(),
            expose_options: Vec::new(),
            connect_udp: Vec::new(),
            forward: ForwardConfig::default(),
            udp: UdpConfig::default(),
            state_dir: None,
        }
    }

    /// Builds the sans-IO [`Node`] once the runtime has bound its UDP socket (at `udp_addr`)
    /// and its `listeners` (from [`bind_listeners`]): fills the rendezvous configuration's
    /// default host candidates (`local_ip_toward` is the OS route query, see
    /// [`crate::config::RendezvousConfig::default_host_candidates`]), creates the [`Endpoint`]
    /// from `seed` and `clock`, exposes every service, and registers each listener with a new
    /// [`Forwarder`]. `clock` is the monotonic and the wall-clock time, read together.
    pub fn start<L>(
        self,
        udp_addr: SocketAddr,
        listeners: Vec<Listener<L>>,
        seed: [u8; 32],
        clock: (Instant, SystemTime),
        local_ip_toward: impl FnOnce(SocketAddr) -> Option<IpAddr>,
    ) -> Result<Started<L>, StartError> {
        let (now, wall) = clock;
        let unix_now = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let mut endpoint_config = self.endpoint;
        if let Some(r) = endpoint_config.rendezvous.as_mut() {
            r.default_host_candidates(udp_addr, local_ip_toward);
            if let Some(pm) = r.port_mapping.as_mut() {
                pm.internal_port = udp_addr.port();
            }
        }
        let known = endpoint_config
            .rendezvous
            .as_ref()
            .map(|r| r.pinned.clone())
            .unwrap_or_default();
        let mut endpoint = Endpoint::new(endpoint_config, seed, now, unix_now);
        let options = |name: &ServiceName| {
            let found = self.expose_options.iter().find(|(n, _)| n == name);
            found.map(|(_, o)| *o).unwrap_or_default()
        };
        for (service, target) in &self.expose {
            endpoint
                .expose_with(now, service.clone(), target.clone(), options(service))
                .map_err(|source| StartError::Expose {
                    service: service.clone(),
                    source,
                })?;
        }
        // Both sides of a `[[peer]]` ask at start; each waits for the other.
        endpoint.meet_configured(now);
        let public_key = endpoint.public_key();
        let mut forwarder = Forwarder::new(self.forward);
        let mut listen = Vec::new();
        let mut accept = Vec::new();
        for listener in listeners {
            let id = forwarder.listen(listener.service.clone());
            let addr = listener.addr.unwrap_or(udp_addr);
            listen.push((listener.service, addr, id));
            accept.push((id, listener.socket));
        }
        let listen_addrs = listen.iter().map(|(s, a, _)| (s.clone(), *a)).collect();
        let options = self.expose_options.into_iter().collect();
        let mut node = Node::new(now, endpoint, forwarder, udp_addr, self.expose, listen)
            .with_state(self.state_dir, known)
            .with_udp(UdpForwarder::new(self.udp), options);
        node.start_sni();
        Ok(Started {
            node,
            public_key,
            udp_addr,
            listeners: accept,
            listen_addrs,
        })
    }
}

/// A local listener for a connected service, as [`bind_listeners`] bound it.
#[derive(Debug)]
pub struct Listener<L> {
    /// The service it is for.
    pub service: ServiceName,
    /// The runtime's listening socket.
    pub socket: L,
    /// The address it is bound to, if the OS said.
    pub addr: Option<SocketAddr>,
}

/// Binds a listener for each of `connect` (service, address) with the runtime's `bind`, and
/// asks each for its address with `local_addr`; the first failure is a
/// [`StartError::Listen`].
pub fn bind_listeners<L>(
    connect: &[(ServiceName, SocketAddr)],
    mut bind: impl FnMut(SocketAddr) -> io::Result<L>,
    local_addr: impl Fn(&L) -> io::Result<SocketAddr>,
) -> Result<Vec<Listener<L>>, StartError> {
    connect
        .iter()
        .map(|(service, addr)| {
            let socket = bind(*addr).map_err(|source| StartError::Listen {
                service: service.clone(),
                addr: *addr,
                source,
            })?;
            Ok(Listener {
                service: service.clone(),
                addr: local_addr(&socket).ok(),
                socket,
            })
        })
        .collect()
}

/// The endpoint's seed, from the OS randomness source `fill` (such as `getrandom::fill`); its
/// failure is a [`StartError::Random`].
pub fn seed<E: fmt::Display>(
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<[u8; 32], StartError> {
    let mut seed = [0u8; 32];
    fill(&mut seed).map_err(|e| StartError::Random(e.to_string()))?;
    Ok(seed)
}

/// What [`NodeConfig::start`] built, for the runtime's event loop.
#[derive(Debug)]
pub struct Started<L> {
    /// The node: the endpoint with the services exposed, and the forwarder with a listener for
    /// each connected service.
    pub node: Node,
    /// The endpoint's static public key.
    pub public_key: PublicKey,
    /// The bound UDP address.
    pub udp_addr: SocketAddr,
    /// Each listening socket with the forwarder's id for it.
    pub listeners: Vec<(ListenerId, L)>,
    /// Each connected service and the local address its listener is bound to (the UDP
    /// address when the OS did not say).
    pub listen_addrs: Vec<(ServiceName, SocketAddr)>,
}

/// Why a node did not start. Each says what to change.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The UDP socket could not be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// A local listener could not be bound.
    Listen {
        /// The service it was for.
        service: ServiceName,
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// A service could not be exposed.
    Expose {
        /// The service.
        service: ServiceName,
        /// Why.
        source: ServiceError,
    },
    /// The OS gave no randomness for the endpoint's seed.
    Random(String),
}

/// What to do about a failed bind, for the kinds of failure that have an obvious fix.
fn io_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            " (another program holds the port: stop it or choose another port, or port 0)"
        }
        io::ErrorKind::AddrNotAvailable => {
            " (no local interface has that address: use 0.0.0.0 or 127.0.0.1)"
        }
        io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need privileges: choose a higher port)"
        }
        _ => "",
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bind { addr, source } => {
                write!(f, "cannot bind UDP {addr}: {source}{}", io_hint(source))
            }
            Self::Listen {
                service,
                addr,
                source,
            } => write!(
                f,
                "cannot listen on {addr} for {service}: {source}{}",
                io_hint(source)
            ),
            Self::Expose { service, source } => write!(f, "cannot expose {service}: {source}"),
            Self::Random(why) => write!(f, "no randomness from the OS: {why}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. } | Self::Listen { source, .. } => Some(source),
            Self::Expose { source, .. } => Some(source),
            Self::Random(_) => None,
        }
    }
}

/// The node's event loop has ended (shut down, or its socket failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the node has stopped")
    }
}

impl std::error::Error for Stopped {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_say_what_to_change() {
        let e = StartError::Bind {
            addr: "127.0.0.1:1".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert!(e.to_string().contains("choose another port"), "{e}");
    }
}
