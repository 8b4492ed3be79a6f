//! NAT behaviour against the RFC 4787 definitions, the Linux conntrack clash, nested NATs and
//! TTL, exercised end to end through the simulator with scripted nodes.

mod common;

use std::time::Duration;

use burrow_sim::toy::ScriptedNode;
use burrow_sim::{
    Filtering, Mapping, NatConfig, NatId, Network, NodeId, PortAllocation, Sim, SimConfig,
    TraceMode, Unsolicited, Uplink,
};
use burrow_sim::{LinkConfig, Node};
use common::*;

/// One host (192.168.1.2) behind `cfg`, two public servers S1 and S2.
struct Lab {
    sim: Sim,
    nat: NatId,
    host: burrow_sim::HostId,
    s1: burrow_sim::HostId,
    s2: burrow_sim::HostId,
}

fn lab(cfg: NatConfig) -> Lab {
    lab_seed(cfg, 1)
}

fn lab_seed(cfg: NatConfig, seed: u64) -> Lab {
    let mut net = Network::new();
    let s1 = net.add_public_host("s1", S1);
    let s2 = net.add_public_host("s2", S2);
    let (nat, host) = net.add_natted_host("host", None, NAT_IP, cfg, LAN_A);
    let sim = Sim::with_config(net, SimConfig::new(seed).trace(TraceMode::Full));
    Lab {
        sim,
        nat,
        host,
        s1,
        s2,
    }
}

impl Lab {
    fn node(&mut self, host: burrow_sim::HostId, port: u16, n: ScriptedNode) -> NodeId {
        self.sim.add_node(host, port, n)
    }

    fn run(&mut self, d: Duration) {
        if let Err(e) = self.sim.run_for(d) {
            panic!("{e}\n{}", self.sim.trace().text());
        }
    }
}

/// The host sends from port 5000 to S1:1000, S1:2000 and S2:1000; returns what each saw.
fn observed_mappings(cfg: NatConfig) -> Vec<std::net::SocketAddr> {
    let mut l = lab(cfg);
    let (a, b, c) = (addr(S1, 1000), addr(S1, 2000), addr(S2, 1000));
    let n1 = l.node(l.s1, 1000, ScriptedNode::new());
    let n2 = l.node(l.s1, 2000, ScriptedNode::new());
    let n3 = l.node(l.s2, 1000, ScriptedNode::new());
    let script = ScriptedNode::new()
        .send_at(ms(0), a, b"1")
        .send_at(ms(10), b, b"2")
        .send_at(ms(20), c, b"3");
    l.node(l.host, 5000, script);
    l.run(secs(1));
    vec![
        only_source(&l.sim, n1),
        only_source(&l.sim, n2),
        only_source(&l.sim, n3),
    ]
}

#[test]
fn mapping_endpoint_independent_reuses_one_port() {
    let o = observed_mappings(NatConfig::new(
        Mapping::EndpointIndependent,
        Filtering::AddressAndPortDependent,
    ));
    assert_eq!(o, vec![addr(NAT_IP, 5000); 3]);
}

#[test]
fn mapping_address_dependent_reuses_per_remote_address() {
    let o = observed_mappings(NatConfig::new(
        Mapping::AddressDependent,
        Filtering::AddressAndPortDependent,
    ));
    assert_eq!(o[0], o[1], "same remote address, same mapping");
    assert_ne!(
        o[0].port(),
        o[2].port(),
        "other remote address, new mapping"
    );
    assert!(o.iter().all(|a| a.ip() == addr(NAT_IP, 0).ip()));
}

#[test]
fn mapping_address_and_port_dependent_is_per_remote_endpoint() {
    let o = observed_mappings(NatConfig::new(
        Mapping::AddressAndPortDependent,
        Filtering::AddressAndPortDependent,
    ));
    assert_ne!(o[0].port(), o[1].port());
    assert_ne!(o[0].port(), o[2].port());
    assert_ne!(o[1].port(), o[2].port());
    assert_eq!(
        o[0].port(),
        5000,
        "the first mapping still preserves the port"
    );
}

