//! Issue 19: a router that maps ports. Both sites are symmetric NATs (a new outside port per
//! destination), so punching cannot work and the pair relays; site a's router also runs
//! miniupnpd (Debian's miniupnpd-nftables: NAT-PMP, PCP and UPnP-IGD). Daemon a asks it for
//! a port, announces the mapped address, and b reaches a there directly. When daemon a stops
//! (SIGTERM) it deletes the mapping, and miniupnpd removes its forwarding rule.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use burrow_tests::netns::{self, Lab, MAPPING_TABLE, Proc, Site, Topology};

use super::{Impairment, Outcome, Pair, lab};

/// miniupnpd's path. The suite was asked for (`BURROW_REAL_NAT=1`), so a missing one fails.
fn miniupnpd_bin() -> PathBuf {
    burrow_tests::tools::find("miniupnpd").unwrap_or_else(|| {
        panic!(
            "miniupnpd not found: the real-NAT suite needs it (apt-get install miniupnpd-nftables; .ci/run does)"
        )
    })
}

/// Starts miniupnpd on site `site`'s NAT and waits until it listens for NAT-PMP/PCP.
pub(super) fn start_miniupnpd(lab: &Lab, topo: &Topology, site: usize) -> Result<Proc, String> {
    start_miniupnpd_with(lab, topo, site, true)
}

