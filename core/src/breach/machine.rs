//! [`Breach`]: the Containment Breach server's state machine.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::MAX_REQUEST_LEN;
use super::leases::{LeaseKey, Leases};
use super::messages::{ConnectionType, Request, Response, canonical};
use super::waiters::{Conns, State};
use super::{BreachConfig, BreachStats, ConnId, ConnectRefused, Malformed, Output, UdpOutcome};

/// The Containment Breach API's server side: leases, waiting peers, registered servers and
/// the responses they get (see the [module docs](super) for the protocol and the run loop).
///
/// After every `handle_*` call, drain [`Breach::poll_output`] until it returns `None`, then
/// sleep until [`Breach::poll_timeout`].
#[derive(Debug)]
pub struct Breach {
    config: BreachConfig,
    leases: Leases,
    conns: Conns,
    next_conn: u64,
    outputs: VecDeque<Output>,
    stats: BreachStats,
}

impl Breach {
    /// A server with no lease and no connection.
    pub fn new(config: BreachConfig) -> Self {
        Self {
            leases: Leases::new(config.max_leases, config.max_leases_per_ip),
            config,
            conns: Conns::default(),
            next_conn: 0,
            outputs: VecDeque::new(),
            stats: BreachStats::default(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &BreachConfig {
        &self.config
    }

    /// Call for each UDP request `{"PeerPort": peer_port}` that arrived from `from`: leases
    /// (source IP, `peer_port`) to `from`, or renews that lease. Requests that were waiting for
    /// this datagram proceed.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, peer_port: i64) -> UdpOutcome {
        self.stats.udp_requests += 1;
        let from = SocketAddr::new(canonical(from.ip()), from.port());
        let key = (from.ip(), peer_port);
        let outcome = match self.leases.renew(now, key, from, self.config.lease_timeout) {
            Ok(true) => UdpOutcome::Leased,
            Ok(false) => UdpOutcome::Renewed,
            Err(refused) => {
                self.stats.leases_refused += 1;
                return UdpOutcome::Refused(refused);
            }
        };
        for conn in self.conns.awaiting(key) {
            if let Some(State::AwaitingUdp {
                kind,
                local,
                remote,
            }) = self.conns.get(conn).map(|c| c.state)
            {
                self.proceed(conn, kind, local, remote);
            }
        }
        outcome
    }

    /// Call when the TCP listener accepted a connection from `from`. On `Err`, write
    /// `Response::error(refused)` to it if possible and close it; the core does not know it.
    pub fn handle_connect(
        &mut self,
        now: Instant,
        from: SocketAddr,
    ) -> Result<ConnId, ConnectRefused> {
        let ip = canonical(from.ip());
        let refused = if self.conns.len() >= self.config.max_connections {
            Some(ConnectRefused::Full)
        } else if self.conns.count_from(&ip) >= self.config.max_connections_per_ip {
            Some(ConnectRefused::IpFull)
        } else {
            None
        };
        if let Some(refused) = refused {
            self.stats.connections_refused += 1;
            return Err(refused);
        }
        self.stats.connections += 1;
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(id, ip, now + self.config.request_timeout);
        Ok(id)
    }

    /// Call for each complete request read from `conn`.
    pub fn handle_request(&mut self, now: Instant, conn: ConnId, request: &Request) {
        let Some(c) = self.conns.get(conn).copied() else {
            return;
        };
        self.stats.requests += 1;
        let kind = request.kind();
        match (c.state, kind) {
            (State::Server { local }, Some(ConnectionType::KeepAlive)) => {
                // Cannot fail: a registered server's lease exists (it leaves with it).
                let _ = self.leases.extend(now, local, self.config.lease_timeout);
                return;
            }
            (State::Server { .. }, _) => {
                return self.fail(conn, "a Server connection takes only KeepAlive requests");
            }
            (State::New, _) => {}
            (_, _) => {
                return self.fail(conn, "one request per connection (this one is waiting)");
            }
        }
        let Some(kind) = kind else {
            return self.fail(
                conn,
                format!(
                    "unknown ConnectionType {:?}: Server, Client, Peer or KeepAlive",
                    request.connection_type
                ),
            );
        };
        let local = (c.ip, request.local_peer_port);
        let remote = match kind {
            ConnectionType::Server => local,
            ConnectionType::KeepAlive => {
                return self.fail(
                    conn,
                    "KeepAlive keeps a Server connection: send it on the connection that sent Server",
                );
            }
            ConnectionType::Client | ConnectionType::Peer => {
                match request.remote_ip.trim().parse::<IpAddr>() {
                    Ok(ip) => (canonical(ip), request.remote_peer_port),
                    Err(_) => {
                        return self.fail(
                            conn,
                            format!("RemoteIP {:?} is not an IP address", request.remote_ip),
                        );
                    }
                }
            }
        };
        if kind == ConnectionType::Peer && remote == local {
            return self.fail(conn, "RemoteIP and RemotePeerPort name this peer itself");
        }
        if kind == ConnectionType::Client && self.conns.server(remote).is_none() {
            return self.fail(conn, no_server(remote));
        }
        if self.leases.get(&local).is_some() {
            return self.proceed(conn, kind, local, remote);
        }
        if !self.may_wait(conn) {
            return self.fail(conn, "too many waiting connections; try again later");
        }
        self.conns.set(
            conn,
            State::AwaitingUdp {
                kind,
                local,
                remote,
            },
            Some(now + self.config.udp_grace),
        );
    }

    /// Call when `conn` sent something that is not a request (or too long a one): it gets an
    /// error and is closed.
    pub fn handle_malformed(&mut self, _now: Instant, conn: ConnId, what: Malformed) {
        if self.conns.get(conn).is_none() {
            return;
        }
        self.stats.malformed += 1;
        match what {
            Malformed::TooLong => {
                self.fail(conn, format!("request longer than {MAX_REQUEST_LEN} bytes"))
            }
            Malformed::Invalid(why) => self.fail(conn, format!("malformed request: {why}")),
        }
    }

    /// Call when `conn` was closed by its peer or failed. It is forgotten (a waiting peer or a
    /// registered server with it). Unknown ids are ignored.
    pub fn handle_closed(&mut self, _now: Instant, conn: ConnId) {
        self.conns.remove(conn);
    }

    /// Call once [`Breach::poll_timeout`]'s deadline has passed (earlier is harmless): expires
    /// leases (their waiters get a timeout error) and connections that took too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(key) = self.leases.pop_expired(now) {
            self.stats.leases_expired += 1;
            for conn in self.conns.waiting_on(key) {
                let secs = self.config.lease_timeout.as_secs();
                self.fail(
                    conn,
                    format!(
                        "timeout: the lease of peer port {} from {} expired ({secs} s without a UDP request)",
                        key.1, key.0
                    ),
                );
            }
        }
        while let Some(conn) = self.conns.expired(now) {
            let Some(c) = self.conns.get(conn).copied() else {
                break;
            };
            match c.state {
                State::AwaitingUdp { local, .. } => self.fail(
                    conn,
                    format!(
                        "timeout: no lease for peer port {} from {} within {} ms: send the UDP request {{\"PeerPort\": {0}}} first (a full server refuses new leases)",
                        local.1,
                        local.0,
                        self.config.udp_grace.as_millis()
                    ),
                ),
                _ => self.fail(
                    conn,
                    format!(
                        "timeout: no request within {} s",
                        self.config.request_timeout.as_secs()
                    ),
                ),
            }
        }
    }

