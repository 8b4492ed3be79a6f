//! The metrics endpoint through the real binary: a server and two daemons serve Prometheus
//! text on loopback; a scrape parsed line by line shows the counters move as a transfer runs,
//! the punch toward a relay-only daemon counted as failed (and why), the server's
//! registrations and relayed bytes per token; the endpoint refuses what it should.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

mod common;

use common::*;

/// One scrape: every sample by `name{labels}` (labels sorted), and each family's type.
#[derive(Debug, Default)]
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
    text: String,
}

impl Scrape {
    /// Parses the Prometheus text format (0.0.4), checking its grammar as it goes: comments
    /// are `# HELP name text` or `# TYPE name type`; a sample is `name{k="v",...} value` with
    /// a declared family; label values escape `\`, `"` and newlines.
    fn parse(text: &str) -> Self {
        let mut s = Scrape {
            text: text.to_string(),
            ..Scrape::default()
        };
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut words = rest.splitn(3, ' ');
                let (kind, name, tail) = (words.next(), words.next(), words.next());
                let name = name.unwrap_or_else(|| panic!("comment without a name: {line}"));
                assert!(valid_name(name), "bad metric name in {line}");
                match kind {
                    Some("HELP") => {}
                    Some("TYPE") => {
                        let t = tail.unwrap_or_default();
                        assert!(
                            ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                            "bad type in {line}"
                        );
                        s.types.insert(name.to_string(), t.to_string());
                    }
                    _ => panic!("unknown comment: {line}"),
                }
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    (name, parse_labels(body, line))
                }
            };
            assert!(valid_name(name), "bad metric name in {line}");
            let family = ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .find_map(|sfx| {
                    name.strip_suffix(sfx)
                        .filter(|base| s.types.contains_key(*base))
                })
                .unwrap_or(name);
            assert!(
                s.types.contains_key(family),
                "sample of an undeclared family: {line}"
            );
            let mut labels = labels;
            labels.sort();
            let key = series_key(name, &labels);
            assert!(
                s.samples.insert(key, value).is_none(),
                "duplicate series: {line}"
            );
        }
        s
    }

    /// The value of `name` with exactly `labels`; 0 when the series is absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        self.samples
            .get(&series_key(name, &l))
            .copied()
            .unwrap_or(0.0)
    }

    /// The sum over every series of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| {
                k.split('{').next() == Some(name)
                    && labels
                        .iter()
                        .all(|(lk, lv)| k.contains(&format!("{lk}=\"{lv}\"")))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn series_key(name: &str, labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// `k="v",k2="v2"` with escapes.
fn parse_labels(body: &str, line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            return out;
        }
        assert!(valid_name(&key), "bad label name {key:?} in {line}");
        assert_eq!(chars.next(), Some('='), "{line}");
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    other => panic!("bad escape {other:?} in {line}"),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => panic!("unterminated label value in {line}"),
            }
        }
        out.push((key, value));
        match chars.next() {
            None => return out,
            Some(',') => {}
            Some(c) => panic!("unexpected {c:?} in {line}"),
        }
    }
}

/// Sends `request` to `addr` and returns the whole answer (status line, headers, body).
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = conn.write_all(request);
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn scrape(addr: SocketAddr) -> Scrape {
    let answer = http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    Scrape::parse(body)
}

/// The address a process printed its metrics endpoint at.
fn metrics_addr(p: &Proc) -> SocketAddr {
    let line = wait_for(&p.stdout, "metrics on http://");
    let url = line.rsplit(' ').next().expect("url");
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("metrics address")
}

