//! The open TCP connections, what each is waiting for, and the indexes that find them: peers
//! waiting to meet, registered servers, requests waiting for their UDP packet.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use super::ConnId;
use super::leases::LeaseKey;
use super::messages::ConnectionType;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Accepted; no complete request yet (deadline: the request timeout).
    New,
    /// A valid request whose UDP packet has not arrived yet (deadline: the UDP grace).
    AwaitingUdp {
        kind: ConnectionType,
        local: LeaseKey,
        remote: LeaseKey,
    },
    /// A peer waiting for the peer it named (until its lease expires).
    Peer { local: LeaseKey, remote: LeaseKey },
    /// A registered server (until its lease expires).
    Server { local: LeaseKey },
}

impl State {
    /// Whether the state counts against `max_waiters`.
    fn is_waiter(&self) -> bool {
        !matches!(self, Self::New)
    }
}

/// One TCP connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conn {
    /// Its source IP (canonical).
    pub(crate) ip: IpAddr,
    pub(crate) state: State,
    /// When it times out, for `New` and `AwaitingUdp` (the others follow their lease).
    deadline: Option<Instant>,
}

/// The connection table.
#[derive(Debug, Default)]
pub(crate) struct Conns {
    conns: BTreeMap<ConnId, Conn>,
    per_ip: BTreeMap<IpAddr, usize>,
    deadlines: BTreeSet<(Instant, ConnId)>,
    awaiting: BTreeSet<(LeaseKey, ConnId)>,
    /// Waiting peers by (their lease, the lease they named).
    peers: BTreeMap<(LeaseKey, LeaseKey), ConnId>,
    servers: BTreeMap<LeaseKey, ConnId>,
    waiters: usize,
}

impl Conns {
    /// How many connections are open.
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// How many connections `ip` has open.
    pub(crate) fn count_from(&self, ip: &IpAddr) -> usize {
        self.per_ip.get(ip).copied().unwrap_or(0)
    }

    /// How many connections wait (for UDP, a peer, or clients).
    pub(crate) fn waiters(&self) -> usize {
        self.waiters
    }

    /// Adds a new connection in state `New`, timing out at `deadline`.
    pub(crate) fn insert(&mut self, id: ConnId, ip: IpAddr, deadline: Instant) {
        *self.per_ip.entry(ip).or_default() += 1;
        self.conns.insert(
            id,
            Conn {
                ip,
                state: State::New,
                deadline: None,
            },
        );
        self.set(id, State::New, Some(deadline));
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(&id)
    }

    /// Moves `id` to `state` (with `deadline` if it has its own), keeping the indexes.
    pub(crate) fn set(&mut self, id: ConnId, state: State, deadline: Option<Instant>) {
        self.unindex(id);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.state = state;
        conn.deadline = deadline;
        if let Some(at) = deadline {
            self.deadlines.insert((at, id));
        }
        match state {
            State::New => {}
            State::AwaitingUdp { local, .. } => {
                self.awaiting.insert((local, id));
            }
            State::Peer { local, remote } => {
                self.peers.insert((local, remote), id);
            }
            State::Server { local } => {
                self.servers.insert(local, id);
            }
        }
        if state.is_waiter() {
            self.waiters += 1;
        }
    }

    /// Removes `id` from every index but the table itself.
    fn unindex(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if let Some(at) = conn.deadline {
            self.deadlines.remove(&(at, id));
        }
        match conn.state {
            State::New => {}
            State::AwaitingUdp { local, .. } => {
                self.awaiting.remove(&(local, id));
            }
            State::Peer { local, remote } => {
                if self.peers.get(&(local, remote)) == Some(&id) {
                    self.peers.remove(&(local, remote));
                }
            }
            State::Server { local } => {
                if self.servers.get(&local) == Some(&id) {
                    self.servers.remove(&local);
                }
            }
        }
        if conn.state.is_waiter() {
            self.waiters -= 1;
        }
    }

    /// Forgets `id`; returns it if it was open.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        self.unindex(id);
        let conn = self.conns.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&conn.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&conn.ip);
            }
        }
        Some(conn)
    }

    /// The peer waiting with lease `local` for the lease `remote`.
    pub(crate) fn peer(&self, local: LeaseKey, remote: LeaseKey) -> Option<ConnId> {
        self.peers.get(&(local, remote)).copied()
    }

    /// The server registered under `local`.
    pub(crate) fn server(&self, local: LeaseKey) -> Option<ConnId> {
        self.servers.get(&local).copied()
    }

    /// The connections waiting on lease `local`: its peers and its server.
    pub(crate) fn waiting_on(&self, local: LeaseKey) -> Vec<ConnId> {
        let mut out: Vec<ConnId> = self
            .peers
            .range((local, (IpAddr::from([0u8; 4]), i64::MIN))..)
            .take_while(|((l, _), _)| *l == local)
            .map(|(_, id)| *id)
            .collect();
        out.extend(self.server(local));
        out
    }

    /// The requests waiting for a UDP packet for `local`.
    pub(crate) fn awaiting(&self, local: LeaseKey) -> Vec<ConnId> {
        self.awaiting
            .range((local, ConnId(0))..)
            .take_while(|(l, _)| *l == local)
            .map(|(_, id)| *id)
            .collect()
    }

    /// The earliest connection deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// A connection whose deadline has passed at `now`.
    pub(crate) fn expired(&self, now: Instant) -> Option<ConnId> {
        self.deadlines
            .first()
            .filter(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
    }

    /// Checks the indexes agree (tests).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mut per_ip = BTreeMap::<IpAddr, usize>::new();
        let mut waiters = 0;
        for (id, conn) in &self.conns {
            *per_ip.entry(conn.ip).or_default() += 1;
            if conn.state.is_waiter() {
                waiters += 1;
            }
            if let Some(at) = conn.deadline {
                assert!(self.deadlines.contains(&(at, *id)));
            }
            match conn.state {
                State::New => assert!(conn.deadline.is_some()),
                State::AwaitingUdp { local, .. } => {
                    assert!(conn.deadline.is_some());
                    assert!(self.awaiting.contains(&(local, *id)));
                }
                State::Peer { local, remote } => {
                    assert_eq!(self.peers.get(&(local, remote)), Some(id));
                }
                State::Server { local } => assert_eq!(self.servers.get(&local), Some(id)),
            }
        }
        assert_eq!(per_ip, self.per_ip);
        assert_eq!(waiters, self.waiters);
        assert_eq!(
            self.deadlines.len(),
            self.conns.values().filter(|c| c.deadline.is_some()).count()
        );
        assert_eq!(
            self.awaiting.len(),
            self.conns
                .values()
                .filter(|c| matches!(c.state, State::AwaitingUdp { .. }))
                .count()
        );
        let peers = self
            .conns
            .values()
            .filter(|c| matches!(c.state, State::Peer { .. }))
            .count();
        let servers = self
            .conns
            .values()
            .filter(|c| matches!(c.state, State::Server { .. }))
            .count();
        assert_eq!(self.peers.len(), peers);
        assert_eq!(self.servers.len(), servers);
    }

    /// Every connection with its state (tests).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ConnId, &Conn)> {
        self.conns.iter()
    }
}
