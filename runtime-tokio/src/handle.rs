//! Starting a node on an async [`Runtime`], and the handle that asks it for status, STUN
//! probes and shutdown. The same types on every async runtime; their methods are futures that
//! run on any executor.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Instant, SystemTime};

use async_channel::{Receiver, Sender, bounded};
use burrow_core::PublicKey;
use burrow_core::node::{self, NodeConfig, Services, StartError, Started, Stopped, Summary};
use burrow_core::rendezvous::Grants;
use burrow_core::rendezvous::directory::Attachment;

/// A path the tenant's master attached to this daemon (`Some`) or detached (`None`).
pub type MasterAttach = (ServiceName, Option<Attachment>);
use burrow_core::rendezvous::ServiceName;
use burrow_core::rendezvous::directory::{AdminAnswer, AdminCommand, DirectoryChange};
use burrow_core::status::Status;
use burrow_core::upnp::{Turn, UpnpEvent};
use socket2::SockRef;

use crate::driver::{self, Parts};
use crate::runtime::Runtime;

/// Requests from a handle to the node's loop, answered on async channels.
pub(crate) type Command = crate::requests::Request<crate::requests::AsyncChannel>;

/// The node's loop, for a runtime's `spawn`.
pub type LoopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Binds the UDP socket and the listeners, exposes the services, and hands the node's loop to
/// `spawn` (which runs it on `R`, on a task or a thread of its own).
pub fn start<R: Runtime>(
    config: NodeConfig,
    spawn: impl FnOnce(LoopFuture) -> io::Result<()>,
) -> Result<NodeHandle, StartError> {
    let bind_err = move |source| StartError::Bind {
        addr: config.bind,
        source,
    };
    let socket = std::net::UdpSocket::bind(config.bind).map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    let udp_addr = socket.local_addr().map_err(bind_err)?;
    let shared_socket = socket.try_clone().map_err(bind_err)?;
    let socket = R::wrap_udp(socket).map_err(bind_err)?;
    let listeners = bind_listeners::<R>(&config.connect)?;
    let udp_listeners = bind_udp_listeners::<R>(&config.connect_udp)?;
    let seed = node::seed(getrandom::fill)?;
    let clock = (Instant::now(), SystemTime::now());
    let started = config.start(udp_addr, listeners, seed, clock, crate::local_ip_toward)?;
    let Started {
        mut node,
        public_key,
        listeners,
        mut listen_addrs,
        ..
    } = started;
    listen_addrs.extend(
        udp_listeners
            .iter()
            .map(|l| (l.service.clone(), l.addr.unwrap_or(udp_addr))),
    );
    let udp_listeners = node.listen_udp(udp_listeners);
    let (commands, rx) = bounded(16);
    let (done, stopped) = bounded(1);
    let (directory, changes) = async_channel::unbounded();
    let (attachments, attached) = async_channel::unbounded();
    let (hooks, hook_events) = async_channel::unbounded();
    let parts = Parts::<R> {
        socket,
        listeners,
        udp_listeners,
        commands: rx,
        done,
        directory,
        attachments,
        hooks,
    };
    spawn(Box::pin(driver::run(node, parts))).map_err(bind_err)?;
    Ok(NodeHandle {
        udp_addr,
        shared_socket,
        public_key,
        listeners: listen_addrs,
        control: NodeControl { commands },
        stopped,
        changes,
        attached,
        hook_events,
    })
}

/// Binds a listener on `R` for each of `connect`.
pub(crate) fn bind_listeners<R: Runtime>(
    connect: &[(ServiceName, SocketAddr)],
) -> Result<Vec<node::Listener<R::Listener>>, StartError> {
    node::bind_listeners(
        connect,
        |addr| {
            let listener = crate::tcp_listener(addr)?;
            R::wrap_listener(listener)
        },
        |l: &R::Listener| {
            let addr = SockRef::from(l).local_addr()?;
            addr.as_socket()
                .ok_or_else(|| io::Error::other("not an IP socket"))
        },
    )
}

/// Binds a UDP listener socket on `R` for each of `connect` (UDP services to reach).
pub(crate) fn bind_udp_listeners<R: Runtime>(
    connect: &[(ServiceName, SocketAddr)],
) -> Result<Vec<node::Listener<R::Udp>>, StartError> {
    node::bind_listeners(
        connect,
        |addr| {
            let socket = std::net::UdpSocket::bind(addr)?;
            socket.set_nonblocking(true)?;
            R::wrap_udp(socket)
        },
        |s: &R::Udp| {
            let addr = SockRef::from(s).local_addr()?;
            addr.as_socket()
                .ok_or_else(|| io::Error::other("not an IP socket"))
        },
    )
}

