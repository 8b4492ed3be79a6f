//! [`Node`]: everything a runtime drives, sans-IO. A node owns the [`Endpoint`], the
//! [`Forwarder`] that maps local connections to streams, and the bookkeeping behind `burrow
//! status`; it has one output, [`Node::poll_output`], that ends in [`Output::Timeout`].
//!
//! A runtime then only owns sockets: it starts a node ([`NodeConfig::start`], after
//! [`bind_listeners`] and [`seed`]), feeds it datagrams, deadlines and what its local sockets
//! did, and performs what [`Node::poll_output`] hands out, as the crate docs' run loop says.
//! Besides this module: the start-up (`config.rs`), the log lines (`log.rs`), and services
//! added and removed at run time (`services.rs`: [`Node::add_expose`], [`Node::add_connect`],
//! [`Node::remove_service`], and [`Node::plan`] with [`Node::apply`] for a reloaded config).

mod config;
mod hooks;
mod known;
mod log;
mod publish_udp;
mod services;
mod sni;
mod udp_reload;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::endpoint::Routing;
pub use config::{Listener, NodeConfig, StartError, Started, Stopped, bind_listeners, seed};
pub use hooks::{HookEvent, HookKind, HookSubject};
pub use known::{
    KNOWN_SERVICES_FILE, MAX_KNOWN_SERVICES, MAX_KNOWN_SERVICES_LEN, parse_known_services,
};
pub use log::{Level, LogLine};
pub use services::{AddError, Applied, Plan, Removed, Services, Summary};
pub use sni::{MAX_SNIFFING, SNI_WAIT};
pub use udp_reload::AppliedUdp;

use crate::crypto::PublicKey;
use crate::endpoint::Endpoint;
use crate::error::ServiceError;
use crate::event::Event;
use crate::forward::udp::{FlowId, UdpAction, UdpForwarder, UdpListenerId};
use crate::forward::{Action, ConnId, ExposeOptions, Forwarder, ListenerId, Origin};
use crate::rendezvous::directory::{AdminAnswer, AdminCommand, DirectoryChange};
use crate::rendezvous::{ServerEvent, ServiceName};
use crate::status::{self, Seen, Status};
use crate::transmit::Transmit;

/// The answer to [`Node::ping`]: the path that answered and the round trip, or why none came.
pub type Pong = Result<(crate::Path, Duration), String>;

/// How long [`Node::ping`] waits for the answer.
pub const PING_WAIT: Duration = Duration::from_secs(2);

/// How long a node with no deadline at all sleeps before [`Output::Timeout`] wakes it anyway
/// (calling [`Node::handle_timeout`] early is harmless).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

/// A STUN probe asked for with [`Node::stun_probe`]; its answer is an
/// [`Output::StunResult`] with the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProbeId(pub u64);