/// The host sends to S1:1000; then S1:1000, S1:2000 and S2:1000 all send to its mapping.
/// Returns the sources the host received from.
fn filtered_sources(filtering: Filtering) -> Vec<std::net::SocketAddr> {
    let mut l = lab(NatConfig::new(Mapping::EndpointIndependent, filtering));
    let mapped = addr(NAT_IP, 5000);
    l.node(
        l.s1,
        1000,
        ScriptedNode::new().send_at(ms(100), mapped, b"a"),
    );
    l.node(
        l.s1,
        2000,
        ScriptedNode::new().send_at(ms(110), mapped, b"b"),
    );
    l.node(
        l.s2,
        1000,
        ScriptedNode::new().send_at(ms(120), mapped, b"c"),
    );
    let h = l.node(
        l.host,
        5000,
        ScriptedNode::new().send_at(ms(0), addr(S1, 1000), b"open"),
    );
    l.run(secs(1));
    sources(&l.sim, h)
}

#[test]
fn filtering_endpoint_independent_admits_anyone() {
    assert_eq!(
        filtered_sources(Filtering::EndpointIndependent),
        vec![addr(S1, 1000), addr(S1, 2000), addr(S2, 1000)]
    );
}

#[test]
fn filtering_address_dependent_admits_contacted_addresses() {
    assert_eq!(
        filtered_sources(Filtering::AddressDependent),
        vec![addr(S1, 1000), addr(S1, 2000)]
    );
}

#[test]
fn filtering_address_and_port_dependent_admits_contacted_endpoints() {
    assert_eq!(
        filtered_sources(Filtering::AddressAndPortDependent),
        vec![addr(S1, 1000)]
    );
}

#[test]
fn unsolicited_without_mapping_is_dropped() {
    let mut l = lab(NatConfig::full_cone());
    l.node(
        l.s1,
        1000,
        ScriptedNode::new().send_at(ms(0), addr(NAT_IP, 5000), b"x"),
    );
    let h = l.node(l.host, 5000, ScriptedNode::new());
    l.run(secs(1));
    assert!(sources(&l.sim, h).is_empty());
    assert_eq!(l.sim.stats().nat_drops, 1);
    assert!(l.sim.trace().text().contains("NAT host-nat: no mapping"));
}

#[test]
fn port_preserving_falls_back_when_taken() {
    let mut net = Network::new();
    let s1 = net.add_public_host("s1", S1);
    let nat = net.add_nat("nat", None, NAT_IP, NatConfig::port_restricted_cone());
    let site = net.add_site("lan", Some(nat));
    let a = net.add_host(site, "a", LAN_A);
    let b = net.add_host(site, "b", LAN_B);
    let mut sim = Sim::new(net, 1);
    let srv = sim.add_node(s1, 1000, ScriptedNode::new());
    sim.add_node(
        a,
        5000,
        ScriptedNode::new().send_at(ms(0), addr(S1, 1000), b"a"),
    );
    sim.add_node(
        b,
        5000,
        ScriptedNode::new().send_at(ms(10), addr(S1, 1000), b"b"),
    );
    sim.run_for(secs(1)).unwrap();
    let seen = sources(&sim, srv);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], addr(NAT_IP, 5000), "first host keeps its port");
    assert_ne!(seen[1].port(), 5000, "second host cannot have it");
    assert!(seen[1].port() >= 1024);
}

#[test]
fn port_allocation_sequential() {
    let cfg = NatConfig::new(
        Mapping::AddressAndPortDependent,
        Filtering::AddressAndPortDependent,
    )
    .with_port_allocation(PortAllocation::Sequential)
    .with_port_range(20000, 20099);
    let ports: Vec<u16> = observed_mappings(cfg).iter().map(|a| a.port()).collect();
    assert_eq!(ports, [20000, 20001, 20002]);
}

