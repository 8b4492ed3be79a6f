//! The rendezvous server's SNI port (`burrow server --publish-sni`): one public TCP listener
//! whose connections are routed by the TLS server name their first bytes ask for.
//!
//! A connection accepted there is read, without a stream, until its ClientHello is whole
//! ([`read_sni`]); the name picks the daemon and path ([`Endpoint::sni_route`]), and the
//! forwarder takes the connection over with the bytes read so far, untouched (TLS ends at
//! the daemon's service, never here). Bounds, since anyone can connect: at most
//! [`MAX_HELLO`] bytes read, [`SNI_WAIT`] for the whole ClientHello, [`MAX_SNIFFING`]
//! connections read at once. Anything else (not TLS, no name, a name nobody publishes,
//! too slow, too many) closes the connection with a reset, and one line is logged at info:
//! `sni: refused a connection from ADDR: WHY`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{LogLine, Node, Output};
use crate::event::Event;
use crate::forward::sni::{MAX_HELLO, Sni, read_sni};
use crate::forward::{Action, ConnId, ListenerId, Origin};
use crate::rendezvous::ServerEvent;

/// How long a connection to the SNI port has to send its whole ClientHello.
pub const SNI_WAIT: Duration = Duration::from_secs(10);

/// Most connections to the SNI port waiting for their ClientHello at once; more are closed.
pub const MAX_SNIFFING: usize = 256;

/// The SNI listener and the connections read on it.
#[derive(Debug)]
pub(super) struct SniPort {
    listener: ListenerId,
    sniffing: BTreeMap<ConnId, Sniffing>,
}

#[derive(Debug)]
struct Sniffing {
    bytes: Vec<u8>,
    until: Instant,
    origin: Option<Origin>,
}

impl SniPort {
    /// The earliest deadline of a connection being read.
    pub(super) fn timeout(&self) -> Option<Instant> {
        self.sniffing.values().map(|s| s.until).min()
    }
}

impl Node {
    /// A server with an SNI port asks its runtime to bind it (as for a published port).
    pub(super) fn start_sni(&mut self) {
        let Some(port) = self.ep.sni_port() else {
            return;
        };
        let listener = self.fwd.reserve_listener();
        self.sni = Some(SniPort {
            listener,
            sniffing: BTreeMap::new(),
        });
        let addr = SocketAddr::new(self.udp_addr.ip(), port);
        self.queued.push_back(Output::Listen { listener, addr });
    }

    /// Whether `listener` is the SNI port's.
    pub(super) fn is_sni(&self, listener: ListenerId) -> bool {
        self.sni.as_ref().is_some_and(|s| s.listener == listener)
    }

    /// Whether `conn` is being read for its ClientHello.
    pub(super) fn is_sniffing(&self, conn: ConnId) -> bool {
        self.sni
            .as_ref()
            .is_some_and(|s| s.sniffing.contains_key(&conn))
    }

    /// The runtime bound the SNI port, or could not.
    pub(super) fn sni_listening(&mut self, now: Instant, result: Result<SocketAddr, String>) {
        self.ep.sni_listening(now, result.map(|_| ()));
    }

    /// A connection accepted on the SNI port: read it.
    pub(super) fn sni_accept(&mut self, now: Instant, origin: Option<Origin>) -> Option<ConnId> {
        let sni = self.sni.as_mut()?;
        let conn = self.fwd.reserve_conn();
        if sni.sniffing.len() >= MAX_SNIFFING {
            let why = format!("{MAX_SNIFFING} connections are already sending their ClientHello");
            self.sni_refuse(conn, origin, why);
            return Some(conn);
        }
        sni.sniffing.insert(
            conn,
            Sniffing {
                bytes: Vec::new(),
                until: now + SNI_WAIT,
                origin,
            },
        );
        self.queued.push_back(Output::Action(Action::Read { conn }));
        Some(conn)
    }

    /// `data` read from a connection on the SNI port (empty: end of file).
    pub(super) fn sni_read(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(sni) = self.sni.as_mut() else {
            return;
        };
        let Some(s) = sni.sniffing.get_mut(&conn) else {
            return;
        };
        if data.is_empty() {
            let s = sni.sniffing.remove(&conn).expect("looked up above");
            let why = "the client closed before a whole TLS ClientHello".to_string();
            return self.sni_refuse(conn, s.origin, why);
        }
        s.bytes.extend_from_slice(data);
        match read_sni(&s.bytes) {
            Sni::NeedMore if s.bytes.len() < MAX_HELLO => {
                self.queued.push_back(Output::Action(Action::Read { conn }));
            }
            Sni::NeedMore => unreachable!("read_sni refuses MAX_HELLO bytes without a hello"),
            Sni::Refused(e) => {
                let s = sni.sniffing.remove(&conn).expect("looked up above");
                self.sni_refuse(conn, s.origin, e.to_string());
            }
            Sni::Name(host) => {
                let s = sni.sniffing.remove(&conn).expect("looked up above");
                let Some(route) = self.ep.sni_route(&host) else {
                    let why = format!("no path is published as {host}");
                    return self.sni_refuse(conn, s.origin, why);
                };
                let first = Bytes::from(s.bytes);
                let (fwd, ep) = self.input(now);
                if !fwd.route_accepted(now, ep, conn, route, s.origin, first) {
                    let why = format!("the daemon publishing {host} has no session now");
                    self.sni_refuse(conn, s.origin, why);
                }
            }
        }
    }

    /// A connection on the SNI port failed before it was routed.
    pub(super) fn sni_failed(&mut self, conn: ConnId, why: &str) {
        if let Some(s) = self.sni.as_mut().and_then(|p| p.sniffing.remove(&conn)) {
            self.sni_refuse(conn, s.origin, format!("local connection: {why}"));
        }
    }

    /// Closes the connections whose ClientHello did not come in time.
    pub(super) fn sni_timeout(&mut self, now: Instant) {
        let Some(sni) = self.sni.as_mut() else {
            return;
        };
        let late: Vec<ConnId> = sni
            .sniffing
            .iter()
            .filter(|(_, s)| s.until <= now)
            .map(|(c, _)| *c)
            .collect();
        for conn in late {
            if let Some(s) = self.sni.as_mut().and_then(|p| p.sniffing.remove(&conn)) {
                let why = format!("no whole TLS ClientHello within {} s", SNI_WAIT.as_secs());
                self.sni_refuse(conn, s.origin, why);
            }
        }
    }

    /// Closes `conn` with a reset and logs why.
    fn sni_refuse(&mut self, conn: ConnId, origin: Option<Origin>, reason: String) {
        self.queued.push_back(Output::Action(Action::Close {
            conn,
            abort: true,
            reason: Some(reason.clone()),
        }));
        let event = Event::Rendezvous(ServerEvent::SniRefused {
            from: origin.map(|o| o.client),
            reason,
        });
        if let Some(line) = LogLine::new(event, &self.seen) {
            self.queued.push_back(Output::Log(line));
        }
    }
}
