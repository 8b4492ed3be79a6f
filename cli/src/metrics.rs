//! The opt-in Prometheus endpoint (`--metrics ADDR`, `metrics = "ADDR"` in a daemon's config):
//! a small HTTP server on a plain thread that answers `GET /metrics` with the node's counters
//! in the Prometheus text format (0.0.4).
//!
//! The numbers are core's ([`burrow_core::Stats`], the status snapshot): each scrape asks the
//! running node for a snapshot and renders it with prometheus-client's encoder, so nothing is
//! counted twice and the runtimes know nothing of metrics. Bounds: a request's head is read
//! within [`REQUEST_TIME`] and [`MAX_REQUEST`] bytes, at most [`MAX_CONNS`] scrapes are served
//! at once (more are closed unanswered), one request per connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use burrow_core::status::Status;
use burrow_core::{CandidateOutcome, TIME_TO_DIRECT_BOUNDS_MS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::node::Control;

/// Longest request head read (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Scrapes served at once.
pub const MAX_CONNS: usize = 8;
/// Time a client has to send its request head, and to take the answer.
pub const REQUEST_TIME: Duration = Duration::from_secs(5);

/// Where the endpoint listens, checked: a non-loopback address only when `public` says so
/// (the metrics name peers' keys and addresses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub public: bool,
}

impl Listen {
    /// Checks `addr`: refused off loopback unless `public` (`--metrics-public`).
    pub fn new(addr: SocketAddr, public: bool) -> Result<Self, String> {
        if !addr.ip().is_loopback() && !public {
            return Err(format!(
                "the metrics address {addr} is not a loopback address: the metrics name peers' \
                 keys and traffic; listen on 127.0.0.1 (behind a scraper on this host or a \
                 tunnel), or add --metrics-public (`metrics_public = true`) to serve them there"
            ));
        }
        Ok(Self { addr, public })
    }
}

/// Binds `listen` and serves scrapes of `node` on a thread of its own; returns the bound
/// address.
pub fn spawn(listen: &Listen, node: Control) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(listen.addr)
        .map_err(|e| format!("cannot listen for metrics on {}: {e}", listen.addr))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("metrics listener: {e}"))?;
    if listen.public {
        tracing::warn!(%addr, "metrics served on a non-loopback address (--metrics-public)");
    }
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNS {
                active.fetch_sub(1, Ordering::AcqRel);
                drop(conn);
                continue;
            }
            let (active, node) = (active.clone(), node.clone());
            std::thread::spawn(move || {
                serve(conn, &node);
                active.fetch_sub(1, Ordering::AcqRel);
            });
        }
    });
    Ok(addr)
}

/// Answers one request on `conn`.
fn serve(mut conn: TcpStream, node: &Control) {
    let _ = conn.set_write_timeout(Some(REQUEST_TIME));
    let (status, body) = match read_head(&mut conn) {
        Err(status) => (status, String::new()),
        Ok(head) => route(&head, node),
    };
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes());
    // Close gently: a client still sending (an oversized request) would otherwise get a
    // reset that can discard the answer before it reads it.
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = std::io::copy(&mut (&mut conn).take(64 * 1024), &mut std::io::sink());
}

/// The request's head, within [`MAX_REQUEST`] bytes and [`REQUEST_TIME`]; else the status
/// line to answer with.
fn read_head(conn: &mut TcpStream) -> Result<String, &'static str> {
    let deadline = Instant::now() + REQUEST_TIME;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            return Err("408 Request Timeout");
        }
        match conn.read(&mut buf) {
            Ok(0) => return Err("400 Bad Request"),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(_) => return Err("408 Request Timeout"),
        }
        if head.len() > MAX_REQUEST {
            return Err("431 Request Header Fields Too Large");
        }
    }
    String::from_utf8(head).map_err(|_| "400 Bad Request")
}

/// What a request head gets: the metrics for `GET /metrics`.
fn route(head: &str, node: &Control) -> (&'static str, String) {
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return ("405 Method Not Allowed", "only GET\n".into());
    }
    if path != "/metrics" && !path.starts_with("/metrics?") {
        return ("404 Not Found", "the metrics are at /metrics\n".into());
    }
    match node.status() {
        Ok(status) => ("200 OK", render(&status)),
        Err(e) => ("503 Service Unavailable", format!("{e}\n")),
    }
}