/// [`start_miniupnpd`], with NAT-PMP and PCP off when `!natpmp` (UPnP-IGD alone then: it
/// waits until miniupnpd's HTTP server listens).
fn start_miniupnpd_with(
    lab: &Lab,
    topo: &Topology,
    site: usize,
    natpmp: bool,
) -> Result<Proc, String> {
    let conf = lab.dir.join("miniupnpd.conf");
    let lan = format!("10.{}.0.0/24", site + 1);
    let mut text = netns::miniupnpd_config("br0", &lan);
    if !natpmp {
        text = text.replace("enable_natpmp=yes", "enable_natpmp=no");
    }
    std::fs::write(&conf, text).map_err(|e| e.to_string())?;
    let pid = lab.dir.join("miniupnpd.pid");
    let p = lab.spawn(
        &topo.nats[site],
        "miniupnpd",
        &miniupnpd_bin(),
        &[
            "-f",
            &conf.to_string_lossy(),
            "-P",
            &pid.to_string_lossy(),
            "-d",
            "-4",
        ],
    )?;
    // With -d it logs to stderr.
    let end = Instant::now() + Duration::from_secs(10);
    let ready = if natpmp {
        "Listening for NAT-PMP/PCP traffic"
    } else {
        "HTTP listening on port"
    };
    while !p.stderr().contains(ready) {
        if Instant::now() >= end {
            return Err(format!(
                "miniupnpd did not start: {}",
                netns::tail(&p.stderr(), 10)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(p)
}

/// miniupnpd's forwarding rules on `nat` (its DNAT chain), one `(external port, "ip:port")`
/// each.
fn forwarded(lab: &Lab, nat: &str) -> Result<Vec<(u16, String)>, String> {
    let chain = lab.exec(
        nat,
        "nft",
        &[
            "list",
            "chain",
            "inet",
            MAPPING_TABLE,
            "prerouting_miniupnpd",
        ],
    )?;
    Ok(chain
        .lines()
        .filter(|l| l.contains("dnat"))
        .filter_map(|l| {
            let port = l.split("dport ").nth(1)?.split_whitespace().next()?;
            let to = l.split(" to ").nth(1)?.trim();
            Some((port.parse().ok()?, to.to_string()))
        })
        .collect())
}

/// One run of the pair (1 MiB), with or without miniupnpd on site a; returns the outcome,
/// and with miniupnpd what it forwarded while the pair ran and after daemon a stopped.
struct Run {
    outcome: Outcome,
    during: Vec<(u16, String)>,
    after_stop: Vec<(u16, String)>,
    mapped_log: Option<String>,
}

/// Which port mapping site a's router offers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Router {
    /// No miniupnpd.
    Plain,
    /// miniupnpd with NAT-PMP, PCP and UPnP-IGD.
    Miniupnpd,
    /// miniupnpd with UPnP-IGD alone.
    UpnpOnly,
}

fn run(router: Router) -> Result<Run, String> {
    let with_miniupnpd = router != Router::Plain;
    let sites = [Site::SYMMETRIC_MAPPING, Site::SYMMETRIC];
    let label = match router {
        Router::Plain => "symmetric (no miniupnpd) : symmetric",
        Router::Miniupnpd => "symmetric+miniupnpd : symmetric",
        Router::UpnpOnly => "symmetric+miniupnpd(UPnP) : symmetric",
    };
    let mut outcome = Outcome::blank(label);
    let mut upnp = None;
    let pair = Pair::start(&sites, &Impairment::default(), |lab, topo| {
        if with_miniupnpd {
            upnp = Some(start_miniupnpd_with(
                lab,
                topo,
                0,
                router == Router::Miniupnpd,
            )?);
        }
        Ok(())
    })?;
    if with_miniupnpd {
        // The daemon's log says what it got before anything is sent. UPnP-IGD is asked after
        // PCP and NAT-PMP went unanswered (about 10 s), so a PCP exchange lost on a loaded
        // machine still ends in a mapping, only later: wait for that too.
        let log = pair.lab.dir.join("daemon-a.err");
        let wait = 30;
        let end = Instant::now() + Duration::from_secs(wait);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("port mapping:")
        {
            if Instant::now() >= end {
                let miniupnpd = upnp.as_ref().map(|p| p.stderr()).unwrap_or_default();
                return Err(format!(
                    "daemon a logged no port mapping outcome within {wait} s; its log:\n{}\nminiupnpd's:\n{}",
                    netns::tail(&std::fs::read_to_string(&log).unwrap_or_default(), 15),
                    netns::tail(&miniupnpd, 15)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let send = pair.spawn_send(1 << 20, None)?;
    pair.finish_send(send, 1 << 20, &mut outcome)?;
    let nat = pair.topo.nats[0].clone();
    let mut during = Vec::new();
    let mut after_stop = Vec::new();
    let log_a = std::fs::read_to_string(pair.lab.dir.join("daemon-a.err")).unwrap_or_default();
    let mapped_log = log_a
        .lines()
        .find(|l| l.contains("port mapping:"))
        .map(str::to_string);
    if with_miniupnpd {
        during = forwarded(&pair.lab, &nat)?;
        let mut pair = pair;
        let i = pair
            ._procs
            .iter()
            .position(|p| p.name == "daemon-a")
            .ok_or("no daemon-a")?;
        let mut a = pair._procs.remove(i);
        a.terminate()?;
        a.wait(Duration::from_secs(10))?;
        // The delete went out as the daemon stopped; miniupnpd handles it at once.
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            after_stop = forwarded(&pair.lab, &nat)?;
            if after_stop.is_empty() || Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(pair);
    }
    drop(upnp);
    Ok(Run {
        outcome,
        during,
        after_stop,
        mapped_log,
    })
}

#[test]
fn a_router_that_maps_ports_turns_symmetric_symmetric_direct_and_the_mapping_goes_on_stop() {
    let Some(lab) = lab() else { return };
    drop(lab);
    miniupnpd_bin();
    let before = run(Router::Plain).unwrap_or_else(|e| panic!("without miniupnpd: {e}"));
    let with = run(Router::Miniupnpd).unwrap_or_else(|e| panic!("with miniupnpd: {e}"));
    for r in [&before, &with] {
        println!(
            "{:<38} path {:<26} ttfb {:>7}  a's log: {}",
            r.outcome.pair,
            r.outcome.path,
            r.outcome
                .ttfb_ms
                .map_or("-".into(), |t| format!("{t:.0} ms")),
            r.mapped_log.as_deref().unwrap_or("-")
        );
    }
    println!(
        "miniupnpd forwarded {:?} while the pair ran, {:?} after daemon a stopped",
        with.during, with.after_stop
    );
    assert!(
        before.outcome.path.starts_with("relay"),
        "without a mapping symmetric:symmetric relays: {}",
        before.outcome.path
    );
    // One mapping, to daemon a's host, and b's path goes to exactly that outside port.
    let [(port, to)] = with.during.as_slice() else {
        panic!("one forwarding rule expected: {:?}", with.during);
    };
    assert!(to.starts_with("10.1.0.11:"), "forwarded to {to}");
    let mapped = format!("direct {}.18:{port}", netns::MAPPING_NET);
    assert_eq!(
        with.outcome.path, mapped,
        "b goes direct to the mapped port"
    );
    assert!(
        with.mapped_log
            .as_deref()
            .is_some_and(|l| l.contains("announced as a candidate")),
        "{:?}",
        with.mapped_log
    );
    assert!(
        with.after_stop.is_empty(),
        "the mapping outlived the daemon: {:?}",
        with.after_stop
    );
}

/// Issue 19: the same router with NAT-PMP and PCP off, so only UPnP-IGD can map (asked after
/// the other two went unanswered): b goes direct to the port mapped over UPnP, and the
/// mapping is deleted when daemon a stops. (The relayed run without a mapping is the test
/// above's.)
#[test]
fn a_router_that_maps_only_with_upnp_igd_turns_symmetric_symmetric_direct_and_the_mapping_goes_on_stop()
 {
    let Some(lab) = lab() else { return };
    drop(lab);
    miniupnpd_bin();
    let with = run(Router::UpnpOnly).unwrap_or_else(|e| panic!("with miniupnpd (UPnP): {e}"));
    println!(
        "{:<38} path {:<26} ttfb {:>7}  a's log: {}",
        with.outcome.pair,
        with.outcome.path,
        with.outcome
            .ttfb_ms
            .map_or("-".into(), |t| format!("{t:.0} ms")),
        with.mapped_log.as_deref().unwrap_or("-")
    );
    println!(
        "miniupnpd forwarded {:?} while the pair ran, {:?} after daemon a stopped",
        with.during, with.after_stop
    );
    let [(port, to)] = with.during.as_slice() else {
        panic!("one forwarding rule expected: {:?}", with.during);
    };
    assert!(to.starts_with("10.1.0.11:"), "forwarded to {to}");
    assert_eq!(
        with.outcome.path,
        format!("direct {}.18:{port}", netns::MAPPING_NET),
        "b goes direct to the port mapped over UPnP-IGD"
    );
    assert!(
        with.mapped_log
            .as_deref()
            .is_some_and(|l| l.contains("UPnP-IGD") && l.contains("announced as a candidate")),
        "{:?}",
        with.mapped_log
    );
    assert!(
        with.after_stop.is_empty(),
        "the UPnP mapping outlived the daemon: {:?}",
        with.after_stop
    );
}