/// What a node wants done, from [`Node::poll_output`].
#[derive(Debug)]
pub enum Output {
    /// Send this datagram (with its TTL, if it has one).
    Transmit(Transmit),
    /// Do this to a local socket: connect, read once, write, shut down or close.
    Action(Action),
    /// Do this with a local UDP socket: open a flow's, send, or close it.
    Udp(UdpAction),
    /// Log this line at its level.
    Log(LogLine),
    /// A STUN probe finished: `mapped` is our address as `server` saw it, `None` if it never
    /// answered.
    StunResult {
        /// The probe it answers.
        probe: ProbeId,
        /// The server asked.
        server: SocketAddr,
        /// Our reflexive address, if the server answered.
        mapped: Option<SocketAddr>,
    },
    /// Core's state changed: write `contents` to `path` (in the node's state directory),
    /// replacing the file atomically and readable by its owner only. Comes only when
    /// [`NodeConfig::state_dir`] is set.
    Save {
        /// The file.
        path: PathBuf,
        /// Its whole new contents.
        contents: String,
    },
    /// The rendezvous server's directory changed: store `0` (see
    /// [`crate::rendezvous::directory::DirectoryStore`]). Comes only from a server.
    Directory(DirectoryChange),
    /// The answer to [`Node::admin`]'s command `request`: what the server did or listed, or
    /// why it refused.
    Admin {
        /// The id `admin` returned.
        request: u64,
        /// The answer, or the reason it failed.
        result: Result<AdminAnswer, String>,
    },
    /// The tenant's master attached `service` to this daemon (`burrow admin rattach`), or
    /// detached it (`None`): the owner runs it as `burrow attach` would (binding a listener
    /// is IO), and keeps it.
    MasterAttach {
        /// The path.
        service: ServiceName,
        /// What to do with it.
        attach: Option<crate::rendezvous::directory::Attachment>,
    },
    /// The outcome of [`Node::set_path_tokens`]: what the server granted, or why it refused
    /// the tokens (the previous ones are in use again).
    PathTokens(Result<crate::rendezvous::Grants, String>),
    /// The answer to [`Node::ping`]: the path that answered and the round trip, or why none
    /// came.
    Pong(Pong),
    /// A rendezvous server publishes a daemon's path on a public port: bind a TCP listener
    /// at `addr`, report the outcome with [`Node::handle_listening`], and report its
    /// connections with [`Node::handle_accept_from`] under `listener`.
    Listen {
        /// The id to report under.
        listener: ListenerId,
        /// Where to listen: the node's IP, the published port.
        addr: SocketAddr,
    },
    /// Close the listener of an earlier [`Output::Listen`] (its connections are already being
    /// reset).
    Unlisten {
        /// The listener.
        listener: ListenerId,
    },
    /// A rendezvous server publishes a daemon's UDP service on a public port: bind a UDP
    /// socket at `addr`, report the outcome with [`Node::handle_udp_listening`], and report
    /// its datagrams with [`Node::handle_udp_recv_from`] under `listener` (as for a
    /// `[[connect]] protocol = "udp"` listener; [`UdpAction::SendTo`] answers through it).
    ListenUdp {
        /// The id to report under.
        listener: UdpListenerId,
        /// Where to listen: the node's IP, the published port.
        addr: SocketAddr,
    },
    /// Close the socket of an earlier [`Output::ListenUdp`] (its flows have ended).
    UnlistenUdp {
        /// The listener.
        listener: UdpListenerId,
    },
    /// A configured service or peer came up on a session, moved path, or went down: run its
    /// hook, if it has one (see [`HookEvent`]).
    Hook(HookEvent),
    /// Nothing more to do until this instant (or a datagram, a local socket report or a
    /// command): call [`Node::handle_timeout`] then. Always the last output of a drain.
    Timeout(Instant),
}

/// The endpoint, the forwarder and the status bookkeeping of one node, with one output.
#[derive(Debug)]
pub struct Node {
    ep: Endpoint,
    fwd: Forwarder,
    seen: Seen,
    udp_addr: SocketAddr,
    exposed: Vec<(ServiceName, String)>,
    listen_addrs: Vec<(ServiceName, SocketAddr)>,
    /// The forwarder's listener for each connected service.
    listener_ids: Vec<(ServiceName, ListenerId)>,
    /// Probes waiting for their outcome, and the id of the next one.
    probes: Vec<(ProbeId, SocketAddr)>,
    next_probe: u64,
    /// Outputs made while draining an event (log lines, STUN answers), handed out in order.
    queued: VecDeque<Output>,
    /// The ping waiting for its answer, and until when.
    ping: Option<(crate::PeerId, Instant)>,
    /// The latest `now` an input brought; events are handed to the forwarder with it.
    now: Instant,
    /// Where [`Output::Save`] writes, if anywhere.
    state_dir: Option<PathBuf>,
    /// The pinned destination key of each service, as `known_services` holds them.
    known: BTreeMap<ServiceName, PublicKey>,
    /// UDP flows.
    udp: UdpForwarder,
    /// The UDP listener of each UDP service we reach, and its address.
    udp_listeners: Vec<(ServiceName, SocketAddr, UdpListenerId)>,
    /// How each exposed service is forwarded (not listed: plain TCP).
    options: BTreeMap<ServiceName, ExposeOptions>,
    /// A rendezvous server's published ports and the forwarder's listener for each.
    published: BTreeMap<u16, ListenerId>,
    /// A rendezvous server's published UDP ports and the UDP forwarder's listener for each.
    published_udp: BTreeMap<u16, UdpListenerId>,
    /// Which sessions serve which hook subjects.
    hooks: hooks::Hooks,
    /// A rendezvous server's SNI port, when it has one.
    sni: Option<sni::SniPort>,
    /// Most datagrams per [`Output::Transmit`] ([`Node::set_max_segments`]).
    max_segments: usize,
}

