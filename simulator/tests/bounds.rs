//! Every run is bounded: livelocks, endless traffic and time limits surface as errors that carry
//! the seed.

mod common;

use burrow_sim::toy::{ScriptedNode, Spinner};
use burrow_sim::{LinkConfig, Network, Sim, SimConfig, SimErrorKind};
use common::*;

#[test]
fn livelocked_node_is_named() {
    let mut net = Network::new();
    let h = net.add_public_host("spin", S1);
    let mut sim = Sim::new(net, 99);
    sim.add_node(h, 9, Spinner::default());
    let err = sim.run_for(secs(10)).unwrap_err();
    assert_eq!(
        err.kind,
        SimErrorKind::Livelock {
            node: "spin:9".into(),
            spins: 1001
        }
    );
    assert_eq!(err.seed, 99);
    assert_eq!(err.at, secs(0), "time never advanced");
    let msg = err.to_string();
    assert!(msg.contains("spin:9") && msg.contains("seed 99"), "{msg}");
}

/// Two echo nodes that bounce one datagram forever.
fn ping_pong(cfg: SimConfig, lan: Option<LinkConfig>) -> Sim {
    let mut net = Network::new();
    let site = net.add_site("lan", None);
    let a = net.add_host(site, "a", S1);
    let b = net.add_host(site, "b", S2);
    if let Some(l) = lan {
        net.set_site_lan(site, l);
    }
    let mut sim = Sim::with_config(net, cfg);
    sim.add_node(a, 1, ScriptedNode::new().echo());
    sim.add_node(
        b,
        1,
        ScriptedNode::new()
            .echo()
            .send_at(ms(0), addr(S1, 1), b"ball"),
    );
    sim
}

#[test]
fn run_until_times_out_with_seed() {
    let mut sim = ping_pong(SimConfig::new(5), None);
    let err = sim.run_until(secs(2), |_| false).unwrap_err();
    assert_eq!(err.kind, SimErrorKind::Timeout { limit: secs(2) });
    assert_eq!(sim.now(), secs(2));
    assert_eq!(err.seed, 5);
    // 200 µs LAN: about 10 000 bounces in 2 s.
    assert!((9_990..=10_001).contains(&sim.stats().delivered));
}

#[test]
fn run_until_returns_when_condition_holds() {
    let mut sim = ping_pong(SimConfig::new(5), None);
    let t = sim
        .run_until(secs(2), |s| s.stats().delivered >= 10)
        .unwrap();
    assert_eq!(t, ms(2));
}

#[test]
fn zero_delay_storm_hits_event_limit() {
    let mut cfg = SimConfig::new(3);
    cfg.max_events = 10_000;
    let mut sim = ping_pong(cfg, Some(LinkConfig::ideal()));
    let err = sim.run_for(secs(1)).unwrap_err();
    assert_eq!(err.kind, SimErrorKind::EventLimit(10_000));
    assert_eq!(sim.now(), secs(0));
}

#[test]
fn max_time_bounds_run_until_idle() {
    let mut cfg = SimConfig::new(3);
    cfg.max_time = secs(1);
    let mut sim = ping_pong(cfg, None);
    let err = sim.run_until_idle().unwrap_err();
    assert_eq!(err.kind, SimErrorKind::TimeLimit(secs(1)));
}

#[test]
fn step_by_step() {
    let mut sim = ping_pong(SimConfig::new(1), None);
    let mut n = 0;
    while sim.stats().delivered < 3 {
        assert!(sim.step().unwrap());
        n += 1;
    }
    assert_eq!(sim.events(), n);
    assert_eq!(sim.now(), ms(0) + std::time::Duration::from_micros(600));
}
