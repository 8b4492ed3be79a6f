//! Small nodes for tests, demos and benchmarks.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use burrow_core::Transmit;
use bytes::Bytes;

use crate::clock::origin;
use crate::node::Node;

/// A datagram a [`ScriptedNode`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Virtual time of arrival (since origin).
    pub at: Duration,
    /// Source address as seen by the node (after any NAT translation).
    pub from: SocketAddr,
    /// The bytes.
    pub payload: Bytes,
}

struct Planned {
    at: Duration,
    dst: SocketAddr,
    ttl: Option<u8>,
    payload: Bytes,
}

/// Sends datagrams at scripted times, records what it receives, and optionally echoes.
#[derive(Default)]
pub struct ScriptedNode {
    script: VecDeque<Planned>,
    out: VecDeque<Transmit>,
    received: Vec<Received>,
    echo: bool,
}

impl ScriptedNode {
    /// A node with an empty script.
    pub fn new() -> Self {
        Self::default()
    }

    /// Echoes every datagram back to its source.
    pub fn echo(mut self) -> Self {
        self.echo = true;
        self
    }

    /// Sends `payload` to `dst` at virtual time `at` (since origin).
    pub fn send_at(self, at: Duration, dst: SocketAddr, payload: &[u8]) -> Self {
        self.send_at_ttl(at, dst, None, payload)
    }

    /// Like [`ScriptedNode::send_at`] with an explicit IP TTL.
    pub fn send_at_ttl(
        mut self,
        at: Duration,
        dst: SocketAddr,
        ttl: Option<u8>,
        payload: &[u8],
    ) -> Self {
        let i = self.script.partition_point(|p| p.at <= at);
        self.script.insert(
            i,
            Planned {
                at,
                dst,
                ttl,
                payload: Bytes::copy_from_slice(payload),
            },
        );
        self
    }

    /// Sends `count` datagrams of `len` bytes to `dst`, one every `interval` from `start`.
    pub fn send_series(
        mut self,
        start: Duration,
        interval: Duration,
        count: u32,
        dst: SocketAddr,
        len: usize,
    ) -> Self {
        let payload = Bytes::from(vec![0xab; len]);
        for i in 0..count {
            let at = start + interval * i;
            let idx = self.script.partition_point(|p| p.at <= at);
            self.script.insert(
                idx,
                Planned {
                    at,
                    dst,
                    ttl: None,
                    payload: payload.clone(),
                },
            );
        }
        self
    }

    /// Queues a datagram now (for use from [`crate::Sim::with_node`]).
    pub fn send(&mut self, dst: SocketAddr, ttl: Option<u8>, payload: &[u8]) {
        self.out.push_back(Transmit {
            segment_size: None,
            dst,
            ttl,
            payload: Bytes::copy_from_slice(payload),
        });
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> &[Received] {
        &self.received
    }

    /// Distinct source addresses seen, in order of first arrival.
    pub fn sources(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = Vec::new();
        for r in &self.received {
            if !v.contains(&r.from) {
                v.push(r.from);
            }
        }
        v
    }
}

impl Node for ScriptedNode {
    fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let payload = Bytes::copy_from_slice(bytes);
        if self.echo {
            self.out.push_back(Transmit {
                segment_size: None,
                dst: from,
                ttl: None,
                payload: payload.clone(),
            });
        }
        self.received.push(Received {
            at: now.saturating_duration_since(origin()),
            from,
            payload,
        });
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = now.saturating_duration_since(origin());
        while self.script.front().is_some_and(|p| p.at <= now) {
            let p = self.script.pop_front().expect("front exists");
            self.out.push_back(Transmit {
                segment_size: None,
                dst: p.dst,
                ttl: p.ttl,
                payload: p.payload,
            });
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.script.front().map(|p| origin() + p.at)
    }
}

/// A broken node: always asks to be woken at the last time it saw, and never sends. Used to
/// show livelock detection.
#[derive(Default)]
pub struct Spinner {
    last: Option<Instant>,
}

impl Node for Spinner {
    fn handle_input(&mut self, now: Instant, _: SocketAddr, _: &[u8]) {
        self.last = Some(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.last = Some(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.last.unwrap_or_else(origin))
    }
}