impl Node {
    /// A node over `ep` and `fwd` (as [`NodeConfig::start`] builds them), bound at `udp_addr`,
    /// exposing `exposed` (name, target) and listening at `listen` (service, address, the
    /// forwarder's listener).
    pub(crate) fn new(
        now: Instant,
        ep: Endpoint,
        fwd: Forwarder,
        udp_addr: SocketAddr,
        exposed: Vec<(ServiceName, String)>,
        listen: Vec<(ServiceName, SocketAddr, ListenerId)>,
    ) -> Self {
        let listen_addrs = listen.iter().map(|(s, a, _)| (s.clone(), *a)).collect();
        let listener_ids = listen.into_iter().map(|(s, _, id)| (s, id)).collect();
        Self {
            ep,
            fwd,
            seen: Seen::default(),
            udp_addr,
            exposed,
            listen_addrs,
            listener_ids,
            probes: Vec::new(),
            next_probe: 0,
            queued: VecDeque::new(),
            ping: None,
            now,
            state_dir: None,
            known: BTreeMap::new(),
            udp: UdpForwarder::new(Default::default()),
            udp_listeners: Vec::new(),
            options: BTreeMap::new(),
            published: BTreeMap::new(),
            published_udp: BTreeMap::new(),
            hooks: hooks::Hooks::default(),
            sni: None,
            max_segments: 1,
        }
    }

    /// Lets [`Output::Transmit`] carry runs of up to `segments` datagrams to one destination
    /// ([`crate::Transmit::segment_size`]), for a socket that sends a run with one call
    /// (segmentation offload); 1, the default, hands out single datagrams. Values above
    /// [`crate::MAX_RUN_SEGMENTS`] are taken as that.
    pub fn set_max_segments(&mut self, segments: usize) {
        self.max_segments = segments.clamp(1, crate::MAX_RUN_SEGMENTS);
    }

    /// Forwards UDP with `udp`; `options` say how each exposed service is forwarded.
    pub(crate) fn with_udp(
        mut self,
        udp: UdpForwarder,
        options: BTreeMap<ServiceName, ExposeOptions>,
    ) -> Self {
        self.udp = udp;
        self.options = options;
        self
    }

    /// Starts forwarding datagrams from UDP sockets the runtime has bound (with
    /// [`bind_listeners`] over a UDP bind, for [`NodeConfig::connect_udp`]) to their remote
    /// services; returns each socket with the id under which to report its datagrams.
    pub fn listen_udp<U>(&mut self, listeners: Vec<Listener<U>>) -> Vec<(UdpListenerId, U)> {
        listeners
            .into_iter()
            .map(|l| {
                let id = self.udp.listen(l.service.clone());
                let addr = l.addr.unwrap_or(self.udp_addr);
                self.udp_listeners.push((l.service, addr, id));
                (id, l.socket)
            })
            .collect()
    }

    /// Keeps core's state in `state_dir` ([`Output::Save`]), starting from the pins `known`.
    pub(crate) fn with_state(
        mut self,
        state_dir: Option<PathBuf>,
        known: BTreeMap<ServiceName, PublicKey>,
    ) -> Self {
        self.state_dir = state_dir;
        self.known = known;
        self
    }

