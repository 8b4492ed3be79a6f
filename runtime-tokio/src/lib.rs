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
mod udp;

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use burrow_core::PublicKey;
use burrow_core::node;
use burrow_core::rendezvous::ServiceName;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use burrow_core::node::{NodeConfig, StartError, Stopped};
pub use burrow_core::status::{ConnInfo, PeerInfo, ServiceInfo, Status};

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
        let bind_err = move |source| StartError::Bind {
            addr: config.bind,
            source,
        };
        let socket = udp::bind(config.bind).map_err(bind_err)?;
        let udp_addr = socket.local_addr().map_err(bind_err)?;
        let listeners =
            node::bind_listeners(&config.connect, conn::listen, TcpListener::local_addr)?;
        let seed = node::seed(getrandom::fill)?;
        let clock = (Instant::now(), SystemTime::now());
        let node = config.start(udp_addr, listeners, seed, clock, local_ip_toward)?;
        let (public_key, listeners) = (node.public_key, node.listen_addrs.clone());
        let (commands, rx) = mpsc::channel(16);
        let task = tokio::spawn(event_loop::run(node, socket, rx));
        Ok(NodeHandle {
            udp_addr,
            public_key,
            listeners,
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
