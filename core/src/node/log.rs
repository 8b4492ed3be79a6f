//! What a runtime logs about the endpoint's events: a [`Level`] and a one-line text, handed
//! out by [`super::Node::poll_output`] as [`super::Output::Log`].

use std::fmt;

use crate::event::Event;
use crate::status::Seen;

/// How much a [`LogLine`] matters; a runtime maps it to its logger's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something the operator should look at.
    Warn,
    /// A change worth a line in the log.
    Info,
    /// Everything else, for debugging.
    Trace,
}

/// What a runtime logs about one event: a [`Level`] and a one-line text (formatted only when
/// displayed, so lines below the logger's level cost nothing).
#[derive(Clone, Debug)]
pub struct LogLine {
    event: Event,
    level: Level,
}

impl LogLine {
    /// The line for `event`, or `None` for a STUN outcome (it answers a probe). `seen` is the
    /// status bookkeeping from before this event: a registration is logged at [`Level::Info`]
    /// only when we were not registered already.
    pub(crate) fn new(event: Event, seen: &Seen) -> Option<Self> {
        let level = match &event {
            // Both answer a command; an admin answer carries tokens, which are never logged.
            Event::Stun(_) | Event::AdminAnswered { .. } => return None,
            Event::Rendezvous(
                crate::rendezvous::ServerEvent::RelayLimited { .. }
                | crate::rendezvous::ServerEvent::RelayRefused { .. }
                | crate::rendezvous::ServerEvent::DaemonKeyRefused { .. }
                | crate::rendezvous::ServerEvent::SniDown { .. },
            ) => Level::Warn,
            Event::Registered { .. } if seen.registered.is_some() => Level::Trace,
            // Asked again at every registration: logged when it changed.
            Event::Published { service, at } if seen.published.get(service) == Some(&Ok(*at)) => {
                Level::Trace
            }
            Event::Rendezvous(crate::rendezvous::ServerEvent::Listen { .. }) => Level::Trace,
            Event::Published { .. } => Level::Info,
            Event::PublishRefused { .. } => Level::Warn,
            Event::Connected { .. }
            | Event::PathChanged { .. }
            | Event::SessionClosed { .. }
            | Event::Registered { .. }
            | Event::ServiceReady { .. }
            | Event::ServiceKeyPinned { .. }
            | Event::PeerReady { .. }
            | Event::PathTokensSet { result: Ok(_) }
            | Event::MasterAttach { .. }
            | Event::PortMapped { .. }
            | Event::PortMappingFailed { .. }
            | Event::Rendezvous(_) => Level::Info,
            Event::RegistrationLost
            | Event::RegistrationFailed { .. }
            | Event::ServiceFailed { .. }
            | Event::PeerFailed { .. }
            | Event::PeerRejected { .. }
            | Event::StreamUnauthorized { .. }
            | Event::AccessRevoked { .. }
            | Event::PathTokensSet { result: Err(_) }
            | Event::PathTokensRefused { .. } => Level::Warn,
            _ => Level::Trace,
        };
        Some(Self { event, level })
    }

