//! # burrow-smol: burrow's event loop on smol / async-io
//!
//! One event-loop future per [`burrow_core::Endpoint`], run on its own thread with
//! `smol::block_on`; local connections have small reader and writer tasks on smol's
//! executor. The loop owns the UDP socket and a [`burrow_core::forward::Forwarder`] and
//! follows the core's run-loop contract: send what the endpoint wants sent (applying each
//! datagram's TTL), perform what the forwarder asks of local sockets, wait (`future::or`) for a
//! datagram, local I/O, a command or the endpoint's deadline, read the clock once, feed the
//! core. There is no protocol logic here. The handle's methods are futures that run on any
//! executor (or `smol::block_on`).
//!
//! ```no_run
//! # fn run(config: burrow_core::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use burrow_smol::{Node, NodeConfig};
//! smol::block_on(async {
//!     let node = Node::spawn(NodeConfig::new(config, "0.0.0.0:0".parse()?))?;
//!     println!("UDP on {}", node.udp_addr());
//!     let status = node.status().await?;
//!     node.shutdown().await;
//!     Ok(())
//! })
//! # }
//! ```

mod conn;
mod errors;
mod event_loop;
mod udp;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use burrow_core::forward::{ForwardConfig, Forwarder};
use burrow_core::rendezvous::ServiceName;
use burrow_core::{Config, Endpoint, PublicKey};
use smol::Async;
use smol::channel::{self, Receiver, Sender};

pub use burrow_core::status::{ConnInfo, PeerInfo, ServiceInfo, Status};
pub use errors::{StartError, Stopped};

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

/// Requests from a handle to the node's loop.
pub(crate) enum Command {
    Status(Sender<Status>),
    StunProbe(SocketAddr, Sender<Option<SocketAddr>>),
    Shutdown,
}

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Binds the UDP socket and the listeners, exposes the services, and starts the node's
    /// thread. Needs no executor of the caller's.
    pub fn spawn(config: NodeConfig) -> Result<NodeHandle, StartError> {
        let bind_err = |source| StartError::Bind {
            addr: config.bind,
            source,
        };
        let socket = Async::<std::net::UdpSocket>::bind(config.bind).map_err(bind_err)?;
        let udp_addr = socket.get_ref().local_addr().map_err(bind_err)?;
        let mut listeners = Vec::new();
        for (service, addr) in &config.connect {
            let listener = Async::<std::net::TcpListener>::bind(*addr).map_err(|source| {
                StartError::Listen {
                    service: service.clone(),
                    addr: *addr,
                    source,
                }
            })?;
            listeners.push((service.clone(), smol::net::TcpListener::from(listener)));
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
        let (commands, rx) = channel::bounded(16);
        let (done, stopped) = channel::bounded(1);
        let parts = event_loop::Parts {
            endpoint,
            forwarder,
            socket,
            listeners: accept,
            exposed: config.expose.clone(),
            listen_addrs: bound.clone(),
            commands: rx,
            done,
        };
        std::thread::Builder::new()
            .name("burrow-smol".into())
            .spawn(move || smol::block_on(event_loop::run(parts)))
            .map_err(bind_err)?;
        Ok(NodeHandle {
            udp_addr,
            public_key,
            listeners: bound,
            control: NodeControl { commands },
            stopped,
        })
    }
}

/// A running node: its addresses, its status, and how to stop it. Dropping it (and every
/// [`NodeControl`]) stops the node.
#[derive(Debug)]
pub struct NodeHandle {
    udp_addr: SocketAddr,
    public_key: PublicKey,
    listeners: Vec<(ServiceName, SocketAddr)>,
    control: NodeControl,
    /// Closes when the loop ends.
    stopped: Receiver<()>,
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
        self.control.status().await
    }

    /// A cloneable handle for status and probes, for tasks such as a control socket.
    pub fn control(&self) -> NodeControl {
        self.control.clone()
    }

    /// Whether the node's loop has ended.
    pub fn is_stopped(&self) -> bool {
        self.stopped.is_closed()
    }

    /// Waits until the node's loop ends (it runs until [`Self::shutdown`]).
    pub async fn stopped(&self) {
        let _ = self.stopped.recv().await;
    }

    /// Stops the node: listeners close, local connections drop, the socket closes. Returns
    /// when the loop has ended.
    pub async fn shutdown(self) {
        let _ = self.control.commands.send(Command::Shutdown).await;
        self.stopped().await;
    }
}

/// Asks a running node for its status or a STUN probe; cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeControl {
    commands: Sender<Command>,
}

impl NodeControl {
    async fn ask<T>(&self, command: impl FnOnce(Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx) = channel::bounded(1);
        self.commands.send(command(tx)).await.map_err(|_| Stopped)?;
        rx.recv().await.map_err(|_| Stopped)
    }

    /// A snapshot of sessions, services and connections.
    pub async fn status(&self) -> Result<Status, Stopped> {
        self.ask(Command::Status).await
    }

    /// Asks the STUN server at `server` for our reflexive address: `Some(mapped)` if it
    /// answered, `None` after the core's retransmissions (at most 9.5 s).
    pub async fn stun_probe(&self, server: SocketAddr) -> Result<Option<SocketAddr>, Stopped> {
        self.ask(|tx| Command::StunProbe(server, tx)).await
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
