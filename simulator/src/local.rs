//! In-memory local sockets for a [`Forwarder`] hosted by an [`EndpointNode`].
//!
//! A real runtime owns TCP listeners and connections and performs the forwarder's
//! [`Action`]s on them. Here the "sockets" are byte buffers, so TCP piping runs end to end in
//! virtual time under NAT, loss and relay fallback:
//!
//! - **Accepting side.** A scenario opens a connection on a listener ([`Sim::local_accept`]),
//!   writes bytes into it ([`Sim::local_write`]), half-closes it ([`Sim::local_shutdown`]) or
//!   resets it ([`Sim::local_reset`]), and reads what arrived ([`LocalConn::received`]).
//! - **Target side.** An exposed service's target string names an in-memory
//!   [`LocalService`] ([`Sim::local_target`]): a sink, an echo or a source. A target with no
//!   service refuses the connection, as a closed TCP port does.
//!
//! The fake sockets follow the forwarder's contract exactly: a connection is read only after an
//! [`Action::Read`], once per `Read` and at most [`Forwarder::read_chunk`] bytes, so the
//! stream's backpressure reaches the local "socket" (bytes a scenario wrote wait in the
//! socket until the forwarder asks). Writes are taken at once and reported written at once (the
//! local application reads as fast as it is given bytes). Everything happens at the virtual
//! instant of the call that caused it, so runs stay deterministic.
//!
//! ```
//! use std::time::Duration;
//! use burrow_core::config::RendezvousConfig;
//! use burrow_core::forward::ForwardConfig;
//! use burrow_core::rendezvous::ServerConfig;
//! use burrow_core::Config;
//! use burrow_sim::endpoint::secret_key;
//! use burrow_sim::local::LocalService;
//! use burrow_sim::{Network, Sim};
//!
//! let mut net = Network::new();
//! let [srv, a, b] = [1, 2, 3].map(|i| net.add_public_host(&format!("h{i}"), [198, 51, 100, i]));
//! let mut sim = Sim::new(net, 1);
//! let key = secret_key(sim.seed(), "server");
//! let server = sim.add_endpoint(srv, 7000, "server", Config::server(key.clone(), ServerConfig::default()));
//! let rendezvous = RendezvousConfig::new(key.public_key(), sim.node_addr(server), "token");
//! let mut daemon = |host, name: &str| {
//!     let config = Config::daemon(secret_key(1, name), rendezvous.clone());
//!     sim.add_forwarding_endpoint(host, 40000, name, config, ForwardConfig::default())
//! };
//! let (a, b) = (daemon(a, "a"), daemon(b, "b"));
//! sim.endpoint_command(a, |ep, now| ep.expose(now, "/doc/echo".parse().unwrap(), "127.0.0.1:7"))
//!     .unwrap();
//! sim.local_target(a, "127.0.0.1:7", LocalService::Echo);
//! let listener = sim.forward_listen(b, "/doc/echo".parse().unwrap());
//! sim.run_for(Duration::from_secs(1))?;
//!
//! let client = sim.local_accept(b, listener);
//! sim.local_write(b, client, b"ping");
//! sim.local_shutdown(b, client);
//! sim.run_until(Duration::from_secs(30), |s| s.local_conn(b, client).closed().is_some())?;
//! let conn = sim.local_conn(b, client);
//! assert_eq!(conn.received(), b"ping");
//! assert!(conn.eof() && !conn.closed().unwrap().abort);
//! # Ok::<(), burrow_sim::SimError>(())
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use burrow_core::Endpoint;
use burrow_core::forward::{Action, ConnId, Forwarder, ListenerId};
use burrow_core::rendezvous::ServiceName;
use bytes::{Bytes, BytesMut};

use crate::clock::origin;
use crate::endpoint::EndpointNode;
use crate::scenario::{NodeId, Sim};

/// What an in-memory target does with a connection the forwarder opens to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalService {
    /// Keeps every byte; closes its write half once it reads end of file.
    Sink,
    /// Writes every byte back; half-closes once it reads end of file.
    Echo,
    /// Writes these bytes, then half-closes; keeps what it reads.
    Source(Bytes),
}