#[test]
fn port_allocation_random_is_seeded() {
    let cfg = NatConfig::symmetric();
    let run = |seed| {
        let mut l = lab_seed(cfg.clone(), seed);
        let n1 = l.node(l.s1, 1000, ScriptedNode::new());
        let n2 = l.node(l.s1, 2000, ScriptedNode::new());
        let script = ScriptedNode::new()
            .send_at(ms(0), addr(S1, 1000), b"1")
            .send_at(ms(10), addr(S1, 2000), b"2");
        l.node(l.host, 5000, script);
        l.run(secs(1));
        [
            only_source(&l.sim, n1).port(),
            only_source(&l.sim, n2).port(),
        ]
    };
    let a = run(1);
    assert_eq!(a, run(1), "same seed, same ports");
    assert_ne!(a, run(2), "another seed, other ports");
    assert_ne!(a[0], a[1]);
    assert!(a[0].abs_diff(a[1]) > 1, "not sequential: {a:?}");
}

/// Hosts A:5000 and B:6000 behind one NAT register with S1; then A sends to B's mapping.
fn hairpin(on: bool) -> (Sim, NodeId) {
    let mut net = Network::new();
    let s1 = net.add_public_host("s1", S1);
    let nat = net.add_nat(
        "nat",
        None,
        NAT_IP,
        NatConfig::full_cone().with_hairpinning(on),
    );
    let site = net.add_site("lan", Some(nat));
    let a = net.add_host(site, "a", LAN_A);
    let b = net.add_host(site, "b", LAN_B);
    let mut sim = Sim::with_config(net, SimConfig::new(1).trace(TraceMode::Full));
    sim.add_node(s1, 1000, ScriptedNode::new());
    let srv = addr(S1, 1000);
    let a_script = ScriptedNode::new().send_at(ms(0), srv, b"reg a").send_at(
        ms(100),
        addr(NAT_IP, 6000),
        b"hairpin",
    );
    sim.add_node(a, 5000, a_script);
    let bn = sim.add_node(b, 6000, ScriptedNode::new().send_at(ms(0), srv, b"reg b"));
    sim.run_for(secs(1)).unwrap();
    (sim, bn)
}

#[test]
fn hairpinning_on_translates_source() {
    let (sim, b) = hairpin(true);
    // RFC 4787 REQ-9: the hairpinned packet comes from A's external address, not its LAN one.
    assert_eq!(
        sources(&sim, b),
        vec![addr(NAT_IP, 5000)],
        "{}",
        sim.trace().text()
    );
}

#[test]
fn hairpinning_off_drops() {
    let (sim, b) = hairpin(false);
    assert!(sources(&sim, b).is_empty());
    assert!(sim.trace().text().contains("hairpinning disabled"));
}

/// The host sends to S1 at 0 (and at each `keepalives`); S1 sends to the mapping at each
/// `probes`. Binding timeout 30 s, sequential ports from 20000. Returns (arrival times at the
/// host, sources seen by S1).
fn binding_run(
    refresh_on_inbound: bool,
    keepalives: &[u64],
    probes: &[u64],
) -> (Vec<Duration>, Vec<std::net::SocketAddr>) {
    let cfg = NatConfig::port_restricted_cone()
        .with_binding_timeout(secs(30))
        .with_refresh_on_inbound(refresh_on_inbound)
        .with_port_allocation(PortAllocation::Sequential)
        .with_port_range(20000, 20099);
    let mut l = lab(cfg);
    let mut s = ScriptedNode::new();
    for &t in probes {
        s = s.send_at(secs(t), addr(NAT_IP, 20000), b"probe");
    }
    let srv = l.node(l.s1, 1000, s);
    let mut h = ScriptedNode::new().send_at(ms(0), addr(S1, 1000), b"open");
    for &t in keepalives {
        h = h.send_at(secs(t), addr(S1, 1000), b"keepalive");
    }
    let hn = l.node(l.host, 5000, h);
    l.run(secs(100));
    (arrivals(&l.sim, hn), sources(&l.sim, srv))
}

