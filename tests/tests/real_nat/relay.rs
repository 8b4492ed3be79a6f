//! Issue 16: relayed throughput through the real server, and its per-token limit. Both
//! daemons run with `--route relay`, so the whole transfer crosses the server.
//!
//! - At the default limit (16 MiB/s per token) the relayed rate is printed.
//! - With the server's `--relay-rate 1MiB` the transfer still completes with the SHA-256
//!   matching, it cannot beat the limit (after the token's 1 MiB burst), and every packet the
//!   limit dropped is in the server's log (`relay limit: dropped N packets ...`, a warning):
//!   the drops the log reports are printed next to the rate.

use std::time::Duration;

use burrow_tests::netns::Site;

use super::{Impairment, Outcome, Pair, lab};

/// The sum of the drops the server's `relay limit:` warnings report.
fn logged_drops(log: &str) -> (usize, u64) {
    let counts: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("relay limit: dropped ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    (counts.len(), counts.iter().sum())
}

/// One relayed transfer of `bytes` under a server relaying at most `rate` per token
/// (`None`: the default). Returns the outcome and the server's log.
fn relayed(bytes: u64, rate: Option<&'static str>) -> Result<(Outcome, String), String> {
    let impair = Impairment {
        route: Some("relay"),
        relay_rate: rate,
        ..Impairment::default()
    };
    let pair = Pair::start(&[Site::CONE, Site::CONE], &impair, |_, _| Ok(()))?;
    let mut o = Outcome::blank(rate.unwrap_or("default"));
    let send = pair.spawn_send(bytes, None)?;
    pair.finish_send(send, bytes, &mut o)?;
    // The server writes its warnings as they happen; give the last one a moment.
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(pair.lab.dir.join("server.err")).unwrap_or_default();
    if !o.sha_ok {
        return Err(format!("SHA-256 mismatch through the relay ({rate:?})"));
    }
    if o.path != "relay" {
        return Err(format!("path {} with --route relay", o.path));
    }
    Ok((o, log))
}

#[test]
fn relayed_throughput_and_a_low_relay_limit_that_counts_and_logs_its_drops() {
    let Some(lab) = lab() else { return };
    drop(lab);
    let mib = |b: u64, s: f64| b as f64 / s / f64::from(1u32 << 20);
    const FULL: u64 = 16 << 20;
    let (o, log) = relayed(FULL, None).unwrap_or_else(|e| panic!("{e}"));
    let secs = o.secs.expect("timed");
    let (reports, drops) = logged_drops(&log);
    println!();
    println!(
        "relayed, default limit (16 MiB/s per token): 16 MiB in {secs:.2} s = {:.1} MiB/s, SHA-256 match; {drops} drops logged in {reports} report(s)",
        mib(FULL, secs)
    );
    const LIMITED: u64 = 4 << 20;
    let (o, log) = relayed(LIMITED, Some("1MiB")).unwrap_or_else(|e| panic!("{e}"));
    let secs = o.secs.expect("timed");
    let (reports, drops) = logged_drops(&log);
    println!(
        "relayed, --relay-rate 1MiB: 4 MiB in {secs:.2} s = {:.2} MiB/s, SHA-256 match; {drops} drops logged in {reports} report(s)",
        mib(LIMITED, secs)
    );
    for l in log.lines().filter(|l| l.contains("relay limit")).take(3) {
        println!("    server: {l}");
    }
    // The limit holds: past the 1 MiB burst the bucket refills at 1 MiB/s, so 4 MiB take at
    // least 3 s (a lower bound only: a slower run is no failure).
    assert!(secs >= 2.9, "4 MiB through a 1 MiB/s relay in {secs:.2} s");
}