/// How a local connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalClose {
    /// Virtual time of the close (since origin).
    pub at: Duration,
    /// Whether it was reset (`Action::Close { abort: true }`, a refused connect, or a reset
    /// from the local side) rather than closed cleanly.
    pub abort: bool,
    /// Why, when it was reset.
    pub reason: Option<String>,
}

/// One in-memory local connection: either accepted by a listener (driven by the scenario) or
/// opened by the forwarder to a [`LocalService`].
#[derive(Clone, Debug)]
pub struct LocalConn {
    /// The service at the far end, for connections the forwarder opened; `None` for ones a
    /// scenario opened on a listener.
    service: Option<LocalService>,
    /// Bytes the local application wrote that the forwarder has not read yet.
    unread: BytesMut,
    /// The local application shut down its write half (after `unread`).
    write_closed: bool,
    /// An `Action::Read` is outstanding.
    read_wanted: bool,
    /// Bytes the forwarder wrote to the local application.
    received: Vec<u8>,
    /// The forwarder shut down its write half: the local application read end of file.
    eof: bool,
    closed: Option<LocalClose>,
    /// Reads performed, and the bytes they took.
    reads: u64,
    taken: u64,
}

impl LocalConn {
    fn new(service: Option<LocalService>) -> Self {
        let mut unread = BytesMut::new();
        let mut write_closed = false;
        if let Some(LocalService::Source(data)) = &service {
            unread.extend_from_slice(data);
            write_closed = true;
        }
        Self {
            service,
            unread,
            write_closed,
            read_wanted: false,
            received: Vec::new(),
            eof: false,
            closed: None,
            reads: 0,
            taken: 0,
        }
    }

    /// Bytes that arrived from the tunnel, in order.
    pub fn received(&self) -> &[u8] {
        &self.received
    }

    /// Whether the tunnel shut down its write half (the application read end of file).
    pub fn eof(&self) -> bool {
        self.eof
    }

    /// How the connection ended, if it has.
    pub fn closed(&self) -> Option<&LocalClose> {
        self.closed.as_ref()
    }

    /// Bytes written by the local application that the forwarder has not read yet.
    pub fn unread(&self) -> usize {
        self.unread.len()
    }

    /// Bytes the forwarder read from this connection so far.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Reads the forwarder performed on this connection.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// The in-memory service at the far end, for connections the forwarder opened.
    pub fn service(&self) -> Option<&LocalService> {
        self.service.as_ref()
    }
}

/// The in-memory sockets of one node: its targets and every local connection it has had.
#[derive(Clone, Debug, Default)]
pub struct LocalSockets {
    targets: BTreeMap<String, LocalService>,
    conns: BTreeMap<ConnId, LocalConn>,
    /// Lines for the trace since the last drain.
    notes: Vec<String>,
}

impl LocalSockets {
    /// Every local connection so far (closed ones too), in handle order.
    pub fn conns(&self) -> impl Iterator<Item = (ConnId, &LocalConn)> {
        self.conns.iter().map(|(&id, c)| (id, c))
    }

    /// The connection `conn`, if it ever existed.
    pub fn conn(&self, conn: ConnId) -> Option<&LocalConn> {
        self.conns.get(&conn)
    }

    pub(crate) fn set_target(&mut self, target: &str, service: LocalService) {
        self.targets.insert(target.to_owned(), service);
    }

