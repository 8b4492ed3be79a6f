//! UPnP-IGD port mapping, sans-IO: the last protocol asked, after PCP and NAT-PMP went
//! unanswered (the endpoint says when, see [`Turn`]).
//!
//! An SSDP search (multicast UDP) finds the gateway's description; an HTTP `GET` of it names
//! the WAN connection service's control URL; SOAP calls over HTTP ask for the external
//! address and map our UDP port (the same external port if free, else the next ones), for
//! 7200 seconds (`LIFETIME`), renewed at half of it and deleted when the daemon stops.
//! The runtime owns the sockets: it sends [`UpnpClient::poll_datagram`]'s datagrams from a
//! UDP socket of its own, runs each [`UpnpClient::poll_http`] exchange on a new TCP
//! connection (reading at most [`MAX_RESPONSE`] bytes, with a time limit) and hands the
//! answers back. Every answer is parsed with limits (see `http`, `xml`).

mod http;
mod soap;
mod ssdp;

pub(crate) use ssdp::search as ssdp_search;
mod xml;

use std::collections::VecDeque;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

pub use http::MAX_RESPONSE;
pub(crate) use soap::error_name;

use super::{Failure, LIFETIME, Protocol};
use ssdp::Url;

/// SSDP searches sent before giving up (one a second).
const SEARCHES: u32 = 3;
const SEARCH_WAIT: Duration = Duration::from_secs(1);
/// External ports tried after ours when the router says ours is taken.
const PORT_TRIES: u16 = 8;

/// What the daemon's UPnP driver does next, as the endpoint decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// PCP or NAT-PMP is still being asked, or mapped: ask again later.
    Wait,
    /// Both went unanswered (or refused): ask the gateway with UPnP-IGD.
    Ask,
    /// Port mapping is off, or the daemon stops: nothing to do.
    Off,
}

/// An HTTP exchange for the runtime: connect to `to`, send `request`, read the response to
/// the end of the connection (at most [`MAX_RESPONSE`] + 1 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// The gateway's HTTP server.
    pub to: SocketAddr,
    /// The request's bytes.
    pub request: Vec<u8>,
}

/// What the client learned, for the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpnpEvent {
    /// The gateway maps this external address to our port (new, or moved).
    Mapped(SocketAddrV4),
    /// No mapping: no gateway answered, its answers were unusable, or it refused; or a
    /// renewal failed.
    Failed(Failure),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Searching { sent: u32, next: Instant },
    Describing(Url),
    ExternalIp,
    Adding { port: u16, tries: u16 },
    Mapped { renew: Instant },
    Removing,
    Done,
}

/// One UPnP-IGD mapping of our UDP port.
#[derive(Debug)]
pub struct UpnpClient {
    /// Our address on the LAN and the daemon's UDP port: what the gateway forwards to.
    internal: SocketAddrV4,
    step: Step,
    /// The control URL and the service type.
    control: Option<(Url, &'static str)>,
    /// The gateway's external address, from `GetExternalIPAddress`.
    external_ip: Option<std::net::Ipv4Addr>,
    /// The external port mapped, while it is.
    port: Option<u16>,
    /// The mapping last reported.
    reported: Option<SocketAddrV4>,
    lifetime: u32,
    datagrams: Vec<Vec<u8>>,
    http: Option<HttpRequest>,
    events: VecDeque<UpnpEvent>,
}

impl UpnpClient {
    /// Starts looking for a gateway to map `internal` (our LAN address and the daemon's UDP
    /// port); the first search is due at once.
    pub fn new(internal: SocketAddrV4, now: Instant) -> Self {
        Self {
            internal,
            step: Step::Searching { sent: 0, next: now },
            control: None,
            external_ip: None,
            port: None,
            reported: None,
            lifetime: LIFETIME,
            datagrams: Vec::new(),
            http: None,
            events: VecDeque::new(),
        }
    }

    /// The next datagram to send from the runtime's UDP socket (an SSDP search).
    pub fn poll_datagram(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        (!self.datagrams.is_empty()).then(|| (ssdp::GROUP, self.datagrams.remove(0)))
    }

    /// The HTTP exchange to run now, if any (one at a time; its answer goes to
    /// [`Self::handle_http`]).
    pub fn poll_http(&mut self) -> Option<HttpRequest> {
        self.http.take()
    }

