//! Paths published on public TCP or UDP ports of the server (`burrow server
//! --publish-ports`).
//!
//! A daemon asks with `Publish` (`PublishUdp` for a UDP service) for a path its registration
//! exposes. A port of the range holds one publication, TCP or UDP. The server checks the
//! port against its range, the ports taken and the token's limit, then asks its owner to
//! listen ([`ServerEvent::Listen`]); only once the listener is bound
//! ([`Server::listening`]) does the daemon hear `Published`. Every connection accepted there
//! becomes a stream from the server to the daemon naming the path, every source that sends
//! to a UDP port a flow of datagrams (the node's forwarders do that); the daemon lets the server's key reach exactly the paths it was told are
//! published. A publication ends with the registration (unregistered, lease expired, token
//! withdrawn) or when the path leaves it: [`ServerEvent::Unlisten`].

use std::collections::BTreeMap;

use super::super::events::ServerEvent;
use super::super::messages::{ErrorCode, ServerMessage};
use super::super::name::ServiceName;
use super::Server;
use crate::crypto::PublicKey;

/// One published path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Publication {
    pub(crate) key: PublicKey,
    pub(crate) name: ServiceName,
    /// The tenant whose limit it counts under.
    pub(crate) token: String,
    /// The `Publish` waiting for the listener to be bound; `None` once it is.
    pub(crate) binding: Option<u64>,
    /// A UDP port (else TCP).
    pub(crate) udp: bool,
}

/// Publications by port.
#[derive(Clone, Debug, Default)]
pub(crate) struct Publications {
    by_port: BTreeMap<u16, Publication>,
    /// Publications on the SNI port, by host name (`binding` is always `None`).
    pub(super) by_host: BTreeMap<String, Publication>,
    /// Whether the SNI port is bound (`Ok`), could not be (`Err`, why), or not known yet.
    pub(super) sni_bound: Option<Result<(), String>>,
    /// Requests to publish on the SNI port waiting for it to be bound: daemon, request, path.
    pub(super) sni_waiting: Vec<(PublicKey, u64, ServiceName)>,
}

impl Publications {
    /// The port `key` publishes `name` on, if any.
    fn port_of(&self, key: &PublicKey, name: &ServiceName) -> Option<u16> {
        self.by_port
            .iter()
            .find(|(_, p)| p.key == *key && p.name == *name)
            .map(|(port, _)| *port)
    }

    /// How many ports and host names `token` holds.
    pub(super) fn count(&self, token: &str) -> usize {
        let ports = self.by_port.values().filter(|p| p.token == token).count();
        ports + self.by_host.values().filter(|p| p.token == token).count()
    }

    /// The publication on `port`.
    pub(crate) fn get(&self, port: u16) -> Option<&Publication> {
        self.by_port.get(&port)
    }

    /// Every publication, by port.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u16, &Publication)> {
        self.by_port.iter()
    }
}

impl Server {
    /// The publication on public `port`, if any: the daemon and path, and whether its
    /// listener is bound.
    #[cfg(test)]
    pub(crate) fn publication(&self, port: u16) -> Option<&Publication> {
        self.publications.get(port)
    }

    /// Every publication, by port.
    #[cfg(test)]
    pub(crate) fn publications(&self) -> impl Iterator<Item = (&u16, &Publication)> {
        self.publications.iter()
    }

