//! `burrow-sim`: run simulator scenarios from the command line.
//!
//! ```text
//! burrow-sim demo [--seed N] [--trace]
//! burrow-sim list
//! burrow-sim trace <scenario> [--seed N] [--hash]
//! burrow-sim speed [--count N] [--endpoint-count M]
//! ```
//!
//! Subcommands live in [`COMMANDS`]; adding one is a table entry plus a function taking the
//! parsed [`Args`].

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use burrow_sim::TraceMode;
use burrow_sim::demo;

/// Parsed command line: positional arguments and `--flag [value]` options.
struct Args {
    positional: Vec<String>,
    options: BTreeMap<String, Option<String>>,
}

impl Args {
    /// Flags that take no value.
    const SWITCHES: &'static [&'static str] = &["--hash", "--help", "--trace"];

    fn parse(raw: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut positional = Vec::new();
        let mut options = BTreeMap::new();
        let mut it = raw.into_iter();
        while let Some(arg) = it.next() {
            if let Some(flag) = arg.strip_prefix("--") {
                let (name, value) = match flag.split_once('=') {
                    Some((n, v)) => (format!("--{n}"), Some(v.to_owned())),
                    None if Self::SWITCHES.contains(&arg.as_str()) => (arg.clone(), None),
                    None => {
                        let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
                        (arg.clone(), Some(v))
                    }
                };
                options.insert(name, value);
            } else {
                positional.push(arg);
            }
        }
        Ok(Self {
            positional,
            options,
        })
    }

    fn positional(&self, i: usize, what: &str) -> Result<&str, String> {
        self.positional
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing {what}"))
    }

    fn flag(&self, name: &str) -> bool {
        self.options.contains_key(name)
    }

    fn u64_or(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.options.get(name) {
            None => Ok(default),
            Some(None) => Err(format!("{name} needs a value")),
            Some(Some(v)) => v.parse().map_err(|_| format!("{name}: not a number: {v}")),
        }
    }
}

type Command = fn(&Args) -> Result<(), String>;

/// `(name, usage, handler)`; `args.positional[0]` is the subcommand itself.
const COMMANDS: &[(&str, &str, Command)] = &[
    (
        "demo",
        "demo [--seed N] [--trace]     a server and two NATed daemons: STUN, handshake, datagrams",
        cmd_demo,
    ),
    (
        "matrix",
        "matrix [--seeds N] [--loss P]  NAT traversal matrix: every NAT pair, direct or not, time to\n                                first byte (exit 1 if a pair differs from what RFC 4787 permits)",
        cmd_matrix,
    ),
    (
        "list",
        "list                          named scenarios",
        cmd_list,
    ),
    (
        "trace",
        "trace <scenario> [--seed N] [--hash]  print a scenario's trace (or its hash)",
        cmd_trace,
    ),
    (
        "speed",
        "speed [--count N] [--endpoint-count M]  rate of N toy scenarios (200 datagrams) and M\n                                endpoint scenarios (handshake + 100 datagrams)",
        cmd_speed,
    ),
];

fn usage() -> String {
    let mut s = String::from("usage: burrow-sim <command> [options]\n\ncommands:\n");
    for (_, u, _) in COMMANDS {
        s.push_str("  ");
        s.push_str(u);
        s.push('\n');
    }
    s
}

fn cmd_demo(args: &Args) -> Result<(), String> {
    let seed = args.u64_or("--seed", 0)?;
    let report = burrow_sim::showcase::run(seed, args.flag("--trace"));
    if let Some(trace) = &report.trace {
        println!("packet trace:");
        print!("{trace}");
        println!();
    }
    print!("{}", report.text);
    if report.ok() {
        Ok(())
    } else {
        Err(format!(
            "demo failed with seed {seed}: {}",
            report.failures.join("; ")
        ))
    }
}

