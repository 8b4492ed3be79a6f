//! What the rendezvous [`super::Server`] and [`super::Client`] report.

use std::net::SocketAddr;
use std::time::Duration;

use super::messages::{ErrorCode, PunchRole};
use super::name::ServiceName;
use crate::crypto::PublicKey;

/// What the rendezvous client tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum ClientEvent {
    /// The server accepted our registration.
    Registered {
        /// Our address as the server sees it.
        reflexive: SocketAddr,
        /// The lease the server grants.
        lease: Duration,
    },
    /// The server refused our registration, or never answered. It is tried again after
    /// [`super::client::REGISTER_RETRY`]; a refusal usually needs a config change.
    RegistrationFailed {
        /// Why.
        code: ErrorCode,
        /// Detail from the server, or a local explanation.
        detail: String,
    },
    /// Go and punch to `peer`.
    Introduced {
        /// The `lookup`/`connect_peer` request this answers; `None` when a source looked up
        /// one of our services.
        request: Option<u64>,
        /// The other side's static key.
        peer: PublicKey,
        /// The service, in client/server mode.
        service: Option<ServiceName>,
        /// Where to reach it: its server-reflexive address first, then its host candidates.
        candidates: Vec<SocketAddr>,
        /// Our part in the punch.
        role: PunchRole,
        /// The route policy the exposing side set for `service` (told to the side that
        /// looked it up); `None` for `any`.
        route: Option<crate::path::RoutePolicy>,
    },
    /// A `lookup` or `connect_peer` request failed; [`ErrorCode::NoAnswer`] when the server
    /// never answered.
    RequestFailed {
        /// The request id.
        request: u64,
        /// Why.
        code: ErrorCode,
        /// Detail for logs.
        detail: String,
    },
    /// The server withdrew what introductions allowed `peer`: drop any session with it.
    Revoked {
        /// The daemon no longer authorised.
        peer: PublicKey,
    },
    /// The server answered a master's command.
    AdminAnswered {
        /// The request id.
        request: u64,
        /// The answer.
        answer: super::directory::AdminAnswer,
    },
    /// A change of path tokens ([`super::Client::set_path_tokens`]) ended: what the server
    /// granted, or why it refused them (the previous tokens are presented again).
    PathTokensSet {
        /// The grants, or the refusal's code and detail.
        result: Result<super::grants::Grants, (ErrorCode, String)>,
    },
    /// The tenant's master attached `name` to us (`attach`), or detached it (`None`).
    Attach {
        /// The path.
        name: ServiceName,
        /// What to do with it.
        attach: Option<super::directory::Attachment>,
    },
    /// The server publishes `name` on its public `port`, TCP or UDP as asked (the answer to
    /// [`super::Client::publish`]).
    Published {
        /// The request id.
        request: u64,
        /// The path.
        name: ServiceName,
        /// The server's port.
        port: u16,
    },
    /// `name`, a fixed path we expose, admits only `clients` through introductions.
    Pins {
        /// The path.
        name: ServiceName,
        /// The pinned client keys.
        clients: Vec<PublicKey>,
    },
    /// Our registration is gone (the server said the lease expired, or renewals went
    /// unanswered until it would have). The client is already registering again.
    LeaseLost,
    /// The server refused these path tokens of our registration (named by their first 6
    /// characters) and registered us with the others.
    TokensRefused {
        /// The refused tokens' starts.
        starts: Vec<String>,
    },
}

