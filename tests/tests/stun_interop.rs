//! STUN interop with a real implementation, Debian's coturn: its `turnutils_stunclient`
//! against a burrow endpoint, and a burrow endpoint's probe against coturn's `turnserver`.
//! Loopback only, bounded in time.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use burrow_core::ProbeOutcome;
use burrow_core::{Config, Event, SecretKey};
use burrow_tests::blocking::BlockingEndpoint;
use burrow_tests::ports::ReservedPort;
use burrow_tests::tools::require;

#[test]
fn coturn_stunclient_learns_its_address_from_a_burrow_server() {
    let Some(client) = require("turnutils_stunclient", "coturn") else {
        return;
    };
    let mut config = Config::new(SecretKey::from_bytes([5; 32]));
    config.answer_stun = true;
    let mut server = BlockingEndpoint::bind(config).unwrap();
    let port = server.local_addr().port();
    let mut child = Command::new(client)
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = server
        .run_until(Duration::from_secs(5), |_| {
            child.try_wait().ok().flatten().is_some()
        })
        .unwrap();
    assert!(exited, "turnutils_stunclient did not finish within 5 s");
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let asker = server
        .senders
        .first()
        .copied()
        .expect("the STUN client sent a request");
    assert!(output.status.success(), "stunclient failed: {text}");
    assert!(
        text.contains(&format!("UDP reflexive addr: {asker}")),
        "stunclient did not report {asker}:\n{text}"
    );
    assert!(server.endpoint.stats().stun_received >= 1);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn burrow_probe_learns_its_address_from_coturn() {
    let Some(turnserver) = require("turnserver", "coturn") else {
        return;
    };
    // A port freed and then handed to coturn could be taken in between by any test binding
    // port 0 in parallel; a reserved one cannot. Its reservation mark is a TCP socket on the
    // same number, hence `--no-tcp` (STUN over UDP is all this test uses).
    let reserved = ReservedPort::udp();
    let port = reserved.port();
    let _server = KillOnDrop(
        Command::new(turnserver)
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                "--stun-only",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--no-tcp",
            ])
            .arg(format!("--listening-port={port}"))
            .args(["--log-file=stdout", "--simple-log"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut daemon = BlockingEndpoint::bind(Config::new(SecretKey::from_bytes([6; 32]))).unwrap();
    let server_addr = format!("127.0.0.1:{port}").parse().unwrap();
    // coturn needs a moment to bind; the probe's own retransmissions cover it.
    let now = std::time::Instant::now();
    daemon.endpoint.stun_probe(now, server_addr);
    let done = daemon
        .run_until(Duration::from_secs(10), |events| {
            events.iter().any(|e| matches!(e, Event::Stun(_)))
        })
        .unwrap();
    assert!(done, "no STUN outcome within 10 s");
    let expected = ProbeOutcome::Mapped {
        server: server_addr,
        mapped: daemon.local_addr(),
    };
    assert_eq!(daemon.events, vec![Event::Stun(expected)]);
}
