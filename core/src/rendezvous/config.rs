//! Settings of the rendezvous [`super::Server`] and [`super::Client`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::directory::Directory;
use super::lease::TokenLimits;
use super::messages::{MAX_SERVICES, MAX_TOKEN_LEN};
use super::name::ServiceName;
use super::relay::RelayLimits;

/// Which tokens the server accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenPolicy {
    /// Any token, without limits (tests, private servers).
    AnyToken,
    /// Only these tokens, each with its limits.
    Only(BTreeMap<String, TokenLimits>),
}

/// The rendezvous server's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// How long a registration lives after its last `Register` or `Renew`.
    pub lease: Duration,
    /// Which tokens are accepted.
    pub tokens: TokenPolicy,
    /// How long a `ConnectPeer` waits for the other side to ask too.
    pub peer_wait: Duration,
    /// Most registrations the server holds at once, whatever the token.
    pub max_registrations: usize,
    /// How much each token may relay.
    pub relay: RelayLimits,
    /// Handshake initiations per second (sustained, and at once) one token's daemons may send
    /// through the relay together. A relayed initiation costs its receiver a Diffie-Hellman
    /// and cannot be answered with a cookie, so the relay limits them itself.
    pub relay_initiations_per_sec: u64,
    /// A daemon's session must carry a valid registration within this long of coming up (and
    /// again after its registration ends), or the server closes it and frees its state: a key
    /// without a token costs the server a handshake and a few seconds, nothing more.
    pub register_within: Duration,
    /// Tenants with a master and the paths they declared, as loaded from the server's store
    /// (empty: only the tokens of [`Self::tokens`]). A directory token (a master's or a
    /// path's) is accepted whatever [`Self::tokens`] says; its daemons live in their tenant's
    /// namespace, where only declared paths exist. A token the directory does not know
    /// (a redeemed one, say) is judged by [`Self::tokens`] alone: refused under
    /// [`TokenPolicy::Only`], an open tenant of its own (seeing none of the directory's
    /// paths) under [`TokenPolicy::AnyToken`].
    pub directory: Directory,
    /// Which public TCP ports daemons may have their paths published on, and how many each
    /// token may hold. Off by default.
    pub publish: PublishConfig,
}

/// Default of [`PublishConfig::max_per_token`].
pub const DEFAULT_PUBLISH_LIMIT: usize = 4;

/// Publishing daemons' paths on public TCP ports of the server (`burrow server
/// --publish-ports`): a connection to such a port goes to the daemon through its session
/// with the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishConfig {
    /// The ports daemons may ask for, first and last (inclusive); `None`: publishing is off.
    pub ports: Option<(u16, u16)>,
    /// Most ports one token (tenant) may have published at once (host names on the SNI port
    /// count too).
    pub max_per_token: usize,
    /// One public port where many TLS services share, each routed by the name its clients
    /// ask for (`burrow server --publish-sni`); `None`: off.
    pub sni: Option<SniConfig>,
}

/// The server's SNI port: a TLS connection to `port` asking for `LABEL.domain` goes to the
/// path published under `LABEL` (its last segment), without the server terminating TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniConfig {
    /// The public TCP port.
    pub port: u16,
    /// The domain the published names end in (a valid host name, lower case).
    pub domain: String,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            ports: None,
            max_per_token: DEFAULT_PUBLISH_LIMIT,
            sni: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(90),
            tokens: TokenPolicy::AnyToken,
            peer_wait: Duration::from_secs(90),
            max_registrations: 100_000,
            relay: RelayLimits::default(),
            relay_initiations_per_sec: 20,
            register_within: Duration::from_secs(5),
            directory: Directory::default(),
            publish: PublishConfig::default(),
        }
    }
}

/// A daemon's rendezvous settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientConfig {
    /// The access token (at most [`MAX_TOKEN_LEN`] bytes).
    pub token: String,
    /// Tokens of declared paths, presented with the registration (at most
    /// [`MAX_PATH_TOKENS`](super::messages::MAX_PATH_TOKENS)).
    pub path_tokens: Vec<String>,
    /// Names this daemon publishes as a destination (at most [`MAX_SERVICES`], no duplicates).
    pub services: Vec<ServiceName>,
    /// The route policy of each service, in the order of `services`; empty when every one
    /// is `any` (so a server from before per-service routes reads the registration).
    pub routes: Vec<crate::path::RoutePolicy>,
    /// Local addresses a peer on the same network can use; only the first
    /// [`MAX_HOST_CANDIDATES`](super::messages::MAX_HOST_CANDIDATES) are announced.
    pub host_candidates: Vec<SocketAddr>,
    /// How often to renew the lease; `None` for a third of the lease the server announces.
    /// Never more than that third, whatever is set here.
    pub renew_every: Option<Duration>,
}

impl ClientConfig {
    /// A configuration with `token`, no services, no host candidates and default renewal.
    pub(crate) fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            path_tokens: Vec::new(),
            services: Vec::new(),
            routes: Vec::new(),
            host_candidates: Vec::new(),
            renew_every: None,
        }
    }

    /// Checks what the server would refuse outright: the token's length, and the services
    /// (see [`check_services`]).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let long_path_token = self
            .path_tokens
            .iter()
            .any(|t| t.len() > super::messages::MAX_PATH_TOKEN_LEN);
        if self.token.len() > MAX_TOKEN_LEN || long_path_token {
            return Err(ConfigError::TokenTooLong);
        }
        if self.path_tokens.len() > super::messages::MAX_PATH_TOKENS {
            return Err(ConfigError::TooManyPathTokens);
        }
        check_services(&self.services)
    }
}

/// Checks a daemon's services: at most [`MAX_SERVICES`], none listed twice.
pub(crate) fn check_services(services: &[ServiceName]) -> Result<(), ConfigError> {
    if services.len() > MAX_SERVICES {
        return Err(ConfigError::TooManyServices);
    }
    for (i, name) in services.iter().enumerate() {
        if services[..i].contains(name) {
            return Err(ConfigError::DuplicateService(name.clone()));
        }
    }
    Ok(())
}

/// Why a [`ClientConfig`] was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum ConfigError {
    /// The token is longer than [`MAX_TOKEN_LEN`] bytes.
    TokenTooLong,
    /// More than [`MAX_SERVICES`] services.
    TooManyServices,
    /// A service is listed twice.
    DuplicateService(ServiceName),
    /// More path tokens than one registration may present.
    TooManyPathTokens,
    /// Another change of path tokens is waiting for the server's answer.
    ImportPending,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TokenTooLong => write!(f, "the token is longer than {MAX_TOKEN_LEN} bytes"),
            Self::TooManyServices => {
                write!(f, "a daemon publishes at most {MAX_SERVICES} services")
            }
            Self::DuplicateService(name) => write!(f, "service {name} is listed twice"),
            Self::TooManyPathTokens => write!(
                f,
                "a daemon presents at most {} path tokens",
                super::messages::MAX_PATH_TOKENS
            ),
            Self::ImportPending => f.write_str(
                "another import is waiting for the rendezvous server's answer; try again in a moment",
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
