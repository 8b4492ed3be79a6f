//! # burrow-tokio: burrow's event loop on tokio
//!
//! One task per [`burrow_core::Endpoint`]: it owns the UDP socket, the local TCP listeners and
//! connections, and a [`burrow_core::forward::Forwarder`]. It follows the core's run-loop
//! contract: send what the endpoint wants sent (applying each datagram's TTL), perform what
//! the forwarder asks of local sockets, sleep until a datagram, local I/O, a command or the
//! endpoint's deadline, read the clock once, feed the core. There is no protocol logic here.
//!
//! ```no_run
//! # async fn run(config: burrow_core::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use burrow_tokio::{Node, NodeConfig};
//! let node = Node::spawn(NodeConfig::new(config, "0.0.0.0:0".parse()?))?;
//! println!("UDP on {}", node.udp_addr());
//! let status = node.status().await?;
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod conn;
mod event_loop;
mod status;
mod udp;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use burrow_core::forward::{ForwardConfig, Forwarder};
use burrow_core::rendezvous::ServiceName;
use burrow_core::{Config, Endpoint, PublicKey, ServiceError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use status::{ConnInfo, PeerInfo, ServiceInfo, Status};

/// What a [`Node`] runs.
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
    /// one; [`NodeHandle::listeners`] tells which).
    pub connect: Vec<(ServiceName, SocketAddr)>,
    /// Forwarder tuning.
    pub forward: ForwardConfig,
}

impl NodeConfig {
    /// A node bound to `bind` that exposes and connects nothing yet.
    pub fn new(endpoint: Config, bind: SocketAddr) -> Self {
        Self {
            endpoint,
            bind,
            expose: Vec::new(),
            connect: Vec::new(),
            forward: ForwardConfig::default(),
        }
    }
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
        source: std::io::Error,
    },
    /// A local listener could not be bound.
    Listen {
        /// The service it was for.
        service: ServiceName,
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
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

fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another program holds the port: stop it or choose another port, or port 0)"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            " (no local interface has that address: use 0.0.0.0 or 127.0.0.1)"
        }
        std::io::ErrorKind::PermissionDenied => {
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

/// The node's task has ended (shut down, or its socket failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the node has stopped")
    }
}

impl std::error::Error for Stopped {}

/// Requests from a [`NodeHandle`] to its task.
pub(crate) enum Command {
    Status(oneshot::Sender<Status>),
    StunProbe(SocketAddr, oneshot::Sender<Option<SocketAddr>>),
    Shutdown,
}

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Binds the UDP socket and the listeners, exposes the services, and spawns the node's
    /// task on the current tokio runtime. Must be called from within a tokio runtime.
    pub fn spawn(config: NodeConfig) -> Result<NodeHandle, StartError> {
        let socket = udp::bind(config.bind).map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
        let udp_addr = socket.local_addr().map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
        let mut listeners = Vec::new();
        for (service, addr) in &config.connect {
            let listener = conn::listen(*addr).map_err(|source| StartError::Listen {
                service: service.clone(),
                addr: *addr,
                source,
            })?;
            listeners.push((service.clone(), listener));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| StartError::Random(e.to_string()))?;
        let now = Instant::now();
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let mut endpoint_config = config.endpoint;
        if let Some(r) = endpoint_config.rendezvous.as_mut() {
            r.default_host_candidates(udp_addr, local_ip_toward);
        }
        let mut endpoint = Endpoint::new(endpoint_config, seed, now, unix_now);
        for (service, target) in &config.expose {
            endpoint
                .expose(now, service.clone(), target.clone())
                .map_err(|source| StartError::Expose {
                    service: service.clone(),
                    source,
                })?;
        }
        let public_key = endpoint.public_key();
        let mut forwarder = Forwarder::new(config.forward);
        let mut bound = Vec::new();
        let mut accept = Vec::new();
        for (service, listener) in listeners {
            let id = forwarder.listen(service.clone());
            let addr = listener.local_addr().unwrap_or(udp_addr);
            bound.push((service, addr));
            accept.push((id, listener));
        }
        let (commands, rx) = mpsc::channel(16);
        let exposed = config.expose.clone();
        let task = tokio::spawn(event_loop::run(event_loop::Parts {
            endpoint,
            forwarder,
            socket,
            listeners: accept,
            exposed,
            listen_addrs: bound.clone(),
            commands: rx,
        }));
        Ok(NodeHandle {
            udp_addr,
            public_key,
            listeners: bound,
            commands,
            task,
        })
    }
}

/// A running node: its addresses, its status, and how to stop it.
#[derive(Debug)]
pub struct NodeHandle {
    udp_addr: SocketAddr,
    public_key: PublicKey,
    listeners: Vec<(ServiceName, SocketAddr)>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl NodeHandle {
    /// The bound UDP address (with the real port when port 0 was asked for).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The endpoint's static public key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// Each connected service and the local address its listener is bound to.
    pub fn listeners(&self) -> &[(ServiceName, SocketAddr)] {
        &self.listeners
    }

    /// A snapshot of sessions, services and connections.
    pub async fn status(&self) -> Result<Status, Stopped> {
        self.control().status().await
    }

    /// A cloneable handle for status and probes, for tasks such as a control socket.
    pub fn control(&self) -> NodeControl {
        NodeControl {
            commands: self.commands.clone(),
        }
    }

    /// Waits until the node's task ends (it runs until [`Self::shutdown`]).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.task).await;
    }

    /// Whether the node's task has ended.
    pub fn is_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the node: listeners close, local connections drop, the socket closes. Returns
    /// when the task has ended.
    pub async fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown).await;
        let _ = self.task.await;
    }
}

/// Asks a running node for its status or a STUN probe; cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeControl {
    commands: mpsc::Sender<Command>,
}

impl NodeControl {
    /// A snapshot of sessions, services and connections.
    pub async fn status(&self) -> Result<Status, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Status(tx))
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
    /// Asks the STUN server at `server` (a burrow server answers STUN) for our reflexive
    /// address: `Some(mapped)` if it answered, `None` after the core's retransmissions (at most
    /// 9.5 s). Tells "the server is down or filtered" from "it is up but our handshake fails"
    /// (a wrong pinned key).
    pub async fn stun_probe(&self, server: SocketAddr) -> Result<Option<SocketAddr>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::StunProbe(server, tx))
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

/// The local address the OS routes toward `server` from, found by connecting a throwaway UDP
/// socket (which sends nothing); the OS query behind
/// [`burrow_core::config::RendezvousConfig::default_host_candidates`].
fn local_ip_toward(server: SocketAddr) -> Option<std::net::IpAddr> {
    let any: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(server).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}