    /// The next thing to do, or `None` once everything is drained.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`Breach::handle_timeout`] next; `None`: only when something arrives.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.leases.next_expiry(), self.conns.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counters since it started.
    pub fn stats(&self) -> &BreachStats {
        &self.stats
    }

    /// How many leases are held.
    pub fn leases(&self) -> usize {
        self.leases.len()
    }

    /// How many TCP connections are open.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// How many connections are waiting (for UDP, for a peer, or as a registered server).
    pub fn waiters(&self) -> usize {
        self.conns.waiters()
    }

    /// Whether `conn` may wait without passing `max_waiters`. A connection that already waits
    /// (for its UDP packet) keeps its slot.
    fn may_wait(&self, conn: ConnId) -> bool {
        let waits = self.conns.get(conn).is_some_and(|c| c.state != State::New);
        waits || self.conns.waiters() < self.config.max_waiters
    }

    /// A request whose lease `local` exists: meet, wait or register.
    fn proceed(&mut self, conn: ConnId, kind: ConnectionType, local: LeaseKey, remote: LeaseKey) {
        // The lease exists: callers checked it, or it was just renewed.
        let Some(addr) = self.leases.get(&local) else {
            return;
        };
        match kind {
            ConnectionType::Peer => {
                if let Some(other) = self.conns.peer(remote, local) {
                    // A waiting peer's lease exists: it leaves when the lease expires.
                    let Some(other_addr) = self.leases.get(&remote) else {
                        return;
                    };
                    self.meet(conn, addr, other_addr, true);
                    self.meet(other, other_addr, addr, true);
                    return;
                }
                if let Some(old) = self.conns.peer(local, remote) {
                    self.fail(old, "replaced by a newer request for the same peer");
                }
                if !self.may_wait(conn) {
                    return self.fail(conn, "too many waiting connections; try again later");
                }
                self.conns.set(conn, State::Peer { local, remote }, None);
            }
            ConnectionType::Client => {
                let Some(server) = self.conns.server(remote) else {
                    return self.fail(conn, no_server(remote));
                };
                // A registered server's lease exists: it leaves when the lease expires.
                let Some(server_addr) = self.leases.get(&remote) else {
                    return;
                };
                self.meet(conn, addr, server_addr, true);
                self.meet(server, server_addr, addr, false);
            }
            ConnectionType::Server => {
                if let Some(old) = self.conns.server(local).filter(|old| *old != conn) {
                    self.fail(
                        old,
                        "replaced by a newer Server connection for this peer port",
                    );
                }
                if !self.may_wait(conn) {
                    return self.fail(conn, "too many waiting connections; try again later");
                }
                self.conns.set(conn, State::Server { local }, None);
            }
            ConnectionType::KeepAlive => {
                // Refused before it could wait.
                self.fail(conn, "KeepAlive keeps a Server connection");
            }
        }
    }

