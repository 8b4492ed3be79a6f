//! The server's authority in the simulator, with real endpoints behind NATs: a daemon
//! connects to a declared path with its client token (direct through cone NATs, relayed
//! through symmetric ones); when the tenant's master redeems that token, the destination drops
//! the session at once, the relay stops forwarding for the client, and the client's
//! registration is refused from then on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use burrow_core::config::RendezvousConfig;
use burrow_core::rendezvous::directory::{
    AdminCommand, Directory, PathRecord, Records, TenantRecord, TokenHash, TokenRole,
};
use burrow_core::rendezvous::{ServerConfig, TokenPolicy};
use burrow_core::{Config, Event, Path, PeerId};
use burrow_sim::endpoint::secret_key;
use burrow_sim::link::LinkConfig;
use burrow_sim::nat::NatConfig;
use burrow_sim::scenario::{NodeId, Sim};
use burrow_sim::topology::{Network, Uplink};

const PORT: u16 = 40000;

fn service() -> burrow_core::rendezvous::ServiceName {
    "/home/ssh".parse().expect("valid name")
}

/// Tenant `acme` (master `M`) with `/home/ssh` (server token `S`, client token `C`).
fn directory() -> Directory {
    let acme = "acme".parse().expect("tenant");
    Directory::from_records(Records {
        tenants: vec![TenantRecord {
            name: "acme".parse().expect("tenant"),
            master: TokenHash::of("M"),
            limits: Default::default(),
        }],
        paths: vec![PathRecord {
            tenant: acme,
            name: service(),
            server: TokenHash::of("S"),
            client: TokenHash::of("C"),
            fixed: false,
            clients: BTreeSet::new(),
            max_connections: None,
        }],
        attachments: Vec::new(),
        daemons: Vec::new(),
    })
    .expect("directory")
}

struct World {
    sim: Sim,
    a: NodeId,
    b: NodeId,
    master: NodeId,
}

/// The server; A exposing `/home/ssh` with `S`, B connecting with `C`, each behind `nat`; the
/// master M on a public host.
fn world(seed: u64, nat: &NatConfig) -> World {
    let mut net = Network::new();
    let server_host = net.add_public_host("server", [198, 51, 100, 1]);
    let master_host = net.add_public_host("master", [198, 51, 100, 9]);
    let mut site = |name: &str, ext: [u8; 4], lan_ip: [u8; 4]| {
        let nat_id = net.add_nat(&format!("{name}-nat"), None, ext, nat.clone());
        net.set_nat_uplink(
            nat_id,
            Uplink::new(4, LinkConfig::new(Duration::from_millis(15))),
        );
        let lan = net.add_site(&format!("{name}-lan"), Some(nat_id));
        net.add_host(lan, name, lan_ip)
    };
    let a_host = site("a", [203, 0, 113, 10], [192, 168, 1, 2]);
    let b_host = site("b", [198, 18, 0, 10], [10, 0, 0, 2]);
    let mut sim = Sim::new(net, seed);
    let server_secret = secret_key(seed, "server");
    // As `burrow server --state-dir` without --token or --open: only the directory's tokens.
    let config = ServerConfig {
        directory: directory(),
        tokens: TokenPolicy::Only(BTreeMap::new()),
        ..ServerConfig::default()
    };
    let server = sim.add_endpoint(
        server_host,
        7000,
        "server",
        Config::server(server_secret.clone(), config),
    );
    let server_addr = sim.node_addr(server);
    let daemon = |sim: &mut Sim, name: &str, host, token: &str| {
        let mut rendezvous = RendezvousConfig::new(server_secret.public_key(), server_addr, token);
        rendezvous.host_candidates = vec![sim.network().host_addr(host, PORT)];
        let config = Config::daemon(secret_key(seed, name), rendezvous);
        sim.add_endpoint(host, PORT, name, config)
    };
    let a = daemon(&mut sim, "a", a_host, "S");
    let b = daemon(&mut sim, "b", b_host, "C");
    let master = daemon(&mut sim, "master", master_host, "M");
    World { sim, a, b, master }
}