    /// `from` asks to publish `name` on `port` (`None`: any port of the range), a UDP port
    /// when `udp`. A request answered before gets the same answer again.
    pub(super) fn on_publish(
        &mut self,
        from: PublicKey,
        request: u64,
        name: ServiceName,
        port: Option<u16>,
        udp: bool,
    ) {
        if self.repeat_answer(from, request) {
            return;
        }
        let Some(reg) = self.registry.get(&from) else {
            return self.not_registered(from, request);
        };
        let token = reg.token().to_string();
        let holds = reg.services().contains(&name);
        let Some((first, last)) = self.config.publish.ports else {
            let why = "this server publishes no ports (it runs without --publish-ports)";
            return self.refuse_publish(from, request, name, ErrorCode::PublishRefused, why);
        };
        if !holds {
            let why = format!("{name} is not a path this daemon's registration exposes");
            return self.refuse_publish(from, request, name, ErrorCode::PublishRefused, &why);
        }
        if let Some(old) = self.publications.port_of(&from, &name) {
            let same_kind = self.publications.get(old).is_some_and(|p| p.udp == udp);
            if same_kind && port.is_none_or(|p| p == old) {
                // Asked again (a retransmission, or after registering again): same answer,
                // once the listener is bound.
                if self
                    .publications
                    .get(old)
                    .is_some_and(|p| p.binding.is_none())
                {
                    self.send(
                        from,
                        ServerMessage::Published {
                            request,
                            name,
                            port: old,
                        },
                    );
                }
                return;
            }
            self.unpublish(old, "the daemon asked for another port");
        }
        let range = format!("{first}-{last}");
        let port = match port {
            Some(p) if p < first || p > last => {
                let why = format!("port {p} outside the server's range {range}");
                return self.refuse_publish(from, request, name, ErrorCode::PublishRefused, &why);
            }
            Some(p) if self.publications.get(p).is_some() => {
                let why = format!("port {p} is taken by another published path");
                return self.refuse_publish(from, request, name, ErrorCode::PublishRefused, &why);
            }
            Some(p) => p,
            None => match (first..=last).find(|p| self.publications.get(*p).is_none()) {
                Some(p) => p,
                None => {
                    let why = format!("no port of the server's range {range} is free");
                    return self.refuse_publish(from, request, name, ErrorCode::TooMany, &why);
                }
            },
        };
        let limit = self.config.publish.max_per_token;
        if self.publications.count(&token) >= limit {
            let why = format!("token at its limit of {limit} published ports");
            return self.refuse_publish(from, request, name, ErrorCode::TooMany, &why);
        }
        self.publications.by_port.insert(
            port,
            Publication {
                key: from,
                name: name.clone(),
                token,
                binding: Some(request),
                udp,
            },
        );
        self.events.push_back(ServerEvent::Listen {
            port,
            key: from,
            service: name,
            udp,
        });
    }

    pub(super) fn refuse_publish(
        &mut self,
        key: PublicKey,
        request: u64,
        service: ServiceName,
        code: ErrorCode,
        why: &str,
    ) {
        self.events.push_back(ServerEvent::PublishRefused {
            key,
            service,
            reason: why.to_string(),
        });
        self.fail(key, request, code, why.to_string());
    }

    /// The owner bound the listener for `port` (`Ok`), or could not (`Err`, with the OS's
    /// reason). The daemon that asked hears `Published`, or why not. Reports for a port
    /// that is no longer waiting for its listener are ignored.
    pub(crate) fn listening(&mut self, port: u16, result: Result<(), String>) {
        let Some(p) = self.publications.by_port.get_mut(&port) else {
            return;
        };
        let Some(request) = p.binding.take() else {
            return;
        };
        let (key, name, udp) = (p.key, p.name.clone(), p.udp);
        match result {
            Ok(()) => {
                self.events.push_back(ServerEvent::Published {
                    port,
                    key,
                    service: name.clone(),
                    udp,
                });
                let msg = ServerMessage::Published {
                    request,
                    name,
                    port,
                };
                if let Some(reg) = self.registry.get_mut(&key) {
                    reg.remember(request, msg.clone());
                }
                self.send(key, msg);
            }
            Err(why) => {
                self.publications.by_port.remove(&port);
                let why = format!("the server cannot listen on port {port}: {why}");
                self.events.push_back(ServerEvent::Unlisten {
                    port,
                    key,
                    service: name.clone(),
                    reason: why.clone(),
                });
                self.refuse_publish(key, request, name, ErrorCode::PublishRefused, &why);
            }
        }
    }

    /// Ends `key`'s publications of paths its registration no longer holds (every one when
    /// it is not registered any more, or moved to another tenant).
    pub(super) fn unpublish_stale(&mut self, key: &PublicKey, why: &str) {
        let reg = self.registry.get(key);
        let held = |p: &Publication| {
            reg.is_some_and(|r| r.token() == p.token && r.services().contains(&p.name))
        };
        let stale: Vec<u16> = self
            .publications
            .by_port
            .iter()
            .filter(|(_, p)| p.key == *key && !held(p))
            .map(|(port, _)| *port)
            .collect();
        for port in stale {
            self.unpublish(port, why);
        }
        self.unpublish_stale_names(key, why);
    }

    /// Ends the publication on `port`.
    fn unpublish(&mut self, port: u16, why: &str) {
        if let Some(p) = self.publications.by_port.remove(&port) {
            if let Some(request) = p.binding {
                // Its answer never came: it will not now.
                self.fail(p.key, request, ErrorCode::PublishRefused, why.to_string());
            }
            self.events.push_back(ServerEvent::Unlisten {
                port,
                key: p.key,
                service: p.name,
                reason: why.to_string(),
            });
        }
    }
}
