//! What the core tells the application.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::crypto::PublicKey;
use crate::error::CloseReason;
use crate::path::Path;
use crate::rendezvous::{ServerEvent, ServiceName};
use crate::stream::StreamId;
use crate::stun::ProbeOutcome;

/// An endpoint-local handle for one peer (one static key). Never reused within an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}

/// Something the application must learn about, from [`crate::Endpoint::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A handshake completed and the session can carry data. Comes once per session; after
    /// a rekey there is no new event.
    Connected {
        /// The peer.
        peer: PeerId,
        /// Its static key, now authenticated.
        key: PublicKey,
        /// How its packets come: from its address, or through the relay.
        path: Path,
    },
    /// The session moved to another path: the peer's NAT rebound or it moved, a relayed
    /// session found a direct path, or a silent direct path was given up for the relay.
    /// Further packets take the new path.
    PathChanged {
        /// The peer.
        peer: PeerId,
        /// The new path.
        path: Path,
    },
    /// The answer to a ping ([`crate::Endpoint::ping`]): the path it came back by, and the
    /// round trip.
    Pong {
        /// The peer.
        peer: PeerId,
        /// The path that answered.
        path: Path,
        /// From the ping to its answer.
        rtt: std::time::Duration,
    },
    /// An application datagram from a peer.
    Datagram {
        /// The sender.
        peer: PeerId,
        /// The bytes, as sent.
        data: Bytes,
    },
    /// A handshake came from a key our [`crate::config::PeerPolicy`] does not admit; nothing
    /// was answered and nothing will be delivered from it. Reported once per key (a flood of
    /// initiations is counted in `Stats::dropped_unknown_peer`, not reported one by one).
    PeerRejected {
        /// The key that was refused (authenticated by the handshake).
        key: PublicKey,
        /// Where the handshake came from.
        addr: SocketAddr,
    },
    /// The peer opened a stream to a service we expose but it holds no grant for (see
    /// [`crate::config::PeerPolicy::Authorized`]): the stream was refused exactly like one
    /// for a service we do not expose, and nothing reached the target. Reported once per
    /// session; every refusal is counted in `Stats::streams_unauthorized`.
    StreamUnauthorized {
        /// The peer.
        peer: PeerId,
        /// Its key.
        key: PublicKey,
        /// The service it asked for.
        service: ServiceName,
    },
    /// The peer opened a stream to a service we expose: connect it to `target` and pipe the
    /// two together. [`Event::StreamReadable`] follows.
    IncomingStream {
        /// The peer.
        peer: PeerId,
        /// The new stream.
        stream: StreamId,
        /// The service it asked for.
        service: ServiceName,
        /// The local target given to [`crate::Endpoint::expose`] for it.
        target: String,
        /// Where the connection came from on the opening side (its client's address and the
        /// listener's), when the opener said (see [`crate::Endpoint::open_stream_from`]).
        origin: Option<crate::forward::Origin>,
        /// The PROXY protocol header the service wants ahead of the data, if any (see
        /// [`crate::forward::ExposeOptions`]).
        proxy: Option<crate::forward::ProxyVersion>,
    },
    /// A stream has data (or its end) to read. Edge-triggered: read until `Blocked`.
    StreamReadable {
        /// The peer.
        peer: PeerId,
        /// The stream.
        stream: StreamId,
    },
    /// A stream that returned [`crate::StreamError::Blocked`] accepts writes again.
    StreamWritable {
        /// The peer.
        peer: PeerId,
        /// The stream.
        stream: StreamId,
    },
    /// [`crate::Endpoint::open_stream`] failed with [`crate::StreamError::Limit`] and may
    /// succeed now: the peer allows more concurrent streams.
    StreamsAvailable {
        /// The peer.
        peer: PeerId,
    },
    /// Everything we wrote on the stream, and our finish, was acknowledged.
    StreamFinished {
        /// The peer.
        peer: PeerId,
        /// The stream.
        stream: StreamId,
    },
    /// The peer reset its sending side of the stream.
    StreamReset {
        /// The peer.
        peer: PeerId,
        /// The stream.
        stream: StreamId,
        /// The peer's code.
        code: u64,
    },
    /// The peer asked us to stop sending on the stream.
    StreamStopped {
        /// The peer.
        peer: PeerId,
        /// The stream.
        stream: StreamId,
        /// The peer's code.
        code: u64,
    },
    /// The rendezvous server registered us; `reflexive` is our address as it sees it.
    Registered {
        /// Our server-reflexive address.
        reflexive: SocketAddr,
    },
    /// The rendezvous server refused our registration (a bad token, a name another daemon
    /// holds, too many services); the reason says which. The daemon retries later.
    RegistrationFailed {
        /// What the server said.
        reason: String,
    },
    /// Our registration with the rendezvous server is gone: the server said the lease
    /// expired, renewals went unanswered until it would have, or the session with the server
    /// ended. The daemon is already registering again; [`Event::Registered`] follows when it
    /// is back.
    RegistrationLost,
    /// A session to the daemon exposing `service` is up: open streams to it on `peer`. May
    /// come again with a new `peer` after the old session ended and the service was found
    /// again.
    ServiceReady {
        /// The service asked for with [`crate::Endpoint::connect_service`].
        service: ServiceName,
        /// The session to its daemon.
        peer: PeerId,
    },
    /// A service was pinned to the key serving it at its first introduction: later lookups
    /// that the server answers with another key fail (see
    /// [`crate::config::RendezvousConfig::pinned`]). Store the pin to keep it across restarts.
    ServiceKeyPinned {
        /// The service.
        service: ServiceName,
        /// The destination key now pinned for it.
        key: PublicKey,
    },
    /// The rendezvous server could not give us `service` (unknown name, no answer, ...).
    ServiceFailed {
        /// The service asked for.
        service: ServiceName,
        /// Why, as the server (or the client's own timeout) said.
        reason: String,
    },
    /// A session to the daemon holding `key`, asked for with [`crate::Endpoint::meet`], is
    /// up: open streams to it on `peer`. May come again with a new `peer` after the old
    /// session ended and the two were introduced again.
    PeerReady {
        /// The key asked for.
        key: PublicKey,
        /// The session to it.
        peer: PeerId,
    },
    /// The rendezvous server could not introduce us to `key`: it did not ask for us in time,
    /// or the server refused or never answered.
    PeerFailed {
        /// The key asked for.
        key: PublicKey,
        /// Why, as the server (or the client's own timeout) said.
        reason: String,
    },
    /// The rendezvous server introduced `key` and authorised it here (for the service it looked
    /// up, or every service for a peer met in peer mode). A stream or UDP flow it opened
    /// before the introduction reached us, and which is waiting for it, is admitted now.
    AccessGranted {
        /// The daemon now authorised.
        key: PublicKey,
    },
    /// The rendezvous server withdrew `key`'s authorisation (its tokens were redeemed or its
    /// path deleted): it may reach nothing here any more, and any session with it was closed.
    AccessRevoked {
        /// The daemon no longer authorised.
        key: PublicKey,
    },
    /// The server answered a master's command sent with [`crate::Endpoint::admin`].
    AdminAnswered {
        /// The id `admin` returned.
        request: u64,
        /// What the server did or listed.
        answer: crate::rendezvous::directory::AdminAnswer,
    },
    /// A master's command failed: refused by the server, or not answered in time.
    AdminFailed {
        /// The id `admin` returned.
        request: u64,
        /// Why, as the server (or the client's own timeout) said.
        reason: String,
    },
    /// A change of path tokens asked for with [`crate::Endpoint::set_path_tokens`] ended:
    /// what the server granted the registration, or why it refused the tokens (the previous
    /// ones are in use again).
    PathTokensSet {
        /// The grants, or the refusal.
        result: Result<crate::rendezvous::Grants, String>,
    },
    /// The server refused these path tokens of the daemon's registration (named by their
    /// first 6 characters: unknown, redeemed, or another tenant's) and registered it with
    /// the others; `burrow import --forget` removes an imported one.
    PathTokensRefused {
        /// The refused tokens' starts.
        starts: Vec<String>,
    },
    /// The tenant's master attached `service` to this daemon (`burrow admin rattach`): expose
    /// it or listen for it as `attach` says, as `burrow attach` would; `None`: detach it
    /// (`rdetach`). The endpoint only reports it: running services is the node's owner's.
    MasterAttach {
        /// The path.
        service: ServiceName,
        /// What to do with it.
        attach: Option<crate::rendezvous::directory::Attachment>,
    },
    /// The rendezvous server publishes the exposed `service` on its public TCP port: `at` is
    /// the server's address (as the daemon knows it) with that port.
    Published {
        /// The path.
        service: ServiceName,
        /// Where the public reaches it.
        at: SocketAddr,
    },
    /// The rendezvous server refused to publish the exposed `service` (or never answered).
    PublishRefused {
        /// The path.
        service: ServiceName,
        /// Why, in the server's words.
        reason: String,
    },
    /// What the rendezvous server role did (registrations, expiries, introductions).
    Rendezvous(ServerEvent),
    /// A STUN probe started with [`crate::Endpoint::stun_probe`] finished.
    Stun(ProbeOutcome),
    /// The gateway (PCP or NAT-PMP, see [`crate::config::PortMappingConfig`]) maps `external`
    /// to our UDP port; it is announced to the server as a candidate.
    PortMapped {
        /// The public address peers may send to.
        external: std::net::SocketAddrV4,
        /// The protocol the gateway answered.
        protocol: crate::PortMappingProtocol,
        /// Whether it is announced: only when its IP is the public address the server sees
        /// (behind a second NAT, the gateway's outside is not the Internet).
        announced: bool,
    },
    /// No mapping from the gateway: it never answered, refused, or let the mapping expire.
    PortMappingFailed {
        /// Why.
        reason: crate::PortMappingFailure,
    },
    /// A session ended; the peer handle is forgotten after this event.
    SessionClosed {
        /// The peer.
        peer: PeerId,
        /// Its static key.
        key: PublicKey,
        /// Why it ended.
        reason: CloseReason,
    },
}