#[test]
fn binding_expires_when_idle() {
    let (arrived, seen) = binding_run(false, &[50], &[10, 40]);
    let s = |n: u64| secs(n);
    assert_eq!(arrived.len(), 1, "only the probe at 10 s gets in");
    assert!(arrived[0] > s(10) && arrived[0] < s(11));
    // After expiry the host's next packet creates a new mapping on the next sequential port.
    assert_eq!(seen, vec![addr(NAT_IP, 20000), addr(NAT_IP, 20001)]);
}

#[test]
fn binding_refreshed_by_outbound() {
    let (arrived, seen) = binding_run(false, &[25], &[10, 40, 60]);
    // Keepalive at 25 s extends the binding to 55 s: 40 s gets in, 60 s does not.
    assert_eq!(arrived.len(), 2, "{arrived:?}");
    assert_eq!(seen, vec![addr(NAT_IP, 20000)]);
}

#[test]
fn binding_refreshed_by_inbound_only_when_configured() {
    let (with, _) = binding_run(true, &[], &[20, 40]);
    assert_eq!(with.len(), 2, "inbound at 20 s refreshed the binding");
    let (without, _) = binding_run(false, &[], &[20, 40]);
    assert_eq!(without.len(), 1, "binding expired at 30 s");
}

#[test]
fn nested_nat_translates_twice() {
    let mut net = Network::new();
    let s1 = net.add_public_host("s1", S1);
    let cgn = net.add_nat(
        "cgn",
        None,
        NAT_IP,
        NatConfig::full_cone()
            .with_hairpinning(true)
            .with_port_allocation(PortAllocation::Sequential)
            .with_port_range(30000, 30999),
    );
    let (home_a, a) = net.add_natted_host(
        "a",
        Some(cgn),
        [100, 64, 0, 2],
        NatConfig::full_cone(),
        LAN_A,
    );
    // Same private address as a: realms are separate.
    let (_, b) = net.add_natted_host(
        "b",
        Some(cgn),
        [100, 64, 0, 3],
        NatConfig::full_cone(),
        LAN_A,
    );
    let mut sim = Sim::with_config(net, SimConfig::new(1).trace(TraceMode::Full));
    let srv = sim.add_node(s1, 1000, ScriptedNode::new().echo());
    let an = sim.add_node(
        a,
        5000,
        ScriptedNode::new().send_at(ms(0), addr(S1, 1000), b"a"),
    );
    let bn = sim.add_node(
        b,
        5000,
        ScriptedNode::new().send_at(ms(10), addr(S1, 1000), b"b"),
    );
    // Once the server has seen both, a sends to b's CGN-external address (CGN hairpin).
    sim.schedule(ms(500), move |sim| {
        let seen = sources(sim, srv);
        sim.with_node::<ScriptedNode, _>(an, |n, _| n.send(seen[1], None, b"a->b"));
    });
    sim.run_for(secs(1)).unwrap();
    let seen = sources(&sim, srv);
    assert_eq!(seen, vec![addr(NAT_IP, 30000), addr(NAT_IP, 30001)]);
    // Echo replies come back through both NATs.
    assert_eq!(sources(&sim, an), vec![addr(S1, 1000)]);
    assert_eq!(
        sources(&sim, bn),
        vec![addr(S1, 1000), addr(NAT_IP, 30000)],
        "{}",
        sim.trace().text()
    );
    // The home NAT mapped a's LAN address onto its CGN-side address, port preserved.
    assert_eq!(
        sim.network().nat(home_a).mappings(sim.now()),
        vec![(addr(LAN_A, 5000), 5000)]
    );
    assert_eq!(sim.network().nat(cgn).mappings(sim.now()).len(), 2);
}