/// The metrics of `status` in the Prometheus text format.
pub fn render(status: &Status) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(status.clone())));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// One status snapshot, encoded as metrics at scrape time.
#[derive(Debug)]
struct Snapshot(Status);

type Labels = Vec<(&'static str, String)>;

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

/// A short name for a peer in labels: the start of its key.
fn peer_label(key: &str) -> String {
    key.chars().take(12).collect()
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let st = &s.stats;
        let counter = |e: &mut DescriptorEncoder<'_>,
                       name: &str,
                       help: &str,
                       rows: &[(Labels, u64)]|
         -> Result<(), std::fmt::Error> {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (l, v) in rows {
                m.encode_family(l)?
                    .encode_counter::<NoLabelSet, _, u64>(v, None)?;
            }
            Ok(())
        };
        let gauge = |e: &mut DescriptorEncoder<'_>,
                     name: &str,
                     help: &str,
                     rows: &[(Labels, f64)]|
         -> Result<(), std::fmt::Error> {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (l, v) in rows {
                m.encode_family(l)?.encode_gauge(v)?;
            }
            Ok(())
        };
        let (mut direct, mut relayed, mut handshake) = (0.0, 0.0, 0.0);
        for p in &s.peers {
            match (p.connected, p.relayed) {
                (false, _) => handshake += 1.0,
                (true, false) => direct += 1.0,
                (true, true) => relayed += 1.0,
            }
        }
        gauge(
            &mut e,
            "burrow_sessions",
            "Sessions with peers (and the server) by path kind",
            &[
                (labels(&[("path", "direct")]), direct),
                (labels(&[("path", "relay")]), relayed),
                (labels(&[("path", "handshake")]), handshake),
            ],
        )?;
        counter(
            &mut e,
            "burrow_bytes",
            "UDP bytes through the node's socket",
            &[
                (labels(&[("direction", "in")]), st.bytes_in),
                (labels(&[("direction", "out")]), st.bytes_out),
            ],
        )?;
        counter(
            &mut e,
            "burrow_datagrams",
            "UDP datagrams through the node's socket",
            &[
                (labels(&[("direction", "in")]), st.datagrams_in),
                (labels(&[("direction", "out")]), st.datagrams_out),
            ],
        )?;
        counter(
            &mut e,
            "burrow_handshakes_completed",
            "Handshakes completed, as initiator or responder, rekeys included",
            &[(vec![], st.handshakes_completed)],
        )?;
        let refused: [(&str, u64); 8] = [
            ("bad_mac", st.dropped_bad_mac),
            ("no_cookie", st.dropped_no_cookie),
            ("noise", st.dropped_handshake),
            ("replay", st.dropped_handshake_replay),
            ("unknown_peer", st.dropped_unknown_peer),
            ("session_limit", st.dropped_session_limit),
            ("half_open_limit", st.dropped_half_open_limit),
            ("route_policy", st.dropped_route_policy),
        ];
        counter(
            &mut e,
            "burrow_handshakes_refused",
            "Handshake messages refused, by reason (route_policy also counts transport packets on a forbidden path)",
            &rows(&refused),
        )?;
        let dropped: [(&str, u64); 11] = [
            ("malformed", st.dropped_malformed),
            ("unexpected", st.dropped_unexpected),
            ("unknown_index", st.dropped_unknown_index),
            ("replay", st.dropped_replay),
            ("auth", st.dropped_auth),
            ("expired_keys", st.dropped_expired),
            ("bad_payload", st.dropped_bad_payload),
            ("grant_limit", st.dropped_grant_limit),
            ("relay_unavailable", st.relay_unavailable),
            ("relay_refused", st.relay_refused),
            ("relay_limited", st.relay_limited),
        ];
        counter(
            &mut e,
            "burrow_dropped_packets",
            "Packets dropped, by reason",
            &rows(&dropped),
        )?;
        counter(
            &mut e,
            "burrow_streams_refused",
            "Incoming streams refused (unauthorized: a service we expose, without a grant)",
            &[
                (
                    labels(&[("reason", "unknown_service")]),
                    st.streams_refused - st.streams_unauthorized.min(st.streams_refused),
                ),
                (
                    labels(&[("reason", "unauthorized")]),
                    st.streams_unauthorized,
                ),
            ],
        )?;
        counter(
            &mut e,
            "burrow_relayed_packets",
            "Packets of ours wrapped for the relay (out) and relayed packets for us (in)",
            &[
                (labels(&[("direction", "in")]), st.relayed_in),
                (labels(&[("direction", "out")]), st.relayed_out),
            ],
        )?;
        let p = &st.punch;
        counter(
            &mut e,
            "burrow_punch_attempts",
            "Hole-punching attempts (probes and an initiation to every candidate)",
            &[(vec![], p.attempts)],
        )?;
        let mut outcomes = vec![(
            labels(&[("outcome", "direct"), ("reason", "none")]),
            p.direct,
        )];
        for o in CandidateOutcome::ALL {
            outcomes.push((
                labels(&[("outcome", "relayed"), ("reason", o.label())]),
                p.relayed.get(o),
            ));
        }
        counter(
            &mut e,
            "burrow_punch_outcomes",
            "Introduced sessions by how they came up: direct, or relayed and why punching failed",
            &outcomes,
        )?;
        counter(
            &mut e,
            "burrow_path_changes",
            "Relayed sessions that moved to a direct path (upgrade), and direct paths given up for the relay (fallback)",
            &[
                (labels(&[("change", "upgrade")]), st.direct_upgrades),
                (labels(&[("change", "fallback")]), st.relay_fallbacks),
            ],
        )?;
        {
            let h = &p.time_to_direct;
            let mut buckets: Vec<(f64, u64)> = TIME_TO_DIRECT_BOUNDS_MS
                .iter()
                .zip(h.buckets)
                .map(|(ms, n)| (*ms as f64 / 1e3, n))
                .collect();
            buckets.push((f64::INFINITY, h.buckets[TIME_TO_DIRECT_BOUNDS_MS.len()]));
            let mut m = e.encode_descriptor(
                "burrow_time_to_direct_seconds",
                "From an introduction to the session's first direct path",
                None,
                MetricType::Histogram,
            )?;
            m.encode_histogram::<NoLabelSet>(h.sum_micros as f64 / 1e6, h.count, &buckets, None)?;
        }
        let connected = s.peers.iter().filter(|p| p.connected);
        let rtt: Vec<(Labels, f64)> = connected
            .clone()
            .filter_map(|p| {
                let ms = p.rtt_ms?;
                Some((labels(&[("peer", &peer_label(&p.key))]), ms / 1e3))
            })
            .collect();
        gauge(
            &mut e,
            "burrow_peer_rtt_seconds",
            "Smoothed round-trip time per peer",
            &rtt,
        )?;
        let lost: Vec<(Labels, u64)> = connected
            .clone()
            .map(|p| (labels(&[("peer", &peer_label(&p.key))]), p.packets_lost))
            .collect();
        counter(
            &mut e,
            "burrow_peer_packets_lost",
            "Packets the stream layer declared lost, per peer session",
            &lost,
        )?;
        let mut bytes = Vec::new();
        for p in connected {
            let peer = peer_label(&p.key);
            bytes.push((
                labels(&[("peer", &peer), ("direction", "out")]),
                p.bytes_sent,
            ));
            bytes.push((
                labels(&[("peer", &peer), ("direction", "in")]),
                p.bytes_received,
            ));
        }
        counter(
            &mut e,
            "burrow_peer_bytes",
            "UDP payload bytes per peer session",
            &bytes,
        )?;
        if let Some(server) = &s.server {
            gauge(
                &mut e,
                "burrow_registrations",
                "Live registrations (server)",
                &[(vec![], server.registrations_live as f64)],
            )?;
            counter(
                &mut e,
                "burrow_registration_requests",
                "Registrations accepted and refused (server)",
                &[
                    (labels(&[("result", "accepted")]), server.registrations),
                    (
                        labels(&[("result", "refused")]),
                        server.registrations_refused,
                    ),
                ],
            )?;
            let by_token: Vec<(Labels, u64)> = server
                .relayed_bytes_by_token
                .iter()
                .map(|(t, n)| (labels(&[("token", t)]), *n))
                .collect();
            counter(
                &mut e,
                "burrow_relayed_bytes",
                "Bytes relayed, by the sender's token (first 8 hex digits of its hash; server)",
                &by_token,
            )?;
            counter(
                &mut e,
                "burrow_relay_forwarded_packets",
                "Packets the relay forwarded (server)",
                &[(vec![], st.relay_forwarded)],
            )?;
        }
        Ok(())
    }
}

fn rows(pairs: &[(&str, u64)]) -> Vec<(Labels, u64)> {
    pairs
        .iter()
        .map(|(reason, v)| (vec![("reason", (*reason).to_string())], *v))
        .collect()
}
