//! The real-NAT suite: Linux network namespaces with nftables NAT routers between two sites
//! and a public server (see `burrow_tests::netns`). First the lab itself is checked (each NAT
//! profile's mapping and filtering, TTL expiry at the expected router), then the real `burrow`
//! binary runs across every profile pair and the traversal matrix is printed and asserted.
//!
//! Runs only with `BURROW_REAL_NAT=1`, as root, where `ip netns` works (`.ci/run` checks and
//! sets it); otherwise every test prints why it skips. Every namespace, link and process is
//! removed when a test ends, also when it fails.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use burrow_tests::netns::{self, Lab, Proc, Site, Topology};

const TOOL: &str = env!("CARGO_BIN_EXE_netns-tool");
const SERVER: &str = "srv";

/// `Some(lab)` when the suite runs here, else `None` after printing why not.
fn lab() -> Option<Lab> {
    if std::env::var_os("BURROW_REAL_NAT").is_none() {
        eprintln!(
            "skipping real-NAT suite: set BURROW_REAL_NAT=1 (.ci/run does when root and `ip netns` works)"
        );
        return None;
    }
    if let Some(why) = netns::unavailable() {
        // Asked for explicitly: not being able to run is a failure.
        panic!("BURROW_REAL_NAT=1 but the real-NAT suite cannot run: {why}");
    }
    Some(Lab::new().expect("create lab"))
}

fn tool() -> &'static Path {
    Path::new(TOOL)
}

/// Starts the UDP reflector in `role` on `addrs` and waits until it is bound.
fn reflector(lab: &Lab, role: &str, name: &str, addrs: &[&str]) -> Proc {
    let mut args = vec!["reflect"];
    args.extend_from_slice(addrs);
    let mut p = lab
        .spawn(role, name, tool(), &args)
        .expect("spawn reflector");
    p.wait_line(Duration::from_secs(5), |l| l == "ready")
        .expect("reflector ready");
    p
}