/// Scrapes `addr` until `ok` holds for it, for at most [`WAIT`].
fn scrape_until(addr: SocketAddr, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let s = scrape(addr);
        if ok(&s) {
            return s;
        }
        assert!(start.elapsed() < WAIT, "{what}; last scrape:\n{}", s.text);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn scrapes_show_a_transfer_a_failed_punch_and_the_servers_relay() {
    let dir = temp_dir("metrics");
    let (server, server_addr, server_key) = server_with(&dir, &["--metrics", "127.0.0.1:0"]);
    let server_metrics = metrics_addr(&server);
    let common = |state: &str| {
        vec![
            "--server".to_string(),
            server_addr.clone(),
            "--server-key".into(),
            server_key.clone(),
            "--token".into(),
            "tok".into(),
            "--state-dir".into(),
            path(&dir.join(state)).to_string(),
            "--udp".into(),
            "127.0.0.1:0".into(),
            "--metrics".into(),
            "127.0.0.1:0".into(),
        ]
    };
    // A's service is relay-only: B learns it from the introduction (the stricter route wins)
    // and never punches; its relayed session is counted with the reason `policy`. (A punch
    // that gets no answer is counted in `sim_relay`'s symmetric pair.)
    let mut args = vec!["expose".to_string(), "/m/echo".into(), echo().to_string()];
    args.extend(common("a"));
    args.extend(["--route".to_string(), "relay".into()]);
    let a = spawn(&args);
    let a_metrics = metrics_addr(&a);
    wait_for(&a.stderr, "registered with the rendezvous server");
    let mut args = vec![
        "connect".to_string(),
        "/m/echo".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(common("b"));
    let b = spawn(&args);
    let listen = listening(&b);
    let b_metrics = metrics_addr(&b);
    wait_for(&b.stderr, "registered with the rendezvous server");

    let before = scrape(b_metrics);
    assert_eq!(
        before
            .types
            .get("burrow_punch_outcomes_total")
            .map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        before
            .types
            .get("burrow_time_to_direct_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert_eq!(
        before.get(
            "burrow_punch_outcomes_total",
            &[("outcome", "relayed"), ("reason", "no_answer")]
        ),
        0.0
    );

    // A transfer: 256 KiB through the tunnel, echoed back.
    let mut conn = TcpStream::connect(listen).expect("connect to the listener");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    let payload: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let mut reader = conn.try_clone().expect("clone");
    let sent = payload.clone();
    let writer = std::thread::spawn(move || conn.write_all(&sent).expect("write"));
    let mut got = vec![0u8; payload.len()];
    reader.read_exact(&mut got).expect("read the echo");
    writer.join().expect("writer");
    assert!(got == payload, "the echo differs");

    let after = scrape_until(b_metrics, "B's counters after the transfer", |s| {
        s.get("burrow_sessions", &[("path", "relay")]) >= 1.0
    });
    println!("a scrape of B after the transfer:\n{}", after.text);
    let moved = |name: &str, labels: &[(&str, &str)], at_least: f64| {
        let (x, y) = (before.sum(name, labels), after.sum(name, labels));
        assert!(y - x >= at_least, "{name}{labels:?}: {x} -> {y}");
    };
    let bytes = payload.len() as f64;
    moved("burrow_bytes_total", &[("direction", "out")], bytes);
    moved("burrow_bytes_total", &[("direction", "in")], bytes);
    moved("burrow_peer_bytes_total", &[("direction", "out")], bytes);
    moved(
        "burrow_relayed_packets_total",
        &[("direction", "out")],
        100.0,
    );
    // No punch toward a relay-only service; the relayed outcome is counted with why.
    assert_eq!(
        after.get("burrow_punch_attempts_total", &[]),
        0.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.get(
            "burrow_punch_outcomes_total",
            &[("outcome", "relayed"), ("reason", "policy")]
        ),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.get(
            "burrow_punch_outcomes_total",
            &[("outcome", "direct"), ("reason", "none")]
        ),
        0.0
    );
    assert_eq!(after.get("burrow_time_to_direct_seconds_count", &[]), 0.0);
    assert!(
        after.sum("burrow_peer_rtt_seconds", &[]) > 0.0,
        "an RTT: {}",
        after.text
    );

    // A: the session is relayed by its own route policy, and says so.
    let a_scrape = scrape_until(a_metrics, "A's policy outcome", |s| {
        s.get(
            "burrow_punch_outcomes_total",
            &[("outcome", "relayed"), ("reason", "policy")],
        ) >= 1.0
    });
    assert_eq!(
        a_scrape.get("burrow_punch_attempts_total", &[]),
        0.0,
        "a relay-only daemon never punches: {}",
        a_scrape.text
    );

    // The server: two live registrations, the relay's bytes under one token label.
    let s = scrape(server_metrics);
    println!("a scrape of the server:\n{}", s.text);
    assert_eq!(s.get("burrow_registrations", &[]), 2.0, "{}", s.text);
    assert!(
        s.get(
            "burrow_registration_requests_total",
            &[("result", "accepted")]
        ) >= 2.0
    );
    let relayed = s.sum("burrow_relayed_bytes_total", &[]);
    assert!(
        relayed >= 2.0 * bytes,
        "relayed {relayed} bytes: {}",
        s.text
    );
    assert!(!s.text.contains("\"tok\""), "the token itself never shows");

    // `burrow status` says why in one line.
    let status = run(&["status", "--state-dir", path(&dir.join("b"))]).expect("status");
    println!("{status}");
    assert!(
        status.contains("relayed: the route policy allows the relay only"),
        "{status}"
    );
}

#[test]
fn the_endpoint_refuses_other_requests_and_public_addresses() {
    let dir = temp_dir("metrics-refusals");
    let key = dir.join("server.key");
    keygen(&key);
    // Off loopback only when told so.
    let refused = run(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--key",
        path(&key),
        "--token",
        "tok",
        "--metrics",
        "0.0.0.0:0",
    ])
    .expect_err("a public metrics address is refused");
    assert!(refused.contains("--metrics-public"), "{refused}");
    let server = spawn(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--key",
        path(&key),
        "--token",
        "tok",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = metrics_addr(&server);
    let status = |answer: String| answer.lines().next().unwrap_or_default().to_string();
    assert_eq!(
        status(http(addr, b"GET / HTTP/1.1\r\n\r\n")),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        status(http(addr, b"POST /metrics HTTP/1.1\r\n\r\n")),
        "HTTP/1.1 405 Method Not Allowed"
    );
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(
        status(http(addr, huge.as_bytes())),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // A client that never finishes its request is cut off, and others are still served.
    let started = Instant::now();
    let slow = http(addr, b"GET /metrics HTTP/1.1\r\n");
    assert_eq!(status(slow), "HTTP/1.1 408 Request Timeout");
    assert!(started.elapsed() < Duration::from_secs(8));
    let fine = scrape(addr);
    assert_eq!(fine.get("burrow_registrations", &[]), 0.0);
}