fn cmd_matrix(args: &Args) -> Result<(), String> {
    use burrow_sim::traversal::{Outcome, Profile, matrix};
    let seeds: Vec<u64> = (0..args.u64_or("--seeds", 3)?).collect();
    let loss_percent = args.u64_or("--loss", 0)?;
    let loss = loss_percent as f64 / 100.0;
    let start = Instant::now();
    let results = matrix(&Profile::all(), &seeds, loss);
    let cpu = start.elapsed();
    println!(
        "NAT traversal matrix: {} seeds per pair, {loss_percent}% loss per uplink, peer RTT 60 ms",
        seeds.len()
    );
    println!(
        "every ordered pair, so both start orders: B asks for A's service and starts the session"
    );
    println!(
        "{:<16} {:<16} outcome (time from the connect request to the first tunnelled byte)",
        "A", "B (starts)"
    );
    for r in results.iter().filter(|r| r.seed == 0) {
        println!("{r}");
    }
    let direct: Vec<f64> = results
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Direct(t) => Some(t.as_secs_f64() / r.rtt.as_secs_f64()),
            _ => None,
        })
        .collect();
    let mut sorted = direct.clone();
    sorted.sort_by(f64::total_cmp);
    if let Some(median) = sorted.get(sorted.len() / 2) {
        println!(
            "direct pairs: {} of {} runs; median time to first byte {median:.2} RTT",
            direct.len(),
            results.len()
        );
    }
    let mut relayed: Vec<f64> = results
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Relay { first_byte, .. } => Some(first_byte.as_secs_f64() * 1e3),
            _ => None,
        })
        .collect();
    relayed.sort_by(f64::total_cmp);
    if let Some(median) = relayed.get(relayed.len() / 2) {
        println!(
            "relayed pairs: {} of {} runs; median time to first byte {median:.0} ms \
             (relay fallback after {} s of punching)",
            relayed.len(),
            results.len(),
            burrow_core::config::SessionConfig::default()
                .relay_after
                .as_secs_f64()
        );
    }
    let failed = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
        .count();
    println!("failed: {failed} of {} runs", results.len());
    println!("{} runs in {:.2} s CPU", results.len(), cpu.as_secs_f64());
    let wrong: Vec<String> = results
        .iter()
        .filter(|r| !r.as_expected())
        .map(|r| format!("{} x {} seed {}", r.a, r.b, r.seed))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} runs differ from the expected outcome: {}",
            wrong.len(),
            wrong.join(", ")
        ))
    }
}

fn cmd_list(_: &Args) -> Result<(), String> {
    for s in demo::SCENARIOS {
        println!("{:<10} {}", s.name, s.about);
    }
    Ok(())
}

fn cmd_trace(args: &Args) -> Result<(), String> {
    let name = args.positional(1, "scenario name (see `burrow-sim list`)")?;
    let scenario = demo::find(name).ok_or_else(|| format!("unknown scenario {name}"))?;
    let seed = args.u64_or("--seed", 0)?;
    let mode = if args.flag("--hash") {
        TraceMode::Hash
    } else {
        TraceMode::Full
    };
    let sim = scenario.run(seed, mode).map_err(|e| e.to_string())?;
    let trace = sim.trace();
    if mode == TraceMode::Full {
        print!("{}", trace.text());
    }
    let st = sim.stats();
    println!(
        "# scenario={name} seed={seed} lines={} hash={:016x} sent={} delivered={} dropped={} events={}",
        trace.lines(),
        trace.hash(),
        st.sent,
        st.delivered,
        st.dropped,
        sim.events()
    );
    Ok(())
}

/// CPU time of this thread in nanoseconds, from `/proc/thread-self/schedstat` when available.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Runs `batch(count)` after a warm-up and prints its rates per CPU-second.
fn measure(
    what: &str,
    count: u64,
    batch: fn(u64) -> Result<demo::SpeedTotals, burrow_sim::SimError>,
) -> Result<(), String> {
    // Warm up allocator and caches.
    batch(count.min(50)).map_err(|e| e.to_string())?;
    let (wall0, cpu0) = (Instant::now(), thread_cpu_ns());
    let t = batch(count).map_err(|e| e.to_string())?;
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => wall,
    };
    println!(
        "{what}: {} scenarios, {} datagrams delivered, {} events in {:.3} s CPU ({:.3} s wall)",
        t.scenarios, t.delivered, t.events, cpu, wall
    );
    println!(
        "{what}: {:.0} scenarios/CPU-s, {:.0} datagrams/CPU-s, {:.0} events/CPU-s",
        t.scenarios as f64 / cpu,
        t.delivered as f64 / cpu,
        t.events as f64 / cpu
    );
    Ok(())
}

fn cmd_speed(args: &Args) -> Result<(), String> {
    let count = args.u64_or("--count", 5000)?;
    let endpoints = args.u64_or("--endpoint-count", 1000)?;
    measure("toy nodes", count, demo::speed_batch)?;
    measure("endpoints", endpoints, demo::endpoint_speed_batch)
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("burrow-sim: {e}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    let Some(cmd) = args.positional.first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    if args.flag("--help") || cmd == "help" {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let Some((_, _, run)) = COMMANDS.iter().find(|(name, _, _)| name == cmd) else {
        eprintln!("burrow-sim: unknown command {cmd}\n\n{}", usage());
        return ExitCode::from(2);
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("burrow-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
