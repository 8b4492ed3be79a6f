//! # burrow-mio: burrow's driver on one mio poll loop
//!
//! The small-footprint runtime: one thread, one [`mio::Poll`], no async runtime. The thread
//! owns the UDP socket and the local TCP listeners and connections, and drives a sans-IO
//! [`burrow_core::node::Node`] the way core's crate docs say: send what the node wants sent
//! (in GSO batches through burrow-tokio's runtime-neutral [`burrow_tokio::udp`], applying each
//! datagram's TTL), perform what it asks of local sockets, poll with its deadline as the
//! timeout, read the clock once, feed the node. Host names of targets are looked up on a
//! thread of their own, never on the loop. There is no protocol logic here.
//!
//! ```no_run
//! # fn run(config: burrow_core::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use burrow_mio::{Node, NodeConfig};
//! let node = Node::spawn(NodeConfig::new(config, "0.0.0.0:0".parse()?))?;
//! println!("UDP on {}", node.udp_addr());
//! let status = node.status()?;
//! node.shutdown();
//! # Ok(()) }
//! ```

mod conn;
mod event_loop;
mod udp_flows;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use burrow_core::PublicKey;
use burrow_core::node;
use burrow_core::rendezvous::Grants;
use burrow_core::rendezvous::directory::Attachment;

/// A path the tenant's master attached to this daemon (`Some`) or detached (`None`).
pub type MasterAttach = (ServiceName, Option<Attachment>);
use burrow_core::rendezvous::ServiceName;
use burrow_core::rendezvous::directory::{AdminAnswer, AdminCommand, DirectoryChange};
use burrow_core::upnp::{Turn, UpnpEvent};
use burrow_tokio::local_ip_toward;
use mio::{Poll, Waker};

pub use burrow_core::node::{NodeConfig, Services, StartError, Stopped, Summary};
pub use burrow_core::status::{ConnInfo, PeerInfo, ServiceInfo, Status};

/// Requests from a handle to the node's thread, answered on std channels.
pub(crate) type Command = burrow_tokio::requests::Request<burrow_tokio::requests::StdChannel>;

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

/// Binds a UDP listener socket for each of `connect` (UDP services to reach).
pub(crate) fn bind_udp_listeners(
    connect: &[(burrow_core::rendezvous::ServiceName, SocketAddr)],
) -> Result<Vec<node::Listener<mio::net::UdpSocket>>, StartError> {
    node::bind_listeners(
        connect,
        |addr| {
            let socket = std::net::UdpSocket::bind(addr)?;
            socket.set_nonblocking(true)?;
            Ok(mio::net::UdpSocket::from_std(socket))
        },
        mio::net::UdpSocket::local_addr,
    )
}

/// A local service's listener, with the deep accept queue every runtime uses.
pub(crate) fn tcp_listener(addr: SocketAddr) -> std::io::Result<mio::net::TcpListener> {
    burrow_tokio::tcp_listener(addr).map(mio::net::TcpListener::from_std)
}

impl Node {
    /// Binds the UDP socket and the listeners, exposes the services, and starts the node's
    /// thread.
    pub fn spawn(config: NodeConfig) -> Result<NodeHandle, StartError> {
        let bind_err = move |source| StartError::Bind {
            addr: config.bind,
            source,
        };
        let socket = std::net::UdpSocket::bind(config.bind).map_err(bind_err)?;
        socket.set_nonblocking(true).map_err(bind_err)?;
        let udp_addr = socket.local_addr().map_err(bind_err)?;
        let shared_socket = socket.try_clone().map_err(bind_err)?;
        let socket = mio::net::UdpSocket::from_std(socket);
        let listeners = node::bind_listeners(
            &config.connect,
            tcp_listener,
            mio::net::TcpListener::local_addr,
        )?;
        let udp_listeners = bind_udp_listeners(&config.connect_udp)?;
        let poll = Poll::new().map_err(bind_err)?;
        let waker = Arc::new(Waker::new(poll.registry(), event_loop::WAKER).map_err(bind_err)?);
        let seed = node::seed(getrandom::fill)?;
        let clock = (Instant::now(), SystemTime::now());
        let started = config.start(udp_addr, listeners, seed, clock, local_ip_toward)?;
        let (public_key, mut listeners) = (started.public_key, started.listen_addrs);
        listeners.extend(
            udp_listeners
                .iter()
                .map(|l| (l.service.clone(), l.addr.unwrap_or(udp_addr))),
        );
        let mut node = started.node;
        let udp_listeners = node.listen_udp(udp_listeners);
        let (commands, rx) = mpsc::channel();
        let (directory, changes) = mpsc::channel();
        let (attachments, attached) = mpsc::channel();
        let (hooks, hook_events) = mpsc::channel();
        let parts = event_loop::Parts {
            directory,
            attachments,
            hooks,
            poll,
            waker: waker.clone(),
            node,
            socket,
            listeners: started.listeners,
            udp_listeners,
            commands: rx,
        };
        let thread = std::thread::Builder::new()
            .name("burrow-mio".into())
            .spawn(move || event_loop::run(parts))
            .map_err(bind_err)?;
        Ok(NodeHandle {
            udp_addr,
            shared_socket,
            public_key,
            listeners,
            control: NodeControl { commands, waker },
            thread: Some(thread),
            changes: Some(changes),
            attached: Some(attached),
            hook_events: Some(hook_events),
        })
    }
}

