//! What a handle asks of a node's loop, and the answers the loop owes: which node call each
//! request is, and which of the node's outputs answers which waiting handle. The same on
//! every runtime; a runtime only picks the channel the answers travel on ([`Channel`]) and
//! does the two requests that need its sockets or its end: a reload and a shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use burrow_core::node::{self, Node, Output, ProbeId, Services, StartError, Summary};
use burrow_core::rendezvous::directory::{AdminAnswer, AdminCommand};
use burrow_core::rendezvous::{Grants, ServiceName};
use burrow_core::status::Status;
use burrow_core::upnp::{Turn, UpnpEvent};

/// The kind of channel a loop answers on.
pub trait Channel: 'static {
    /// The sending half of a channel that carries one answer of type `T`.
    type Sender<T: Send + 'static>: Send;
    /// Sends `value`; a handle that stopped waiting is not an error.
    fn answer<T: Send + 'static>(to: &Self::Sender<T>, value: T);
}

/// Answers on `async_channel` senders (the async runtimes' handles await them).
#[derive(Debug)]
pub struct AsyncChannel;

impl Channel for AsyncChannel {
    type Sender<T: Send + 'static> = async_channel::Sender<T>;
    fn answer<T: Send + 'static>(to: &Self::Sender<T>, value: T) {
        let _ = to.try_send(value);
    }
}

/// Answers on `std::sync::mpsc` senders (a handle that blocks on the answer).
#[derive(Debug)]
pub struct StdChannel;

impl Channel for StdChannel {
    type Sender<T: Send + 'static> = std::sync::mpsc::Sender<T>;
    fn answer<T: Send + 'static>(to: &Self::Sender<T>, value: T) {
        let _ = to.send(value);
    }
}

/// A handle's request to the node's loop, with where its answer goes.
pub enum Request<C: Channel> {
    /// A snapshot of the node ([`Node::status`]).
    Status(C::Sender<Status>),
    /// A STUN probe of this server ([`Node::stun_probe`]); answered by its result.
    StunProbe(SocketAddr, C::Sender<Option<SocketAddr>>),
    /// A tenant master's command with its token ([`Node::admin`]); answered by the server.
    Admin(String, AdminCommand, C::Sender<Result<AdminAnswer, String>>),
    /// New path tokens ([`Node::set_path_tokens`]); answered by what the server granted.
    SetPathTokens(Vec<String>, C::Sender<Result<Grants, String>>),
    /// A ping of a service or peer ([`Node::ping`]); answered by the pong.
    Ping(String, C::Sender<node::Pong>),
    /// Run these services from now on; the runtime binds their listeners first.
    Reload(Services, C::Sender<Result<Summary, StartError>>),
    /// Stop the node; the runtime ends its loop.
    Shutdown,
    /// How an attachment of a path went ([`Node::report_attach`]).
    ReportAttach(ServiceName, Option<String>, C::Sender<()>),
    /// The UPnP driver's report ([`Node::upnp`]), answered by its next turn.
    Upnp(Option<UpnpEvent>, C::Sender<Turn>),
}

/// The handles waiting for an answer that comes later, as a node output.
pub struct Waiting<C: Channel> {
    probes: BTreeMap<ProbeId, C::Sender<Option<SocketAddr>>>,
    admins: BTreeMap<u64, C::Sender<Result<AdminAnswer, String>>>,
    /// One change of path tokens at a time: a newer one replaces the handle waiting.
    path_tokens: Option<C::Sender<Result<Grants, String>>>,
    /// One ping at a time, likewise.
    ping: Option<C::Sender<node::Pong>>,
}

impl<C: Channel> Default for Waiting<C> {
    fn default() -> Self {
        Self {
            probes: BTreeMap::new(),
            admins: BTreeMap::new(),
            path_tokens: None,
            ping: None,
        }
    }
}

impl<C: Channel> Waiting<C> {
    /// Does `request` on `node`, answering it now or noting who waits for the answer. Hands
    /// back the requests the runtime does itself: [`Request::Reload`] and
    /// [`Request::Shutdown`].
    pub fn request(
        &mut self,
        node: &mut Node,
        now: Instant,
        request: Request<C>,
    ) -> Option<Request<C>> {
        match request {
            Request::Status(reply) => C::answer(&reply, node.status()),
            Request::StunProbe(server, reply) => {
                let probe = node.stun_probe(now, server);
                self.probes.insert(probe, reply);
            }
            Request::Admin(master, command, reply) => match node.admin(now, master, command) {
                Ok(request) => {
                    self.admins.insert(request, reply);
                }
                Err(e) => C::answer(&reply, Err(e.to_string())),
            },
            Request::SetPathTokens(tokens, reply) => match node.set_path_tokens(now, tokens) {
                Ok(()) => self.path_tokens = Some(reply),
                Err(e) => C::answer(&reply, Err(e.to_string())),
            },
            Request::ReportAttach(service, failed, reply) => {
                node.report_attach(now, service, failed);
                C::answer(&reply, ());
            }
            Request::Upnp(report, reply) => C::answer(&reply, node.upnp(now, report)),
            Request::Ping(target, reply) => match node.ping(now, &target) {
                Ok(()) => self.ping = Some(reply),
                Err(e) => C::answer(&reply, Err(e)),
            },
            request @ (Request::Reload(..) | Request::Shutdown) => return Some(request),
        }
        None
    }

    /// Answers the handle that waits for `output`; hands back every other output (and an
    /// answer nobody waits for any more is dropped).
    pub fn answer(&mut self, output: Output) -> Option<Output> {
        match output {
            Output::StunResult { probe, mapped, .. } => {
                if let Some(reply) = self.probes.remove(&probe) {
                    C::answer(&reply, mapped);
                }
            }
            Output::Admin { request, result } => {
                if let Some(reply) = self.admins.remove(&request) {
                    C::answer(&reply, result);
                }
            }
            Output::PathTokens(result) => {
                if let Some(reply) = self.path_tokens.take() {
                    C::answer(&reply, result);
                }
            }
            Output::Pong(result) => {
                if let Some(reply) = self.ping.take() {
                    C::answer(&reply, result);
                }
            }
            output => return Some(output),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer goes to the handle waiting for it, once; an answer nobody waits for (any
    /// more) is dropped; an output that answers nothing comes back.
    #[test]
    fn answers_reach_the_waiting_handle_once() {
        let mut waiting = Waiting::<StdChannel>::default();
        let (tx, rx) = std::sync::mpsc::channel();
        waiting.path_tokens = Some(tx);
        let granted = Ok(Grants::default());
        assert!(
            waiting
                .answer(Output::PathTokens(granted.clone()))
                .is_none()
        );
        assert_eq!(rx.try_recv(), Ok(granted));
        let late = Output::PathTokens(Err("refused".into()));
        assert!(waiting.answer(late).is_none(), "dropped, not handed back");
        assert!(rx.try_recv().is_err(), "answered once");
        let at = Instant::now();
        assert!(matches!(waiting.answer(Output::Timeout(at)), Some(Output::Timeout(t)) if t == at));
    }
}
