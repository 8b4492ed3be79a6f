//! Paths published on the server's SNI port (`burrow server --publish-sni PORT --sni-domain
//! DOMAIN`): many TLS services share one public port, each under the host name made of its
//! path's last segment and the server's domain (`/web/blog` as `blog.DOMAIN`).
//!
//! The listener is bound once, when the server starts; a publication is only an entry in
//! the table the node routes connections by ([`Server::sni_route`]). It counts against the
//! token's limit like a port, and ends as a port's does (registration gone, path dropped).

use super::super::events::ServerEvent;
use super::super::messages::{ErrorCode, ServerMessage};
use super::super::name::ServiceName;
use super::Server;
use super::publish::Publication;
use crate::crypto::PublicKey;
use crate::forward::sni::host_name;

impl Server {
    /// `from` asks to publish `name` on the SNI port.
    pub(super) fn on_publish_sni(&mut self, from: PublicKey, request: u64, name: ServiceName) {
        let Some(reg) = self.registry.get(&from) else {
            return self.not_registered(from, request);
        };
        let token = reg.token().to_string();
        let holds = reg.services().contains(&name);
        let refused = ErrorCode::PublishRefused;
        let Some(sni) = self.config.publish.sni.clone() else {
            let why = "this server routes no TLS names (it runs without --publish-sni)";
            return self.refuse_publish(from, request, name, refused, why);
        };
        if !holds {
            let why = format!("{name} is not a path this daemon's registration exposes");
            return self.refuse_publish(from, request, name, refused, &why);
        }
        match &self.publications.sni_bound {
            None => {
                // Answered once the owner says whether it could bind the port.
                let waiting = (from, request, name);
                if self.publications.sni_waiting.len() >= 1024 {
                    let why = "the server's SNI port is not bound yet; try again";
                    let (_, _, name) = waiting;
                    return self.refuse_publish(from, request, name, ErrorCode::TooMany, why);
                }
                if !self.publications.sni_waiting.contains(&waiting) {
                    self.publications.sni_waiting.push(waiting);
                }
                return;
            }
            Some(Err(why)) => {
                let why = why.clone();
                return self.refuse_publish(from, request, name, refused, &why);
            }
            Some(Ok(())) => {}
        }
        let label = name.as_str().rsplit('/').next().unwrap_or_default();
        let host = match host_name(format!("{label}.{}", sni.domain).as_bytes()) {
            Ok(host) => host,
            Err(_) => {
                let why = format!(
                    "the last segment of {name} is not a host-name label (letters, digits and '-')"
                );
                return self.refuse_publish(from, request, name, refused, &why);
            }
        };
        let answer = ServerMessage::Published {
            request,
            name: name.clone(),
            port: sni.port,
        };
        match self.publications.by_host.get(&host) {
            Some(p) if p.key == from && p.name == name => return self.send(from, answer),
            Some(_) => {
                let why = format!("{host} is taken by another published path");
                return self.refuse_publish(from, request, name, ErrorCode::NameTaken, &why);
            }
            None => {}
        }
        let limit = self.config.publish.max_per_token;
        if self.publications.count(&token) >= limit {
            let why = format!("token at its limit of {limit} published ports");
            return self.refuse_publish(from, request, name, ErrorCode::TooMany, &why);
        }
        self.publications.by_host.insert(
            host.clone(),
            Publication {
                key: from,
                name: name.clone(),
                token,
                binding: None,
                udp: false,
            },
        );
        self.events.push_back(ServerEvent::PublishedName {
            host,
            port: sni.port,
            key: from,
            service: name,
        });
        if let Some(reg) = self.registry.get_mut(&from) {
            reg.remember(request, answer.clone());
        }
        self.send(from, answer);
    }

    /// The SNI port, when the server routes TLS names.
    pub(crate) fn sni_port(&self) -> Option<u16> {
        self.config.publish.sni.as_ref().map(|s| s.port)
    }

    /// The daemon and path a TLS connection asking for `host` goes to, if one is published
    /// under that name.
    pub(crate) fn sni_route(&self, host: &str) -> Option<(PublicKey, ServiceName)> {
        let p = self.publications.by_host.get(host)?;
        Some((p.key, p.name.clone()))
    }

    /// The owner bound the SNI port (`Ok`), or could not (`Err`, why: publishing there is
    /// refused from now on); the requests that waited for it are answered.
    pub(crate) fn sni_listening(&mut self, result: Result<(), String>) {
        let port = self.sni_port().unwrap_or_default();
        let result =
            result.map_err(|why| format!("the server cannot listen on its SNI port {port}: {why}"));
        if let Err(reason) = &result {
            let reason = reason.clone();
            self.events.push_back(ServerEvent::SniDown { port, reason });
        }
        self.publications.sni_bound = Some(result);
        for (from, request, name) in std::mem::take(&mut self.publications.sni_waiting) {
            self.on_publish_sni(from, request, name);
        }
    }

    /// Ends `key`'s publications on the SNI port of paths its registration no longer holds.
    pub(super) fn unpublish_stale_names(&mut self, key: &PublicKey, why: &str) {
        let reg = self.registry.get(key);
        let held = |p: &Publication| {
            reg.is_some_and(|r| r.token() == p.token && r.services().contains(&p.name))
        };
        let stale: Vec<String> = self
            .publications
            .by_host
            .iter()
            .filter(|(_, p)| p.key == *key && !held(p))
            .map(|(host, _)| host.clone())
            .collect();
        for host in stale {
            if let Some(p) = self.publications.by_host.remove(&host) {
                self.events.push_back(ServerEvent::UnpublishedName {
                    host,
                    key: p.key,
                    service: p.name,
                    reason: why.to_string(),
                });
            }
        }
    }
}
