//! The rendezvous control messages: what a daemon sends the server ([`ClientMessage`]) and what
//! the server answers or pushes ([`ServerMessage`]).
//!
//! Messages travel inside the encrypted session between a daemon and the server, so the sender
//! is authenticated by its static key; the wire layer puts a version byte in front of the
//! postcard body. Delivery is unreliable, like STUN: the client retransmits requests until it
//! gets an answer, the server answers duplicates identically, and an `Introduce` (which the
//! server may push without being asked) is acknowledged with [`ClientMessage::Ack`] and
//! retransmitted by the server until it is.
//!
//! Every list and string is bounded, and the bounds are checked while decoding, so any message
//! encodes to at most [`MAX_MESSAGE_LEN`] bytes and a hostile one cannot make the decoder
//! allocate more than the datagram it came in.
//!
//! Route policies per service travel as a trailer after the postcard body, present only when
//! one is not `any`: a `Register` ends with one byte per published service (its route), an
//! `Introduce` for a service with that service's route (0 any, 1 direct, 2 relay). A
//! message without a trailer reads as before, so daemons and servers from before per-service
//! routes keep working with each other as long as no route other than `any` is set; an older
//! decoder refuses a message with a trailer (it reads past the body), which is why a server is
//! upgraded before its daemons use per-service routes.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, Serialize};

use super::directory::{
    AdminAnswer, AdminCommand, Attachment, MAX_ATTACH_ERROR_LEN, MAX_FIXED_CLIENTS,
};
use super::grants::{Grants, TokenUse};
use super::name::ServiceName;
use crate::crypto::PublicKey;
use crate::path::RoutePolicy;

/// Upper bound of any encoded rendezvous message, in bytes (checked by tests at the limits):
/// with the version byte and the transport's 33 bytes around it, under the 1200-byte UDP
/// payload every path carries.
#[cfg(test)]
pub(crate) const MAX_MESSAGE_LEN: usize = 1100;
/// Longest token, in bytes.
pub(crate) const MAX_TOKEN_LEN: usize = 64;
/// Most services one registration publishes.
pub(crate) const MAX_SERVICES: usize = 5;
/// Most host (LAN) candidates a daemon announces.
pub(crate) const MAX_HOST_CANDIDATES: usize = 8;
/// Most path tokens one registration presents.
pub const MAX_PATH_TOKENS: usize = 4;
/// Longest path token, in bytes (the server makes them 48 hex characters long).
pub const MAX_PATH_TOKEN_LEN: usize = 48;
/// Most candidates in an introduction: the server-reflexive address, then the host candidates.
pub(crate) const MAX_CANDIDATES: usize = MAX_HOST_CANDIDATES + 1;
/// Longest error detail, in bytes.
pub(crate) const MAX_DETAIL_LEN: usize = 200;

/// What a daemon asks the rendezvous server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ClientMessage {
    /// Creates or refreshes this key's registration: publishes `services` (replacing what an
    /// earlier `Register` published) and starts a lease. Answered by `Registered` or `Error`.
    Register {
        /// The request id, echoed in the answer.
        request: u64,
        /// The access token.
        #[serde(deserialize_with = "bounded_token")]
        token: String,
        /// Names this daemon serves as a destination (client/server mode).
        #[serde(deserialize_with = "bounded_services")]
        services: Vec<ServiceName>,
        /// The daemon's own (LAN) addresses, tried by a peer on the same network.
        #[serde(deserialize_with = "bounded_hosts")]
        host_candidates: Vec<SocketAddr>,
        /// Tokens of paths the server's directory declared (at most [`MAX_PATH_TOKENS`]): a
        /// path's server token lets this daemon expose it, its client token lets it connect.
        #[serde(deserialize_with = "bounded_path_tokens")]
        path_tokens: Vec<String>,
        /// The route policy of each service in `services`, in the same order; empty when
        /// every one is `any` (the trailer, see the module docs).
        #[serde(skip)]
        routes: Vec<RoutePolicy>,
    },
    /// Extends the lease. Answered by `Renewed`, or `Error { NotRegistered }`.
    Renew {
        /// The request id.
        request: u64,
    },
    /// Ends the registration now (the daemon is shutting down). Not answered.
    Unregister,
    /// Client/server mode: a source asks for the daemon serving `name`. Answered by
    /// `Introduce` (also pushed to the destination) or `Error { UnknownService }`.
    Lookup {
        /// The request id.
        request: u64,
        /// The service.
        name: ServiceName,
        /// The asker's route policy for it: the server refuses the lookup at once when the
        /// service's own allows no common path (`RouteConflict`). `any` sends no trailer
        /// (see the module docs).
        #[serde(skip)]
        route: RoutePolicy,
    },
    /// Peer mode: asks to be introduced to `peer`, which must ask for us too. Answered by
    /// `Waiting` until it does, then `Introduce`; or `Error` if it never does.
    ConnectPeer {
        /// The request id.
        request: u64,
        /// The peer's static key.
        #[serde(with = "key_bytes")]
        peer: PublicKey,
    },
    /// Acknowledges the `Introduce` with this id, so the server stops retransmitting it.
    Ack {
        /// The introduction id.
        id: u64,
    },
    /// A tenant's master asks for a change or a listing of its directory. Answered by
    /// `Admin` or `Error`. Needs a live registration (any token), like `Lookup`.
    Admin {
        /// The request id.
        request: u64,
        /// The tenant's master token.
        #[serde(deserialize_with = "bounded_token")]
        master: String,
        /// What to do.
        command: AdminCommand,
    },
    /// Asks the server to publish `name` (a path this daemon's registration exposes) on a
    /// public TCP port of the server: `port`, or one the server picks (`None`). Connections to
    /// that port come to this daemon as streams from the server's key. Answered by
    /// `Published` or `Error`. Appended, like `ServerMessage::Observed`: an older server drops
    /// it as undecodable, and the daemon gives up with `NoAnswer`.
    Publish {
        /// The request id.
        request: u64,
        /// The path.
        name: ServiceName,
        /// The public port asked for; `None` for any port of the server's range.
        port: Option<u16>,
    },
    /// An attachment of `name` on this daemon (by its master or its own) failed, with why
    /// (`Some`, at most [`MAX_ATTACH_ERROR_LEN`] bytes), or runs now (`None`). Not answered;
    /// sent again after every registration while it stands. Appended, as `Publish`: an older
    /// server drops it as undecodable.
    AttachOutcome {
        /// The path.
        name: ServiceName,
        /// Why it failed; `None`: it runs.
        #[serde(deserialize_with = "bounded_reason")]
        failed: Option<String>,
    },
    /// This daemon's last session for `name`, which it looked up, ended: the server frees its
    /// place in the path's limit of connections (its introduction no longer counts there).
    /// Not answered; concerns only the sender's own place. Appended last: an older server
    /// drops it as undecodable and frees the place when the registration ends, as before.
    Disconnected {
        /// The path.
        name: ServiceName,
    },
    /// Asks the server to publish `name` on its SNI port, under the host name made of the
    /// path's last segment and the server's domain (`/web/blog` as `blog.DOMAIN`): TLS
    /// connections asking for that name come to this daemon as streams from the server's
    /// key. Answered by `Published` (with the SNI port) or `Error`. Appended: an older server
    /// drops it as undecodable.
    PublishSni {
        /// The request id.
        request: u64,
        /// The path.
        name: ServiceName,
    },
    /// Sent by a destination: its session with `source`, which the server introduced to it,
    /// ended without a new one taking over (the source vanished, restarted or was cut off),
    /// so what the introductions granted is gone here. The server frees the places `source`
    /// holds through this destination in paths' limits of connections (a source that still
    /// wants the path looks it up again). Not answered; concerns only introductions to the
    /// sender. Appended last: an older server drops it as undecodable.
    SourceLeft {
        /// The source's static key.
        #[serde(with = "key_bytes")]
        source: PublicKey,
    },
    /// As `Publish`, on a public UDP port: each source address and port that sends there is
    /// one flow to this daemon's UDP service `name`, carried in the server's session
    /// datagrams. A port of the range holds one publication, TCP or UDP. Appended last: an
    /// older server drops it as undecodable, and the daemon gives up with `NoAnswer`.
    PublishUdp {
        /// The request id.
        request: u64,
        /// The path (a UDP service of this daemon's).
        name: ServiceName,
        /// The public port asked for; `None` for any port of the server's range.
        port: Option<u16>,
    },
}