/// Sends one datagram from `bind` in `role` (IP TTL `ttl`) to each of `dests`; the address
/// each answered with (the mapping it saw), or `None` when no answer came.
fn probe(lab: &Lab, role: &str, bind: &str, ttl: u32, dests: &[&str]) -> Vec<Option<SocketAddr>> {
    let mut args = vec![
        "probe".to_string(),
        bind.into(),
        ttl.to_string(),
        "700".into(),
    ];
    args.extend(dests.iter().map(|d| d.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab
        .exec(role, TOOL, &args)
        .unwrap_or_else(|e| panic!("probe from {role}: {e}"));
    let answers: Vec<Option<SocketAddr>> = out
        .lines()
        .map(|l| l.split_whitespace().nth(1).and_then(|a| a.parse().ok()))
        .collect();
    assert_eq!(answers.len(), dests.len(), "probe output: {out}");
    answers
}

fn assert_clean(lab: Lab) {
    let prefix = lab.prefix().to_string();
    drop(lab);
    let left = netns::namespaces_with_prefix(&prefix);
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn nat_profiles_map_as_configured() {
    for site in [Site::CONE, Site::SYMMETRIC, Site::CARRIER] {
        let Some(mut lab) = lab() else { return };
        let topo = Topology::build(&mut lab, &[site]).expect("build topology");
        let _refl = reflector(
            &lab,
            SERVER,
            "reflect",
            &["192.0.2.10:3478", "192.0.2.10:3479", "192.0.2.11:3478"],
        );
        let seen = probe(
            &lab,
            &topo.hosts[0][0],
            "0.0.0.0:40000",
            64,
            &["192.0.2.10:3478", "192.0.2.10:3479", "192.0.2.11:3478"],
        );
        let seen: Vec<SocketAddr> = seen
            .into_iter()
            .map(|s| s.expect("every reflector answers"))
            .collect();
        let public = &topo.public_addrs[0];
        for s in &seen {
            assert_eq!(
                &s.ip().to_string(),
                public,
                "{}: seen as {seen:?}",
                site.label()
            );
        }
        let ports: std::collections::BTreeSet<u16> = seen.iter().map(|s| s.port()).collect();
        match site.mapping {
            netns::Mapping::Masquerade => assert_eq!(
                ports.len(),
                1,
                "{}: one mapping for every destination, got {seen:?}",
                site.label()
            ),
            netns::Mapping::FullyRandom => assert!(
                ports.len() >= 2,
                "{}: a new port per destination, got {seen:?}",
                site.label()
            ),
        }
        println!(
            "{:<14} one socket to 3 destinations is seen as {seen:?}",
            site.label()
        );
        assert_clean(lab);
    }
}

#[test]
fn unsolicited_inbound_to_an_accepting_nat_moves_the_next_mapping() {
    let Some(mut lab) = lab() else { return };
    let topo = Topology::build(&mut lab, &[Site::CONE, Site::CONE_ACCEPT]).expect("topology");
    let refl = reflector(&lab, SERVER, "reflect", &["192.0.2.11:3478"]);
    let mut moved = Vec::new();
    for site in 0..2 {
        let host = &topo.hosts[site][0];
        let before = probe(&lab, host, "0.0.0.0:40000", 64, &["192.0.2.11:3478"])[0]
            .expect("mapping before");
        // The "peer" at 192.0.2.10:4000 sends first, to the mapped port: unsolicited.
        let target = before.to_string();
        let none = probe(&lab, SERVER, "192.0.2.10:4000", 64, &[&target]);
        assert_eq!(none, vec![None], "an unsolicited packet got an answer");
        // Now the host sends to that peer from the same socket.
        let r = reflector(&lab, SERVER, &format!("peer{site}"), &["192.0.2.10:4000"]);
        let after =
            probe(&lab, host, "0.0.0.0:40000", 64, &["192.0.2.10:4000"])[0].expect("mapping after");
        drop(r);
        println!(
            "{:<14} mapped {before}; after an unsolicited packet from the peer, the flow to it is mapped {after}",
            ["cone", "cone(accept)"][site]
        );
        moved.push(before != after);
    }
    drop(refl);
    assert_eq!(
        moved,
        vec![false, true],
        "drop-inbound NAT keeps the mapping; accept-inbound NAT clashes in conntrack"
    );
    assert_clean(lab);
}

#[test]
fn ttl_limited_packets_die_at_the_expected_router() {
    let Some(mut lab) = lab() else { return };
    // Site b accepts unsolicited packets to its own stack, so a packet that reaches its NAT
    // is answered by a reflector running on the NAT box itself.
    let topo = Topology::build(&mut lab, &[Site::CONE, Site::CONE_ACCEPT]).expect("topology");
    let _srv = reflector(&lab, SERVER, "reflect", &["192.0.2.10:3478"]);
    let nat_b = format!("{}:5000", topo.public_addrs[1]);
    let _natb = reflector(&lab, &topo.nats[1], "reflect-nat-b", &[&nat_b]);
    let host = &topo.hosts[0][0];
    // a1 -> nat-a -> r-a -> core -> srv: three forwarding hops.
    let hops = topo.hops_to_server[0];
    assert_eq!(hops, 3);
    for ttl in 1..=hops + 1 {
        let got = probe(&lab, host, "0.0.0.0:40001", ttl, &["192.0.2.10:3478"])[0];
        assert_eq!(
            got.is_some(),
            ttl > hops,
            "ttl {ttl} toward the server: {got:?}"
        );
    }
    // a1 -> nat-a -> r-a -> core -> r-b -> nat-b: three plain routers between the NATs, so a
    // packet needs TTL 5 to reach nat-b; with TTL <= 4 it dies at a router on the way.
    assert_eq!(topo.routers, vec!["r-a", "core", "r-b"]);
    for ttl in 1..=5 {
        let got = probe(&lab, host, "0.0.0.0:40002", ttl, &[&nat_b])[0];
        assert_eq!(got.is_some(), ttl >= 5, "ttl {ttl} toward nat-b: {got:?}");
    }
    println!(
        "TTL: server reached from ttl {}, nat-b from ttl 5",
        hops + 1
    );
    assert_clean(lab);
}

#[test]
fn a_failing_test_leaves_no_namespace_or_process_behind() {
    let Some(mut lab) = lab() else { return };
    let prefix = lab.prefix().to_string();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let topo = Topology::build(&mut lab, &[Site::CONE, Site::CARRIER]).expect("topology");
        let _refl = reflector(&lab, SERVER, "reflect", &["192.0.2.10:3478"]);
        let _inner = reflector(&lab, &topo.hosts[1][0], "reflect-b1", &["0.0.0.0:3478"]);
        panic!(
            "deliberate failure with {} namespaces up",
            lab.namespaces().len()
        );
    }));
    assert!(result.is_err());
    let left = netns::namespaces_with_prefix(&prefix);
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