    /// The next thing to do. Call it after every input until it returns [`Output::Timeout`]
    /// (it always does, once nothing else is left): transmits first, then what events said
    /// (log lines, STUN answers), then the forwarder's actions on local sockets. Each event
    /// the endpoint gives is passed to the forwarder and to the status bookkeeping here, so
    /// their consequences come out of the same drain.
    pub fn poll_output(&mut self) -> Output {
        loop {
            if let Some(t) = self.ep.poll_transmit_run(self.max_segments) {
                return Output::Transmit(t);
            }
            if let Some(out) = self.queued.pop_front() {
                return out;
            }
            if let Some(action) = self.fwd.poll_action() {
                return Output::Action(action);
            }
            if let Some(action) = self.udp.poll_action() {
                return Output::Udp(action);
            }
            match self.ep.poll_event() {
                Some(event) => self.event(event),
                None => return Output::Timeout(self.timeout()),
            }
        }
    }

    /// The deadline once everything is drained: the endpoint's, or [`IDLE_WAKE`] from the
    /// latest input when it has none.
    fn timeout(&self) -> Instant {
        let ep = self.ep.poll_timeout().map(|(at, _)| at);
        let sni = self.sni.as_ref().and_then(sni::SniPort::timeout);
        [
            ep,
            self.udp.poll_timeout(),
            self.ping.map(|(_, at)| at),
            sni,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.now + IDLE_WAKE)
    }

    fn event(&mut self, event: Event) {
        self.fwd.handle_event(self.now, &mut self.ep, &event);
        self.udp.handle_event(self.now, &mut self.ep, &event);
        if let Event::Stun(outcome) = &event {
            let (server, mapped) = outcome.result();
            let queued = &mut self.queued;
            self.probes.retain(|&(probe, s)| {
                if s == server {
                    queued.push_back(Output::StunResult {
                        probe,
                        server,
                        mapped,
                    });
                }
                s != server
            });
        }
        if let (Event::ServiceKeyPinned { service, key }, Some(dir)) = (&event, &self.state_dir) {
            self.known.insert(service.clone(), *key);
            self.queued.push_back(Output::Save {
                path: dir.join(KNOWN_SERVICES_FILE),
                contents: known::format_known_services(&self.known),
            });
        }
        match &event {
            Event::Rendezvous(ServerEvent::Directory(change)) => {
                self.queued.push_back(Output::Directory(change.clone()));
            }
            Event::Rendezvous(ServerEvent::Listen {
                port,
                key,
                service,
                udp: true,
            }) => self.listen_published_udp(*port, *key, service.clone()),
            Event::Rendezvous(ServerEvent::Unlisten { port, .. })
                if self.published_udp.contains_key(port) =>
            {
                self.unlisten_published_udp(*port);
            }
            Event::Rendezvous(ServerEvent::Listen {
                port, key, service, ..
            }) => {
                let listener = self.fwd.listen_to(*key, service.clone());
                if let Some(old) = self.published.insert(*port, listener) {
                    // The server never asks twice for one port; if it did, the new one wins.
                    self.fwd.unlisten(self.now, &mut self.ep, old);
                    self.queued.push_back(Output::Unlisten { listener: old });
                }
                let addr = SocketAddr::new(self.udp_addr.ip(), *port);
                self.queued.push_back(Output::Listen { listener, addr });
            }
            Event::Rendezvous(ServerEvent::Unlisten { port, .. }) => {
                if let Some(listener) = self.published.remove(port) {
                    self.fwd.unlisten(self.now, &mut self.ep, listener);
                    self.queued.push_back(Output::Unlisten { listener });
                }
            }
            Event::AdminAnswered { request, answer } => self.queued.push_back(Output::Admin {
                request: *request,
                result: Ok(answer.clone()),
            }),
            Event::AdminFailed { request, reason } => self.queued.push_back(Output::Admin {
                request: *request,
                result: Err(reason.clone()),
            }),
            Event::Pong { peer, path, rtt } if self.ping.is_some_and(|(p, _)| p == *peer) => {
                self.ping = None;
                self.queued.push_back(Output::Pong(Ok((*path, *rtt))));
            }
            Event::PathTokensSet { result } => {
                self.queued.push_back(Output::PathTokens(result.clone()));
            }
            Event::MasterAttach { service, attach } => {
                self.queued.push_back(Output::MasterAttach {
                    service: service.clone(),
                    attach: attach.clone(),
                });
            }
            _ => {}
        }
        let host = hooks::Host {
            key: self.ep.public_key(),
            inner: self.udp_addr,
            outer: self.seen.registered,
        };
        let mut fired = Vec::new();
        self.hooks.handle_event(&event, &host, &mut fired);
        self.queued.extend(fired.into_iter().map(Output::Hook));
        if let Some(line) = LogLine::new(event, &self.seen) {
            self.seen.handle_event(line.event());
            self.queued.push_back(Output::Log(line));
        }
    }