/// A running node: its addresses, its status, and how to stop it. Dropping it (and every
/// [`NodeControl`]) stops the node.
#[derive(Debug)]
pub struct NodeHandle {
    udp_addr: SocketAddr,
    /// A second handle on the node's UDP socket (see [`NodeHandle::udp_socket`]).
    shared_socket: std::net::UdpSocket,
    public_key: PublicKey,
    listeners: Vec<(ServiceName, SocketAddr)>,
    control: NodeControl,
    /// Closes when the loop ends.
    stopped: Receiver<()>,
    /// The rendezvous server's directory changes, in order (a server's only).
    changes: Receiver<DirectoryChange>,
    /// Paths the tenant's master attached or detached (a daemon's only).
    attached: Receiver<MasterAttach>,
    /// When configured services and peers came up, moved or went down (a daemon's only).
    hook_events: Receiver<node::HookEvent>,
}

impl NodeHandle {
    /// The bound UDP address (with the real port when port 0 was asked for).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// Another handle on the node's UDP socket, to send from its address outside the node
    /// (a server's second STUN socket answers change requests from the main address). It is
    /// non-blocking, as the node's own.
    pub fn udp_socket(&self) -> io::Result<std::net::UdpSocket> {
        self.shared_socket.try_clone()
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

    /// The rendezvous server's directory changes, in the order they were made, for the
    /// caller to store (see `burrow_core::rendezvous::directory::DirectoryStore`). Only a
    /// server makes any; they wait here until received.
    pub fn directory_changes(&self) -> Receiver<DirectoryChange> {
        self.changes.clone()
    }

    /// Paths the tenant's master attached to this daemon (`Some`) or detached (`None`), in
    /// order, for the caller to run as `burrow attach`/`detach` would. They wait here until
    /// received.
    pub fn master_attachments(&self) -> Receiver<MasterAttach> {
        self.attached.clone()
    }

    /// When configured services and peers came up on a session, moved path, or went down,
    /// in order, for the caller to run their hooks. They wait here until received.
    pub fn hook_events(&self) -> Receiver<node::HookEvent> {
        self.hook_events.clone()
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
        let (tx, rx) = bounded(1);
        self.commands.send(command(tx)).await.map_err(|_| Stopped)?;
        rx.recv().await.map_err(|_| Stopped)
    }

    /// A snapshot of sessions, services and connections.
    pub async fn status(&self) -> Result<Status, Stopped> {
        self.ask(Command::Status).await
    }

    /// Asks the STUN server at `server` (a burrow server answers STUN) for our reflexive
    /// address: `Some(mapped)` if it answered, `None` after the core's retransmissions (at most
    /// 9.5 s). Tells "the server is down or filtered" from "it is up but our handshake fails"
    /// (a wrong pinned key).
    pub async fn stun_probe(&self, server: SocketAddr) -> Result<Option<SocketAddr>, Stopped> {
        self.ask(|tx| Command::StunProbe(server, tx)).await
    }

    /// Sends a tenant master's `command` (with the `master` token) to the daemon's rendezvous
    /// server and waits for the answer, or for why it failed (refused, not answered within
    /// the client's retries, or the node is not a daemon).
    pub async fn admin(
        &self,
        master: String,
        command: AdminCommand,
    ) -> Result<Result<AdminAnswer, String>, Stopped> {
        self.ask(|tx| Command::Admin(master, command, tx)).await
    }

    /// Presents `tokens` as the daemon's path tokens from now on (`burrow import`) and waits
    /// for what the server granted, or for why the tokens were refused (the previous ones are
    /// in use again then).
    pub async fn set_path_tokens(
        &self,
        tokens: Vec<String>,
    ) -> Result<Result<Grants, String>, Stopped> {
        self.ask(|tx| Command::SetPathTokens(tokens, tx)).await
    }

    /// Tells the daemon's rendezvous server that its attachment of `service` failed, with
    /// why, or runs (`None`). See [`burrow_core::node::Node::report_attach`].
    pub async fn report_attach(
        &self,
        service: ServiceName,
        failed: Option<String>,
    ) -> Result<(), Stopped> {
        self.ask(|tx| Command::ReportAttach(service, failed, tx))
            .await
    }

    /// The UPnP-IGD driver's report, and what it does next. See
    /// [`burrow_core::node::Node::upnp`].
    pub async fn upnp(&self, report: Option<UpnpEvent>) -> Result<Turn, Stopped> {
        self.ask(|tx| Command::Upnp(report, tx)).await
    }

    /// Pings `target` (a connected service or a peer's key): the path that answered and the
    /// round trip, or why there is none. See [`burrow_core::node::Node::ping`].
    pub async fn ping(&self, target: String) -> Result<node::Pong, Stopped> {
        self.ask(|tx| Command::Ping(target, tx)).await
    }

    /// Makes the node run `services` (a reloaded config's): services no longer listed stop
    /// (their listeners close, their connections reset), new ones start, unchanged ones keep
    /// their connections. New listeners are bound first: if one cannot be, nothing changes
    /// and the error says why. See [`burrow_core::node::Node::plan`].
    pub async fn reload(&self, services: Services) -> Result<Result<Summary, StartError>, Stopped> {
        self.ask(|tx| Command::Reload(services, tx)).await
    }
}