/// R (S1:6000) sends a first punch to the NAT's port 5000 (with `probe_ttl`), then the host
/// sends from 5000 to R. Returns the source R saw and the sim.
fn clash_run(
    unsolicited: Unsolicited,
    probe_ttl: Option<u8>,
) -> (std::net::SocketAddr, Sim, NatId) {
    let mut l = lab(NatConfig::linux().with_unsolicited(unsolicited));
    let r = l.node(
        l.s1,
        6000,
        ScriptedNode::new()
            .send_at_ttl(ms(0), addr(NAT_IP, 5000), probe_ttl, b"early")
            .send_at(ms(300), addr(NAT_IP, 5000), b"to P again"),
    );
    let h = l.node(
        l.host,
        5000,
        ScriptedNode::new().send_at(ms(100), addr(S1, 6000), b"late"),
    );
    // R answers whatever address it saw the host at.
    l.sim.schedule(ms(200), move |sim| {
        let seen = only_source(sim, r);
        sim.with_node::<ScriptedNode, _>(r, |n, _| n.send(seen, None, b"reply"));
    });
    l.run(secs(1));
    let seen = only_source(&l.sim, r);
    let got: Vec<_> = l
        .sim
        .node::<ScriptedNode>(h)
        .received()
        .iter()
        .map(|x| x.payload.clone())
        .collect();
    if seen.port() != 5000 {
        // The reply to P' gets through; the packets to P go to the NAT's own stack.
        assert_eq!(got, vec![bytes::Bytes::from_static(b"reply")]);
    }
    (seen, l.sim, l.nat)
}

#[test]
fn conntrack_clash_moves_host_to_another_port() {
    let (seen, sim, nat) = clash_run(Unsolicited::Conntrack, None);
    assert_eq!(seen.ip(), addr(NAT_IP, 0).ip());
    assert_ne!(seen.port(), 5000, "{}", sim.trace().text());
    let nat = sim.network().nat(nat);
    let local: Vec<_> = nat
        .flows(sim.now())
        .into_iter()
        .filter(|f| f.internal.is_none())
        .collect();
    assert_eq!(local.len(), 1);
    assert_eq!(
        (local[0].external_port, local[0].remote),
        (5000, addr(S1, 6000))
    );
    assert_eq!(
        sim.stats().nat_local,
        2,
        "both packets to P hit the local entry"
    );
    assert!(sim.trace().text().contains("tuple clash on port 5000"));
}

#[test]
fn dropping_nat_keeps_host_on_its_port() {
    let (seen, sim, nat) = clash_run(Unsolicited::Drop, None);
    assert_eq!(seen, addr(NAT_IP, 5000));
    assert_eq!(sim.stats().nat_local, 0);
    assert!(
        sim.network()
            .nat(nat)
            .flows(sim.now())
            .iter()
            .all(|f| f.internal.is_some())
    );
}

#[test]
fn ttl_limited_first_punch_avoids_the_clash() {
    // Four routers sit between S1 and the NAT (2 + 2 by default); TTL 2 dies before it.
    let (seen, sim, _) = clash_run(Unsolicited::Conntrack, Some(2));
    assert_eq!(seen, addr(NAT_IP, 5000), "{}", sim.trace().text());
    assert!(
        sim.trace()
            .text()
            .contains("ttl expired at hop 2 before reaching NAT host-nat")
    );
}

#[test]
fn clash_also_hits_an_existing_mapping() {
    // The host already has mapping 5000 (to S2); the probe from R is filtered and leaves a local
    // entry; the host's new flow to R cannot reuse 5000, the flow to S2 keeps it.
    let mut l = lab(NatConfig::linux());
    let s2n = l.node(l.s2, 1000, ScriptedNode::new());
    let r = l.node(
        l.s1,
        6000,
        ScriptedNode::new().send_at(ms(50), addr(NAT_IP, 5000), b"probe"),
    );
    let script = ScriptedNode::new()
        .send_at(ms(0), addr(S2, 1000), b"s2")
        .send_at(ms(100), addr(S1, 6000), b"r")
        .send_at(ms(200), addr(S2, 1000), b"s2 again");
    l.node(l.host, 5000, script);
    l.run(secs(1));
    assert_ne!(only_source(&l.sim, r).port(), 5000);
    assert_eq!(only_source(&l.sim, s2n), addr(NAT_IP, 5000));
}

