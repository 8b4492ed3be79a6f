//! Issue 19: `burrow netcheck` in each real-NAT profile reports the NAT behaviour the lab
//! configured. The server listens on 192.0.2.10 and answers netcheck's second STUN address on
//! 192.0.2.11, so both the mapping and the filtering tests toward a new IP address run. The
//! symmetric NAT running miniupnpd is reported as answering NAT-PMP, PCP and UPnP-IGD.

use std::time::{Duration, Instant};

use burrow_tests::netns::{self, Site, Topology};

use super::{SERVER, assert_clean, burrow_bin, json_field, lab};

/// What the lab's NAT profiles are, as netcheck's JSON names them: (mapping, filtering).
fn expected(site: &Site) -> (&'static str, &'static str) {
    let mapping = match site.mapping {
        netns::Mapping::Masquerade => "endpoint-independent",
        netns::Mapping::FullyRandom => "varies-by-destination",
    };
    // conntrack lets in only replies from the exact address and port sent to, whatever
    // the box does with unsolicited packets to itself.
    (mapping, "closed")
}

#[test]
fn netcheck_reports_each_profiles_mapping_and_filtering() {
    let burrow = burrow_bin();
    let b = burrow.to_string_lossy().into_owned();
    for site in [
        Site::CONE,
        Site::CONE_ACCEPT,
        Site::SYMMETRIC,
        Site::CARRIER,
        Site::SYMMETRIC_MAPPING,
    ] {
        let Some(mut lab) = lab() else { return };
        let topo = Topology::build(&mut lab, &[site]).expect("topology");
        let upnp = site
            .port_mapping
            .then(|| super::portmap::start_miniupnpd(&lab, &topo, 0).expect("miniupnpd"));
        let key = lab.dir.join("server.key");
        let key_s = key.to_string_lossy().into_owned();
        netns::run_quiet(&b, &["keygen", "--out", &key_s]).expect("keygen");
        let mut server = lab
            .spawn(
                SERVER,
                "server",
                &burrow,
                &[
                    "server",
                    "--listen",
                    "192.0.2.10:7000",
                    "--netcheck-udp",
                    "192.0.2.11:7001",
                    "--key",
                    &key_s,
                    "--open",
                ],
            )
            .expect("spawn server");
        server
            .wait_line(Duration::from_secs(10), |l| {
                l.contains("netcheck stun on udp")
            })
            .expect("server up");
        let started = Instant::now();
        let json = lab
            .exec(
                &topo.hosts[0][0],
                &b,
                &["netcheck", "--server", "192.0.2.10:7000", "--json"],
            )
            .unwrap_or_else(|e| panic!("{}: netcheck: {e}", site.label()));
        let took = started.elapsed();
        let text = lab
            .exec(
                &topo.hosts[0][0],
                &b,
                &[
                    "netcheck",
                    "--server",
                    "192.0.2.10:7000",
                    "--no-port-mapping",
                ],
            )
            .unwrap_or_else(|e| panic!("{}: netcheck: {e}", site.label()));
        println!("{} ({took:.1?}):\n{text}\n{json}\n", site.label());
        let field = |k: &str| json_field(&json, k).unwrap_or_default();
        let (mapping, filtering) = expected(&site);
        assert_eq!(field("mapping"), mapping, "{}: {json}", site.label());
        assert_eq!(field("filtering"), filtering, "{}: {json}", site.label());
        assert_eq!(field("no_nat"), "false", "{}: {json}", site.label());
        assert_eq!(field("hairpin"), "false", "{}: {json}", site.label());
        // A box that accepts unsolicited packets to itself keeps a conntrack entry for the
        // filtering test's dropped answer, which moves the next flow to its sender.
        if site.mapping == netns::Mapping::Masquerade {
            let moves = site.inbound == netns::Inbound::Accept;
            assert_eq!(
                field("unsolicited_moves_mapping"),
                moves.to_string(),
                "{}: {json}",
                site.label()
            );
        }
        let public = field("public_v4");
        assert!(
            public.starts_with(&format!("{}:", topo.public_addrs[0])),
            "{}: public {public}, NAT {}",
            site.label(),
            topo.public_addrs[0]
        );
        // The gateway (the NAT box, or the home NAT in front of a carrier's) was asked; only
        // the one running miniupnpd answers, with NAT-PMP, PCP and UPnP-IGD.
        assert!(!field("gateway").is_empty(), "{}: {json}", site.label());
        let mapping = site.port_mapping.to_string();
        assert_eq!(field("nat_pmp"), mapping, "{}: {json}", site.label());
        assert_eq!(field("pcp"), mapping, "{}: {json}", site.label());
        assert_eq!(
            !field("upnp").is_empty(),
            site.port_mapping,
            "{}: {json}",
            site.label()
        );
        drop(upnp);
        drop(server);
        assert_clean(lab);
    }
}
