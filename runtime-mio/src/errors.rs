//! Why a node did not start, and why a handle's request failed.

use std::fmt;
use std::net::SocketAddr;

use burrow_core::ServiceError;
use burrow_core::rendezvous::ServiceName;

/// Why a node did not start. Each says what to change.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The UDP socket could not be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A local listener could not be bound.
    Listen {
        /// The service it was for.
        service: ServiceName,
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A service could not be exposed.
    Expose {
        /// The service.
        service: ServiceName,
        /// Why.
        source: ServiceError,
    },
    /// The OS gave no randomness for the endpoint's seed.
    Random(String),
}

fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another program holds the port: stop it or choose another port, or port 0)"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            " (no local interface has that address: use 0.0.0.0 or 127.0.0.1)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need privileges: choose a higher port)"
        }
        _ => "",
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bind { addr, source } => {
                write!(f, "cannot bind UDP {addr}: {source}{}", io_hint(source))
            }
            Self::Listen {
                service,
                addr,
                source,
            } => write!(
                f,
                "cannot listen on {addr} for {service}: {source}{}",
                io_hint(source)
            ),
            Self::Expose { service, source } => write!(f, "cannot expose {service}: {source}"),
            Self::Random(why) => write!(f, "no randomness from the OS: {why}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. } | Self::Listen { source, .. } => Some(source),
            Self::Expose { source, .. } => Some(source),
            Self::Random(_) => None,
        }
    }
}

/// The node's thread has ended (shut down, or its socket failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the node has stopped")
    }
}

impl std::error::Error for Stopped {}