fn bounded_reason<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Reason(String);
    impl<'de> Deserialize<'de> for Reason {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            bounded_string(d, MAX_ATTACH_ERROR_LEN).map(Reason)
        }
    }
    Ok(Option::<Reason>::deserialize(d)?.map(|r| r.0))
}

/// What the rendezvous server answers or pushes to a daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ServerMessage {
    /// The registration is live for `lease_secs` from the server's receipt of the request.
    Registered {
        /// The `Register`'s request id.
        request: u64,
        /// Lease length in seconds.
        lease_secs: u32,
        /// The daemon's address as the server sees it (server-reflexive).
        reflexive: SocketAddr,
    },
    /// The lease was extended by `lease_secs`.
    Renewed {
        /// The `Renew`'s request id.
        request: u64,
        /// Lease length in seconds.
        lease_secs: u32,
    },
    /// A `ConnectPeer` was recorded; the peer has not asked yet. The server waits for it up to
    /// `wait_secs` more; the client keeps re-sending the request slowly until an outcome.
    Waiting {
        /// The `ConnectPeer`'s request id.
        request: u64,
        /// How much longer the server waits, in seconds.
        wait_secs: u32,
    },
    /// The request failed.
    Error {
        /// The failed request's id.
        request: u64,
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail, for logs.
        #[serde(deserialize_with = "bounded_detail")]
        detail: String,
    },
    /// Go and punch: `peer` is reachable at `candidates`. Both sides get one. Acknowledge it
    /// with `Ack { id }`.
    Introduce {
        /// The introduction id, unique per server run; duplicates carry the same id.
        id: u64,
        /// Our request this answers (`Lookup` or `ConnectPeer`); `None` for the destination of
        /// a `Lookup`, which did not ask.
        request: Option<u64>,
        /// The other side's static key.
        #[serde(with = "key_bytes")]
        peer: PublicKey,
        /// The service looked up (client/server mode), `None` in peer mode.
        service: Option<ServiceName>,
        /// Where to reach the peer: its server-reflexive address first, then its host
        /// candidates.
        #[serde(deserialize_with = "bounded_candidates")]
        candidates: Vec<SocketAddr>,
        /// Our part in the punch.
        role: PunchRole,
        /// The route policy the exposing daemon set for `service`, told to the side that
        /// looked it up; `None` for `any` or a daemon that set none (the trailer, see the
        /// module docs).
        #[serde(skip)]
        route: Option<RoutePolicy>,
    },
    /// The registration's lease ran out and it was removed: register again.
    LeaseExpired,
    /// `peer`'s tokens were redeemed or its path deleted: what its introductions allowed is
    /// withdrawn; drop any session with it. Acknowledge it with `Ack { id }` (ids are shared
    /// with `Introduce`).
    Revoked {
        /// The push id.
        id: u64,
        /// The daemon no longer authorised.
        #[serde(with = "key_bytes")]
        peer: PublicKey,
    },
    /// The answer to an `Admin` request.
    Admin {
        /// The request id.
        request: u64,
        /// What was done or listed.
        answer: AdminAnswer,
    },
    /// Sent after `Registered` and `Renewed` by a server that can read the IP TTL (or hop
    /// limit) its datagrams arrive with: the one the request came with. The daemon infers its
    /// hop count to the server from it (see [`crate::ProbeTtl`]). New variants go after
    /// the existing ones: postcard encodes a variant by its index, so an older daemon drops
    /// this one as undecodable and otherwise works as before.
    Observed {
        /// The request it reports on.
        request: u64,
        /// The IP TTL or hop limit the request arrived with.
        ttl: u8,
    },
    /// Sent after `Registered` to a daemon that registered with a token of the directory or
    /// presented path tokens: what its tokens allow (which paths it may expose and connect
    /// to). `burrow import` waits for it to report what a new path token allows. An older
    /// daemon drops it as undecodable, as it does `Observed`.
    Granted {
        /// The `Register`'s request id.
        request: u64,
        /// What the tokens allow.
        grants: Grants,
    },
    /// The tenant's master attached `name` to this daemon (`attach`), or detached it
    /// (`None`): do as `burrow attach`/`burrow detach` would. Pushed again after every
    /// registration; acknowledge it with `Ack { id }` (ids are shared with `Introduce`).
    Attach {
        /// The push id.
        id: u64,
        /// The path.
        name: ServiceName,
        /// What to do with it; `None` to detach it.
        attach: Option<Attachment>,
    },
    /// The answer to a `Publish`: the server listens on `port` for `name`, and opens a stream
    /// to the daemon for each connection it accepts there.
    Published {
        /// The `Publish`'s request id.
        request: u64,
        /// The path.
        name: ServiceName,
        /// The public TCP port.
        port: u16,
    },
    /// `name`, which this daemon exposes, is a fixed path: only `clients` (the keys it
    /// pinned, at most [`MAX_FIXED_CLIENTS`]) may reach it through an introduction; refuse
    /// any other. Sent after every registration that exposes it and whenever its pins change
    /// (before the introduction of a newly pinned key); acknowledge it with `Ack { id }` (ids
    /// are shared with `Introduce`). An older daemon drops it as undecodable and enforces
    /// nothing more than before (the server still refuses unpinned lookups).
    Pins {
        /// The push id.
        id: u64,
        /// The path.
        name: ServiceName,
        /// The keys it admits (empty: none yet; the server pins the next one first).
        #[serde(with = "pinned_keys")]
        clients: Vec<PublicKey>,
    },
    /// Sent after `Registered`, before `Granted`, to a daemon whose `Register` presented path
    /// tokens: what each does, in the order presented (at most [`MAX_PATH_TOKENS`]). A
    /// refused one ([`TokenUse::Refused`]) was ignored and the daemon registered with the
    /// others. An older daemon drops it as undecodable.
    Tokens {
        /// The `Register`'s request id.
        request: u64,
        /// One per path token.
        #[serde(deserialize_with = "bounded_uses")]
        uses: Vec<TokenUse>,
    },
}