    /// What the client learned since it was last asked.
    pub fn poll_event(&mut self) -> Option<UpnpEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] is due next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.step {
            Step::Searching { next, .. } => Some(next),
            Step::Mapped { renew } => Some(renew),
            _ => None,
        }
    }

    /// Whether the client is done (given up, or the mapping deleted).
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// Searches again, gives up, or renews, as due.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.step {
            Step::Searching { sent, next } if now >= next => {
                if sent == SEARCHES {
                    return self.fail(Failure::NoGateway);
                }
                self.datagrams.push(ssdp::search());
                self.step = Step::Searching {
                    sent: sent + 1,
                    next: now + SEARCH_WAIT,
                };
            }
            Step::Mapped { renew } if now >= renew => {
                let port = self.port.unwrap_or(self.internal.port());
                self.add(port, 0);
            }
            _ => {}
        }
    }

    /// A datagram to the runtime's UDP socket (SSDP answers): the first gateway's
    /// description is fetched.
    pub fn handle_datagram(&mut self, _now: Instant, bytes: &[u8]) {
        if !matches!(self.step, Step::Searching { .. }) {
            return;
        }
        if let Some(url) = ssdp::location(bytes) {
            self.http = Some(HttpRequest {
                to: url.host,
                request: http::request("GET", url.host, &url.path, &[], b""),
            });
            self.step = Step::Describing(url);
        }
    }

    /// The answer to the last [`Self::poll_http`] exchange: the bytes read, or why there
    /// are none (the connection was refused, or timed out).
    pub fn handle_http(&mut self, now: Instant, answer: Result<&[u8], String>) {
        let step = std::mem::replace(&mut self.step, Step::Done);
        let Ok(bytes) = answer else {
            return match step {
                Step::Describing(_) | Step::ExternalIp | Step::Adding { .. } => {
                    self.fail(Failure::Unusable);
                }
                Step::Removing => {}
                other => self.step = other,
            };
        };
        match step {
            Step::Describing(base) => {
                let control = http::response(bytes)
                    .ok()
                    .filter(|r| r.status == 200)
                    .and_then(|r| ssdp::control(&String::from_utf8_lossy(&r.body), &base));
                let Some((url, service)) = control else {
                    return self.fail(Failure::Unusable);
                };
                self.http = Some(HttpRequest {
                    to: url.host,
                    request: soap::external_ip(&url, service),
                });
                self.control = Some((url, service));
                self.step = Step::ExternalIp;
            }
            Step::ExternalIp => match soap::answer(bytes) {
                Some(soap::Answer::Done(body)) => match soap::external_ip_of(&body) {
                    Some(ip) => {
                        self.external_ip = Some(ip);
                        self.add(self.internal.port(), 0);
                    }
                    None => self.fail(Failure::Unusable),
                },
                Some(soap::Answer::Fault(code)) => {
                    self.fail(Failure::Refused(Protocol::Upnp, code));
                }
                None => self.fail(Failure::Unusable),
            },
            Step::Adding { port, tries } => match soap::answer(bytes) {
                Some(soap::Answer::Done(_)) => self.mapped(now, port),
                // Taken by another host: the next port.
                Some(soap::Answer::Fault(718)) if tries < PORT_TRIES => {
                    let next = port.checked_add(1).filter(|p| *p >= 1024).unwrap_or(1024);
                    self.add(next, tries + 1);
                }
                // Only permanent leases: ask for one (deleted on stop all the same).
                Some(soap::Answer::Fault(725)) if self.lifetime != 0 => {
                    self.lifetime = 0;
                    self.add(port, tries);
                }
                Some(soap::Answer::Fault(code)) => {
                    self.fail(Failure::Refused(Protocol::Upnp, code));
                }
                None => self.fail(Failure::Unusable),
            },
            // The deletion's answer: done whatever it says.
            Step::Removing => {}
            // Nothing was asked: nothing changes.
            other => self.step = other,
        }
    }

    /// Deletes the mapping (the daemon stops): one `DeletePortMapping` for
    /// [`Self::poll_http`] if a mapping is held or being made, then nothing.
    pub fn remove(&mut self) {
        let port = match self.step {
            Step::Mapped { .. } => self.port,
            Step::Adding { port, .. } => Some(port),
            _ => None,
        };
        match (port, &self.control) {
            (Some(port), Some((url, service))) => {
                self.http = Some(HttpRequest {
                    to: url.host,
                    request: soap::delete(url, service, port),
                });
                self.step = Step::Removing;
            }
            _ => {
                self.http = None;
                self.step = Step::Done;
            }
        }
    }

    /// Asks for `port` (the `tries`th port after ours).
    fn add(&mut self, port: u16, tries: u16) {
        let Some((url, service)) = &self.control else {
            return self.fail(Failure::Unusable);
        };
        self.http = Some(HttpRequest {
            to: url.host,
            request: soap::add(url, service, port, self.internal, self.lifetime),
        });
        self.step = Step::Adding { port, tries };
    }

    fn mapped(&mut self, now: Instant, port: u16) {
        let Some(ip) = self.external_ip else {
            return self.fail(Failure::Unusable);
        };
        let external = SocketAddrV4::new(ip, port);
        // Half the lifetime; a permanent lease is asked again hourly (a router that
        // restarted forgot it).
        let renew = match self.lifetime {
            0 => Duration::from_secs(3600),
            secs => Duration::from_secs(u64::from(secs.max(120)) / 2),
        };
        self.step = Step::Mapped { renew: now + renew };
        self.port = Some(port);
        if self.reported != Some(external) {
            self.reported = Some(external);
            self.events.push_back(UpnpEvent::Mapped(external));
        }
    }

    fn fail(&mut self, why: Failure) {
        self.step = Step::Done;
        self.port = None;
        self.reported = None;
        self.http = None;
        self.events.push_back(UpnpEvent::Failed(why));
    }
}

#[cfg(test)]
mod tests;
