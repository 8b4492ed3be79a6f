//! When a daemon's hooks run: which configured service or peer a session serves, and when
//! that begins ([`HookKind::Up`]), moves to another path ([`HookKind::Path`]) and ends
//! ([`HookKind::Down`]). Core only decides and describes ([`Output::Hook`]); running a
//! program is the owner's (IO).
//!
//! - A connected service (`[[connect]]`, or one reached through a `[[peer]]`) is up at
//!   [`Event::ServiceReady`] and down when that session closes.
//! - A daemon met in peer mode (`[[peer]]`) is up at [`Event::PeerReady`] and down when that
//!   session closes.
//! - An exposed TCP service is up at the first stream a session opens for it
//!   ([`Event::IncomingStream`]) and down when that session closes.
//!
//! Each comes once per session: a second `ServiceReady` for the same session says nothing
//! new. A path change of a session reports [`HookKind::Path`] for everything up on it.
//!
//! [`Output::Hook`]: super::Output::Hook

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::crypto::PublicKey;
use crate::event::{Event, PeerId};
use crate::path::Path;
use crate::rendezvous::ServiceName;

/// What a hook belongs to: the config entry whose `on_up`/`on_down` runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookSubject {
    /// An `[[expose]]`: a session opened its first stream to this service.
    Expose(ServiceName),
    /// A `[[connect]]` (or a `[[peer]]`'s `connect`): a session to this service's daemon.
    Connect(ServiceName),
    /// A `[[peer]]`: the session to this daemon, met in peer mode.
    Peer(PublicKey),
}

/// When in a session's life the hook event comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookKind {
    /// The session is up for the subject (`on_up`).
    Up,
    /// The session moved to another path (`on_path`).
    Path,
    /// The session ended (`on_down`).
    Down,
}

impl HookKind {
    /// `up`, `path` or `down`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Path => "path",
            Self::Down => "down",
        }
    }
}

/// One moment a hook may run at, with everything its wildcards name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookEvent {
    /// Up, a path change, or down.
    pub kind: HookKind,
    /// The config entry it concerns.
    pub subject: HookSubject,
    /// The session.
    pub peer: PeerId,
    /// The peer's public key (authenticated by the handshake).
    pub peer_key: PublicKey,
    /// Our public key.
    pub host_key: PublicKey,
    /// The session's path: the peer's address (direct) or the relay's; at
    /// [`HookKind::Down`], the last one it had.
    pub path: Option<Path>,
    /// Our bound UDP address (inside our NAT).
    pub inner: SocketAddr,
    /// Our address as the rendezvous server sees it (outside our NAT), once registered.
    pub outer: Option<SocketAddr>,
}

/// The sessions that serve hook subjects, and their paths.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    /// Each session's key, latest path, and the subjects up on it.
    sessions: BTreeMap<PeerId, (PublicKey, Option<Path>, BTreeSet<HookSubject>)>,
}

/// What every hook event of one node shares: our key, our inner and outer addresses.
pub(crate) struct Host {
    pub(crate) key: PublicKey,
    pub(crate) inner: SocketAddr,
    pub(crate) outer: Option<SocketAddr>,
}

/// Sessions with no subject kept at most, so a flood of handshakes cannot grow the map.
const MAX_SESSIONS: usize = 4096;

impl Hooks {
    /// Notes `event`; pushes the hook events it makes onto `out`.
    pub(crate) fn handle_event(&mut self, event: &Event, host: &Host, out: &mut Vec<HookEvent>) {
        let up = match event {
            Event::Connected { peer, key, path } => {
                if self.sessions.len() < MAX_SESSIONS || self.sessions.contains_key(peer) {
                    let entry = self
                        .sessions
                        .entry(*peer)
                        .or_insert((*key, None, BTreeSet::new()));
                    entry.1 = Some(*path);
                }
                return;
            }
            Event::PathChanged { peer, path } => {
                if let Some((_, old, subjects)) = self.sessions.get_mut(peer) {
                    *old = Some(*path);
                    for subject in subjects.clone() {
                        out.push(self.event(HookKind::Path, subject, *peer, host));
                    }
                }
                return;
            }
            Event::SessionClosed { peer, .. } => {
                if let Some((_, _, subjects)) = self.sessions.get(peer) {
                    for subject in subjects.clone() {
                        out.push(self.event(HookKind::Down, subject, *peer, host));
                    }
                }
                self.sessions.remove(peer);
                return;
            }
            Event::ServiceReady { service, peer } => (*peer, HookSubject::Connect(service.clone())),
            Event::PeerReady { key, peer } => (*peer, HookSubject::Peer(*key)),
            Event::IncomingStream { peer, service, .. } => {
                (*peer, HookSubject::Expose(service.clone()))
            }
            _ => return,
        };
        let (peer, subject) = up;
        let Some((_, _, subjects)) = self.sessions.get_mut(&peer) else {
            return;
        };
        if subjects.insert(subject.clone()) {
            out.push(self.event(HookKind::Up, subject, peer, host));
        }
    }

