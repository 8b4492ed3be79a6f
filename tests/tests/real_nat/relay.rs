//! Issue 16: relayed throughput through the real server, and its per-token limit. Both
//! daemons run with `--route relay`, so the whole transfer crosses the server.
//!
//! - At the default limit (16 MiB/s per token) the relayed rate is printed.
//! - With the server's `--relay-rate 1MiB` the transfer still completes with the SHA-256
//!   matching, it cannot beat the limit (after the token's 1 MiB burst), and every packet the
//!   limit dropped is in the server's log (`relay limit: dropped N packets ...`, a warning):
//!   the drops the log reports are printed next to the rate, and they are all the drops the
//!   server counted (its metrics' `burrow_dropped_packets{reason="relay_limited"}`): the
//!   server reports the drops it held back once its report interval (10 s) has passed.

use std::time::Duration;

use burrow_tests::netns::Site;

use super::{Impairment, Outcome, Pair, SERVER, SERVER_METRICS, lab};

/// The sum of the drops the server's `relay limit:` warnings report.
fn logged_drops(log: &str) -> (usize, u64) {
    let counts: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("relay limit: dropped ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    (counts.len(), counts.iter().sum())
}

/// The server's own count of the packets its relay limit dropped, from its metrics.
fn counted_drops(pair: &Pair) -> Result<u64, String> {
    let url = format!("http://{SERVER_METRICS}/metrics");
    let text = pair
        .lab
        .exec(SERVER, "curl", &["-sS", "--max-time", "5", &url])?;
    text.lines()
        .filter(|l| l.starts_with("burrow_dropped_packets") && l.contains("relay_limited"))
        .find_map(|l| l.split_whitespace().last()?.parse().ok())
        .ok_or_else(|| format!("no relay_limited counter in the server's metrics:\n{text}"))
}

/// One relayed transfer of `bytes` under a server relaying at most `rate` per token
/// (`None`: the default). Returns the outcome, the server's log and its own drop count, once
/// the log has reported every drop the server counted (the held ones come once the report
/// interval has passed; at most 12 s are waited for them).
fn relayed(bytes: u64, rate: Option<&'static str>) -> Result<(Outcome, String, u64), String> {
    let impair = Impairment {
        route: Some("relay"),
        relay_rate: rate,
        ..Impairment::default()
    };
    let pair = Pair::start(&[Site::CONE, Site::CONE], &impair, |_, _| Ok(()))?;
    let mut o = Outcome::blank(rate.unwrap_or("default"));
    let send = pair.spawn_send(bytes, None)?;
    pair.finish_send(send, bytes, &mut o)?;
    // The server writes its warnings as they happen, and the drops it held back once its
    // report interval has passed.
    let end = std::time::Instant::now() + Duration::from_secs(12);
    let (log, counted) = loop {
        std::thread::sleep(Duration::from_millis(500));
        let counted = counted_drops(&pair)?;
        let log = std::fs::read_to_string(pair.lab.dir.join("server.err")).unwrap_or_default();
        if logged_drops(&log).1 == counted || std::time::Instant::now() > end {
            break (log, counted);
        }
    };
    if !o.sha_ok {
        return Err(format!("SHA-256 mismatch through the relay ({rate:?})"));
    }
    if o.path != "relay" {
        return Err(format!("path {} with --route relay", o.path));
    }
    Ok((o, log, counted))
}

#[test]
fn relayed_throughput_and_a_low_relay_limit_that_counts_and_logs_its_drops() {
    let Some(lab) = lab() else { return };
    drop(lab);
    let mib = |b: u64, s: f64| b as f64 / s / f64::from(1u32 << 20);
    const FULL: u64 = 16 << 20;
    let (o, log, counted_full) = relayed(FULL, None).unwrap_or_else(|e| panic!("{e}"));
    let secs = o.secs.expect("timed");
    let (reports, drops_full) = logged_drops(&log);
    println!();
    println!(
        "relayed, default limit (16 MiB/s per token): 16 MiB in {secs:.2} s = {:.1} MiB/s, SHA-256 match; {drops_full} drops logged in {reports} report(s), {counted_full} counted by the server",
        mib(FULL, secs)
    );
    const LIMITED: u64 = 4 << 20;
    let (o, log, counted) = relayed(LIMITED, Some("1MiB")).unwrap_or_else(|e| panic!("{e}"));
    let secs = o.secs.expect("timed");
    let (reports, drops) = logged_drops(&log);
    println!(
        "relayed, --relay-rate 1MiB: 4 MiB in {secs:.2} s = {:.2} MiB/s, SHA-256 match; {drops} drops logged in {reports} report(s), {counted} counted by the server",
        mib(LIMITED, secs)
    );
    // No silent drops: the log reports every packet the server's counter says it dropped.
    assert_eq!(
        drops_full, counted_full,
        "default limit: logged against counted"
    );
    assert_eq!(drops, counted, "--relay-rate 1MiB: logged against counted");
    for l in log.lines().filter(|l| l.contains("relay limit")).take(3) {
        println!("    server: {l}");
    }
    // The limit holds: past the 1 MiB burst the bucket refills at 1 MiB/s, so 4 MiB take at
    // least 3 s (a lower bound only: a slower run is no failure).
    assert!(secs >= 2.9, "4 MiB through a 1 MiB/s relay in {secs:.2} s");
}