    pub(crate) fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Records a connection a listener accepted (the forwarder's handle for it).
    pub(crate) fn accepted(&mut self, conn: ConnId, listener: ListenerId) {
        self.conns.insert(conn, LocalConn::new(None));
        self.notes
            .push(format!("local {conn} accepted on {listener}"));
    }

    /// Closes every open connection with a reset (the process is gone).
    pub(crate) fn reset_all(&mut self, now: Instant, why: &str) {
        for conn in self.conns.values_mut().filter(|c| c.closed.is_none()) {
            conn.closed = Some(LocalClose {
                at: since_origin(now),
                abort: true,
                reason: Some(why.to_owned()),
            });
        }
    }

    /// Performs one forwarder action and reports what the fake socket did.
    pub(crate) fn perform(
        &mut self,
        now: Instant,
        fwd: &mut Forwarder,
        ep: &mut Endpoint,
        action: Action,
    ) {
        match action {
            Action::Connect { conn, target } => match self.targets.get(&target) {
                Some(service) => {
                    self.conns
                        .insert(conn, LocalConn::new(Some(service.clone())));
                    self.notes
                        .push(format!("local {conn} connected to {target} ({service:?})"));
                    fwd.handle_connected(now, ep, conn);
                }
                None => {
                    let mut c = LocalConn::new(None);
                    c.closed = Some(LocalClose {
                        at: since_origin(now),
                        abort: true,
                        reason: Some("connection refused".into()),
                    });
                    self.conns.insert(conn, c);
                    self.notes
                        .push(format!("local {conn} connect to {target} refused"));
                    fwd.handle_connect_failed(now, ep, conn, "connection refused");
                }
            },
            Action::Read { conn } => {
                let Some(c) = self.live(conn) else { return };
                assert!(
                    !c.read_wanted,
                    "{conn}: a second Action::Read before the first was answered"
                );
                c.read_wanted = true;
                self.try_read(now, fwd, ep, conn);
            }
            Action::Write { conn, data } => {
                let Some(c) = self.live(conn) else { return };
                assert!(!c.eof, "{conn}: a write after the shutdown");
                c.received.extend_from_slice(&data);
                if c.service == Some(LocalService::Echo) && !c.write_closed {
                    c.unread.extend_from_slice(&data);
                }
                fwd.handle_written(now, ep, conn, data.len());
                self.try_read(now, fwd, ep, conn);
            }
            Action::Shutdown { conn } => {
                let Some(c) = live(&mut self.conns, conn) else {
                    return;
                };
                c.eof = true;
                self.notes.push(format!("local {conn} read end of file"));
                if matches!(c.service, Some(LocalService::Sink | LocalService::Echo)) {
                    c.write_closed = true;
                    self.try_read(now, fwd, ep, conn);
                }
            }
            Action::Close {
                conn,
                abort,
                reason,
            } => {
                let Some(c) = live(&mut self.conns, conn) else {
                    return;
                };
                self.notes.push(match &reason {
                    Some(why) => format!("local {conn} reset: {why}"),
                    None => format!("local {conn} closed"),
                });
                c.closed = Some(LocalClose {
                    at: since_origin(now),
                    abort,
                    reason,
                });
            }
        }
    }

    /// The local application writes `data` on `conn`. Returns false if the connection is
    /// closed or its write half shut.
    pub(crate) fn write(
        &mut self,
        now: Instant,
        fwd: &mut Forwarder,
        ep: &mut Endpoint,
        conn: ConnId,
        data: &[u8],
    ) -> bool {
        match self.live(conn) {
            Some(c) if !c.write_closed => c.unread.extend_from_slice(data),
            _ => return false,
        }
        self.try_read(now, fwd, ep, conn);
        true
    }

    /// The local application shuts down its write half of `conn`.
    pub(crate) fn shutdown(
        &mut self,
        now: Instant,
        fwd: &mut Forwarder,
        ep: &mut Endpoint,
        conn: ConnId,
    ) -> bool {
        match self.live(conn) {
            Some(c) if !c.write_closed => c.write_closed = true,
            _ => return false,
        }
        self.notes.push(format!("local {conn} shut its write half"));
        self.try_read(now, fwd, ep, conn);
        true
    }

    /// The local application resets `conn`.
    pub(crate) fn reset(
        &mut self,
        now: Instant,
        fwd: &mut Forwarder,
        ep: &mut Endpoint,
        conn: ConnId,
    ) -> bool {
        let Some(c) = self.live(conn) else {
            return false;
        };
        c.closed = Some(LocalClose {
            at: since_origin(now),
            abort: true,
            reason: Some("reset by the local side".into()),
        });
        self.notes
            .push(format!("local {conn} reset by the application"));
        fwd.handle_conn_error(now, ep, conn, "connection reset by the local side");
        true
    }

    /// An open connection.
    fn live(&mut self, conn: ConnId) -> Option<&mut LocalConn> {
        live(&mut self.conns, conn)
    }

    /// Answers an outstanding read if the connection has bytes or its end of file to give.
    fn try_read(&mut self, now: Instant, fwd: &mut Forwarder, ep: &mut Endpoint, conn: ConnId) {
        let Some(c) = self.live(conn) else { return };
        if !c.read_wanted {
            return;
        }
        if !c.unread.is_empty() {
            let n = c.unread.len().min(fwd.read_chunk());
            let data = c.unread.split_to(n).freeze();
            c.read_wanted = false;
            c.reads += 1;
            c.taken += n as u64;
            fwd.handle_read(now, ep, conn, data);
        } else if c.write_closed {
            c.read_wanted = false;
            fwd.handle_eof(now, ep, conn);
        }
    }
}

/// The connection `conn`, if it is open.
fn live(conns: &mut BTreeMap<ConnId, LocalConn>, conn: ConnId) -> Option<&mut LocalConn> {
    conns.get_mut(&conn).filter(|c| c.closed.is_none())
}

fn since_origin(now: Instant) -> Duration {
    now.saturating_duration_since(origin())
}

/// The forwarder and its local sockets on [`EndpointNode`]s, at the current virtual time.
///
/// # Panics
///
/// Each helper panics if the node is not an [`EndpointNode`] or hosts no forwarder
/// ([`Sim::add_forwarding_endpoint`]).
impl Sim {
    /// `Forwarder::listen` on node `id`: a local listener whose connections go to `service`.
    pub fn forward_listen(&mut self, id: NodeId, service: ServiceName) -> ListenerId {
        self.with_node(id, |n: &mut EndpointNode, _| n.listen(service))
    }