    /// How much it matters.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The event it is about.
    pub fn event(&self) -> &Event {
        &self.event
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.level == Level::Trace {
            return write!(f, "{:?}", self.event);
        }
        // The text a structured logger would print for a message and its fields.
        match &self.event {
            Event::Connected { peer, key, path } => {
                write!(f, "session up peer={peer} path={path} key={key}")
            }
            Event::PathChanged { peer, path } => write!(f, "path changed peer={peer} path={path}"),
            Event::SessionClosed { peer, reason, .. } => {
                write!(f, "session closed: {reason} peer={peer}")
            }
            Event::Registered { reflexive } => write!(
                f,
                "registered with the rendezvous server reflexive={reflexive}"
            ),
            Event::RegistrationLost => f.write_str("registration lost; registering again"),
            Event::RegistrationFailed { reason } => write!(f, "registration refused: {reason}"),
            Event::ServiceReady { service, peer } => {
                write!(f, "service ready service={service} peer={peer}")
            }
            Event::ServiceKeyPinned { service, key } => write!(
                f,
                "pinned the key of the service's daemon (first use): another key will be refused service={service} key={key}"
            ),
            Event::ServiceFailed { service, reason } => {
                write!(f, "service unavailable: {reason} service={service}")
            }
            Event::PeerReady { key, peer } => {
                write!(f, "met a peer in peer mode peer={peer} key={key}")
            }
            Event::PeerFailed { key, reason } => write!(
                f,
                "peer mode: not met yet, asking again: {reason} key={key}"
            ),
            Event::PeerRejected { key, addr } => {
                write!(
                    f,
                    "refused a handshake from a key the server never introduced addr={addr} key={key}"
                )
            }
            Event::StreamUnauthorized { peer, key, service } => write!(
                f,
                "refused a stream for a service the peer was not introduced for service={service} peer={peer} key={key}"
            ),
            Event::AccessRevoked { key } => write!(
                f,
                "the rendezvous server withdrew a peer's access (token redeemed or path deleted); its sessions are closed key={key}"
            ),
            Event::PathTokensSet { result: Ok(grants) } => {
                write!(
                    f,
                    "path tokens accepted; the registration may use: {grants}"
                )
            }
            Event::MasterAttach {
                service,
                attach: Some(attach),
            } => write!(
                f,
                "the tenant's master attached {service}: this daemon {attach}"
            ),
            Event::MasterAttach {
                service,
                attach: None,
            } => write!(f, "the tenant's master detached {service}"),
            Event::PortMapped {
                external,
                protocol,
                announced: true,
            } => write!(
                f,
                "port mapping: the gateway forwards {external} to this daemon ({protocol}); announced as a candidate"
            ),
            Event::PortMapped {
                external,
                protocol,
                announced: false,
            } => write!(
                f,
                "port mapping: the gateway forwards {external} ({protocol}), which is not the public address the server sees (a second NAT in front); not announced"
            ),
            Event::PortMappingFailed { reason } => write!(f, "port mapping: {reason}"),
            Event::PathTokensRefused { starts } => write!(
                f,
                "path token {}... refused by the rendezvous server (unknown, redeemed, or another tenant's); registered with the other tokens. Remove an imported one with `burrow import --forget PATH` (or --forget TOKEN), or take it out of the config",
                starts.join("..., ")
            ),
            Event::PathTokensSet { result: Err(why) } => write!(
                f,
                "path tokens refused, the previous ones are in use again: {why}"
            ),
            Event::Rendezvous(crate::rendezvous::ServerEvent::RelayLimited { key, dropped }) => {
                write!(
                    f,
                    "relay limit: dropped {dropped} packets of this daemon's token since the last report (raise the token's relay limit, or its daemons stay slow when relayed) key={key}"
                )
            }
            Event::Rendezvous(crate::rendezvous::ServerEvent::RelayRefused {
                from,
                to,
                reason,
                refused,
            }) => write!(
                f,
                "relay refused {refused} packets of {from} to {to} since the last report: {reason} (the relay carries only pairs the server introduced; a daemon sending these is misconfigured or modified)"
            ),
            Event::Rendezvous(crate::rendezvous::ServerEvent::DaemonKeyRefused {
                key,
                tenant,
                daemon,
                refused,
            }) => write!(
                f,
                "refused a registration: daemon token of {daemon} (tenant {tenant}) is bound to another key (refused {refused} so far) key={key}"
            ),
            Event::Published { service, at } => write!(f, "{service} published on {at}"),
            Event::PublishRefused { service, reason } => {
                write!(f, "{service}: publish refused: {reason}")
            }
            Event::Rendezvous(crate::rendezvous::ServerEvent::Published {
                port,
                key,
                service,
                udp,
            }) => {
                let proto = if *udp { "UDP" } else { "TCP" };
                write!(
                    f,
                    "published {service} of daemon {key} on {proto} port {port}"
                )
            }
            Event::Rendezvous(crate::rendezvous::ServerEvent::Unlisten {
                port,
                key,
                service,
                reason,
            }) => write!(
                f,
                "stopped publishing {service} of daemon {key} on port {port}: {reason}"
            ),
            Event::Rendezvous(crate::rendezvous::ServerEvent::PublishRefused {
                key,
                service,
                reason,
            }) => write!(f, "refused to publish {service} for daemon {key}: {reason}"),
            Event::Rendezvous(crate::rendezvous::ServerEvent::PublishedName {
                host,
                port,
                key,
                service,
            }) => write!(
                f,
                "published {service} of daemon {key} as {host} on the SNI port {port}"
            ),
            Event::Rendezvous(crate::rendezvous::ServerEvent::UnpublishedName {
                host,
                key,
                service,
                reason,
            }) => write!(
                f,
                "stopped publishing {service} of daemon {key} as {host}: {reason}"
            ),
            Event::Rendezvous(crate::rendezvous::ServerEvent::SniRefused { from, reason }) => {
                match from {
                    Some(from) => write!(f, "sni: refused a connection from {from}: {reason}"),
                    None => write!(f, "sni: refused a connection: {reason}"),
                }
            }
            Event::Rendezvous(crate::rendezvous::ServerEvent::SniDown { reason, .. }) => {
                write!(
                    f,
                    "{reason}; nothing can be published with publish = \"sni\""
                )
            }
            Event::Rendezvous(e) => write!(f, "rendezvous: {e:?}"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PeerId;

    #[test]
    fn first_registration_is_info_and_a_renewal_is_trace() {
        let event = Event::Registered {
            reflexive: "192.0.2.1:4000".parse().unwrap(),
        };
        let mut seen = Seen::default();
        let line = LogLine::new(event.clone(), &seen).unwrap();
        assert_eq!(line.level(), Level::Info);
        assert_eq!(
            line.to_string(),
            "registered with the rendezvous server reflexive=192.0.2.1:4000"
        );
        seen.handle_event(&event);
        assert_eq!(LogLine::new(event, &seen).unwrap().level(), Level::Trace);
    }

    #[test]
    fn stun_outcomes_are_not_logged_and_data_events_are_trace() {
        let seen = Seen::default();
        let stun = Event::Stun(crate::stun::ProbeOutcome::TimedOut {
            server: "192.0.2.1:3478".parse().unwrap(),
        });
        assert!(LogLine::new(stun, &seen).is_none());
        let readable = Event::StreamsAvailable { peer: PeerId(3) };
        let line = LogLine::new(readable.clone(), &seen).unwrap();
        assert_eq!(line.level(), Level::Trace);
        assert_eq!(line.to_string(), format!("{readable:?}"));
    }
}
