//! Rendezvous: registration, leases, service lookup and introductions.
//!
//! Two sans-IO state machines share one message set (`messages.rs`):
//!
//! - `Server` runs in `burrow server`. Daemons register with a token and get their
//!   server-reflexive address back; a registration lives for a lease (90 s by default) after
//!   its last `Register` or `Renew`. In **client/server mode** a destination publishes named
//!   services ([`ServiceName`], e.g. `/toronto/mysql`) and a source's `Lookup` introduces both
//!   sides at once (an unknown name is an immediate error). In **peer mode** both sides name
//!   each other's key with `ConnectPeer`; the first waits until the other asks, its lease ends
//!   or the wait times out. A daemon's endpoint asks with [`crate::Endpoint::meet`] (services
//!   with [`crate::Endpoint::connect_service`]).
//! - `Client` runs in each daemon: it registers, renews, re-registers after a lost lease or a
//!   server restart, drives requests to an introduction or a clear failure, and says when to
//!   reopen the session to the server (with backoff).
//!
//! Messages ride the encrypted session between daemon and server, which authenticates the
//! daemon's key and tells the server its address. Delivery is unreliable, like STUN: the client
//! retransmits requests (500 ms doubling to 4 s, given up after 10 s), the server answers
//! duplicates identically without repeating side effects, and introductions are acknowledged
//! and retransmitted by the server until they are.
//!
//! Both machines use the endpoint's verbs: `handle_message`/`handle_timeout` in,
//! `poll_message`/`poll_event`/`poll_timeout` out, with the same drain-then-read-the-deadline
//! contract as [`crate::Endpoint`].
//!
//! Both machines are internal: an [`crate::Endpoint`] runs them. What this module exports is what
//! a caller configures and observes: [`ServerConfig`] with its [`TokenPolicy`], [`TokenLimits`]
//! and [`RelayLimits`], the [`ServerEvent`]s (with their [`ErrorCode`]) and [`ServiceName`].

mod client;
mod config;
pub mod directory;
mod events;
mod grants;
pub(crate) mod lease;
mod messages;
mod name;
mod pairs;
mod pending;
mod plausible;
mod relay;
mod retry;
mod server;

#[cfg(test)]
mod tests;

pub use config::{DEFAULT_PUBLISH_LIMIT, PublishConfig, ServerConfig, SniConfig, TokenPolicy};
pub use events::ServerEvent;
pub use grants::{Grant, Grants, MAX_GRANTS, TokenUse, token_start};
pub use lease::TokenLimits;
pub use messages::{ErrorCode, MAX_PATH_TOKEN_LEN, MAX_PATH_TOKENS};
pub use name::{NameError, ServiceName};
pub use pairs::MAX_INTRODUCED_PER_KEY;
pub use relay::RelayLimits;

pub(crate) use client::Client;
pub(crate) use config::ClientConfig;
pub(crate) use events::ClientEvent;
pub(crate) use messages::{ClientMessage, ServerMessage};
pub(crate) use relay::RelayRefusal;
pub(crate) use server::Server;