    /// A success for `conn`: `source` is its own UDP address, `dest` the other side's.
    fn meet(&mut self, conn: ConnId, source: SocketAddr, dest: SocketAddr, close: bool) {
        self.stats.responses += 1;
        self.outputs.push_back(Output::Respond {
            conn,
            response: Response::meet(source, dest),
        });
        if close {
            self.close(conn);
        }
    }

    /// An error for `conn`, which then closes.
    fn fail(&mut self, conn: ConnId, reason: impl std::fmt::Display) {
        self.stats.errors += 1;
        self.outputs.push_back(Output::Respond {
            conn,
            response: Response::error(reason),
        });
        self.close(conn);
    }

    fn close(&mut self, conn: ConnId) {
        if self.conns.remove(conn).is_some() {
            self.outputs.push_back(Output::Close { conn });
        }
    }

    /// Checks every index and bound (tests).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        self.leases.check();
        self.conns.check();
        assert!(self.conns.len() <= self.config.max_connections);
        assert!(self.conns.waiters() <= self.config.max_waiters);
        for (_, conn) in self.conns.iter() {
            assert!(self.conns.count_from(&conn.ip) <= self.config.max_connections_per_ip);
            match conn.state {
                State::Peer { local, .. } | State::Server { local } => {
                    assert!(
                        self.leases.get(&local).is_some(),
                        "a waiter outlived its lease"
                    );
                }
                State::New | State::AwaitingUdp { .. } => {}
            }
        }
    }

    /// The state of `conn` (tests).
    #[cfg(test)]
    pub(crate) fn state(&self, conn: ConnId) -> Option<State> {
        self.conns.get(conn).map(|c| c.state)
    }
}

/// The error for a client whose server is not registered.
fn no_server(remote: LeaseKey) -> String {
    format!(
        "no Server registered for peer port {} at {}",
        remote.1, remote.0
    )
}