    /// Makes `target` (as given to `Endpoint::expose`) on node `id` reach `service`.
    pub fn local_target(&mut self, id: NodeId, target: &str, service: LocalService) {
        self.with_node(id, |n: &mut EndpointNode, _| {
            n.local_mut().set_target(target, service);
        });
    }

    /// Opens a local connection on `listener` of node `id`; returns the forwarder's handle.
    pub fn local_accept(&mut self, id: NodeId, listener: ListenerId) -> ConnId {
        self.with_node(id, |n: &mut EndpointNode, now| {
            n.local_accept(now, listener)
        })
        .expect("a listener of this node")
    }

    /// The local application writes `data` on `conn` of node `id`. Returns false if the
    /// connection is closed or its write half shut.
    pub fn local_write(&mut self, id: NodeId, conn: ConnId, data: &[u8]) -> bool {
        self.with_node(id, |n: &mut EndpointNode, now| {
            n.local_io(now, |l, fwd, ep| l.write(now, fwd, ep, conn, data))
        })
    }

    /// The local application shuts down its write half of `conn` of node `id` (TCP
    /// half-close).
    pub fn local_shutdown(&mut self, id: NodeId, conn: ConnId) -> bool {
        self.with_node(id, |n: &mut EndpointNode, now| {
            n.local_io(now, |l, fwd, ep| l.shutdown(now, fwd, ep, conn))
        })
    }

    /// The local application resets `conn` of node `id`.
    pub fn local_reset(&mut self, id: NodeId, conn: ConnId) -> bool {
        self.with_node(id, |n: &mut EndpointNode, now| {
            n.local_io(now, |l, fwd, ep| l.reset(now, fwd, ep, conn))
        })
    }

    /// The local connection `conn` of node `id`.
    ///
    /// # Panics
    ///
    /// If the node never had that connection.
    pub fn local_conn(&self, id: NodeId, conn: ConnId) -> &LocalConn {
        self.endpoint(id)
            .local()
            .conn(conn)
            .unwrap_or_else(|| panic!("no local {conn} on {}", self.node_name(id)))
    }
}