fn events(w: &World, node: NodeId) -> Vec<Event> {
    w.sim
        .endpoint(node)
        .events()
        .iter()
        .map(|l| l.event.clone())
        .collect()
}

/// Runs the scenario; returns the path B's session took and how long after the redemption
/// A dropped B.
fn redeem_while_connected(seed: u64, nat: &NatConfig) -> (Option<Path>, Duration) {
    let mut w = world(seed, nat);
    let (a, b, master) = (w.a, w.b, w.master);
    w.sim
        .endpoint_command(a, |ep, now| ep.expose(now, service(), "127.0.0.1:22"))
        .expect("expose");
    w.sim.run_for(Duration::from_secs(1)).expect("sim");
    w.sim
        .endpoint_command(b, |ep, now| ep.connect_service(now, service()))
        .expect("connect");
    let mut peer: Option<PeerId> = None;
    w.sim
        .run_until(w.sim.now() + Duration::from_secs(10), |s| {
            peer = s.endpoint(b).events().iter().find_map(|l| match l.event {
                Event::ServiceReady { peer, .. } => Some(peer),
                _ => None,
            });
            peer.is_some()
        })
        .expect("sim");
    let peer = peer.expect("B reached the service");
    let path = w.sim.endpoint(b).endpoint().peer_path(peer);
    let b_key = w.sim.endpoint(b).endpoint().public_key();

    let redeem = AdminCommand::Redeem {
        name: service(),
        role: TokenRole::Client,
    };
    let request = w
        .sim
        .endpoint_command(master, |ep, now| ep.admin(now, "M".into(), redeem))
        .expect("admin");
    let redeemed_at = w.sim.now();
    let mut dropped_at = None;
    w.sim
        .run_until(w.sim.now() + Duration::from_secs(5), |s| {
            let revoked = s
                .endpoint(a)
                .events()
                .iter()
                .any(|l| matches!(l.event, Event::AccessRevoked { key } if key == b_key));
            if revoked && dropped_at.is_none() {
                dropped_at = Some(s.now());
            }
            revoked
        })
        .expect("sim");
    let dropped_at = dropped_at.expect("A never dropped B");
    // The master got its answer; A's session with B is gone and B's too.
    assert!(
        events(&w, master)
            .iter()
            .any(|e| matches!(e, Event::AdminAnswered { request: r, .. } if *r == request))
    );
    assert!(
        events(&w, a)
            .iter()
            .any(|e| matches!(e, Event::SessionClosed { key, .. } if *key == b_key))
    );
    // A minute later B is still refused, and never reached A again.
    let connects_before = count_connected(&w, a, b_key);
    w.sim.run_for(Duration::from_secs(60)).expect("sim");
    let b_events = events(&w, b);
    assert!(
        b_events.iter().any(
            |e| matches!(e, Event::RegistrationFailed { reason } if reason.contains("BadToken"))
        ),
        "{b_events:#?}"
    );
    assert_eq!(
        count_connected(&w, a, b_key),
        connects_before,
        "B reached A again"
    );
    (path, dropped_at - redeemed_at)
}

fn count_connected(w: &World, node: NodeId, key: burrow_core::PublicKey) -> usize {
    events(w, node)
        .iter()
        .filter(|e| matches!(e, Event::Connected { key: k, .. } if *k == key))
        .count()
}

#[test]
fn a_redeemed_client_token_drops_a_direct_session_at_once() {
    for seed in 1..=3 {
        let (path, after) = redeem_while_connected(seed, &NatConfig::port_restricted_cone());
        println!("seed {seed}: path {path:?}, dropped {after:?} after the redemption");
        assert!(matches!(path, Some(Path::Direct(_))), "{path:?}");
        assert!(after < Duration::from_secs(1), "{after:?}");
    }
}

#[test]
fn a_redeemed_client_token_drops_a_relayed_session_at_once() {
    for seed in 1..=3 {
        let (path, after) = redeem_while_connected(seed, &NatConfig::symmetric());
        println!("seed {seed}: path {path:?}, dropped {after:?} after the redemption");
        assert!(matches!(path, Some(Path::Relay(_))), "{path:?}");
        assert!(after < Duration::from_secs(1), "{after:?}");
    }
}