    fn input(&mut self, now: Instant) -> (&mut Forwarder, &mut Endpoint) {
        self.now = now;
        (&mut self.fwd, &mut self.ep)
    }

    /// A datagram arrived on the UDP socket.
    pub fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.input(now).1.handle_input(now, from, bytes);
    }

    /// A datagram arrived with IP TTL (hop limit) `ttl`, where the runtime reads it (see
    /// [`Endpoint::handle_input_with_ttl`]).
    pub fn handle_input_with_ttl(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        ttl: Option<u8>,
    ) {
        self.input(now)
            .1
            .handle_input_with_ttl(now, from, bytes, ttl);
    }

    /// [`Self::handle_input_with_ttl`] without a copy: the datagram is decrypted where it
    /// lies, so `bytes` holds something else afterwards (see
    /// [`Endpoint::handle_input_in_place`]). What a runtime calls with its receive buffer.
    pub fn handle_input_in_place(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &mut [u8],
        ttl: Option<u8>,
    ) {
        self.input(now)
            .1
            .handle_input_in_place(now, from, bytes, ttl);
    }

    /// Whether the node uses the TTL of received datagrams (it runs a rendezvous server):
    /// worth the runtime's reading it.
    pub fn wants_input_ttl(&self) -> bool {
        self.ep.wants_input_ttl()
    }

    /// The deadline of the last [`Output::Timeout`] has passed (early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.input(now).1.handle_timeout(now);
        self.udp.handle_timeout(now, &mut self.ep);
        self.sni_timeout(now);
        if self.ping.is_some_and(|(_, until)| now >= until) {
            self.ping = None;
            let why = format!("no answer within {} s", PING_WAIT.as_secs());
            self.queued.push_back(Output::Pong(Err(why)));
        }
    }

    /// A listener accepted a connection: `Some(conn)` to keep it under that id (read it and
    /// write it as actions say), `None` to drop it.
    pub fn handle_accept(&mut self, now: Instant, listener: ListenerId) -> Option<ConnId> {
        self.handle_accept_from(now, listener, None)
    }

    /// [`Self::handle_accept`] with where the TCP connection came from: the client's address
    /// and the local one it connected to, handed on to a service that wants the PROXY
    /// protocol.
    pub fn handle_accept_from(
        &mut self,
        now: Instant,
        listener: ListenerId,
        origin: Option<Origin>,
    ) -> Option<ConnId> {
        if self.is_sni(listener) {
            self.now = now;
            return self.sni_accept(now, origin);
        }
        let (fwd, ep) = self.input(now);
        fwd.handle_accept_from(now, ep, listener, origin)
    }

    /// The runtime bound the listener of an [`Output::Listen`] (`Ok`, at that address) or
    /// could not (`Err`, why). A failure is reported to the daemon that asked for the port.
    pub fn handle_listening(
        &mut self,
        now: Instant,
        listener: ListenerId,
        result: Result<SocketAddr, String>,
    ) {
        self.now = now;
        if self.is_sni(listener) {
            return self.sni_listening(now, result);
        }
        let Some((port, result)) = publish_udp::port_outcome(&mut self.published, listener, result)
        else {
            return;
        };
        if result.is_err() {
            self.fwd.unlisten(now, &mut self.ep, listener);
        }
        self.ep.publish_listening(now, port, result);
    }

    /// A UDP listener socket received `data` from the local client `from`.
    pub fn handle_udp_recv_from(
        &mut self,
        now: Instant,
        listener: UdpListenerId,
        from: SocketAddr,
        data: &[u8],
    ) {
        self.now = now;
        self.udp
            .handle_recv_from(now, &mut self.ep, listener, from, data);
    }

    /// The socket of `flow` (from [`UdpAction::Open`]) received `data` from its service.
    pub fn handle_udp_recv(&mut self, now: Instant, flow: FlowId, data: &[u8]) {
        self.now = now;
        self.udp.handle_recv(now, &mut self.ep, flow, data);
    }

    /// The socket of `flow` could not be opened, or failed, and why.
    pub fn handle_udp_error(&mut self, now: Instant, flow: FlowId, why: &str) {
        self.now = now;
        self.udp.handle_flow_error(now, &mut self.ep, flow, why);
    }

    /// The host name of a UDP flow's target was looked up ([`UdpAction::Resolve`]).
    pub fn handle_udp_resolved(
        &mut self,
        now: Instant,
        flow: FlowId,
        addr: Result<SocketAddr, String>,
    ) {
        self.now = now;
        self.udp.handle_resolved(now, &mut self.ep, flow, addr);
    }

    /// An [`Action::Connect`] succeeded.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        let (fwd, ep) = self.input(now);
        fwd.handle_connected(now, ep, conn);
    }

    /// An [`Action::Connect`] failed, and why.
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, why: &str) {
        let (fwd, ep) = self.input(now);
        fwd.handle_connect_failed(now, ep, conn, why);
    }

    /// An [`Action::Read`] read `data` (not empty); the stream keeps the chunk itself, not a
    /// copy, until the peer acknowledges it.
    pub fn handle_read(&mut self, now: Instant, conn: ConnId, data: bytes::Bytes) {
        if self.is_sniffing(conn) {
            self.now = now;
            return self.sni_read(now, conn, &data);
        }
        let (fwd, ep) = self.input(now);
        fwd.handle_read(now, ep, conn, data);
    }

    /// An [`Action::Read`] found the end of the local stream.
    pub fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        if self.is_sniffing(conn) {
            self.now = now;
            return self.sni_read(now, conn, &[]);
        }
        let (fwd, ep) = self.input(now);
        fwd.handle_eof(now, ep, conn);
    }

    /// `n` bytes of [`Action::Write`]s left for the local socket.
    pub fn handle_written(&mut self, now: Instant, conn: ConnId, n: usize) {
        let (fwd, ep) = self.input(now);
        fwd.handle_written(now, ep, conn, n);
    }

    /// A local socket failed (reading, writing or shutting down), and why.
    pub fn handle_conn_error(&mut self, now: Instant, conn: ConnId, why: &str) {
        if self.is_sniffing(conn) {
            self.now = now;
            return self.sni_failed(conn, why);
        }
        let (fwd, ep) = self.input(now);
        fwd.handle_conn_error(now, ep, conn, why);
    }

    /// Asks the STUN server at `server` for our reflexive address; the answer comes as an
    /// [`Output::StunResult`] with the returned id (every probe to one server waiting at the
    /// same time gets the same answer).
    pub fn stun_probe(&mut self, now: Instant, server: SocketAddr) -> ProbeId {
        let probe = ProbeId(self.next_probe);
        self.next_probe += 1;
        self.probes.push((probe, server));
        self.input(now).1.stun_probe(now, server);
        probe
    }

    /// Sends a tenant master's `command` to the rendezvous server with the `master` token;
    /// the answer comes as an [`Output::Admin`] with the returned id.
    ///
    /// # Errors
    /// [`ServiceError::NoRendezvous`] when the node is not a daemon.
    pub fn admin(
        &mut self,
        now: Instant,
        master: String,
        command: AdminCommand,
    ) -> Result<u64, ServiceError> {
        let ep = self.input(now).1;
        let request = ep.admin(now, master, command)?;
        Ok(request)
    }

    /// Presents `tokens` as the daemon's path tokens from now on, registering again with
    /// them (`burrow import`); the outcome comes as an [`Output::PathTokens`].
    ///
    /// # Errors
    /// As [`Endpoint::set_path_tokens`].
    pub fn set_path_tokens(
        &mut self,
        now: Instant,
        tokens: Vec<String>,
    ) -> Result<(), ServiceError> {
        self.input(now).1.set_path_tokens(now, tokens)
    }

    /// Tells the rendezvous server that this daemon's attachment of `service` failed, with
    /// why (`Some`), or runs now (`None`), so that its tenant's master sees it (as
    /// [`Endpoint::report_attach`]).
    pub fn report_attach(&mut self, now: Instant, service: ServiceName, failed: Option<String>) {
        self.input(now).1.report_attach(now, service, failed);
    }

    /// The runtime's UPnP-IGD driver reports and asks what to do (as [`Endpoint::upnp`]).
    pub fn upnp(
        &mut self,
        now: Instant,
        report: Option<crate::upnp::UpnpEvent>,
    ) -> crate::upnp::Turn {
        self.input(now).1.upnp(now, report)
    }

    /// Pings `target` (a service this daemon connects to, once a connection has used it, or
    /// a peer's public key) on the path its session uses now; the answer comes as an
    /// [`Output::Pong`], within [`PING_WAIT`]. One ping at a time.
    ///
    /// # Errors
    /// A ping already waiting, a target that is neither, or no session with it.
    pub fn ping(&mut self, now: Instant, target: &str) -> Result<(), String> {
        if self.ping.is_some() {
            return Err("a ping is already waiting for its answer".into());
        }
        let ep = self.input(now).1;
        let key = if target.starts_with('/') {
            let name = ServiceName::parse(target).map_err(|e| format!("{target}: {e}"))?;
            ep.resolved(&name).ok_or_else(|| {
                format!("{target} is not a service this daemon reaches yet (a connection to its listener finds its daemon)")
            })?
        } else {
            target.parse::<crate::PublicKey>().map_err(|e| {
                format!("`{target}` is neither a service name (/...) nor a public key: {e}")
            })?
        };
        let peer = ep
            .peer_of(&key)
            .ok_or_else(|| format!("no session with {target}"))?;
        ep.ping(now, peer).map_err(|e| format!("{target}: {e}"))?;
        self.ping = Some((peer, now + PING_WAIT));
        Ok(())
    }

    /// Stops the node politely: every local connection is reset (its stream too, so the
    /// peer's connection resets at once), the daemon unregisters from its rendezvous server,
    /// and every session is closed, telling its peer, so that peers and the server learn of it
    /// at once rather than by a timeout. Drain [`Self::poll_output`] once more and perform
    /// what it gives (transmits, and the resets of local connections) before dropping the
    /// node.
    pub fn shutdown(&mut self, now: Instant) {
        let (fwd, ep) = self.input(now);
        fwd.shutdown(now, ep);
        self.udp.shutdown(now, &mut self.ep);
        self.ep.shutdown(now);
    }

    /// A snapshot of sessions, services and connections, for `burrow status`.
    pub fn status(&self) -> Status {
        let mut status = status::snapshot(
            &self.ep,
            &self.fwd,
            &self.seen,
            Some(self.udp_addr),
            &self.exposed,
            &self.listen_addrs,
        );
        status::add_udp(
            &mut status,
            (&self.ep, &self.udp, self.now),
            &self.udp_listeners,
            &self.options,
        );
        status::add_published(&mut status, &self.seen, &self.options);
        status::add_standing(&mut status, (&self.ep, &self.fwd, self.now), &self.exposed);
        status
    }

    /// How many bytes one [`Action::Read`] should read at most.
    pub fn read_chunk(&self) -> usize {
        self.fwd.read_chunk()
    }
}

#[cfg(test)]
mod tests;