#[test]
fn ttl_probe_dies_before_nat_three_hops_away() {
    let sim = burrow_sim::demo::find("ttl")
        .unwrap()
        .run(1, TraceMode::Full)
        .unwrap();
    let text = sim.trace().text();
    assert!(text.contains("ttl=2\n"));
    assert!(
        text.contains("ttl expired at hop 2 before reaching NAT host-nat"),
        "{text}"
    );
    assert!(
        text.contains("ttl expired at hop 3 (NAT host-nat)"),
        "{text}"
    );
    assert_eq!(sim.stats().ttl_expired, 2);
    // TTL 4 and the default 64 reach the host.
    assert_eq!(sim.stats().delivered, 3);
}

#[test]
fn ttl_expiring_at_own_nat_creates_no_mapping() {
    let mut l = lab(NatConfig::linux());
    let srv = l.node(l.s1, 1000, ScriptedNode::new());
    let h = ScriptedNode::new().send_at_ttl(ms(0), addr(S1, 1000), Some(1), b"x");
    l.node(l.host, 5000, h);
    l.run(secs(1));
    assert!(sources(&l.sim, srv).is_empty());
    assert!(l.sim.network().nat(l.nat).mappings(l.sim.now()).is_empty());
    assert!(
        l.sim
            .trace()
            .text()
            .contains("ttl expired at hop 1 (NAT host-nat)")
    );
}

#[test]
fn hop_counts_follow_uplinks() {
    // Sender site 1 router, NAT uplink 1 router: the NAT is hop 3.
    let mut l = lab(NatConfig::full_cone());
    let s1_site = l.sim.network().host_site(l.s1);
    l.sim
        .network_mut()
        .set_site_uplink(s1_site, Uplink::new(1, LinkConfig::default()));
    let nat = l.nat;
    l.sim
        .network_mut()
        .set_nat_uplink(nat, Uplink::new(1, LinkConfig::default()));
    let h = l.node(
        l.host,
        5000,
        ScriptedNode::new().send_at(ms(0), addr(S1, 1000), b"open"),
    );
    let p = ScriptedNode::new()
        .send_at_ttl(ms(100), addr(NAT_IP, 5000), Some(2), b"2")
        .send_at_ttl(ms(200), addr(NAT_IP, 5000), Some(4), b"4");
    l.node(l.s1, 1000, p);
    l.run(secs(1));
    assert!(
        l.sim
            .trace()
            .text()
            .contains("ttl expired at hop 2 before reaching NAT host-nat")
    );
    assert_eq!(arrivals(&l.sim, h).len(), 1);
}

#[test]
fn node_trait_is_object_safe() {
    fn takes(_: &mut dyn Node) {}
    takes(&mut ScriptedNode::new());
}

/// The host sends once to S1 at 0 s; S1 sends to the host's mapped port at each of `from_s1`
/// seconds. Returns how many of S1's packets reached the host.
fn unreplied_run(from_s1: &[u64]) -> usize {
    let cfg = NatConfig::linux().with_unsolicited(Unsolicited::Drop);
    let mut l = lab(cfg);
    let mut s = ScriptedNode::new();
    for &t in from_s1 {
        s = s.send_at(secs(t), addr(NAT_IP, 5000), b"from s1");
    }
    l.node(l.s1, 6000, s);
    let h = l.node(
        l.host,
        5000,
        ScriptedNode::new().send_at(ms(0), addr(S1, 6000), b"open"),
    );
    l.run(secs(100));
    l.sim.node::<ScriptedNode>(h).received().len()
}

#[test]
fn linux_forgets_an_unreplied_flow_after_30_s_and_a_replied_one_after_120_s() {
    // Never answered: the flow is gone after 30 s (nf_conntrack_udp_timeout).
    assert_eq!(unreplied_run(&[31]), 0);
    assert_eq!(unreplied_run(&[29]), 1);
    // Answered at 1 s: the flow now lives 120 s from its last packet
    // (nf_conntrack_udp_timeout_stream), so 40 s later S1 still gets in.
    assert_eq!(unreplied_run(&[1, 41]), 2);
}
