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
mod event_loop;
mod udp;

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use burrow_core::PublicKey;
use burrow_core::node;
use burrow_core::rendezvous::ServiceName;
use smol::Async;
use smol::channel::{self, Receiver, Sender};

pub use burrow_core::node::{NodeConfig, StartError, Stopped};
pub use burrow_core::status::{ConnInfo, PeerInfo, ServiceInfo, Status};

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
        let bind_err = move |source| StartError::Bind {
            addr: config.bind,
            source,
        };
        let socket = Async::<std::net::UdpSocket>::bind(config.bind).map_err(bind_err)?;
        let udp_addr = socket.get_ref().local_addr().map_err(bind_err)?;
        let listeners = node::bind_listeners(
            &config.connect,
            |addr| Async::<std::net::TcpListener>::bind(addr).map(smol::net::TcpListener::from),
            smol::net::TcpListener::local_addr,
        )?;
        let seed = node::seed(getrandom::fill)?;
        let clock = (Instant::now(), SystemTime::now());
        let node = config.start(udp_addr, listeners, seed, clock, local_ip_toward)?;
        let (public_key, listeners) = (node.public_key, node.listen_addrs.clone());
        let (commands, rx) = channel::bounded(16);
        let (done, stopped) = channel::bounded(1);
        let parts = event_loop::Parts {
            node,
            socket,
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
            listeners,
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