    fn event(&self, kind: HookKind, subject: HookSubject, peer: PeerId, host: &Host) -> HookEvent {
        let (peer_key, path) = self
            .sessions
            .get(&peer)
            .map(|(k, p, _)| (*k, *p))
            .expect("called for a known session");
        HookEvent {
            kind,
            subject,
            peer,
            peer_key,
            host_key: host.key,
            path,
            inner: host.inner,
            outer: host.outer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CloseReason;

    fn key(n: u8) -> PublicKey {
        crate::SecretKey::from_bytes([n; 32]).public_key()
    }

    fn host() -> Host {
        Host {
            key: key(1),
            inner: "10.0.0.1:4000".parse().unwrap(),
            outer: Some("198.51.100.1:5000".parse().unwrap()),
        }
    }

    fn run(events: &[Event]) -> Vec<(HookKind, HookSubject, Option<Path>)> {
        let mut hooks = Hooks::default();
        let mut out = Vec::new();
        for e in events {
            hooks.handle_event(e, &host(), &mut out);
        }
        out.into_iter()
            .map(|h| (h.kind, h.subject, h.path))
            .collect()
    }

    #[test]
    fn up_once_per_session_then_path_then_down() {
        let (peer, other) = (PeerId(7), key(2));
        let relay = Path::Relay("203.0.113.9:7000".parse().unwrap());
        let direct = Path::Direct("198.51.100.2:6000".parse().unwrap());
        let service = ServiceName::parse("/a/echo").unwrap();
        let got = run(&[
            Event::Connected {
                peer,
                key: other,
                path: relay,
            },
            Event::ServiceReady {
                service: service.clone(),
                peer,
            },
            Event::ServiceReady {
                service: service.clone(),
                peer,
            },
            Event::PeerReady { key: other, peer },
            Event::PathChanged { peer, path: direct },
            Event::SessionClosed {
                peer,
                key: other,
                reason: CloseReason::IdleTimeout,
            },
        ]);
        let connect = HookSubject::Connect(service);
        let met = HookSubject::Peer(other);
        assert_eq!(
            got,
            vec![
                (HookKind::Up, connect.clone(), Some(relay)),
                (HookKind::Up, met.clone(), Some(relay)),
                (HookKind::Path, connect.clone(), Some(direct)),
                (HookKind::Path, met.clone(), Some(direct)),
                (HookKind::Down, connect, Some(direct)),
                (HookKind::Down, met, Some(direct)),
            ]
        );
    }

    #[test]
    fn a_session_with_no_subject_says_nothing_and_unknown_peers_are_ignored() {
        let peer = PeerId(3);
        let got = run(&[
            Event::ServiceReady {
                service: ServiceName::parse("/x").unwrap(),
                peer: PeerId(99),
            },
            Event::Connected {
                peer,
                key: key(2),
                path: Path::Direct("198.51.100.2:6000".parse().unwrap()),
            },
            Event::SessionClosed {
                peer,
                key: key(2),
                reason: CloseReason::IdleTimeout,
            },
        ]);
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn sessions_kept_are_bounded() {
        let mut hooks = Hooks::default();
        let mut out = Vec::new();
        for n in 0..(MAX_SESSIONS as u64 + 10) {
            let event = Event::Connected {
                peer: PeerId(n),
                key: key(2),
                path: Path::Direct("198.51.100.2:6000".parse().unwrap()),
            };
            hooks.handle_event(&event, &host(), &mut out);
        }
        assert_eq!(hooks.sessions.len(), MAX_SESSIONS);
    }
}