fn bounded_uses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<TokenUse>, D::Error> {
    bounded_vec(d, MAX_PATH_TOKENS)
}

/// Why the server refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The token is not accepted by this server.
    BadToken,
    /// No live registration publishes that service name.
    UnknownService,
    /// Another daemon (another key) already publishes that name.
    NameTaken,
    /// This key has no live registration: register first (the server may have restarted).
    NotRegistered,
    /// The peer we waited for lost its registration (lease expired or unregistered).
    LeaseExpired,
    /// The peer did not ask for us within the server's wait time.
    PeerTimeout,
    /// A limit of the token or the server was reached.
    TooMany,
    /// The request makes no sense (e.g. asking for ourselves, a name listed twice).
    Malformed,
    /// Produced locally by the client, never sent: the server did not answer in time.
    NoAnswer,
    /// A fixed path refused a client key it has not pinned.
    NotPinned,
    /// The looked-up service's route policy and the asker's allow no common path (one is
    /// direct-only, the other relay-only). Sent only to a daemon whose lookup named a route.
    RouteConflict,
    /// The server does not publish that path on that port (outside its range, taken, or
    /// publishing is off); the detail says which.
    PublishRefused,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadToken => "the rendezvous server refused the token; check the token in the config",
            Self::UnknownService => "no daemon publishes that service; check the name and that its daemon runs",
            Self::NameTaken => "another daemon already publishes that service name; pick another name or stop the other daemon",
            Self::NotRegistered => "not registered with the rendezvous server (it may have restarted); registering again",
            Self::LeaseExpired => "the peer's registration expired before it could be introduced",
            Self::PeerTimeout => "the peer did not ask for us in time; start the connection on both sides",
            Self::TooMany => "a limit of the token or the rendezvous server was reached",
            Self::Malformed => "the request was refused as malformed",
            Self::NoAnswer => "the rendezvous server did not answer in time; check it is reachable",
            Self::NotPinned => "the path is fixed to other client keys; its master can let new ones in with `burrow admin reload PATH`",
            Self::RouteConflict => "the service's route policy and this connect's allow no common path; set route = \"any\" on the connect or match the exposing side's",
            Self::PublishRefused => "the rendezvous server does not publish the path on that port",
        })
    }
}

/// Which side of a hole punch a daemon plays. The roles are assigned by the server so that the
/// two sides never disagree: the asker of a `Lookup` is the initiator; in peer mode, the side
/// with the smaller static key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PunchRole {
    /// Starts the handshake once a path works.
    Initiator,
    /// Answers it.
    Responder,
}

impl PunchRole {
    /// The other role.
    pub(crate) fn opposite(self) -> Self {
        match self {
            Self::Initiator => Self::Responder,
            Self::Responder => Self::Initiator,
        }
    }
}

/// Why bytes did not decode as a rendezvous message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum MessageError {
    /// Not a valid encoding, a bound was exceeded, or bytes were left over.
    Malformed,
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed rendezvous message")
    }
}

impl std::error::Error for MessageError {}

/// Route bytes read from a trailer: exactly `len` valid ones, or `None`.
fn routes_from(trailer: &[u8], len: usize) -> Option<Vec<RoutePolicy>> {
    if trailer.len() != len {
        return None;
    }
    trailer.iter().map(|b| RoutePolicy::from_byte(*b)).collect()
}

impl ClientMessage {
    /// The postcard body (no version byte; the wire layer adds it), then the route trailer
    /// of a `Register` that has one.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = postcard::to_allocvec(self).expect("rendezvous messages always serialize");
        if let ClientMessage::Register {
            services, routes, ..
        } = self
        {
            if !routes.is_empty() {
                let route = |i: usize| routes.get(i).copied().unwrap_or_default();
                out.extend((0..services.len()).map(|i| route(i).to_byte()));
            }
        }
        if let ClientMessage::Lookup { route, .. } = self {
            if *route != RoutePolicy::Any {
                out.push(route.to_byte());
            }
        }
        out
    }

    /// Decodes a postcard body, checking every bound; trailing bytes are refused, except a
    /// `Register`'s route trailer (one valid byte per service).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let (mut msg, trailer) =
            postcard::take_from_bytes::<Self>(bytes).map_err(|_| MessageError::Malformed)?;
        if trailer.is_empty() {
            return Ok(msg);
        }
        match &mut msg {
            ClientMessage::Register {
                services, routes, ..
            } => {
                *routes = routes_from(trailer, services.len()).ok_or(MessageError::Malformed)?;
                Ok(msg)
            }
            ClientMessage::Lookup { route, .. } => {
                let one = routes_from(trailer, 1).ok_or(MessageError::Malformed)?;
                *route = one[0];
                Ok(msg)
            }
            _ => Err(MessageError::Malformed),
        }
    }
}

impl ServerMessage {
    /// The postcard body (no version byte; the wire layer adds it), then the route trailer
    /// of an `Introduce` that has one.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = postcard::to_allocvec(self).expect("rendezvous messages always serialize");
        if let ServerMessage::Introduce {
            route: Some(route), ..
        } = self
        {
            out.push(route.to_byte());
        }
        out
    }

    /// Decodes a postcard body, checking every bound; trailing bytes are refused, except an
    /// `Introduce`'s route trailer (one valid byte).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let (mut msg, trailer) =
            postcard::take_from_bytes::<Self>(bytes).map_err(|_| MessageError::Malformed)?;
        if trailer.is_empty() {
            return Ok(msg);
        }
        match &mut msg {
            ServerMessage::Introduce { route, .. } => {
                let mut one = routes_from(trailer, 1).ok_or(MessageError::Malformed)?;
                *route = one.pop();
                Ok(msg)
            }
            _ => Err(MessageError::Malformed),
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

// ----- bounded decoding --------------------------------------------------------------------

pub(crate) fn bounded_string<'de, D: Deserializer<'de>>(
    d: D,
    max: usize,
) -> Result<String, D::Error> {
    struct Visitor(usize);
    impl serde::de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a string of at most {} bytes", self.0)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            if v.len() > self.0 {
                return Err(E::invalid_length(v.len(), &self));
            }
            Ok(v.to_owned())
        }
    }
    d.deserialize_str(Visitor(max))
}

pub(crate) fn bounded_vec<'de, D, T>(d: D, max: usize) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Visitor<T>(usize, std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {} items", self.0)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            if let Some(n) = seq.size_hint().filter(|&n| n > self.0) {
                return Err(serde::de::Error::invalid_length(n, &self));
            }
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.0));
            while let Some(item) = seq.next_element()? {
                if out.len() == self.0 {
                    return Err(serde::de::Error::invalid_length(out.len() + 1, &self));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Visitor(max, std::marker::PhantomData))
}

pub(crate) fn bounded_token<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    bounded_string(d, MAX_TOKEN_LEN)
}

fn bounded_path_tokens<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Token(String);
    impl<'de> Deserialize<'de> for Token {
        fn deserialize<E: Deserializer<'de>>(d: E) -> Result<Self, E::Error> {
            bounded_string(d, MAX_PATH_TOKEN_LEN).map(Token)
        }
    }
    let tokens: Vec<Token> = bounded_vec(d, MAX_PATH_TOKENS)?;
    Ok(tokens.into_iter().map(|t| t.0).collect())
}