/// What the server did, for logs, status and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A daemon registered (or re-registered, replacing its services).
    Registered {
        /// The daemon.
        key: PublicKey,
        /// Its server-reflexive address.
        addr: SocketAddr,
        /// What it publishes.
        services: Vec<ServiceName>,
        /// False when it replaced a live registration.
        new: bool,
    },
    /// A registered daemon's packets now come from another address (NAT rebinding).
    AddressChanged {
        /// The daemon.
        key: PublicKey,
        /// The new address.
        addr: SocketAddr,
    },
    /// A lease ran out; the registration and its names are gone.
    Expired {
        /// The daemon.
        key: PublicKey,
    },
    /// A daemon unregistered.
    Unregistered {
        /// The daemon.
        key: PublicKey,
    },
    /// A peer-mode request is waiting for the other side.
    Waiting {
        /// The asker.
        key: PublicKey,
        /// Whom it waits for.
        peer: PublicKey,
    },
    /// Two daemons were introduced.
    Introduced {
        /// The one whose request completed the pairing (the `Lookup`'s source).
        asker: PublicKey,
        /// The other one.
        target: PublicKey,
        /// The service, in client/server mode.
        service: Option<ServiceName>,
    },
    /// A request was refused or failed.
    RequestFailed {
        /// The asker.
        key: PublicKey,
        /// Its request id.
        request: u64,
        /// Why.
        code: ErrorCode,
    },
    /// A session held no registration [`super::ServerConfig::register_within`] after it came
    /// up (or after its registration ended): the server closed it and freed its state.
    Evicted {
        /// The key behind the session.
        key: PublicKey,
    },
    /// The relay dropped packets of this daemon's token because the token was over its
    /// relayed-bytes (or relayed-initiations) allowance. Reported at most every
    /// `RELAY_LIMIT_REPORT` per token, with the drops since the last report.
    RelayLimited {
        /// The daemon whose packet was dropped last.
        key: PublicKey,
        /// Packets dropped since the last report for the token.
        dropped: u64,
    },
    /// The relay refused packets of this sender: it or their destination holds no
    /// registration, or the server never introduced the two (the relay serves only pairs it
    /// introduced). Reported at most every `RELAY_LIMIT_REPORT` per sender, with the
    /// refusals since the last report.
    RelayRefused {
        /// The daemon (or unregistered key) that sent them.
        from: PublicKey,
        /// The destination of the packet refused last.
        to: PublicKey,
        /// Why the last one was refused.
        reason: &'static str,
        /// Packets refused since the last report for this sender.
        refused: u64,
    },
    /// The directory changed (a master's command, or a fixed path pinned a client key):
    /// store the change.
    Directory(super::directory::DirectoryChange),
    /// A daemon's tokens were all redeemed or their paths deleted: its registration ended and
    /// the daemons it was introduced to were told to drop it.
    Revoked {
        /// The daemon.
        key: PublicKey,
    },
    /// A registration presented a daemon token bound to another key, and was refused.
    DaemonKeyRefused {
        /// The key that presented it.
        key: PublicKey,
        /// The daemon's tenant.
        tenant: String,
        /// The daemon entry.
        daemon: super::directory::DaemonName,
        /// How many registrations the server refused so far for a daemon token's key.
        refused: u64,
    },
    /// A name stopped being published because the directory no longer lets its daemon
    /// expose it (the path was deleted or its server token redeemed).
    NameWithdrawn {
        /// The daemon that published it.
        key: PublicKey,
        /// The name.
        name: ServiceName,
    },
    /// Listen on TCP `port` (at the server's address) for `service` of the daemon `key`:
    /// connections accepted there go to it as streams (see [`crate::node::Node`], which binds
    /// through its runtime and reports back with [`crate::node::Node::handle_listening`]).
    /// With `udp`, a UDP socket on `port`: each source that sends there is one flow to the
    /// daemon's UDP service (reported back with [`crate::node::Node::handle_udp_listening`]).
    Listen {
        /// The public port.
        port: u16,
        /// The daemon that holds the path.
        key: PublicKey,
        /// The path.
        service: ServiceName,
        /// A UDP port (else TCP).
        udp: bool,
    },
    /// Stop listening on `port`: its publication ended (the daemon unregistered, its lease
    /// ended, it no longer exposes the path, or the port could not be bound). Connections
    /// accepted there are reset.
    Unlisten {
        /// The public port.
        port: u16,
        /// The daemon that held the path.
        key: PublicKey,
        /// The path.
        service: ServiceName,
        /// Why, for the log.
        reason: String,
    },
    /// `service` of the daemon `key` is published on `port` (its listener is bound).
    Published {
        /// The public port.
        port: u16,
        /// The daemon.
        key: PublicKey,
        /// The path.
        service: ServiceName,
        /// A UDP port (else TCP).
        udp: bool,
    },
    /// A daemon asked to publish `service` and was refused.
    PublishRefused {
        /// The daemon.
        key: PublicKey,
        /// The path.
        service: ServiceName,
        /// Why (as the daemon is told).
        reason: String,
    },
    /// A daemon never acknowledged an introduction; the server stopped retransmitting it.
    IntroductionUnacked {
        /// The daemon.
        key: PublicKey,
        /// The introduction id.
        id: u64,
    },
    /// `service` of the daemon `key` is published on the SNI port `port` under the host
    /// name `host`.
    PublishedName {
        /// The host name TLS clients ask for.
        host: String,
        /// The SNI port.
        port: u16,
        /// The daemon.
        key: PublicKey,
        /// The path.
        service: ServiceName,
    },
    /// The publication of `service` under `host` ended (as [`Self::Unlisten`] says why).
    UnpublishedName {
        /// The host name.
        host: String,
        /// The daemon that held the path.
        key: PublicKey,
        /// The path.
        service: ServiceName,
        /// Why, for the log.
        reason: String,
    },
    /// A connection to the SNI port was closed without reaching a daemon.
    SniRefused {
        /// The client (`None` when the runtime did not say).
        from: Option<SocketAddr>,
        /// Why: the name nobody publishes, no name, not TLS, or too slow.
        reason: String,
    },
    /// The SNI port could not be bound: nothing is published there.
    SniDown {
        /// The port.
        port: u16,
        /// Why.
        reason: String,
    },
}
