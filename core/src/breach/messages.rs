//! The Containment Breach API's messages, with the JSON field names of its README.
//!
//! The types derive serde's traits so that the names on the wire are written once, here; the
//! runtime turns bytes into them (and back) with a JSON codec. The core itself parses no JSON:
//! it takes these values, already decoded, and interprets their fields (an IP address that
//! does not parse, an unknown connection type) itself, so that every protocol decision and its
//! error text stays in the core.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The most bytes one request may take, UDP or TCP (JSON text, whitespace included). A larger
/// datagram is dropped; a TCP connection that sends more without completing a request gets an
/// error and is closed. The README's requests are well under 200 bytes.
pub const MAX_REQUEST_LEN: usize = 1024;

/// A UDP request, `{"PeerPort": int}`: "this source address is peer port `PeerPort` of its
/// IP".
///
/// A peer port is not a network port: it tells apart the peers behind one public IP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpRequest {
    /// The sender's peer port.
    #[serde(rename = "PeerPort", alias = "peerport", alias = "peerPort")]
    pub peer_port: i64,
}

/// A TCP request, `{"RemoteIP", "RemotePeerPort", "LocalPeerPort", "ConnectionType"}`.
///
/// Missing fields take their zero value and unknown fields are ignored, as a Go JSON decoder
/// would do; [`Request::kind`] interprets `ConnectionType`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Request {
    /// The remote peer's IP (ignored for `Server` and `KeepAlive`).
    #[serde(rename = "RemoteIP", alias = "remoteip", alias = "remoteIP")]
    pub remote_ip: String,
    /// The remote peer's peer port (ignored for `Server` and `KeepAlive`).
    #[serde(
        rename = "RemotePeerPort",
        alias = "remotepeerport",
        alias = "remotePeerPort"
    )]
    pub remote_peer_port: i64,
    /// The sender's own peer port: with the connection's source IP, it names the UDP lease
    /// this request is about.
    #[serde(
        rename = "LocalPeerPort",
        alias = "localpeerport",
        alias = "localPeerPort"
    )]
    pub local_peer_port: i64,
    /// `"Server"`, `"Client"`, `"Peer"` or `"KeepAlive"`.
    #[serde(
        rename = "ConnectionType",
        alias = "connectiontype",
        alias = "connectionType"
    )]
    pub connection_type: String,
}

/// What a TCP request asks for (its `ConnectionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConnectionType {
    /// Register as a server: the connection stays open and gets a response for every client.
    Server,
    /// Reach a registered server: one response, at once (an error if there is no such server).
    Client,
    /// Meet a peer that names us back: one response once both sides have asked.
    Peer,
    /// Keep a server's registration (and its lease) alive.
    KeepAlive,
}

impl ConnectionType {
    /// Parses the README's spelling (ASCII case ignored, as a Go client may vary it).
    pub fn parse(s: &str) -> Option<Self> {
        [
            ("Server", Self::Server),
            ("Client", Self::Client),
            ("Peer", Self::Peer),
            ("KeepAlive", Self::KeepAlive),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, t)| t)
    }
}

impl Request {
    /// The connection type, or `None` if `ConnectionType` is not one of the four.
    pub fn kind(&self) -> Option<ConnectionType> {
        ConnectionType::parse(&self.connection_type)
    }
}

/// A TCP response, `{"SourcePort", "SourceIP", "DestPort", "DestIP", "Error"}`.
///
/// `Source` is the receiver's own UDP address as the server saw it, `Dest` the remote peer's.
/// On success `Error` is `""`; when it is set the other fields are zero and empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Response {
    /// The receiver's own UDP port, as seen by the server.
    #[serde(rename = "SourcePort")]
    pub source_port: u16,
    /// The receiver's own IP, as seen by the server.
    #[serde(rename = "SourceIP")]
    pub source_ip: String,
    /// The remote peer's UDP port.
    #[serde(rename = "DestPort")]
    pub dest_port: u16,
    /// The remote peer's IP.
    #[serde(rename = "DestIP")]
    pub dest_ip: String,
    /// Why the request failed, or `""`.
    #[serde(rename = "Error")]
    pub error: String,
}

impl Response {
    /// A success: `source` is the receiver's UDP address, `dest` the remote peer's.
    pub fn meet(source: SocketAddr, dest: SocketAddr) -> Self {
        Self {
            source_port: source.port(),
            source_ip: canonical(source.ip()).to_string(),
            dest_port: dest.port(),
            dest_ip: canonical(dest.ip()).to_string(),
            error: String::new(),
        }
    }

    /// A failure with the reason in `Error`.
    pub fn error(reason: impl std::fmt::Display) -> Self {
        Self {
            error: reason.to_string(),
            ..Self::default()
        }
    }

    /// Whether this is an error response.
    pub fn is_error(&self) -> bool {
        !self.error.is_empty()
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (a dual-stack socket reports IPv4
/// peers that way), anything else unchanged.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_types_parse_as_the_readme_spells_them() {
        assert_eq!(
            ConnectionType::parse("Server"),
            Some(ConnectionType::Server)
        );
        assert_eq!(
            ConnectionType::parse("Client"),
            Some(ConnectionType::Client)
        );
        assert_eq!(ConnectionType::parse("Peer"), Some(ConnectionType::Peer));
        assert_eq!(
            ConnectionType::parse("KeepAlive"),
            Some(ConnectionType::KeepAlive)
        );
        assert_eq!(
            ConnectionType::parse("keepalive"),
            Some(ConnectionType::KeepAlive)
        );
        assert_eq!(ConnectionType::parse(""), None);
        assert_eq!(ConnectionType::parse("Relay"), None);
    }

    #[test]
    fn mapped_addresses_are_shown_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:4000".parse().unwrap();
        let r = Response::meet(mapped, "[2001:db8::1]:5".parse().unwrap());
        assert_eq!(r.source_ip, "192.0.2.7");
        assert_eq!(r.source_port, 4000);
        assert_eq!(r.dest_ip, "2001:db8::1");
        assert!(!r.is_error());
        assert!(Response::error("no").is_error());
    }
}