fn bounded_detail<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    bounded_string(d, MAX_DETAIL_LEN)
}

fn bounded_services<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServiceName>, D::Error> {
    bounded_vec(d, MAX_SERVICES)
}

fn bounded_hosts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    bounded_vec(d, MAX_HOST_CANDIDATES)
}

fn bounded_candidates<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    bounded_vec(d, MAX_CANDIDATES)
}

/// Public keys travel as their 32 raw bytes.
pub(crate) mod key_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::crypto::PublicKey;
    use crate::crypto::keys::KEY_LEN;

    pub(crate) fn serialize<S: Serializer>(key: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
        key.as_bytes().serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        <[u8; KEY_LEN]>::deserialize(d).map(PublicKey::from_bytes)
    }
}

/// A fixed path's pinned keys travel as a list of their 32 raw bytes, at most
/// [`MAX_FIXED_CLIENTS`].
pub(crate) mod pinned_keys {
    use serde::{Deserializer, Serialize, Serializer};

    use super::{MAX_FIXED_CLIENTS, bounded_vec};
    use crate::crypto::PublicKey;
    use crate::crypto::keys::KEY_LEN;

    pub(crate) fn serialize<S: Serializer>(keys: &[PublicKey], s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<&[u8; KEY_LEN]> = keys.iter().map(PublicKey::as_bytes).collect();
        bytes.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PublicKey>, D::Error> {
        let bytes: Vec<[u8; KEY_LEN]> = bounded_vec(d, MAX_FIXED_CLIENTS)?;
        Ok(bytes.into_iter().map(PublicKey::from_bytes).collect())
    }
}

/// An optional public key travels as an option of its 32 raw bytes.
pub(crate) mod opt_key_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::crypto::PublicKey;
    use crate::crypto::keys::KEY_LEN;