/// A running node: its addresses, its status, and how to stop it. Dropping it stops the node
/// without waiting.
#[derive(Debug)]
pub struct NodeHandle {
    udp_addr: SocketAddr,
    /// A second handle on the node's UDP socket (see [`NodeHandle::udp_socket`]).
    shared_socket: std::net::UdpSocket,
    public_key: PublicKey,
    listeners: Vec<(ServiceName, SocketAddr)>,
    control: NodeControl,
    thread: Option<JoinHandle<()>>,
    /// The rendezvous server's directory changes, until taken.
    changes: Option<Receiver<DirectoryChange>>,
    /// The master's attachments, until taken.
    attached: Option<Receiver<MasterAttach>>,
    /// Hook events, until taken.
    hook_events: Option<Receiver<burrow_core::node::HookEvent>>,
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
    pub fn status(&self) -> Result<Status, Stopped> {
        self.control.status()
    }

    /// A cloneable handle for status and probes, for threads such as a control socket.
    pub fn control(&self) -> NodeControl {
        self.control.clone()
    }

    /// The rendezvous server's directory changes, in the order they were made, for the
    /// caller to store (see `burrow_core::rendezvous::directory::DirectoryStore`); `None`
    /// after the first call. Only a server makes any.
    pub fn directory_changes(&mut self) -> Option<Receiver<DirectoryChange>> {
        self.changes.take()
    }

    /// Paths the tenant's master attached to this daemon (`Some`) or detached (`None`), in
    /// order, for the caller to run as `burrow attach`/`detach` would; `None` after the
    /// first call.
    pub fn master_attachments(&mut self) -> Option<Receiver<MasterAttach>> {
        self.attached.take()
    }

    /// When configured services and peers came up on a session, moved path, or went down,
    /// in order, for the caller to run their hooks; `None` after the first call.
    pub fn hook_events(&mut self) -> Option<Receiver<burrow_core::node::HookEvent>> {
        self.hook_events.take()
    }

    /// Whether the node's thread has ended.
    pub fn is_stopped(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits until the node's thread ends (it runs until [`Self::shutdown`]).
    pub fn wait(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops the node: listeners close, local connections drop, the socket closes. Returns
    /// when the thread has ended.
    pub fn shutdown(mut self) {
        self.control.send(Command::Shutdown);
        self.wait();
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.control.send(Command::Shutdown);
    }
}

/// Asks a running node for its status or a STUN probe; cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeControl {
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

impl NodeControl {
    fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok() && self.waker.wake().is_ok()
    }

    fn ask<T>(&self, command: impl FnOnce(Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx): (Sender<T>, Receiver<T>) = mpsc::channel();
        if !self.send(command(tx)) {
            return Err(Stopped);
        }
        rx.recv().map_err(|_| Stopped)
    }

    /// A snapshot of sessions, services and connections.
    pub fn status(&self) -> Result<Status, Stopped> {
        self.ask(Command::Status)
    }

    /// Asks the STUN server at `server` for our reflexive address: `Some(mapped)` if it
    /// answered, `None` after the core's retransmissions (at most 9.5 s).
    pub fn stun_probe(&self, server: SocketAddr) -> Result<Option<SocketAddr>, Stopped> {
        self.ask(|tx| Command::StunProbe(server, tx))
    }

    /// Sends a tenant master's `command` (with the `master` token) to the daemon's rendezvous
    /// server and waits for the answer, or for why it failed.
    pub fn admin(
        &self,
        master: String,
        command: AdminCommand,
    ) -> Result<Result<AdminAnswer, String>, Stopped> {
        self.ask(|tx| Command::Admin(master, command, tx))
    }

    /// Presents `tokens` as the daemon's path tokens from now on (`burrow import`) and waits
    /// for what the server granted, or for why the tokens were refused (the previous ones are
    /// in use again then).
    pub fn set_path_tokens(&self, tokens: Vec<String>) -> Result<Result<Grants, String>, Stopped> {
        self.ask(|tx| Command::SetPathTokens(tokens, tx))
    }

    /// Tells the daemon's rendezvous server that its attachment of `service` failed, with
    /// why, or runs (`None`). See [`burrow_core::node::Node::report_attach`].
    pub fn report_attach(
        &self,
        service: ServiceName,
        failed: Option<String>,
    ) -> Result<(), Stopped> {
        self.ask(|tx| Command::ReportAttach(service, failed, tx))
    }

    /// The UPnP-IGD driver's report, and what it does next. See
    /// [`burrow_core::node::Node::upnp`].
    pub fn upnp(&self, report: Option<UpnpEvent>) -> Result<Turn, Stopped> {
        self.ask(|tx| Command::Upnp(report, tx))
    }

    /// Pings `target` (a connected service or a peer's key): the path that answered and the
    /// round trip, or why there is none. See [`burrow_core::node::Node::ping`].
    pub fn ping(&self, target: String) -> Result<node::Pong, Stopped> {
        self.ask(|tx| Command::Ping(target, tx))
    }

    /// Makes the node run `services` (a reloaded config's): services no longer listed stop
    /// (their listeners close, their connections reset), new ones start, unchanged ones keep
    /// their connections. New listeners are bound first: if one cannot be, nothing changes
    /// and the error says why. See [`burrow_core::node::Node::plan`].
    pub fn reload(&self, services: Services) -> Result<Result<Summary, StartError>, Stopped> {
        self.ask(|tx| Command::Reload(services, tx))
    }
}
