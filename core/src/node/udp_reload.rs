//! UDP `[[connect]]` services across a reload: [`Node::plan`] lists the UDP listeners to
//! close and the ones to bind ([`Plan::remove_udp`], [`Plan::connect_udp`]) next to the TCP
//! ones, and [`Node::apply_udp`] carries that part out after [`Node::apply`]:
//!
//! ```text
//! let plan = node.plan(&wanted);
//! let bound = bind_listeners(&plan.connect, tcp_bind, addr)?;     // refuse the whole reload
//! let bound_udp = bind_listeners(&plan.connect_udp, udp_bind, addr)?;   // on either error
//! let (remove_udp, connect_udp) = ...;                              // taken from the plan
//! let mut applied = node.apply(now, plan, bound);
//! let udp = node.apply_udp(now, &remove_udp, bound_udp, &mut applied.summary);
//! for id in udp.closed { close that socket }          // its flows have ended
//! for (id, socket) in udp.started { read it }
//! ```
//!
//! A UDP listener whose name and address stay is left alone, flows and all.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use super::services::{Plan, Services, Summary};
use super::{Listener, Node};
use crate::forward::udp::UdpListenerId;
use crate::rendezvous::ServiceName;

/// What [`Node::apply_udp`] did to the UDP listener sockets.
#[derive(Debug)]
pub struct AppliedUdp<U> {
    /// Sockets to close (their flows have ended).
    pub closed: Vec<UdpListenerId>,
    /// New sockets to read, with the node's id for each.
    pub started: Vec<(UdpListenerId, U)>,
}

impl Node {
    /// The UDP services listened for now: name and address.
    pub(super) fn udp_connects(&self) -> Vec<(ServiceName, SocketAddr)> {
        let listeners = self.udp_listeners.iter();
        listeners.map(|(s, a, _)| (s.clone(), *a)).collect()
    }

    /// Fills the UDP part of `plan` for `wanted`: a listener whose name and address stay
    /// is unchanged (an address asked for on port 0 keeps the port it got); any other is
    /// removed, and bound again if still wanted.
    pub(super) fn plan_udp(&self, wanted: &Services, plan: &mut Plan) {
        for (name, addr, _) in &self.udp_listeners {
            let same = |a: &SocketAddr| a == addr || (a.port() == 0 && a.ip() == addr.ip());
            match wanted.connect_udp.iter().find(|(n, _)| n == name) {
                Some((_, a)) if same(a) => {
                    if !plan.unchanged.contains(name) {
                        plan.unchanged.push(name.clone());
                    }
                }
                _ => plan.remove_udp.push(name.clone()),
            }
        }
        for (name, addr) in &wanted.connect_udp {
            let running = self.udp_listeners.iter().any(|(n, _, _)| n == name);
            if !running || plan.remove_udp.contains(name) {
                plan.connect_udp.push((name.clone(), *addr));
            }
        }
    }

    /// Carries out the UDP part of a plan after [`Node::apply`]: stops the listeners of
    /// `remove` (their flows end, the peer hears so), then starts `listeners` (bound by the
    /// runtime for [`Plan::connect_udp`]), and adds what changed to `summary` (a name
    /// removed and started again counts as changed).
    pub fn apply_udp<U>(
        &mut self,
        now: Instant,
        remove: &[ServiceName],
        listeners: Vec<Listener<U>>,
        summary: &mut Summary,
    ) -> AppliedUdp<U> {
        let mut applied = AppliedUdp {
            closed: Vec::new(),
            started: Vec::new(),
        };
        let re_added: BTreeSet<&ServiceName> = listeners.iter().map(|l| &l.service).collect();
        for name in remove {
            let Some(i) = self.udp_listeners.iter().position(|(n, _, _)| n == name) else {
                continue;
            };
            let (_, _, id) = self.udp_listeners.remove(i);
            self.now = now;
            self.udp.unlisten(now, &mut self.ep, id);
            // Unless the name is listened for over TCP now (its protocol changed).
            if !self.listener_ids.iter().any(|(s, _)| s == name) {
                self.ep.forget_service(now, name);
            }
            applied.closed.push(id);
            let text = name.to_string();
            if !re_added.contains(name) {
                // Its protocol changed: TCP's side says it was added, so it changed.
                if let Some(at) = summary.added.iter().position(|n| *n == text) {
                    summary.added.remove(at);
                    summary.changed.push(text);
                } else {
                    summary.removed.push(text);
                }
            }
        }
        for (id, socket) in self.listen_udp(listeners) {
            let name = self.udp_listeners.iter().find(|(_, _, i)| *i == id);
            let name = name.map(|(n, _, _)| n.to_string()).unwrap_or_default();
            let was = remove.iter().any(|n| n.to_string() == name);
            // Its protocol changed: TCP's side says it was removed, so it changed.
            let tcp_removed = summary.removed.iter().position(|n| *n == name);
            if let Some(at) = tcp_removed {
                summary.removed.remove(at);
            }
            if was || tcp_removed.is_some() {
                summary.changed.push(name);
            } else {
                summary.added.push(name);
            }
            applied.started.push((id, socket));
        }
        applied
    }
}