    pub(crate) fn serialize<S: Serializer>(
        key: &Option<PublicKey>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        key.map(|k| *k.as_bytes()).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<PublicKey>, D::Error> {
        Ok(Option::<[u8; KEY_LEN]>::deserialize(d)?.map(PublicKey::from_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rendezvous::directory::{
        AttachedView, DaemonRef, MAX_TREE_PAGE, MAX_TREE_PAGE_ATTACHMENTS, PathView, TenantLimits,
        TokenRole,
    };
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    fn longest_name(i: usize) -> ServiceName {
        let mut text = format!("/{i}");
        while text.len() < super::super::name::MAX_NAME_LEN {
            text.push('x');
        }
        ServiceName::parse(&text).unwrap()
    }

    fn v6() -> SocketAddr {
        // serde carries neither flow info nor scope id (both are local to the sender's host).
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, u16::MAX, 0, 0))
    }

    fn largest_messages() -> (ClientMessage, ServerMessage, ServerMessage) {
        let register = ClientMessage::Register {
            request: u64::MAX,
            token: "t".repeat(MAX_TOKEN_LEN),
            services: (0..MAX_SERVICES).map(longest_name).collect(),
            host_candidates: vec![v6(); MAX_HOST_CANDIDATES],
            path_tokens: vec!["p".repeat(MAX_PATH_TOKEN_LEN); MAX_PATH_TOKENS],
            routes: vec![RoutePolicy::Direct; MAX_SERVICES],
        };
        let introduce = ServerMessage::Introduce {
            id: u64::MAX,
            request: Some(u64::MAX),
            peer: PublicKey::from_bytes([0xff; 32]),
            service: Some(longest_name(0)),
            candidates: vec![v6(); MAX_CANDIDATES],
            role: PunchRole::Responder,
            route: Some(RoutePolicy::Relay),
        };
        let error = ServerMessage::Error {
            request: u64::MAX,
            code: ErrorCode::NoAnswer,
            detail: "é".repeat(MAX_DETAIL_LEN / 2),
        };
        (register, introduce, error)
    }

    #[test]
    fn the_largest_admin_messages_fit_and_round_trip() {
        let attached = AttachedView {
            daemon: PublicKey::from_bytes([0xff; 32]).into(),
            role: TokenRole::Client,
            online: true,
        };
        let view = PathView {
            name: longest_name(0),
            fixed: true,
            pinned: u32::MAX,
            exposed_by: Some(PublicKey::from_bytes([0xff; 32])),
            max_connections: Some(u32::MAX),
            connections: u32::MAX,
            attached: Vec::new(),
            more_attached: u32::MAX,
        };
        let mut paths = vec![view; MAX_TREE_PAGE];
        // The page's attachments, all on one path (where they fall does not change the size).
        paths[0].attached = vec![attached; MAX_TREE_PAGE_ATTACHMENTS];
        let limits = TenantLimits {
            max_paths: u32::MAX,
            max_daemons: u32::MAX,
            relay_bytes_per_sec: u64::MAX,
        };
        let tree = ServerMessage::Admin {
            request: u64::MAX,
            answer: AdminAnswer::Tree {
                tenant: "t".repeat(32),
                paths: paths.clone(),
                more: true,
                limits,
            },
        };
        // One attachment more on a path is refused as it decodes.
        let mut over = paths;
        over[1].attached = vec![over[0].attached[0].clone(); MAX_TREE_PAGE_ATTACHMENTS + 1];
        over[0].attached.clear();
        let over = ServerMessage::Admin {
            request: u64::MAX,
            answer: AdminAnswer::Tree {
                tenant: "t".repeat(32),
                paths: over,
                more: true,
                limits,
            },
        };
        assert_eq!(
            ServerMessage::decode(&over.encode()),
            Err(MessageError::Malformed)
        );
        let created = ServerMessage::Admin {
            request: u64::MAX,
            answer: AdminAnswer::Created {
                name: longest_name(0),
                server_token: "s".repeat(MAX_TOKEN_LEN),
                client_token: "c".repeat(MAX_TOKEN_LEN),
            },
        };
        for msg in [tree, created] {
            let bytes = msg.encode();
            assert!(bytes.len() <= MAX_MESSAGE_LEN, "{msg:?}: {}", bytes.len());
            assert_eq!(ServerMessage::decode(&bytes), Ok(msg));
        }
        let admin = ClientMessage::Admin {
            request: u64::MAX,
            master: "m".repeat(MAX_TOKEN_LEN),
            command: AdminCommand::Tree {
                after: Some(longest_name(0)),
            },
        };
        let bytes = admin.encode();
        assert!(bytes.len() <= MAX_MESSAGE_LEN);
        assert_eq!(ClientMessage::decode(&bytes), Ok(admin));
    }

    #[test]
    fn the_largest_daemon_messages_fit_and_longer_ones_are_refused() {
        use crate::rendezvous::directory::{
            DaemonName, DaemonPath, DaemonRef, DaemonView, MAX_DAEMON_NAME_LEN, MAX_DAEMON_PAGE,
            MAX_DAEMON_PAGE_PATHS,
        };
        let longest: DaemonName = "d".repeat(MAX_DAEMON_NAME_LEN).parse().unwrap();
        let view = |paths: usize| DaemonView {
            name: longest.clone(),
            key: Some(PublicKey::from_bytes([0xff; 32])),
            online: true,
            paths: (0..paths)
                .map(|i| DaemonPath {
                    name: longest_name(i),
                    role: TokenRole::Client,
                })
                .collect(),
            more_paths: u32::MAX,
        };
        // The largest page: MAX_DAEMON_PAGE daemons showing MAX_DAEMON_PAGE_PATHS paths.
        let mut views = vec![view(0); MAX_DAEMON_PAGE];
        views[0] = view(MAX_DAEMON_PAGE_PATHS);
        let page = |daemons| ServerMessage::Admin {
            request: u64::MAX,
            answer: AdminAnswer::Daemons {
                daemons,
                more: true,
            },
        };
        let token = |answer| ServerMessage::Admin {
            request: u64::MAX,
            answer,
        };
        let answers = [
            page(views.clone()),
            token(AdminAnswer::DaemonRegistered {
                name: longest.clone(),
                token: "t".repeat(MAX_TOKEN_LEN),
            }),
            token(AdminAnswer::DaemonRedeemed {
                name: longest.clone(),
                token: "t".repeat(MAX_TOKEN_LEN),
            }),
            token(AdminAnswer::Unregistered {
                name: longest.clone(),
                key: Some(PublicKey::from_bytes([0xff; 32])),
            }),
        ];
        for msg in answers {
            let bytes = msg.encode();
            assert!(bytes.len() <= MAX_MESSAGE_LEN, "{msg:?}: {}", bytes.len());
            assert_eq!(ServerMessage::decode(&bytes), Ok(msg));
        }
        let command = |command| ClientMessage::Admin {
            request: u64::MAX,
            master: "m".repeat(MAX_TOKEN_LEN),
            command,
        };
        let commands = [
            command(AdminCommand::Register {
                name: longest.clone(),
            }),
            command(AdminCommand::Unregister {
                name: longest.clone(),
            }),
            command(AdminCommand::RedeemDaemon {
                name: longest.clone(),
            }),
            command(AdminCommand::Daemons {
                path: Some(longest_name(0)),
                after: Some(longest.clone()),
            }),
            command(AdminCommand::Rdetach {
                name: longest_name(0),
                daemon: DaemonRef::Name(longest.clone()),
            }),
        ];
        for msg in commands {
            let bytes = msg.encode();
            assert!(bytes.len() <= MAX_MESSAGE_LEN, "{msg:?}: {}", bytes.len());
            assert_eq!(ClientMessage::decode(&bytes), Ok(msg));
        }
        // One daemon more in a page, one path more in a view, or a longer or bad name does
        // not decode.
        let mut crowded = views.clone();
        crowded.push(view(0));
        assert_eq!(
            ServerMessage::decode(&page(crowded).encode()),
            Err(MessageError::Malformed)
        );
        views[0] = view(MAX_DAEMON_PAGE_PATHS + 1);
        assert_eq!(
            ServerMessage::decode(&page(views).encode()),
            Err(MessageError::Malformed)
        );
        for bad in ["d".repeat(MAX_DAEMON_NAME_LEN + 1), "Bad Name".into()] {
            // Written by hand: a DaemonName cannot hold it.
            #[derive(Serialize)]
            enum Command {
                #[allow(dead_code)]
                Create(u8),
                #[allow(dead_code)]
                Delete(u8),
                #[allow(dead_code)]
                Tree(u8),
                #[allow(dead_code)]
                Redeem(u8),
                #[allow(dead_code)]
                Reload(u8),
                #[allow(dead_code)]
                Rattach(u8),
                #[allow(dead_code)]
                Rdetach(u8),
                Register {
                    name: String,
                },
            }
            let good = postcard::to_allocvec(&Command::Register {
                name: longest.to_string(),
            })
            .unwrap();
            assert_eq!(
                postcard::from_bytes::<AdminCommand>(&good),
                Ok(AdminCommand::Register {
                    name: longest.clone()
                })
            );
            let bytes = postcard::to_allocvec(&Command::Register { name: bad }).unwrap();
            assert!(postcard::from_bytes::<AdminCommand>(&bytes).is_err());
        }
    }

    #[test]
    fn the_largest_attachments_fit_and_longer_targets_are_refused() {
        use crate::rendezvous::directory::{Attachment, MAX_TARGET_LEN};
        let expose = |len: usize| Attachment::Expose {
            target: "t".repeat(len),
        };
        let push = |len| ServerMessage::Attach {
            id: u64::MAX,
            name: longest_name(0),
            attach: Some(expose(len)),
        };
        let command = |len| ClientMessage::Admin {
            request: u64::MAX,
            master: "m".repeat(MAX_TOKEN_LEN),
            command: AdminCommand::Rattach {
                name: longest_name(0),
                daemon: PublicKey::from_bytes([0xff; 32]).into(),
                attach: expose(len),
            },
        };
        let answer = ServerMessage::Admin {
            request: u64::MAX,
            answer: AdminAnswer::Rattached {
                name: longest_name(0),
                daemon: PublicKey::from_bytes([0xff; 32]),
            },
        };
        for msg in [push(MAX_TARGET_LEN), answer] {
            let bytes = msg.encode();
            assert!(bytes.len() <= MAX_MESSAGE_LEN, "{msg:?}: {}", bytes.len());
            assert_eq!(ServerMessage::decode(&bytes), Ok(msg));
        }
        let bytes = command(MAX_TARGET_LEN).encode();
        assert!(bytes.len() <= MAX_MESSAGE_LEN, "rattach: {}", bytes.len());
        assert_eq!(ClientMessage::decode(&bytes), Ok(command(MAX_TARGET_LEN)));
        assert_eq!(
            ServerMessage::decode(&push(MAX_TARGET_LEN + 1).encode()),
            Err(MessageError::Malformed)
        );
        assert_eq!(
            ClientMessage::decode(&command(MAX_TARGET_LEN + 1).encode()),
            Err(MessageError::Malformed)
        );
    }

    #[test]
    fn the_largest_unnamed_daemon_pages_fit_and_longer_ones_are_refused() {
        use crate::rendezvous::directory::{
            DaemonPath, MAX_DAEMON_PAGE, MAX_DAEMON_PAGE_PATHS, UnnamedView,
        };
        let view = UnnamedView {
            key: PublicKey::from_bytes([0xff; 32]),
            paths: Vec::new(),
            more_paths: u32::MAX,
        };
        let mut daemons = vec![view; MAX_DAEMON_PAGE];
        daemons[0].paths = vec![
            DaemonPath {
                name: longest_name(0),
                role: TokenRole::Client,
            };
            MAX_DAEMON_PAGE_PATHS
        ];
        let page = |daemons: Vec<UnnamedView>| ServerMessage::Admin {
            request: u64::MAX,
            answer: AdminAnswer::Unnamed {
                daemons,
                more: true,
            },
        };
        let largest = page(daemons.clone());
        let bytes = largest.encode();
        assert!(bytes.len() <= MAX_MESSAGE_LEN, "{}", bytes.len());
        assert_eq!(ServerMessage::decode(&bytes), Ok(largest));
        let mut over = daemons.clone();
        over.push(daemons[1].clone());
        assert_eq!(
            ServerMessage::decode(&page(over).encode()),
            Err(MessageError::Malformed)
        );
        let command = ClientMessage::Admin {
            request: u64::MAX,
            master: "m".repeat(MAX_TOKEN_LEN),
            command: AdminCommand::Unnamed {
                path: Some(longest_name(0)),
                after: Some(PublicKey::from_bytes([0xff; 32])),
            },
        };
        let bytes = command.encode();
        assert!(bytes.len() <= MAX_MESSAGE_LEN);
        assert_eq!(ClientMessage::decode(&bytes), Ok(command));
    }

    #[test]
    fn the_largest_pins_fit_and_more_keys_are_refused() {
        let keys: Vec<PublicKey> = (0..=MAX_FIXED_CLIENTS)
            .map(|i| PublicKey::from_bytes([u8::try_from(i).unwrap(); 32]))
            .collect();
        let pins = |clients: &[PublicKey]| ServerMessage::Pins {
            id: u64::MAX,
            name: longest_name(0),
            clients: clients.to_vec(),
        };
        let largest = pins(&keys[..MAX_FIXED_CLIENTS]);
        let bytes = largest.encode();
        assert!(bytes.len() <= MAX_MESSAGE_LEN, "{}", bytes.len());
        assert_eq!(ServerMessage::decode(&bytes), Ok(largest));
        assert_eq!(
            ServerMessage::decode(&pins(&keys).encode()),
            Err(MessageError::Malformed)
        );
        // A key cut short does not decode either.
        let mut short = pins(&keys[..1]).encode();
        short.pop();
        assert_eq!(ServerMessage::decode(&short), Err(MessageError::Malformed));
    }

    #[test]
    fn the_largest_grants_fit_and_more_are_refused() {
        use crate::rendezvous::grants::{Grant, MAX_GRANTS};
        let grant = |i| Grant {
            name: longest_name(i),
            role: TokenRole::Client,
        };
        let granted = |n: usize| ServerMessage::Granted {
            request: u64::MAX,
            grants: Grants {
                master: true,
                paths: (0..n).map(grant).collect(),
            },
        };
        let largest = granted(MAX_GRANTS);
        let bytes = largest.encode();
        assert!(bytes.len() <= MAX_MESSAGE_LEN, "granted: {}", bytes.len());
        assert_eq!(ServerMessage::decode(&bytes), Ok(largest));
        assert_eq!(
            ServerMessage::decode(&granted(MAX_GRANTS + 1).encode()),
            Err(MessageError::Malformed)
        );
        let outcome = |len: usize| ClientMessage::AttachOutcome {
            name: longest_name(0),
            failed: Some("é".repeat(len / 2)),
        };
        let bytes = outcome(MAX_ATTACH_ERROR_LEN).encode();
        assert!(bytes.len() <= MAX_MESSAGE_LEN, "outcome: {}", bytes.len());
        assert_eq!(
            ClientMessage::decode(&bytes),
            Ok(outcome(MAX_ATTACH_ERROR_LEN))
        );
        assert_eq!(
            ClientMessage::decode(&outcome(MAX_ATTACH_ERROR_LEN + 2).encode()),
            Err(MessageError::Malformed)
        );
        let failed = |n: usize| ServerMessage::Admin {
            request: u64::MAX,
            answer: AdminAnswer::Failed {
                failures: (0..n)
                    .map(|i| crate::rendezvous::directory::AttachFailure {
                        daemon: PublicKey::from_bytes([0xff; 32]).into(),
                        name: longest_name(i),
                        reason: "r".repeat(MAX_ATTACH_ERROR_LEN),
                    })
                    .collect(),
                more: true,
            },
        };
        let largest = failed(crate::rendezvous::directory::MAX_FAILED_PAGE);
        let bytes = largest.encode();
        assert!(bytes.len() <= MAX_MESSAGE_LEN, "failed: {}", bytes.len());
        assert_eq!(ServerMessage::decode(&bytes), Ok(largest));
        assert_eq!(
            ServerMessage::decode(
                &failed(crate::rendezvous::directory::MAX_FAILED_PAGE + 1).encode()
            ),
            Err(MessageError::Malformed)
        );
        let uses = |n: usize| ServerMessage::Tokens {
            request: u64::MAX,
            uses: (0..n).map(|i| TokenUse::Path(grant(i))).collect(),
        };
        let largest = uses(MAX_PATH_TOKENS);
        let bytes = largest.encode();
        assert!(bytes.len() <= MAX_MESSAGE_LEN, "tokens: {}", bytes.len());
        assert_eq!(ServerMessage::decode(&bytes), Ok(largest));
        assert_eq!(
            ServerMessage::decode(&uses(MAX_PATH_TOKENS + 1).encode()),
            Err(MessageError::Malformed)
        );
    }

    #[test]
    fn largest_messages_fit_and_round_trip() {
        let (register, introduce, error) = largest_messages();
        let bytes = register.encode();
        assert!(bytes.len() <= MAX_MESSAGE_LEN, "register: {}", bytes.len());
        assert_eq!(ClientMessage::decode(&bytes), Ok(register));
        for msg in [introduce, error] {
            let bytes = msg.encode();
            assert!(bytes.len() <= MAX_MESSAGE_LEN, "{msg:?}: {}", bytes.len());
            assert_eq!(ServerMessage::decode(&bytes), Ok(msg));
        }
    }

    /// Hostile route trailers: a `Register` trailer of the wrong length or with an unknown
    /// byte, an `Introduce` trailer longer than one byte, and a trailer on any other message
    /// are refused; a message without one reads as before (all routes `any`).
    #[test]
    fn route_trailers_are_checked() {
        let services: Vec<ServiceName> = (0..3).map(longest_name).collect();
        let register = ClientMessage::Register {
            request: 1,
            token: String::new(),
            services: services.clone(),
            host_candidates: vec![],
            path_tokens: vec![],
            routes: vec![RoutePolicy::Relay, RoutePolicy::Any, RoutePolicy::Direct],
        };
        let bytes = register.encode();
        assert_eq!(&bytes[bytes.len() - 3..], &[2, 0, 1]);
        assert_eq!(ClientMessage::decode(&bytes), Ok(register.clone()));
        let body = &bytes[..bytes.len() - 3];
        let ClientMessage::Register { routes, .. } = ClientMessage::decode(body).unwrap() else {
            panic!("a register");
        };
        assert!(routes.is_empty(), "no trailer: every route any");
        for bad in [&[2u8, 0][..], &[2, 0, 1, 0], &[2, 0, 3], &[0xff, 0, 0]] {
            let bytes = [body, bad].concat();
            assert_eq!(
                ClientMessage::decode(&bytes),
                Err(MessageError::Malformed),
                "{bad:?}"
            );
        }
        let lookup = ClientMessage::Lookup {
            request: 1,
            name: longest_name(0),
            route: RoutePolicy::Relay,
        };
        let bytes = lookup.encode();
        assert_eq!(bytes.last(), Some(&2));
        assert_eq!(ClientMessage::decode(&bytes), Ok(lookup));
        for bad in [&[2u8, 2][..], &[3]] {
            let bytes = [&bytes[..bytes.len() - 1], bad].concat();
            assert_eq!(ClientMessage::decode(&bytes), Err(MessageError::Malformed));
        }
        let renew = ClientMessage::Renew { request: 1 }.encode();
        assert_eq!(
            ClientMessage::decode(&[&renew[..], &[0]].concat()),
            Err(MessageError::Malformed)
        );
        let (_, introduce, error) = largest_messages();
        let bytes = introduce.encode();
        assert_eq!(bytes.last(), Some(&2));
        for bad in [&[2u8, 2][..], &[9]] {
            let bytes = [&bytes[..bytes.len() - 1], bad].concat();
            assert_eq!(ServerMessage::decode(&bytes), Err(MessageError::Malformed));
        }
        let bytes = [&error.encode()[..], &[2]].concat();
        assert_eq!(ServerMessage::decode(&bytes), Err(MessageError::Malformed));
    }

    #[test]
    fn over_limit_lists_and_strings_are_refused() {
        let ok = ClientMessage::Register {
            request: 1,
            token: "t".repeat(MAX_TOKEN_LEN + 1),
            services: vec![],
            host_candidates: vec![],
            path_tokens: vec![],
            routes: vec![],
        };
        assert_eq!(
            ClientMessage::decode(&ok.encode()),
            Err(MessageError::Malformed)
        );
        let hosts = ClientMessage::Register {
            request: 1,
            token: String::new(),
            services: vec![],
            host_candidates: vec![(Ipv4Addr::LOCALHOST, 1).into(); MAX_HOST_CANDIDATES + 1],
            path_tokens: vec![],
            routes: vec![],
        };
        assert_eq!(
            ClientMessage::decode(&hosts.encode()),
            Err(MessageError::Malformed)
        );
        let services = ClientMessage::Register {
            request: 1,
            token: String::new(),
            services: (0..=MAX_SERVICES).map(longest_name).collect(),
            host_candidates: vec![],
            path_tokens: vec![],
            routes: vec![],
        };
        assert_eq!(
            ClientMessage::decode(&services.encode()),
            Err(MessageError::Malformed)
        );
        for path_tokens in [
            vec![String::new(); MAX_PATH_TOKENS + 1],
            vec!["p".repeat(MAX_PATH_TOKEN_LEN + 1)],
        ] {
            let tokens = ClientMessage::Register {
                request: 1,
                token: String::new(),
                services: vec![],
                host_candidates: vec![],
                path_tokens,
                routes: vec![],
            };
            assert_eq!(
                ClientMessage::decode(&tokens.encode()),
                Err(MessageError::Malformed)
            );
        }
        let mut trailing = ClientMessage::Unregister.encode();
        trailing.push(0);
        assert_eq!(
            ClientMessage::decode(&trailing),
            Err(MessageError::Malformed)
        );
        // A list length far beyond the datagram must not allocate or panic.
        assert!(ClientMessage::decode(&[0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("hello".into(), 10), "hello");
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| (Ipv4Addr::from(ip), p).into()),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| (Ipv6Addr::from(ip), p).into()),
        ]
    }

    fn name() -> impl Strategy<Value = ServiceName> {
        "(/[a-z0-9._-]{1,12}){1,4}".prop_filter_map("valid", |s| ServiceName::parse(&s).ok())
    }

    fn client_message() -> impl Strategy<Value = ClientMessage> {
        prop_oneof![
            (
                any::<u64>(),
                "[a-z]{0,64}",
                proptest::collection::vec(name(), 0..=MAX_SERVICES),
                proptest::collection::vec(addr(), 0..=MAX_HOST_CANDIDATES),
                proptest::collection::vec("[a-f0-9]{0,48}", 0..=MAX_PATH_TOKENS),
                any::<bool>(),
            )
                .prop_map(
                    |(request, token, services, host_candidates, path_tokens, routed)| {
                        // Every other service relay-only, when the registration has routes.
                        let routes = if routed {
                            (0..services.len())
                                .map(|i| RoutePolicy::from_byte((i % 3) as u8).unwrap_or_default())
                                .collect()
                        } else {
                            vec![]
                        };
                        ClientMessage::Register {
                            request,
                            token,
                            services,
                            host_candidates,
                            path_tokens,
                            routes,
                        }
                    }
                ),
            any::<u64>().prop_map(|request| ClientMessage::Renew { request }),
            Just(ClientMessage::Unregister),
            (any::<u64>(), name(), 0u8..3).prop_map(|(request, name, r)| ClientMessage::Lookup {
                request,
                name,
                route: RoutePolicy::from_byte(r).unwrap_or_default(),
            }),
            (any::<u64>(), any::<[u8; 32]>()).prop_map(|(request, k)| ClientMessage::ConnectPeer {
                request,
                peer: PublicKey::from_bytes(k)
            }),
            any::<u64>().prop_map(|id| ClientMessage::Ack { id }),
            (
                any::<u64>(),
                name(),
                proptest::option::of(any::<u16>()),
                any::<bool>()
            )
                .prop_map(|(request, name, port, udp)| if udp {
                    ClientMessage::PublishUdp {
                        request,
                        name,
                        port,
                    }
                } else {
                    ClientMessage::Publish {
                        request,
                        name,
                        port,
                    }
                }),
            (any::<u64>(), name())
                .prop_map(|(request, name)| ClientMessage::PublishSni { request, name }),
            any::<[u8; 32]>().prop_map(|k| ClientMessage::SourceLeft {
                source: PublicKey::from_bytes(k)
            }),
            (any::<u64>(), "[a-f0-9]{0,64}", admin_command()).prop_map(
                |(request, master, command)| ClientMessage::Admin {
                    request,
                    master,
                    command,
                }
            ),
        ]
    }

    fn admin_command() -> impl Strategy<Value = AdminCommand> {
        prop_oneof![
            (name(), any::<bool>(), any::<Option<u32>>()).prop_map(
                |(name, fixed, max_connections)| {
                    AdminCommand::Create {
                        name,
                        fixed,
                        max_connections,
                    }
                }
            ),
            name().prop_map(|name| AdminCommand::Delete { name }),
            proptest::option::of(name()).prop_map(|after| AdminCommand::Tree { after }),
            (name(), any::<bool>()).prop_map(|(name, s)| AdminCommand::Redeem {
                name,
                role: if s {
                    TokenRole::Server
                } else {
                    TokenRole::Client
                },
            }),
            name().prop_map(|name| AdminCommand::Reload { name }),
            (name(), any::<[u8; 32]>(), "[ -~]{1,200}", addr()).prop_map(
                |(name, k, target, addr)| AdminCommand::Rattach {
                    name,
                    daemon: PublicKey::from_bytes(k).into(),
                    attach: if target.len() % 2 == 0 {
                        crate::rendezvous::directory::Attachment::Expose { target }
                    } else {
                        crate::rendezvous::directory::Attachment::Listen { addr }
                    },
                }
            ),
            (name(), any::<[u8; 32]>()).prop_map(|(name, k)| AdminCommand::Rdetach {
                name,
                daemon: PublicKey::from_bytes(k).into(),
            }),
        ]
    }

    fn admin_answer() -> impl Strategy<Value = AdminAnswer> {
        let view = (
            name(),
            any::<bool>(),
            any::<u32>(),
            any::<Option<[u8; 32]>>(),
            (any::<Option<u32>>(), any::<u32>(), any::<u32>()),
            proptest::collection::vec(
                (any::<[u8; 32]>(), any::<bool>()).prop_map(|(k, s)| AttachedView {
                    daemon: if s {
                        PublicKey::from_bytes(k).into()
                    } else {
                        DaemonRef::Name("laptop".parse().unwrap())
                    },
                    role: if k[0] % 2 == 0 {
                        TokenRole::Server
                    } else {
                        TokenRole::Client
                    },
                    online: s,
                }),
                0..=2,
            ),
        )
            .prop_map(
                |(
                    name,
                    fixed,
                    pinned,
                    k,
                    (max_connections, connections, more_attached),
                    attached,
                )| {
                    PathView {
                        name,
                        fixed,
                        pinned,
                        exposed_by: k.map(PublicKey::from_bytes),
                        max_connections,
                        connections,
                        attached,
                        more_attached,
                    }
                },
            );
        prop_oneof![
            (name(), "[a-f0-9]{48}", "[a-f0-9]{48}").prop_map(|(name, s, c)| {
                AdminAnswer::Created {
                    name,
                    server_token: s,
                    client_token: c,
                }
            }),
            name().prop_map(|name| AdminAnswer::Deleted { name }),
            (
                "[a-z]{1,32}",
                proptest::collection::vec(view, 0..=MAX_TREE_PAGE),
                any::<bool>(),
                (any::<u32>(), any::<u32>(), any::<u64>()),
            )
                .prop_map(|(tenant, paths, more, (p, d, r))| AdminAnswer::Tree {
                    tenant,
                    paths,
                    more,
                    limits: TenantLimits {
                        max_paths: p,
                        max_daemons: d,
                        relay_bytes_per_sec: r,
                    },
                }),
            (name(), "[a-f0-9]{48}").prop_map(|(name, token)| AdminAnswer::Redeemed {
                name,
                role: TokenRole::Client,
                token,
            }),
            (name(), any::<u32>())
                .prop_map(|(name, forgotten)| AdminAnswer::Reloaded { name, forgotten }),
            (name(), any::<[u8; 32]>()).prop_map(|(name, k)| AdminAnswer::Rattached {
                name,
                daemon: PublicKey::from_bytes(k),
            }),
            (name(), any::<[u8; 32]>()).prop_map(|(name, k)| AdminAnswer::Rdetached {
                name,
                daemon: PublicKey::from_bytes(k),
            }),
        ]
    }

    fn server_message() -> impl Strategy<Value = ServerMessage> {
        prop_oneof![
            (
                any::<u64>(),
                name(),
                proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_FIXED_CLIENTS)
            )
                .prop_map(|(id, name, keys)| ServerMessage::Pins {
                    id,
                    name,
                    clients: keys.into_iter().map(PublicKey::from_bytes).collect(),
                }),
            (
                any::<u64>(),
                proptest::collection::vec((name(), 0..4u8), 0..=MAX_PATH_TOKENS)
            )
                .prop_map(|(request, uses)| ServerMessage::Tokens {
                    request,
                    uses: uses
                        .into_iter()
                        .map(|(name, k)| match k {
                            0 => TokenUse::Master,
                            1 => TokenUse::Daemon,
                            2 => TokenUse::Refused,
                            _ => TokenUse::Path(crate::rendezvous::Grant {
                                name,
                                role: TokenRole::Server,
                            }),
                        })
                        .collect(),
                }),
            (any::<u64>(), any::<u32>(), addr()).prop_map(|(request, lease_secs, reflexive)| {
                ServerMessage::Registered {
                    request,
                    lease_secs,
                    reflexive,
                }
            }),
            (any::<u64>(), any::<u32>()).prop_map(|(request, lease_secs)| ServerMessage::Renewed {
                request,
                lease_secs
            }),
            (any::<u64>(), any::<u32>())
                .prop_map(|(request, wait_secs)| ServerMessage::Waiting { request, wait_secs }),
            (any::<u64>(), 0..10u8, "\\PC{0,50}").prop_map(|(request, c, detail)| {
                let code = [
                    ErrorCode::BadToken,
                    ErrorCode::UnknownService,
                    ErrorCode::NameTaken,
                    ErrorCode::NotRegistered,
                    ErrorCode::LeaseExpired,
                    ErrorCode::PeerTimeout,
                    ErrorCode::TooMany,
                    ErrorCode::Malformed,
                    ErrorCode::NoAnswer,
                    ErrorCode::NotPinned,
                ][usize::from(c)];
                ServerMessage::Error {
                    request,
                    code,
                    detail,
                }
            }),
            (
                any::<u64>(),
                any::<Option<u64>>(),
                any::<[u8; 32]>(),
                proptest::option::of(name()),
                proptest::collection::vec(addr(), 0..=MAX_CANDIDATES),
                any::<bool>(),
                proptest::option::of(0u8..3),
            )
                .prop_map(|(id, request, k, service, candidates, init, route)| {
                    ServerMessage::Introduce {
                        id,
                        request,
                        peer: PublicKey::from_bytes(k),
                        service,
                        candidates,
                        role: if init {
                            PunchRole::Initiator
                        } else {
                            PunchRole::Responder
                        },
                        route: route.and_then(RoutePolicy::from_byte),
                    }
                }),
            Just(ServerMessage::LeaseExpired),
            (any::<u64>(), admin_answer())
                .prop_map(|(request, answer)| ServerMessage::Admin { request, answer }),
            (any::<u64>(), any::<u8>())
                .prop_map(|(request, ttl)| ServerMessage::Observed { request, ttl }),
            (
                any::<u64>(),
                any::<bool>(),
                proptest::collection::vec(
                    (name(), any::<bool>()),
                    0..=crate::rendezvous::MAX_GRANTS
                )
            )
                .prop_map(|(request, master, paths)| ServerMessage::Granted {
                    request,
                    grants: Grants {
                        master,
                        paths: paths
                            .into_iter()
                            .map(|(name, s)| crate::rendezvous::Grant {
                                name,
                                role: if s {
                                    TokenRole::Server
                                } else {
                                    TokenRole::Client
                                },
                            })
                            .collect(),
                    },
                }),
            (any::<u64>(), name(), proptest::option::of(addr())).prop_map(|(id, name, addr)| {
                ServerMessage::Attach {
                    id,
                    name,
                    attach: addr
                        .map(|addr| crate::rendezvous::directory::Attachment::Listen { addr }),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = ClientMessage::decode(&bytes);
            let _ = ServerMessage::decode(&bytes);
        }

        #[test]
        fn client_messages_round_trip(msg in client_message()) {
            let bytes = msg.encode();
            prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
            prop_assert_eq!(ClientMessage::decode(&bytes), Ok(msg));
        }

        #[test]
        fn server_messages_round_trip(msg in server_message()) {
            let bytes = msg.encode();
            prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
            prop_assert_eq!(ServerMessage::decode(&bytes), Ok(msg));
        }

        #[test]
        fn mutated_messages_never_panic(msg in client_message(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
            let mut bytes = msg.encode();
            for (at, v) in flips {
                let n = bytes.len();
                bytes[at % n] = v;
            }
            let _ = ClientMessage::decode(&bytes);
            let _ = ServerMessage::decode(&bytes);
        }
    }
}
